"""Graph operators of the channel-blocked (NCHWc) layout that the conv layout pass
(``graph/passes/layout.py``) keeps between convolutions.

- ``layout_to_nchwc(x, block=b)``: ``[N, C, H, W]`` -> ``[N, C/b, H, W, b]``;
- ``layout_from_nchwc(x)``: the way back;
- ``conv2d_nchwc(x, w, strides=, pads=, dilations=)``: ``tensorlang.ops.nn.conv2d_nchwc`` on a
  blocked input and a packed weight ``[K/kb, C/cb, KH, KW, cb, kb]``;
  :func:`pack_conv_weight` packs an OIHW weight so;
- ``conv2d_winograd_nchwc(x, u, tile=, pads=, block=)``: a stride-1 3x3 convolution as
  Winograd ``F(tile, 3)`` (``tensorlang.ops.winograd``) on a blocked input and the transformed
  weight ``u = winograd_weight(w, tile)``, with ``block`` output channels per block; its
  products one grouped BLAS call (``product="blas"``) or a DSL reduction (``"dsl"``).

Example::

    y = Call("conv2d_nchwc", (Call("layout_to_nchwc", (x,), {"block": 8}),
                              Constant("w", pack_conv_weight(w, 8, 16))),
             {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1)})
"""
from __future__ import annotations

import numpy as np

from tensorlang import ops as T
from tensorlang.errors import ShapeError
from tensorlang.ops._util import const_int
from tensorlang.tensor import compute, extern

from ..ir import TensorType
from . import register
from .gemm import _gemm_call


def pack_conv_weight(weight: np.ndarray, c_block: int, k_block: int) -> np.ndarray:
    """An OIHW weight ``[K, C, KH, KW]`` as ``[K/kb, C/cb, KH, KW, cb, kb]`` (C-contiguous)."""
    k, c, kh, kw = weight.shape
    if k % k_block or c % c_block:
        raise ShapeError(f"pack_conv_weight: blocks ({c_block}, {k_block}) must divide the "
                         f"{c} input and {k} output channels")
    packed = weight.reshape(k // k_block, k_block, c // c_block, c_block, kh, kw)
    return np.ascontiguousarray(packed.transpose(0, 2, 4, 5, 3, 1))


def to_nchwc_array(x: np.ndarray, block: int) -> np.ndarray:
    """A NumPy ``[N, C, H, W]`` array in the blocked layout (for tests and constants)."""
    n, c, h, w = x.shape
    return np.ascontiguousarray(x.reshape(n, c // block, block, h, w).transpose(0, 1, 3, 4, 2))


def _to_infer(types, attrs):
    (t,) = types
    block = int(attrs["block"])
    if t.ndim != 4 or t.shape[1] % block:
        raise ShapeError(f"layout_to_nchwc: needs a 4-d NCHW tensor whose channels the block "
                         f"{block} divides, got {t}")
    n, c, h, w = t.shape
    return TensorType((n, c // block, h, w, block), t.dtype)


def _to_compute(xs, attrs):
    x = xs[0]
    block = int(attrs["block"])
    n, c, h, w = _to_infer([TensorType(tuple(const_int(d) for d in x.shape), x.dtype)],
                           attrs).shape[:4]
    return compute((n, c, h, w, block),
                   lambda b, co, y, xx, ci: x[b, co * block + ci, y, xx], name="to_nchwc")


def _from_infer(types, attrs):
    (t,) = types
    if t.ndim != 5:
        raise ShapeError(f"layout_from_nchwc: needs a 5-d NCHWc tensor, got {t}")
    n, co, h, w, block = t.shape
    return TensorType((n, co * block, h, w), t.dtype)


def _from_compute(xs, attrs):
    x = xs[0]
    n, co, h, w, block = (const_int(d) for d in x.shape)
    return compute((n, co * block, h, w),
                   lambda b, c, y, xx: x[b, c // block, y, xx, c % block], name="from_nchwc")


def _conv_compute(xs, attrs):
    data, weight = xs
    return T.nn.conv2d_nchwc(data, weight, stride=tuple(attrs.get("strides", (1, 1))),
                             padding=tuple(attrs.get("pads", (0, 0, 0, 0))),
                             dilation=tuple(attrs.get("dilations", (1, 1))))


def _winograd_compute(xs, attrs):
    """``conv2d_winograd_nchwc``: the Winograd stages of ``tensorlang.ops.winograd`` with the
    ``a * a`` products made one grouped BLAS extern (``graph/ops/gemm.py``), or with
    ``product="dsl"`` left a DSL reduction (a batched matmul the auto-scheduler tiles)."""
    data, weight = xs
    tile = int(attrs.get("tile", 4))
    if attrs.get("product", "blas") == "dsl":
        return T.winograd.conv2d_winograd_nchwc(
            data, weight, tile=tile, padding=tuple(attrs.get("pads", (0, 0, 0, 0))),
            out_block=int(attrs["block"]))

    def product(v, u):
        alpha, _, rows, tiles_w, _, _ = (const_int(d) for d in v.shape)
        channels, outputs = (const_int(d) for d in u.shape[1:])
        return extern((alpha * alpha, rows * tiles_w, outputs), [v, u],
                      _gemm_call(rows * tiles_w, outputs, channels, alpha * alpha),
                      name="winograd_product", dtype="float32", tag="blas_gemm")
    return T.winograd.conv2d_winograd_nchwc(
        data, weight, tile=tile, padding=tuple(attrs.get("pads", (0, 0, 0, 0))),
        out_block=int(attrs["block"]), product=product)


register("layout_to_nchwc", _to_infer, _to_compute, "injective")
register("layout_from_nchwc", _from_infer, _from_compute, "injective")
register("conv2d_nchwc", None, _conv_compute, "out_fusable")
register("conv2d_winograd_nchwc", None, _winograd_compute, "out_fusable")

__all__ = ["pack_conv_weight", "to_nchwc_array"]
