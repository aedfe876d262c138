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

__all__ = ["matmul", "batch_matmul", "dense", "conv2d_nchw"]


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
