"""Elementwise and broadcasting operators of the graph layer."""
from __future__ import annotations

import math

import numpy as np

import tensorlang as tl
from tensorlang import ops as T
from tensorlang.errors import DTypeError, ShapeError
from tensorlang.expr import const
from tensorlang.tensor import compute

from ..ir import TensorType
from . import register


def broadcast_types(op: str, types) -> tuple:
    """The NumPy broadcast of the input shapes, as a shape tuple."""
    try:
        return tuple(np.broadcast_shapes(*[t.shape for t in types]))
    except ValueError:
        shapes = ", ".join(str(t.shape) for t in types)
        raise ShapeError(f"shapes {shapes} cannot be broadcast together") from None


def _same_dtype(types) -> str:
    dtypes = {t.dtype for t in types}
    if len(dtypes) != 1:
        raise DTypeError(f"operands have different dtypes {sorted(dtypes)}; cast one first")
    return types[0].dtype


def _infer_binary(types, attrs):
    return TensorType(broadcast_types("", types), _same_dtype(types))


def _same(types, attrs):
    return types[0]


def _float_same(types, attrs):
    if not np.issubdtype(np.dtype(types[0].dtype), np.floating):
        raise DTypeError(f"needs a float input, got {types[0].dtype}")
    return types[0]


_BINARY = {"add": T.elemwise.add, "subtract": T.elemwise.subtract,
           "multiply": T.elemwise.multiply, "divide": T.elemwise.divide,
           "pow": T.elemwise.power, "maximum": T.elemwise.maximum,
           "minimum": T.elemwise.minimum}

for _name, _fn in _BINARY.items():
    register(_name, _infer_binary, lambda xs, attrs, fn=_fn: fn(xs[0], xs[1]), "broadcast")

_UNARY = {"sigmoid": T.elemwise.sigmoid, "tanh": T.elemwise.tanh, "exp": T.elemwise.exp,
          "log": T.elemwise.log, "sqrt": T.elemwise.sqrt, "erf": T.elemwise.erf}
for _name, _fn in _UNARY.items():
    register(_name, _float_same, lambda xs, attrs, fn=_fn: fn(xs[0]), "elementwise")

register("relu", _same, lambda xs, a: T.elemwise.relu(xs[0]), "elementwise")
register("neg", _same, lambda xs, a: T.elemwise.negative(xs[0]), "elementwise")
register("abs", _same, lambda xs, a: T.elemwise.abs(xs[0]), "elementwise")
register("leaky_relu", _float_same,
         lambda xs, a: T.elemwise.leaky_relu(xs[0], a.get("alpha", 0.01)), "elementwise")


def _gelu(xs, attrs):
    x = xs[0]
    if attrs.get("approximate", "none") == "none":
        return T.elemwise.gelu(x)
    c, half, one = const(math.sqrt(2.0 / math.pi), x.dtype), const(0.5, x.dtype), \
        const(1.0, x.dtype)
    k = const(0.044715, x.dtype)
    return compute(x.shape, lambda *i: half * x(*i) * (one + tl.tanh(
        c * (x(*i) + k * x(*i) * x(*i) * x(*i)))), name="T_gelu_tanh", tag="elemwise")


def _infer_gelu(types, attrs):
    if attrs.get("approximate", "none") not in ("none", "tanh"):
        raise ShapeError(f"approximate must be 'none' or 'tanh', got {attrs['approximate']!r}")
    return _float_same(types, attrs)


register("gelu", _infer_gelu, _gelu, "elementwise")


def _clip(xs, attrs):
    """``min(max(x, min), max)``; a bound of None is left out."""
    x = xs[0]
    lo, hi = attrs.get("min"), attrs.get("max")
    if lo is not None and hi is not None:
        return T.elemwise.clip(x, lo, hi)
    if lo is not None:
        return T.elemwise.maximum(x, const(lo, x.dtype))
    if hi is not None:
        return T.elemwise.minimum(x, const(hi, x.dtype))
    return compute(x.shape, lambda *i: x(*i), name="T_clip", tag="elemwise")


register("clip", _same, _clip, "elementwise")
register("cast", lambda types, a: TensorType(types[0].shape, a["dtype"]),
         lambda xs, a: T.elemwise.cast(xs[0], a["dtype"]), "elementwise")


def _infer_where(types, attrs):
    if types[0].dtype != "bool":
        raise DTypeError(f"the condition must be bool, got {types[0].dtype}")
    return TensorType(broadcast_types("where", types), _same_dtype(types[1:]))


register("where", _infer_where, lambda xs, a: T.elemwise.where(xs[0], xs[1], xs[2]),
         "broadcast")
