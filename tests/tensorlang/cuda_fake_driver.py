"""A stand-in for the CUDA driver that keeps "device" memory in host memory, for the runtime's
logic tests (tests/tensorlang/test_cuda_runtime.py): records every call, launches kernels as
Python functions on host memory, and fails on request."""
import ctypes
import enum
import threading

import numpy as np
import pytest

from tensorlang.runtime import cuda

# Where cuda-python is installed but there is no driver library, every call is also made on the
# real bindings: they convert (and so check) the arguments before they look for the driver, so
# a wrong argument type fails here rather than on the GPU.

try:
    from cuda.bindings import driver as REAL_DRIVER
except ImportError:
    REAL_DRIVER = None
CHECK_SIGNATURES = REAL_DRIVER is not None and cuda.unavailable_reason().startswith(
    "no CUDA driver")
# Each real call searches the disk and dlopens for the missing driver again (cuda-python does not
# remember a failed search), so each (function, argument types) pair is checked once per process.
_CHECKED = set()
_CHECKED_LOCK = threading.Lock()


def _first_check(name, args):
    key = (name, tuple(type(arg) for arg in args))
    with _CHECKED_LOCK:
        if key in _CHECKED:
            return False
        _CHECKED.add(key)
        return True


class _Result(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_INVALID_VALUE = 1
    CUDA_ERROR_OUT_OF_MEMORY = 2
    CUDA_ERROR_INVALID_IMAGE = 200
    CUDA_ERROR_NO_BINARY_FOR_GPU = 209
    CUDA_ERROR_NOT_FOUND = 500
    CUDA_ERROR_NOT_READY = 600
    CUDA_ERROR_ILLEGAL_ADDRESS = 700


class _Names:
    """Stands in for the attribute enums when cuda-python is missing: an attribute is its name."""

    def __getattr__(self, name):
        return name


def short_name(attribute):
    name = getattr(attribute, "name", attribute)
    for prefix in ("CU_DEVICE_ATTRIBUTE_", "CU_FUNC_ATTRIBUTE_"):
        name = name.removeprefix(prefix)
    return name


OK = _Result.CUDA_SUCCESS
DEVICE_ATTRIBUTES = {
    "COMPUTE_CAPABILITY_MAJOR": 9, "COMPUTE_CAPABILITY_MINOR": 0, "MULTIPROCESSOR_COUNT": 132,
    "MAX_THREADS_PER_BLOCK": 1024, "MAX_BLOCK_DIM_X": 1024, "MAX_BLOCK_DIM_Y": 1024,
    "MAX_BLOCK_DIM_Z": 64, "MAX_GRID_DIM_X": 2**31 - 1, "MAX_GRID_DIM_Y": 65535,
    "MAX_GRID_DIM_Z": 65535, "MAX_SHARED_MEMORY_PER_BLOCK": 49152,
    "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN": 232448, "MAX_SHARED_MEMORY_PER_MULTIPROCESSOR": 233472,
    "MAX_REGISTERS_PER_BLOCK": 65536, "MAX_THREADS_PER_MULTIPROCESSOR": 2048,
    "L2_CACHE_SIZE": 50 * 2**20, "WARP_SIZE": 32, "CLOCK_RATE": 1980000,
    "MEMORY_CLOCK_RATE": 2619000, "GLOBAL_MEMORY_BUS_WIDTH": 5120,
}
FUNCTION_ATTRIBUTES = {"NUM_REGS": 32, "SHARED_SIZE_BYTES": 1024, "LOCAL_SIZE_BYTES": 0,
                       "MAX_THREADS_PER_BLOCK": 768, "MAX_DYNAMIC_SHARED_SIZE_BYTES": 48128}


class FakeDriver:
    """Just enough of cuda.bindings.driver; every call is logged as (name, args)."""

    CUresult = _Result
    if REAL_DRIVER is not None:
        CUdevice_attribute = REAL_DRIVER.CUdevice_attribute
        CUfunction_attribute = REAL_DRIVER.CUfunction_attribute
    else:
        CUdevice_attribute = CUfunction_attribute = _Names()

    def __init__(self):
        self.calls = []
        self.memory = {}      # address -> ctypes buffer
        self.kernels = {}     # name -> Python function(grid, block, param addresses)
        self.functions = {}   # handle -> kernel name
        self.fail = {}        # driver function name -> CUresult to return once
        self.next_handle = 0x1000

    def __getattr__(self, name):
        raise AttributeError(f"the fake driver has no {name}")

    def _call(self, name, *args):
        self.calls.append((name, args))
        if CHECK_SIGNATURES and _first_check(name, args):
            try:
                getattr(REAL_DRIVER, name)(*args)
            except (TypeError, ValueError, OverflowError) as exc:
                raise AssertionError(f"cuda-python refuses {name}{args}: {exc}") from exc
            except RuntimeError:  # DynamicLibNotFoundError: arguments converted, then no driver
                pass
        return self.fail.pop(name, OK)

    def _handle(self):
        self.next_handle += 16
        return self.next_handle

    def cuGetErrorName(self, err):
        return OK, _Result(err).name.encode()

    def cuGetErrorString(self, err):
        return OK, b"fake " + _Result(err).name.lower().encode()

    def cuInit(self, flags):
        return (self._call("cuInit", flags),)

    def cuDeviceGetCount(self):
        return self._call("cuDeviceGetCount"), 1

    def cuDevicePrimaryCtxRetain(self, device):
        return self._call("cuDevicePrimaryCtxRetain", device), 0xC0

    def cuDeviceGet(self, ordinal):
        return self._call("cuDeviceGet", ordinal), ordinal

    def cuDeviceGetAttribute(self, attribute, device):
        return (self._call("cuDeviceGetAttribute", attribute, device),
                DEVICE_ATTRIBUTES[short_name(attribute)])

    def cuDeviceGetName(self, length, device):
        return self._call("cuDeviceGetName", length, device), b"Fake H200\0\0\0"

    def cuDeviceTotalMem(self, device):
        return self._call("cuDeviceTotalMem", device), 141 * 2**30

    def cuDriverGetVersion(self):
        return self._call("cuDriverGetVersion"), 12080

    def cuMemGetInfo(self):
        return self._call("cuMemGetInfo"), 100, 200

    def cuMemAlloc(self, nbytes):
        err = self._call("cuMemAlloc", nbytes)
        if err != OK:
            return err, 0
        buffer = (ctypes.c_char * (nbytes + 256))()
        address = ctypes.addressof(buffer) + (-ctypes.addressof(buffer) % 256)
        self.memory[address] = buffer
        return OK, address

    def cuMemFree(self, address):
        del self.memory[address]
        return (self._call("cuMemFree", address),)

    def cuMemcpyHtoD(self, dst, src, nbytes):
        ctypes.memmove(dst, src, nbytes)
        return (self._call("cuMemcpyHtoD", dst, src, nbytes),)

    def cuMemcpyDtoH(self, dst, src, nbytes):
        ctypes.memmove(dst, src, nbytes)
        return (self._call("cuMemcpyDtoH", dst, src, nbytes),)

    def cuMemcpyDtoDAsync(self, dst, src, nbytes, stream):
        ctypes.memmove(dst, src, nbytes)
        return (self._call("cuMemcpyDtoDAsync", dst, src, nbytes, stream),)

    def cuMemsetD8Async(self, dst, value, nbytes, stream):
        ctypes.memset(dst, value, nbytes)
        return (self._call("cuMemsetD8Async", dst, value, nbytes, stream),)

    def cuMemsetD32Async(self, dst, value, count, stream):
        (ctypes.c_uint32 * count).from_address(dst)[:] = [value] * count
        return (self._call("cuMemsetD32Async", dst, value, count, stream),)

    def cuStreamCreate(self, flags):
        return self._call("cuStreamCreate", flags), self._handle()

    def cuEventCreate(self, flags):
        return self._call("cuEventCreate", flags), self._handle()

    def cuEventElapsedTime(self, start, end):
        return self._call("cuEventElapsedTime", start, end), 0.25

    def cuModuleLoadData(self, image):
        return self._call("cuModuleLoadData", image), self._handle()

    def cuModuleGetFunction(self, module, name):
        err = self._call("cuModuleGetFunction", module, name)
        if name.decode() not in self.kernels:
            return _Result.CUDA_ERROR_NOT_FOUND, None
        handle = self._handle()
        self.functions[handle] = name.decode()
        return err, handle

    def cuFuncGetAttribute(self, attribute, function):
        return (self._call("cuFuncGetAttribute", attribute, function),
                FUNCTION_ATTRIBUTES[short_name(attribute)])

    def cuLaunchKernel(self, function, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        err = self._call("cuLaunchKernel", function, gx, gy, gz, bx, by, bz, shared, stream,
                         params, extra)
        if err == OK:
            self.kernels[self.functions[function]]((gx, gy, gz), (bx, by, bz), params)
        return (err,)

    def _simple(name):  # noqa: N805 - a factory for calls that only return a status
        def call(self, *args):
            return (self._call(name, *args),)
        return call

    for _name in ("cuCtxSetCurrent", "cuStreamSynchronize", "cuStreamWaitEvent",
                  "cuStreamDestroy", "cuEventRecord", "cuEventSynchronize", "cuEventQuery",
                  "cuEventDestroy", "cuCtxSynchronize", "cuModuleUnload", "cuFuncSetAttribute"):
        locals()[_name] = _simple(_name)
    del _name, _simple


def launches(driver):
    """(kernel, grid, block, shared bytes, stream) of each launch."""
    return [(driver.functions[a[0]], tuple(a[1:4]), tuple(a[4:7]), a[7], a[8])
            for name, a in driver.calls if name == "cuLaunchKernel"]


def param(params, index, ctype):
    """Argument ``index`` of a launch, read the way the driver reads kernelParams."""
    address = ctypes.c_void_p.from_address(params + index * ctypes.sizeof(ctypes.c_void_p)).value
    return ctype.from_address(address).value


def axpb_on_host(grid, block, params):
    # y[i] = a * x[i] + b for i < n, over the launch's threads, like the CUDA kernel below.
    y, x = param(params, 0, ctypes.c_void_p), param(params, 1, ctypes.c_void_p)
    a, b, n = (param(params, 2, ctypes.c_float), param(params, 3, ctypes.c_float),
               param(params, 4, ctypes.c_int32))
    threads = min(n, grid[0] * block[0])
    xs = np.ctypeslib.as_array((ctypes.c_float * n).from_address(x))
    ys = np.ctypeslib.as_array((ctypes.c_float * n).from_address(y))
    ys[:threads] = np.float32(a) * xs[:threads] + np.float32(b)


@pytest.fixture
def fake(monkeypatch):
    driver = FakeDriver()
    driver.kernels["axpb"] = axpb_on_host
    for name, value in {"_probed": True, "_driver": driver, "_context": 0xC0, "_device_id": 0,
                        "_reason": "", "_forked": False, "_properties": {},
                        "_current": threading.local(), "_last_launch": ()}.items():
        monkeypatch.setattr(cuda, name, value)
    return driver


def names(driver):
    return [name for name, _ in driver.calls]
