"""Constant folding with the exact semantics of each dtype.

Integers fold exactly and then wrap to the dtype's width (two's complement), the way the
generated code computes them; truncating ``Div``/``Mod`` follow C, ``FloorDiv``/``FloorMod``
follow Python; a division by zero is never folded. Floats fold in the dtype's own precision with
NumPy (or ml_dtypes) scalars, so ``float16`` rounds like ``float16`` and NaN propagates as in
NumPy. Anything whose result the hardware does not pin down (float to int out of range, float8
conversions, transcendental functions) is left alone.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .. import dtype as dt
from ..expr import (Add, Broadcast, Div, EQ, FloatImm, FloorDiv, FloorMod, GE, GT, IntImm, LE,
                    LT, Max, Min, Mod, Mul, NE, PrimExpr, Sub)


@functools.lru_cache(maxsize=None)
def int_limits(dtype: str) -> tuple[int, int]:
    """Inclusive ``(min, max)`` of an integer or bool dtype (vectors: of one lane)."""
    base = dt.element_of(dtype)
    if dt.is_bool(base):
        return 0, 1
    bits = dt.bits(base)
    if dt.is_uint(base):
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


@functools.lru_cache(maxsize=None)
def is_index_type(dtype: str) -> bool:
    """Signed integer scalars: where the linear (ring) rewrites and bound rules apply."""
    return dt.lanes_of(dtype) == 1 and dt.is_int(dtype) and not dt.is_uint(dtype)


def holds(wide: str, narrow: str) -> bool:
    """Every value of the integer (or bool) dtype ``narrow`` is representable in ``wide``."""
    ints = (dt.is_int(wide) or dt.is_bool(wide)) and (dt.is_int(narrow) or dt.is_bool(narrow))
    if not ints or dt.lanes_of(wide) != dt.lanes_of(narrow):
        return False
    lo_w, hi_w = int_limits(wide)
    lo_n, hi_n = int_limits(narrow)
    return lo_w <= lo_n and hi_n <= hi_w


def wrap_int(value: int, dtype: str) -> int:
    """``value`` reduced to the dtype's range as the machine would (modulo 2**bits)."""
    lo, hi = int_limits(dtype)
    if lo <= value <= hi:
        return value
    if hi == 1 and lo == 0:  # bool
        return int(value != 0)
    span = hi - lo + 1
    return (value - lo) % span + lo


@functools.lru_cache(maxsize=None)
def numpy_type(dtype: str):
    """The NumPy scalar type of a float dtype, or None when we do not fold it."""
    base = dt.element_of(dtype)
    if base in ("float16", "float32", "float64"):
        return getattr(np, base)
    if base == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:  # pragma: no cover - ml_dtypes is a dependency
            return None
        return ml_dtypes.bfloat16
    return None  # float8: conversions are codegen's business


def make_int(value: int, dtype: str) -> IntImm:
    return IntImm(wrap_int(int(value), dtype), dtype)


def make_float(value, dtype: str) -> FloatImm:
    return FloatImm(float(value), dtype)


def truncdiv(x: int, y: int) -> int:
    """C division of Python ints (rounds toward zero)."""
    q = abs(x) // abs(y)
    return q if (x >= 0) == (y >= 0) else -q


def _tmod(x: int, y: int) -> int:
    return x - y * truncdiv(x, y)


_INT_OPS = {
    Add: lambda x, y: x + y,
    Sub: lambda x, y: x - y,
    Mul: lambda x, y: x * y,
    Div: lambda x, y: None if y == 0 else truncdiv(x, y),
    Mod: lambda x, y: None if y == 0 else _tmod(x, y),
    FloorDiv: lambda x, y: None if y == 0 else x // y,
    FloorMod: lambda x, y: None if y == 0 else x % y,
    Min: min,
    Max: max,
}

_CMP_OPS = {
    EQ: lambda x, y: x == y, NE: lambda x, y: x != y, LT: lambda x, y: x < y,
    LE: lambda x, y: x <= y, GT: lambda x, y: x > y, GE: lambda x, y: x >= y,
}

_FLOAT_OPS = {
    Add: lambda x, y: x + y,
    Sub: lambda x, y: x - y,
    Mul: lambda x, y: x * y,
    Div: lambda x, y: x / y,
    Min: np.minimum,
    Max: np.maximum,
}


def fold_binary(cls, a: PrimExpr, b: PrimExpr, dtype: str) -> PrimExpr | None:
    """The constant ``cls(a, b)`` of ``dtype`` when both are scalar constants, else None."""
    if isinstance(a, IntImm) and isinstance(b, IntImm):
        if cls in _CMP_OPS:
            return IntImm(int(_CMP_OPS[cls](a.value, b.value)), dtype)
        op = _INT_OPS.get(cls)
        if op is None or dt.is_float(dtype):
            return None
        value = op(a.value, b.value)
        return None if value is None else make_int(value, dtype)
    if isinstance(a, FloatImm) and isinstance(b, FloatImm):
        ntype = numpy_type(a.dtype)
        if ntype is None or a.dtype != b.dtype:
            return None
        x, y = ntype(a.value), ntype(b.value)
        if cls in _CMP_OPS:
            return IntImm(int(bool(_CMP_OPS[cls](x, y))), dtype)
        op = _FLOAT_OPS.get(cls)
        if op is None:
            return None
        with np.errstate(all="ignore"):
            value = ntype(op(x, y))
        return make_float(value, dtype)
    return None


def fold_cast(value: PrimExpr, dtype: str) -> PrimExpr | None:
    """``Cast(value, dtype)`` of a scalar constant, when the result is well defined."""
    if dt.lanes_of(dtype) != 1:
        return None
    if isinstance(value, IntImm):
        if dt.is_bool(dtype) or dt.is_int(dtype):
            return make_int(value.value, dtype)
        ntype = numpy_type(dtype)
        if ntype is None:
            return None
        with np.errstate(all="ignore"):
            return make_float(ntype(value.value), dtype)
    if isinstance(value, FloatImm):
        if numpy_type(value.dtype) is None:
            return None
        x = float(numpy_type(value.dtype)(value.value))
        if dt.is_bool(dtype):
            return IntImm(int(x != 0.0), "bool")  # NaN is true, as in C
        if dt.is_int(dtype):
            if not math.isfinite(x):
                return None
            truncated = int(x)
            lo, hi = int_limits(dtype)
            return IntImm(truncated, dtype) if lo <= truncated <= hi else None
        ntype = numpy_type(dtype)
        if ntype is None:
            return None
        with np.errstate(all="ignore"):
            return make_float(ntype(x), dtype)
    return None


def _float_unary(fn):
    def fold(x: FloatImm, dtype: str):
        ntype = numpy_type(x.dtype)
        if ntype is None or dtype != x.dtype:
            return None
        with np.errstate(all="ignore"):
            return make_float(ntype(fn(ntype(x.value))), dtype)
    return fold


def _float_test(fn):
    def fold(x: FloatImm, dtype: str):
        return IntImm(int(bool(fn(x.value))), dtype) if dt.is_bool(dtype) else None
    return fold


# Only functions whose result is exactly specified (correctly rounded or exact); exp, tanh, ...
# depend on the math library codegen calls and are left to run time.
_FLOAT_CALLS = {
    "fabs": _float_unary(np.abs), "floor": _float_unary(np.floor), "ceil": _float_unary(np.ceil),
    "trunc": _float_unary(np.trunc), "round": _float_unary(np.rint),
    "sqrt": _float_unary(np.sqrt),
    "isnan": _float_test(math.isnan), "isinf": _float_test(math.isinf),
    "isfinite": _float_test(math.isfinite),
}


def fold_call(op: str, args: tuple, dtype: str) -> PrimExpr | None:
    """Fold an intrinsic call on constants where the answer is exact."""
    if len(args) != 1:
        return None
    (x,) = args
    if isinstance(x, IntImm) and op == "abs" and dt.is_int(dtype):
        return make_int(abs(x.value), dtype)
    if isinstance(x, FloatImm) and op in _FLOAT_CALLS:
        return _FLOAT_CALLS[op](x, dtype)
    return None


# -- constants as values ---------------------------------------------------------------------

def const_value(e):
    """The Python value of a scalar constant or a broadcast constant, else None."""
    if isinstance(e, Broadcast):
        e = e.value
    if isinstance(e, (IntImm, FloatImm)):
        return e.value
    return None


def const_bool(e):
    v = const_value(e)
    return None if v is None or isinstance(e, FloatImm) else bool(v)


def splat(value: int, dtype: str) -> PrimExpr:
    lanes = dt.lanes_of(dtype)
    scalar = make_int(value, dt.element_of(dtype))
    return scalar if lanes == 1 else Broadcast(scalar, lanes, dtype)
