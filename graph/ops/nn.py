"""Neural-network operators of the graph layer: convolution, matmul / dense, normalisation,
softmax, pooling and local response normalisation. Types come from running the compute on placeholders (``infer=None``), so
shape errors are the operator library's own messages."""
from __future__ import annotations

import numpy as np

from tensorlang import math as tm
from tensorlang import ops as T
from tensorlang import reduction as red
from tensorlang.errors import ShapeError
from tensorlang.expr import const as tl_const
from tensorlang.tensor import compute, reduce_axis
from tensorlang.ops import blas
from tensorlang.ops._util import const_int

from . import register
from .gemm import conv2d_blas, use_blas_conv2d


def conv2d_compute(xs, attrs, allow_blas: bool = True):
    """The DSL computation of graph op ``conv2d``: depthwise, im2col + BLAS sgemm where that is
    faster (``allow_blas``; never on a GPU, which cannot call the CPU BLAS), or a direct
    reduction. On the CPU (``allow_blas``) a depthwise conv strided along the width splits its
    input into column phases first (``depthwise_conv2d_nchw_phased``: contiguous vector reads
    instead of gathers)."""
    data, weight = xs
    strides = tuple(attrs.get("strides", (1, 1)))
    pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
    dilations = tuple(attrs.get("dilations", (1, 1)))
    groups = attrs.get("groups", 1)
    if data.ndim != 4 or weight.ndim != 4:
        raise ShapeError(f"conv2d needs 4-d data and weight (NCHW, OIHW), got "
                         f"{data.ndim}-d and {weight.ndim}-d")
    channels, out_channels = const_int(data.shape[1]), const_int(weight.shape[0])
    if groups < 1 or channels % groups or out_channels % groups \
            or const_int(weight.shape[1]) * groups != channels:
        raise ShapeError(f"conv2d: data has {channels} channels but the weight "
                         f"{tuple(const_int(d) for d in weight.shape)} with groups={groups} "
                         f"expects {const_int(weight.shape[1]) * groups}")
    if groups > 1 and groups == channels and const_int(weight.shape[1]) == 1 and \
            out_channels % groups == 0:
        # depthwise: the OIHW weight [C * M, 1, KH, KW] is TOPI's [C, M, KH, KW]
        # (with one filter per channel the weight already has that shape: no reshape stage)
        kernel = weight if out_channels == channels else T.transform.reshape(
            weight, (channels, out_channels // channels, *weight.shape[2:]))
        if allow_blas and out_channels == channels and strides[1] > 1 and \
                tuple(dilations) == (1, 1):  # CPU: strided columns read contiguously
            return T.nn.depthwise_conv2d_nchw_phased(data, kernel, stride=strides, padding=pads)
        return T.nn.depthwise_conv2d_nchw(data, kernel, stride=strides, padding=pads,
                                          dilation=dilations)
    if allow_blas and use_blas_conv2d(data, weight, groups):
        return conv2d_blas(data, weight, strides, pads, dilations, groups)
    return T.nn.conv2d_nchw(data, weight, stride=strides, padding=pads, dilation=dilations,
                            groups=groups)


register("conv2d", None, conv2d_compute, "out_fusable")


def _batched_matmul(a, b, transpose_a, transpose_b):
    """NumPy ``matmul`` of tensors of rank >= 2 whose batch dimensions broadcast."""
    if transpose_a or transpose_b:
        raise ShapeError("transpose_a / transpose_b are only supported for 2-d operands")
    ka, kb = a.shape[-1], b.shape[-2]
    if const_int(ka) != const_int(kb):
        raise ShapeError(f"matmul: the reduction extents differ: {a.shape} @ {b.shape}")
    batch_a, batch_b = [const_int(d) for d in a.shape[:-2]], [const_int(d) for d in b.shape[:-2]]
    try:
        batch = list(np.broadcast_shapes(tuple(batch_a), tuple(batch_b)))
    except ValueError:
        raise ShapeError(f"matmul: batch dimensions of {a.shape} and {b.shape} cannot be "
                         "broadcast together") from None
    nb = len(batch)
    k = reduce_axis((0, const_int(ka)), name="k")

    def index(t, dims, i):
        lead = nb - len(dims)
        return [0 if e == 1 else i[lead + d] for d, e in enumerate(dims)]

    def body(*i):
        x = a[(*index(a, batch_a, i), i[nb], k.var)]
        y = b[(*index(b, batch_b, i), k.var, i[nb + 1])]
        return red.sum(x * y, axis=k)

    shape = (*batch, a.shape[-2], b.shape[-1])
    return compute(shape, body, name="T_batch_matmul", tag="batch_matmul")


def _matmul(xs, attrs):
    a, b = xs
    ta, tb = attrs.get("transpose_a", False), attrs.get("transpose_b", False)
    if a.ndim == 2 and b.ndim == 2:
        return T.nn.matmul(a, b, transpose_a=ta, transpose_b=tb)
    if a.ndim < 2 or b.ndim < 2:
        raise ShapeError(f"matmul needs operands of rank >= 2, got {a.ndim} and {b.ndim}")
    return _batched_matmul(a, b, ta, tb)


register("matmul", None, _matmul, "out_fusable")
def _dense(xs, attrs):
    x, weight = xs
    # the BLAS for products of several rows; one row (batch 1) is a memory-bound GEMV, where
    # the native kernel with the rfactor schedule (graph/compile.py) streams the weight 3x
    # faster than sgemm, which packs it first
    if x.dtype == weight.dtype == "float32" and const_int(x.shape[0]) != 1:
        return blas.matmul(x, weight, transpose_b=True)
    return T.nn.dense(x, weight)


register("dense", None, _dense, "out_fusable")
register("batch_norm", None,
         lambda xs, a: T.nn.batch_norm(xs[0], xs[1], xs[2], xs[3], xs[4], axis=1,
                                       epsilon=a.get("epsilon", 1e-5)), "broadcast")
register("softmax", None, lambda xs, a: T.nn.softmax(xs[0], axis=a.get("axis", -1)),
         "reduction")
register("log_softmax", None, lambda xs, a: T.nn.log_softmax(xs[0], axis=a.get("axis", -1)),
         "reduction")


def _layer_norm(xs, attrs):
    x = xs[0]
    gamma = xs[1] if len(xs) > 1 else None
    beta = xs[2] if len(xs) > 2 else None
    axis = attrs.get("axis", -1)
    axis = axis + x.ndim if axis < 0 else axis
    axes = tuple(range(axis, x.ndim))
    return T.nn.layer_norm(x, gamma, beta, axis=axes, epsilon=attrs.get("epsilon", 1e-5))


register("layer_norm", None, _layer_norm, "reduction")


def _pool(pool_type):
    def fcompute(xs, attrs):
        kernel = tuple(attrs["kernel"])
        return T.nn.pool2d(xs[0], kernel, stride=tuple(attrs.get("strides", kernel)),
                           padding=tuple(attrs.get("pads", (0, 0, 0, 0))), pool_type=pool_type,
                           ceil_mode=bool(attrs.get("ceil_mode", False)),
                           count_include_pad=bool(attrs.get("count_include_pad", False)),
                           dilation=tuple(attrs.get("dilations", (1, 1))),
                           layout=attrs.get("layout", "NCHW"))
    return fcompute


register("max_pool2d", None, _pool("max"), "reduction")
register("avg_pool2d", None, _pool("avg"), "reduction")
register("global_max_pool2d", None, lambda xs, a: T.nn.global_pool(xs[0], "max"), "reduction")
register("global_avg_pool2d", None, lambda xs, a: T.nn.global_pool(xs[0], "avg"), "reduction")



def _lrn(xs, attrs):
    """Local response normalisation across channels (axis 1), as ONNX defines it:
    ``x / (bias + alpha / size * sum of x^2 over the window of size channels) ** beta``, the
    window running from ``c - (size - 1) // 2`` to ``c + ceil((size - 1) / 2)``."""
    x = xs[0]
    size = int(attrs["size"])
    alpha, beta = float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75))
    bias = float(attrs.get("bias", 1.0))
    if x.ndim < 3 or size < 1:
        raise ShapeError(f"lrn needs an input of rank >= 3 (N, C, ...) and size >= 1, got rank "
                         f"{x.ndim} and size {size}")
    before, after = (size - 1) // 2, size // 2
    zeros = [0] * x.ndim
    padded = T.transform.pad(x, [0, before] + zeros[2:], [0, after] + zeros[2:], 0.0,
                             name="T_lrn_pad")
    k = reduce_axis((0, size), name="k")

    def window(*i):
        at = (i[0], i[1] + k.var, *i[2:])
        return red.sum(padded[at] * padded[at], axis=k)

    square_sum = compute(x.shape, window, name="T_lrn_square_sum", tag="lrn_square_sum")
    scale, offset, exponent = (tl_const(alpha / size, x.dtype), tl_const(bias, x.dtype),
                               tl_const(beta, x.dtype))
    return compute(x.shape, lambda *i: x(*i) / tm.power(offset + scale * square_sum(*i),
                                                         exponent),
                   name="T_lrn", tag="lrn")


register("lrn", None, _lrn, "reduction")
