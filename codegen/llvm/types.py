"""dtype strings to LLVM types and constants; overloaded intrinsic declarations.

Registers hold ``bool`` as ``i1``; memory holds it as one byte (``i8``), like NumPy. bfloat16
and float8 have no code path yet and are refused by name.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from tensorlang import dtype as dt
from tensorlang.errors import DTypeError, UnsupportedOpError

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
VOID = ir.VoidType()
I8_PTR = I8.as_pointer()

_FLOATS = {"float16": ir.HalfType(), "float32": ir.FloatType(), "float64": ir.DoubleType()}
_NP_FLOAT = {"float16": np.float16, "float32": np.float32, "float64": np.float64}


def _scalar_type(element: str, in_memory: bool) -> ir.Type:
    if element == "bool":
        return I8 if in_memory else I1
    if element in _FLOATS:
        return _FLOATS[element]
    if dt.is_int(element):
        return ir.IntType(dt.bits(element))
    if element == "handle":
        return I8_PTR
    if element in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        raise UnsupportedOpError(f"dtype {element} is not supported by the LLVM CPU backend "
                                 "yet; cast to float32 first")
    raise DTypeError(f"no LLVM type for dtype {element!r}")


def llvm_type(dtype: str) -> ir.Type:
    """The register type of ``dtype``: ``"float32x8"`` -> ``<8 x float>``, bool -> ``i1``."""
    if dtype == "void":
        return VOID
    if dtype == "handle":
        return I8_PTR
    lanes = dt.lanes_of(dtype)
    scalar = _scalar_type(dt.element_of(dtype), in_memory=False)
    return scalar if lanes == 1 else ir.VectorType(scalar, lanes)


def memory_type(dtype: str) -> ir.Type:
    """The in-memory type of ``dtype`` (bool is one byte)."""
    lanes = dt.lanes_of(dtype)
    scalar = _scalar_type(dt.element_of(dtype), in_memory=True)
    return scalar if lanes == 1 else ir.VectorType(scalar, lanes)


def element_bytes(dtype: str) -> int:
    element = dt.element_of(dtype)
    return 1 if element == "bool" else dt.bits(element) // 8


def constant(dtype: str, value) -> ir.Constant:
    """An LLVM constant of ``dtype`` (a splat for vectors), rounded the way the dtype rounds."""
    lanes = dt.lanes_of(dtype)
    element = dt.element_of(dtype)
    scalar_type = _scalar_type(element, in_memory=False)
    if element in _NP_FLOAT:
        # LLVM wants float constants exactly representable in the type: round first.
        value = float(_NP_FLOAT[element](value))
    elif element == "bool":
        value = int(bool(value))
    else:
        bits = dt.bits(element)
        half = 1 << (bits - 1)
        value = (int(value) + half) % (2 * half) - half  # two's complement wrap, like C
    scalar = ir.Constant(scalar_type, value)
    if lanes == 1:
        return scalar
    return ir.Constant(ir.VectorType(scalar_type, lanes), [scalar] * lanes)


def type_suffix(ty: ir.Type) -> str:
    """LLVM's name mangling of an overloaded intrinsic's type: f32, v8f32, i64, ..."""
    if isinstance(ty, ir.VectorType):
        return f"v{ty.count}{type_suffix(ty.element)}"
    if isinstance(ty, ir.HalfType):
        return "f16"
    if isinstance(ty, ir.FloatType):
        return "f32"
    if isinstance(ty, ir.DoubleType):
        return "f64"
    if isinstance(ty, ir.IntType):
        return f"i{ty.width}"
    raise DTypeError(f"no intrinsic overload for LLVM type {ty}")


def declare(module: ir.Module, name: str, ret: ir.Type, args: list) -> ir.Function:
    """Declare (once) the function ``name``; a clash of signatures is an error."""
    fnty = ir.FunctionType(ret, args)
    existing = module.globals.get(name)
    if existing is not None:
        if existing.function_type != fnty:
            raise DTypeError(f"function {name} is called with two different signatures: "
                             f"{existing.function_type} and {fnty}")
        return existing
    return ir.Function(module, fnty, name)


def intrinsic(module: ir.Module, base: str, ty: ir.Type, nargs: int = 1,
              extra: tuple = ()) -> ir.Function:
    """The overloaded intrinsic ``base`` for ``ty`` (``llvm.exp`` -> ``llvm.exp.v8f32``)."""
    return declare(module, f"{base}.{type_suffix(ty)}", ty, [ty] * nargs + list(extra))


def splat(builder: ir.IRBuilder, value: ir.Value, lanes: int) -> ir.Value:
    """A vector of ``lanes`` copies of the scalar ``value``."""
    if isinstance(value, ir.Constant) and not isinstance(value.type, ir.VectorType):
        return ir.Constant(ir.VectorType(value.type, lanes), [value] * lanes)
    vec_ty = ir.VectorType(value.type, lanes)
    one = builder.insert_element(ir.Constant(vec_ty, ir.Undefined), value, ir.Constant(I32, 0))
    return builder.shuffle_vector(one, ir.Constant(vec_ty, ir.Undefined),
                                  ir.Constant(ir.VectorType(I32, lanes), [0] * lanes))
