"""Table-driven elementwise operators of the graph layer: unary math and activations,
comparisons and logic, each defined by a scalar function of DSL expressions.

A unary op ``f(x, attrs)`` maps one element; a binary op ``f(a, b, attrs)`` maps two elements
after NumPy broadcasting. Comparisons and predicates give ``bool``; trigonometric functions
that LLVM has no intrinsic for call libm in float64.
"""
from __future__ import annotations

import numpy as np

import tensorlang as tl
from tensorlang import dtype as dt
from tensorlang.errors import DTypeError
from tensorlang.expr import const
from tensorlang.ops._util import broadcast_index
from tensorlang.tensor import compute

from ..ir import TensorType
from . import register
from .elementwise import _same_dtype, broadcast_types


def _c(value, x):
    return const(value, x.dtype)


def _load_libm() -> None:
    """Make libm's functions visible to the JIT's symbol lookup (a fresh process may not have
    them yet: code generation checks an extern symbol exists before calling it)."""
    import ctypes.util

    import llvmlite.binding as llvm
    if llvm.address_of_symbol("acos"):
        return
    for name in ("m", "c"):
        path = ctypes.util.find_library(name)
        if path:
            llvm.load_library_permanently(path)


def _libm(name):
    def f(x, attrs):
        _load_libm()
        return tl.cast(tl.call_extern("float64", name, tl.cast(x, "float64")), x.dtype)
    return f


def _softplus(x, attrs):
    # max(x, 0) + log(1 + exp(-|x|)): no overflow for large |x|
    return tl.max(x, _c(0, x)) + tl.log(_c(1, x) + tl.exp(-abs(x)))


def _elu_neg(x, alpha):
    return _c(alpha, x) * (tl.exp(x) - _c(1, x))


def _sign(x, attrs):
    zero, one = _c(0, x), _c(1, x)
    if x.dtype.startswith("uint"):
        return tl.select(x > zero, one, zero)
    return tl.select(x > zero, one, tl.select(x < zero, _c(-1, x), zero))


def _isinf(x, attrs):
    pos, neg = attrs.get("detect_positive", 1), attrs.get("detect_negative", 1)
    inf = tl.isinf(x)
    if pos and neg:
        return inf
    if pos:
        return tl.all(inf, x > _c(0, x))
    if neg:
        return tl.all(inf, x < _c(0, x))
    return tl.all(inf, x != x)


def _hardsigmoid(x, attrs):
    y = _c(attrs.get("alpha", 0.2), x) * x + _c(attrs.get("beta", 0.5), x)
    return tl.min(tl.max(y, _c(0, x)), _c(1, x))


def _hardswish(x, attrs):
    y = x * _c(1.0 / 6.0, x) + _c(0.5, x)
    return x * tl.min(tl.max(y, _c(0, x)), _c(1, x))


def _celu(x, attrs):
    alpha = attrs.get("alpha", 1.0)
    return tl.max(x, _c(0, x)) + tl.min(_c(0, x), _c(alpha, x) * (
        tl.exp(x / _c(alpha, x)) - _c(1, x)))


# name -> (scalar function, output dtype: None = the input's, needs a float input)
UNARY = {
    "floor": (lambda x, a: tl.floor(x), None, True),
    "ceil": (lambda x, a: tl.ceil(x), None, True),
    "round": (lambda x, a: tl.round(x), None, True),
    "sign": (_sign, None, False),
    "reciprocal": (lambda x, a: _c(1, x) / x, None, True),
    "softplus": (_softplus, None, True),
    "softsign": (lambda x, a: x / (_c(1, x) + abs(x)), None, True),
    "selu": (lambda x, a: _c(a.get("gamma", 1.05070102214050292968750), x) * tl.select(
        x > _c(0, x), x, _elu_neg(x, a.get("alpha", 1.67326319217681884765625))), None, True),
    "elu": (lambda x, a: tl.select(x > _c(0, x), x, _elu_neg(x, a.get("alpha", 1.0))),
            None, True),
    "celu": (_celu, None, True),
    "hard_sigmoid": (_hardsigmoid, None, True),
    "hard_swish": (_hardswish, None, True),
    "mish": (lambda x, a: x * tl.tanh(_softplus(x, a)), None, True),
    "thresholded_relu": (lambda x, a: tl.select(x > _c(a.get("alpha", 1.0), x), x, _c(0, x)),
                         None, True),
    "sin": (lambda x, a: tl.sin(x), None, True),
    "cos": (lambda x, a: tl.cos(x), None, True),
    "isnan": (lambda x, a: tl.isnan(x), "bool", True),
    "isinf": (_isinf, "bool", True),
    "logical_not": (lambda x, a: tl.logical_not(x), "bool", False),
    "bitwise_not": (lambda x, a: (_c(np.iinfo(x.dtype).max, x) - x) if x.dtype.startswith("uint")
                    else _c(-1, x) - x, None, False),
}
for _fn in ("tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh"):
    UNARY[_fn] = (_libm(_fn), None, True)


def _unary_infer(name):
    _, out_dtype, needs_float = UNARY[name]

    def infer(types, attrs):
        if needs_float and not np.issubdtype(np.dtype(types[0].dtype), np.floating):
            raise DTypeError(f"{name} needs a float input, got {types[0].dtype}")
        if name == "logical_not" and types[0].dtype != "bool":
            raise DTypeError(f"logical_not needs a bool input, got {types[0].dtype}")
        return TensorType(types[0].shape, out_dtype or types[0].dtype)
    return infer


def _unary_compute(name):
    fn = UNARY[name][0]

    def fcompute(xs, attrs):
        x = xs[0]
        return compute(x.shape, lambda *i: fn(x(*i), attrs), name=f"T_{name}", tag="elemwise")
    return fcompute


for _name in UNARY:
    register(_name, _unary_infer(_name), _unary_compute(_name), "elementwise")


def _mod(a, b, attrs):
    if attrs.get("fmod", 0):
        return tl.fmod(a, b) if dt.is_float(a.dtype) else tl.truncmod(a, b)
    if dt.is_float(a.dtype):  # the sign of the divisor, as NumPy's mod
        r = tl.fmod(a, b)
        fix = tl.all(r != _c(0, a), (r < _c(0, a)) != (b < _c(0, b)))
        return tl.select(fix, r + b, r)
    return tl.floormod(a, b)


def _bitshift(a, b, attrs):
    # a shift by multiplying / dividing by 2**b (exact in float64 for b < 64); signed values
    # shift right arithmetically (floor division)
    bits = np.dtype(a.dtype).itemsize * 8
    wide = tl.min(tl.max(tl.cast(b, "float64"), const(0.0, "float64")),
                  const(float(bits - 1), "float64"))
    power = tl.cast(tl.exp2(wide), a.dtype)
    unsigned = a.dtype.startswith("uint")
    # a shift by the width or more (a negative one counts as huge) shifts every bit out
    out = b >= _c(bits, b) if unsigned else tl.any(b >= _c(bits, b), b < _c(0, b))
    if attrs.get("direction", "LEFT") == "LEFT":
        return tl.select(out, _c(0, a), a * power)
    shifted = a / power if unsigned else tl.floordiv(a, power)
    gone = _c(0, a) if unsigned else tl.select(a < _c(0, a), _c(-1, a), _c(0, a))
    return tl.select(out, gone, shifted)


def _bitwise(kind):
    """A bitwise op from the operands' bits (floordiv / floormod by powers of two are
    arithmetic shifts on two's complement, so signed values work too)."""
    def fn(a, b, attrs):
        bits = np.dtype(a.dtype).itemsize * 8
        signed = not a.dtype.startswith("uint")
        wide = "int64" if signed or bits < 64 else "uint64"
        x, y = tl.cast(a, wide), tl.cast(b, wide)
        total = None
        for k in range(bits):
            p = const(1 << k, wide)
            bx, by = tl.floormod(tl.floordiv(x, p), 2), tl.floormod(tl.floordiv(y, p), 2)
            bit = bx * by if kind == "and" else (bx + by - bx * by if kind == "or"
                                                  else tl.floormod(bx + by, 2))
            weight = -(1 << k) if signed and k == bits - 1 else (1 << k)
            term = bit * const(weight, wide)
            total = term if total is None else total + term
        return tl.cast(total, a.dtype)
    return fn


# name -> (scalar function, output dtype: None = the operands', operand dtype check)
BINARY = {
    "equal": (lambda a, b, at: a == b, "bool", None),
    "less": (lambda a, b, at: a < b, "bool", None),
    "greater": (lambda a, b, at: a > b, "bool", None),
    "less_equal": (lambda a, b, at: a <= b, "bool", None),
    "greater_equal": (lambda a, b, at: a >= b, "bool", None),
    "logical_and": (lambda a, b, at: a & b, "bool", "bool"),
    "logical_or": (lambda a, b, at: a | b, "bool", "bool"),
    "logical_xor": (lambda a, b, at: a != b, "bool", "bool"),
    "mod": (_mod, None, None),
    "prelu": (lambda a, b, at: tl.select(a < _c(0, a), a * b, a), None, "float"),
    "bitshift": (_bitshift, None, "int"),
    "bitwise_and": (_bitwise("and"), None, "int"),
    "bitwise_or": (_bitwise("or"), None, "int"),
    "bitwise_xor": (_bitwise("xor"), None, "int"),
}


def _binary_infer(name):
    _, out_dtype, check = BINARY[name]

    def infer(types, attrs):
        dtype = _same_dtype(types)
        if check == "bool" and dtype != "bool":
            raise DTypeError(f"{name} needs bool operands, got {dtype}")
        if check == "float" and not np.issubdtype(np.dtype(dtype), np.floating):
            raise DTypeError(f"{name} needs float operands, got {dtype}")
        if check == "int" and not np.issubdtype(np.dtype(dtype), np.integer):
            raise DTypeError(f"{name} needs integer operands, got {dtype}")
        if check == "uint" and not dtype.startswith("uint"):
            raise DTypeError(f"{name} needs unsigned integer operands, got {dtype}")
        return TensorType(broadcast_types(name, types), out_dtype or dtype)
    return infer


def broadcast_compute(xs, fn, name):
    """``fn(*elements)`` over the NumPy broadcast of the tensors ``xs``."""
    shape = np.broadcast_shapes(*[tuple(int(d) for d in x.shape) for x in xs])
    ndim = len(shape)
    return compute(shape, lambda *i: fn(*[broadcast_index(x, ndim, i) for x in xs]),
                   name=name, tag="broadcast")


def _binary_compute(name):
    fn = BINARY[name][0]
    return lambda xs, attrs: broadcast_compute(xs, lambda a, b: fn(a, b, attrs), f"T_{name}")


for _name in BINARY:
    register(_name, _binary_infer(_name), _binary_compute(_name), "broadcast")
