"""Reductions over axes: sum, max, min, prod, mean, argmax, argmin.

``axis`` is an int, a tuple of ints, or None (every axis); ``keepdims`` keeps the reduced
dimensions with extent 1, as in NumPy. Each reduction is one ``tl.compute`` whose body is a
reduction (mean adds a second, elementwise stage), so ``rfactor`` / ``cache_write`` apply.

Example::

    import tensorlang as tl
    from tensorlang import ops
    A = tl.placeholder((8, 100), name="A")
    S = ops.reduce.sum(A, axis=1)                  # shape (8,)
    I = ops.reduce.argmax(A, axis=1)               # int32 indices, first maximum wins
"""
from __future__ import annotations

from typing import Callable

from .. import dtype as dt
from .. import math as tm
from .. import reduction as red
from ..expr import Min, binary, cast as _cast
from ..tensor import Tensor, compute, reduce_axis
from ._util import check_tensor, normalize_axes, normalize_axis, product
from .transform import ravel


def _plan(op: str, a: Tensor, axis, keepdims: bool):
    """Reduced axes, their reduce_axis variables and the output shape."""
    check_tensor(op, "a", a)
    axes = normalize_axes(op, axis, a.ndim, a.name)
    rvs = [reduce_axis((0, a.shape[d]), name=f"k{d}") for d in axes]
    shape = [1 if d in axes else a.shape[d] for d in range(a.ndim)
             if keepdims or d not in axes]
    return axes, rvs, shape


def _read_index(a: Tensor, axes, rvs, keepdims: bool, out_index) -> list:
    """The input index for an output index, with reduced dimensions at their reduce vars."""
    out_iter, rv_iter = iter(out_index), iter(rvs)
    idx = []
    for d in range(a.ndim):
        if d in axes:
            idx.append(next(rv_iter).var)
            if keepdims:
                next(out_iter)
        else:
            idx.append(next(out_iter))
    return idx


def _reduce(op: str, a: Tensor, axis, keepdims: bool, reducer: Callable, name: str,
            dtype: str | None = None) -> Tensor:
    axes, rvs, shape = _plan(op, a, axis, keepdims)

    def value(*i):
        v = a(*_read_index(a, axes, rvs, keepdims, i))
        return _cast(v, dtype) if dtype is not None else v

    if not rvs:  # nothing to reduce: NumPy returns the values unchanged
        return compute(shape, value, name=name, tag="reduce")
    return compute(shape, lambda *i: reducer(value(*i), axis=rvs), name=name, tag="reduce")


def sum(a: Tensor, axis=None, keepdims: bool = False, name: str = "T_sum") -> Tensor:  # noqa: A001
    """Sum over ``axis``. Example: ``S = ops.reduce.sum(A, axis=(0, 2), keepdims=True)``."""
    return _reduce("sum", a, axis, keepdims, red.sum, name)


def max(a: Tensor, axis=None, keepdims: bool = False, name: str = "T_max") -> Tensor:  # noqa: A001
    """Maximum over ``axis``. Example: ``M = ops.reduce.max(A, axis=-1)``."""
    return _reduce("max", a, axis, keepdims, red.max, name)


def min(a: Tensor, axis=None, keepdims: bool = False, name: str = "T_min") -> Tensor:  # noqa: A001
    """Minimum over ``axis``. Example: ``M = ops.reduce.min(A, axis=0)``."""
    return _reduce("min", a, axis, keepdims, red.min, name)


def prod(a: Tensor, axis=None, keepdims: bool = False, name: str = "T_prod") -> Tensor:
    """Product over ``axis``. Example: ``P = ops.reduce.prod(A, axis=1)``."""
    return _reduce("prod", a, axis, keepdims, red.prod, name)


def mean(a: Tensor, axis=None, keepdims: bool = False, dtype: str | None = None,
         name: str = "T_mean") -> Tensor:
    """Mean over ``axis``: a sum stage (``<name>_sum``) and a divide stage. Integer inputs
    average in float32 unless ``dtype`` says otherwise.

    Example: ``M = ops.reduce.mean(A, axis=(2, 3), keepdims=True)``."""
    check_tensor("mean", "a", a)
    dtype = dt.normalize(dtype) if dtype else (a.dtype if dt.is_float(a.dtype) else "float32")
    axes = normalize_axes("mean", axis, a.ndim, a.name)
    total = _reduce("mean", a, axis, keepdims, red.sum, f"{name}_sum", dtype)
    count = product([a.shape[d] for d in axes])
    return compute(total.shape, lambda *i: total(*i) / _cast(count, dtype), name=name,
                   tag="elemwise")


def _arg_reducer(is_max: bool) -> Callable:
    """(index, value) pairs combined so that the best value wins and ties keep the smaller
    index (NumPy's first occurrence), whatever order the loops combine them in. NaN counts as
    the best value, as in NumPy."""

    def fcombine(lhs, rhs):
        li, lv = lhs
        ri, rv = rhs
        better = lv > rv if is_max else lv < rv
        tie = lv == rv
        if dt.is_float(lv.dtype):
            better = better | (tm.isnan(lv) & ~tm.isnan(rv))
            tie = tie | (tm.isnan(lv) & tm.isnan(rv))
        index = tm.select(better, li, tm.select(tie, binary(Min, li, ri), ri))
        value = tm.select(better | tie, lv, rv)
        return index, value

    def fidentity(t_index, t_value):
        worst = red.min_value(t_value) if is_max else red.max_value(t_value)
        return red.max_value(t_index), worst

    return red.comm_reducer(fcombine, fidentity, name="argmax" if is_max else "argmin")


def _arg(op: str, is_max: bool, a: Tensor, axis, keepdims: bool, dtype: str,
         name: str) -> Tensor:
    check_tensor(op, "a", a)
    dtype = dt.normalize(dtype)
    if axis is not None:
        axis = normalize_axis(op, axis, a.ndim, a.name)
    axes, rvs, shape = _plan(op, a, axis, keepdims)
    reducer = _arg_reducer(is_max)

    def body(*i):
        idx = _read_index(a, axes, rvs, keepdims, i)
        flat = ravel([rv.var for rv in rvs], [a.shape[d] for d in axes])
        flat = _cast(flat, dtype) if flat.dtype != dtype else flat
        return reducer((flat, a(*idx)), axis=rvs)

    index, _value = compute(shape, body, name=name, tag="reduce,comm_reduce_idx")
    return index


def argmax(a: Tensor, axis: int | None = None, keepdims: bool = False, dtype: str = "int32",
           name: str = "T_argmax") -> Tensor:
    """Index of the maximum along ``axis`` (into the flattened tensor when None); ties give
    the first occurrence, like ``np.argmax``. The stage has two outputs, the index (returned)
    and the value (``index.op.output(1)``).

    Example: ``I = ops.reduce.argmax(A, axis=1)``."""
    return _arg("argmax", True, a, axis, keepdims, dtype, name)


def argmin(a: Tensor, axis: int | None = None, keepdims: bool = False, dtype: str = "int32",
           name: str = "T_argmin") -> Tensor:
    """Index of the minimum along ``axis`` (first occurrence), like ``np.argmin``; see argmax.

    Example: ``I = ops.reduce.argmin(A, axis=0)``."""
    return _arg("argmin", False, a, axis, keepdims, dtype, name)


__all__ = ["sum", "max", "min", "prod", "mean", "argmax", "argmin"]
