"""Elementwise operators: broadcasting arithmetic, activations, math, clip, cast and where.

Binary operators follow NumPy broadcasting between two tensors (a constant extent 1 stretches;
symbolic extents are trusted to agree) and accept a Python number or scalar expression for
either operand, which takes the tensor's dtype where it fits.

Example::

    import tensorlang as tl
    from tensorlang import ops
    A = tl.placeholder((4, 1, 8), name="A")
    B = tl.placeholder((3, 8), name="B")
    C = ops.elemwise.add(A, B)                       # shape (4, 3, 8)
    D = ops.elemwise.relu(ops.elemwise.multiply(C, 0.5))
"""
from __future__ import annotations

import math as _math
from typing import Callable, Union

from .. import dtype as dt
from .. import math as tm
from ..errors import DTypeError, UserError
from ..expr import Max, Min, PrimExpr, binary, cast as _cast, const
from ..tensor import Tensor, compute
from ._util import broadcast_index, broadcast_shape, check_float, check_tensor

Operand = Union[Tensor, PrimExpr, int, float]


def _binary(op: str, fn: Callable, a: Operand, b: Operand, name: str | None) -> Tensor:
    name = name or f"T_{op}"
    a_t, b_t = isinstance(a, Tensor), isinstance(b, Tensor)
    if not a_t and not b_t:
        raise UserError(f"{op}: at least one operand must be a tensor; for two scalars use "
                        f"expression arithmetic (got {a!r} and {b!r})")
    if a_t and b_t:
        shape = broadcast_shape(op, [a.shape, b.shape], [a.name, b.name])
        ndim = len(shape)
        return compute(shape, lambda *i: fn(broadcast_index(a, ndim, i),
                                            broadcast_index(b, ndim, i)),
                       name=name, tag="broadcast")
    for scalar in (a, b):
        if not isinstance(scalar, Tensor) and not isinstance(scalar, (int, float, PrimExpr)):
            import numpy as np
            if not isinstance(scalar, np.generic):
                raise UserError(f"{op}: operands must be tensors or scalars, got "
                                f"{type(scalar).__name__}")
    t = a if a_t else b
    if a_t:
        return compute(t.shape, lambda *i: fn(t(*i), b), name=name, tag="elemwise")
    return compute(t.shape, lambda *i: fn(a, t(*i)), name=name, tag="elemwise")


def add(a: Operand, b: Operand, name: str | None = None) -> Tensor:
    """``a + b`` with broadcasting. Example: ``C = ops.elemwise.add(A, B)``."""
    return _binary("add", lambda x, y: x + y, a, b, name)


def subtract(a: Operand, b: Operand, name: str | None = None) -> Tensor:
    """``a - b`` with broadcasting. Example: ``C = ops.elemwise.subtract(A, 1.0)``."""
    return _binary("subtract", lambda x, y: x - y, a, b, name)


def multiply(a: Operand, b: Operand, name: str | None = None) -> Tensor:
    """``a * b`` with broadcasting. Example: ``C = ops.elemwise.multiply(A, B)``."""
    return _binary("multiply", lambda x, y: x * y, a, b, name)


def divide(a: Operand, b: Operand, name: str | None = None) -> Tensor:
    """``a / b`` with broadcasting: true division for floats, truncating division for two
    integer operands (as in TVM). Example: ``C = ops.elemwise.divide(A, B)``."""
    return _binary("divide", lambda x, y: x / y, a, b, name)


def floor_divide(a: Operand, b: Operand, name: str | None = None) -> Tensor:
    """``a // b`` (rounding toward minus infinity) with broadcasting."""
    return _binary("floor_divide", lambda x, y: x // y, a, b, name)


def maximum(a: Operand, b: Operand, name: str | None = None) -> Tensor:
    """Elementwise maximum with broadcasting. Example: ``ops.elemwise.maximum(A, 0.0)``."""
    return _binary("maximum", lambda x, y: binary(Max, x, y), a, b, name)


def minimum(a: Operand, b: Operand, name: str | None = None) -> Tensor:
    """Elementwise minimum with broadcasting. Example: ``ops.elemwise.minimum(A, B)``."""
    return _binary("minimum", lambda x, y: binary(Min, x, y), a, b, name)


def power(a: Operand, b: Operand, name: str | None = None) -> Tensor:
    """``a ** b`` with broadcasting (integers compute in float32).

    Example: ``ops.elemwise.power(A, 2.0)``."""
    return _binary("power", tm.power, a, b, name)


# -- unary ------------------------------------------------------------------------------------

def _unary(op: str, x: Tensor, fn: Callable, name: str | None, needs_float: bool = True):
    check_tensor(op, "x", x)
    if needs_float:
        check_float(op, "x", x)
    return compute(x.shape, lambda *i: fn(x(*i)), name=name or f"T_{op}", tag="elemwise")


def relu(x: Tensor, name: str | None = None) -> Tensor:
    """``max(x, 0)``. Example: ``Y = ops.elemwise.relu(X)``."""
    return _unary("relu", x, lambda v: binary(Max, v, const(0, x.dtype)), name, False)


def leaky_relu(x: Tensor, alpha: float = 0.01, name: str | None = None) -> Tensor:
    """``x`` where ``x > 0``, else ``alpha * x``. Example: ``ops.elemwise.leaky_relu(X, 0.1)``."""
    return _unary("leaky_relu", x, lambda v: tm.select(v > const(0, x.dtype), v,
                                                       v * const(alpha, x.dtype)), name)


def sigmoid(x: Tensor, name: str | None = None) -> Tensor:
    """``1 / (1 + exp(-x))``. Example: ``ops.elemwise.sigmoid(X)``."""
    return _unary("sigmoid", x, tm.sigmoid, name)


def tanh(x: Tensor, name: str | None = None) -> Tensor:
    """Hyperbolic tangent. Example: ``ops.elemwise.tanh(X)``."""
    return _unary("tanh", x, tm.tanh, name)


def exp(x: Tensor, name: str | None = None) -> Tensor:
    """``e ** x``. Example: ``ops.elemwise.exp(X)``."""
    return _unary("exp", x, tm.exp, name)


def log(x: Tensor, name: str | None = None) -> Tensor:
    """Natural logarithm. Example: ``ops.elemwise.log(X)``."""
    return _unary("log", x, tm.log, name)


def sqrt(x: Tensor, name: str | None = None) -> Tensor:
    """Square root. Example: ``ops.elemwise.sqrt(X)``."""
    return _unary("sqrt", x, tm.sqrt, name)


def rsqrt(x: Tensor, name: str | None = None) -> Tensor:
    """``1 / sqrt(x)``. Example: ``ops.elemwise.rsqrt(X)``."""
    return _unary("rsqrt", x, tm.rsqrt, name)


def erf(x: Tensor, name: str | None = None) -> Tensor:
    """The error function. Example: ``ops.elemwise.erf(X)``."""
    return _unary("erf", x, tm.erf, name)


def negative(x: Tensor, name: str | None = None) -> Tensor:
    """``-x``. Example: ``ops.elemwise.negative(X)``."""
    return _unary("negative", x, lambda v: -v, name, False)


def abs(x: Tensor, name: str | None = None) -> Tensor:  # noqa: A001 (TOPI's name)
    """``|x|``. Example: ``ops.elemwise.abs(X)``."""
    return _unary("abs", x, tm.abs, name, False)


def gelu(x: Tensor, name: str | None = None) -> Tensor:
    """GELU in its exact erf form: ``0.5 * x * (1 + erf(x / sqrt(2)))``.

    Example: ``Y = ops.elemwise.gelu(X)``."""
    inv_sqrt2 = const(1.0 / _math.sqrt(2.0), x.dtype) if dt.is_float(x.dtype) else None
    return _unary("gelu", x, lambda v: const(0.5, x.dtype) * v *
                  (const(1.0, x.dtype) + tm.erf(v * inv_sqrt2)), name)


def clip(x: Tensor, a_min, a_max, name: str | None = None) -> Tensor:
    """Limit values to ``[a_min, a_max]`` like ``np.clip`` (``min(max(x, a_min), a_max)``).

    Example: ``Y = ops.elemwise.clip(X, 0.0, 6.0)``  (ReLU6)."""
    check_tensor("clip", "x", x)
    try:
        lo, hi = const(a_min, x.dtype), const(a_max, x.dtype)
    except DTypeError as err:
        raise DTypeError(f"clip: bounds ({a_min}, {a_max}) do not fit the dtype {x.dtype} of "
                         f"{x.name}") from err
    return compute(x.shape, lambda *i: binary(Min, binary(Max, x(*i), lo), hi),
                   name=name or "T_clip", tag="elemwise")


def cast(x: Tensor, dtype: str, name: str | None = None) -> Tensor:
    """``x`` converted to ``dtype`` (float to int truncates toward zero).

    Example: ``Y = ops.elemwise.cast(X, "int32")``."""
    check_tensor("cast", "x", x)
    target = dt.normalize(dtype)
    return compute(x.shape, lambda *i: _cast(x(*i), target), name=name or "T_cast",
                   tag="elemwise")


def where(condition: Operand, x: Operand, y: Operand, name: str | None = None) -> Tensor:
    """``x`` where ``condition`` holds (non-zero), else ``y``; all three broadcast together.

    Example: ``Z = ops.elemwise.where(C, X, 0.0)`` with ``C`` a bool tensor.
    """
    operands = [("condition", condition), ("x", x), ("y", y)]
    tensors = [(n, t) for n, t in operands if isinstance(t, Tensor)]
    if not tensors:
        raise UserError("where: at least one of condition, x, y must be a tensor")
    shape = broadcast_shape("where", [t.shape for _, t in tensors],
                            [t.name for _, t in tensors])
    ndim = len(shape)
    if isinstance(x, Tensor) and isinstance(y, Tensor):
        try:
            dt.promote(x.dtype, y.dtype)
        except DTypeError as err:
            raise DTypeError(f"where: x {x.name} ({x.dtype}) and y {y.name} ({y.dtype}) have "
                             "no common dtype") from err

    def value(v, indices):
        return broadcast_index(v, ndim, indices) if isinstance(v, Tensor) else v

    def body(*i):
        return tm.select(value(condition, i), value(x, i), value(y, i))

    return compute(shape, body, name=name or "T_where", tag="broadcast")


__all__ = ["add", "subtract", "multiply", "divide", "floor_divide", "maximum", "minimum",
           "power", "relu", "leaky_relu", "sigmoid", "tanh", "exp", "log", "sqrt", "rsqrt",
           "erf", "negative", "abs", "gelu", "clip", "cast", "where"]
