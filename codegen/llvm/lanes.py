"""One lane of a vector expression, as a scalar expression.

Used where a vector operation must run lane by lane, e.g. an ``if_then_else`` with a vector
condition: each lane evaluates only the branch its condition selects.
"""
from __future__ import annotations

from tensorlang import dtype as dt
from tensorlang import expr as E
from tensorlang.errors import UnsupportedOpError
from tensorlang.ir.functor import substitute


def lane_of(e, lane: int):
    """The scalar expression that computes lane ``lane`` of vector expression ``e``."""
    if dt.lanes_of(e.dtype) == 1:
        return e
    element = dt.element_of(e.dtype)
    if isinstance(e, E.Ramp):
        if lane == 0:
            return e.base
        offset = E.Mul(e.stride, E.IntImm(lane, e.stride.dtype), e.stride.dtype)
        return E.Add(e.base, offset, e.base.dtype)
    if isinstance(e, E.Broadcast):
        return e.value
    if isinstance(e, E.BufferLoad):
        (index,) = e.indices
        if dt.lanes_of(index.dtype) == 1:  # a contiguous access from a scalar start
            index = E.Add(index, E.IntImm(lane, index.dtype), index.dtype) if lane else index
        else:
            index = lane_of(index, lane)
        return E.BufferLoad(e.buffer, (index,), element)
    if isinstance(e, E.BinaryOp):
        return type(e)(lane_of(e.a, lane), lane_of(e.b, lane), element)
    if isinstance(e, E.Not):
        return E.Not(lane_of(e.a, lane), element)
    if isinstance(e, E.Select):
        return E.Select(lane_of(e.condition, lane), lane_of(e.true_value, lane),
                        lane_of(e.false_value, lane), element)
    if isinstance(e, E.Cast):
        return E.Cast(lane_of(e.value, lane), element)
    if isinstance(e, E.Call):
        return E.Call(e.op, tuple(lane_of(a, lane) for a in e.args), element, e.extern)
    if isinstance(e, E.Let):
        var = E.Var(f"{e.var.name}_lane{lane}", dt.element_of(e.var.dtype))
        body = substitute(e.body, {e.var: var})
        return E.Let(var, lane_of(e.value, lane), lane_of(body, lane), element)
    raise UnsupportedOpError(f"cannot split {type(e).__name__} of dtype {e.dtype} into lanes")
