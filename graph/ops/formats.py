"""Narrow number formats the code generator has no type for (bfloat16, the float8 variants,
float4_e2m1fn, int4 / uint4 / int2 / uint2), carried in a wide dtype.

A tensor of such a format lives in the graph as its *storage* dtype (float32 for the float
formats, int8 / uint8 for the small integers) holding only values the format can represent.
``round_to_format`` is the cast into the format: it rounds (or wraps) each element to the
nearest value of the format, exactly as ``ml_dtypes`` does (NumPy's ``astype``), optionally
saturating (ONNX ``saturate=1``: out-of-range values clamp to the largest finite value), and
gives the storage dtype. Decoding is a plain ``cast`` of the storage value.

Example::

    register(...)  # done on import
    Call("round_to_format", (x,), {"format": "float8_e4m3fn", "saturate": 1})
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import tensorlang as tl
from tensorlang import dtype as dt
from tensorlang.errors import DTypeError
from tensorlang.expr import const
from tensorlang.tensor import compute

from ..ir import TensorType
from . import register


@dataclass(frozen=True)
class FloatFormat:
    """A small float format: mantissa bits, smallest normal exponent, largest finite value,
    whether it has infinities / NaN / a negative zero."""
    nmant: int
    minexp: int
    max: float
    has_inf: bool
    has_nan: bool
    negative_zero: bool


@dataclass(frozen=True)
class IntFormat:
    """A small two's-complement (or unsigned) integer format of ``bits`` bits."""
    bits: int
    signed: bool

    @property
    def low(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0


def _float_format(name: str) -> FloatFormat:
    import ml_dtypes
    d = np.dtype(getattr(ml_dtypes, name))
    info = ml_dtypes.finfo(d)
    special = np.array([np.inf, np.nan, -0.0], np.float32).astype(d).astype(np.float32)
    return FloatFormat(int(info.nmant), int(info.minexp), float(info.max),
                       bool(np.isinf(special[0])), bool(np.isnan(special[1])),
                       bool(np.signbit(special[2])))


FLOAT_FORMATS = ("bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
                 "float8_e5m2fnuz", "float4_e2m1fn")
INT_FORMATS = {"int4": IntFormat(4, True), "uint4": IntFormat(4, False),
               "int2": IntFormat(2, True), "uint2": IntFormat(2, False)}
E8M0 = "float8_e8m0fnu"  # powers of two only; rounded by its own rule
_FLOATS: dict = {}


def float_format(name: str) -> FloatFormat:
    if name not in _FLOATS:
        _FLOATS[name] = _float_format(name)
    return _FLOATS[name]


def storage_dtype(fmt: str) -> str:
    """The dtype that carries format ``fmt`` in the graph."""
    if fmt in FLOAT_FORMATS or fmt == E8M0:
        return "float32"
    if fmt in INT_FORMATS:
        return "int8" if INT_FORMATS[fmt].signed else "uint8"
    raise DTypeError(f"round_to_format: unknown format {fmt!r}; known: "
                     f"{sorted(FLOAT_FORMATS + tuple(INT_FORMATS) + (E8M0,))}")


def _round_float(x, f: FloatFormat, saturate: bool):
    """``x`` (float64) rounded to the nearest value of ``f``, halves to even."""
    zero, one = const(0.0, "float64"), const(1.0, "float64")
    a = abs(x)
    # the exponent of a (clamped to the subnormal range), log2 corrected by exact powers of 2
    e = tl.max(tl.floor(tl.log2(a)), const(float(f.minexp), "float64"))
    e = tl.select(tl.all(a < tl.exp2(e), e > const(float(f.minexp), "float64")), e - one, e)
    e = tl.select(a >= tl.exp2(e + one), e + one, e)
    quantum = tl.exp2(e - const(float(f.nmant), "float64"))
    r = tl.round(a / quantum) * quantum
    big = const(f.max, "float64")
    inf, nan = const(np.inf, "float64"), const(np.nan, "float64")
    if saturate or not (f.has_inf or f.has_nan):
        overflow = big
    else:
        overflow = inf if f.has_inf else nan
    r = tl.select(r > big, overflow, r)
    r = tl.select(tl.isinf(a), overflow if not f.has_inf or saturate else inf, r)
    r = tl.select(x < zero, -r, r)
    if not f.negative_zero:
        r = tl.select(r == zero, zero, r)
    return tl.select(tl.isnan(x), nan if f.has_nan else const(-0.0, "float64"), r)


def _round_e8m0(x, saturate: bool, round_mode: str):
    """``x`` (float32) as float8_e8m0fnu (a power of two 2**-127 .. 2**127, or NaN), as ONNX
    defines the cast: from the float32 exponent, ``up`` adding one when there is a fraction."""
    one = const(1.0, "float64")
    a = abs(tl.cast(x, "float64"))
    tiny = const(2.0 ** -126, "float64")
    e = tl.floor(tl.log2(tl.max(a, tiny)))
    e = tl.select(a < tl.exp2(e), e - one, e)
    e = tl.select(a >= tl.exp2(e + one), e + one, e)
    biased = tl.select(a < tiny, const(0.0, "float64"), e + const(127.0, "float64"))
    if round_mode == "up":
        exact = tl.select(a < tiny, a == const(0.0, "float64"), a == tl.exp2(e))
        bump = tl.logical_not(exact)
        if saturate:
            bump = tl.all(bump, biased < const(254.0, "float64"))
        biased = tl.select(bump, biased + one, biased)
    nan = const(np.nan, "float64")
    r = tl.select(biased > const(254.0, "float64"), nan,
                  tl.exp2(biased - const(127.0, "float64")))
    return tl.select(tl.isfinite(a), r, nan)


def _wrap_int(x, f: IntFormat):
    """``x`` truncated toward zero and wrapped into ``f``'s range (NaN and infinities give 0)."""
    span, low = 1 << f.bits, f.low
    if dt.is_float(x.dtype):
        x = tl.cast(x, "float64")
        t = tl.select(tl.isfinite(x), tl.trunc(x), const(0.0, "float64"))
        s, lo = const(float(span), "float64"), const(float(low), "float64")
        return t - s * tl.floor((t - lo) / s)
    x = tl.cast(x, "int64")
    return tl.floormod(x - const(low, "int64"), const(span, "int64")) + const(low, "int64")


def _infer(types, attrs):
    return TensorType(types[0].shape, storage_dtype(attrs["format"]))


def _compute(xs, attrs):
    x, fmt = xs[0], attrs["format"]
    out = storage_dtype(fmt)
    if fmt in INT_FORMATS:
        fn = lambda v: tl.cast(_wrap_int(v, INT_FORMATS[fmt]), out)  # noqa: E731
    elif fmt == E8M0:
        mode, saturate = attrs.get("round_mode", "up"), bool(attrs.get("saturate", 1))
        fn = lambda v: tl.cast(_round_e8m0(tl.cast(v, "float32"), saturate, mode), out)  # noqa
    else:
        f, saturate = float_format(fmt), bool(attrs.get("saturate", 0))
        fn = lambda v: tl.cast(_round_float(tl.cast(v, "float64"), f, saturate), out)  # noqa
    return compute(x.shape, lambda *i: fn(x(*i)), name="T_round_to_format", tag="elemwise")


# opaque: the rounding reads its input many times, so it is never inlined into (or fused
# with) neighbours, which would repeat their whole expression in each use
register("round_to_format", _infer, _compute, "opaque")

__all__ = ["E8M0", "FLOAT_FORMATS", "INT_FORMATS", "FloatFormat", "IntFormat", "float_format",
           "storage_dtype"]
