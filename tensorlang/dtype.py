"""dtype strings of the IR: ``"float32"``, ``"int64"``, ``"bool"``, vectors as ``"float32x8"``.

The IR keeps dtypes as plain strings (hashable, printable, what users type). This module answers
questions about them and decides promotion when two operands meet.
"""
from __future__ import annotations

import functools

from .errors import DTypeError

SCALAR_DTYPES = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "bfloat16", "float32", "float64", "float8_e4m3fn", "float8_e5m2",
)
_ALIASES = {"float": "float32", "int": "int32", "double": "float64", "half": "float16",
            "e4m3": "float8_e4m3fn", "e5m2": "float8_e5m2"}


@functools.lru_cache(maxsize=None)
def normalize(dtype) -> str:
    """Return the canonical dtype string for ``dtype`` (a string, NumPy dtype or Python type)."""
    if isinstance(dtype, str):
        name = _ALIASES.get(dtype, dtype)
    elif dtype is bool:
        name = "bool"
    elif dtype is int:
        name = "int32"
    elif dtype is float:
        name = "float32"
    else:
        name = str(getattr(dtype, "name", dtype))
    base, lanes = _split_lanes(name)
    if base not in SCALAR_DTYPES:
        raise DTypeError(f"unknown dtype {dtype!r}; known dtypes: {', '.join(SCALAR_DTYPES)}")
    return name


def _split_lanes(name: str) -> tuple[str, int]:
    if "x" in name and not name.startswith("float8"):
        base, _, lanes = name.rpartition("x")
        if lanes.isdigit():
            return base, int(lanes)
    return name, 1


def element_of(dtype: str) -> str:
    """``"float32x8"`` -> ``"float32"``."""
    return _split_lanes(dtype)[0]


def lanes_of(dtype: str) -> int:
    """``"float32x8"`` -> 8; scalars give 1."""
    return _split_lanes(dtype)[1]


def with_lanes(dtype: str, lanes: int) -> str:
    base = element_of(dtype)
    return base if lanes == 1 else f"{base}x{lanes}"


def is_float(dtype: str) -> bool:
    return element_of(dtype).startswith(("float", "bfloat"))


def is_int(dtype: str) -> bool:
    """Signed or unsigned integer (not bool)."""
    return element_of(dtype).startswith(("int", "uint"))


def is_uint(dtype: str) -> bool:
    return element_of(dtype).startswith("uint")


def is_bool(dtype: str) -> bool:
    return element_of(dtype) == "bool"


def bits(dtype: str) -> int:
    base = element_of(dtype)
    if base == "bool":
        return 1
    if base.startswith("float8"):
        return 8
    digits = "".join(c for c in base if c.isdigit())
    return int(digits)


def promote(a: str, b: str, what: str = "operands") -> str:
    """The dtype two operands are converted to before a binary operation.

    Floats win over integers; the wider of two floats or two integers wins; a signed and an
    unsigned integer meet in a signed type wide enough for both. ``uint64`` with a signed type
    has no such type and is refused, as is mixing vector widths.
    """
    if a == b:
        return a
    la, lb = lanes_of(a), lanes_of(b)
    if la != lb and la != 1 and lb != 1:
        raise DTypeError(f"{what}: vector widths differ ({a} vs {b})")
    lanes = max(la, lb)
    ea, eb = element_of(a), element_of(b)
    return with_lanes(_promote_scalar(ea, eb, what), lanes)


def _promote_scalar(a: str, b: str, what: str) -> str:
    if a == b:
        return a
    if is_bool(a):
        return b
    if is_bool(b):
        return a
    fa, fb = is_float(a), is_float(b)
    if fa and fb:
        if {a, b} == {"float16", "bfloat16"} or a.startswith("float8") or b.startswith("float8"):
            return "float32" if max(bits(a), bits(b)) <= 32 else "float64"
        return a if bits(a) >= bits(b) else b
    if fa:
        return a
    if fb:
        return b
    ua, ub = is_uint(a), is_uint(b)
    if ua == ub:
        return a if bits(a) >= bits(b) else b
    signed, unsigned = (b, a) if ua else (a, b)
    if bits(signed) > bits(unsigned):
        return signed
    if bits(unsigned) >= 64:
        raise DTypeError(f"{what}: no integer type holds both {a} and {b}; cast one of them")
    return f"int{bits(unsigned) * 2}"
