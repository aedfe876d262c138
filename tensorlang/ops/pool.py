"""Pooling in NCHW layout: ``pool2d`` (max / avg) and ``global_pool``. Re-exported by
``ops.nn``.

Example::

    import tensorlang as tl
    from tensorlang import ops
    X = tl.placeholder((1, 4, 13, 13), name="X")
    M = ops.nn.pool2d(X, kernel=3, stride=2, padding=1, pool_type="max")    # (1, 4, 7, 7)
    A = ops.nn.pool2d(X, 2, 2, pool_type="avg", ceil_mode=True)             # (1, 4, 7, 7)
    G = ops.nn.global_pool(X, "avg")                                        # (1, 4, 1, 1)
"""
from __future__ import annotations

from .. import dtype as dt
from .. import math as tm
from .. import reduction as red
from ..errors import ShapeError, UserError
from ..expr import Max, Min, binary, cast as _cast, const, convert
from ..tensor import Tensor, compute, reduce_axis
from ._util import (check_ndim, check_non_negative, check_positive, check_tensor, const_int,
                    fold_add, padding_4, to_pair)
from .conv import out_extent
from .transform import pad


def _ceildiv(a, b: int):
    return a if b == 1 else tm.floordiv(a + (b - 1), b)


def _window_count(start, kernel: int, dilation: int, low, high):
    """How many of ``start + r * dilation`` (``0 <= r < kernel``) lie in ``[low, high)``."""
    first = _ceildiv(binary(Max, low - start, convert(0)), dilation)
    last = binary(Min, convert(kernel), _ceildiv(high - start, dilation))
    return binary(Max, last - first, convert(1))


def pool2d(data: Tensor, kernel, stride=None, padding=0, pool_type: str = "max",
           ceil_mode: bool = False, count_include_pad: bool = True, dilation=1,
           layout: str = "NCHW", name: str | None = None) -> Tensor:
    """2-D max or average pooling of ``data`` [N, C, H, W] (``layout="NCHWc"``: a channel-
    blocked [N, C/c, H, W, c], pooled the same way per channel).

    Args:
        kernel, stride, dilation: an int or ``(h, w)``; ``stride`` defaults to ``kernel``.
        padding: an int, ``(pad_h, pad_w)`` or ``(top, left, bottom, right)``; max pooling
            pads with the dtype's lowest value, so padding never wins.
        pool_type: ``"max"`` or ``"avg"``.
        ceil_mode: round the output size up (the last window may hang over the end).
        count_include_pad: for ``"avg"``, divide by the window size clipped to the padded
            input (True) or by the number of real input elements in the window (False), as
            PyTorch does.

    Example: ``Y = ops.nn.pool2d(X, kernel=(2, 2), stride=2, pool_type="avg")``.
    """
    op = "pool2d"
    check_tensor(op, "data", data)
    if layout not in ("NCHW", "NCHWc"):
        raise UserError(f"{op}: the layout must be 'NCHW' or 'NCHWc', got {layout!r}")
    check_ndim(op, "data", data, 4 if layout == "NCHW" else 5, layout)
    if pool_type not in ("max", "avg"):
        raise UserError(f"{op}: pool_type must be 'max' or 'avg', got {pool_type!r}")
    kernel = to_pair(op, "kernel", kernel)
    stride = kernel if stride is None else to_pair(op, "stride", stride)
    dilation = to_pair(op, "dilation", dilation)
    for vals, what in ((kernel, "kernel"), (stride, "stride"), (dilation, "dilation")):
        if not all(isinstance(v, int) for v in vals):
            raise ShapeError(f"{op}: {what} must be ints, got {vals}")
        check_positive(op, what, vals)
    top, left, bottom, right = padding_4(op, padding)
    check_non_negative(op, "padding", (top, left, bottom, right))
    n, c, h, w = data.shape[:4]
    block = tuple(data.shape[4:])  # NCHWc: the channels within a block, innermost
    out_h = out_extent(op, "height", h, top, bottom, kernel[0], stride[0], dilation[0],
                       ceil_mode)
    out_w = out_extent(op, "width", w, left, right, kernel[1], stride[1], dilation[1],
                       ceil_mode)
    # ceil_mode windows may run past the bottom / right padding: pad far enough to read them
    pad_bottom, pad_right = bottom, right
    if ceil_mode:
        for axis_pos, (extent, size, lo, hi) in enumerate(((out_h, h, top, bottom),
                                                           (out_w, w, left, right))):
            if const_int(extent) is not None and const_int(size) is not None:
                reach = (const_int(extent) - 1) * stride[axis_pos] + \
                    (kernel[axis_pos] - 1) * dilation[axis_pos] + 1
                need = max(hi, reach - const_int(size) - lo)
            else:  # symbolic: the last window reaches at most stride - 1 past the padding
                need = fold_add(hi, stride[axis_pos] - 1)
            if axis_pos == 0:
                pad_bottom = need
            else:
                pad_right = need
    fill = red.min_value(data.dtype) if pool_type == "max" else const(0, data.dtype)
    padded = data
    if any(const_int(p) != 0 for p in (top, left, pad_bottom, pad_right)):
        inner = (0,) * len(block)
        padded = pad(data, (0, 0, top, left, *inner), (0, 0, pad_bottom, pad_right, *inner),
                     fill.value, name="pad_temp")
    ry = reduce_axis((0, kernel[0]), name="ry")
    rx = reduce_axis((0, kernel[1]), name="rx")

    def read(b, f, y, x, *inner):
        return padded[(b, f, y * stride[0] + ry.var * dilation[0],
                       x * stride[1] + rx.var * dilation[1], *inner)]

    shape = (n, c, out_h, out_w, *block)
    if pool_type == "max":
        return compute(shape, lambda *i: red.max(read(*i), axis=[ry, rx]),
                       name=name or "pool_max", tag="pool_max")
    total = compute(shape, lambda *i: red.sum(read(*i), axis=[ry, rx]),
                    name=f"{name or 'pool'}_sum", tag="pool_sum")
    acc = data.dtype if dt.is_float(data.dtype) else "float32"

    def average(*index):
        b, f, y, x = index[:4]
        y0, x0 = y * stride[0] - top, x * stride[1] - left
        if count_include_pad:
            lows, highs = (-convert(top), -convert(left)), (fold_add(h, bottom),
                                                              fold_add(w, right))
        else:
            lows, highs = (convert(0), convert(0)), (convert(h), convert(w))
        count = _window_count(y0, kernel[0], dilation[0], lows[0], highs[0]) * \
            _window_count(x0, kernel[1], dilation[1], lows[1], highs[1])
        return _cast(_cast(total[index], acc) / _cast(count, acc), data.dtype)

    return compute(shape, average, name=name or "pool_avg", tag="pool_avg")


def global_pool(data: Tensor, pool_type: str = "max", layout: str = "NCHW",
                name: str | None = None) -> Tensor:
    """Max or average over the whole H x W plane of ``data`` [N, C, H, W] -> [N, C, 1, 1].

    Example: ``G = ops.nn.global_pool(X, pool_type="avg")``."""
    op = "global_pool"
    check_tensor(op, "data", data)
    if layout != "NCHW":
        raise UserError(f"{op}: only the NCHW layout is supported, got {layout!r}")
    check_ndim(op, "data", data, 4, "NCHW")
    if pool_type not in ("max", "avg"):
        raise UserError(f"{op}: pool_type must be 'max' or 'avg', got {pool_type!r}")
    n, c, h, w = data.shape
    ry = reduce_axis((0, h), name="ry")
    rx = reduce_axis((0, w), name="rx")
    reducer = red.max if pool_type == "max" else red.sum
    stage_name = (name or "global_pool_max") if pool_type == "max" else \
        f"{name or 'global_pool'}_sum"
    pooled = compute((n, c, 1, 1), lambda b, f, y, x: reducer(data[b, f, ry.var, rx.var],
                                                              axis=[ry, rx]),
                     name=stage_name, tag=f"global_pool_{pool_type}")
    if pool_type == "max":
        return pooled
    acc = data.dtype if dt.is_float(data.dtype) else "float32"
    count = _cast(convert(h) * w, acc)
    return compute((n, c, 1, 1), lambda *i: _cast(_cast(pooled(*i), acc) / count, data.dtype),
                   name=name or "global_pool_avg", tag="global_pool_avg")


__all__ = ["pool2d", "global_pool"]
