"""Neural-network operators: dense / matmul / batch_matmul, softmax and log_softmax, layer and
batch normalisation; convolutions (``ops.conv``), pooling (``ops.pool``) and the activations of
``ops.elemwise`` are re-exported here under TOPI's names (``ops.nn.conv2d_nchw``,
``ops.nn.relu``, ...).

Example::

    import tensorlang as tl
    from tensorlang import ops
    n = tl.var("n")
    X = tl.placeholder((n, 64), name="X")
    W = tl.placeholder((32, 64), name="W")
    B = tl.placeholder((32,), name="B")
    Y = ops.nn.softmax(ops.nn.relu(ops.nn.dense(X, W, B)), axis=-1)
"""
from __future__ import annotations

from .. import dtype as dt
from .. import math as tm
from .. import reduction as red
from ..errors import DTypeError, ShapeError
from ..expr import cast as _cast, const
from ..tensor import Tensor, compute, reduce_axis
from ._util import (broadcast_shape, check_float, check_ndim, check_tensor, const_int,
                    dims_differ, normalize_axes, normalize_axis, product, shape_str)
from .conv import (conv2d_nchw, conv2d_nchw_blocked, conv2d_nchwc,  # noqa: F401
                   depthwise_conv2d_nchw, depthwise_conv2d_nchw_phased)
from .elemwise import (clip, gelu, leaky_relu, relu, sigmoid, tanh)  # noqa: F401
from .pool import global_pool, pool2d  # noqa: F401


def _acc_dtype(op, a, b, out_dtype):
    if out_dtype is not None:
        return dt.normalize(out_dtype)
    if a.dtype != b.dtype:
        raise DTypeError(f"{op}: {a.name} is {a.dtype} but {b.name} is {b.dtype}; cast one or "
                         "pass out_dtype=")
    return a.dtype


def _check_reduce_dim(op, a, a_dim, b, b_dim):
    if dims_differ(a.shape[a_dim], b.shape[b_dim]):
        raise ShapeError(f"{op}: the reduction extents differ: {a.name} {shape_str(a.shape)} "
                         f"dimension {a_dim} is {a.shape[a_dim]} but {b.name} "
                         f"{shape_str(b.shape)} dimension {b_dim} is {b.shape[b_dim]}")


def _add_bias(op, out, bias, name):
    check_tensor(op, "bias", bias)
    check_ndim(op, "bias", bias, 1)
    if dims_differ(bias.shape[0], out.shape[-1]):
        raise ShapeError(f"{op}: bias {bias.name} has {bias.shape[0]} elements but the output "
                         f"has {out.shape[-1]} columns")
    return compute(out.shape, lambda *i: out(*i) + _cast(bias[i[-1]], out.dtype),
                   name=f"{name}_bias", tag="broadcast")


def matmul(a: Tensor, b: Tensor, transpose_a: bool = False, transpose_b: bool = False,
           out_dtype: str | None = None, name: str = "T_matmul") -> Tensor:
    """Matrix product of 2-D tensors: ``op(a) @ op(b)`` with ``op`` a transpose when asked.

    Example: ``C = ops.nn.matmul(A, B)`` for ``A`` [m, k] and ``B`` [k, n]."""
    return _matmul("matmul", a, b, transpose_a, transpose_b, out_dtype, name)


def _matmul(op, a, b, transpose_a, transpose_b, out_dtype, name):
    for nm, t in (("a", a), ("b", b)):
        check_tensor(op, nm, t)
        check_ndim(op, nm, t, 2)
    acc = _acc_dtype(op, a, b, out_dtype)
    ka, kb = (0 if transpose_a else 1), (1 if transpose_b else 0)
    _check_reduce_dim(op, a, ka, b, kb)
    m = a.shape[1 - ka]
    n = b.shape[1 - kb]
    k = reduce_axis((0, a.shape[ka]), name="k")

    def body(i, j):
        x = a[k.var, i] if transpose_a else a[i, k.var]
        y = b[j, k.var] if transpose_b else b[k.var, j]
        return red.sum(_cast(x, acc) * _cast(y, acc), axis=k)

    return compute((m, n), body, name=name, tag="matmul")


def dense(x: Tensor, weight: Tensor, bias: Tensor | None = None, out_dtype: str | None = None,
          name: str = "T_dense") -> Tensor:
    """``x @ weight.T (+ bias)`` with ``x`` [m, k] and ``weight`` [n, k] (TOPI's layout). The
    bias adds in a second stage (``<name>_bias``) so the product stays a pure reduction.

    Example: ``Y = ops.nn.dense(X, W, B)``."""
    out = _matmul("dense", x, weight, False, True, out_dtype, name)
    return out if bias is None else _add_bias("dense", out, bias, name)


def batch_matmul(a: Tensor, b: Tensor, transpose_a: bool = False, transpose_b: bool = False,
                 out_dtype: str | None = None, name: str = "T_batch_matmul") -> Tensor:
    """Batched matrix product of [batch, m, k] and [batch, k, n] (with ``transpose_b``,
    [batch, n, k]); a batch extent of 1 broadcasts.

    Example: ``C = ops.nn.batch_matmul(A, B)``."""
    op = "batch_matmul"
    for nm, t in (("a", a), ("b", b)):
        check_tensor(op, nm, t)
        check_ndim(op, nm, t, 3)
    acc = _acc_dtype(op, a, b, out_dtype)
    ka, kb = (1 if transpose_a else 2), (2 if transpose_b else 1)
    _check_reduce_dim(op, a, ka, b, kb)
    batch = broadcast_shape(op, [a.shape[:1], b.shape[:1]], [a.name, b.name])[0]
    m = a.shape[3 - ka]
    n = b.shape[3 - kb]
    k = reduce_axis((0, a.shape[ka]), name="k")
    a_one, b_one = const_int(a.shape[0]) == 1, const_int(b.shape[0]) == 1

    def body(bi, i, j):
        ba, bb = (0 if a_one else bi), (0 if b_one else bi)
        x = a[ba, k.var, i] if transpose_a else a[ba, i, k.var]
        y = b[bb, j, k.var] if transpose_b else b[bb, k.var, j]
        return red.sum(_cast(x, acc) * _cast(y, acc), axis=k)

    return compute((batch, m, n), body, name=name, tag="batch_matmul")


# -- softmax -------------------------------------------------------------------------------

def _drop(indices, axis):
    return tuple(indices[:axis]) + tuple(indices[axis + 1:])


def _put(indices, axis, value):
    return tuple(indices[:axis]) + (value,) + tuple(indices[axis:])


def _max_and_expsum(op, x, axis):
    check_tensor(op, "x", x)
    check_float(op, "x", x)
    axis = normalize_axis(op, axis, x.ndim, x.name)
    reduced = _drop(x.shape, axis)
    k1 = reduce_axis((0, x.shape[axis]), name="k")
    max_elem = compute(reduced, lambda *i: red.max(x(*_put(i, axis, k1.var)), axis=k1),
                       name=f"T_{op}_maxelem", tag=f"{op}_maxelem")
    exp = compute(x.shape, lambda *i: tm.exp(x(*i) - max_elem(*_drop(i, axis))),
                  name=f"T_{op}_exp", tag=f"{op}_exp")
    k2 = reduce_axis((0, x.shape[axis]), name="k")
    expsum = compute(reduced, lambda *i: red.sum(exp(*_put(i, axis, k2.var)), axis=k2),
                     name=f"T_{op}_expsum", tag=f"{op}_expsum")
    return axis, max_elem, exp, expsum


def softmax(x: Tensor, axis: int = -1, name: str = "T_softmax_norm") -> Tensor:
    """Numerically stable softmax along ``axis``: a max stage (``T_softmax_maxelem``),
    ``exp(x - max)`` (``T_softmax_exp``; inline it for the three-stage form), its sum
    (``T_softmax_expsum``) and the division.

    Example: ``P = ops.nn.softmax(Logits, axis=-1)``."""
    axis, _, exp, expsum = _max_and_expsum("softmax", x, axis)
    return compute(x.shape, lambda *i: exp(*i) / expsum(*_drop(i, axis)), name=name,
                   tag="softmax_output")


def log_softmax(x: Tensor, axis: int = -1, name: str = "T_log_softmax_norm") -> Tensor:
    """``x - max - log(sum(exp(x - max)))`` along ``axis``, numerically stable.

    Example: ``L = ops.nn.log_softmax(Logits)``."""
    axis, max_elem, _, expsum = _max_and_expsum("log_softmax", x, axis)
    return compute(x.shape, lambda *i: x(*i) - max_elem(*_drop(i, axis))
                   - tm.log(expsum(*_drop(i, axis))), name=name, tag="log_softmax_output")


# -- normalisation -------------------------------------------------------------------------

def _check_param(op, name, p, expected_shape):
    if p is None:
        return
    check_tensor(op, name, p)
    if p.ndim != len(expected_shape) or any(dims_differ(x, y)
                                            for x, y in zip(p.shape, expected_shape)):
        raise ShapeError(f"{op}: {name} {p.name} has shape {shape_str(p.shape)} but "
                         f"{shape_str(expected_shape)} is expected")


def layer_norm(x: Tensor, gamma: Tensor | None = None, beta: Tensor | None = None,
               axis=-1, epsilon: float = 1e-5, name: str = "T_layer_norm") -> Tensor:
    """``(x - mean) / sqrt(var + epsilon) * gamma + beta`` with mean and (biased) variance
    over ``axis`` (an int or a tuple). ``gamma``/``beta`` have the shape of the normalised
    dimensions. Two passes (a sum stage, then a sum of squared deviations) keep the variance
    accurate.

    Example: ``Y = ops.nn.layer_norm(X, G, B, axis=-1, epsilon=1e-5)``."""
    op = "layer_norm"
    check_tensor(op, "x", x)
    check_float(op, "x", x)
    axes = normalize_axes(op, axis, x.ndim, x.name)
    norm_shape = [x.shape[d] for d in axes]
    _check_param(op, "gamma", gamma, norm_shape)
    _check_param(op, "beta", beta, norm_shape)
    keep = [d for d in range(x.ndim) if d not in axes]
    count = _cast(product(norm_shape), x.dtype)

    def full_index(kept, inner):
        idx = [None] * x.ndim
        for d, v in zip(keep, kept):
            idx[d] = v
        for d, v in zip(axes, inner):
            idx[d] = v
        return idx

    def reduce_vars():
        return [reduce_axis((0, x.shape[d]), name=f"k{d}") for d in axes]

    r1 = reduce_vars()
    total = compute([x.shape[d] for d in keep],
                    lambda *i: red.sum(x(*full_index(i, [r.var for r in r1])), axis=r1),
                    name=f"{name}_sum", tag=f"{op}_sum")
    r2 = reduce_vars()

    def squared_deviation(*i):
        d = x(*full_index(i, [r.var for r in r2])) - total(*i) / count
        return red.sum(d * d, axis=r2)

    var_sum = compute([x.shape[d] for d in keep], squared_deviation,
                      name=f"{name}_var_sum", tag=f"{op}_var_sum")
    eps = const(epsilon, x.dtype)

    def body(*i):
        kept = [i[d] for d in keep]
        inner = [i[d] for d in axes]
        value = (x(*i) - total(*kept) / count) * tm.rsqrt(var_sum(*kept) / count + eps)
        if gamma is not None:
            value = value * _cast(gamma(*inner), x.dtype)
        if beta is not None:
            value = value + _cast(beta(*inner), x.dtype)
        return value

    return compute(x.shape, body, name=name, tag=op)


def batch_norm(x: Tensor, gamma: Tensor | None, beta: Tensor | None, moving_mean: Tensor,
               moving_var: Tensor, axis: int = 1, epsilon: float = 1e-5,
               name: str = "T_batch_norm") -> Tensor:
    """Batch normalisation for inference: ``(x - moving_mean) / sqrt(moving_var + epsilon)
    * gamma + beta`` per channel of ``axis``; the parameters are 1-D tensors of that extent
    (``gamma``/``beta`` may be None for no scale / no shift).

    Example: ``Y = ops.nn.batch_norm(X, G, B, Mean, Var, axis=1)``."""
    op = "batch_norm"
    check_tensor(op, "x", x)
    check_float(op, "x", x)
    axis = normalize_axis(op, axis, x.ndim, x.name)
    channels = [x.shape[axis]]
    for nm, p in (("gamma", gamma), ("beta", beta), ("moving_mean", moving_mean),
                  ("moving_var", moving_var)):
        if p is None and nm.startswith("moving"):
            check_tensor(op, nm, p)
        _check_param(op, nm, p, channels)
    eps = const(epsilon, x.dtype)

    def body(*i):
        c = i[axis]
        value = (x(*i) - _cast(moving_mean[c], x.dtype)) * \
            tm.rsqrt(_cast(moving_var[c], x.dtype) + eps)
        if gamma is not None:
            value = value * _cast(gamma[c], x.dtype)
        if beta is not None:
            value = value + _cast(beta[c], x.dtype)
        return value

    return compute(x.shape, body, name=name, tag="elemwise")


__all__ = ["dense", "matmul", "batch_matmul", "conv2d_nchw", "conv2d_nchw_blocked",
           "conv2d_nchwc", "depthwise_conv2d_nchw", "depthwise_conv2d_nchw_phased", "pool2d",
           "global_pool", "softmax", "log_softmax", "layer_norm", "batch_norm", "relu",
           "leaky_relu", "sigmoid", "tanh", "gelu", "clip"]
