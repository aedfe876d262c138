"""2-D convolutions in NCHW layout: grouped / dilated / strided ``conv2d_nchw`` and
``depthwise_conv2d_nchw``. Re-exported by ``ops.nn``.

Padding is its own stage (``pad_temp``, made by ``ops.transform.pad``) that reads the input
only inside ``tl.if_then_else``; schedule it with ``compute_inline`` or ``compute_at`` into the
convolution.

Example::

    import tensorlang as tl
    from tensorlang import ops
    X = tl.placeholder((1, 8, 12, 12), name="X")
    W = tl.placeholder((4, 8, 3, 3), name="W")
    Y = ops.nn.conv2d_nchw(X, W, stride=1, padding=1)        # (1, 4, 12, 12)
    s = tl.create_schedule(Y)
    s[Y.op.input_tensors[0]].compute_at(s[Y], Y.op.axis[2])  # pad one row band at a time
"""
from __future__ import annotations

from .. import dtype as dt
from .. import math as tm
from .. import reduction as red
from ..errors import DTypeError, ShapeError
from ..expr import Min, PrimExpr, binary, cast as _cast, convert
from ..tensor import Tensor, compute, reduce_axis
from ._util import (check_ndim, check_non_negative, check_positive, check_tensor, const_int,
                    dims_differ, fold_add, fold_mul, padding_4, shape_str, to_pair)
from .transform import pad


def out_extent(op: str, name: str, size, pad_lo, pad_hi, kernel, stride, dilation,
               ceil_mode: bool = False) -> PrimExpr:
    """Output extent of a sliding window: ``(size + pads - dilated_kernel) // stride + 1``."""
    dilated = (kernel - 1) * dilation + 1
    span = fold_add(fold_add(size, pad_lo), pad_hi)
    c = const_int(span)
    if c is not None:
        if c < dilated:
            raise ShapeError(f"{op}: the {name} window ({dilated} after dilation) is larger "
                             f"than the padded input ({c})")
        if ceil_mode:
            out = -(-(c - dilated) // stride) + 1
            # the last window must start inside the input or the leading padding
            if (out - 1) * stride >= fold_add(size, pad_lo).value:
                out -= 1
            return convert(out)
        return convert((c - dilated) // stride + 1)
    if not ceil_mode:
        return tm.floordiv(span - dilated, stride) + 1
    # rounded up, but the last window must start inside the input or the leading padding
    return binary(Min, tm.floordiv(span - dilated + (stride - 1), stride) + 1,
                  tm.floordiv(fold_add(size, pad_lo) - 1, stride) + 1)


def _conv_args(op, data, kernel, stride, padding, dilation):
    check_tensor(op, "data", data)
    check_tensor(op, "kernel", kernel)
    check_ndim(op, "data", data, 4, "NCHW")
    check_ndim(op, "kernel", kernel, 4, "OIHW")
    stride = to_pair(op, "stride", stride)
    dilation = to_pair(op, "dilation", dilation)
    pads = padding_4(op, padding)
    for vals, what in ((stride, "stride"), (dilation, "dilation")):
        if not all(isinstance(v, int) for v in vals):
            raise ShapeError(f"{op}: {what} must be ints, got {vals}")
    check_positive(op, "stride", stride)
    check_positive(op, "dilation", dilation)
    check_non_negative(op, "padding", pads)
    return stride, pads, dilation


def _out_dtype(op, data, kernel, out_dtype):
    if out_dtype is not None:
        return dt.normalize(out_dtype)
    if data.dtype != kernel.dtype:
        raise DTypeError(f"{op}: data {data.name} is {data.dtype} but kernel {kernel.name} is "
                         f"{kernel.dtype}; cast one or pass out_dtype=")
    return data.dtype


def _padded(op, data, pads):
    top, left, bottom, right = pads
    if all(const_int(p) == 0 for p in pads):
        return data
    return pad(data, (0, 0, top, left), (0, 0, bottom, right), 0.0 if dt.is_float(data.dtype)
               else 0, name="pad_temp")


def _spatial(op, data, kernel_hw, stride, pads, dilation):
    kh, kw = kernel_hw
    if const_int(kh) is None or const_int(kw) is None:
        raise ShapeError(f"{op}: the kernel's spatial extents must be constants, got "
                         f"({kh}, {kw})")
    out_h = out_extent(op, "height", data.shape[2], pads[0], pads[2], const_int(kh),
                       stride[0], dilation[0])
    out_w = out_extent(op, "width", data.shape[3], pads[1], pads[3], const_int(kw),
                       stride[1], dilation[1])
    return out_h, out_w


def _window(y, r, stride, dilation):
    y = y * stride if stride != 1 else y
    r = r * dilation if dilation != 1 else r
    return y + r


def conv2d_nchw(data: Tensor, kernel: Tensor, stride=1, padding=0, dilation=1, groups: int = 1,
                out_dtype: str | None = None, name: str = "conv2d_nchw") -> Tensor:
    """2-D convolution (cross-correlation, as in every framework) of ``data`` [N, C, H, W]
    with ``kernel`` [K, C // groups, KH, KW], giving [N, K, OH, OW].

    Args:
        stride, dilation: an int or ``(h, w)``.
        padding: an int, ``(pad_h, pad_w)`` or ``(top, left, bottom, right)``.
        groups: channel groups; ``groups == C == K`` is a depthwise convolution.
        out_dtype: accumulate and return in this dtype (default: the inputs' dtype).

    Example: ``Y = ops.nn.conv2d_nchw(X, W, stride=2, padding=(1, 1), groups=2)``.
    """
    op = "conv2d_nchw"
    stride, pads, dilation = _conv_args(op, data, kernel, stride, padding, dilation)
    out_dtype = _out_dtype(op, data, kernel, out_dtype)
    n, c, _, _ = data.shape
    k, cg, kh, kw = kernel.shape
    if not isinstance(groups, int) or groups <= 0:
        raise ShapeError(f"{op}: groups must be a positive int, got {groups!r}")
    if const_int(c) is not None and const_int(cg) is not None and \
            const_int(c) != const_int(cg) * groups:
        raise ShapeError(f"{op}: data {data.name} has {const_int(c)} channels but kernel "
                         f"{kernel.name} expects {const_int(cg) * groups} (groups={groups}, "
                         f"kernel shape {shape_str(kernel.shape)})")
    if const_int(k) is not None and const_int(k) % groups:
        raise ShapeError(f"{op}: kernel {kernel.name} has {const_int(k)} output channels, "
                         f"which groups={groups} does not divide")
    out_h, out_w = _spatial(op, data, (kh, kw), stride, pads, dilation)
    padded = _padded(op, data, pads)
    rc = reduce_axis((0, cg), name="rc")
    ry = reduce_axis((0, kh), name="ry")
    rx = reduce_axis((0, kw), name="rx")
    k_per_group = const_int(k) // groups if const_int(k) is not None else k // groups

    def body(b, f, y, x):
        channel = rc.var if groups == 1 else (f // k_per_group) * cg + rc.var
        value = padded[b, channel, _window(y, ry.var, stride[0], dilation[0]),
                       _window(x, rx.var, stride[1], dilation[1])]
        weight = kernel[f, rc.var, ry.var, rx.var]
        return red.sum(_cast(value, out_dtype) * _cast(weight, out_dtype), axis=[rc, ry, rx])

    return compute((n, k, out_h, out_w), body, name=name, tag="conv2d_nchw")


def channel_block(extent: int, preferred=(16, 8, 4, 2, 1)) -> int:
    """The first of ``preferred`` block sizes that divides ``extent`` (channels per block of a
    blocked layout), else 1."""
    return next((b for b in preferred if extent % b == 0), 1)


def conv2d_nchw_blocked(data: Tensor, kernel: Tensor, stride=1, padding=0, dilation=1,
                        c_block: int | None = None, k_block: int | None = None,
                        name: str = "conv2d_nchw") -> Tensor:
    """``conv2d_nchw`` (groups 1, constant shapes) computed in a channel-blocked layout.

    The same function as :func:`conv2d_nchw`, written as four stages so that schedules (and the
    auto-scheduler) can keep ``k_block`` output channels in vector registers: ``data_pack``
    ``[N, C/cb, H+pt+pb, W+pl+pr, cb]`` (zero-padded), ``kernel_pack`` ``[K/kb, C/cb, KH, KW,
    cb, kb]``, ``conv_blocked`` ``[N, K/kb, OH, OW, kb]`` and the NCHW result ``name``.
    ``c_block`` / ``k_block`` default to the largest of 16, 8, 4, 2, 1 dividing C / K.

    Example: ``Y = ops.nn.conv2d_nchw_blocked(X, W, padding=1)`` gives what
    ``conv2d_nchw(X, W, padding=1)`` gives.
    """
    op = "conv2d_nchw_blocked"
    stride, pads, dilation = _conv_args(op, data, kernel, stride, padding, dilation)
    _out_dtype(op, data, kernel, None)  # data and kernel dtypes must agree
    dims = [const_int(d) for d in tuple(data.shape) + tuple(kernel.shape)]
    if any(d is None for d in dims):
        raise ShapeError(f"{op}: needs constant shapes, got data {shape_str(data.shape)} and "
                         f"kernel {shape_str(kernel.shape)}")
    n, c, h, w, k, cg, kh, kw = dims
    if cg != c:
        raise ShapeError(f"{op}: data {data.name} has {c} channels but kernel {kernel.name} "
                         f"expects {cg} (grouped convolutions use conv2d_nchw)")
    cb = c_block or channel_block(c)
    kb = k_block or channel_block(k)
    if c % cb or k % kb:
        raise ShapeError(f"{op}: c_block={cb} must divide the {c} input channels and "
                         f"k_block={kb} the {k} output channels")
    out_h, out_w = (const_int(e) for e in _spatial(op, data, (kh, kw), stride, pads, dilation))
    top, left, bottom, right = (const_int(p) for p in pads)
    ph, pw = h + top + bottom, w + left + right
    zero = 0.0 if dt.is_float(data.dtype) else 0

    def pack_data(b, co, y, x, ci):
        value = data[b, co * cb + ci, y - top, x - left]
        if not (top or left or bottom or right):
            return value
        inside = (y >= top) & (y < h + top) & (x >= left) & (x < w + left)
        return tm.if_then_else(inside, value, zero)

    dpack = compute((n, c // cb, ph, pw, cb), pack_data, name="data_pack")
    kpack = compute((k // kb, c // cb, kh, kw, cb, kb),
                    lambda ko, co, r, q, ci, ki: kernel[ko * kb + ki, co * cb + ci, r, q],
                    name="kernel_pack")
    blocked = _conv_blocked(dpack, kpack, (n, k // kb, out_h, out_w, kb), stride, dilation)
    return compute((n, k, out_h, out_w),
                   lambda b, f, y, x: blocked[b, f // kb, y, x, f % kb], name=name,
                   tag="conv2d_nchw")


def _conv_blocked(padded: Tensor, kpack: Tensor, out_shape, stride, dilation) -> Tensor:
    """The blocked reduction ``[N, K/kb, OH, OW, kb]`` over a zero-padded blocked input and a
    packed kernel ``[K/kb, C/cb, KH, KW, cb, kb]``."""
    _, c_outer, kh, kw, cb, _ = (const_int(d) for d in kpack.shape)
    rco = reduce_axis((0, c_outer), name="rco")
    ry = reduce_axis((0, kh), name="ry")
    rx = reduce_axis((0, kw), name="rx")
    rci = reduce_axis((0, cb), name="rci")
    return compute(
        out_shape,
        lambda b, ko, y, x, ki: red.sum(
            padded[b, rco, _window(y, ry.var, stride[0], dilation[0]),
                   _window(x, rx.var, stride[1], dilation[1]), rci]
            * kpack[ko, rco, ry, rx, rci, ki], axis=[rco, ry, rx, rci]),
        name="conv_blocked", tag="conv2d_nchwc")


def conv2d_nchwc(data: Tensor, kernel: Tensor, stride=1, padding=0, dilation=1) -> Tensor:
    """2-D convolution in the channel-blocked layout: ``data`` ``[N, C/cb, H, W, cb]`` and a
    packed ``kernel`` ``[K/kb, C/cb, KH, KW, cb, kb]`` give ``[N, K/kb, OH, OW, kb]``.

    Channel ``c`` of the NCHW tensor is ``[:, c // cb, :, :, c % cb]`` here; the kernel is
    ``W[K, C, KH, KW]`` as ``W.reshape(K/kb, kb, C/cb, cb, KH, KW).transpose(0, 2, 4, 5, 3,
    1)``. This is the layout the graph layer's conv layout pass keeps between convolutions
    (packing the weights once, at build time); padding is a ``data_pad`` stage.

    Example: ``Y = ops.nn.conv2d_nchwc(X5, W6, stride=1, padding=1)``.
    """
    op = "conv2d_nchwc"
    check_tensor(op, "data", data)
    check_tensor(op, "kernel", kernel)
    check_ndim(op, "data", data, 5, "NCHWc")
    check_ndim(op, "kernel", kernel, 6, "OIHWio")
    stride, dilation = to_pair(op, "stride", stride), to_pair(op, "dilation", dilation)
    pads = padding_4(op, padding)
    check_positive(op, "stride", stride)
    check_positive(op, "dilation", dilation)
    check_non_negative(op, "padding", pads)
    _out_dtype(op, data, kernel, None)
    dims = [const_int(d) for d in tuple(data.shape) + tuple(kernel.shape)]
    if any(d is None for d in dims):
        raise ShapeError(f"{op}: needs constant shapes, got data {shape_str(data.shape)} and "
                         f"kernel {shape_str(kernel.shape)}")
    n, c_outer, h, w, cb, k_outer, kc_outer, kh, kw, kcb, kb = dims
    if (c_outer, cb) != (kc_outer, kcb):
        raise ShapeError(f"{op}: data {data.name} {shape_str(data.shape)} has {c_outer} blocks "
                         f"of {cb} channels but kernel {kernel.name} {shape_str(kernel.shape)} "
                         f"expects {kc_outer} blocks of {kcb}")
    top, left, bottom, right = (const_int(p) for p in pads)
    out_h = const_int(out_extent(op, "height", h, top, bottom, kh, stride[0], dilation[0]))
    out_w = const_int(out_extent(op, "width", w, left, right, kw, stride[1], dilation[1]))
    padded = data
    if top or left or bottom or right:
        zero = 0.0 if dt.is_float(data.dtype) else 0

        def pad_data(b, co, y, x, ci):
            inside = (y >= top) & (y < h + top) & (x >= left) & (x < w + left)
            return tm.if_then_else(inside, data[b, co, y - top, x - left, ci], zero)

        padded = compute((n, c_outer, h + top + bottom, w + left + right, cb), pad_data,
                         name="data_pad")
    return _conv_blocked(padded, kernel, (n, k_outer, out_h, out_w, kb), stride, dilation)


def depthwise_conv2d_nchw(data: Tensor, kernel: Tensor, stride=1, padding=0, dilation=1,
                          out_dtype: str | None = None,
                          name: str = "depthwise_conv2d_nchw") -> Tensor:
    """Depthwise 2-D convolution: ``data`` [N, C, H, W], ``kernel`` [C, M, KH, KW] (M filters
    per input channel, TOPI's layout), giving [N, C * M, OH, OW]; output channel ``c`` reads
    input channel ``c // M``.

    Example: ``Y = ops.nn.depthwise_conv2d_nchw(X, W, stride=1, padding=1)``.
    """
    op = "depthwise_conv2d_nchw"
    stride, pads, dilation = _conv_args(op, data, kernel, stride, padding, dilation)
    out_dtype = _out_dtype(op, data, kernel, out_dtype)
    n, c, _, _ = data.shape
    kc, m, kh, kw = kernel.shape
    if dims_differ(c, kc):
        raise ShapeError(f"{op}: data {data.name} has {c} channels but kernel {kernel.name} "
                         f"has {kc} (kernel shape {shape_str(kernel.shape)}, expected "
                         "[channels, multiplier, KH, KW])")
    out_h, out_w = _spatial(op, data, (kh, kw), stride, pads, dilation)
    padded = _padded(op, data, pads)
    ry = reduce_axis((0, kh), name="ry")
    rx = reduce_axis((0, kw), name="rx")
    multiplier = const_int(m)
    out_c = fold_mul(c, m)

    def body(b, f, y, x):
        channel, sub = (f, 0) if multiplier == 1 else (f // m, f % m)
        value = padded[b, channel, _window(y, ry.var, stride[0], dilation[0]),
                       _window(x, rx.var, stride[1], dilation[1])]
        weight = kernel[channel, sub, ry.var, rx.var]
        return red.sum(_cast(value, out_dtype) * _cast(weight, out_dtype), axis=[ry, rx])

    return compute((n, out_c, out_h, out_w), body, name=name,
                   tag="depthwise_conv2d_nchw")


def depthwise_conv2d_nchw_phased(data: Tensor, kernel: Tensor, stride=1, padding=0,
                                 out_dtype: str | None = None,
                                 name: str = "depthwise_conv2d_nchw") -> Tensor:
    """:func:`depthwise_conv2d_nchw` with one filter per channel (``kernel`` [C, 1, KH, KW]),
    for a stride along the width: the padded input is first split into its ``stride`` column
    phases, ``phases[n, c, y, p, x] = padded[n, c, y, x * stride + p]``, so that the
    convolution reads each phase's rows contiguously (a vector of outputs reads a vector of
    inputs) instead of gathering every ``stride``-th element. The strided read happens once,
    in the phase split; the direct form reads each input KH x KW times. Same numbers as
    :func:`depthwise_conv2d_nchw` (dilation 1).

    Example: ``Y = ops.nn.depthwise_conv2d_nchw_phased(X, W, stride=2, padding=1)``.
    """
    op = "depthwise_conv2d_nchw"
    stride, pads, dilation = _conv_args(op, data, kernel, stride, padding, 1)
    out_dtype = _out_dtype(op, data, kernel, out_dtype)
    n, c, h, w = data.shape
    kc, m, kh, kw = kernel.shape
    if dims_differ(c, kc) or const_int(m) != 1:
        raise ShapeError(f"{op}: the phased form takes one filter per channel (kernel "
                         f"[C, 1, KH, KW]); got data {shape_str(data.shape)} and kernel "
                         f"{shape_str(kernel.shape)}")
    out_h, out_w = _spatial(op, data, (kh, kw), stride, pads, dilation)
    extents = [const_int(v) for v in (out_h, out_w, kh, kw)]
    if any(v is None for v in extents):
        raise ShapeError(f"{op}: the phased form needs constant shapes, got data "
                         f"{shape_str(data.shape)} and kernel {shape_str(kernel.shape)}")
    out_h, out_w, kh, kw = extents
    sh, sw = stride
    rows, cols = (out_h - 1) * sh + kh, out_w + (kw - 1) // sw
    zero = 0.0 if dt.is_float(data.dtype) else 0

    def phase(b, f, y, p, x):
        row, col = y - pads[0], x * sw + p - pads[1]
        inside = tm.all(row >= 0, row < h, col >= 0, col < w)
        return tm.if_then_else(inside, data[b, f, row, col], zero)

    phases = compute((n, c, rows, sw, cols), phase, name="phases", tag="injective,pad")
    ry = reduce_axis((0, kh), name="ry")
    rx = reduce_axis((0, kw), name="rx")

    def body(b, f, y, x):
        value = phases[b, f, y * sh + ry.var, rx.var % sw, x + rx.var // sw]
        return red.sum(_cast(value, out_dtype) * _cast(kernel[f, 0, ry.var, rx.var], out_dtype),
                       axis=[ry, rx])

    return compute((n, c, out_h, out_w), body, name=name, tag="depthwise_conv2d_nchw")


__all__ = ["channel_block", "conv2d_nchw", "conv2d_nchw_blocked", "conv2d_nchwc", "depthwise_conv2d_nchw",
           "depthwise_conv2d_nchw_phased", "out_extent"]
