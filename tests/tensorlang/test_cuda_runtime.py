"""The CUDA runtime (tensorlang.runtime.cuda) and CUDA arrays.

Three groups:
- without a GPU (this runs everywhere): availability reporting and the errors users get;
- against a fake driver that keeps "device" memory in host memory: the runtime's and NDArray's
  logic (copies, strides, launch checks, argument packing, DLPack devices and streams);
- on a real GPU (skipped without one): the same paths against the driver, NVRTC-compiled
  kernels, and zero-copy exchange with PyTorch and CuPy.
"""

import importlib
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import tensorlang as tl
from tensorlang import nd
from tensorlang.errors import (CudaError, CudaUnavailableError, DTypeError, ShapeError,
                               UnsupportedOpError, UserError)
from tensorlang.runtime import cuda

HAS_GPU = cuda.available()
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [REPO_ROOT, os.path.dirname(os.path.abspath(__file__)), os.environ.get("PYTHONPATH", "")])}
_skip_without_gpu = pytest.mark.skipif(
    not HAS_GPU, reason=f"no CUDA GPU/driver: {cuda.unavailable_reason()}")


def needs_gpu(test):
    return pytest.mark.gpu(_skip_without_gpu(test))


needs_no_gpu = pytest.mark.skipif(HAS_GPU, reason="a CUDA GPU is present")


def random_array(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "iu":
        return rng.integers(-1000, 1000, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


# --- no GPU --------------------------------------------------------------------------------------

def test_import_does_not_load_cuda_python():
    code = ("import sys, tensorlang as tl; tl.nd.empty((2,)); "
            "assert not any(m.startswith('cuda.bindings') for m in sys.modules), 'loaded'")
    subprocess.run([sys.executable, "-c", code], check=True, env=CHILD_ENV)


def test_available_never_raises():
    assert isinstance(cuda.available(), bool)
    reason = cuda.unavailable_reason()
    assert isinstance(reason, str) and (reason == "") == cuda.available()


@needs_no_gpu
def test_no_gpu_reason_and_errors():
    assert not cuda.available()
    assert "CUDA" in cuda.unavailable_reason() or "cuda" in cuda.unavailable_reason()
    for make in (lambda: nd.empty((2, 3), "float32", device="cuda"),
                 lambda: nd.array(np.ones(3), device="cuda:0"),
                 lambda: nd.empty(4, device="gpu")):
        with pytest.raises(CudaUnavailableError, match="CUDA arrays need the CUDA runtime"):
            make()
    with pytest.raises(CudaUnavailableError, match="CUDA modules need the CUDA runtime"):
        cuda.load_module(b"\x7fELF")
    with pytest.raises(UnsupportedOpError):  # CudaUnavailableError is an UnsupportedOpError
        cuda.synchronize()


def test_unknown_devices_refused():
    for device in ("tpu", "cuda:x", "cuda:-1", "Cuda", 0, None):
        with pytest.raises(UserError, match="unknown device"):
            nd.empty((2,), device=device)
    assert nd.empty((2,)).device == "cpu" and isinstance(nd.empty((2,)).data_ptr, int)


from cuda_fake_driver import (REAL_DRIVER, _Result, fake, launches,  # noqa: E402,F401
                              names, short_name)


def test_fake_properties_and_context(fake):
    assert cuda.available() and cuda.unavailable_reason() == ""
    props = cuda.device_properties()
    assert (props.name, props.arch, props.compute_capability) == ("Fake H200", "sm_90", (9, 0))
    assert props.max_block_dims == (1024, 1024, 64) and props.total_memory == 141 * 2**30
    assert cuda.device_properties(0) is props
    assert names(fake).count("cuCtxSetCurrent") == 1  # once per thread
    thread = threading.Thread(target=cuda.synchronize)
    thread.start()
    thread.join()
    assert names(fake).count("cuCtxSetCurrent") == 2  # made current on the new thread too
    assert cuda.mem_get_info() == (100, 200)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int32", "bfloat16", "int8"])
def test_fake_round_trip(fake, dtype):
    values = random_array((3, 5, 7), "float32").astype(tl.runtime.np_dtype(dtype))
    x = nd.array(values, device="cuda")
    assert x.device == "cuda:0" and x.is_cuda and x.dtype == dtype and x.shape == (3, 5, 7)
    assert x.data_ptr in fake.memory and x.data_ptr % 256 == 0
    assert x.__dlpack_device__() == (2, 0)
    back = x.numpy()
    assert back.dtype == values.dtype and np.array_equal(back.view(np.uint8),
                                                         values.view(np.uint8))
    assert "device=cuda:0" in repr(x)
    assert nd.array(x).device == "cpu" and np.array_equal(nd.array(x).numpy(), back)


def test_fake_memory_is_freed(fake):
    x = nd.empty((1000,), "float64", device="cuda")
    address = x.data_ptr
    del x
    assert address not in fake.memory
    assert nd.empty((0, 4), device="cuda").numpy().shape == (0, 4)  # nothing allocated
    assert names(fake).count("cuMemAlloc") == 1


def test_fake_out_of_memory_is_clear(fake):
    fake.fail["cuMemAlloc"] = _Result.CUDA_ERROR_OUT_OF_MEMORY
    with pytest.raises(CudaError, match=r"cuMemAlloc \(4000 bytes\) failed: "
                                        r"CUDA_ERROR_OUT_OF_MEMORY"):
        nd.empty((1000,), "float32", device="cuda")


def test_fake_copyfrom(fake):
    a, b = random_array((4, 6), "float32", 1), random_array((4, 6), "float32", 2)
    x = nd.empty((4, 6), "float32", device="cuda").copyfrom(a)
    assert np.array_equal(x.numpy(), a)
    y = nd.array(b, device="cuda")
    x.copyfrom(y)  # device to device
    assert np.array_equal(x.numpy(), b) and "cuMemcpyDtoDAsync" in names(fake)
    host = nd.empty((4, 6), "float32").copyfrom(x)  # CUDA into a CPU array
    assert np.array_equal(host.numpy(), b)
    with pytest.raises(ShapeError, match=r"expected \(4, 6\), got \(6, 4\)"):
        x.copyfrom(a.T.copy())
    with pytest.raises(DTypeError, match="expected float32, got float64"):
        x.copyfrom(a.astype(np.float64))
    with pytest.raises(DTypeError, match="expected float32, got int32"):
        x.copyfrom(nd.empty((4, 6), "int32", device="cuda"))
    x.copyfrom([[1.5] * 6] * 4)  # lists are converted
    assert np.all(x.numpy() == 1.5)


def test_fake_array_casts_and_copies_device_to_device(fake):
    ints = np.arange(10, dtype=np.int64)
    x = nd.array(ints, dtype="float32", device="cuda")
    assert x.dtype == "float32" and np.array_equal(x.numpy(), ints.astype(np.float32))
    y = nd.array(x, device="cuda")
    assert y.data_ptr != x.data_ptr and np.array_equal(y.numpy(), x.numpy())
    assert names(fake).count("cuMemcpyDtoDAsync") == 1


def test_fake_dlpack_export_import_and_strides(fake):
    base = random_array((4, 6), "float32")
    x = nd.array(base, device="cuda")
    capsule = x.__dlpack__(stream=None, max_version=(1, 0))
    y = nd.from_dlpack(capsule)  # our own CUDA capsule comes back zero-copy
    assert y.data_ptr == x.data_ptr and y.device == "cuda:0" and y.is_cuda
    assert np.array_equal(y.numpy(), base)
    # a strided CUDA view (as a torch slice would be) gathers correctly on the way out
    view = nd.NDArray._wrap(x.data_ptr + 4, (4, 3), "float32", (6, 2), x, False, (2, 0))
    assert np.array_equal(view.numpy(), base[:, 1::2])
    reverse = nd.NDArray._wrap(x.data_ptr + 18 * 4, (4,), "float32", (-6,), x, False, (2, 0))
    assert np.array_equal(reverse.numpy(), base[::-1, 0])
    with pytest.raises(UnsupportedOpError, match="strided CUDA view"):
        view.copyfrom(np.zeros((4, 3), np.float32))
    same = nd.empty((4, 3), "float32", device="cuda").copyfrom(view)  # through the host
    assert np.array_equal(same.numpy(), base[:, 1::2])
    with pytest.raises(BufferError, match=r"cannot export a cuda:0 array to DLPack device"):
        x.__dlpack__(dl_device=(1, 0))


def test_fake_dlpack_streams(fake):
    x = nd.array(random_array((8,), "float32"), device="cuda")
    for stream in (None, -1, 1):
        x.__dlpack__(stream=stream)
    assert "cuStreamWaitEvent" not in names(fake)
    x.__dlpack__(stream=0x7777)  # the consumer's stream waits for our default-stream work
    waits = [args for name, args in fake.calls if name == "cuStreamWaitEvent"]
    assert len(waits) == 1 and waits[0][0] == 0x7777
    assert ("cuEventRecord", (waits[0][1], 0)) in fake.calls
    x.__dlpack__(stream=0)
    assert names(fake)[-1] == "cuCtxSynchronize"
    with pytest.raises(BufferError, match="stream must be"):
        x.__dlpack__(stream="default")
    copied = nd.from_dlpack(x.__dlpack__(copy=True))
    assert copied.data_ptr != x.data_ptr and np.array_equal(copied.numpy(), x.numpy())


def test_fake_dlpack_import_asks_for_legacy_stream(fake):
    x = nd.array(random_array((5,), "int32"), device="cuda")
    asked = {}

    class Producer:
        def __dlpack_device__(self):
            return (2, 0)

        def __dlpack__(self, **kwargs):
            asked.update(kwargs)
            return x.__dlpack__(**kwargs)

    y = nd.from_dlpack(Producer())
    assert asked["stream"] == 1 and y.data_ptr == x.data_ptr

    class OtherDevice(Producer):
        def __dlpack_device__(self):
            return (2, 3)

    with pytest.raises(UnsupportedOpError, match="CUDA device 3, but tensorlang uses device 0"):
        nd.from_dlpack(OtherDevice())
    with pytest.raises(UserError, match="tensorlang uses CUDA device 0"):
        nd.empty((2,), device="cuda:1")


def test_fake_memset_and_copies(fake):
    x = nd.array(random_array((64,), "float32"), device="cuda")
    cuda.memset_d8(x.data_ptr, 0, x.nbytes)
    assert np.all(x.numpy() == 0)
    cuda.memset_d32(x.data_ptr, np.float32(1.5).view(np.uint32), 64)
    assert np.all(x.numpy() == 1.5)
    y = nd.empty((64,), "float32", device="cuda")
    cuda.memcpy_dtod(y.data_ptr, x.data_ptr, x.nbytes, stream=cuda.Stream())
    assert np.all(y.numpy() == 1.5)


def test_fake_launch_packs_arguments(fake):
    module = cuda.load_module(b"cubin")
    kernel = module.function("axpb")
    assert module.function("axpb") is kernel and kernel.num_registers == 32
    n = 1000
    x = nd.array(random_array((n,), "float32"), device="cuda")
    y = nd.empty((n,), "float32", device="cuda")
    kernel.launch(((n + 255) // 256,), (256,), [(y.data_ptr, "ptr"), (x.data_ptr, "ptr"),
                                                (2.5, "float32"), (-1.0, "float32"),
                                                (np.int64(n), "int32")])
    np.testing.assert_allclose(y.numpy(), np.float32(2.5) * x.numpy() - 1, rtol=1e-6)
    assert launches(fake) == [("axpb", (4, 1, 1), (256, 1, 1), 0, 0)]
    stream = cuda.Stream()
    kernel.launch([4], [256], [(y.data_ptr, "ptr"), (x.data_ptr, "ptr"), (1.0, "float32"),
                               (0.0, "float32"), (n, "int32")], stream=stream)  # lists work too
    assert launches(fake)[-1] == ("axpb", (4, 1, 1), (256, 1, 1), 0, stream.handle)
    assert np.array_equal(y.numpy(), x.numpy())
    fake.fail["cuLaunchKernel"] = _Result.CUDA_ERROR_INVALID_VALUE
    with pytest.raises(CudaError, match=r"cuLaunchKernel \(axpb<<<\(4, 1, 1\), \(256, 1, 1\), "
                                        r"0>>>\) failed: CUDA_ERROR_INVALID_VALUE"):
        kernel.launch(4, 256, [(y.data_ptr, "ptr"), (x.data_ptr, "ptr"), (1.0, "float32"),
                               (0.0, "float32"), (n, "int32")])
    with pytest.raises(UserError, match="kernel 'nope' is not in this CUDA module"):
        module.function("nope")
    with pytest.raises(UserError, match="argument 1 has kind 'float16'"):
        kernel.launch(1, 1, [(0, "ptr"), (1.0, "float16")])


def test_fake_launch_limits(fake):
    kernel = cuda.load_module(b"cubin").function("axpb")
    with pytest.raises(UserError, match=r"cannot launch kernel axpb.*1024 threads per block "
                                        r"exceed the kernel's limit of 768"):
        kernel.launch((1, 1, 1), (32, 32, 1), [])
    with pytest.raises(UserError, match=r"grid.y=70000 is outside 1..65535"):
        kernel.launch((1, 70000, 1), (32, 1, 1), [])
    with pytest.raises(UserError, match=r"block.z=0 is outside 1..64"):
        kernel.launch((1, 1, 1), (32, 1, 0), [])
    with pytest.raises(UserError, match="grid must have 1 to 3 dimensions"):
        kernel.launch((1, 1, 1, 1), (32,), [])
    with pytest.raises(UserError, match=r"65536 bytes of dynamic shared memory exceed 48128 "
                                        r"\(call set_max_dynamic_shared"):
        kernel.launch(1, 32, [], shared_bytes=65536)
    kernel.set_max_dynamic_shared(65536)
    assert [short_name(a[1]) for name, a in fake.calls if name == "cuFuncSetAttribute"] == [
        "MAX_DYNAMIC_SHARED_SIZE_BYTES"]
    with pytest.raises(UserError, match="exceed the device limit of 231424 bytes"):
        kernel.set_max_dynamic_shared(232448)
    assert "cuLaunchKernel" not in names(fake)  # nothing reached the driver


def test_fake_driver_errors_name_the_kernel(fake):
    kernel = cuda.load_module(b"cubin").function("axpb")
    x = nd.array(np.ones(4, np.float32), device="cuda")
    kernel.launch(1, 4, [(x.data_ptr, "ptr"), (x.data_ptr, "ptr"), (1.0, "float32"),
                         (0.0, "float32"), (4, "int32")], stream=cuda.Stream())
    fake.fail["cuCtxSynchronize"] = _Result.CUDA_ERROR_ILLEGAL_ADDRESS
    with pytest.raises(CudaError, match=r"cuCtxSynchronize \(last kernel launched: axpb<<<"
                                        r"\(1, 1, 1\), \(4, 1, 1\), 0>>>\) failed: "
                                        r"CUDA_ERROR_ILLEGAL_ADDRESS"):
        cuda.synchronize()
    fake.fail["cuModuleLoadData"] = _Result.CUDA_ERROR_NO_BINARY_FOR_GPU
    with pytest.raises(CudaError, match=r"CUDA_ERROR_NO_BINARY_FOR_GPU.*Fake H200 \(sm_90"):
        cuda.load_module(b"cubin for sm_80")


def test_fake_streams_and_events(fake):
    stream = cuda.Stream()
    assert cuda.stream_handle(stream) == stream.handle and stream.__cuda_stream__()[1] > 0
    assert cuda.stream_handle(None) == 0 and cuda.stream_handle(5) == 5
    with pytest.raises(UserError, match="expected a CUDA stream"):
        cuda.stream_handle("fast")
    start, end = cuda.Event(), cuda.Event()
    start.record(stream)
    end.record(stream).synchronize()
    assert end.query() and cuda.Event.elapsed_ms(start, end) == 0.25
    stream.wait_event(start)
    stream.synchronize()
    del stream
    assert "cuStreamDestroy" in names(fake)


@pytest.mark.skipif(REAL_DRIVER is None, reason="cuda-python not installed")
@pytest.mark.parametrize("device, failure, reason", [
    (None, None, ""),
    ("5", None, "TENSORLANG_CUDA_DEVICE=5 but there are 1 device"),
    ("abc", None, "TENSORLANG_CUDA_DEVICE must be a device number, got 'abc'"),
    (None, ("cuInit", _Result.CUDA_ERROR_INVALID_VALUE), "cuInit failed with CUDA_ERROR_INVALID"),
    (None, ("cuDevicePrimaryCtxRetain", _Result.CUDA_ERROR_OUT_OF_MEMORY),
     "cannot open CUDA device 0: CUDA_ERROR_OUT_OF_MEMORY"),
])
def test_fake_initialisation(fake, monkeypatch, device, failure, reason):
    bindings = importlib.import_module("cuda.bindings")  # (a plain import would rebind `cuda`)
    monkeypatch.setattr(bindings, "driver", fake)
    monkeypatch.setattr(cuda, "_probed", False)
    monkeypatch.setattr(cuda, "_driver", None)
    if device is None:
        monkeypatch.delenv("TENSORLANG_CUDA_DEVICE", raising=False)
    else:
        monkeypatch.setenv("TENSORLANG_CUDA_DEVICE", device)
    if failure:
        fake.fail[failure[0]] = failure[1]
    assert cuda.available() == (reason == "")
    assert reason in cuda.unavailable_reason()
    if not reason:
        assert cuda.device_id() == 0 and ("cuCtxSetCurrent", (0xC0,)) in fake.calls
        assert ("cuDevicePrimaryCtxRetain", (0,)) in fake.calls


def test_fake_forked_child_is_told_to_spawn(fake):
    x = nd.empty((4,), device="cuda")
    cuda._after_fork_in_child()  # what os.fork runs in the child
    assert not cuda.available() and "spawn" in cuda.unavailable_reason()
    with pytest.raises(CudaUnavailableError, match="spawn"):
        nd.empty((2,), device="cuda")
    address = x.data_ptr
    del x  # a child leaves its parent's memory alone
    assert address in fake.memory


def test_fake_objects_are_released_by_their_own_driver(fake):
    x = nd.empty((4,), device="cuda")
    stream = cuda.Stream()
    cuda._driver = None  # as if the fake were gone (the fixture restores the real state)
    del x, stream
    assert "cuMemFree" in names(fake) and "cuStreamDestroy" in names(fake)


# --- on a real GPU -------------------------------------------------------------------------------

AXPB_SOURCE = r"""
extern "C" __global__ void axpb(float* __restrict__ y, const float* __restrict__ x,
                                float a, float b, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + b;
}

extern "C" __global__ void fill_f64(double* y, double value, long long n) {
  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = value + (double)i;
}

extern "C" __global__ void reverse_in_shared(float* y, const float* x, int n) {
  extern __shared__ float tile[];  // n floats of dynamic shared memory, one block
  for (int i = threadIdx.x; i < n; i += blockDim.x) tile[i] = x[i];
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = tile[n - 1 - i];
}

extern "C" __global__ void write_null(float* y) { y[threadIdx.x] = 1.0f; }
"""


def compile_cubin(source, arch):
    """NVRTC to a cubin for ``arch`` (a small helper of the test's own)."""
    from cuda.bindings import nvrtc

    def check(result):
        assert result[0] == nvrtc.nvrtcResult.NVRTC_SUCCESS, result[0]
        return result[1] if len(result) > 1 else None

    program = check(nvrtc.nvrtcCreateProgram(source.encode(), b"test.cu", 0, [], []))
    options = [f"--gpu-architecture={arch}".encode()]
    if nvrtc.nvrtcCompileProgram(program, len(options), options)[0] != \
            nvrtc.nvrtcResult.NVRTC_SUCCESS:
        log = b" " * check(nvrtc.nvrtcGetProgramLogSize(program))
        nvrtc.nvrtcGetProgramLog(program, log)
        raise AssertionError(log.decode())
    cubin = b" " * check(nvrtc.nvrtcGetCUBINSize(program))
    check(nvrtc.nvrtcGetCUBIN(program, cubin))
    nvrtc.nvrtcDestroyProgram(program)
    return cubin


@pytest.fixture(scope="module")
def kernels():
    return cuda.load_module(compile_cubin(AXPB_SOURCE, cuda.device_properties().arch))


@needs_gpu
def test_gpu_device_properties():
    props = cuda.device_properties()
    assert props.name and props.arch == "sm_%d%d" % props.compute_capability
    assert props.compute_capability >= (7, 0) and props.warp_size == 32
    assert props.max_threads_per_block >= 1024 and props.multiprocessors > 0
    assert props.max_shared_per_block_optin >= props.max_shared_per_block >= 48 * 1024
    assert props.total_memory > 2**30 and props.l2_bytes > 0
    free, total = cuda.mem_get_info()
    assert 0 < free <= total


@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "int32"])
def test_gpu_round_trip(dtype):
    values = random_array((33, 65), dtype)
    x = nd.array(values, device="cuda")
    assert x.device == "cuda:0" and isinstance(x.data_ptr, int) and x.data_ptr != 0
    assert np.array_equal(x.numpy(), values) and "cuda:0" in repr(x)
    y = nd.empty((33, 65), dtype, device="cuda").copyfrom(x)  # device to device
    assert y.data_ptr != x.data_ptr and np.array_equal(y.numpy(), values)
    with pytest.raises(ShapeError, match="expected"):
        y.copyfrom(values[:, :64])


@needs_gpu
def test_gpu_memset_and_dtod():
    x = nd.array(random_array((1000,), "float32"), device="cuda")
    cuda.memset_d32(x.data_ptr, int(np.float32(2.5).view(np.uint32)), 1000)
    assert np.all(x.numpy() == 2.5)
    cuda.memset_d8(x.data_ptr, 0, 400)
    out = x.numpy()
    assert np.all(out[:100] == 0) and np.all(out[100:] == 2.5)
    y = nd.empty((1000,), "float32", device="cuda")
    cuda.memcpy_dtod(y.data_ptr, x.data_ptr, x.nbytes)
    assert np.array_equal(y.numpy(), out)


@needs_gpu
def test_gpu_kernel_launch(kernels):
    n = (1 << 20) + 123  # not a multiple of the block: the bounds check matters
    x = nd.array(random_array((n,), "float32"), device="cuda")
    y = nd.empty((n,), "float32", device="cuda")
    kernels.function("axpb").launch(((n + 255) // 256, 1, 1), (256, 1, 1),
                                    [(y.data_ptr, "ptr"), (x.data_ptr, "ptr"),
                                     (2.5, "float32"), (-1.25, "float32"), (n, "int32")])
    cuda.synchronize()
    np.testing.assert_allclose(y.numpy(), np.float32(2.5) * x.numpy() - np.float32(1.25),
                               rtol=1e-6, atol=1e-6)
    z = nd.empty((5000,), "float64", device="cuda")
    kernels.function("fill_f64").launch((20, 1, 1), (256, 1, 1),
                                        [(z.data_ptr, "ptr"), (0.5, "float64"), (5000, "int64")])
    assert np.array_equal(z.numpy(), 0.5 + np.arange(5000.0))


@needs_gpu
def test_gpu_dynamic_shared_memory(kernels):
    n = 20000  # 80000 bytes: past the 48 KiB default, so it needs the opt-in
    kernel = kernels.function("reverse_in_shared")
    x = nd.array(random_array((n,), "float32"), device="cuda")
    y = nd.empty((n,), "float32", device="cuda")
    args = [(y.data_ptr, "ptr"), (x.data_ptr, "ptr"), (n, "int32")]
    with pytest.raises(UserError, match="set_max_dynamic_shared"):
        kernel.launch(1, 256, args, shared_bytes=4 * n)
    kernel.set_max_dynamic_shared(4 * n)
    kernel.launch(1, 256, args, shared_bytes=4 * n)
    assert np.array_equal(y.numpy(), x.numpy()[::-1])


@needs_gpu
def test_gpu_launch_config_refused(kernels):
    kernel = kernels.function("axpb")
    with pytest.raises(UserError, match="threads per block exceed"):
        kernel.launch((1, 1, 1), (2048, 1, 1), [])
    with pytest.raises(UserError, match=r"grid.y=70000 is outside 1..65535"):
        kernel.launch((1, 70000, 1), (32, 1, 1), [])


@needs_gpu
def test_gpu_events_and_streams(kernels):
    n = 1 << 22
    x = nd.array(random_array((n,), "float32"), device="cuda")
    y = nd.empty((n,), "float32", device="cuda")
    args = [(y.data_ptr, "ptr"), (x.data_ptr, "ptr"), (3.0, "float32"), (1.0, "float32"),
            (n, "int32")]
    stream = cuda.Stream()
    start, end = cuda.Event(), cuda.Event()
    start.record(stream)
    for _ in range(10):
        kernels.function("axpb").launch((n // 256, 1, 1), (256, 1, 1), args, stream=stream)
    end.record(stream)
    end.synchronize()
    assert end.query() and cuda.Event.elapsed_ms(start, end) > 0
    z = nd.empty((n,), "float32", device="cuda")
    cuda.memcpy_dtod(z.data_ptr, y.data_ptr, y.nbytes, stream=stream)
    stream.synchronize()
    np.testing.assert_allclose(z.numpy(), np.float32(3) * x.numpy() + 1, rtol=1e-6, atol=1e-6)


@needs_gpu
def test_gpu_fault_is_reported_with_the_kernel_name():
    # A fault breaks the context for good, so it happens in a child process.
    script = textwrap.dedent("""
        import sys
        from test_cuda_runtime import AXPB_SOURCE, compile_cubin
        from tensorlang.runtime import cuda
        from tensorlang.errors import CudaError
        module = cuda.load_module(compile_cubin(AXPB_SOURCE, cuda.device_properties().arch))
        module.function("write_null").launch(1, 32, [(0, "ptr")])
        try:
            cuda.synchronize()
        except CudaError as error:
            print(error)
            sys.exit(0 if "write_null" in str(error) else 2)
        sys.exit(3)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, env=CHILD_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CUDA_ERROR" in result.stdout


@needs_gpu
def test_gpu_torch_zero_copy(kernels):
    torch = pytest.importorskip("torch", reason="torch not installed")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    t = torch.randn(4, 6, device="cuda")
    x = nd.from_dlpack(t)
    assert x.device == "cuda:0" and x.data_ptr == t.data_ptr() and x.shape == (4, 6)
    assert np.array_equal(x.numpy(), t.cpu().numpy())
    t.mul_(2)  # torch writes, we see it
    assert np.array_equal(x.numpy(), t.cpu().numpy())
    x.copyfrom(np.full((4, 6), 7.0, np.float32))  # we write, torch sees it
    assert torch.all(t == 7.0)
    strided = nd.from_dlpack(t[:, 1::2])
    assert strided.strides == (6, 2) and np.array_equal(strided.numpy(),
                                                        t[:, 1::2].cpu().numpy())
    mine = nd.array(random_array((1000,), "float32"), device="cuda")
    u = torch.from_dlpack(mine)
    assert u.device.type == "cuda" and u.data_ptr() == mine.data_ptr
    u.add_(1)
    np.testing.assert_array_equal(mine.numpy(), u.cpu().numpy())
    # our kernel writes into torch memory
    v = torch.empty(1000, device="cuda")
    kernels.function("axpb").launch(4, 256, [(v.data_ptr(), "ptr"), (mine.data_ptr, "ptr"),
                                             (2.0, "float32"), (0.0, "float32"),
                                             (1000, "int32")])
    torch.cuda.synchronize()
    np.testing.assert_allclose(v.cpu().numpy(), 2 * mine.numpy(), rtol=1e-6)


@needs_gpu
def test_gpu_cupy_zero_copy():
    cupy = pytest.importorskip("cupy", reason="cupy not installed")
    c = cupy.arange(12, dtype=cupy.float32).reshape(3, 4)
    x = nd.from_dlpack(c)
    assert x.data_ptr == c.data.ptr and np.array_equal(x.numpy(), cupy.asnumpy(c))
    x.copyfrom(np.full((3, 4), -3.0, np.float32))
    assert bool((c == -3.0).all())
    mine = nd.array(random_array((7, 5), "float32"), device="cuda")
    d = cupy.from_dlpack(mine)
    assert d.data.ptr == mine.data_ptr
    d *= 3
    np.testing.assert_array_equal(mine.numpy(), cupy.asnumpy(d))
