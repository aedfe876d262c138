"""Math on expressions: intrinsics, conditionals, casts and integer division flavours."""
from __future__ import annotations

from . import dtype as dt
from .errors import DTypeError
from .expr import (And, Div, FloorDiv, FloorMod, Mod, Not, Or, PrimExpr, Select, Call, as_bool,
                   binary, call_intrin, cast, const, convert, match_dtypes, _operands)


def _float_arg(x, name: str) -> PrimExpr:
    x = convert(x)
    if not dt.is_float(x.dtype):
        raise DTypeError(f"{name} needs a floating-point operand, got {x.dtype}; "
                         f"cast first, e.g. tl.{name}(x.astype('float32'))")
    return x


def _unary(name: str, doc: str):
    def fn(x):
        return call_intrin(name, _float_arg(x, name))
    fn.__name__ = name
    fn.__doc__ = doc
    return fn


exp = _unary("exp", "e ** x.")
exp2 = _unary("exp2", "2 ** x.")
log = _unary("log", "Natural logarithm.")
log2 = _unary("log2", "Base-2 logarithm.")
log10 = _unary("log10", "Base-10 logarithm.")
sqrt = _unary("sqrt", "Square root.")
rsqrt = _unary("rsqrt", "1 / sqrt(x).")
tanh = _unary("tanh", "Hyperbolic tangent.")
sigmoid = _unary("sigmoid", "1 / (1 + exp(-x)).")
erf = _unary("erf", "The error function.")
sin = _unary("sin", "Sine.")
cos = _unary("cos", "Cosine.")
trunc = _unary("trunc", "Round toward zero.")


def _rounding(name):
    def fn(x):
        x = convert(x)
        return x if not dt.is_float(x.dtype) else call_intrin(name, x)
    fn.__name__ = name
    fn.__doc__ = f"{name} of x (integers are returned unchanged)."
    return fn


floor = _rounding("floor")
ceil = _rounding("ceil")
round = _rounding("round")
round.__doc__ = "Round to the nearest integer, halves to even (like NumPy)."


def abs(x) -> PrimExpr:
    """Absolute value."""
    x = convert(x)
    if dt.is_uint(x.dtype) or dt.is_bool(x.dtype):
        return x
    return call_intrin("fabs" if dt.is_float(x.dtype) else "abs", x)


def power(x, y) -> PrimExpr:
    """x ** y (floats; integers are converted to float32)."""
    x, y = _operands(x, y)
    if not dt.is_float(x.dtype) and not dt.is_float(y.dtype):
        x, y = cast(x, "float32"), cast(y, "float32")
    x, y = match_dtypes(x, y, "power")
    return Call("pow", (x, y), x.dtype)


pow = power


def fmod(x, y) -> PrimExpr:
    """C fmod: the remainder with the sign of x (floats)."""
    x, y = _operands(x, y)
    x, y = match_dtypes(x, y, "fmod")
    if not dt.is_float(x.dtype):
        return binary(Mod, x, y)
    return Call("fmod", (x, y), x.dtype)


def isnan(x) -> PrimExpr:
    x = convert(x)
    return Call("isnan", (x,), "bool") if dt.is_float(x.dtype) else const(False)


def isinf(x) -> PrimExpr:
    x = convert(x)
    return Call("isinf", (x,), "bool") if dt.is_float(x.dtype) else const(False)


def isfinite(x) -> PrimExpr:
    x = convert(x)
    return Call("isfinite", (x,), "bool") if dt.is_float(x.dtype) else const(True)


def if_then_else(cond, t, f) -> PrimExpr:
    """``t`` where ``cond`` holds else ``f``; only the taken branch is evaluated, so ``t`` may
    read out-of-range indices that ``cond`` excludes (padding)."""
    cond = as_bool(cond)
    t, f = _operands(t, f)
    t, f = match_dtypes(t, f, "if_then_else branches")
    return Call("if_then_else", (cond, t, f), t.dtype)


def select(cond, t, f) -> PrimExpr:
    """``t`` where ``cond`` holds else ``f``; both sides may be evaluated."""
    cond = as_bool(cond)
    t, f = _operands(t, f)
    t, f = match_dtypes(t, f, "select branches")
    return Select(cond, t, f, t.dtype)


def _fold(cls, empty: bool, conds) -> PrimExpr:
    if len(conds) == 1 and isinstance(conds[0], (list, tuple)):
        conds = tuple(conds[0])
    out = const(empty)
    for i, c in enumerate(conds):
        c = as_bool(c)
        out = c if i == 0 else cls(out, c, "bool")
    return out


def all(*conds) -> PrimExpr:
    """Logical and of all conditions (True for none)."""
    return _fold(And, True, conds)


def any(*conds) -> PrimExpr:
    """Logical or of all conditions (False for none)."""
    return _fold(Or, False, conds)


def logical_not(x) -> PrimExpr:
    return Not(as_bool(x))


def _int_args(x, y, name):
    x, y = _operands(x, y)
    if not (dt.is_int(x.dtype) or dt.is_bool(x.dtype)) or \
            not (dt.is_int(y.dtype) or dt.is_bool(y.dtype)):
        raise DTypeError(f"{name} needs integer operands, got {x.dtype} and {y.dtype}")
    return x, y


def floordiv(x, y) -> PrimExpr:
    """Integer division rounding toward minus infinity (Python ``//``)."""
    x, y = _int_args(x, y, "floordiv")
    return binary(FloorDiv, x, y)


def floormod(x, y) -> PrimExpr:
    """Remainder with the sign of the divisor (Python ``%``)."""
    x, y = _int_args(x, y, "floormod")
    return binary(FloorMod, x, y)


def truncdiv(x, y) -> PrimExpr:
    """Integer division rounding toward zero (C ``/``)."""
    x, y = _int_args(x, y, "truncdiv")
    return binary(Div, x, y)


def truncmod(x, y) -> PrimExpr:
    """Remainder with the sign of the dividend (C ``%``)."""
    x, y = _int_args(x, y, "truncmod")
    return binary(Mod, x, y)


def call_extern(dtype: str, func_name: str, *args) -> PrimExpr:
    """A call to the C function ``func_name`` (resolved in the process when built)."""
    return Call(func_name, tuple(convert(a) for a in args), dtype if dtype == "void"
                else dt.normalize(dtype), True)
