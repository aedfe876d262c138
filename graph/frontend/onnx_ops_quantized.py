"""ONNX converters for quantised and integer operators: QuantizeLinear / DequantizeLinear
(per tensor, per axis, blocked), MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv —
each composed of casts, zero-point subtraction, scaling and the float / int32 matmul or conv.
"""
from __future__ import annotations

import numpy as np

from ..ops.formats import FLOAT_FORMATS, INT_FORMATS
from .onnx import _CONVERTERS, _np_dtype, converter
from .onnx_dtypes import storage
from .onnx_ops_more import _axis, _const, _opt, _unsupported


# -- quantisation -----------------------------------------------------------------------------

def _per_axis(node, t, x, axis, block):
    """``t`` (a scale or zero point) shaped to broadcast against ``x``."""
    if t.type.ndim == 0 or t.type.size == 1 and not block:
        return node.call("reshape", (t,), newshape=()) if t.type.ndim else t
    if block:
        picks = _const(node, np.arange(x.type.shape[axis]) // block, np.int64)
        return node.call("gather", (t, picks), axis=axis)
    shape = [1] * x.type.ndim
    shape[axis] = t.type.shape[0]
    return node.call("reshape", (t,), newshape=tuple(shape))


_INT_RANGES = {d: (np.iinfo(d).min, np.iinfo(d).max) for d in
               ("int8", "uint8", "int16", "uint16", "int32", "uint32")}


@converter("DequantizeLinear")
def _dequantize(node, inputs, attrs):
    x, scale = inputs[0], inputs[1]
    zp = inputs[2] if len(inputs) > 2 else None
    axis = _axis(int(attrs.get("axis", 1)), max(x.type.ndim, 1))
    block = int(attrs.get("block_size", 0))
    out = scale.type.dtype
    if "output_dtype" in attrs and attrs["output_dtype"]:
        out = str(_np_dtype(attrs["output_dtype"]))
    wide = "float32" if out != "float64" else out
    v = node.call("cast", (x,), dtype=wide)
    if zp is not None:
        v = node.call("subtract", (v, node.call("cast", (_per_axis(node, zp, x, axis, block),),
                                               dtype=wide)))
    s = _per_axis(node, scale, x, axis, block)
    v = node.call("multiply", (v, node.call("cast", (s,), dtype=wide)))
    return v if out == wide else node.call("cast", (v,), dtype=out)


@converter("QuantizeLinear")
def _quantize(node, inputs, attrs):
    x, scale = inputs[0], inputs[1]
    zp = inputs[2] if len(inputs) > 2 else None
    axis = _axis(int(attrs.get("axis", 1)), max(x.type.ndim, 1))
    block = int(attrs.get("block_size", 0))
    out = "uint8"
    if zp is not None:  # the zero point's ONNX type (int4, float8, ... travel in storage)
        out = (node.formats[2] if len(node.formats) > 2 else None) or zp.type.dtype
    if attrs.get("output_dtype"):
        out = str(_np_dtype(attrs["output_dtype"]))
    to_float = out in FLOAT_FORMATS or out.startswith("float8")
    if out not in _INT_RANGES and out not in INT_FORMATS and not to_float:
        raise _unsupported(node, f"quantizing to {out} is not supported")
    if to_float and out not in FLOAT_FORMATS:
        raise _unsupported(node, f"quantizing to {out} is not supported")
    wide = "float64" if x.type.dtype == "float64" else "float32"
    v = node.call("cast", (x,), dtype=wide) if x.type.dtype != wide else x
    s = node.call("cast", (_per_axis(node, scale, x, axis, block),), dtype=wide)
    v = node.call("divide", (v, s))
    if not to_float:
        v = node.call("round", (v,))
    if zp is not None:
        v = node.call("add", (v, node.call("cast", (_per_axis(node, zp, x, axis, block),),
                                          dtype=wide)))
    if to_float:  # float8 / float4: rounded to the format, saturating unless told not to
        saturate = int(attrs.get("saturate", 1)) if out.startswith("float8") else 0
        return node.call("round_to_format", (v,), format=out, saturate=saturate)
    if out in INT_FORMATS:
        f = INT_FORMATS[out]
        lo, hi = f.low, f.low + (1 << f.bits) - 1
        v = node.call("clip", (v,), min=float(lo), max=float(hi))
        return node.call("cast", (v,), dtype=storage(out))
    lo, hi = _INT_RANGES[out]
    v = node.call("clip", (v,), min=float(lo), max=float(hi))
    return node.call("cast", (v,), dtype=out)


# -- integer and quantised matmul / conv ------------------------------------------------------

def _minus_zero_point(node, x, zp, dtype, axis_shape=None):
    v = node.call("cast", (x,), dtype=dtype)
    if zp is None:
        return v
    z = node.call("cast", (zp,), dtype=dtype)
    if axis_shape is not None and zp.type.size > 1:
        z = node.call("reshape", (z,), newshape=axis_shape)
    elif zp.type.ndim:
        z = node.call("reshape", (z,), newshape=())
    return node.call("subtract", (v, z))


@converter("MatMulInteger")
def _matmul_integer(node, inputs, attrs):
    a, b = inputs[0], inputs[1]
    a = _minus_zero_point(node, a, _opt(inputs, 2), "int32", (a.type.shape[-2], 1))
    b = _minus_zero_point(node, b, _opt(inputs, 3), "int32")
    return _CONVERTERS["MatMul"](node, [a, b], {})


@converter("ConvInteger")
def _conv_integer(node, inputs, attrs):
    x, w = inputs[0], inputs[1]
    x = _minus_zero_point(node, x, _opt(inputs, 2), "int32")
    w = _minus_zero_point(node, w, _opt(inputs, 3), "int32",
                          (w.type.shape[0],) + (1,) * (w.type.ndim - 1))
    return _CONVERTERS["Conv"](node, [x, w], attrs)


def _dequant_to(node, x, scale, zp, shape):
    v = _minus_zero_point(node, x, zp, "float32", shape)
    s = node.call("cast", (scale,), dtype="float32")
    s = node.call("reshape", (s,), newshape=shape if scale.type.size > 1 else ())
    return node.call("multiply", (v, s))


def _requantize(node, y, scale, zp, shape):
    s = node.call("reshape", (scale,), newshape=shape if scale.type.size > 1 else ())
    v = node.call("round", (node.call("divide", (y, node.call("cast", (s,), dtype="float32"))),))
    if zp is not None:
        z = node.call("reshape", (zp,), newshape=shape if zp.type.size > 1 else ())
        v = node.call("add", (v, node.call("cast", (z,), dtype="float32")))
    out = zp.type.dtype if zp is not None else "uint8"
    lo, hi = _INT_RANGES[out]
    return node.call("cast", (node.call("clip", (v,), min=float(lo), max=float(hi)),),
                     dtype=out)


@converter("QLinearMatMul")
def _qlinear_matmul(node, inputs, attrs):
    a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp = (inputs + [None] * 8)[:8]
    m, n = a.type.shape[-2], b.type.shape[-1]
    fa = _dequant_to(node, a, a_s, a_zp, (m, 1))
    fb = _dequant_to(node, b, b_s, b_zp, (1, n))
    y = _CONVERTERS["MatMul"](node, [fa, fb], {})
    return _requantize(node, y, y_s, y_zp, (1, n))


@converter("QLinearConv")
def _qlinear_conv(node, inputs, attrs):
    x, x_s, x_zp, w, w_s, w_zp, y_s, y_zp = inputs[:8]
    bias = _opt(inputs, 8)
    oc = w.type.shape[0]
    fx = _dequant_to(node, x, x_s, x_zp, ())
    fw = _dequant_to(node, w, w_s, w_zp, (oc,) + (1,) * (w.type.ndim - 1))
    y = _CONVERTERS["Conv"](node, [fx, fw], attrs)
    if bias is not None:  # int32 bias in units of x_scale * w_scale
        scale = node.call("multiply", (node.call("cast", (x_s,), dtype="float32"),
                                       node.call("cast", (w_s,), dtype="float32")))
        fb = node.call("multiply", (node.call("cast", (bias,), dtype="float32"), scale))
        y = node.call("add", (y, node.call("reshape", (fb,), newshape=(
            1, oc) + (1,) * (y.type.ndim - 2))))
    return _requantize(node, y, y_s, y_zp, (1, oc) + (1,) * (y.type.ndim - 2))
