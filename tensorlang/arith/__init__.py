"""Integer arithmetic analysis: simplification, constant and symbolic bounds, proofs.

What the lowering leans on::

    from tensorlang.arith import simplify, const_int_bound, prove, bound_of, simplify_stmt
    simplify((o * 4 + 3) - o * 4 + 1)                      # 4
    simplify((x * 8 + y) // 8, {y: Range(0, 8)})            # x
    const_int_bound(i * 4 + j, {i: Range(0, 4), j: Range(0, 4)})   # IntBound(0, 15)
    prove(i < 16, {i: Range(0, 16)})                        # True
    bound_of(i + di, {i: Range(o * f, f), di: Range(0, 3)})  # Range(o*f, f + 2)
    simplify_stmt(prim_func)                                 # loops simplified under their ranges

Every rewrite keeps the node's dtype and its value. Signed integer index arithmetic is assumed
not to overflow (undefined behaviour in the C semantics the IR follows); unsigned arithmetic
wraps and is treated so. Floats are only constant-folded (in their own precision) and rewritten
by identities exact for every IEEE value.
"""
from __future__ import annotations

from ..expr import PrimExpr, Range
from .analyzer import Analyzer, normalize_ranges
from .int_bound import IntBound
from .stmt_simplify import simplify_stmt
from .symbolic_bound import symbolic_interval


def simplify(expr, ranges: dict | None = None) -> PrimExpr:
    """Simplify ``expr`` knowing each variable in ``ranges`` lies in its ``Range``.

    A statement or PrimFunc is passed on to :func:`simplify_stmt`.
    """
    from ..expr import Node
    if isinstance(expr, Node) and not isinstance(expr, PrimExpr):
        return simplify_stmt(expr, Analyzer(ranges) if ranges else None)
    return Analyzer(ranges).simplify(expr)


def const_int_bound(expr, ranges: dict | None = None) -> IntBound:
    """Inclusive ``(min, max)`` Python ints; ``(None, None)`` for non-integer expressions.

    Variables outside ``ranges`` span their dtype.
    """
    return Analyzer(ranges).const_int_bound(expr)


def prove(cond, ranges: dict | None = None) -> bool:
    """True only when ``cond`` provably holds for all values in ``ranges`` (False: unknown)."""
    return Analyzer(ranges).prove(cond)


def can_prove_equal(a, b, ranges: dict | None = None) -> bool:
    """True only when ``a == b`` provably holds for all values in ``ranges``."""
    return Analyzer(ranges).can_prove_equal(a, b)


def bound_of(expr, ranges: dict, context: dict | None = None) -> Range | None:
    """Symbolic ``Range(min, extent)`` covered by ``expr`` while the variables in ``ranges`` vary.

    Ranges may be symbolic in variables outside ``ranges`` (those stay in the answer);
    ``context`` gives ranges of such outer variables, used only to simplify the answer.
    Returns None when some part of ``expr`` cannot be bounded more tightly than its dtype.

    Example::

        bound_of(i + di, {i: Range(o * 4, 4), di: Range(0, 3)})   # Range(o*4, 6)
    """
    return Analyzer(context).bound_of(expr, ranges)


def interval_of(expr, ranges: dict, context: dict | None = None):
    """Like :func:`bound_of` but as inclusive ``(min_expr, max_expr)``, or None."""
    from ..expr import convert
    return symbolic_interval(Analyzer(context), convert(expr), normalize_ranges(ranges))


__all__ = ["Analyzer", "IntBound", "simplify", "const_int_bound", "prove", "can_prove_equal",
           "bound_of", "interval_of", "simplify_stmt"]
