"""dtype names, their NumPy dtypes and their DLPack codes.

tensorlang names a dtype by a short string ("float32", "bfloat16", ...). This module is the one
place that turns such a name into a NumPy dtype (bfloat16 and float8 come from ``ml_dtypes``) or a
DLPack ``(code, bits, lanes)`` triple, and back.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from ..errors import DTypeError

# DLPack's DLDataTypeCode values (dlpack.h, v1.1); only the ones tensorlang has dtypes for.
DL_INT = 0
DL_UINT = 1
DL_FLOAT = 2
DL_BFLOAT = 4
DL_BOOL = 6
DL_FLOAT8_E4M3FN = 10
DL_FLOAT8_E5M2 = 12

_NUMPY: dict[str, np.dtype] = {
    "bool": np.dtype(np.bool_),
    "int8": np.dtype(np.int8),
    "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
    "uint8": np.dtype(np.uint8),
    "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32),
    "uint64": np.dtype(np.uint64),
    "float16": np.dtype(np.float16),
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
}

# Keyed by np.dtype rather than by name: ml_dtypes' dtypes all share kind "V", so a lookup on
# the dtype object itself is the only unambiguous way back.
_NAMES: dict[np.dtype, str] = {dtype: name for name, dtype in _NUMPY.items()}

_DLPACK: dict[str, tuple[int, int, int]] = {
    "bool": (DL_BOOL, 8, 1),
    **{f"int{bits}": (DL_INT, bits, 1) for bits in (8, 16, 32, 64)},
    **{f"uint{bits}": (DL_UINT, bits, 1) for bits in (8, 16, 32, 64)},
    **{f"float{bits}": (DL_FLOAT, bits, 1) for bits in (16, 32, 64)},
    "bfloat16": (DL_BFLOAT, 16, 1),
    "float8_e4m3fn": (DL_FLOAT8_E4M3FN, 8, 1),
    "float8_e5m2": (DL_FLOAT8_E5M2, 8, 1),
}
_FROM_DLPACK: dict[tuple[int, int, int], str] = {code: name for name, code in _DLPACK.items()}

DTYPE_NAMES: tuple[str, ...] = tuple(_NUMPY)
"""Every dtype name tensorlang knows, in a stable order."""


def _unknown(what: Any) -> DTypeError:
    return DTypeError(f"unsupported dtype {what!r}; expected one of {', '.join(DTYPE_NAMES)}")


def np_dtype(dtype: Any) -> np.dtype:
    """The NumPy dtype of a tensorlang dtype name.

    Args:
        dtype: a name such as ``"float32"`` or ``"bfloat16"``; a NumPy dtype (or scalar type)
            of a supported kind is accepted too and returned normalised.

    Returns:
        The ``numpy.dtype`` (an ``ml_dtypes`` one for bfloat16 and float8).

    Raises:
        DTypeError: the dtype is not one tensorlang supports; the message names it.

    Example:
        >>> np_dtype("bfloat16")
        dtype(bfloat16)
    """
    if isinstance(dtype, str):
        if dtype in _NUMPY:
            return _NUMPY[dtype]
        raise _unknown(dtype)
    return _NUMPY[dtype_name(dtype)]


def dtype_name(dtype: Any) -> str:
    """The tensorlang name of a NumPy dtype or scalar type.

    Args:
        dtype: ``np.float32``, ``np.dtype("int8")``, ``ml_dtypes.bfloat16``, or a tensorlang
            name (returned as is).

    Returns:
        The name, e.g. ``"float32"``.

    Raises:
        DTypeError: the dtype has no tensorlang counterpart (complex, strings, objects, ...).

    Example:
        >>> dtype_name(np.float16)
        'float16'
    """
    if isinstance(dtype, str):
        # Strings are tensorlang names only: NumPy would read "float" as float64, where the
        # IR's alias means float32, so no NumPy spelling is guessed at here.
        if dtype in _NUMPY:
            return dtype
        raise _unknown(dtype)
    if dtype is None:  # np.dtype(None) is float64, which would hide a missing argument
        raise _unknown(dtype)
    try:
        normalised = np.dtype(dtype)
    except TypeError:
        raise _unknown(dtype) from None
    # Byte-swapped dtypes compare unequal to native ones; tensorlang memory is native-endian.
    name = _NAMES.get(normalised)
    if name is None:
        raise _unknown(str(normalised))
    return name


def itemsize(dtype: str) -> int:
    """Bytes per element of a dtype name, e.g. ``itemsize("bfloat16") == 2``."""
    return np_dtype(dtype).itemsize


def dlpack_dtype(dtype: str) -> tuple[int, int, int]:
    """The DLPack ``(code, bits, lanes)`` triple of a dtype name.

    Example:
        >>> dlpack_dtype("float32")
        (2, 32, 1)
    """
    name = dtype_name(dtype)
    return _DLPACK[name]


def dtype_from_dlpack(code: int, bits: int, lanes: int = 1) -> str:
    """The dtype name of a DLPack ``(code, bits, lanes)`` triple.

    Raises:
        DTypeError: vector lanes, or a code/bits pair tensorlang has no dtype for.

    Example:
        >>> dtype_from_dlpack(4, 16, 1)
        'bfloat16'
    """
    name = _FROM_DLPACK.get((int(code), int(bits), int(lanes)))
    if name is None:
        raise DTypeError(
            f"unsupported DLPack dtype (code={code}, bits={bits}, lanes={lanes}); "
            f"tensorlang supports {', '.join(DTYPE_NAMES)} with lanes=1"
        )
    return name
