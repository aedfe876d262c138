"""The operator library, written in the tensor DSL and named after TOPI's operators.

Submodules: ``elemwise`` (broadcasting arithmetic, activations, math, where), ``transform``
(transpose, reshape, concatenate, slices, pad, take, ...), ``reduce`` (sum / max / argmax ...),
``nn`` (dense, matmul, convolution, pooling, softmax, normalisation; ``conv`` and ``pool`` hold
the convolution and pooling code it re-exports), ``winograd`` (Winograd 3x3 convolution in the
blocked layout, with its schedule). Every operator returns a ``Tensor`` made by
``tl.compute`` (a list for ``transform.split``), ready to schedule.

Example::

    import tensorlang as tl
    import tensorlang.ops
    X = tl.placeholder((1, 8, 12, 12), name="X")
    W = tl.placeholder((4, 8, 3, 3), name="W")
    Y = tl.ops.nn.relu(tl.ops.nn.conv2d_nchw(X, W, padding=1))
    s = tl.create_schedule(Y)
"""
from . import blas, conv, cpu_schedules, elemwise, nn, pool, reduce, transform, winograd

__all__ = ["blas", "conv", "cpu_schedules", "elemwise", "nn", "pool", "reduce", "transform",
           "winograd"]
