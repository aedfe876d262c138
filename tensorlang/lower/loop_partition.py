"""Loop partitioning: split a loop where a guard inside it stops being always true.

A non-divisible split leaves a guard such as ``if io * 6 + ii < 1000`` around the innermost
body. For every ``io`` but the last the guard holds for all values of the inner loops, so the
loop over ``io`` is cut in two: a main part where the guard is dropped (and the body can be
vectorized and unrolled cleanly) and a tail part that keeps it. Loops are visited outermost
first, so the cut happens at the loop that decides the guard, not once per inner iteration.

Padding reads are guarded inside expressions: ``if_then_else(y >= 1 and y < 57 and ..., X[y -
1, ...], 0)``. Where such a bound is linear in a loop's variable and its cut is a constant, the
loop is cut in up to three: a head where a lower bound may fail, the interior where none of
those bounds can fail (the ``if_then_else`` becomes its loaded value, so a padding copy or an
im2col vectorizes there), and a tail. Vectorized loops are not cut (their lanes would become
odd-sized vectors); the loop around them is.
"""
from __future__ import annotations

from ..expr import (GE, GT, LE, LT, Add, And, Call, FloorDiv, IntImm, Max, Min, Mul, Range, Sub,
                    Var, binary)
from ..ir.function import PrimFunc
from ..ir.functor import Mutator, post_order_visit, substitute
from ..ir.stmt import BufferStore, For, IfThenElse, SeqStmt, seq


def _conjuncts(cond) -> list:
    if isinstance(cond, And):
        return _conjuncts(cond.a) + _conjuncts(cond.b)
    return [cond]


def _uses(expr, var: Var) -> bool:
    found = []
    post_order_visit(expr, lambda n: found.append(1) if isinstance(n, Var) and n.uid == var.uid
                     else None)
    return bool(found)


def _linear(diff, var: Var):
    """``(coeff, at0)`` with ``diff == coeff * var + at0`` (coeff a constant), else None."""
    from ..arith import simplify
    at0 = simplify(substitute(diff, {var: IntImm(0, var.dtype)}))
    coeff = simplify(binary(Sub, substitute(diff, {var: IntImm(1, var.dtype)}), at0))
    if not isinstance(coeff, IntImm) or coeff.value == 0 or _uses(at0, var):
        return None
    residual = simplify(binary(Sub, binary(Sub, diff, binary(Mul, coeff, var)), at0))
    if not (isinstance(residual, IntImm) and residual.value == 0):
        return None
    return coeff.value, at0


def _bound_split(cond, var: Var, inner: dict):
    """Where a bound ``lhs < rhs`` (``<=``, ``>``, ``>=``), linear in ``var``, holds for every
    inner-loop value: ``("upper", p)`` when it holds for all ``var < p`` (a positive
    coefficient), ``("lower", p)`` when it holds for all ``var >= p`` (a negative one); None
    when the bound is not of that form."""
    from ..arith import bound_of, simplify
    if isinstance(cond, (GT, GE)):  # a > b  <=>  b < a
        cond = (LT if isinstance(cond, GT) else LE)(cond.b, cond.a, cond.dtype)
    if not isinstance(cond, (LT, LE)) or cond.a.dtype not in ("int32", "int64"):
        return None
    linear = _linear(simplify(binary(Sub, cond.a, cond.b)), var)  # holds: diff < 0 (<= 0)
    if linear is None:
        return None
    coeff, at0 = linear
    if inner:
        rng = bound_of(at0, inner)
        if rng is None:
            return None
        worst = binary(Sub, binary(Add, rng.min, rng.extent), 1)  # the largest at0
    else:
        worst = at0
    if any(_uses(worst, v) for v in inner):
        return None
    slack = 0 if isinstance(cond, LT) else 1
    if coeff > 0:  # coeff * var + worst < 0 (<= 0): var < ceil((slack - worst) / coeff)
        point = binary(FloorDiv, binary(Add, binary(Sub, slack, worst), coeff - 1), coeff)
        return "upper", simplify(point)
    c = -coeff  # worst < c * var (<=): var >= floor((worst - slack) / c) + 1
    return "lower", simplify(binary(Add, binary(FloorDiv, binary(Sub, worst, slack), c), 1))


class _Partition(Mutator):
    def __init__(self, expressions: bool = True):
        self.expressions = expressions  # cut at the bounds of if_then_else too

    def visit_For(self, s):
        if s.kind in ("thread_binding",) or s.annotations:
            return self.generic_visit(s)
        lower, upper, conds = self._split_points(s)
        if lower is None and upper is None:
            return self.generic_visit(s)
        from ..arith import simplify
        start, end = s.min, simplify(binary(Add, s.min, s.extent))
        first = start if lower is None else \
            simplify(binary(Max, start, binary(Min, lower, end)))
        last = end if upper is None else simplify(binary(Max, first, binary(Min, upper, end)))
        parts = []
        if lower is not None:
            parts.append(self._copy(s, start, first))
        main_body = _drop_conditions(s.body, conds)
        parts.append(self.generic_visit(For(s.loop_var, first, simplify(binary(Sub, last, first)),
                                            s.kind, main_body, s.thread_tag, s.annotations)))
        if upper is not None:
            parts.append(self._copy(s, last, end))
        return seq(*parts)

    def _copy(self, loop, begin, stop):
        """``loop`` over [begin, stop) with its guards kept (a fresh loop variable)."""
        from ..arith import simplify
        var = Var(loop.loop_var.name, loop.loop_var.dtype)
        return self.generic_visit(For(var, begin, simplify(binary(Sub, stop, begin)), loop.kind,
                                      substitute(loop.body, {loop.loop_var: var}),
                                      loop.thread_tag, loop.annotations))

    def _split_points(self, loop):
        """``(lower, upper, conds)``: the largest lower and smallest upper cut over the
        guards below ``loop`` that it decides (None where there is none), and those guards.
        Statement guards take upper cuts only (the tails of non-divisible splits); the bounds
        of ``if_then_else`` (padding) take both, where the cut is a constant."""
        from ..arith import simplify
        var = loop.loop_var
        found = []
        in_expressions = self.expressions and loop.kind != "vectorized"

        def guard(c, inner, from_expression):
            if not _uses(c, var):
                return
            split = _bound_split(c, var, inner)
            if split is None:
                return
            kind, point = split
            if from_expression and not isinstance(point, IntImm):
                return
            if kind == "lower" and not from_expression:
                return
            found.append((c, kind, point))

        def expressions(e, inner):
            if not in_expressions:
                return

            def visit(n):
                if isinstance(n, Call) and n.op == "if_then_else":
                    for c in _conjuncts(n.args[0]):
                        guard(c, inner, True)
            post_order_visit(e, visit)

        def walk(stmt, inner):
            if isinstance(stmt, For):
                if _uses(stmt.min, var) or _uses(stmt.extent, var):
                    return
                inner = dict(inner)
                inner[stmt.loop_var] = Range(stmt.min, stmt.extent)
                walk(stmt.body, inner)
            elif isinstance(stmt, IfThenElse):
                if stmt.else_case is None:
                    for c in _conjuncts(stmt.condition):
                        guard(c, inner, False)
                walk(stmt.then_case, inner)
                if stmt.else_case is not None:
                    walk(stmt.else_case, inner)
            elif isinstance(stmt, SeqStmt):
                for x in stmt.seq:
                    walk(x, inner)
            elif isinstance(stmt, BufferStore):
                expressions(stmt.value, inner)
            elif hasattr(stmt, "body"):
                walk(stmt.body, inner)

        walk(loop.body, {})
        lower = upper = None
        for _, kind, point in found:
            if kind == "lower":
                lower = point if lower is None else binary(Max, lower, point)
            else:
                upper = point if upper is None else binary(Min, upper, point)
        return (None if lower is None else simplify(lower),
                None if upper is None else simplify(upper), [c for c, _, _ in found])


def _drop_conditions(stmt, conds):
    """Remove the given conjuncts (structurally) from the guards in ``stmt``: from statement
    guards, and from the conditions of ``if_then_else`` (all of them gone: its first value)."""

    def kept_of(cond):
        kept = [c for c in _conjuncts(cond) if not any(c.structural_equal(d) for d in conds)]
        return kept, len(kept) == len(_conjuncts(cond))

    def joined(kept):
        cond = kept[0]
        for c in kept[1:]:
            cond = And(cond, c, "bool")
        return cond

    class _Drop(Mutator):
        def visit_IfThenElse(self, s):
            s = self.generic_visit(s)
            if s.else_case is not None:
                return s
            kept, same = kept_of(s.condition)
            if same:
                return s
            if not kept:
                return s.then_case
            return IfThenElse(joined(kept), s.then_case)

        def visit_Call(self, e):
            e = self.generic_visit(e)
            if e.op != "if_then_else":
                return e
            kept, same = kept_of(e.args[0])
            if same:
                return e
            if not kept:
                return e.args[1]
            return Call("if_then_else", (joined(kept), e.args[1], e.args[2]), e.dtype)

    return _Drop().visit(stmt)


def partition_loops(func: PrimFunc) -> PrimFunc:
    """Cut loops so that guards of non-divisible splits only run in the tail iterations, and
    padding guards only at the borders. A GPU kernel (thread-bound loops) gets the first
    only: its padded loads are cooperative copies between barriers, kept in one loop."""
    gpu = []
    post_order_visit(func.body, lambda n: gpu.append(1) if isinstance(n, For) and
                     n.kind == "thread_binding" else None)
    return func.with_body(_Partition(expressions=not gpu).visit(func.body))
