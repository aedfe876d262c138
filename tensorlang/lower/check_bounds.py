"""Refuse compute bodies that read outside a tensor on every schedule.

An index such as ``A[i + 1]`` for ``i`` in ``[0, n)`` reads one element past the end of ``A``:
the kernel would read garbage or crash. When the index range over the stage's whole domain
provably leaves the tensor, and the read is not guarded by ``if_then_else`` / ``select`` (which
is how padding is written), lowering raises a ShapeError naming the stage, tensor and dimension.
Reads whose range cannot be decided (symbolic extents) are left alone.
"""
from __future__ import annotations

from ..errors import ShapeError
from ..expr import Add, Call, IntImm, Mul, PrimExpr, ProducerLoad, Reduce, Select, Sub, Var
from ..tensor import ComputeOp


def check_reads_in_bounds(sch, bodies) -> None:
    from ..arith import const_int_bound
    for stage in sch.stages:
        if not isinstance(stage.op, ComputeOp) or stage.attach_type == "inline":
            continue
        ranges = {iv.var: iv.dom for iv in stage.op.axis}
        ranges.update({iv.var: iv.dom for iv in stage.op.reduce_axis})
        for load in _unguarded_loads(bodies[stage]):
            tensor = load.producer
            for dim, (index, extent) in enumerate(zip(load.indices, tensor.shape)):
                if not _affine_in_distinct_vars(index, ranges):
                    continue  # interval bounds would only be an over-estimate
                lo, hi = const_int_bound(index, ranges)
                size = extent.value if isinstance(extent, IntImm) else None
                if (lo is not None and lo < 0) or \
                        (size is not None and hi is not None and hi >= size):
                    raise ShapeError(
                        f"stage {stage.name} reads {tensor.name} out of range: index {dim} "
                        f"({index}) runs over [{lo}, {hi}] but {tensor.name} has "
                        f"{size if size is not None else extent} elements in that dimension; "
                        "guard the read with tl.if_then_else if it is padding")


def _unguarded_loads(exprs) -> list:
    """ProducerLoads that are evaluated unconditionally (not inside a conditional branch)."""
    found = []

    def walk(e):
        if isinstance(e, ProducerLoad):
            found.append(e)
            for i in e.indices:
                walk(i)
            return
        if isinstance(e, Reduce):
            for s in e.source:
                if not _has_where(e):
                    walk(s)
            return
        if isinstance(e, Call) and e.op == "if_then_else":
            walk(e.args[0])
            return
        if isinstance(e, Select):
            walk(e.condition)
            return
        for name in getattr(e, "__dataclass_fields__", {}):
            value = getattr(e, name)
            for v in (value if isinstance(value, tuple) else (value,)):
                if isinstance(v, PrimExpr):
                    walk(v)

    for e in exprs:
        walk(e)
    return found


def _has_where(reduce: Reduce) -> bool:
    cond = reduce.condition
    return not (isinstance(cond, IntImm) and cond.value == 1)


def _affine_in_distinct_vars(index, ranges) -> bool:
    """``c0 + c1*v1 + ...`` with each loop variable at most once: its interval is exact."""
    seen = set()

    def ok(e) -> bool:
        if isinstance(e, IntImm):
            return True
        if isinstance(e, Var):
            if e.uid in seen or e not in ranges:
                return False
            seen.add(e.uid)
            return True
        if isinstance(e, (Add, Sub)):
            return ok(e.a) and ok(e.b)
        if isinstance(e, Mul):
            return (isinstance(e.a, IntImm) and ok(e.b)) or (isinstance(e.b, IntImm) and ok(e.a))
        return False

    return ok(index)
