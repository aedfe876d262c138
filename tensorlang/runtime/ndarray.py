"""NDArray: the runtime's n-d array, and the ``tl.nd`` functions that make one.

An NDArray is a typed view of device memory. Arrays tensorlang allocates are C-contiguous and
64-byte aligned (a cache line, and the widest vector load that generated code may emit); arrays
imported through DLPack wrap the producer's memory as it is, strides included, and keep the
producer's tensor alive. Only the CPU exists for now.
"""

from __future__ import annotations

import ctypes
import operator
from typing import Any, Iterable

import numpy as np

from ..errors import DTypeError, ShapeError, UnsupportedOpError, UserError
from . import dlpack
from .dtypes import dtype_name, np_dtype

ALIGNMENT = 64
"""Byte alignment of every buffer tensorlang allocates."""


def _check_device(device: Any) -> str:
    if device == "cpu":
        return "cpu"
    if isinstance(device, str) and device.split(":")[0] in ("cuda", "gpu"):
        raise UnsupportedOpError("CUDA arrays need the CUDA runtime (cuda-python), not available")
    raise UserError(f"unknown device {device!r}; expected 'cpu' "
                    "(or 'cuda' once the CUDA runtime exists)")


def _normalise_shape(shape: int | Iterable[int]) -> tuple[int, ...]:
    try:
        dims = (operator.index(shape),) if not hasattr(shape, "__iter__") else tuple(
            operator.index(d) for d in shape)  # type: ignore[union-attr]
    except TypeError:
        raise ShapeError(f"shape must be an int or a sequence of ints, got {shape!r}") from None
    if any(d < 0 for d in dims):
        raise ShapeError(f"shape must not have negative extents, got {dims}")
    return dims


def _compact_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for extent in reversed(shape):
        strides.append(step)
        step *= max(extent, 1)
    return tuple(reversed(strides))


def _is_compact(shape: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    # The stride of an extent-1 axis is never used, so producers put anything there.
    if 0 in shape:
        return True
    return all(e == 1 or s == c for e, s, c in zip(shape, strides, _compact_strides(shape)))


class NDArray:
    """An n-d array in CPU memory.

    Made by :func:`empty`, :func:`array` or :func:`from_dlpack` (``NDArray(shape, dtype)`` is the
    same as ``empty``). ``numpy()`` copies out; ``__dlpack__`` shares the memory.

    Attributes:
        shape: extents, a tuple of ints.
        dtype: the dtype name, e.g. ``"float32"``.
        device: ``"cpu"``.
        data_ptr: address of the first element.
        strides: per-axis steps in elements, or None when the array is C-contiguous.
        readonly: True for imported memory its producer marked read-only.

    Example:
        >>> x = NDArray((2, 3), "float32")
        >>> x.copyfrom(np.ones((2, 3), np.float32)).numpy().sum()
        np.float32(6.0)
    """

    __slots__ = ("_shape", "_dtype", "_strides", "_data_ptr", "_owner", "_readonly", "__weakref__")

    def __init__(self, shape: int | Iterable[int], dtype: Any = "float32",
                 device: str = "cpu") -> None:
        _check_device(device)
        self._shape = _normalise_shape(shape)
        self._dtype = dtype_name(dtype)
        nbytes = int(np.prod(self._shape, dtype=np.int64)) * np_dtype(self._dtype).itemsize
        # NumPy only promises 16-byte alignment: over-allocate and start at the next boundary.
        raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
        self._data_ptr = raw.ctypes.data + (-raw.ctypes.data % ALIGNMENT)
        self._owner: Any = raw  # holds the allocation; also what views are made from
        self._strides: tuple[int, ...] | None = None
        self._readonly = False

    @classmethod
    def _wrap(cls, data_ptr: int, shape: tuple[int, ...], dtype: str,
              strides: tuple[int, ...] | None, owner: Any, readonly: bool) -> NDArray:
        # External memory: `owner` must keep it alive (a dlpack.DLPackOwner). Not a NumPy array:
        # _as_numpy_view takes an ndarray owner for a compact buffer that tensorlang allocated.
        self = cls.__new__(cls)
        self._shape, self._dtype, self._data_ptr = shape, dtype, data_ptr
        self._strides = None if strides is None or _is_compact(shape, strides) else strides
        self._owner, self._readonly = owner, readonly
        return self

    shape = property(lambda self: self._shape, doc="Extents, a tuple of ints.")
    dtype = property(lambda self: self._dtype, doc="The dtype name, e.g. 'float32'.")
    device = property(lambda self: "cpu", doc="Where the memory is: 'cpu'.")
    data_ptr = property(lambda self: self._data_ptr, doc="Address of the first element.")
    strides = property(lambda self: self._strides, doc="Steps in elements, None when compact.")
    readonly = property(lambda self: self._readonly, doc="True if the producer forbade writes.")
    ndim = property(lambda self: len(self._shape), doc="Number of axes.")
    size = property(lambda self: int(np.prod(self._shape, dtype=np.int64)), doc="Element count.")
    nbytes = property(lambda self: self.size * np_dtype(self._dtype).itemsize,
                      doc="Bytes the elements take (size * itemsize).")

    def _as_numpy_view(self) -> np.ndarray:
        """A zero-copy NumPy array over this memory; it keeps the memory alive."""
        dtype = np_dtype(self._dtype)
        if isinstance(self._owner, np.ndarray):  # memory we allocated: compact by construction
            view = np.ndarray(self._shape, dtype, buffer=self._owner,
                              offset=self._data_ptr - self._owner.ctypes.data)
        elif self.size == 0:
            view = np.empty(self._shape, dtype)
        else:
            strides = self._strides or _compact_strides(self._shape)
            byte_strides = tuple(s * dtype.itemsize for s in strides)
            # The lowest and highest byte touched, so negative strides work too.
            reach = [(e - 1) * s for e, s in zip(self._shape, byte_strides)]
            low = sum(min(0, r) for r in reach)
            high = sum(max(0, r) for r in reach) + dtype.itemsize
            chars = (ctypes.c_char * (high - low)).from_address(self._data_ptr + low)
            chars._tensorlang_array = self  # the view's base chain keeps the memory alive
            view = np.ndarray(self._shape, dtype, buffer=chars, offset=-low, strides=byte_strides)
        if self._readonly:
            view.flags.writeable = False
        return view

    def numpy(self) -> np.ndarray:
        """A C-contiguous NumPy copy of the array.

        Example:
            >>> array([1.5, 2.5]).numpy()
            array([1.5, 2.5])
        """
        return self._as_numpy_view().copy()

    asnumpy = numpy

    def copyfrom(self, source: Any) -> NDArray:
        """Copy ``source`` (NumPy array, NDArray, DLPack tensor, or nested lists) into this array.

        Arrays must match shape and dtype exactly; lists and scalars are converted to this dtype.

        Returns:
            self, so that calls chain.

        Raises:
            ShapeError: the shapes differ (the message gives expected vs got).
            DTypeError: the dtypes differ.

        Example:
            >>> empty((2,), "int32").copyfrom(np.array([3, 4], np.int32)).numpy()
            array([3, 4], dtype=int32)
        """
        if isinstance(source, NDArray):
            values = source._as_numpy_view()
        elif isinstance(source, np.ndarray):
            values = source
        elif hasattr(source, "__dlpack__"):
            values = from_dlpack(source)._as_numpy_view()
        else:
            values = np.asarray(source, dtype=np_dtype(self._dtype))
        if values.shape != self._shape:
            raise ShapeError(f"copyfrom: shape mismatch, expected {self._shape}, "
                             f"got {values.shape}")
        if values.dtype != np_dtype(self._dtype):
            raise DTypeError(f"copyfrom: dtype mismatch, expected {self._dtype}, "
                             f"got {values.dtype}")
        if self._readonly:
            raise UserError("copyfrom: this array wraps read-only memory")
        np.copyto(self._as_numpy_view(), values)  # NumPy copes with overlapping memory
        return self

    def __dlpack_device__(self) -> tuple[int, int]:
        """``(1, 0)``: DLPack's kDLCPU, device 0."""
        return (dlpack.DL_CPU, 0)

    def __dlpack__(self, stream: Any = None, max_version: tuple[int, int] | None = None,
                   dl_device: tuple[int, int] | None = None, copy: bool | None = None) -> Any:
        """Export as a DLPack capsule sharing this memory (a copy only when ``copy=True``).

        A versioned capsule (DLPack 1.x) is made when ``max_version`` allows it, else a legacy
        one. Raises BufferError for what cannot be exported (another device, a read-only
        array through the legacy protocol, which has no read-only flag).

        Example:
            >>> x = array(np.arange(3.0))
            >>> np.shares_memory(np.from_dlpack(x), x._as_numpy_view())
            True
        """
        if stream is not None:
            raise BufferError(f"stream must be None for CPU arrays, got {stream!r}")
        if dl_device is not None and tuple(dl_device) != self.__dlpack_device__():
            raise BufferError(f"cannot export a CPU array to DLPack device {tuple(dl_device)}")
        source = array(self) if copy else self
        versioned = max_version is not None and max_version[0] >= 1
        if source.readonly and not versioned:
            raise BufferError("a read-only array needs a versioned DLPack consumer "
                              "(max_version >= (1, 0)) or copy=True")
        return dlpack.export_capsule(
            source.data_ptr, source.shape, source.strides or _compact_strides(source.shape),
            source.dtype, source, versioned=versioned, readonly=source.readonly, copied=bool(copy))

    def __repr__(self) -> str:
        header = f"<tensorlang.NDArray shape={self._shape}, dtype={self._dtype}, device=cpu>"
        return f"{header}\n{np.array2string(self._as_numpy_view())}"


def array(np_like: Any, dtype: Any = None, device: str = "cpu") -> NDArray:
    """A new aligned NDArray holding a copy of ``np_like``.

    Args:
        np_like: a NumPy array, an NDArray, a DLPack tensor (torch, ...), or nested lists.
        dtype: convert to this dtype name; None keeps the source's dtype.
        device: "cpu".

    Example:
        >>> array(np.arange(4), dtype="float32").numpy()
        array([0., 1., 2., 3.], dtype=float32)
    """
    _check_device(device)
    if isinstance(np_like, NDArray):
        source = np_like._as_numpy_view()
    elif not isinstance(np_like, np.ndarray) and hasattr(np_like, "__dlpack__"):
        source = from_dlpack(np_like)._as_numpy_view()  # handles bfloat16 NumPy cannot import
    else:
        source = np.asarray(np_like)
    result = NDArray(source.shape, dtype_name(source.dtype) if dtype is None else dtype)
    np.copyto(result._as_numpy_view(), source, casting="unsafe")
    return result


def empty(shape: int | Iterable[int], dtype: Any = "float32", device: str = "cpu") -> NDArray:
    """A new aligned, uninitialised NDArray.

    Example:
        >>> empty((2, 3), "bfloat16").shape
        (2, 3)
    """
    return NDArray(shape, dtype, device)


def from_dlpack(obj: Any) -> NDArray:
    """Wrap another library's tensor without copying.

    Args:
        obj: anything with ``__dlpack__`` / ``__dlpack_device__`` (NumPy, PyTorch, ...), or a
            DLPack capsule ("dltensor" or "dltensor_versioned").

    Returns:
        An NDArray over the same memory, strides kept; it keeps the producer's tensor alive.

    Raises:
        UnsupportedOpError: the tensor is not in CPU memory.
        DTypeError: its dtype has no tensorlang counterpart.

    Example:
        >>> a = np.arange(6.0).reshape(2, 3)
        >>> from_dlpack(a[:, ::2]).strides
        (3, 2)
    """
    tensor = dlpack.import_capsule(dlpack.capsule_from_object(obj))
    return NDArray._wrap(tensor.data_ptr, tensor.shape, tensor.dtype, tensor.strides,
                         tensor.owner, tensor.readonly)
