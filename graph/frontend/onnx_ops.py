"""Converters from ONNX operators to graph calls (registered on import by ``onnx.py``).

Each converter takes the node (``_Node``: name, opset, ``call``), its inputs (graph nodes, None
for an omitted optional input) and its attributes, and returns the graph node(s) of its outputs.
"""
from __future__ import annotations

import math

import numpy as np

from tensorlang.errors import UnsupportedOpError

from ..ir import Constant
from .onnx import _np_dtype, converter

_BINARY = {"Add": "add", "Sub": "subtract", "Mul": "multiply", "Div": "divide",
           "Max": "maximum", "Min": "minimum", "Sum": "add"}
_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log",
          "Sqrt": "sqrt", "Erf": "erf", "Neg": "neg", "Abs": "abs"}


@converter(*_BINARY)
def _binary(node, inputs, attrs):
    op = _BINARY[node.op_type]
    out = inputs[0]
    for x in inputs[1:]:  # Max / Min / Sum take any number of inputs
        out = node.call(op, (out, x))
    return out if len(inputs) > 1 else node.call("add", (out, node.scalar(0, out)))


@converter("Mean")
def _mean(node, inputs, attrs):
    out = inputs[0]
    for x in inputs[1:]:
        out = node.call("add", (out, x))
    return node.call("divide", (out, node.scalar(len(inputs), out)))


@converter("Pow")
def _pow(node, inputs, attrs):
    base, exponent = inputs
    if exponent.type.dtype != base.type.dtype:
        exponent = Constant(exponent.name, exponent.value.astype(base.type.dtype)) \
            if isinstance(exponent, Constant) else \
            node.call("cast", (exponent,), dtype=base.type.dtype)
    return node.call("pow", (base, exponent))


@converter(*_UNARY)
def _unary(node, inputs, attrs):
    return node.call(_UNARY[node.op_type], inputs[:1])


@converter("LeakyRelu")
def _leaky_relu(node, inputs, attrs):
    return node.call("leaky_relu", inputs[:1], alpha=float(attrs.get("alpha", 0.01)))


@converter("Gelu")
def _gelu(node, inputs, attrs):
    return node.call("gelu", inputs[:1], approximate=attrs.get("approximate", "none"))


@converter("Identity")
def _identity(node, inputs, attrs):
    return inputs[0]


@converter("Dropout")
def _dropout(node, inputs, attrs):
    """Inference: the output is the input and the optional mask is all ones (every element
    kept), a constant bool tensor as ONNX's reference implementation gives it for every opset
    (ONNX Runtime's kernels before opset 12 leave it zero)."""
    x = inputs[0]
    if len(node.proto.output) < 2 or not node.proto.output[1]:
        return x
    return [x, Constant(f"{node.name}_mask", np.ones(x.type.shape, bool))]


@converter("LRN")
def _lrn(node, inputs, attrs):
    return node.call("lrn", inputs[:1], size=int(attrs["size"]),
                     alpha=float(attrs.get("alpha", 1e-4)), beta=float(attrs.get("beta", 0.75)),
                     bias=float(attrs.get("bias", 1.0)))


@converter("Clip")
def _clip(node, inputs, attrs):
    x = inputs[0]
    if node.opset < 11:
        lo, hi = attrs.get("min"), attrs.get("max")
        return node.call("clip", (x,), min=_bound(lo), max=_bound(hi))
    bounds, out = [], x
    for pos, op in ((1, "maximum"), (2, "minimum")):
        b = inputs[pos] if len(inputs) > pos else None
        if b is None or isinstance(b, Constant):
            bounds.append(None if b is None else _bound(float(b.value)))
        else:  # a computed bound: elementwise max / min with it
            bounds.append(None)
            out = node.call(op, (out, b))
    if bounds == [None, None] and out is not x:
        return out
    return node.call("clip", (out,), min=bounds[0], max=bounds[1])


def _bound(v):
    return None if v is None or math.isinf(v) else float(v)


@converter("Cast")
def _cast(node, inputs, attrs):
    return node.call("cast", inputs[:1], dtype=str(_np_dtype(attrs["to"])))


@converter("Where")
def _where(node, inputs, attrs):
    return node.call("where", inputs)


# -- convolution and dense --------------------------------------------------------------------

def _auto_pads(node, attrs, in_dims, kernel, strides, dilations):
    """ONNX ``pads`` [begin..., end...] from ``pads`` or ``auto_pad``."""
    auto = attrs.get("auto_pad", "NOTSET")
    n = len(kernel)
    if auto in ("NOTSET", ""):
        return tuple(attrs.get("pads", [0] * 2 * n))
    if auto == "VALID":
        return (0,) * 2 * n
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise node.error(f"unknown auto_pad {auto!r}")
    begin, end = [], []
    for size, k, s, d in zip(in_dims, kernel, strides, dilations):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else large)
        end.append(large if auto == "SAME_UPPER" else small)
    return tuple(begin + end)


@converter("Conv")
def _conv(node, inputs, attrs):
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    kernel = tuple(attrs.get("kernel_shape", w.type.shape[2:]))
    if len(kernel) != 2 or x.type.ndim != 4:
        raise UnsupportedOpError(f"ONNX node {node.name!r} (Conv): only 2-d convolutions "
                                 f"(4-d NCHW input) are supported, got {x.type.ndim}-d input")
    strides = tuple(attrs.get("strides", (1, 1)))
    dilations = tuple(attrs.get("dilations", (1, 1)))
    pads = _auto_pads(node, attrs, x.type.shape[2:], kernel, strides, dilations)
    out = node.call("conv2d", (x, w), strides=strides, dilations=dilations, pads=pads,
                    groups=int(attrs.get("group", 1)))
    if bias is not None:
        shape = (1, bias.type.shape[0], 1, 1)
        bias = Constant(bias.name, bias.value.reshape(shape)) if isinstance(bias, Constant) \
            else node.call("reshape", (bias,), newshape=shape)
        out = node.call("add", (out, bias))
    return out


@converter("Gemm")
def _gemm(node, inputs, attrs):
    a, b = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    ta, tb = bool(attrs.get("transA", 0)), bool(attrs.get("transB", 0))
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    out = node.call("dense", (a, b)) if tb and not ta else \
        node.call("matmul", (a, b), transpose_a=ta, transpose_b=tb)
    if alpha != 1.0:
        out = node.call("multiply", (out, node.scalar(alpha, out)))
    if c is not None and beta != 0.0:
        if isinstance(c, Constant):
            c = Constant(c.name, (c.value * np.asarray(beta, c.value.dtype)).astype(c.value.dtype))
        elif beta != 1.0:
            c = node.call("multiply", (c, node.scalar(beta, c)))
        out = node.call("add", (out, c))
    return out


@converter("MatMul")
def _matmul(node, inputs, attrs):
    a, b = inputs
    squeeze = []
    if a.type.ndim == 1:
        a = node.call("unsqueeze", (a,), axes=(0,))
        squeeze.append(-2)
    if b.type.ndim == 1:
        b = node.call("unsqueeze", (b,), axes=(1,))
        squeeze.append(-1)
    out = node.call("matmul", (a, b))
    if squeeze:
        out = node.call("squeeze", (out,), axes=tuple(s + out.type.ndim for s in squeeze))
    return out


@converter("BatchNormalization")
def _batch_norm(node, inputs, attrs):
    if attrs.get("training_mode", 0):
        raise UnsupportedOpError(f"ONNX node {node.name!r} (BatchNormalization): "
                                 "training_mode=1 is not supported (inference only)")
    return node.call("batch_norm", inputs[:5], epsilon=float(attrs.get("epsilon", 1e-5)))


@converter("LayerNormalization")
def _layer_norm(node, inputs, attrs):
    args = [i for i in inputs if i is not None]
    if len(inputs) > 2 and inputs[2] is not None and inputs[1] is None:
        raise node.error("a bias without a scale is not supported")
    return node.call("layer_norm", args, axis=int(attrs.get("axis", -1)),
                     epsilon=float(attrs.get("epsilon", 1e-5)))


@converter("Softmax", "LogSoftmax")
def _softmax(node, inputs, attrs):
    x = inputs[0]
    op = "softmax" if node.op_type == "Softmax" else "log_softmax"
    ndim = x.type.ndim
    if node.opset >= 13:
        return node.call(op, (x,), axis=int(attrs.get("axis", -1)))
    axis = int(attrs.get("axis", 1))
    axis = axis + ndim if axis < 0 else axis
    if axis == ndim - 1:
        return node.call(op, (x,), axis=-1)
    # opset < 13: softmax of the input flattened to 2-d at ``axis``
    flat = node.call("flatten", (x,), axis=axis)
    return node.call("reshape", (node.call(op, (flat,), axis=1),), newshape=x.type.shape)


# -- pooling ------------------------------------------------------------------------------------

@converter("MaxPool", "AveragePool")
def _pool(node, inputs, attrs):
    x = inputs[0]
    kernel = tuple(attrs["kernel_shape"])
    if len(kernel) != 2 or x.type.ndim != 4:
        raise UnsupportedOpError(f"ONNX node {node.name!r} ({node.op_type}): only 2-d pooling "
                                 "is supported")
    if attrs.get("storage_order", 0):
        raise UnsupportedOpError(f"ONNX node {node.name!r}: storage_order=1 is not supported")
    strides = tuple(attrs.get("strides", (1, 1)))
    dilations = tuple(attrs.get("dilations", (1, 1)))
    pads = _auto_pads(node, attrs, x.type.shape[2:], kernel, strides, dilations)
    common = dict(kernel=kernel, strides=strides, dilations=dilations, pads=pads,
                  ceil_mode=bool(attrs.get("ceil_mode", 0)))
    if node.op_type == "MaxPool":
        return node.call("max_pool2d", (x,), **common)
    return node.call("avg_pool2d", (x,), count_include_pad=bool(attrs.get("count_include_pad",
                                                                          0)), **common)


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(node, inputs, attrs):
    if inputs[0].type.ndim != 4:
        raise UnsupportedOpError(f"ONNX node {node.name!r} ({node.op_type}): only 4-d input "
                                 "is supported")
    op = "global_avg_pool2d" if node.op_type == "GlobalAveragePool" else "global_max_pool2d"
    return node.call(op, inputs[:1])


# -- layout -------------------------------------------------------------------------------------

@converter("Reshape")
def _reshape(node, inputs, attrs):
    x = inputs[0]
    shape = [int(d) for d in node.const_value(inputs[1], "the target shape")]
    if not attrs.get("allowzero", 0):
        shape = [x.type.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    if shape.count(-1) > 1:
        raise node.error(f"the target shape {tuple(shape)} has more than one -1")
    if -1 in shape:
        known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
        if known == 0 or x.type.size % known:
            raise node.error(f"cannot reshape {x.type.shape} into {tuple(shape)}")
        shape[shape.index(-1)] = x.type.size // known
    return node.call("reshape", (x,), newshape=tuple(shape))


@converter("Flatten")
def _flatten(node, inputs, attrs):
    return node.call("flatten", inputs[:1], axis=int(attrs.get("axis", 1)))


@converter("Transpose")
def _transpose(node, inputs, attrs):
    perm = attrs.get("perm")
    return node.call("transpose", inputs[:1], axes=None if perm is None else tuple(perm))


@converter("Concat")
def _concat(node, inputs, attrs):
    return node.call("concat", [i for i in inputs if i is not None], axis=int(attrs["axis"]))


def _axes(node, inputs, attrs, input_from: int):
    """Axes from the attribute (older opsets) or the second input."""
    if node.opset < input_from:
        return attrs.get("axes")
    if len(inputs) > 1 and inputs[1] is not None:
        return [int(a) for a in np.ravel(node.const_value(inputs[1], "axes"))]
    return None


@converter("Squeeze")
def _squeeze(node, inputs, attrs):
    axes = _axes(node, inputs, attrs, 13)
    return node.call("squeeze", inputs[:1], axes=None if axes is None else tuple(axes))


@converter("Unsqueeze")
def _unsqueeze(node, inputs, attrs):
    axes = _axes(node, inputs, attrs, 13)
    if axes is None:
        raise node.error("Unsqueeze needs axes")
    return node.call("unsqueeze", inputs[:1], axes=tuple(axes))


_REDUCE = {"ReduceSum": ("reduce_sum", 13), "ReduceMean": ("reduce_mean", 18),
           "ReduceMax": ("reduce_max", 18), "ReduceMin": ("reduce_min", 18)}


@converter(*_REDUCE)
def _reduce(node, inputs, attrs):
    op, input_from = _REDUCE[node.op_type]
    axes = _axes(node, inputs, attrs, input_from)
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return inputs[0]
        axes = None
    return node.call(op, inputs[:1], axes=None if axes is None else tuple(axes),
                     keepdims=bool(attrs.get("keepdims", 1)))


