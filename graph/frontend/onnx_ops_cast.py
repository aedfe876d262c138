"""ONNX casts (registered on import): Cast and CastLike, including into the number formats the
graph carries in a storage dtype (``onnx_dtypes``), and BitCast: the same bits read as another
type of the same width.

The code generator has no reinterpreting cast, so the bits are computed: between integer types
of one width a plain cast (it wraps, keeping the bits), and between an IEEE float and the
integer of its width by taking the float apart into sign, exponent and mantissa (or putting
it together from them) in exact float64 / int64 arithmetic. NaNs come out as the quiet NaN
(their payload is not kept).
"""
from __future__ import annotations

import numpy as np

from ..ops.formats import E8M0
from .onnx import FORMAT_OPS, _np_dtype, converter
from .onnx_dtypes import format_of
from .onnx_ops_more import _const, _unsupported


def _cast_to(node, x, dtype):
    if x.type.dtype == "float64" and dtype == "float16":
        # through float32: the LLVM CPU backend crashes on a direct float64 -> float16 cast
        x = node.call("cast", (x,), dtype="float32")
    return node.call("cast", (x,), dtype=dtype)


def _cast_to_format(node, x, dtype, attrs):
    """Cast ``x`` to ``dtype``, which may be a format carried in a storage dtype."""
    fmt = format_of(dtype)
    if fmt is None:
        return _cast_to(node, x, dtype)
    if fmt not in FORMAT_OPS:
        raise _unsupported(node, f"casting to {fmt} is not supported")
    if x.type.dtype == "bool":
        x = node.call("cast", (x,), dtype="uint8")
    saturate = int(attrs.get("saturate", 1)) if fmt.startswith("float8") else 0
    if fmt == E8M0:
        mode = attrs.get("round_mode", "up")
        if mode not in ("up", "down"):
            raise _unsupported(node, f"round_mode {mode!r} is not supported")
        return node.call("round_to_format", (x,), format=fmt, saturate=saturate,
                         round_mode=mode)
    return node.call("round_to_format", (x,), format=fmt, saturate=saturate)


@converter("Cast")
def _cast(node, inputs, attrs):
    return _cast_to_format(node, inputs[0], str(_np_dtype(attrs["to"])), attrs)


@converter("CastLike")
def _cast_like(node, inputs, attrs):
    like = node.formats[1] if len(node.formats) > 1 and node.formats[1] else \
        inputs[1].type.dtype
    return _cast_to_format(node, inputs[0], like, attrs)


# -- BitCast ----------------------------------------------------------------------------------

# float dtype -> (integer dtype of its width, mantissa bits, exponent bias, exponent all-ones)
_IEEE = {"float32": ("int32", 23, 127, 255), "float64": ("int64", 52, 1023, 2047)}


def _float_bits(node, x, fmt):
    """The bits of float ``x`` as a signed integer of its width."""
    itype, mant, bias, top = _IEEE[fmt]
    c = lambda v, d="float64": _const(node, v, d)  # noqa: E731
    call = node.call
    v = x if x.type.dtype == "float64" else call("cast", (x,), dtype="float64")
    a = call("abs", (v,))
    tiny = c(2.0 ** (1 - bias))
    log2 = call("divide", (call("log", (call("maximum", (a, tiny)),)), c(np.log(2.0))))
    e = call("floor", (log2,))  # corrected below where rounding put it one off
    two = c(2.0)
    e = call("where", (call("less", (a, call("pow", (two, e)))), call("subtract", (e, c(1.0))),
                       e))
    e = call("where", (call("greater_equal", (a, call("pow", (two, call("add", (e, c(1.0))))))),
                       call("add", (e, c(1.0))), e))
    normal = call("greater_equal", (a, tiny))
    scale = c(2.0 ** mant)
    # mantissa: a / 2**e * 2**mant - 2**mant (normal), a / 2**(1 - bias - mant) (subnormal)
    m_norm = call("subtract", (call("multiply", (call("divide", (a, call("pow", (two, e)))),
                                                 scale)), scale))
    m_sub = call("divide", (a, c(2.0 ** (1 - bias - mant))))
    finite = call("logical_not", (call("logical_or", (call("isnan", (v,)),
                                                      call("isinf", (v,)))),))
    mantissa = call("where", (normal, m_norm, m_sub))
    mantissa = call("where", (finite, mantissa,
                              call("where", (call("isnan", (v,)), c(2.0 ** (mant - 1)),
                                             c(0.0)))))
    exponent = call("where", (normal, call("add", (e, c(float(bias)))), c(0.0)))
    exponent = call("where", (finite, exponent, c(float(top))))
    m_int = call("cast", (mantissa,), dtype="int64")
    e_int = call("cast", (exponent,), dtype="int64")
    bits = call("add", (call("multiply", (e_int, c(1 << mant, "int64"))), m_int))
    negative = call("less", (v, c(0.0)))
    if itype == "int32":
        signed = call("subtract", (bits, c(1 << 31, "int64")))
        return call("cast", (call("where", (negative, signed, bits)),), dtype="int32")
    # int64: bits + (-2**63) without overflow, as two halves
    half = c(-(1 << 62), "int64")
    signed = call("add", (call("add", (bits, half)), half))
    return call("where", (negative, signed, bits))


def _bits_float(node, x, fmt):
    """Float ``fmt`` with the bits of integer ``x`` (of the same width)."""
    itype, mant, bias, top = _IEEE[fmt]
    c = lambda v, d="int64": _const(node, v, d)  # noqa: E731
    call = node.call
    b = call("cast", (x,), dtype="int64")
    negative = call("less", (b, c(0)))
    if itype == "int32":
        magnitude = call("where", (negative, call("add", (b, c(1 << 31))), b))
    else:
        half = c(1 << 62)
        magnitude = call("where", (negative, call("add", (call("add", (b, half)), half)), b))
    mantissa = call("mod", (magnitude, c(1 << mant)), fmod=0)
    exponent = call("divide", (call("subtract", (magnitude, mantissa)), c(1 << mant)))
    f = lambda v: _const(node, v, "float64")  # noqa: E731
    m = call("divide", (call("cast", (mantissa,), dtype="float64"), f(2.0 ** mant)))
    e = call("cast", (exponent,), dtype="float64")
    normal = call("multiply", (call("add", (m, f(1.0))),
                               call("pow", (f(2.0), call("subtract", (e, f(float(bias))))))))
    sub = call("multiply", (m, f(2.0 ** (1 - bias))))
    value = call("where", (call("equal", (exponent, c(0))), sub, normal))
    special = call("where", (call("equal", (mantissa, c(0))), f(np.inf), f(np.nan)))
    value = call("where", (call("equal", (exponent, c(top))), special, value))
    value = call("where", (negative, call("neg", (value,)), value))
    return value if fmt == "float64" else call("cast", (value,), dtype=fmt)


@converter("BitCast")
def _bitcast(node, inputs, attrs):
    x = inputs[0]
    src, dst = x.type.dtype, str(_np_dtype(attrs["to"]))
    size = lambda d: np.dtype(d).itemsize  # noqa: E731
    if size(src) != size(dst):
        raise _unsupported(node, f"{src} and {dst} differ in width")
    if src == dst:
        return x
    ints = lambda d: d == "bool" or np.issubdtype(np.dtype(d), np.integer)  # noqa: E731
    if ints(src) and ints(dst):
        if dst == "bool":
            return node.call("logical_not", (node.call("equal", (x, _const(node, 0, src))),))
        return node.call("cast", (x,), dtype=dst)
    if src in _IEEE and dst == _IEEE[src][0]:
        return _float_bits(node, x, src)
    if dst in _IEEE and ints(src) and size(src) == size(dst):
        return _bits_float(node, x, dst)
    raise _unsupported(node, f"bit casts from {src} to {dst} are not supported")


__all__: list = []
