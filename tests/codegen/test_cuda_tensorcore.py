"""Tensor cores (mma.sync m16n8k16, fp32 accumulation) without and with a GPU.

Without a GPU: the schedule's loop IR in the interpreter against NumPy, NVRTC to sm_90 / sm_80
cubins, the refusals of malformed 'tensor_core' nests, and the generated CUDA C run on the CPU
by g++ (one pthread per CUDA thread, as in test_cuda_emulated.py) with ``mma.sync`` replaced by
a C++ emulation of the PTX ISA's per-lane fragment semantics: every lane publishes its A / B
fragment registers to a per-warp scratch, a warp barrier, every lane computes its 4 outputs
from the assembled 16 x 16 A and 16 x 8 B tiles. That checks the generated fragment indexing
(loads, accumulator layout, copy-out) end to end."""
import ctypes
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import time

import numpy as np
import pytest

import tensorlang as tl
from tensorlang.errors import ScheduleError
from tensorlang.ir.buffer import Buffer
from tensorlang.ir.interpreter import run as interpret
from tensorlang.ops.gpu_tensorcore import matmul_tensorcore_cuda
from tensorlang.runtime import cuda as cuda_rt

import codegen.cuda as cc
from codegen.cuda import source as cs
from codegen.cuda.module import _LAUNCH_ORDER, _eval

RNG = np.random.default_rng(8)
SMALL = dict(block_m=32, block_n=32, block_k=16, warp_m=16, warp_n=16)
MMA_F16 = "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORLANG_CACHE_DIR", str(tmp_path / "cache"))


def _half(*shape):
    return RNG.standard_normal(shape).astype(np.float16)


def _bf16_bits(x):
    """float32 -> bfloat16 bits (round to nearest even) as uint16, and their float32 value."""
    u = x.astype(np.float32).view(np.uint32)
    bits = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return bits, (bits.astype(np.uint32) << 16).view(np.float32)


def _ref(a, b):
    return a.astype(np.float32) @ b.astype(np.float32)


# -- the loop IR --------------------------------------------------------------------------------

def test_loop_ir_matches_numpy_in_the_interpreter():
    s, args = matmul_tensorcore_cuda(32, 32, 32, **SMALL)
    func = tl.lower(s, args)
    text = str(func)
    assert 'tensor_core="m16n8k16"' in text
    a, b = _half(32, 32), _half(32, 32)
    c = np.full((32, 32), np.nan, np.float32)
    interpret(func, a, b, c)
    np.testing.assert_allclose(c, _ref(a, b), rtol=1e-5, atol=1e-4)


# -- CUDA C and NVRTC ---------------------------------------------------------------------------

nvrtc = pytest.importorskip("cuda.bindings.nvrtc",
                            reason="cuda-python (the 'cuda' extra) is needed to compile CUDA C")


@pytest.mark.parametrize("dtype,ptx", [("float16", MMA_F16),
                                       ("bfloat16", MMA_F16.replace("f16", "bf16"))])
def test_default_schedule_compiles_to_sm90_and_sm80_with_mma(dtype, ptx):
    s, args = matmul_tensorcore_cuda(1024, 1024, 1024, dtype=dtype)
    module = tl.build(s, args, target="cuda")
    source = module.get_source()
    assert ptx in source
    assert "#include" not in source  # NVRTC from the wheel has no CUDA headers
    kernel = source[source.index("tl-mma-end"):]
    assert kernel.count(f"tl_mma_m16n8k16_{'bf16' if dtype == 'bfloat16' else 'f16'}(") == 1
    # the 64 x 64 warp tile is 128 fp32 registers per lane, not a 4096-element array
    assert re.search(r"float C_local\[128\];", kernel)
    # fragments through ldmatrix from the current stage of the double-buffered tiles
    assert "tl_ldmatrix_x4(tl_fa[tl_tm], &(A_shared + ((k_outer) & 1) * 5120)[" in kernel
    assert "tl_ldmatrix_x4_trans(tl_r, &(B_shared + ((k_outer) & 1) * 4352)[" in kernel
    # 128-bit asynchronous copies into the padded, double-buffered shared tiles
    assert "tl_cp_async16((A_shared + " in kernel and "tl_cp_async16((B_shared + " in kernel
    assert "cp.async.wait_group 1" in source
    spec = module.kernels[0]
    assert spec.threads == 128 and spec.shared_bytes == 2 * 2 * (128 * 40 + 32 * 136)
    assert f"A_shared[{2 * 128 * 40}]" in kernel
    for arch in ("sm_90", "sm_80"):
        assert cc.compile_cuda(source, arch)[:4] == b"\x7fELF"


# -- malformed tensor-core nests are refused -----------------------------------------------------

def _manual(m=32, n=32, k=32, warp=16, kfactor=16, lanes=32, pragma_axis="ki", dtype="float16",
            a_scope="shared"):
    A = tl.placeholder((m, k), dtype, name="A")
    B = tl.placeholder((k, n), dtype, name="B")
    C = tl.ops.nn.matmul(A, B, out_dtype="float32", name="C")
    s = tl.create_schedule(C)
    AS = s.cache_read(A, a_scope, [C])
    BS = s.cache_read(B, "shared", [C])
    CL = s.cache_write(C, "local")
    i, j = s[C].op.axis
    wi, mi = s[C].split(i, factor=warp)
    wj, mj = s[C].split(j, factor=warp)
    s[C].reorder(wi, wj, mi, mj)
    s[C].bind(wi, tl.thread_axis("blockIdx.x"))
    s[C].bind(wj, tl.thread_axis("threadIdx.y"))
    s[CL].compute_at(s[C], wj)
    ci, cj = s[CL].op.axis
    ko, ki = s[CL].split(s[CL].op.reduce_axis[0], factor=kfactor)
    s[CL].reorder(ko, ki, ci, cj)
    s[CL].pragma({"ki": ki, "ko": ko, "ci": ci}[pragma_axis], "tensor_core", "m16n8k16")
    for st in (AS, BS):
        s[st].compute_at(s[CL], ko)
        fused = s[st].fuse(*s[st].op.axis)
        _, tx = s[st].split(fused, factor=lanes)
        s[st].bind(tx, tl.thread_axis("threadIdx.x"))
    return s, [A, B, C]


@pytest.mark.parametrize("kw,pattern", [
    (dict(kfactor=8), r"stage C\.local: loop k\.inner .*extent 8, not a multiple of 16"),
    (dict(warp=8, m=32, n=32), r"stage C\.local: .*loop i\.c has extent 8, not a multiple of 16"),
    (dict(lanes=16), r"stage C\.local: .*threadIdx\.x extent to be exactly 32 .*got 16"),
    (dict(pragma_axis="ko"), r"stage C\.local: loop k\.outer is annotated 'tensor_core' but"),
    (dict(pragma_axis="ci"), r"stage C\.local: loop i\.c(\.init)? is annotated .* 2 nested loops"),
    (dict(dtype="float32"), r"stage C\.local: .*not a float16/bfloat16 load"),
])
def test_malformed_tensor_core_nests_are_refused(kw, pattern):
    s, args = _manual(**kw)
    with pytest.raises(ScheduleError, match=pattern):
        tl.build(s, args, target="cuda")


def test_double_buffer_needs_a_tensor_core_loop():
    X = tl.placeholder((32, 64), "float16", name="X")
    Y = tl.compute((32, 64), lambda i, j: X[i, j] + X[i, j], name="Y")
    s = tl.create_schedule(Y)
    i, j = s[Y].op.axis
    s[Y].bind(i, tl.thread_axis("blockIdx.x"))
    jo, ji = s[Y].split(j, factor=32)
    s[Y].bind(ji, tl.thread_axis("threadIdx.x"))
    s[Y].pragma(jo, "double_buffer", True)
    with pytest.raises(ScheduleError, match=r"stage Y: loop j\.outer asks for 'double_buffer'"
                                            r".*only around a 'tensor_core' loop"):
        tl.build(s, [X, Y], target="cuda")


def test_bad_schedule_parameters_are_refused():
    with pytest.raises(ScheduleError, match=r"warp_n=12 must be a multiple of 8"):
        matmul_tensorcore_cuda(128, 128, 128, warp_n=12)
    with pytest.raises(ScheduleError, match=r"k=40 must be a multiple of the tile 32"):
        matmul_tensorcore_cuda(128, 128, 40)
    with pytest.raises(ScheduleError, match=r"dtype='float32'"):
        matmul_tensorcore_cuda(128, 128, 128, dtype="float32")
    with pytest.raises(ScheduleError, match=r"54272 bytes of shared memory exceed 49152"):
        matmul_tensorcore_cuda(256, 256, 256, block_n=256)  # double-buffered 128x256x32
    matmul_tensorcore_cuda(256, 256, 256, block_n=256, double_buffer=False)


# -- the generated CUDA C on the CPU, mma.sync emulated per lane ---------------------------------

_spec = importlib.util.spec_from_file_location(
    "_cuda_codegen_harness", os.path.join(os.path.dirname(__file__), "test_cuda_emulated.py"))
_harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_harness)

_MMA_EMULATION = r"""
static thread_local tl_dim3 blockDim;
static pthread_barrier_t tl_warp_barrier[32];
static unsigned tl_warp_a[1024][4], tl_warp_b[1024][2];
static float tl_emu_half(unsigned bits, bool bf16) {
  unsigned short h = (unsigned short)(bits & 0xffffu);
  if (bf16) return __uint_as_float(((unsigned)h) << 16);
  return tl_h2f(h);
}
// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}: d (this lane's 4 floats) += A * B, the
// 16x16 A and 16x8 B assembled from the fragment registers of the warp's 32 lanes
static void tl_mma_emulated(float* d, const unsigned* a, const unsigned* b, bool bf16) {
  int lin = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  int warp = lin / 32, lane = lin % 32;
  memcpy(tl_warp_a[lin], a, 16); memcpy(tl_warp_b[lin], b, 8);
  pthread_barrier_wait(&tl_warp_barrier[warp]);
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    int g = l >> 2, t = l & 3;
    const unsigned* ra = tl_warp_a[warp * 32 + l];
    const unsigned* rb = tl_warp_b[warp * 32 + l];
    for (int i = 0; i < 8; ++i) {  // a_i: row g (+8 for i in {2,3,6,7}), col 2t + i%2 (+8 for i>=4)
      int row = g + ((i >> 1) & 1) * 8, col = 2 * t + (i & 1) + (i >= 4 ? 8 : 0);
      A[row][col] = tl_emu_half(ra[i >> 1] >> (16 * (i & 1)), bf16);
    }
    for (int i = 0; i < 4; ++i) {  // b_i: row 2t + i%2 (+8 for i>=2), col g
      int row = 2 * t + (i & 1) + (i >= 2 ? 8 : 0);
      B[row][g] = tl_emu_half(rb[i >> 1] >> (16 * (i & 1)), bf16);
    }
  }
  int g = lane >> 2, t = lane & 3;
  for (int i = 0; i < 4; ++i) {  // c_i: row g (+8 for i>=2), col 2t + i%2
    int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
    float acc = d[i];
    for (int kk = 0; kk < 16; ++kk) acc += A[row][kk] * B[kk][col];
    d[i] = acc;
  }
  pthread_barrier_wait(&tl_warp_barrier[warp]);
}
// ldmatrix: every lane publishes its row address, each lane takes its elements of each matrix
static const unsigned short* tl_warp_ptr[1024];
static void tl_ldmatrix_emulated(unsigned* r, const void* p, int count, bool trans) {
  int lin = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  int warp = lin / 32, lane = lin % 32, g = lane >> 2, t = lane & 3;
  tl_warp_ptr[lin] = (const unsigned short*)p;
  pthread_barrier_wait(&tl_warp_barrier[warp]);
  for (int m = 0; m < count; ++m) {
    const unsigned short* const* rows = &tl_warp_ptr[warp * 32 + m * 8];
    unsigned lo, hi;
    if (!trans) { lo = rows[g][2 * t]; hi = rows[g][2 * t + 1]; }  // row g, cols 2t, 2t+1
    else { lo = rows[2 * t][g]; hi = rows[2 * t + 1][g]; }          // transposed
    r[m] = lo | (hi << 16);
  }
  pthread_barrier_wait(&tl_warp_barrier[warp]);
}
static inline void tl_ldmatrix_x4(unsigned* r, const void* p) {
  tl_ldmatrix_emulated(r, p, 4, false); }
static inline void tl_ldmatrix_x4_trans(unsigned* r, const void* p) {
  tl_ldmatrix_emulated(r, p, 4, true); }
static inline void tl_ldmatrix_x2_trans(unsigned* r, const void* p) {
  tl_ldmatrix_emulated(r, p, 2, true); }
// cp.async done synchronously (a valid execution: the waits and barriers order it)
static inline void tl_cp_async16(void* d, const void* s) { memcpy(d, s, 16); }
static inline void tl_cp_async8(void* d, const void* s) { memcpy(d, s, 8); }
static inline void tl_cp_async4(void* d, const void* s) { memcpy(d, s, 4); }
static inline void tl_cp_async_commit() {}
static inline void tl_cp_async_wait_1() {}
static inline void tl_mma_m16n8k16_f16(float* d, const unsigned* a, const unsigned* b) {
  tl_mma_emulated(d, a, b, false); }
static inline void tl_mma_m16n8k16_bf16(float* d, const unsigned* a, const unsigned* b) {
  tl_mma_emulated(d, a, b, true); }
"""


def _cpu_source(text):
    text = re.sub(r"// tl-mma-begin.*?// tl-mma-end\n", "", text, flags=re.S)
    assert "asm" not in text.split("tl_rbf(float f)")[1]  # only the emulated mma is left
    return _harness._cpu_source(text).replace("using std::isnan;", _MMA_EMULATION +
                                              "using std::isnan;", 1)


def _launcher(spec):
    text = _harness._launcher(spec)
    # warp barriers (32 lanes each) next to the block barrier, and blockDim for the lane id
    text = text.replace("pthread_barrier_init(&tl_barrier, 0, n);",
                        "pthread_barrier_init(&tl_barrier, 0, n);\n"
                        "    for (int w = 0; w < n / 32; ++w) "
                        "pthread_barrier_init(&tl_warp_barrier[w], 0, 32);")
    text = text.replace("pthread_barrier_destroy(&tl_barrier);",
                        "pthread_barrier_destroy(&tl_barrier);\n"
                        "    for (int w = 0; w < n / 32; ++w) "
                        "pthread_barrier_destroy(&tl_warp_barrier[w]);")
    text = text.replace("blockIdx = a->b; threadIdx = a->t;",
                        "blockIdx = a->b; threadIdx = a->t; blockDim = a->d;")
    text = text.replace("tl_dim3 b, t; };", "tl_dim3 b, t, d; };")
    text = text.replace("as[k].t = tl_dim3{(unsigned)tx, (unsigned)ty, (unsigned)tz};",
                        "as[k].t = tl_dim3{(unsigned)tx, (unsigned)ty, (unsigned)tz};\n"
                        "      as[k].d = tl_dim3{(unsigned)bx, (unsigned)by, (unsigned)bz};")
    assert text.count("blockDim") == 1 and "as[k].d" in text
    return text


def _emulate(workdir, module, *arrays):
    for spec in module.kernels:
        assert spec.threads % 32 == 0 and spec.threads <= 1024
    text = _cpu_source(module.get_source()) + "".join(_launcher(k) for k in module.kernels)
    d = tempfile.mkdtemp(dir=workdir)
    src, lib = os.path.join(d, "k.cpp"), os.path.join(d, "k.so")
    with open(src, "w") as f:
        f.write(text)
    r = subprocess.run(["g++", "-O1", "-std=c++17", "-shared", "-fPIC", "-pthread", "-w", src,
                        "-o", lib], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr[:4000])
    so = ctypes.CDLL(lib)
    data = {p.uid: a for p, a in zip(module.func.params, arrays) if isinstance(p, Buffer)}
    for spec in module.kernels:
        grid = [max(1, max([_eval(e, {}) for e in spec.launch.extents.get(t, [])] or [1]))
                for t in _LAUNCH_ORDER[0]]
        block = [max(1, max([_eval(e, {}) for e in spec.launch.extents.get(t, [])] or [1]))
                 for t in _LAUNCH_ORDER[1]]
        ptrs = (ctypes.c_void_p * len(spec.params))()
        scal = (ctypes.c_longlong * len(spec.params))()
        for k, p in enumerate(spec.params):
            ptrs[k] = data[p.uid].ctypes.data
        getattr(so, "launch_" + spec.name)(ptrs, scal, *grid, *block)


needs_gxx = pytest.mark.skipif(shutil.which("g++") is None,
                               reason="needs g++ to run CUDA C on the CPU")


@needs_gxx
@pytest.mark.parametrize("shape,kw", [
    ((64, 32, 48), SMALL),                                     # 2 x 1 blocks, 3 k-steps
    ((64, 32, 48), dict(SMALL, double_buffer=False)),
    ((32, 64, 64), dict(block_m=32, block_n=64, block_k=32, warp_m=32, warp_n=16)),
    ((64, 64, 64), dict(block_m=64, block_n=32, block_k=32, warp_m=16, warp_n=32)),
    ((32, 48, 32), dict(block_m=32, block_n=48, block_k=16, warp_m=16, warp_n=24)),  # odd tiles
])
@pytest.mark.parametrize("ldmatrix", [True, False])
def test_generated_mma_code_matches_numpy_with_emulated_mma_sync(shape, kw, ldmatrix, tmp_path):
    """Fragments through ldmatrix (x4, x4.trans, x2.trans) or per-lane shared loads."""
    m, n, k = shape
    s, args = matmul_tensorcore_cuda(m, n, k, ldmatrix=ldmatrix, **kw)
    module = tl.build(s, args, target="cuda")
    a, b = _half(m, k), _half(k, n)
    c = np.full((m, n), np.nan, np.float32)
    _emulate(tmp_path, module, a, b, c)
    np.testing.assert_allclose(c, _ref(a, b), rtol=1e-4, atol=1e-3)


@needs_gxx
def test_bfloat16_mma_code_matches_numpy_with_emulated_mma_sync(tmp_path):
    s, args = matmul_tensorcore_cuda(32, 32, 32, dtype="bfloat16", **SMALL)
    module = tl.build(s, args, target="cuda")
    a_bits, a = _bf16_bits(RNG.standard_normal((32, 32)))
    b_bits, b = _bf16_bits(RNG.standard_normal((32, 32)))
    c = np.full((32, 32), np.nan, np.float32)
    _emulate(tmp_path, module, a_bits, b_bits, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-3)


@needs_gxx
@pytest.mark.parametrize("ldmatrix,old,new", [
    (False, "(tl_q << 3)", "((1 - tl_q) << 3)"),
    (True, "tl_fb[tl_tn2 * 2][1] = tl_r[1];", "tl_fb[tl_tn2 * 2][1] = tl_r[2];"),
    (True, "(((int)threadIdx.x >> 4) << 3)", "(((int)threadIdx.x >> 3 & 1) << 3)"),
])
def test_emulated_mma_catches_a_wrong_fragment_layout(ldmatrix, old, new, tmp_path):
    """The emulation is strict: a kernel whose fragments are assembled wrongly gives wrong
    values (so the passing tests above really check the generated indexing)."""
    s, args = matmul_tensorcore_cuda(32, 32, 32, ldmatrix=ldmatrix, **SMALL)
    module = tl.build(s, args, target="cuda")
    source = module.get_source()
    broken = source.replace(old, new)
    assert broken != source
    module._source.text = broken
    a, b = _half(32, 32), _half(32, 32)
    c = np.full((32, 32), np.nan, np.float32)
    _emulate(tmp_path, module, a, b, c)
    assert not np.allclose(c, _ref(a, b), rtol=1e-2, atol=1e-2)


# -- on the card --------------------------------------------------------------------------------

gpu = pytest.mark.skipif(not cuda_rt.available(),
                         reason=f"no CUDA GPU/driver: {cuda_rt.unavailable_reason()}")


@gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_tensor_core_matmul_matches_numpy_on_the_gpu(dtype):
    props = cuda_rt.device_properties()
    if tuple(props.compute_capability) < (8, 0):
        pytest.skip(f"mma.sync m16n8k16 needs sm_80+, the device is {props.arch}")
    torch = pytest.importorskip("torch", reason="PyTorch holds the bfloat16 test data")
    m, n, k = 512, 256, 384
    s, args = matmul_tensorcore_cuda(m, n, k, dtype=dtype)
    module = tl.build(s, args, target="cuda")
    tdt = torch.float16 if dtype == "float16" else torch.bfloat16
    a = torch.randn(m, k, device="cuda").to(tdt)
    b = torch.randn(k, n, device="cuda").to(tdt)
    c = torch.full((m, n), float("nan"), device="cuda")
    module(a, b, c)
    torch.cuda.synchronize()
    want = a.float().cpu().numpy() @ b.float().cpu().numpy()
    got = c.cpu().numpy()
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < 1e-2, f"max error {err} relative to max |C|"


@gpu
def test_tensor_core_matmul_8192_against_torch():
    """Correct at 8192^3 and timed against torch.matmul (cuBLAS) in fp16."""
    torch = pytest.importorskip("torch", reason="PyTorch gives the cuBLAS baseline")
    props = cuda_rt.device_properties()
    if tuple(props.compute_capability) < (8, 0):
        pytest.skip(f"mma.sync m16n8k16 needs sm_80+, the device is {props.arch}")
    size = 8192
    s, args = matmul_tensorcore_cuda(size, size, size)
    module = tl.build(s, args, target="cuda")
    a = torch.randn(size, size, device="cuda", dtype=torch.float16)
    b = torch.randn(size, size, device="cuda", dtype=torch.float16)
    c = torch.empty(size, size, device="cuda", dtype=torch.float32)
    module(a, b, c)
    want = torch.matmul(a.float(), b.float())
    err = ((c - want).abs().max() / want.abs().max()).item()
    assert err < 1e-2
    ours = module.time_evaluator(number=5, repeat=3)(a, b, c).mean
    torch.matmul(a, b)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        torch.matmul(a, b)
    torch.cuda.synchronize()
    theirs = (time.perf_counter() - start) / 10
    flops = 2.0 * size ** 3
    print(f"\ntensor cores {flops / ours / 1e12:.1f} TFLOP/s, torch fp16 "
          f"{flops / theirs / 1e12:.1f} TFLOP/s ({theirs / ours:.2f}x)")
    assert ours > 0 and theirs > 0
