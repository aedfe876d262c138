"""Loop partitioning: split a loop where a guard inside it stops being always true.

A non-divisible split leaves a guard such as ``if io * 6 + ii < 1000`` around the innermost
body. For every ``io`` but the last the guard holds for all values of the inner loops, so the
loop over ``io`` is cut in two: a main part where the guard is dropped (and the body can be
vectorized and unrolled cleanly) and a tail part that keeps it. Loops are visited outermost
first, so the cut happens at the loop that decides the guard, not once per inner iteration.
"""
from __future__ import annotations

from ..expr import (LE, LT, Add, And, FloorDiv, IntImm, Max, Min, Mul, Range, Sub, Var, binary)
from ..ir.function import PrimFunc
from ..ir.functor import Mutator, post_order_visit, substitute
from ..ir.stmt import For, IfThenElse, SeqStmt, seq


def _conjuncts(cond) -> list:
    if isinstance(cond, And):
        return _conjuncts(cond.a) + _conjuncts(cond.b)
    return [cond]


def _uses(expr, var: Var) -> bool:
    found = []
    post_order_visit(expr, lambda n: found.append(1) if isinstance(n, Var) and n.uid == var.uid
                     else None)
    return bool(found)


def _upper_split(cond, var: Var, inner: dict):
    """For ``lhs < rhs`` (or ``<=``) linear in ``var`` with a positive coefficient, the first
    value of ``var`` at which the condition may fail for some inner-loop values, else None."""
    from ..arith import bound_of, simplify
    if not isinstance(cond, (LT, LE)) or cond.a.dtype not in ("int32", "int64"):
        return None
    diff = simplify(binary(Sub, cond.a, cond.b))           # condition: diff < 0 (or <= 0)
    at0 = simplify(substitute(diff, {var: IntImm(0, var.dtype)}))
    coeff = simplify(binary(Sub, substitute(diff, {var: IntImm(1, var.dtype)}), at0))
    if not isinstance(coeff, IntImm) or coeff.value <= 0:
        return None
    # linear in var: diff - coeff * var - at0 must vanish
    residual = simplify(binary(Sub, binary(Sub, diff, binary(
        Mul, coeff, var)), at0))
    if not (isinstance(residual, IntImm) and residual.value == 0):
        return None
    if _uses(at0, var):
        return None
    if inner:
        rng = bound_of(at0, inner)
        if rng is None:
            return None
        worst = binary(Sub, binary(Add,
                                   rng.min, rng.extent), 1)
    else:
        worst = at0
    if any(_uses(worst, v) for v in inner):
        return None
    # need coeff * var + worst < 0 (or <= 0): var < ceil(-worst / coeff) (+1 for <=)
    slack = 0 if isinstance(cond, LT) else 1
    split = binary(FloorDiv, binary(Add, binary(Sub, 0, worst), coeff.value - 1 + slack),
                   coeff.value)
    return simplify(split)


class _Partition(Mutator):
    def visit_For(self, s):
        if s.kind in ("thread_binding",) or s.annotations:
            return self.generic_visit(s)
        split, conds = self._split_point(s)
        if split is None:
            return self.generic_visit(s)
        from ..arith import simplify
        start, end = s.min, simplify(binary(Add,
                                            s.min, s.extent))
        point = simplify(binary(Max, start, binary(Min, split, end)))
        main_body = _drop_conditions(s.body, conds)
        main = For(s.loop_var, start, simplify(binary(Sub, point, start)), s.kind, main_body,
                   s.thread_tag, s.annotations)
        tail_var = Var(s.loop_var.name, s.loop_var.dtype)
        tail = For(tail_var, point, simplify(binary(Sub, end, point)), s.kind,
                   substitute(s.body, {s.loop_var: tail_var}), s.thread_tag, s.annotations)
        return seq(self.generic_visit(main), self.generic_visit(tail))

    def _split_point(self, loop):
        """The smallest split point over the guards below ``loop`` that it decides."""
        from ..arith import simplify
        var = loop.loop_var
        found = []

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
                        if _uses(c, var):
                            point = _upper_split(c, var, inner)
                            if point is not None:
                                found.append((c, point))
                walk(stmt.then_case, inner)
                if stmt.else_case is not None:
                    walk(stmt.else_case, inner)
            elif isinstance(stmt, SeqStmt):
                for x in stmt.seq:
                    walk(x, inner)
            elif hasattr(stmt, "body"):
                walk(stmt.body, inner)

        walk(loop.body, {})
        if not found:
            return None, []
        point = found[0][1]
        for _, p in found[1:]:
            point = binary(Min, point, p)
        return simplify(point), [c for c, _ in found]


def _drop_conditions(stmt, conds):
    """Remove the given conjuncts (structurally) from the guards in ``stmt``."""

    class _Drop(Mutator):
        def visit_IfThenElse(self, s):
            s = self.generic_visit(s)
            if s.else_case is not None:
                return s
            kept = [c for c in _conjuncts(s.condition)
                    if not any(c.structural_equal(d) for d in conds)]
            if len(kept) == len(_conjuncts(s.condition)):
                return s
            if not kept:
                return s.then_case
            cond = kept[0]
            for c in kept[1:]:
                cond = And(cond, c, "bool")
            return IfThenElse(cond, s.then_case)

    return _Drop().visit(stmt)


def partition_loops(func: PrimFunc) -> PrimFunc:
    """Cut loops so that guards of non-divisible splits only run in the tail iterations."""
    return func.with_body(_Partition().visit(func.body))
