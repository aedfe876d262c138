"""``Analyzer``: variable ranges and facts in one place, with cached simplification and bounds.

The functional API (``simplify``, ``const_int_bound``, ``prove``, ...) makes a fresh Analyzer per
call; a pass that asks many questions under the same loops keeps one and binds loop variables
as it walks (``with analyzer.bind(i, Range(0, n)): ...``).
"""
from __future__ import annotations

from contextlib import contextmanager

from .. import dtype as dt
from ..expr import IntImm, IterVar, PrimExpr, Range, Sub, Var, convert
from .int_bound import IntBound, IntBoundAnalyzer, full_bound, public_bound
from .linear import KeyMaker


def normalize_ranges(ranges) -> dict:
    """``{Var or IterVar: Range or IterVar}`` -> ``{Var: Range}`` (IterVars give their var/dom)."""
    out = {}
    for k, r in (ranges or {}).items():
        v = k.var if isinstance(k, IterVar) else k
        if not isinstance(v, Var):
            raise TypeError(f"range keys must be Var or IterVar, got {type(k).__name__}")
        if isinstance(r, IterVar):
            r = r.dom
        if r is None:
            continue
        if not isinstance(r, Range):
            raise TypeError(f"range of {v.name} must be a Range, got {type(r).__name__}")
        if not isinstance(r.min, PrimExpr) or not isinstance(r.extent, PrimExpr):
            r = Range(convert(r.min), convert(r.extent))
        out[v] = r
    return out


class Analyzer:
    """Simplifies and bounds expressions under known variable ranges.

    Example::

        ana = Analyzer({i: Range(0, 16)})
        ana.prove(i < 16)              # True
        ana.simplify(i // 16)          # 0
        ana.const_int_bound(i * 4)     # IntBound(min=0, max=60)
    """

    def __init__(self, ranges=None):
        self._ranges: dict[int, tuple[Var, Range]] = {}
        self._values: dict[int, tuple[Var, PrimExpr]] = {}
        self._max_exprs: dict[int, PrimExpr] = {}
        self._facts: dict[tuple, bool] = {}
        self._refined: dict[int, tuple] = {}  # var uid -> (lo, hi) from assumed comparisons
        self.keys = KeyMaker()
        self._bounds = IntBoundAnalyzer(self)
        self._simplifier = None
        for v, r in normalize_ranges(ranges).items():
            self._ranges[v.uid] = (v, r)

    # -- what is known -----------------------------------------------------------------------
    def var_range(self, v: Var) -> Range | None:
        hit = self._ranges.get(v.uid)
        return hit[1] if hit is not None else None

    def var_value(self, v: Var) -> PrimExpr | None:
        hit = self._values.get(v.uid)
        return hit[1] if hit is not None else None

    def range_max_expr(self, v: Var) -> PrimExpr:
        """``min + extent - 1`` of the variable's range, simplified (cached)."""
        hit = self._max_exprs.get(v.uid)
        if hit is None:
            r = self.var_range(v)
            hit = self.simplify(r.min + r.extent - 1)
            self._max_exprs[v.uid] = hit
        return hit

    def _changed(self):
        self._bounds.clear()
        self._max_exprs.clear()
        if self._simplifier is not None:
            self._simplifier.clear()

    @contextmanager
    def bind(self, var: Var, value):
        """Within the block, ``var`` ranges over a ``Range`` or equals an expression."""
        if isinstance(value, IterVar):
            value = value.dom
        if isinstance(value, Range):
            value = normalize_ranges({var: value})[var]
        table = self._ranges if isinstance(value, Range) else self._values
        if not isinstance(value, Range):
            value = convert(value)
        other = self._values if table is self._ranges else self._ranges
        saved, saved_other = table.get(var.uid), other.pop(var.uid, None)
        table[var.uid] = (var, value)
        self._changed()
        try:
            yield self
        finally:
            if saved is None:
                table.pop(var.uid, None)
            else:
                table[var.uid] = saved
            if saved_other is not None:
                other[var.uid] = saved_other
            self._changed()

    @contextmanager
    def assuming(self, condition: PrimExpr, value: bool = True):
        """Within the block, the (simplified) ``condition`` is known to be ``value``."""
        from ..expr import Not
        cond = self.simplify(condition)
        facts = _facts_of(cond, value)
        facts += [(self.simplify(Not(f, f.dtype)), not truth) for f, truth in facts]
        added = []
        saved_refined = dict(self._refined)
        for fact, truth in facts:
            k = self.keys.key(fact)
            if k not in self._facts:
                self._facts[k] = truth
                added.append(k)
            refined = _var_interval(fact) if truth else None
            if refined is not None:
                uid, lo, hi = refined
                old_lo, old_hi = self._refined.get(uid, (None, None))
                lo = lo if old_lo is None else old_lo if lo is None else max(lo, old_lo)
                hi = hi if old_hi is None else old_hi if hi is None else min(hi, old_hi)
                self._refined[uid] = (lo, hi)
        self._changed()
        try:
            yield self
        finally:
            for k in added:
                del self._facts[k]
            self._refined = saved_refined
            self._changed()

    def var_refinement(self, v: Var):
        """``(lo, hi)`` (either may be None) known for ``v`` from assumed comparisons, or None."""
        return self._refined.get(v.uid)

    def known_fact(self, cond: PrimExpr) -> bool | None:
        if not self._facts:
            return None
        return self._facts.get(self.keys.key(cond))

    # -- questions ---------------------------------------------------------------------------
    def _simplifier_instance(self):
        if self._simplifier is None:
            from .rewrite import Simplifier
            self._simplifier = Simplifier(self)
        return self._simplifier

    def simplify(self, expr) -> PrimExpr:
        """The simplified expression (same dtype, same value for every assignment).

        An expression that is already in simplified form comes back as the very same object.
        """
        expr = convert(expr)
        result = self._simplifier_instance().visit(expr)
        if result is not expr and self.keys.key(result) == self.keys.key(expr):
            return expr
        return result

    def const_int_bound(self, expr) -> IntBound:
        """Inclusive constant ``(min, max)``; None on a side nothing bounds (or non-integers)."""
        expr = convert(expr)
        raw = self._bounds.bound(expr)
        if raw.min is None:
            return raw
        simple = self._bounds.bound(self.simplify(expr))
        return public_bound(IntBound(max(raw.min, simple.min), min(raw.max, simple.max)))

    def int_bound(self, expr: PrimExpr) -> IntBound:
        """Interval of an expression as it stands (no simplification first); cheap.

        Unbounded sides are +-``int_bound.INF`` (huge ints) so that arithmetic stays simple.
        """
        return self._bounds.bound(expr)

    def prove(self, cond) -> bool:
        """True only when ``cond`` holds for every value of the variables in range."""
        result = self.simplify(cond)
        return isinstance(result, IntImm) and result.value != 0

    def can_prove_equal(self, a, b) -> bool:
        a, b = convert(a), convert(b)
        if a.same_as(b):
            return True
        from .constant_fold import is_index_type
        from ..expr import binary
        if is_index_type(a.dtype) and is_index_type(b.dtype):
            return self.prove(binary(Sub, a, b) == 0)
        return self.simplify(a).structural_equal(self.simplify(b))

    def bound_of(self, expr, ranges) -> Range | None:
        """Symbolic range of ``expr`` when the variables in ``ranges`` vary over their ranges."""
        from .symbolic_bound import symbolic_range
        return symbolic_range(self, convert(expr), normalize_ranges(ranges))


def _var_interval(fact):
    """``v < 10`` -> ``(v.uid, None, 9)``: what a true comparison of a variable with a constant
    says about the variable."""
    from ..expr import CmpOp, EQ, GE, GT, LE, LT
    if not isinstance(fact, CmpOp):
        return None
    cls, a, b = type(fact), fact.a, fact.b
    if isinstance(a, IntImm) and isinstance(b, Var):
        cls, a, b = {LT: GT, LE: GE, GT: LT, GE: LE, EQ: EQ}.get(cls), b, a
    if cls is None or not isinstance(a, Var) or not isinstance(b, IntImm):
        return None
    c = b.value
    bounds = {LT: (None, c - 1), LE: (None, c), GT: (c + 1, None), GE: (c, None), EQ: (c, c)}
    if cls not in bounds:
        return None
    return (a.uid,) + bounds[cls]


def _facts_of(cond: PrimExpr, value: bool):
    """The facts implied by ``cond == value``: conjuncts of a true And, disjuncts of a false Or."""
    from ..expr import And, Not, Or
    if isinstance(cond, IntImm):
        return []
    out = [(cond, value)]
    if value and isinstance(cond, And) or not value and isinstance(cond, Or):
        out += _facts_of(cond.a, value) + _facts_of(cond.b, value)
    if isinstance(cond, Not):
        out += _facts_of(cond.a, not value)
    if dt.lanes_of(cond.dtype) != 1:
        return []
    return out


__all__ = ["Analyzer", "IntBound", "full_bound", "normalize_ranges"]
