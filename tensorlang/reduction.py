"""Reductions: ``sum``/``max``/``min``/``prod`` and user-defined ``comm_reducer``s."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import dtype as dt
from .errors import DTypeError, UserError
from .expr import (REDUCE, IterVar, Max, Min, PrimExpr, Reduce, Var, as_bool, binary, const,
                   convert)


@dataclass(frozen=True, eq=False)
class CommReducer:
    """A commutative, associative combination ``result = f(lhs, rhs)`` with its identity."""

    name: str
    lhs: tuple
    rhs: tuple
    result: tuple
    identity: tuple

    def combine(self, lhs_values, rhs_values) -> tuple:
        """The result expressions with the given values put in for lhs / rhs."""
        from .ir.functor import substitute
        mapping = dict(zip(self.lhs, lhs_values))
        mapping.update(zip(self.rhs, rhs_values))
        return tuple(substitute(r, mapping) for r in self.result)


def max_value(dtype: str) -> PrimExpr:
    """The largest value of ``dtype`` (``inf`` for floats, as reductions need)."""
    import numpy as np
    dtype = dt.normalize(dtype)
    if dt.is_float(dtype):
        return const(float("inf"), dtype)
    if dt.is_bool(dtype):
        return const(True, "bool")
    return const(int(np.iinfo(dtype).max), dtype)


def min_value(dtype: str) -> PrimExpr:
    """The smallest value of ``dtype`` (``-inf`` for floats)."""
    import numpy as np
    dtype = dt.normalize(dtype)
    if dt.is_float(dtype):
        return const(float("-inf"), dtype)
    if dt.is_bool(dtype):
        return const(False, "bool")
    return const(int(np.iinfo(dtype).min), dtype)


def _axes(axis, what: str) -> tuple:
    if axis is None:
        raise UserError(f"{what}: give the reduction axis, e.g. axis=k")
    axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    for a in axes:
        if not isinstance(a, IterVar) or a.kind != REDUCE:
            raise UserError(f"{what}: axis {a} is not a reduce_axis; make it with "
                            "tl.reduce_axis((begin, end), name=...)")
    return axes


def comm_reducer(fcombine: Callable, fidentity: Callable, name: str = "reduce"):
    """Make a reduction from a combine function and an identity.

    Example::

        mysum = tl.comm_reducer(lambda x, y: x + y, lambda t: tl.const(0, t), name="mysum")
        B = tl.compute((n,), lambda i: mysum(A[i, k], axis=k))

    For several values (argmax), ``fcombine`` takes and returns tuples and ``fidentity`` takes
    one dtype per value; call the reducer with a tuple of expressions.
    """

    def reducer(expr, axis=None, where=None, init=None):
        multi = isinstance(expr, (tuple, list))
        sources = tuple(convert(e) for e in (expr if multi else (expr,)))
        dtypes = [s.dtype for s in sources]
        lhs = tuple(Var(f"{name}_x{i}", d) for i, d in enumerate(dtypes))
        rhs = tuple(Var(f"{name}_y{i}", d) for i, d in enumerate(dtypes))
        result = fcombine(lhs, rhs) if multi else fcombine(lhs[0], rhs[0])
        result = tuple(result) if multi else (result,)
        identity = fidentity(*dtypes)
        identity = tuple(identity) if multi else (identity,)
        result = tuple(convert(r) for r in result)
        identity = tuple(convert(c) if not isinstance(c, (int, float, bool)) else const(c, d)
                         for c, d in zip(identity, dtypes))
        if len(result) != len(sources) or len(identity) != len(sources):
            raise UserError(f"comm_reducer {name}: fcombine and fidentity must give "
                            f"{len(sources)} values, one per reduced value")
        for r, d in zip(result, dtypes):
            if r.dtype != d:
                raise DTypeError(f"comm_reducer {name}: fcombine gives {r.dtype} for a {d} "
                                 "value; cast inside fcombine")
        combiner = CommReducer(name, lhs, rhs, result, identity)
        axes = _axes(axis, name)
        cond = as_bool(convert(where)) if where is not None else const(True, "bool")
        inits = ()
        if init is not None:
            inits = tuple(convert(v) for v in (init if multi else (init,)))
        reduces = tuple(Reduce(combiner, sources, axes, cond, i, inits, d)
                        for i, d in enumerate(dtypes))
        return reduces if multi else reduces[0]

    reducer.__name__ = name
    reducer.__doc__ = f"The {name} reduction over ``axis`` (made by tl.comm_reducer)."
    return reducer


def _simple(name, combine, identity):
    made = comm_reducer(combine, identity, name=name)

    def reduction(expr, axis=None, where=None, init=None, *args):
        if args or (axis is not None and not _is_axis(axis)):
            # tl.max(a, b): the elementwise maximum of two values, as in TVM
            if where is not None:
                raise UserError(f"{name}: where= only applies to reductions")
            if name in ("max", "min"):
                return binary(Max if name == "max" else Min, expr, axis)
            raise UserError(f"{name}: the second argument must be a reduce_axis")
        return made(expr, axis=axis, where=where, init=init)

    reduction.__name__ = name
    reduction.__doc__ = (f"``tl.{name}(expr, axis=k, where=cond)`` reduces over k"
                         + ("; ``tl.{0}(a, b)`` is the elementwise {0} of two values."
                            .format(name) if name in ("max", "min") else "."))
    return reduction


def _is_axis(axis) -> bool:
    if isinstance(axis, IterVar):
        return axis.kind == REDUCE
    if isinstance(axis, (list, tuple)):
        return bool(axis) and all(isinstance(a, IterVar) and a.kind == REDUCE for a in axis)
    return False


sum = _simple("sum", lambda x, y: x + y, lambda t: const(0, t))
prod = _simple("prod", lambda x, y: x * y, lambda t: const(1, t))
max = _simple("max", lambda x, y: binary(Max, x, y), min_value)
min = _simple("min", lambda x, y: binary(Min, x, y), max_value)
