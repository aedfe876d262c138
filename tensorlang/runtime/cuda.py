"""The CUDA runtime: the driver API through cuda-python, loaded on first use.

One device per process (device 0, or ``TENSORLANG_CUDA_DEVICE``) and its *primary* context, the
one PyTorch and CuPy use too, so device addresses pass freely between the three. Importing this
module imports nothing from CUDA; :func:`available` probes the driver once and never raises.

Work that tensorlang queues without an explicit stream goes to the legacy default stream, so it
is ordered with synchronous copies and with PyTorch's default stream. Every driver call is
checked: a failure raises :class:`~tensorlang.errors.CudaError` with the driver's error name and
text. Kernel faults surface at the next synchronising call; :func:`synchronize` then names the
kernel launched last.

Example:
    >>> if available():                                    # doctest: +SKIP
    ...     module = load_module(cubin)
    ...     module.function("axpb").launch((4, 1, 1), (256, 1, 1), [(y.data_ptr, "ptr")])
    ...     synchronize()
"""

from __future__ import annotations

import ctypes
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import CudaError, CudaUnavailableError, UserError

_lock = threading.Lock()
_probed = False
_driver: Any = None          # cuda.bindings.driver, once initialised
_context: Any = None         # the device's primary CUcontext
_device_id = 0
_reason = ""                 # why CUDA is unavailable ("" when it is available)
_forked = False              # this is a forked child of a process that had initialised CUDA
_current = threading.local()  # .ready: the primary context is current on this thread
_properties: dict[int, DeviceProperties] = {}
_last_launch: tuple = ()     # (kernel, grid, block, shared bytes), named on a fault

# Flag values from cuda.h (plain ints suit every cuda-python version's unsigned-int parameters).
_STREAM_NON_BLOCKING = 1  # CU_STREAM_NON_BLOCKING
_EVENT_DISABLE_TIMING = 2  # CU_EVENT_DISABLE_TIMING

_ARG_CTYPES = {"ptr": ctypes.c_void_p, "int32": ctypes.c_int32, "int64": ctypes.c_int64,
               "float32": ctypes.c_float, "float64": ctypes.c_double}


# --- initialisation and error checking -----------------------------------------------------------

def _error_text(driver: Any, err: Any) -> str:
    try:
        name = driver.cuGetErrorName(err)[1].decode()
        text = driver.cuGetErrorString(err)[1].decode()
        return f"{name} ({text})"
    except Exception:  # the driver cannot even describe its errors: give the enum's name
        return getattr(err, "name", str(err))


def _check(result: tuple, call: str, context: str = "") -> Any:
    """The values of a driver call's ``(CUresult, values...)``; raises CudaError on failure."""
    err = result[0]
    if err != _driver.CUresult.CUDA_SUCCESS:
        where = f" ({context})" if context else ""
        raise CudaError(f"{call}{where} failed: {_error_text(_driver, err)}")
    if len(result) == 1:
        return None
    return result[1] if len(result) == 2 else result[1:]


def _after_fork_in_child() -> None:
    global _driver, _reason, _forked
    if _driver is not None:
        _driver, _forked = None, True
        _reason = ("CUDA was initialised in the parent of this forked process, and a forked "
                   "child cannot use it: start worker processes with the 'spawn' method")


os.register_at_fork(after_in_child=_after_fork_in_child)


def _probe() -> None:
    global _probed
    if _probed:
        return
    with _lock:
        if not _probed:
            try:
                _initialise()
            finally:  # set last, so that no other thread sees a half-made state
                _probed = True


def _initialise() -> None:
    global _driver, _context, _device_id, _reason
    try:
        from cuda.bindings import driver
    except ImportError as exc:
        _reason = (f"cuda-python is not installed or too old ({exc}); "
                   "pip install 'cuda-python>=12.6'")
        return
    try:
        result = driver.cuInit(0)
    except Exception as exc:  # cuda.pathfinder's DynamicLibNotFoundError: no libcuda.so
        _reason = f"no CUDA driver ({type(exc).__name__}: {exc})"
        return
    if result[0] != driver.CUresult.CUDA_SUCCESS:
        _reason = f"no CUDA GPU/driver: cuInit failed with {_error_text(driver, result[0])}"
        return
    requested = os.environ.get("TENSORLANG_CUDA_DEVICE", "0")
    try:
        _device_id = int(requested)
        err, count = driver.cuDeviceGetCount()
        if err != driver.CUresult.CUDA_SUCCESS or count == 0:
            _reason = "no CUDA GPU: the driver reports no devices"
            return
        if not 0 <= _device_id < count:
            _reason = f"TENSORLANG_CUDA_DEVICE={requested} but there are {count} device(s)"
            return
        err, device = driver.cuDeviceGet(_device_id)
        if err == driver.CUresult.CUDA_SUCCESS:
            err, context = driver.cuDevicePrimaryCtxRetain(device)
        if err != driver.CUresult.CUDA_SUCCESS:
            _reason = (f"cannot open CUDA device {_device_id}: "
                       f"{_error_text(driver, err)}")
            return
    except ValueError:
        _reason = f"TENSORLANG_CUDA_DEVICE must be a device number, got {requested!r}"
        return
    except Exception as exc:
        _reason = f"CUDA initialisation failed ({type(exc).__name__}: {exc})"
        return
    _driver, _context = driver, context


def available() -> bool:
    """True when cuda-python, a CUDA driver and a GPU are usable. Never raises."""
    try:
        _probe()
    except Exception as exc:  # belt and braces: the promise is not to raise
        global _reason
        _reason = _reason or f"CUDA initialisation failed ({type(exc).__name__}: {exc})"
        return False
    return _driver is not None


def unavailable_reason() -> str:
    """Why CUDA is unusable here ("" when it is usable), e.g. ``"no CUDA driver (...)"``."""
    return "" if available() else _reason


def require(what: str = "CUDA") -> Any:
    """The driver module with the primary context current on this thread.

    Raises:
        CudaUnavailableError: ``what`` needs CUDA and there is none; the message says why.
    """
    if not available():
        raise CudaUnavailableError(f"{what} need the CUDA runtime (cuda-python, an NVIDIA "
                                   f"driver and a GPU), which is unavailable: {_reason}")
    if not getattr(_current, "ready", False):
        _check(_driver.cuCtxSetCurrent(_context), "cuCtxSetCurrent")
        _current.ready = True
    return _driver


def device_id() -> int:
    """The CUDA device tensorlang uses (0 unless ``TENSORLANG_CUDA_DEVICE`` says otherwise)."""
    require()
    return _device_id


# --- device properties ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceProperties:
    """What the tuner and the launch checks need to know about a GPU."""

    name: str
    compute_capability: tuple[int, int]
    arch: str                       # "sm_90": the NVRTC target for cubins
    multiprocessors: int
    max_threads_per_block: int
    max_block_dims: tuple[int, int, int]
    max_grid_dims: tuple[int, int, int]
    max_shared_per_block: int       # bytes without opting in
    max_shared_per_block_optin: int  # bytes with set_max_dynamic_shared
    max_shared_per_multiprocessor: int
    max_registers_per_block: int
    max_threads_per_multiprocessor: int
    l2_bytes: int
    warp_size: int
    total_memory: int
    clock_khz: int
    memory_clock_khz: int
    memory_bus_bits: int
    driver_version: int             # e.g. 12080 for CUDA 12.8


def device_properties(device_id: int | None = None) -> DeviceProperties:
    """Properties of a CUDA device (default: the one tensorlang uses).

    Example:
        >>> device_properties().arch                            # doctest: +SKIP
        'sm_90'
    """
    driver = require("device_properties")
    ordinal = _device_id if device_id is None else int(device_id)
    if ordinal in _properties:
        return _properties[ordinal]
    device = _check(driver.cuDeviceGet(ordinal), "cuDeviceGet", f"device {ordinal}")
    attr = driver.CUdevice_attribute

    def get(name: str) -> int:
        return int(_check(driver.cuDeviceGetAttribute(
            getattr(attr, "CU_DEVICE_ATTRIBUTE_" + name), device), "cuDeviceGetAttribute", name))

    major, minor = get("COMPUTE_CAPABILITY_MAJOR"), get("COMPUTE_CAPABILITY_MINOR")
    raw_name = _check(driver.cuDeviceGetName(256, device), "cuDeviceGetName")
    props = DeviceProperties(
        name=bytes(raw_name).split(b"\0", 1)[0].decode(errors="replace").strip(),
        compute_capability=(major, minor),
        arch=f"sm_{major}{minor}",
        multiprocessors=get("MULTIPROCESSOR_COUNT"),
        max_threads_per_block=get("MAX_THREADS_PER_BLOCK"),
        max_block_dims=(get("MAX_BLOCK_DIM_X"), get("MAX_BLOCK_DIM_Y"), get("MAX_BLOCK_DIM_Z")),
        max_grid_dims=(get("MAX_GRID_DIM_X"), get("MAX_GRID_DIM_Y"), get("MAX_GRID_DIM_Z")),
        max_shared_per_block=get("MAX_SHARED_MEMORY_PER_BLOCK"),
        max_shared_per_block_optin=get("MAX_SHARED_MEMORY_PER_BLOCK_OPTIN"),
        max_shared_per_multiprocessor=get("MAX_SHARED_MEMORY_PER_MULTIPROCESSOR"),
        max_registers_per_block=get("MAX_REGISTERS_PER_BLOCK"),
        max_threads_per_multiprocessor=get("MAX_THREADS_PER_MULTIPROCESSOR"),
        l2_bytes=get("L2_CACHE_SIZE"),
        warp_size=get("WARP_SIZE"),
        total_memory=int(_check(driver.cuDeviceTotalMem(device), "cuDeviceTotalMem")),
        clock_khz=get("CLOCK_RATE"),
        memory_clock_khz=get("MEMORY_CLOCK_RATE"),
        memory_bus_bits=get("GLOBAL_MEMORY_BUS_WIDTH"),
        driver_version=int(_check(driver.cuDriverGetVersion(), "cuDriverGetVersion")),
    )
    _properties[ordinal] = props
    return props


# --- memory --------------------------------------------------------------------------------------

def _release(driver: Any, call: str, handle: Any) -> None:
    # A finalizer (cuMemFree, cuStreamDestroy, ...): it may run on any thread, late, or after a
    # kernel fault broke the context, so it never raises. It uses the driver that made the
    # handle, and does nothing in a forked child, which must not touch its parent's CUDA state.
    if _forked:
        return
    try:
        if driver is _driver:
            require()  # the context current on this thread
        getattr(driver, call)(handle)
    except Exception:
        pass


class DeviceAllocation:
    """``nbytes`` of device memory, freed when this object is collected.

    Attributes:
        ptr: the device address (0 for an empty allocation).
        nbytes: the size in bytes.
    """

    __slots__ = ("ptr", "nbytes", "_finalizer", "__weakref__")

    def __init__(self, nbytes: int) -> None:
        driver = require("CUDA arrays")
        self.nbytes = int(nbytes)
        self.ptr = 0
        if self.nbytes:
            self.ptr = int(_check(driver.cuMemAlloc(self.nbytes), "cuMemAlloc",
                                  f"{self.nbytes} bytes"))
            self._finalizer = weakref.finalize(self, _release, driver, "cuMemFree", self.ptr)
            self._finalizer.atexit = False  # the process exit releases it; the driver may be gone


def memcpy_htod(dst: int, src: Any, nbytes: int) -> None:
    """Copy ``nbytes`` from host ``src`` (an address or a contiguous buffer) to device ``dst``."""
    if nbytes:
        _check(require().cuMemcpyHtoD(dst, src, nbytes), "cuMemcpyHtoD", f"{nbytes} bytes")


def memcpy_dtoh(dst: Any, src: int, nbytes: int) -> None:
    """Copy ``nbytes`` from device ``src`` to host ``dst``; waits for queued work first."""
    if nbytes:
        _check(require().cuMemcpyDtoH(dst, src, nbytes), "cuMemcpyDtoH", f"{nbytes} bytes")


def memcpy_dtod(dst: int, src: int, nbytes: int, stream: Any = None) -> None:
    """Copy ``nbytes`` between device addresses, ordered on ``stream`` (default: legacy)."""
    if nbytes:
        _check(require().cuMemcpyDtoDAsync(dst, src, nbytes, stream_handle(stream)),
               "cuMemcpyDtoDAsync", f"{nbytes} bytes")


def memset_d8(ptr: int, value: int, nbytes: int, stream: Any = None) -> None:
    """Set ``nbytes`` bytes at ``ptr`` to ``value`` (0..255), ordered on ``stream``."""
    if nbytes:
        _check(require().cuMemsetD8Async(ptr, int(value) & 0xFF, nbytes, stream_handle(stream)),
               "cuMemsetD8Async", f"{nbytes} bytes")


def memset_d32(ptr: int, value: int, count: int, stream: Any = None) -> None:
    """Set ``count`` 32-bit words at ``ptr`` (4-byte aligned) to ``value``."""
    if count:
        _check(require().cuMemsetD32Async(ptr, int(value) & 0xFFFFFFFF, count,
                                          stream_handle(stream)),
               "cuMemsetD32Async", f"{count} words")


def mem_get_info() -> tuple[int, int]:
    """``(free, total)`` device memory in bytes."""
    free, total = _check(require().cuMemGetInfo(), "cuMemGetInfo")
    return int(free), int(total)


# --- streams, events, synchronisation ------------------------------------------------------------

def stream_handle(stream: Any) -> int:
    """The raw handle of ``stream``: None/0 is the legacy default stream; a :class:`Stream`,
    an int handle, a ``torch.cuda.Stream`` (``.cuda_stream``) or anything with
    ``__cuda_stream__`` is accepted."""
    if stream is None:
        return 0
    if isinstance(stream, Stream):
        return stream.handle
    if isinstance(stream, int):
        return stream
    if hasattr(stream, "__cuda_stream__"):
        return int(stream.__cuda_stream__()[1])
    if isinstance(getattr(stream, "cuda_stream", None), int):
        return stream.cuda_stream
    raise UserError(f"expected a CUDA stream (tensorlang Stream, int handle or None), "
                    f"got {type(stream).__name__}")


class Stream:
    """A CUDA stream (blocking with respect to the legacy default stream unless
    ``non_blocking``); destroyed when collected.

    Example:
        >>> s = Stream(); f.launch(grid, block, args, stream=s); s.synchronize()  # doctest: +SKIP
    """

    def __init__(self, non_blocking: bool = False) -> None:
        driver = require("CUDA streams")
        flags = _STREAM_NON_BLOCKING if non_blocking else 0
        self._stream = _check(driver.cuStreamCreate(flags), "cuStreamCreate")
        self.handle = int(self._stream)
        finalizer = weakref.finalize(self, _release, driver, "cuStreamDestroy", self._stream)
        finalizer.atexit = False

    def synchronize(self) -> None:
        """Wait until everything queued on the stream has finished."""
        _check(require().cuStreamSynchronize(self._stream), "cuStreamSynchronize",
               _last_launch_note())

    def wait_event(self, event: Event) -> None:
        """Make later work on this stream wait for ``event``."""
        _check(require().cuStreamWaitEvent(self._stream, event._event, 0), "cuStreamWaitEvent")

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.handle)

    def __repr__(self) -> str:
        return f"<tensorlang.cuda.Stream {self.handle:#x}>"


class Event:
    """A CUDA event for ordering and timing.

    Example:
        >>> start, end = Event(), Event()                     # doctest: +SKIP
        >>> start.record(); f.launch(...); end.record(); end.synchronize()
        >>> Event.elapsed_ms(start, end)
    """

    def __init__(self, timing: bool = True) -> None:
        driver = require("CUDA events")
        flags = 0 if timing else _EVENT_DISABLE_TIMING
        self._event = _check(driver.cuEventCreate(flags), "cuEventCreate")
        finalizer = weakref.finalize(self, _release, driver, "cuEventDestroy", self._event)
        finalizer.atexit = False

    def record(self, stream: Any = None) -> Event:
        """Record the event on ``stream`` (default: the legacy default stream); returns self."""
        _check(require().cuEventRecord(self._event, stream_handle(stream)), "cuEventRecord")
        return self

    def synchronize(self) -> None:
        """Wait until the work before the recorded event has finished."""
        _check(require().cuEventSynchronize(self._event), "cuEventSynchronize",
               _last_launch_note())

    def query(self) -> bool:
        """True when the recorded work has finished."""
        result = require().cuEventQuery(self._event)
        if result[0] == _driver.CUresult.CUDA_ERROR_NOT_READY:
            return False
        _check(result, "cuEventQuery", _last_launch_note())
        return True

    @staticmethod
    def elapsed_ms(start: Event, end: Event) -> float:
        """Milliseconds between two recorded, completed events."""
        return float(_check(require().cuEventElapsedTime(start._event, end._event),
                            "cuEventElapsedTime"))


def _describe_launch(name: str, grid: tuple, block: tuple, shared: int) -> str:
    return f"{name}<<<{grid}, {block}, {shared}>>>"


def _last_launch_note() -> str:
    return f"last kernel launched: {_describe_launch(*_last_launch)}" if _last_launch else ""


def synchronize() -> None:
    """Wait for all queued GPU work; a kernel fault raises CudaError naming the last kernel."""
    _check(require().cuCtxSynchronize(), "cuCtxSynchronize", _last_launch_note())


check_last_error = synchronize  # errors of asynchronous launches surface at a synchronisation


def wait_on_default_stream(stream: int) -> None:
    """Make ``stream`` wait for the work queued so far on the legacy default stream (which,
    by the legacy stream's rules, includes all work on blocking streams)."""
    driver = require()
    event = _check(driver.cuEventCreate(_EVENT_DISABLE_TIMING), "cuEventCreate")
    try:
        _check(driver.cuEventRecord(event, 0), "cuEventRecord")
        _check(driver.cuStreamWaitEvent(stream, event, 0), "cuStreamWaitEvent",
               f"stream {stream:#x}")
    finally:
        driver.cuEventDestroy(event)  # released once the wait is satisfied


# --- modules and kernels -------------------------------------------------------------------------

_IMAGE_ERRORS = ("CUDA_ERROR_NO_BINARY_FOR_GPU", "CUDA_ERROR_INVALID_IMAGE",
                 "CUDA_ERROR_UNSUPPORTED_PTX_VERSION", "CUDA_ERROR_INVALID_PTX")


class CuModule:
    """A loaded cubin; unloaded when collected (its functions keep it alive)."""

    def __init__(self, image: bytes) -> None:
        driver = require("CUDA modules")
        result = driver.cuModuleLoadData(bytes(image))
        if result[0] != driver.CUresult.CUDA_SUCCESS and result[0].name in _IMAGE_ERRORS:
            props = device_properties()
            raise CudaError(
                f"cuModuleLoadData failed: {_error_text(driver, result[0])}; the device is "
                f"{props.name} ({props.arch}, driver {props.driver_version}): compile the cubin "
                f"for {props.arch} with an NVRTC no newer than the driver")
        self._module = _check(result, "cuModuleLoadData")
        self._functions: dict[str, CuFunction] = {}
        finalizer = weakref.finalize(self, _release, driver, "cuModuleUnload", self._module)
        finalizer.atexit = False

    def function(self, name: str) -> CuFunction:
        """The kernel ``name`` (declare it ``extern "C"`` so the name is not mangled)."""
        if name not in self._functions:
            result = require().cuModuleGetFunction(self._module, name.encode())
            if result[0] == _driver.CUresult.CUDA_ERROR_NOT_FOUND:
                raise UserError(f"kernel {name!r} is not in this CUDA module (is it declared "
                                f"extern \"C\" __global__?)")
            self._functions[name] = CuFunction(self, name, _check(result, "cuModuleGetFunction"))
        return self._functions[name]


def load_module(cubin: bytes) -> CuModule:
    """Load a cubin (or PTX, which the driver JIT-compiles) into the current context."""
    return CuModule(cubin)


_PACKERS: dict[tuple[str, ...], tuple[type, tuple[int, ...], type]] = {}


def _packer(kinds: tuple[str, ...], kernel: str) -> tuple[type, tuple[int, ...], type]:
    """A ctypes struct holding arguments of these kinds, its field offsets, and the type of the
    pointer array (kernelParams) that points into it; made once per signature."""
    packer = _PACKERS.get(kinds)
    if packer is None:
        for index, kind in enumerate(kinds):
            if kind not in _ARG_CTYPES:
                raise UserError(f"kernel {kernel}: argument {index} has kind {kind!r}; "
                                f"expected one of {sorted(_ARG_CTYPES)}")
        fields = [(f"arg{i}", _ARG_CTYPES[kind]) for i, kind in enumerate(kinds)]
        struct = type("KernelArguments", (ctypes.Structure,), {"_fields_": fields})
        offsets = tuple(getattr(struct, name).offset for name, _ in fields)
        packer = _PACKERS[kinds] = (struct, offsets, ctypes.c_void_p * max(len(kinds), 1))
    return packer


def _dims(value: Sequence[int] | int, what: str, kernel: str) -> tuple[int, int, int]:
    dims = (int(value),) if isinstance(value, int) else tuple(int(v) for v in value)
    if not 1 <= len(dims) <= 3:
        raise UserError(f"kernel {kernel}: {what} must have 1 to 3 dimensions, got {value!r}")
    return dims + (1,) * (3 - len(dims))  # type: ignore[return-value]


class CuFunction:
    """A kernel in a loaded module.

    Attributes:
        name: the kernel's name.
        num_registers, static_shared_bytes, local_bytes, max_threads_per_block: what the
            compiler gave the kernel (max_threads_per_block can be below the device's limit
            when the kernel uses many registers).
    """

    def __init__(self, module: CuModule, name: str, handle: Any) -> None:
        self.module, self.name, self._handle = module, name, handle  # module: keeps it loaded
        attribute = _driver.CUfunction_attribute

        def get(which: str) -> int:
            return int(_check(_driver.cuFuncGetAttribute(
                getattr(attribute, "CU_FUNC_ATTRIBUTE_" + which), handle),
                "cuFuncGetAttribute", f"{which} of kernel {name}"))

        self.num_registers = get("NUM_REGS")
        self.static_shared_bytes = get("SHARED_SIZE_BYTES")
        self.local_bytes = get("LOCAL_SIZE_BYTES")
        self.max_threads_per_block = get("MAX_THREADS_PER_BLOCK")
        self._max_dynamic_shared = get("MAX_DYNAMIC_SHARED_SIZE_BYTES")
        self._checked: dict[tuple, tuple] = {}  # launch configurations already validated

    def set_max_dynamic_shared(self, nbytes: int) -> None:
        """Allow launches with up to ``nbytes`` of dynamic shared memory (beyond 48 KiB needs
        this opt-in); refused past the device's opt-in limit."""
        limit = device_properties().max_shared_per_block_optin - self.static_shared_bytes
        if not 0 <= nbytes <= limit:
            raise UserError(f"kernel {self.name}: {nbytes} bytes of dynamic shared memory "
                            f"exceed the device limit of {limit} bytes (opt-in "
                            f"{device_properties().max_shared_per_block_optin} minus "
                            f"{self.static_shared_bytes} static)")
        driver = require()
        attribute = driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        _check(driver.cuFuncSetAttribute(self._handle, attribute, int(nbytes)),
               "cuFuncSetAttribute", f"kernel {self.name}")
        self._max_dynamic_shared = int(nbytes)
        self._checked.clear()

    def check_launch(self, grid: tuple[int, int, int], block: tuple[int, int, int],
                     shared_bytes: int = 0) -> None:
        """Raise UserError, naming the kernel, if the configuration exceeds the device."""
        props = device_properties()
        problems = []
        for what, dims, limits in (("grid", grid, props.max_grid_dims),
                                   ("block", block, props.max_block_dims)):
            for axis, extent, limit in zip("xyz", dims, limits):
                if not 1 <= extent <= limit:
                    problems.append(f"{what}.{axis}={extent} is outside 1..{limit}")
        threads = block[0] * block[1] * block[2]
        if threads > self.max_threads_per_block:
            problems.append(f"{threads} threads per block exceed the kernel's limit of "
                            f"{self.max_threads_per_block} (device "
                            f"{props.max_threads_per_block}, {self.num_registers} registers)")
        if shared_bytes > self._max_dynamic_shared:
            problems.append(f"{shared_bytes} bytes of dynamic shared memory exceed "
                            f"{self._max_dynamic_shared} (call set_max_dynamic_shared to opt in "
                            f"up to {props.max_shared_per_block_optin - self.static_shared_bytes})")
        if problems:
            raise UserError(f"cannot launch kernel {self.name} with grid {grid}, block {block} "
                            f"on {props.name}: " + "; ".join(problems))

    def launch(self, grid: Sequence[int] | int, block: Sequence[int] | int,
               args: Sequence[tuple[Any, str]], shared_bytes: int = 0,
               stream: Any = None) -> None:
        """Queue the kernel on ``stream`` (default: the legacy default stream).

        Args:
            grid, block: up to three extents each.
            args: ``(value, kind)`` pairs in parameter order, kind one of "ptr" (an int device
                address), "int32", "int64", "float32", "float64".
            shared_bytes: dynamic shared memory per block.

        Raises:
            UserError: a bad kind or a configuration beyond the device's limits.
            CudaError: the driver refused the launch.
        """
        driver = require("CUDA kernels")
        try:  # the launch path is hot (tuning, timing loops): validate each configuration once
            grid3, block3, shared = self._checked[(grid, block, shared_bytes)]
        except (KeyError, TypeError):  # new, or given as an unhashable list
            grid3, block3 = _dims(grid, "grid", self.name), _dims(block, "block", self.name)
            shared = int(shared_bytes)
            self.check_launch(grid3, block3, shared)
            try:
                self._checked[(grid, block, shared_bytes)] = (grid3, block3, shared)
            except TypeError:
                pass
        # kernelParams as the C API takes it: an array of pointers to the argument values (here
        # the fields of one struct). The driver copies the values during the call.
        struct, offsets, pointer_array = _packer(tuple(kind for _, kind in args), self.name)
        try:
            values = struct(*(value for value, _ in args))
        except TypeError:  # e.g. a NumPy integer for a pointer: convert explicitly
            values = struct(*(float(v) if k.startswith("float") else int(v) for v, k in args))
        base = ctypes.addressof(values)
        pointers = pointer_array(*(base + offset for offset in offsets))
        global _last_launch
        _last_launch = (self.name, grid3, block3, shared)
        result = driver.cuLaunchKernel(self._handle, *grid3, *block3, shared,
                                       stream_handle(stream),
                                       ctypes.addressof(pointers) if offsets else 0, 0)
        if result[0] != driver.CUresult.CUDA_SUCCESS:
            _check(result, "cuLaunchKernel", _describe_launch(*_last_launch))

    def __repr__(self) -> str:
        return f"<tensorlang.cuda.CuFunction {self.name}>"
