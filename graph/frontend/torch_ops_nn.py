"""ATen converters of the PyTorch frontend for network layers: convolution, matrix products
(linear layers become ``dense`` on the weight), normalisation, softmax, pooling and
activations."""
from __future__ import annotations

import numpy as np

from tensorlang.errors import UnsupportedOpError, UserError

from ..ir import Call, Constant, Expr
from .torch import converter
from .torch_ops import axis, cast, out_dtype, reshape

# -- convolution --------------------------------------------------------------------------------


def _per_channel(ctx, v, ndim: int):
    """A [C] vector shaped to broadcast along axis 1 of a rank-``ndim`` tensor."""
    return reshape(ctx, v, (v.type.shape[0],) + (1,) * (ndim - 2))


def _expand_list(values, n: int) -> tuple:
    values = [values] if isinstance(values, int) else list(values)
    return tuple(int(v) for v in (values * n if len(values) == 1 else values))


@converter("aten.convolution.default")
def _convolution(ctx, x, weight, bias, stride, padding, dilation, transposed, output_padding,
                 groups):
    nd = x.type.ndim - 2
    if nd < 1:
        raise UserError(f"convolution needs batched input of rank >= 3, got {x.type.shape}")
    stride, dilation = _expand_list(stride, nd), _expand_list(dilation, nd)
    padding = _expand_list(padding, nd)
    pads = padding + padding
    if transposed:
        shape = ctx.out_type().shape[2:]
        out = ctx.call("conv_transpose", (x, weight), strides=stride, dilations=dilation,
                       pads=pads, groups=int(groups), out_shape=tuple(shape))
    elif nd == 2:
        out = ctx.call("conv2d", (x, weight), strides=stride, dilations=dilation, pads=pads,
                       groups=int(groups))
    else:
        out = ctx.call("conv", (x, weight), strides=stride, dilations=dilation, pads=pads,
                       groups=int(groups))
    if bias is not None:
        out = ctx.call("add", (out, _per_channel(ctx, bias, out.type.ndim)))
    return out


# -- matrix products ----------------------------------------------------------------------------

def _shared_matrix(b):
    """The [K, N] matrix every batch of ``b`` equals, if ``b`` is a constant (or a broadcast
    of one) that is the same for every batch; else None."""
    while isinstance(b, Call) and b.op in ("broadcast_to", "reshape") and \
            b.args[0].type.shape[-2:] == b.type.shape[-2:]:
        b = b.args[0]
    if not isinstance(b, Constant):
        return None
    value = b.value.reshape((-1,) + b.value.shape[-2:])
    if value.shape[0] > 1 and not (value == value[:1]).all():
        return None
    return b.name, value[0]


def dense(ctx, a, name, matrix):
    """``a @ matrix`` for a constant [K, N] ``matrix``, as ``dense`` on its transpose."""
    weight = Constant(name, np.ascontiguousarray(matrix.T))
    lead = a.type.shape[:-1]
    flat = reshape(ctx, a, (-1, a.type.shape[-1]))
    out = ctx.call("dense", (flat, cast(ctx, weight, a.type.dtype)))
    return reshape(ctx, out, lead + (matrix.shape[1],))


def matmul(ctx, a, b):
    shared = _shared_matrix(b)
    if shared is not None and a.type.ndim >= 2:
        return dense(ctx, a, shared[0], shared[1])
    return ctx.call("matmul", (a, b))


@converter("aten.mm.default", "aten.bmm.default", "aten.matmul.default")
def _mm(ctx, a, b):
    return matmul(ctx, a, b)


@converter("aten.addmm.default", "aten.baddbmm.default")
def _addmm(ctx, bias, a, b, beta=1, alpha=1):
    dtype = out_dtype(ctx)
    out = matmul(ctx, a, b)
    if alpha != 1:
        out = ctx.call("multiply", (out, ctx.scalar(alpha, dtype)))
    if beta == 0:
        return out
    if beta != 1:
        bias = ctx.call("multiply", (bias, ctx.scalar(beta, dtype)))
    return ctx.call("add", (out, bias))


@converter("aten.mv.default", "aten.dot.default")
def _mv(ctx, a, b):
    a2 = reshape(ctx, a, (1, -1)) if a.type.ndim == 1 else a
    out = matmul(ctx, a2, reshape(ctx, b, (-1, 1)))
    return reshape(ctx, out, ctx.out_type().shape)


# -- normalisation and softmax ------------------------------------------------------------------

@converter("aten._softmax.default", "aten._log_softmax.default", "aten.softmax.int",
           "aten.log_softmax.int")
def _softmax(ctx, x, dim, half_to_float=False):
    op = "log_softmax" if "log_softmax" in ctx.op_name else "softmax"
    x = cast(ctx, x, out_dtype(ctx))
    if not x.type.ndim:
        x = reshape(ctx, x, (1,))
        return reshape(ctx, ctx.call(op, (x,), axis=0), ())
    return ctx.call(op, (x,), axis=axis(dim, x.type.ndim))


@converter("aten.native_layer_norm.default")
def _layer_norm(ctx, x, normalized_shape, weight, bias, eps):
    first = x.type.ndim - len(normalized_shape)
    norm_shape = x.type.shape[first:]
    dtype = x.type.dtype
    if weight is None and bias is not None:
        weight = Constant(f"{ctx.name}_ones", np.ones(norm_shape, dtype))
    args = [x] + [a for a in (weight, bias) if a is not None]
    out = ctx.call("layer_norm", args, axis=first, epsilon=float(eps))
    reduced = tuple(range(first, x.type.ndim))
    mean = ctx.call("reduce_mean", (x,), axes=reduced, keepdims=True)
    dev = ctx.call("subtract", (x, mean))
    var = ctx.call("reduce_mean", (ctx.call("multiply", (dev, dev)),), axes=reduced,
                   keepdims=True)
    rstd = ctx.call("reciprocal", (ctx.call("sqrt", (ctx.call(
        "add", (var, ctx.scalar(float(eps), dtype))),)),))
    return [out, mean, rstd]


@converter("aten._native_batch_norm_legit_no_training.default")
def _batch_norm(ctx, x, weight, bias, mean, var, momentum, eps):
    channels = x.type.shape[1]
    dtype = x.type.dtype
    weight = weight if weight is not None else Constant(f"{ctx.name}_ones",
                                                        np.ones(channels, dtype))
    bias = bias if bias is not None else Constant(f"{ctx.name}_zeros",
                                                  np.zeros(channels, dtype))
    out = ctx.call("batch_norm", (x, weight, bias, mean, var), epsilon=float(eps))
    return [out, None, None]


@converter("aten.native_group_norm.default")
def _group_norm(ctx, x, weight, bias, n, channels, spatial, groups, eps):
    shape = x.type.shape
    grouped = reshape(ctx, x, (shape[0], int(groups), -1))
    normed = reshape(ctx, ctx.call("layer_norm", (grouped,), axis=2, epsilon=float(eps)), shape)
    if weight is not None:
        normed = ctx.call("multiply", (normed, _per_channel(ctx, weight, len(shape))))
    if bias is not None:
        normed = ctx.call("add", (normed, _per_channel(ctx, bias, len(shape))))
    return [normed, None, None]


# -- pooling ------------------------------------------------------------------------------------

def _pool_attrs(x, kernel, stride, padding, dilation, ceil_mode):
    nd = x.type.ndim - 2
    kernel = _expand_list(kernel, nd)
    stride = _expand_list(stride, nd) if stride else kernel
    padding = _expand_list(padding, nd)
    return dict(kernel=kernel, strides=stride, pads=padding + padding,
                dilations=_expand_list(dilation, nd), ceil_mode=int(bool(ceil_mode)))


@converter("aten.max_pool2d_with_indices.default", "aten.max_pool3d_with_indices.default",
           "aten.max_pool2d.default", "aten.max_pool1d.default")
def _max_pool(ctx, x, kernel, stride=(), padding=0, dilation=1, ceil_mode=False):
    attrs = _pool_attrs(x, kernel, stride, padding, dilation, ceil_mode)
    op = "max_pool2d" if x.type.ndim == 4 else "max_pool"
    out = ctx.call(op, (x,), **attrs)
    return [out, None] if "with_indices" in ctx.op_name else out


@converter("aten.avg_pool2d.default", "aten.avg_pool3d.default", "aten.avg_pool1d.default")
def _avg_pool(ctx, x, kernel, stride=(), padding=0, ceil_mode=False, count_include_pad=True,
              divisor_override=None):
    if divisor_override is not None:
        raise UnsupportedOpError("divisor_override is not supported")
    attrs = _pool_attrs(x, kernel, stride, padding, 1, ceil_mode)
    op = "avg_pool2d" if x.type.ndim == 4 else "avg_pool"
    return ctx.call(op, (x,), count_include_pad=int(bool(count_include_pad)), **attrs)


@converter("aten._adaptive_avg_pool2d.default", "aten.adaptive_avg_pool2d.default",
           "aten._adaptive_avg_pool3d.default", "aten.adaptive_avg_pool1d.default")
def _adaptive_avg_pool(ctx, x, output_size):
    spatial = x.type.shape[2:]
    out = _expand_list(output_size, len(spatial))
    if all(o == 1 for o in out):
        return ctx.call("reduce_mean", (x,), axes=tuple(range(2, x.type.ndim)), keepdims=True)
    if all(s % o == 0 for s, o in zip(spatial, out)):
        kernel = tuple(s // o for s, o in zip(spatial, out))
        attrs = dict(kernel=kernel, strides=kernel, pads=(0,) * (2 * len(kernel)),
                     dilations=(1,) * len(kernel), ceil_mode=0)
        return ctx.call("avg_pool2d" if len(kernel) == 2 else "avg_pool", (x,), **attrs)
    # uneven windows: one mean per output position along each axis, put back together
    for d, (size, o) in enumerate(zip(spatial, out)):
        dim = d + 2
        parts = []
        for i in range(o):
            start, end = (i * size) // o, -(-((i + 1) * size) // o)
            window = ctx.call("slice", (x,), begins=tuple(start if k == dim else 0
                                                          for k in range(x.type.ndim)),
                              steps=(1,) * x.type.ndim,
                              shape=tuple(end - start if k == dim else n
                                          for k, n in enumerate(x.type.shape)))
            parts.append(ctx.call("reduce_mean", (window,), axes=(dim,), keepdims=True))
        x = parts[0] if len(parts) == 1 else ctx.call("concat", parts, axis=dim)
    return x


# -- activations --------------------------------------------------------------------------------

@converter("aten.gelu.default")
def _gelu(ctx, x, approximate="none"):
    return ctx.call("gelu", (x,), approximate=approximate)


@converter("aten.silu.default")
def _silu(ctx, x):
    return ctx.call("multiply", (x, ctx.call("sigmoid", (x,))))


@converter("aten.leaky_relu.default")
def _leaky_relu(ctx, x, negative_slope=0.01):
    return ctx.call("leaky_relu", (x,), alpha=float(negative_slope))


@converter("aten.hardtanh.default")
def _hardtanh(ctx, x, min_val=-1.0, max_val=1.0):
    return ctx.call("clip", (x,), min=min_val, max=max_val)


@converter("aten.elu.default")
def _elu(ctx, x, alpha=1.0, scale=1.0, input_scale=1.0):
    dtype = x.type.dtype
    if input_scale != 1:
        # scale * (x if x > 0 else alpha * (exp(x * input_scale) - 1))
        zero = ctx.scalar(0, dtype)
        neg = ctx.call("multiply", (ctx.scalar(alpha, dtype), ctx.call("subtract", (
            ctx.call("exp", (ctx.call("multiply", (x, ctx.scalar(input_scale, dtype))),)),
            ctx.scalar(1, dtype)))))
        out = ctx.call("where", (ctx.call("greater", (x, zero)), x, neg))
    else:
        out = ctx.call("elu", (x,), alpha=float(alpha))
    return out if scale == 1 else ctx.call("multiply", (out, ctx.scalar(scale, dtype)))


@converter("aten.hardswish.default")
def _hardswish(ctx, x):
    return ctx.call("hard_swish", (x,))


@converter("aten.hardsigmoid.default")
def _hardsigmoid(ctx, x):
    return ctx.call("hard_sigmoid", (x,), alpha=1.0 / 6.0, beta=0.5)


@converter("aten.softplus.default")
def _softplus(ctx, x, beta=1.0, threshold=20.0):
    dtype = x.type.dtype
    if beta == 1:
        scaled = x
    else:
        scaled = ctx.call("multiply", (x, ctx.scalar(beta, dtype)))
    soft = ctx.call("softplus", (scaled,))
    if beta != 1:
        soft = ctx.call("divide", (soft, ctx.scalar(beta, dtype)))
    # PyTorch is linear above the threshold
    over = ctx.call("greater", (scaled, ctx.scalar(threshold, dtype)))
    return ctx.call("where", (over, x, soft))


@converter("aten.mish.default")
def _mish(ctx, x):
    return ctx.call("mish", (x,))


@converter("aten._prelu_kernel.default", "aten.prelu.default")
def _prelu(ctx, x, weight):
    if weight.type.size > 1 and x.type.ndim >= 2:
        weight = _per_channel(ctx, weight, x.type.ndim)
    return ctx.call("prelu", (x, cast(ctx, weight, x.type.dtype)))


@converter("aten.celu.default", "aten.selu.default")
def _celu(ctx, x, alpha=1.0):
    if ctx.op_name == "aten.selu.default":
        return ctx.call("selu", (x,))
    return ctx.call("celu", (x,), alpha=float(alpha))


@converter("aten.scaled_dot_product_attention.default")
def _sdpa(ctx, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
          enable_gqa=False):
    dtype = q.type.dtype
    scale = scale if scale is not None else 1.0 / float(np.sqrt(q.type.shape[-1]))
    kt = ctx.call("transpose", (k,), axes=tuple(range(k.type.ndim - 2)) +
                  (k.type.ndim - 1, k.type.ndim - 2))
    scores = ctx.call("multiply", (ctx.call("matmul", (q, kt)), ctx.scalar(scale, dtype)))
    l, s = scores.type.shape[-2:]
    if is_causal:
        mask = np.tril(np.ones((l, s), bool))
        attn_mask = Constant(f"{ctx.name}_causal", mask)
    if isinstance(attn_mask, Expr):
        if attn_mask.type.dtype == "bool":
            fill = ctx.scalar(-np.inf, dtype)
            scores = ctx.call("where", (attn_mask, scores, fill))
        else:
            scores = ctx.call("add", (scores, cast(ctx, attn_mask, dtype)))
    weights = ctx.call("softmax", (scores,), axis=scores.type.ndim - 1)
    return ctx.call("matmul", (weights, v))
