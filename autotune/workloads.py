"""Ready-made workloads: common operators to tune without writing the DSL.

Each is registered with :func:`autotune.workload` under this module's importable name, so build
and measure workers (and other machines) rebuild them by name.

Example::

    import autotune
    from autotune.workloads import matmul

    task = autotune.Task(matmul, args=(1024, 1024, 1024), target="llvm")
    autotune.tune([task], trials=64, database="tuning.db")
    s, args = task.apply_best("tuning.db")
"""
from __future__ import annotations

import tensorlang as tl
from tensorlang.ops import nn

from .task import workload

__all__ = ["matmul", "batch_matmul", "dense", "conv2d_nchw", "conv2d_winograd_nchw"]


@workload
def matmul(m: int, n: int, k: int, dtype: str = "float32"):
    """``C[m, n] = A[m, k] @ B[k, n]``."""
    A = tl.placeholder((m, k), dtype, name="A")
    B = tl.placeholder((k, n), dtype, name="B")
    r = tl.reduce_axis((0, k), name="k")
    C = tl.compute((m, n), lambda i, j: tl.sum(A[i, r] * B[r, j], axis=r), name="C")
    return [A, B, C]


@workload
def batch_matmul(batch: int, m: int, n: int, k: int, dtype: str = "float32"):
    """``C[b, m, n] = A[b, m, k] @ B[b, k, n]``."""
    A = tl.placeholder((batch, m, k), dtype, name="A")
    B = tl.placeholder((batch, k, n), dtype, name="B")
    return [A, B, nn.batch_matmul(A, B)]


@workload
def dense(m: int, n: int, k: int, bias: bool = True, relu: bool = False,
          dtype: str = "float32"):
    """``x[m, k] @ weight[n, k].T (+ bias[n]) (then relu)``."""
    from tensorlang.ops import elemwise
    x = tl.placeholder((m, k), dtype, name="x")
    w = tl.placeholder((n, k), dtype, name="weight")
    args = [x, w]
    b = None
    if bias:
        b = tl.placeholder((n,), dtype, name="bias")
        args.append(b)
    y = nn.dense(x, w, b)
    if relu:
        y = elemwise.relu(y)
    return args + [y]


@workload
def conv2d_nchw(batch: int, channels: int, height: int, width: int, filters: int,
                kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                groups: int = 1, dtype: str = "float32", blocked: bool = True):
    """2-D convolution of ``data[batch, channels, height, width]`` with
    ``weight[filters, channels // groups, kernel, kernel]``.

    With ``blocked`` (the default) an ungrouped convolution is computed through channel-blocked
    copies of its data and weights (``nn.conv2d_nchw_blocked``): the same result, in a form
    whose tiled schedules keep 16 output channels in vector registers, which plain NCHW loops
    cannot express."""
    data = tl.placeholder((batch, channels, height, width), dtype, name="data")
    weight = tl.placeholder((filters, channels // groups, kernel, kernel), dtype, name="weight")
    if blocked and groups == 1 and filters % 4 == 0:
        out = nn.conv2d_nchw_blocked(data, weight, stride=stride, padding=padding,
                                     dilation=dilation)
    else:
        out = nn.conv2d_nchw(data, weight, stride=stride, padding=padding, dilation=dilation,
                             groups=groups)
    return [data, weight, out]


@workload
def conv2d_winograd_nchw(batch: int, channels: int, height: int, width: int, filters: int,
                         padding: int = 1, tile: int = 4, dtype: str = "float32"):
    """The stride-1 3x3 convolution of ``conv2d_nchw`` computed as Winograd ``F(tile x tile,
    3x3)`` (``tensorlang.ops.winograd``): ``data[batch, channels, height, width]`` and the
    transformed weight ``[(tile + 2)^2, channels, filters]`` (``winograd_weight`` of the OIHW
    weight, done once ahead of time, as a compiled model does) give the NCHW output.

    The data is copied into 16-channel blocks, transformed, multiplied (a batched matmul, the
    stage the tuner searches: the transforms keep fixed schedules) and transformed back, then
    copied out to NCHW. Tune it beside ``conv2d_nchw`` of the same layer in one ``group``;
    ``autotune.best_task`` picks the faster::

        direct = Task(conv2d_nchw, (1, 64, 56, 56, 64, 3, 1, 1), group="conv")
        fast = Task(conv2d_winograd_nchw, (1, 64, 56, 56, 64, 1), group="conv")
        autotune.tune([direct, fast], trials=200)
    """
    from tensorlang.ops.conv import channel_block
    from tensorlang.ops.winograd import conv2d_winograd_nchwc
    alpha = tile + 2
    cb, kb = channel_block(channels), channel_block(filters)
    data = tl.placeholder((batch, channels, height, width), dtype, name="data")
    weight = tl.placeholder((alpha * alpha, channels, filters), dtype, name="weight_winograd")
    blocked = tl.compute((batch, channels // cb, height, width, cb),
                         lambda b, co, y, x, ci: data[b, co * cb + ci, y, x], name="data_blocked")
    out = conv2d_winograd_nchwc(blocked, weight, tile=tile, padding=padding, out_block=kb)
    _, _, out_h, out_w, _ = out.shape
    result = tl.compute((batch, filters, out_h, out_w),
                        lambda b, k, y, x: out[b, k // kb, y, x, k % kb], name="output")
    return [data, weight, result]
