"""NDArray: the runtime's n-d array, and the ``tl.nd`` functions that make one.

An NDArray is a typed view of CPU or CUDA device memory. Arrays tensorlang allocates are
C-contiguous and 64-byte aligned (a cache line, and the widest vector load that generated code may
emit; CUDA allocations are 256-byte aligned); arrays imported through DLPack wrap the producer's
memory as it is, strides included, and keep the producer's tensor alive. CUDA memory lives on the
one device the CUDA runtime uses (:mod:`tensorlang.runtime.cuda`, loaded on first use); copies to
and from it are ordered on the legacy default stream.
"""

from __future__ import annotations

import ctypes
import operator
from typing import Any, Iterable

import numpy as np

from ..errors import DTypeError, ShapeError, UnsupportedOpError, UserError
from . import cuda, dlpack
from .dtypes import dtype_name, np_dtype

ALIGNMENT = 64
"""Byte alignment of every buffer tensorlang allocates."""


_CPU = (dlpack.DL_CPU, 0)


def _check_device(device: Any) -> tuple[int, int]:
    """The DLPack ``(device_type, device_id)`` a device string names."""
    if device == "cpu":
        return _CPU
    if isinstance(device, str):
        kind, _, index = device.partition(":")
        if kind in ("cuda", "gpu") and (index == "" or index.isdigit()):
            cuda.require("CUDA arrays")  # CudaUnavailableError saying why there is no CUDA
            if index and int(index) != cuda.device_id():
                raise UserError(f"device {device!r}: tensorlang uses CUDA device "
                                f"{cuda.device_id()} (set TENSORLANG_CUDA_DEVICE={index} before "
                                "first use to pick another)")
            return (dlpack.DL_CUDA, cuda.device_id())
    raise UserError(f"unknown device {device!r}; expected 'cpu', 'cuda', 'cuda:N' or 'gpu'")


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


def _byte_span(shape: tuple[int, ...], strides: tuple[int, ...] | None,
               itemsize: int) -> tuple[int, int, tuple[int, ...]]:
    """The lowest and one past the highest byte a non-empty view touches, relative to its first
    element (so negative strides work), and its strides in bytes."""
    byte_strides = tuple(s * itemsize for s in (strides or _compact_strides(shape)))
    reach = [(e - 1) * s for e, s in zip(shape, byte_strides)]
    low = sum(min(0, r) for r in reach)
    high = sum(max(0, r) for r in reach) + itemsize
    return low, high, byte_strides


def _is_compact(shape: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    # The stride of an extent-1 axis is never used, so producers put anything there.
    if 0 in shape:
        return True
    return all(e == 1 or s == c for e, s, c in zip(shape, strides, _compact_strides(shape)))


class NDArray:
    """An n-d array in CPU or CUDA memory.

    Made by :func:`empty`, :func:`array` or :func:`from_dlpack` (``NDArray(shape, dtype)`` is the
    same as ``empty``). ``numpy()`` copies out; ``__dlpack__`` shares the memory.

    Attributes:
        shape: extents, a tuple of ints.
        dtype: the dtype name, e.g. ``"float32"``.
        device: ``"cpu"`` or ``"cuda:0"``.
        data_ptr: address of the first element (a device address for CUDA arrays).
        strides: per-axis steps in elements, or None when the array is C-contiguous.
        readonly: True for imported memory its producer marked read-only.

    Example:
        >>> x = NDArray((2, 3), "float32")
        >>> x.copyfrom(np.ones((2, 3), np.float32)).numpy().sum()
        np.float32(6.0)
    """

    __slots__ = ("_shape", "_dtype", "_strides", "_data_ptr", "_owner", "_readonly", "_device",
                 "__weakref__")

    def __init__(self, shape: int | Iterable[int], dtype: Any = "float32",
                 device: str = "cpu") -> None:
        self._device = _check_device(device)
        self._shape = _normalise_shape(shape)
        self._dtype = dtype_name(dtype)
        nbytes = int(np.prod(self._shape, dtype=np.int64)) * np_dtype(self._dtype).itemsize
        self._strides: tuple[int, ...] | None = None
        self._readonly = False
        if self._device != _CPU:
            allocation = cuda.DeviceAllocation(nbytes)  # cuMemAlloc: 256-byte aligned
            self._data_ptr, self._owner = allocation.ptr, allocation
            return
        # NumPy only promises 16-byte alignment: over-allocate and start at the next boundary.
        raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
        self._data_ptr = raw.ctypes.data + (-raw.ctypes.data % ALIGNMENT)
        self._owner: Any = raw  # holds the allocation; also what views are made from

    @classmethod
    def _wrap(cls, data_ptr: int, shape: tuple[int, ...], dtype: str,
              strides: tuple[int, ...] | None, owner: Any, readonly: bool,
              device: tuple[int, int] = _CPU) -> NDArray:
        # External memory: `owner` must keep it alive (a dlpack.DLPackOwner). Not a NumPy array:
        # _as_numpy_view takes an ndarray owner for a compact buffer that tensorlang allocated.
        self = cls.__new__(cls)
        self._shape, self._dtype, self._data_ptr = shape, dtype, data_ptr
        self._strides = None if strides is None or _is_compact(shape, strides) else strides
        self._owner, self._readonly, self._device = owner, readonly, device
        return self

    shape = property(lambda self: self._shape, doc="Extents, a tuple of ints.")
    dtype = property(lambda self: self._dtype, doc="The dtype name, e.g. 'float32'.")
    device = property(lambda self: "cpu" if self._device == _CPU else f"cuda:{self._device[1]}",
                      doc="Where the memory is: 'cpu' or 'cuda:N'.")
    is_cuda = property(lambda self: self._device[0] == dlpack.DL_CUDA,
                       doc="True for arrays in CUDA device memory.")
    data_ptr = property(lambda self: self._data_ptr,
                        doc="Address of the first element (a device address for CUDA arrays).")
    strides = property(lambda self: self._strides, doc="Steps in elements, None when compact.")
    readonly = property(lambda self: self._readonly, doc="True if the producer forbade writes.")
    ndim = property(lambda self: len(self._shape), doc="Number of axes.")
    size = property(lambda self: int(np.prod(self._shape, dtype=np.int64)), doc="Element count.")
    nbytes = property(lambda self: self.size * np_dtype(self._dtype).itemsize,
                      doc="Bytes the elements take (size * itemsize).")

    def _as_numpy_view(self) -> np.ndarray:
        """A zero-copy NumPy array over this (CPU) memory; it keeps the memory alive."""
        if self.is_cuda:
            raise UnsupportedOpError("this array is in CUDA memory: numpy() copies it to the host")
        dtype = np_dtype(self._dtype)
        if isinstance(self._owner, np.ndarray):  # memory we allocated: compact by construction
            view = np.ndarray(self._shape, dtype, buffer=self._owner,
                              offset=self._data_ptr - self._owner.ctypes.data)
        elif self.size == 0:
            view = np.empty(self._shape, dtype)
        else:
            low, high, byte_strides = _byte_span(self._shape, self._strides, dtype.itemsize)
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
        if self.is_cuda:
            return self._cuda_to_host()
        return self._as_numpy_view().copy()

    def _cuda_to_host(self) -> np.ndarray:
        dtype = np_dtype(self._dtype)
        out = np.empty(self._shape, dtype)
        if out.size == 0:
            return out
        if self._strides is None:
            cuda.memcpy_dtoh(out.ctypes.data, self._data_ptr, out.nbytes)
            return out
        # A strided view: fetch the bytes it spans, then gather the elements on the host.
        low, high, byte_strides = _byte_span(self._shape, self._strides, dtype.itemsize)
        span = np.empty(high - low, np.uint8)
        cuda.memcpy_dtoh(span.ctypes.data, self._data_ptr + low, high - low)
        out[...] = np.ndarray(self._shape, dtype, buffer=span, offset=-low, strides=byte_strides)
        return out

    def _byte_range(self) -> tuple[int, int]:
        if self.size == 0:
            return (self._data_ptr, self._data_ptr)
        low, high, _ = _byte_span(self._shape, self._strides, np_dtype(self._dtype).itemsize)
        return (self._data_ptr + low, self._data_ptr + high)

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
        if not isinstance(source, (NDArray, np.ndarray)) and hasattr(source, "__dlpack__"):
            source = from_dlpack(source)
        if isinstance(source, NDArray) and source.is_cuda:
            shape, dtype = source.shape, np_dtype(source.dtype)
        else:
            source = _host_values(source, self._dtype)
            shape, dtype = source.shape, source.dtype
        if shape != self._shape:
            raise ShapeError(f"copyfrom: shape mismatch, expected {self._shape}, got {shape}")
        if dtype != np_dtype(self._dtype):
            raise DTypeError(f"copyfrom: dtype mismatch, expected {self._dtype}, got {dtype}")
        if self._readonly:
            raise UserError("copyfrom: this array wraps read-only memory")
        if self.is_cuda:
            self._copy_into_cuda(source)
        elif isinstance(source, NDArray):
            np.copyto(self._as_numpy_view(), source.numpy())
        else:
            np.copyto(self._as_numpy_view(), source)  # NumPy copes with overlapping memory
        return self

    def _copy_into_cuda(self, source: np.ndarray | NDArray) -> None:
        if self._strides is not None:
            raise UnsupportedOpError(f"copyfrom: writing into a strided CUDA view (strides "
                                     f"{self._strides}) is not supported; copy into a compact "
                                     "array instead")
        if isinstance(source, NDArray):  # in CUDA memory
            low, high = source._byte_range()
            mine = self._byte_range()
            if source.strides is None and (high <= mine[0] or mine[1] <= low):
                cuda.memcpy_dtod(self._data_ptr, source.data_ptr, self.nbytes)
                return
            if source.data_ptr == self._data_ptr and source.strides is None:
                return  # copying an array onto itself
            source = source.numpy()  # strided or overlapping: through the host
        host = np.ascontiguousarray(source)
        cuda.memcpy_htod(self._data_ptr, host.ctypes.data, host.nbytes)

    def __dlpack_device__(self) -> tuple[int, int]:
        """``(1, 0)`` (kDLCPU) for CPU arrays, ``(2, device_id)`` (kDLCUDA) for CUDA arrays."""
        return self._device

    def __dlpack__(self, stream: Any = None, max_version: tuple[int, int] | None = None,
                   dl_device: tuple[int, int] | None = None, copy: bool | None = None) -> Any:
        """Export as a DLPack capsule sharing this memory (a copy only when ``copy=True``).

        A versioned capsule (DLPack 1.x) is made when ``max_version`` allows it, else a legacy
        one. Raises BufferError for what cannot be exported (another device, a read-only
        array through the legacy protocol, which has no read-only flag).

        For CUDA arrays ``stream`` is the consumer's stream (DLPack's protocol: None or 1 the
        legacy default stream, 2 the per-thread default stream, other ints a stream handle, -1
        no ordering); the consumer's stream is made to wait for the work tensorlang queued.

        Example:
            >>> x = array(np.arange(3.0))
            >>> np.shares_memory(np.from_dlpack(x), x._as_numpy_view())
            True
        """
        if dl_device is not None and tuple(dl_device) != self.__dlpack_device__():
            raise BufferError(f"cannot export a {self.device} array to DLPack device "
                              f"{tuple(dl_device)}")
        if not self.is_cuda:
            if stream is not None:
                raise BufferError(f"stream must be None for CPU arrays, got {stream!r}")
        elif stream is not None and not isinstance(stream, int):
            raise BufferError(f"stream must be None, -1 or a CUDA stream handle (1: legacy "
                              f"default, 2: per-thread default), got {stream!r}")
        source = array(self, device=self.device) if copy else self
        if self.is_cuda and stream == 0:
            cuda.synchronize()  # DLPack forbids 0 as ambiguous: be safe rather than refuse
        elif self.is_cuda and stream not in (None, -1, 1):
            # Our work runs on the legacy default stream, which the legacy stream needs no help
            # to follow; any other consumer stream waits for an event recorded there.
            cuda.wait_on_default_stream(stream)
        versioned = max_version is not None and max_version[0] >= 1
        if source.readonly and not versioned:
            raise BufferError("a read-only array needs a versioned DLPack consumer "
                              "(max_version >= (1, 0)) or copy=True")
        return dlpack.export_capsule(
            source.data_ptr, source.shape, source.strides or _compact_strides(source.shape),
            source.dtype, source, versioned=versioned, readonly=source.readonly, copied=bool(copy),
            device=source._device)

    def __repr__(self) -> str:
        header = (f"<tensorlang.NDArray shape={self._shape}, dtype={self._dtype}, "
                  f"device={self.device}>")
        if self.is_cuda and self.size > _REPR_MAX_CUDA_ELEMENTS:
            return f"{header} (values on the device; numpy() copies them)"
        values = self.numpy() if self.is_cuda else self._as_numpy_view()
        return f"{header}\n{np.array2string(values)}"


_REPR_MAX_CUDA_ELEMENTS = 100_000  # repr copies a CUDA array to the host only when small


def _host_values(source: Any, dtype: str | None = None) -> np.ndarray:
    """``source`` as a NumPy array: a view of CPU memory, a copy of CUDA memory; lists and
    scalars converted to ``dtype`` when it is given."""
    if not isinstance(source, (NDArray, np.ndarray)) and hasattr(source, "__dlpack__"):
        source = from_dlpack(source)  # handles bfloat16 NumPy cannot import
    if isinstance(source, NDArray):
        return source.numpy() if source.is_cuda else source._as_numpy_view()
    if isinstance(source, np.ndarray):
        return source
    return np.asarray(source) if dtype is None else np.asarray(source, dtype=np_dtype(dtype))


def array(np_like: Any, dtype: Any = None, device: str = "cpu") -> NDArray:
    """A new aligned NDArray holding a copy of ``np_like``.

    Args:
        np_like: a NumPy array, an NDArray, a DLPack tensor (torch, CuPy, ...), or nested lists.
        dtype: convert to this dtype name; None keeps the source's dtype.
        device: "cpu", or "cuda" ("cuda:0", "gpu") for device memory.

    Raises:
        CudaUnavailableError: a CUDA array where CUDA is unusable; the message says why.

    Example:
        >>> array(np.arange(4), dtype="float32").numpy()
        array([0., 1., 2., 3.], dtype=float32)
    """
    target = _check_device(device)
    if not isinstance(np_like, (NDArray, np.ndarray)) and hasattr(np_like, "__dlpack__"):
        np_like = from_dlpack(np_like)
    if (target != _CPU and isinstance(np_like, NDArray) and np_like.is_cuda
            and (dtype is None or dtype_name(dtype) == np_like.dtype)):
        return NDArray(np_like.shape, np_like.dtype, device).copyfrom(np_like)  # device to device
    source = _host_values(np_like)
    result = NDArray(source.shape, dtype_name(source.dtype) if dtype is None else dtype, device)
    if target == _CPU:
        np.copyto(result._as_numpy_view(), source, casting="unsafe")
    else:
        result._copy_into_cuda(source.astype(np_dtype(result.dtype), copy=False))
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

    CUDA tensors (PyTorch, CuPy) are asked for a capsule ordered on the legacy default stream,
    the stream tensorlang's copies and default launches use.

    Args:
        obj: anything with ``__dlpack__`` / ``__dlpack_device__`` (NumPy, PyTorch, CuPy, ...), or a
            DLPack capsule ("dltensor" or "dltensor_versioned").

    Returns:
        An NDArray over the same memory, strides kept; it keeps the producer's tensor alive.

    Raises:
        UnsupportedOpError: the tensor is neither in CPU memory nor on the CUDA device
            tensorlang uses (or CUDA is unusable here).
        DTypeError: its dtype has no tensorlang counterpart.

    Example:
        >>> a = np.arange(6.0).reshape(2, 3)
        >>> from_dlpack(a[:, ::2]).strides
        (3, 2)
    """
    tensor = dlpack.import_capsule(dlpack.capsule_from_object(obj))
    return NDArray._wrap(tensor.data_ptr, tensor.shape, tensor.dtype, tensor.strides,
                         tensor.owner, tensor.readonly, tensor.device)
