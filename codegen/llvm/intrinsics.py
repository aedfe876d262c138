"""Math intrinsics (``exp``, ``tanh``, ``erf``, ...) for scalars and vectors.

float32 exp, log, tanh, sigmoid, erf and pow come from :mod:`.vector_math` (inline code, no
libm call, scalars and vectors alike). Otherwise LLVM intrinsics where LLVM has them (it lowers
``llvm.sqrt.v8f32`` and friends to vector instructions and the rest to libm calls per lane);
libm otherwise, one call per lane. A fast vector implementation of an op drops in through
:data:`VECTOR_MATH` without touching the rest.
float16 math is computed in float32 and rounded back, as NumPy does.
"""
from __future__ import annotations

from typing import Callable

from llvmlite import ir

from tensorlang import dtype as dt
from tensorlang.errors import DTypeError, UnsupportedOpError

from .types import I1, I32, constant, declare, intrinsic, llvm_type
from .vector_math import IMPLEMENTATIONS, pow_float32

Builder = ir.IRBuilder

# op -> fn(builder, module, value) giving the result for a float scalar or vector, or None to
# fall back (vector_math answers None for float64, which keeps libm).
VECTOR_MATH: dict[str, Callable[[Builder, ir.Module, ir.Value], "ir.Value | None"]] = dict(
    IMPLEMENTATIONS)

_LLVM_UNARY = {
    "exp": "llvm.exp", "exp2": "llvm.exp2", "log": "llvm.log", "log2": "llvm.log2",
    "log10": "llvm.log10", "sqrt": "llvm.sqrt", "fabs": "llvm.fabs", "floor": "llvm.floor",
    "ceil": "llvm.ceil", "round": "llvm.roundeven", "trunc": "llvm.trunc", "sin": "llvm.sin",
    "cos": "llvm.cos",
}
_LIBM_UNARY = {"tanh": "tanh", "erf": "erf"}
_PREDICATES = ("isnan", "isinf", "isfinite")
_FAST = ("reassoc", "contract")
INTRINSIC_NAMES = frozenset(_LLVM_UNARY) | frozenset(_LIBM_UNARY) | frozenset(_PREDICATES) | {
    "sigmoid", "rsqrt", "pow", "fmod", "abs"}


def emit_math(b: Builder, module: ir.Module, op: str, args: list, arg_dtype: str) -> ir.Value:
    """The value of intrinsic ``op`` on already-emitted ``args`` whose dtype is ``arg_dtype``."""
    if op == "abs" and not dt.is_float(arg_dtype):
        return _int_abs(b, module, args[0], arg_dtype)
    if op == "abs":
        op = "fabs"
    if not dt.is_float(arg_dtype):
        if op in _PREDICATES:
            return constant(dt.with_lanes("bool", dt.lanes_of(arg_dtype)), op == "isfinite")
        raise DTypeError(f"intrinsic {op} needs floating-point arguments, got {arg_dtype}")
    if dt.element_of(arg_dtype) == "float16":
        return _via_float32(b, module, op, args, arg_dtype)
    if op in _PREDICATES:
        return _predicate(b, module, op, args[0])
    if op in ("pow", "fmod"):
        if op == "fmod":
            return b.frem(args[0], args[1])
        result = pow_float32(b, module, args[0], args[1])
        if result is not None:
            return result
        return b.call(intrinsic(module, "llvm.pow", args[0].type, 2), args)
    return unary(b, module, op, args[0])


def unary(b: Builder, module: ir.Module, op: str, x: ir.Value) -> ir.Value:
    """A float unary op on a float32/float64 scalar or vector."""
    if op in VECTOR_MATH:
        result = VECTOR_MATH[op](b, module, x)
        if result is not None:
            return result
    if op in _LLVM_UNARY:
        return b.call(intrinsic(module, _LLVM_UNARY[op], x.type), [x])
    if op in _LIBM_UNARY:
        return _per_lane(b, x, lambda v: _libm(b, module, _LIBM_UNARY[op], v))
    one = _splat_like(x, 1.0)
    if op == "sigmoid":
        e = unary(b, module, "exp", b.fneg(x))
        return b.fdiv(one, b.fadd(one, e, flags=_FAST))
    if op == "rsqrt":
        return b.fdiv(one, unary(b, module, "sqrt", x))
    raise UnsupportedOpError(f"intrinsic {op!r} is not supported by the LLVM CPU backend")


def _libm(b: Builder, module: ir.Module, name: str, x: ir.Value) -> ir.Value:
    symbol = name + ("f" if isinstance(x.type, ir.FloatType) else "")
    return b.call(declare(module, symbol, x.type, [x.type]), [x])


def _per_lane(b: Builder, x: ir.Value, scalar_fn) -> ir.Value:
    if not isinstance(x.type, ir.VectorType):
        return scalar_fn(x)
    out = ir.Constant(x.type, ir.Undefined)
    for lane in range(x.type.count):
        index = ir.Constant(I32, lane)
        out = b.insert_element(out, scalar_fn(b.extract_element(x, index)), index)
    return out


def _splat_like(x: ir.Value, value: float) -> ir.Constant:
    if isinstance(x.type, ir.VectorType):
        return ir.Constant(x.type, [ir.Constant(x.type.element, value)] * x.type.count)
    return ir.Constant(x.type, value)


def _predicate(b: Builder, module: ir.Module, op: str, x: ir.Value) -> ir.Value:
    if op == "isnan":
        return b.fcmp_unordered("uno", x, x)
    magnitude = b.call(intrinsic(module, "llvm.fabs", x.type), [x])
    inf = _splat_like(x, float("inf"))
    if op == "isinf":
        return b.fcmp_ordered("==", magnitude, inf)
    return b.fcmp_ordered("<", magnitude, inf)  # ordered: NaN is not finite


def _int_abs(b: Builder, module: ir.Module, x: ir.Value, dtype: str) -> ir.Value:
    if dt.is_uint(dtype) or dt.is_bool(dtype):
        return x
    return b.call(intrinsic(module, "llvm.abs", x.type, 1, extra=(I1,)),
                  [x, ir.Constant(I1, 0)])


def _via_float32(b: Builder, module: ir.Module, op: str, args: list,
                 arg_dtype: str) -> ir.Value:
    wide_dtype = dt.with_lanes("float32", dt.lanes_of(arg_dtype))
    wide = [b.fpext(a, llvm_type(wide_dtype)) for a in args]
    result = emit_math(b, module, op, wide, wide_dtype)
    if op in _PREDICATES:
        return result
    return b.fptrunc(result, args[0].type)
