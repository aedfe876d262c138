"""Smoke test of the CUDA runtime on a real GPU: run it first on a new machine.

Exercises every runtime path once (device properties, CUDA arrays and copies, memset, NVRTC
kernels launched with each argument kind, dynamic shared memory, launch checks, streams, events,
fault reporting, DLPack with PyTorch and CuPy), prints what it does, and exits non-zero if any
step fails. Takes a few seconds.

    python benchmarks/gpu_smoke.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tensorlang as tl  # noqa: E402
from tensorlang import nd  # noqa: E402
from tensorlang.errors import UserError  # noqa: E402
from tensorlang.runtime import cuda  # noqa: E402

SOURCE = r"""
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
  extern __shared__ float tile[];
  for (int i = threadIdx.x; i < n; i += blockDim.x) tile[i] = x[i];
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = tile[n - 1 - i];
}
extern "C" __global__ void write_null(float* y) { y[threadIdx.x] = 1.0f; }
"""

RESULTS: list[tuple[str, bool, str]] = []
STATE: dict = {}


def step(name):
    def run(function):
        start = time.perf_counter()
        try:
            note = function() or ""
            RESULTS.append((name, True, note))
            print(f"[ ok ] {name} ({time.perf_counter() - start:.2f}s) {note}", flush=True)
        except Exception as exc:  # report and go on: one run should show every failure
            RESULTS.append((name, False, f"{type(exc).__name__}: {exc}"))
            print(f"[FAIL] {name}: {type(exc).__name__}: {exc}", flush=True)
            traceback.print_exc()
        return function
    return run


def random(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "iu":
        return rng.integers(-1000, 1000, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def compile_cubin(source: str, arch: str) -> bytes:
    from cuda.bindings import nvrtc

    def check(result):
        if result[0] != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise RuntimeError(f"NVRTC: {result[0]}")
        return result[1] if len(result) > 1 else None

    program = check(nvrtc.nvrtcCreateProgram(source.encode(), b"smoke.cu", 0, [], []))
    options = [f"--gpu-architecture={arch}".encode()]
    if nvrtc.nvrtcCompileProgram(program, 1, options)[0] != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        log = b" " * check(nvrtc.nvrtcGetProgramLogSize(program))
        nvrtc.nvrtcGetProgramLog(program, log)
        raise RuntimeError(log.decode())
    cubin = b" " * check(nvrtc.nvrtcGetCUBINSize(program))
    check(nvrtc.nvrtcGetCUBIN(program, cubin))
    nvrtc.nvrtcDestroyProgram(program)
    return cubin


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


@step("import tensorlang without cuda-python")
def _():
    code = ("import sys, tensorlang; "
            "sys.exit(any(m.startswith('cuda.bindings') for m in sys.modules))")
    expect(subprocess.run([sys.executable, "-c", code]).returncode == 0,
           "import tensorlang imported cuda.bindings")


@step("CUDA available")
def _():
    expect(cuda.available(), f"unavailable: {cuda.unavailable_reason()}")


if not cuda.available():
    print("no usable CUDA here:", cuda.unavailable_reason())
    sys.exit(1)


@step("device properties")
def _():
    props = cuda.device_properties()
    STATE["props"] = props
    from cuda.bindings import nvrtc
    for field, value in vars(props).items():
        print(f"       {field:32s} {value}")
    print(f"       nvrtc {nvrtc.nvrtcVersion()[1:]}, cuda-python "
          f"{__import__('cuda.bindings').bindings.__version__}, memory free/total "
          f"{cuda.mem_get_info()}")
    expect(props.arch.startswith("sm_") and props.warp_size == 32, "odd properties")


@step("round trip float32 / float16 / int32 / bfloat16")
def _():
    for dtype in ("float32", "float16", "int32", "bfloat16"):
        values = random((33, 65), "float32", 1).astype(tl.runtime.np_dtype(dtype))
        x = nd.array(values, device="cuda")
        expect(x.device == "cuda:0" and x.data_ptr != 0, f"{dtype}: {x!r}")
        back = x.numpy()
        expect(np.array_equal(back.view(np.uint8), values.view(np.uint8)), f"{dtype} differs")
        y = nd.empty(x.shape, dtype, device="cuda").copyfrom(x)
        expect(np.array_equal(y.numpy().view(np.uint8), values.view(np.uint8)),
               f"{dtype} device-to-device differs")
    print("      ", repr(nd.array(np.arange(4, dtype=np.float32), device="cuda")).replace(
        "\n", " "))


@step("copyfrom errors name both sides")
def _():
    x = nd.empty((4, 6), "float32", device="cuda")
    try:
        x.copyfrom(np.zeros((6, 4), np.float32))
    except UserError as error:
        expect("(4, 6)" in str(error) and "(6, 4)" in str(error), str(error))
    else:
        raise AssertionError("a shape mismatch was accepted")


@step("memset and device-to-device copy")
def _():
    x = nd.array(random((1000,), "float32"), device="cuda")
    cuda.memset_d32(x.data_ptr, int(np.float32(2.5).view(np.uint32)), 1000)
    cuda.memset_d8(x.data_ptr, 0, 400)
    out = x.numpy()
    expect(np.all(out[:100] == 0) and np.all(out[100:] == 2.5), "memset wrong")
    y = nd.empty((1000,), "float32", device="cuda")
    cuda.memcpy_dtod(y.data_ptr, x.data_ptr, x.nbytes)
    expect(np.array_equal(y.numpy(), out), "dtod wrong")


@step("NVRTC compile and load")
def _():
    start = time.perf_counter()
    cubin = compile_cubin(SOURCE, STATE["props"].arch)
    STATE["module"] = cuda.load_module(cubin)
    axpb = STATE["module"].function("axpb")
    return (f"{len(cubin)} bytes in {time.perf_counter() - start:.2f}s; axpb: "
            f"{axpb.num_registers} registers, max {axpb.max_threads_per_block} threads")


@step("launch axpb over 1M+123 elements (ptr, float32, int32 arguments)")
def _():
    n = (1 << 20) + 123
    x = nd.array(random((n,), "float32"), device="cuda")
    y = nd.empty((n,), "float32", device="cuda")
    STATE["module"].function("axpb").launch(
        ((n + 255) // 256, 1, 1), (256, 1, 1),
        [(y.data_ptr, "ptr"), (x.data_ptr, "ptr"), (2.5, "float32"), (-1.25, "float32"),
         (n, "int32")])
    cuda.synchronize()
    np.testing.assert_allclose(y.numpy(), np.float32(2.5) * x.numpy() - np.float32(1.25),
                               rtol=1e-6, atol=1e-6)


@step("launch fill_f64 (float64, int64 arguments)")
def _():
    z = nd.empty((5000,), "float64", device="cuda")
    STATE["module"].function("fill_f64").launch(
        (20, 1, 1), (256, 1, 1), [(z.data_ptr, "ptr"), (0.5, "float64"), (5000, "int64")])
    expect(np.array_equal(z.numpy(), 0.5 + np.arange(5000.0)), "fill_f64 wrong")


@step("dynamic shared memory over 48 KiB with opt-in")
def _():
    n = 20000
    kernel = STATE["module"].function("reverse_in_shared")
    x = nd.array(random((n,), "float32"), device="cuda")
    y = nd.empty((n,), "float32", device="cuda")
    args = [(y.data_ptr, "ptr"), (x.data_ptr, "ptr"), (n, "int32")]
    try:
        kernel.launch(1, 256, args, shared_bytes=4 * n)
        raise AssertionError("80000 bytes of shared memory launched without opt-in")
    except UserError as error:
        print("       refused as expected:", error)
    kernel.set_max_dynamic_shared(4 * n)
    kernel.launch(1, 256, args, shared_bytes=4 * n)
    expect(np.array_equal(y.numpy(), x.numpy()[::-1]), "reverse wrong")


@step("out-of-range launch configurations are refused")
def _():
    kernel = STATE["module"].function("axpb")
    for grid, block in (((1, 1, 1), (2048, 1, 1)), ((1, 70000, 1), (32, 1, 1))):
        try:
            kernel.launch(grid, block, [])
            raise AssertionError(f"grid {grid} block {block} was launched")
        except UserError as error:
            print("       refused:", error)


@step("stream, events and timing")
def _():
    n = 1 << 24
    x = nd.array(random((n,), "float32"), device="cuda")
    y = nd.empty((n,), "float32", device="cuda")
    args = [(y.data_ptr, "ptr"), (x.data_ptr, "ptr"), (3.0, "float32"), (1.0, "float32"),
            (n, "int32")]
    stream = cuda.Stream()
    kernel = STATE["module"].function("axpb")
    kernel.launch((n // 256, 1, 1), (256, 1, 1), args, stream=stream)  # warm-up
    start, end = cuda.Event(), cuda.Event()
    start.record(stream)
    for _ in range(20):
        kernel.launch((n // 256, 1, 1), (256, 1, 1), args, stream=stream)
    end.record(stream)
    end.synchronize()
    ms = cuda.Event.elapsed_ms(start, end) / 20
    expect(ms > 0 and end.query(), "no elapsed time")
    z = nd.empty((n,), "float32", device="cuda")
    cuda.memcpy_dtod(z.data_ptr, y.data_ptr, y.nbytes, stream=stream)
    stream.synchronize()
    np.testing.assert_allclose(z.numpy(), np.float32(3) * x.numpy() + 1, rtol=1e-6, atol=1e-6)
    return f"axpb over 16M floats: {ms * 1000:.1f} us, {2 * 4 * n / ms / 1e6:.0f} GB/s"


@step("a kernel fault is reported with the kernel name (child process)")
def _():
    cubin_hex = compile_cubin(SOURCE, STATE["props"].arch).hex()
    child = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')!r})
        from tensorlang.runtime import cuda
        from tensorlang.errors import CudaError
        module = cuda.load_module(bytes.fromhex({cubin_hex!r}))
        module.function("write_null").launch(1, 32, [(0, "ptr")])
        try:
            cuda.synchronize()
        except CudaError as error:
            print(error)
            sys.exit(0 if "write_null" in str(error) else 2)
        sys.exit(3)
    """)
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                            timeout=120)
    expect(result.returncode == 0, f"rc={result.returncode}: {result.stdout}{result.stderr}")
    return result.stdout.strip()


@step("DLPack with PyTorch, both ways, zero-copy")
def _():
    try:
        import torch
    except ImportError:
        return "SKIPPED: torch not installed"
    if not torch.cuda.is_available():
        return "SKIPPED: torch has no CUDA"
    t = torch.randn(4, 6, device="cuda")
    x = nd.from_dlpack(t)
    expect(x.data_ptr == t.data_ptr() and x.device == "cuda:0", "not zero-copy")
    t.mul_(2)
    expect(np.array_equal(x.numpy(), t.cpu().numpy()), "torch write not seen")
    x.copyfrom(np.full((4, 6), 7.0, np.float32))
    expect(bool(torch.all(t == 7.0)), "our write not seen by torch")
    s = nd.from_dlpack(t[:, 1::2])
    expect(s.strides == (6, 2) and np.array_equal(s.numpy(), t[:, 1::2].cpu().numpy()),
           "strided import wrong")
    mine = nd.array(random((1000,), "float32"), device="cuda")
    u = torch.from_dlpack(mine)
    expect(u.data_ptr() == mine.data_ptr, "export not zero-copy")
    u.add_(1)
    expect(np.array_equal(mine.numpy(), u.cpu().numpy()), "torch write to our array not seen")
    v = torch.empty(1000, device="cuda")
    STATE["module"].function("axpb").launch(4, 256, [(v.data_ptr(), "ptr"),
                                                     (mine.data_ptr, "ptr"), (2.0, "float32"),
                                                     (0.0, "float32"), (1000, "int32")])
    torch.cuda.synchronize()
    np.testing.assert_allclose(v.cpu().numpy(), 2 * mine.numpy(), rtol=1e-6)
    before = mine.numpy()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):  # torch passes its side stream's handle to __dlpack__
        w = torch.from_dlpack(mine)
        w.mul_(0.5)
    side.synchronize()
    expect(np.array_equal(mine.numpy(), before * np.float32(0.5)), "side-stream write lost")
    return f"torch {torch.__version__}"


@step("DLPack with CuPy, both ways, zero-copy")
def _():
    try:
        import cupy
    except ImportError:
        return "SKIPPED: cupy not installed"
    c = cupy.arange(12, dtype=cupy.float32).reshape(3, 4)
    x = nd.from_dlpack(c)
    expect(x.data_ptr == c.data.ptr and np.array_equal(x.numpy(), cupy.asnumpy(c)),
           "import wrong")
    x.copyfrom(np.full((3, 4), -3.0, np.float32))
    expect(bool((c == -3.0).all()), "our write not seen by cupy")
    mine = nd.array(random((7, 5), "float32"), device="cuda")
    d = cupy.from_dlpack(mine)
    expect(d.data.ptr == mine.data_ptr, "export not zero-copy")
    d *= 3
    cupy.cuda.Device().synchronize()
    expect(np.array_equal(mine.numpy(), cupy.asnumpy(d)), "cupy write not seen")
    return f"cupy {cupy.__version__}"


@step("synchronize after all of it")
def _():
    cuda.synchronize()


failed = [name for name, ok, _ in RESULTS if not ok]
print(f"\n{len(RESULTS) - len(failed)}/{len(RESULTS)} steps passed"
      + (f"; FAILED: {', '.join(failed)}" if failed else ""))
sys.exit(1 if failed else 0)
