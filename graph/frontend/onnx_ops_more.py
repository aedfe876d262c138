"""More ONNX converters (registered on import by ``onnx.py``): elementwise math, comparisons
and logic, indexing and layout (Slice, Pad, Gather, Split, ...), N-d convolution and pooling,
more reductions, ArgMax / TopK and Resize.

Values that decide shapes (Slice's starts, Pad's pads, TopK's k, ...) must be constants; the
ONNX backend bakes run-time ones into the model (see ``onnx_backend``).
"""
from __future__ import annotations

import numpy as np

from tensorlang.errors import UnsupportedOpError

from ..ir import Constant, TupleGetItem
from .onnx import _CONVERTERS, _np_dtype, converter
from .onnx_ops import _auto_pads, _axes

_ORIGINAL = dict(_CONVERTERS)  # the converters these ones extend, delegated to


def _unsupported(node, what: str) -> UnsupportedOpError:
    return UnsupportedOpError(f"ONNX node {node.name!r} ({node.op_type}): {what}")


def _items(call) -> list:
    return [TupleGetItem(call, k) for k in range(len(call.type))]


def _axis(axis: int, ndim: int) -> int:
    return axis + ndim if axis < 0 else axis


def _opt(inputs, pos):
    return inputs[pos] if len(inputs) > pos else None


def _const(node, value, dtype) -> Constant:
    return Constant(f"{node.name}_c", np.asarray(value, dtype=dtype))


# -- elementwise ------------------------------------------------------------------------------

_UNARY = {"Floor": "floor", "Ceil": "ceil", "Round": "round", "Sign": "sign",
          "Reciprocal": "reciprocal", "Softplus": "softplus", "Softsign": "softsign",
          "Selu": "selu", "Elu": "elu", "Celu": "celu", "HardSigmoid": "hard_sigmoid",
          "HardSwish": "hard_swish", "Mish": "mish", "ThresholdedRelu": "thresholded_relu",
          "Sin": "sin", "Cos": "cos", "Tan": "tan", "Asin": "asin", "Acos": "acos",
          "Atan": "atan", "Sinh": "sinh", "Cosh": "cosh", "Asinh": "asinh", "Acosh": "acosh",
          "Atanh": "atanh", "IsNaN": "isnan", "IsInf": "isinf", "Not": "logical_not",
          "BitwiseNot": "bitwise_not"}
_ATTRS = ("alpha", "beta", "gamma", "detect_positive", "detect_negative")


@converter(*_UNARY)
def _unary(node, inputs, attrs):
    kept = {k: (float(v) if k in ("alpha", "beta", "gamma") else int(v))
            for k, v in attrs.items() if k in _ATTRS}
    return node.call(_UNARY[node.op_type], inputs[:1], **kept)


_BINARY = {"Equal": "equal", "Less": "less", "Greater": "greater", "LessOrEqual": "less_equal",
           "GreaterOrEqual": "greater_equal", "And": "logical_and", "Or": "logical_or",
           "Xor": "logical_xor", "PRelu": "prelu", "BitwiseAnd": "bitwise_and",
           "BitwiseOr": "bitwise_or", "BitwiseXor": "bitwise_xor"}


@converter(*_BINARY)
def _binary(node, inputs, attrs):
    return node.call(_BINARY[node.op_type], inputs[:2])


@converter("Mod")
def _mod(node, inputs, attrs):
    fmod = int(attrs.get("fmod", 0))
    return node.call("mod", inputs[:2], fmod=fmod)


@converter("BitShift")
def _bitshift(node, inputs, attrs):
    return node.call("bitshift", inputs[:2], direction=attrs.get("direction", "LEFT"))


@converter("Hardmax")
def _hardmax(node, inputs, attrs):
    x = inputs[0]
    if node.opset < 13:
        raise _unsupported(node, "Hardmax before opset 13 (2-d coercion) is not supported")
    return node.call("hardmax", (x,), axis=_axis(int(attrs.get("axis", -1)), x.type.ndim))


@converter("Pow")
def _pow(node, inputs, attrs):
    base, exponent = inputs[:2]
    if base.type.dtype.startswith("float"):
        return _ORIGINAL["Pow"](node, inputs, attrs)
    # an integer base: computed in float64, truncated back
    wide = node.call("cast", (base,), dtype="float64")
    power = node.call("pow", (wide, node.call("cast", (exponent,), dtype="float64")))
    return node.call("cast", (power,), dtype=base.type.dtype)


@converter("Size")
def _size(node, inputs, attrs):
    return _const(node, inputs[0].type.size, np.int64)


@converter("Shrink")
def _shrink(node, inputs, attrs):
    x = inputs[0]
    lambd, bias = float(attrs.get("lambd", 0.5)), float(attrs.get("bias", 0.0))
    dt = x.type.dtype
    low = node.call("less", (x, _const(node, -lambd, dt)))
    high = node.call("greater", (x, _const(node, lambd, dt)))
    up = node.call("add", (x, _const(node, bias, dt)))
    down = node.call("subtract", (x, _const(node, bias, dt)))
    zero = _const(node, 0, dt)
    return node.call("where", (low, up, node.call("where", (high, down, zero))))


@converter("EyeLike")
def _eye_like(node, inputs, attrs):
    dtype = str(_np_dtype(attrs["dtype"])) if "dtype" in attrs else inputs[0].type.dtype
    rows, cols = inputs[0].type.shape  # only the shape matters: a constant
    return _const(node, np.eye(rows, cols, k=int(attrs.get("k", 0))), dtype)


# -- layout and indexing ----------------------------------------------------------------------

def _ints(node, value, what):
    return [int(v) for v in np.asarray(node.const_value(value, what)).reshape(-1)]


@converter("Slice")
def _slice(node, inputs, attrs):
    x = inputs[0]
    shape = x.type.shape
    if node.opset < 10:
        starts, ends = attrs["starts"], attrs["ends"]
        axes, steps = attrs.get("axes"), None
    else:
        starts = _ints(node, inputs[1], "starts")
        ends = _ints(node, inputs[2], "ends")
        axes = _ints(node, inputs[3], "axes") if len(inputs) > 3 and inputs[3] is not None \
            else None
        steps = _ints(node, inputs[4], "steps") if len(inputs) > 4 and inputs[4] is not None \
            else None
    axes = list(range(len(starts))) if axes is None else [_axis(a, x.type.ndim) for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    begins, strides, out = [0] * x.type.ndim, [1] * x.type.ndim, list(shape)
    for a, b, e, s in zip(axes, starts, ends, steps):
        if s == 0:
            raise node.error("slice steps must not be 0")
        r = range(shape[a])[slice(b, e, s)]
        begins[a], strides[a], out[a] = (r.start if len(r) else 0), s, len(r)
    return node.call("slice", (x,), begins=tuple(begins), steps=tuple(strides),
                     shape=tuple(out))


@converter("Pad")
def _pad(node, inputs, attrs):
    x = inputs[0]
    nd = x.type.ndim
    mode = attrs.get("mode", "constant")
    extra = ()
    if node.opset < 11:
        pads, value, axes = list(attrs["pads"]), float(attrs.get("value", 0.0)), None
    else:
        pads = _ints(node, inputs[1], "pads")
        value = 0
        given = inputs[2] if len(inputs) > 2 else None
        if given is not None and not isinstance(given, Constant):
            if given.type.size != 1:
                raise node.error("the pad value must have one element")
            extra = (given,)  # a computed pad value: read at run time
        elif given is not None:
            value = np.asarray(given.value).reshape(-1)
            value = value[0].item() if value.size else 0
        axes = _ints(node, inputs[3], "axes") if len(inputs) > 3 and inputs[3] is not None \
            else None
    if axes is not None:
        full = [0] * (2 * nd)
        for k, a in enumerate(axes):
            a = _axis(a, nd)
            full[a], full[nd + a] = pads[k], pads[len(axes) + k]
        pads = full
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise _unsupported(node, f"mode {mode!r}")
    return node.call("pad", (x, *extra), pads=tuple(pads), mode=mode,
                     value=float(value) if x.type.dtype.startswith("float") else int(value))


@converter("Tile")
def _tile(node, inputs, attrs):
    return node.call("tile", inputs[:1], repeats=tuple(_ints(node, inputs[1], "repeats")))


@converter("Expand")
def _expand(node, inputs, attrs):
    return node.call("broadcast_to", inputs[:1], shape=tuple(_ints(node, inputs[1], "shape")))


@converter("Gather")
def _gather(node, inputs, attrs):
    x = inputs[0]
    return node.call("gather", inputs[:2], axis=_axis(int(attrs.get("axis", 0)), x.type.ndim))


@converter("GatherElements")
def _gather_elements(node, inputs, attrs):
    x = inputs[0]
    return node.call("gather_elements", inputs[:2],
                     axis=_axis(int(attrs.get("axis", 0)), x.type.ndim))


@converter("GatherND")
def _gather_nd(node, inputs, attrs):
    return node.call("gather_nd", inputs[:2], batch_dims=int(attrs.get("batch_dims", 0)))


@converter("Split")
def _split(node, inputs, attrs):
    x = inputs[0]
    axis = _axis(int(attrs.get("axis", 0)), x.type.ndim)
    size = x.type.shape[axis]
    outputs = len(node.proto.output)
    if node.opset >= 13 and len(inputs) > 1 and inputs[1] is not None:
        sizes = _ints(node, inputs[1], "split")
    elif "split" in attrs:
        sizes = [int(s) for s in attrs["split"]]
    else:
        parts = int(attrs.get("num_outputs", outputs))
        chunk = -(-size // parts)
        sizes = [min(chunk, size - k * chunk) for k in range(parts)]
    return _items(node.call("split", (x,), axis=axis, sizes=tuple(sizes)))


@converter("DepthToSpace", "SpaceToDepth")
def _depth_space(node, inputs, attrs):
    op = "depth_to_space" if node.op_type == "DepthToSpace" else "space_to_depth"
    mode, block = attrs.get("mode", "DCR"), int(attrs["blocksize"])
    if op == "space_to_depth" and mode == "CRD":  # opset 28: channels before the block
        x = inputs[0]
        n, c, h, w = x.type.shape
        v = node.call("reshape", (x,), newshape=(n, c, h // block, block, w // block, block))
        v = node.call("transpose", (v,), axes=(0, 1, 3, 5, 2, 4))
        return node.call("reshape", (v,), newshape=(n, c * block * block, h // block,
                                                    w // block))
    if op == "space_to_depth" and mode != "DCR":
        raise _unsupported(node, f"mode {mode!r}")
    extra = {"mode": mode} if op == "depth_to_space" else {}
    return node.call(op, inputs[:1], blocksize=block, **extra)


@converter("Trilu")
def _trilu(node, inputs, attrs):
    k = _ints(node, inputs[1], "k")[0] if len(inputs) > 1 and inputs[1] is not None else 0
    return node.call("trilu", inputs[:1], k=k, upper=int(attrs.get("upper", 1)))


@converter("OneHot")
def _one_hot(node, inputs, attrs):
    depth = int(np.asarray(node.const_value(inputs[1], "depth")).reshape(-1)[0])
    return node.call("one_hot", (inputs[0], inputs[2]), depth=depth,
                     axis=int(attrs.get("axis", -1)))


@converter("CumSum", "CumProd")
def _cumsum(node, inputs, attrs):
    x = inputs[0]
    axis = _axis(_ints(node, inputs[1], "axis")[0], x.type.ndim)
    op = "cumsum" if node.op_type == "CumSum" else "cumprod"
    return node.call(op, (x,), axis=axis, exclusive=int(attrs.get("exclusive", 0)),
                     reverse=int(attrs.get("reverse", 0)))


# -- convolution and pooling ------------------------------------------------------------------

def _window_attrs(node, x, kernel, attrs):
    nd = len(kernel)
    strides = tuple(attrs.get("strides", (1,) * nd))
    dilations = tuple(attrs.get("dilations", (1,) * nd))
    pads = _auto_pads(node, attrs, x.type.shape[2:], kernel, strides, dilations)
    return strides, dilations, tuple(pads)


@converter("Conv")
def _conv(node, inputs, attrs):
    x, w = inputs[0], inputs[1]
    kernel = tuple(attrs.get("kernel_shape", w.type.shape[2:]))
    if len(kernel) == 2 and x.type.ndim == 4:
        return _ORIGINAL["Conv"](node, inputs, attrs)
    strides, dilations, pads = _window_attrs(node, x, kernel, attrs)
    out = node.call("conv", (x, w), strides=strides, dilations=dilations, pads=pads,
                    groups=int(attrs.get("group", 1)))
    return _add_channel_bias(node, out, inputs[2] if len(inputs) > 2 else None)


def _add_channel_bias(node, out, bias):
    if bias is None:
        return out
    shape = (1, bias.type.shape[0]) + (1,) * (out.type.ndim - 2)
    bias = Constant(bias.name, bias.value.reshape(shape)) if isinstance(bias, Constant) \
        else node.call("reshape", (bias,), newshape=shape)
    return node.call("add", (out, bias))


@converter("ConvTranspose")
def _conv_transpose(node, inputs, attrs):
    x, w = inputs[0], inputs[1]
    kernel = tuple(attrs.get("kernel_shape", w.type.shape[2:]))
    nd = len(kernel)
    strides = tuple(attrs.get("strides", (1,) * nd))
    dilations = tuple(attrs.get("dilations", (1,) * nd))
    out_pad = tuple(attrs.get("output_padding", (0,) * nd))
    sp = x.type.shape[2:]
    auto = attrs.get("auto_pad", "NOTSET")
    full = [(sp[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 + out_pad[i]
            for i in range(nd)]
    if "output_shape" in attrs:
        out_shape = list(attrs["output_shape"])[-nd:]
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        out_shape = [sp[i] * strides[i] for i in range(nd)]
    else:
        pads = list(attrs.get("pads", (0,) * 2 * nd))
        out_shape = [full[i] - pads[i] - pads[nd + i] for i in range(nd)]
    if "output_shape" in attrs or auto in ("SAME_UPPER", "SAME_LOWER"):
        total = [full[i] - out_shape[i] for i in range(nd)]
        upper = auto == "SAME_UPPER"  # otherwise the larger half goes first (ONNX's rule)
        begin = [t // 2 if upper else t - t // 2 for t in total]
        pads = begin + [t - b for t, b in zip(total, begin)]
    out = node.call("conv_transpose", (x, w), strides=strides, dilations=dilations,
                    pads=tuple(pads), groups=int(attrs.get("group", 1)),
                    out_shape=tuple(out_shape))
    return _add_channel_bias(node, out, inputs[2] if len(inputs) > 2 else None)


@converter("MaxPool", "AveragePool", "LpPool")
def _pool(node, inputs, attrs):
    x = inputs[0]
    kernel = tuple(attrs["kernel_shape"])
    want_indices = len(node.proto.output) > 1 and node.proto.output[1]
    if node.op_type != "LpPool" and not want_indices and len(kernel) == 2 and \
            not attrs.get("storage_order", 0) and \
            x.type.ndim == 4 and "dilations" not in attrs:
        return _ORIGINAL[node.op_type](node, inputs, attrs)
    strides, dilations, pads = _window_attrs(node, x, kernel, attrs)
    common = dict(kernel=kernel, strides=strides, dilations=dilations, pads=pads,
                  ceil_mode=int(attrs.get("ceil_mode", 0)))
    if node.op_type == "MaxPool":
        out = node.call("max_pool", (x,), with_indices=int(bool(want_indices)),
                        storage_order=int(attrs.get("storage_order", 0)), **common)
        return _items(out) if want_indices else out
    if node.op_type == "LpPool":
        return node.call("avg_pool", (x,), p=int(attrs.get("p", 2)), **common)
    return node.call("avg_pool", (x,), count_include_pad=int(attrs.get("count_include_pad", 0)),
                     **common)


@converter("GlobalLpPool")
def _global_lp_pool(node, inputs, attrs):
    x = inputs[0]
    kernel = x.type.shape[2:]
    nd = len(kernel)
    return node.call("avg_pool", (x,), p=int(attrs.get("p", 2)), kernel=tuple(kernel),
                     strides=(1,) * nd, dilations=(1,) * nd, pads=(0,) * 2 * nd, ceil_mode=0)


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(node, inputs, attrs):
    x = inputs[0]
    if x.type.ndim == 4:
        return _ORIGINAL[node.op_type](node, inputs, attrs)
    axes = tuple(range(2, x.type.ndim))
    op = "reduce_mean" if node.op_type == "GlobalAveragePool" else "reduce_max"
    return node.call(op, (x,), axes=axes, keepdims=True)


# -- reductions -------------------------------------------------------------------------------

_REDUCE_FROM = {"ReduceProd": 18, "ReduceL1": 18, "ReduceL2": 18, "ReduceLogSum": 18,
                "ReduceLogSumExp": 18, "ReduceSumSquare": 18}


@converter(*_REDUCE_FROM)
def _reduce(node, inputs, attrs):
    x = inputs[0]
    axes = _axes(node, inputs, attrs, _REDUCE_FROM[node.op_type])
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return x
        axes = None
    keep = bool(attrs.get("keepdims", 1))
    kw = dict(axes=None if axes is None else tuple(_axis(a, x.type.ndim) for a in axes),
              keepdims=keep)
    op = node.op_type
    if op == "ReduceProd":
        return node.call("reduce_prod", (x,), **kw)
    if op == "ReduceL1":
        return node.call("reduce_sum", (node.call("abs", (x,)),), **kw)
    if op in ("ReduceL2", "ReduceSumSquare"):
        total = node.call("reduce_sum", (node.call("multiply", (x, x)),), **kw)
        if op == "ReduceSumSquare":
            return total
        if not x.type.dtype.startswith("float"):
            return node.call("cast", (node.call("sqrt", (node.call(
                "cast", (total,), dtype="float64"),)),), dtype=x.type.dtype)
        return node.call("sqrt", (total,))
    if op == "ReduceLogSum":
        return node.call("log", (node.call("reduce_sum", (x,), **kw),))
    # log-sum-exp, stable: max + log(sum(exp(x - max)))
    top = node.call("reduce_max", (x,), axes=kw["axes"], keepdims=True)
    safe = node.call("where", (node.call("isinf", (top,)), _const(node, 0, x.type.dtype), top))
    total = node.call("reduce_sum", (node.call("exp", (node.call("subtract", (x, safe)),)),),
                      **kw)
    shift = safe if keep else node.call("reshape", (safe,),
                                        newshape=total.type.shape)
    return node.call("add", (node.call("log", (total,)), shift))


@converter("ArgMax", "ArgMin")
def _arg(node, inputs, attrs):
    x = inputs[0]
    return node.call("argmax" if node.op_type == "ArgMax" else "argmin", (x,),
                     axis=_axis(int(attrs.get("axis", 0)), x.type.ndim),
                     keepdims=int(attrs.get("keepdims", 1)),
                     select_last_index=int(attrs.get("select_last_index", 0)))


@converter("TopK")
def _topk(node, inputs, attrs):
    x = inputs[0]
    k = int(attrs["k"]) if node.opset < 10 else _ints(node, inputs[1], "k")[0]
    if not attrs.get("sorted", 1):
        raise _unsupported(node, "sorted=0 is not supported")
    return _items(node.call("topk", (x,), k=k, axis=_axis(int(attrs.get("axis", -1)),
                                                         x.type.ndim),
                            largest=int(attrs.get("largest", 1))))


# -- normalisation ----------------------------------------------------------------------------

@converter("LayerNormalization")
def _layer_norm(node, inputs, attrs):
    extra = [o for o in node.proto.output[1:] if o]
    if not extra:
        return _ORIGINAL["LayerNormalization"](node, inputs, attrs)
    x = inputs[0]
    dtype = x.type.dtype
    stash = "float32" if attrs.get("stash_type", 1) == 1 else dtype
    axis = _axis(int(attrs.get("axis", -1)), x.type.ndim)
    axes = tuple(range(axis, x.type.ndim))
    xs = x if stash == dtype else node.call("cast", (x,), dtype=stash)
    mean = node.call("reduce_mean", (xs,), axes=axes, keepdims=True)
    d = node.call("subtract", (xs, mean))
    var = node.call("reduce_mean", (node.call("multiply", (d, d)),), axes=axes, keepdims=True)
    eps = _const(node, float(attrs.get("epsilon", 1e-5)), stash)
    inv = node.call("reciprocal", (node.call("sqrt", (node.call("add", (var, eps)),)),))
    y = node.call("multiply", (d, inv))
    y = y if stash == dtype else node.call("cast", (y,), dtype=dtype)
    if len(inputs) > 1 and inputs[1] is not None:
        y = node.call("multiply", (y, inputs[1]))
    if len(inputs) > 2 and inputs[2] is not None:
        y = node.call("add", (y, inputs[2]))
    return [y, mean, inv]


@converter("InstanceNormalization")
def _instance_norm(node, inputs, attrs):
    x, scale, bias = inputs
    axes = tuple(range(2, x.type.ndim))
    mean = node.call("reduce_mean", (x,), axes=axes, keepdims=True)
    d = node.call("subtract", (x, mean))
    var = node.call("reduce_mean", (node.call("multiply", (d, d)),), axes=axes, keepdims=True)
    eps = _const(node, float(attrs.get("epsilon", 1e-5)), x.type.dtype)
    y = node.call("divide", (d, node.call("sqrt", (node.call("add", (var, eps)),))))
    shape = (1, x.type.shape[1]) + (1,) * (x.type.ndim - 2)
    scale, bias = (node.call("reshape", (t,), newshape=shape) for t in (scale, bias))
    return node.call("add", (node.call("multiply", (y, scale)), bias))


@converter("LpNormalization")
def _lp_norm(node, inputs, attrs):
    x = inputs[0]
    axis = _axis(int(attrs.get("axis", -1)), x.type.ndim)
    p = int(attrs.get("p", 2))
    if p == 1:
        norm = node.call("reduce_sum", (node.call("abs", (x,)),), axes=(axis,), keepdims=True)
    else:
        norm = node.call("sqrt", (node.call("reduce_sum", (node.call("multiply", (x, x)),),
                                            axes=(axis,), keepdims=True),))
    zero = _const(node, 0, x.type.dtype)
    safe = node.call("where", (node.call("equal", (norm, zero)),
                               _const(node, 1, x.type.dtype), norm))
    return node.call("divide", (x, safe))


# -- resize -----------------------------------------------------------------------------------

@converter("Resize", "Upsample")
def _resize(node, inputs, attrs):
    x = inputs[0]
    nd = x.type.ndim
    mode = attrs.get("mode", "nearest")
    if mode not in ("nearest", "linear", "bilinear", "cubic"):
        raise _unsupported(node, f"mode {mode!r} is not supported")
    if node.op_type == "Upsample":
        scales = [float(s) for s in (attrs["scales"] if node.opset < 9 else
                                     node.const_value(inputs[1], "scales"))]
        sizes, ctm = None, "asymmetric"
    else:
        if node.opset < 11:
            scales = [float(s) for s in node.const_value(inputs[1], "scales")]
            sizes, ctm = None, "asymmetric"
        else:
            def opt(pos):
                v = inputs[pos] if len(inputs) > pos else None
                if v is None:
                    return None
                v = np.asarray(node.const_value(v, "scales / sizes")).reshape(-1)
                return v if v.size else None
            scales, sizes = opt(2), opt(3)
            ctm = attrs.get("coordinate_transformation_mode", "half_pixel")
    if ctm == "tf_crop_and_resize":
        raise _unsupported(node, "coordinate_transformation_mode tf_crop_and_resize")
    if attrs.get("antialias", 0) and mode != "nearest":
        raise _unsupported(node, "antialias=1 is not supported")
    axes = [_axis(a, nd) for a in attrs.get("axes", range(nd))]
    full_scales, shape = [1.0] * nd, list(x.type.shape)
    policy = attrs.get("keep_aspect_ratio_policy", "stretch")
    if sizes is not None:
        sizes = [int(s) for s in sizes]
        ratios = [sizes[k] / x.type.shape[a] for k, a in enumerate(axes)]
        if policy != "stretch":
            r = min(ratios) if policy == "not_larger" else max(ratios)
            ratios = [r] * len(axes)
            sizes = [int(x.type.shape[a] * r + 0.5) for a in axes]
        for k, a in enumerate(axes):
            full_scales[a], shape[a] = ratios[k], sizes[k]
    else:
        scales = [float(s) for s in scales]
        if node.op_type == "Upsample" or len(scales) == nd and len(axes) == nd:
            axes = list(range(nd))
        for k, a in enumerate(axes):
            full_scales[a] = scales[k]
            shape[a] = int(np.floor(x.type.shape[a] * scales[k]))
    return node.call("resize", (x,), shape=tuple(shape), scales=tuple(full_scales),
                     mode={"bilinear": "linear"}.get(mode, mode),
                     cubic_coeff_a=float(attrs.get("cubic_coeff_a", -0.75)),
                     exclude_outside=int(attrs.get("exclude_outside", 0)),
                     coordinate_transformation_mode=ctm,
                     nearest_mode=attrs.get("nearest_mode", "round_prefer_floor")
                     if node.op_type == "Resize" and node.opset >= 11 else "floor")


# -- einsum, compress, scatter ----------------------------------------------------------------

@converter("Einsum")
def _einsum(node, inputs, attrs):
    eq = attrs["equation"].replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    subs = lhs.split(",")
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in eq]
    width = max([x.type.ndim - (len(s) - 3) for x, s in zip(inputs, subs) if "..." in s],
                default=0)
    ell = "".join(spare[:width])
    subs = [s.replace("...", ell[width - (x.type.ndim - (len(s) - 3)):]) if "..." in s else s
            for x, s in zip(inputs, subs)]
    if arrow:
        out = rhs.replace("...", ell)
    else:
        letters = "".join(subs)
        out = ell + "".join(sorted(c for c in set(letters) if letters.count(c) == 1
                                   and c not in ell))
    for x, s in zip(inputs, subs):
        if len(s) != x.type.ndim:
            raise node.error(f"equation {eq!r} does not fit an input of rank {x.type.ndim}")
    return node.call("einsum", inputs, equation=",".join(subs) + "->" + out)


@converter("Compress")
def _compress(node, inputs, attrs):
    x = inputs[0]
    cond = np.asarray(node.const_value(inputs[1], "the condition")).astype(bool).reshape(-1)
    axis = attrs.get("axis")
    if axis is None:
        x = node.call("reshape", (x,), newshape=(x.type.size,))
        axis = 0
    axis = _axis(int(axis), x.type.ndim)
    picks = np.nonzero(cond[:x.type.shape[axis]])[0].astype(np.int64)
    return node.call("gather", (x, _const(node, picks, np.int64)), axis=axis)


@converter("ScatterElements", "Scatter")
def _scatter_elements(node, inputs, attrs):
    x = inputs[0]
    return node.call("scatter_elements", inputs[:3],
                     axis=_axis(int(attrs.get("axis", 0)), x.type.ndim),
                     reduction=attrs.get("reduction", "none"))


@converter("ScatterND")
def _scatter_nd(node, inputs, attrs):
    return node.call("scatter_nd", inputs[:3], reduction=attrs.get("reduction", "none"))


# -- reductions of empty tensors: the reduction's identity, folded at import --------------------

_IDENTITY = {"ReduceSum": 0, "ReduceProd": 1, "ReduceL1": 0, "ReduceL2": 0,
             "ReduceSumSquare": 0, "ReduceLogSum": -np.inf, "ReduceLogSumExp": -np.inf,
             "ReduceMax": "min", "ReduceMin": "max"}


def _empty_aware(op_type, convert):
    def wrapped(node, inputs, attrs):
        x = inputs[0]
        if x.type.size:
            return convert(node, inputs, attrs)
        from_input = 13 if op_type == "ReduceSum" else 18
        axes = _axes(node, inputs, attrs, from_input)
        if not axes and attrs.get("noop_with_empty_axes", 0):
            return x
        axes = tuple(range(x.type.ndim)) if not axes else tuple(_axis(a, x.type.ndim)
                                                                 for a in axes)
        shape = np.zeros(x.type.shape, np.float32).sum(
            axis=axes, keepdims=bool(attrs.get("keepdims", 1))).shape
        dtype = np.dtype(x.type.dtype)
        fill = _IDENTITY[op_type]
        if fill in ("min", "max"):
            info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype) \
                if dtype.kind in "iu" else None
            if dtype.kind == "f":
                fill = -np.inf if fill == "min" else np.inf
            elif info is not None:
                fill = info.min if fill == "min" else info.max
            else:
                fill = fill == "max"
        return _const(node, np.full(shape, fill, dtype=dtype), dtype)
    return wrapped


for _op in _IDENTITY:
    _CONVERTERS[_op] = _empty_aware(_op, _CONVERTERS[_op])


@converter("BatchNormalization")
def _batch_norm(node, inputs, attrs):
    if not attrs.get("training_mode", 0):
        return _ORIGINAL["BatchNormalization"](node, inputs, attrs)
    # training mode: normalise with the batch statistics and update the running ones
    x, scale, bias, mean, var = inputs[:5]
    dt = x.type.dtype
    axes = (0,) + tuple(range(2, x.type.ndim))
    shape = (1, x.type.shape[1]) + (1,) * (x.type.ndim - 2)
    batch_mean = node.call("reduce_mean", (x,), axes=axes, keepdims=True)
    d = node.call("subtract", (x, batch_mean))
    batch_var = node.call("reduce_mean", (node.call("multiply", (d, d)),), axes=axes,
                          keepdims=True)
    eps = _const(node, float(attrs.get("epsilon", 1e-5)), dt)
    y = node.call("divide", (d, node.call("sqrt", (node.call("add", (batch_var, eps)),))))
    y = node.call("add", (node.call("multiply", (y, node.call(
        "reshape", (scale,), newshape=shape))), node.call("reshape", (bias,), newshape=shape)))
    momentum = float(attrs.get("momentum", 0.9))
    outs = [y]
    for running, batch in ((mean, batch_mean), (var, batch_var)):
        flat = node.call("reshape", (batch,), newshape=running.type.shape)
        outs.append(node.call("add", (
            node.call("multiply", (running, _const(node, momentum, running.type.dtype))),
            node.call("multiply", (flat, _const(node, 1 - momentum, running.type.dtype))))))
    return outs


@converter("GridSample")
def _grid_sample(node, inputs, attrs):
    mode = attrs.get("mode", "linear" if node.opset >= 20 else "bilinear")
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    return node.call("grid_sample", inputs[:2], mode=mode,
                     padding_mode=attrs.get("padding_mode", "zeros"),
                     align_corners=int(attrs.get("align_corners", 0)))


from . import onnx_ops_quantized, onnx_ops_recurrent  # noqa: E402,F401
