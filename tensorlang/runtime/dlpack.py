"""DLPack exchange through ctypes: the C structs, exporting capsules and importing them.

Tensors in CPU memory and in the memory of the CUDA device tensorlang uses are exchanged (the
device travels in the tensor's ``device`` field). Both capsule kinds are handled: the legacy
``DLManagedTensor`` (capsule name ``"dltensor"``) and the versioned ``DLManagedTensorVersioned``
of DLPack 1.x (``"dltensor_versioned"``, which adds a read-only flag). A consumer renames the capsule ``"used_..."`` when it takes ownership; from then
on the consumer calls the tensor's deleter, otherwise the capsule's destructor does.

This module knows nothing of NDArray: it deals in addresses, shapes and owner objects, so that
``ndarray`` can import it without a cycle.
"""

from __future__ import annotations

import ctypes
import weakref
from dataclasses import dataclass
from typing import Any

from ..errors import InternalError, UnsupportedOpError, UserError
from .dtypes import dlpack_dtype, dtype_from_dlpack


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


# The deleter is stored as a plain address: reading it back then never builds a ctypes
# function object for a NULL pointer, and foreign deleters are called through DLDeleter(address).
DLDeleter = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class DLManagedTensor(ctypes.Structure):
    _fields_ = [
        ("dl_tensor", DLTensor),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
    ]


class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [
        ("version", DLPackVersion),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", DLTensor),
    ]


DL_CPU = 1
DL_CUDA = 2
DLPACK_VERSION = (1, 1)  # what we write into versioned capsules; 1.1 only added dtype codes
FLAG_READ_ONLY = 1 << 0
FLAG_IS_COPIED = 1 << 1
_DEVICE_NAMES = {1: "cpu", 2: "cuda", 3: "cuda_host", 4: "opencl", 7: "vulkan", 8: "metal",
                 10: "rocm", 11: "rocm_host", 13: "cuda_managed", 14: "oneapi"}

# A capsule stores the pointer to its name, not a copy: these bytes live as long as the module.
_LEGACY, _USED_LEGACY = b"dltensor", b"used_dltensor"
_VERSIONED, _USED_VERSIONED = b"dltensor_versioned", b"used_dltensor_versioned"


def _python_api(name: str, restype: Any, *argtypes: Any) -> Any:
    # Private prototypes: setting argtypes on ctypes.pythonapi.X would change them for every
    # other library in the process that uses the same shared function object.
    return ctypes.PYFUNCTYPE(restype, *argtypes)((name, ctypes.pythonapi))


_c = ctypes
_capsule_new = _python_api("PyCapsule_New", _c.py_object, _c.c_void_p, _c.c_char_p, _c.c_void_p)
_capsule_is_valid = _python_api("PyCapsule_IsValid", _c.c_int, _c.py_object, _c.c_char_p)
_capsule_get_pointer = _python_api("PyCapsule_GetPointer", _c.c_void_p, _c.py_object, _c.c_char_p)
_capsule_set_name = _python_api("PyCapsule_SetName", _c.c_int, _c.py_object, _c.c_char_p)
# The destructor gets the capsule as a raw address: turning a dying object (refcount 0) into a
# py_object would increment and decrement it again and deallocate it a second time.
_raw_is_valid = _python_api("PyCapsule_IsValid", _c.c_int, _c.c_void_p, _c.c_char_p)
_raw_get_pointer = _python_api("PyCapsule_GetPointer", _c.c_void_p, _c.c_void_p, _c.c_char_p)
_error_fetch = _python_api("PyErr_Fetch", None)  # no argtypes: see _on_capsule_destroyed
_error_restore = _python_api("PyErr_Restore", None, _c.c_void_p, _c.c_void_p, _c.c_void_p)
# Parking places for a pending error, made in advance (nothing can be allocated while an error
# is pending). A ring, because another thread may run a destructor between our fetch and read.
_ERROR_SLOT_COUNT = 64
_ERROR_SLOTS = tuple((_c.c_void_p(), _c.c_void_p(), _c.c_void_p())
                     for _ in range(_ERROR_SLOT_COUNT))
_ERROR_SLOT_REFS = tuple(tuple(_c.byref(slot) for slot in slots) for slots in _ERROR_SLOTS)
_error_slot = 0

# Everything an exported tensor points to, keyed by the managed struct's address, so that the
# memory stays alive until its deleter runs; holds the exported array (the owner) too.
_EXPORTS: dict[int, tuple[Any, ...]] = {}


def _release_export(managed: int) -> None:
    # The deleter of every tensor we export; the consumer or our capsule destructor calls it once.
    if _EXPORTS.pop(managed, None) is None:
        raise InternalError(f"DLPack deleter called twice, or on a tensor we did not export "
                            f"({managed:#x})")


def _call_deleter(deleter: int | None, managed: int) -> None:
    if deleter:
        DLDeleter(deleter)(managed)


def _on_capsule_destroyed(capsule: int) -> None:
    # CPython runs capsule destructors even while an exception is pending (a consumer that
    # rejected the tensor drops the capsule on its error path). Python code must not call
    # anything with an error set (each call would turn into a SystemError), so the first
    # statements only do int arithmetic and then park the error. Once the deleter has run, the
    # error is put back, which makes ctypes report it as unraisable: the consumer then raises
    # SystemError, but the memory is freed and the original message is printed, not lost.
    global _error_slot
    slot = _error_slot = (_error_slot + 1) % _ERROR_SLOT_COUNT
    _error_fetch(*_ERROR_SLOT_REFS[slot])
    parked = _ERROR_SLOTS[slot]
    pending = (parked[0].value, parked[1].value, parked[2].value)
    try:
        for name, struct in ((_LEGACY, DLManagedTensor), (_VERSIONED, DLManagedTensorVersioned)):
            if _raw_is_valid(capsule, name):  # a "used_..." name means the consumer owns it
                managed = _raw_get_pointer(capsule, name)
                _call_deleter(struct.from_address(managed).deleter, managed)
                break
    finally:
        if pending[0]:
            _error_restore(*pending)


# Module-level so that the C function pointers outlive every capsule made with them.
_DELETER = DLDeleter(_release_export)
_DELETER_ADDRESS = ctypes.cast(_DELETER, ctypes.c_void_p).value
_CAPSULE_DESTRUCTOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_on_capsule_destroyed)
_CAPSULE_DESTRUCTOR_ADDRESS = ctypes.cast(_CAPSULE_DESTRUCTOR, ctypes.c_void_p).value


def live_exports() -> int:
    """How many exported tensors are waiting for their deleter (for leak checks in tests)."""
    return len(_EXPORTS)


def export_capsule(data_ptr: int, shape: tuple[int, ...], strides: tuple[int, ...], dtype: str,
                   owner: Any, *, versioned: bool, readonly: bool = False,
                   copied: bool = False, device: tuple[int, int] = (DL_CPU, 0)) -> Any:
    """A new DLPack capsule viewing memory that ``owner`` keeps alive.

    Args:
        data_ptr: address of the first element.
        shape, strides: per dimension; strides in elements.
        dtype: a tensorlang dtype name.
        owner: kept referenced until the tensor's deleter runs.
        versioned: make a ``"dltensor_versioned"`` capsule (DLPack 1.x) instead of ``"dltensor"``.
        readonly, copied: the versioned capsule's flags.
        device: DLPack ``(device_type, device_id)`` of the memory: CPU unless told otherwise.

    Example:
        >>> buf = np.arange(4.0)
        >>> cap = export_capsule(buf.ctypes.data, (4,), (1,), "float64", buf, versioned=False)
    """
    ndim = len(shape)
    # Length at least 1 so that 0-d tensors still get valid (unused) pointers.
    shape_array = (ctypes.c_int64 * max(ndim, 1))(*shape)
    strides_array = (ctypes.c_int64 * max(ndim, 1))(*strides)
    managed: Any = DLManagedTensorVersioned() if versioned else DLManagedTensor()
    tensor = managed.dl_tensor
    tensor.data = data_ptr
    tensor.device = DLDevice(int(device[0]), int(device[1]))
    tensor.ndim = ndim
    tensor.dtype = DLDataType(*dlpack_dtype(dtype))
    tensor.shape = ctypes.cast(shape_array, ctypes.POINTER(ctypes.c_int64))
    tensor.strides = ctypes.cast(strides_array, ctypes.POINTER(ctypes.c_int64))
    tensor.byte_offset = 0
    managed.manager_ctx = None
    managed.deleter = _DELETER_ADDRESS
    if versioned:
        managed.version = DLPackVersion(*DLPACK_VERSION)
        managed.flags = (FLAG_READ_ONLY if readonly else 0) | (FLAG_IS_COPIED if copied else 0)
    address = ctypes.addressof(managed)
    _EXPORTS[address] = (managed, shape_array, strides_array, owner)
    try:
        name = _VERSIONED if versioned else _LEGACY
        return _capsule_new(address, name, _CAPSULE_DESTRUCTOR_ADDRESS)
    except BaseException:
        del _EXPORTS[address]
        raise


@dataclass(frozen=True)
class ImportedTensor:
    """What a consumed DLPack capsule describes; ``owner`` releases the producer's memory when
    it is garbage collected, so anything viewing the memory must keep it referenced."""

    data_ptr: int
    shape: tuple[int, ...]
    strides: tuple[int, ...] | None  # in elements, as the producer gave them; None: compact
    dtype: str
    readonly: bool
    owner: Any
    device: tuple[int, int] = (DL_CPU, 0)  # DLPack (device_type, device_id): CPU or CUDA


class DLPackOwner:
    """Keeps an imported tensor's memory alive and calls its producer's deleter exactly once,
    when this object is collected."""

    __slots__ = ("_finalizer", "__weakref__")

    def __init__(self, managed: int, deleter: int | None) -> None:
        self._finalizer = weakref.finalize(self, _call_deleter, deleter, managed)


def _device_name(device_type: int) -> str:
    return _DEVICE_NAMES.get(device_type, f"device type {device_type}")


def check_device(device: tuple[int, int]) -> None:
    """Raise unless a DLPack ``(device_type, device_id)`` is the CPU, or the CUDA device that
    tensorlang uses (UnsupportedOpError when there is no usable CUDA here)."""
    kind, ordinal = int(device[0]), int(device[1])
    if kind == DL_CPU:
        return
    if kind != DL_CUDA:
        raise UnsupportedOpError(
            f"from_dlpack supports CPU and CUDA tensors only; got a {_device_name(kind)} "
            f"tensor (DLPack device {tuple(device)}): copy it to the CPU first")
    from . import cuda  # imports nothing from CUDA until it is used
    if not cuda.available():
        raise UnsupportedOpError(
            f"from_dlpack supports CPU tensors only on this machine; got a cuda tensor (DLPack "
            f"device {tuple(device)}) but the CUDA runtime is unavailable: "
            f"{cuda.unavailable_reason()}")
    if ordinal != cuda.device_id():
        raise UnsupportedOpError(
            f"from_dlpack got a tensor on CUDA device {ordinal}, but tensorlang uses device "
            f"{cuda.device_id()} (set TENSORLANG_CUDA_DEVICE={ordinal} before first use)")


check_cpu_device = check_device  # the name before CUDA arrays existed


def is_capsule(obj: Any) -> bool:
    return type(obj).__name__ == "PyCapsule"


def capsule_from_object(obj: Any) -> Any:
    """Ask a producer for a capsule, preferring the versioned kind; a capsule passes through."""
    if is_capsule(obj):
        return obj
    if not hasattr(obj, "__dlpack__"):
        raise UserError(f"from_dlpack expects an object with __dlpack__ or a DLPack capsule, "
                        f"got {type(obj).__name__}")
    device = tuple(obj.__dlpack_device__()) if hasattr(obj, "__dlpack_device__") else None
    options: dict[str, Any] = {}
    if device is not None:
        check_device(device)
        if int(device[0]) == DL_CUDA:
            # DLPack's stream protocol: name the stream we will use the tensor on, so that the
            # producer orders its pending work before it. Ours is the legacy default stream (1).
            options["stream"] = 1
    try:
        return obj.__dlpack__(max_version=DLPACK_VERSION, **options)
    except TypeError:  # producers older than DLPack 1.0 take no max_version
        return obj.__dlpack__(**options)


def import_capsule(capsule: Any) -> ImportedTensor:
    """Consume a DLPack capsule (legacy or versioned) and describe the tensor in it.

    The capsule is only renamed "used_..." once every check has passed, so a rejected tensor is
    still released by the capsule's own destructor.

    Example:
        >>> t = import_capsule(np.arange(3.0).__dlpack__())
        >>> t.shape, t.dtype
        ((3,), 'float64')
    """
    if _capsule_is_valid(capsule, _VERSIONED):
        name, used, struct = _VERSIONED, _USED_VERSIONED, DLManagedTensorVersioned
    elif _capsule_is_valid(capsule, _LEGACY):
        name, used, struct = _LEGACY, _USED_LEGACY, DLManagedTensor
    else:
        raise UserError("expected a DLPack capsule named 'dltensor' or 'dltensor_versioned'; "
                        "a capsule can be consumed only once")
    address = _capsule_get_pointer(capsule, name)
    managed = struct.from_address(address)
    flags = 0
    if struct is DLManagedTensorVersioned:
        if managed.version.major != DLPACK_VERSION[0]:
            raise UnsupportedOpError(f"DLPack version {managed.version.major}."
                                     f"{managed.version.minor} is not supported (expected 1.x)")
        flags = managed.flags
    tensor = managed.dl_tensor
    device = (int(tensor.device.device_type), int(tensor.device.device_id))
    check_device(device)
    dtype = dtype_from_dlpack(tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes)
    ndim = tensor.ndim
    shape = tuple(int(tensor.shape[i]) for i in range(ndim))
    strides = tuple(int(tensor.strides[i]) for i in range(ndim)) if tensor.strides else None
    size = 1
    for extent in shape:
        size *= extent
    if not tensor.data and size:
        raise UserError(f"DLPack tensor of shape {shape} has a NULL data pointer")
    data_ptr = (tensor.data or 0) + tensor.byte_offset
    deleter = managed.deleter
    if _capsule_set_name(capsule, used) != 0:
        raise InternalError("PyCapsule_SetName failed on a valid DLPack capsule")
    return ImportedTensor(data_ptr=data_ptr, shape=shape, strides=strides, dtype=dtype,
                          readonly=bool(flags & FLAG_READ_ONLY),
                          owner=DLPackOwner(address, deleter), device=device)
