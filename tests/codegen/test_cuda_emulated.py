"""The generated CUDA C run on the CPU: g++ compiles the kernels with a few definitions standing
in for CUDA (tests/codegen/test_cuda_codegen.py covers the source and NVRTC)."""
# g++ compiles the generated kernels with a few definitions standing in for CUDA: one pthread
# per CUDA thread, a pthread barrier for __syncthreads, the blocks one after the other. Real
# concurrency between the threads of a block checks the barriers; the arithmetic checks the
# translation of every IR node the kernels use.

import ctypes
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

import tensorlang as tl
from tensorlang import expr as E
from tensorlang.ir.buffer import Buffer
from codegen.cuda import source as cs
from codegen.cuda.module import _LAUNCH_ORDER, _eval
from cuda_cases import (CASES, RNG, _inputs, _private_cache, _rand,  # noqa: F401
                        _reference, _softmax_ref, injective, row_reduce_schedule,
                        softmax_block_schedule)

_EMU_HEADER = r"""
#include <pthread.h>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <cstdint>
struct tl_dim3 { unsigned x, y, z; };
static thread_local tl_dim3 threadIdx, blockIdx;
static pthread_barrier_t tl_barrier;
#define __syncthreads() pthread_barrier_wait(&tl_barrier)
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict
#define __launch_bounds__(n)
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
static inline double __longlong_as_double(long long i) { double f; memcpy(&f, &i, 8); return f; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float tl_h2f(unsigned short h) { return (float)*(_Float16*)&h; }
static inline unsigned short tl_f2h(float f) {
  _Float16 h = (_Float16)f; unsigned short u; memcpy(&u, &h, 2); return u; }
static inline unsigned short tl_d2h(double d) {
  _Float16 h = (_Float16)d; unsigned short u; memcpy(&u, &h, 2); return u; }
using std::isnan; using std::isinf; using std::isfinite;
"""


def _cpu_source(text):
    # drop the three PTX-asm conversions of the preamble: the header above has CPU versions
    out = []
    lines = text.splitlines()
    skip = 0
    for ln in lines:
        if skip:
            skip -= 1
            continue
        if re.match(r"__device__ __forceinline__ [\w ]+ tl_(h2f|f2h|d2h)\(", ln):
            skip = 1
            continue
        out.append(ln)
    return _EMU_HEADER + "\n".join(out)


def _launcher(spec):
    args = []
    for k, p in enumerate(spec.params):
        if isinstance(p, Buffer):
            args.append(f"({cs.storage_type(p.dtype)}*)a->args[{k}]")
        else:
            args.append(f"({cs.param_type(p.dtype)})a->scalars[{k}]")
    return f"""
struct tl_arg_{spec.name} {{ void** args; long long* scalars; tl_dim3 b, t; }};
static void* tl_thread_{spec.name}(void* p) {{
  tl_arg_{spec.name}* a = (tl_arg_{spec.name}*)p;
  blockIdx = a->b; threadIdx = a->t;
  {spec.name}({", ".join(args)});
  return 0;
}}
extern "C" void launch_{spec.name}(void** args, long long* scalars,
                                  int gx, int gy, int gz, int bx, int by, int bz) {{
  int n = bx * by * bz;
  pthread_t* th = (pthread_t*)malloc(sizeof(pthread_t) * n);
  tl_arg_{spec.name}* as = (tl_arg_{spec.name}*)malloc(sizeof(tl_arg_{spec.name}) * n);
  for (int z = 0; z < gz; ++z) for (int y = 0; y < gy; ++y) for (int x = 0; x < gx; ++x) {{
    pthread_barrier_init(&tl_barrier, 0, n);
    int k = 0;
    for (int tz = 0; tz < bz; ++tz)
    for (int ty = 0; ty < by; ++ty)
    for (int tx = 0; tx < bx; ++tx) {{
      as[k].args = args; as[k].scalars = scalars;
      as[k].b = tl_dim3{{(unsigned)x, (unsigned)y, (unsigned)z}};
      as[k].t = tl_dim3{{(unsigned)tx, (unsigned)ty, (unsigned)tz}};
      pthread_attr_t attr; pthread_attr_init(&attr); pthread_attr_setstacksize(&attr, 1 << 20);
      pthread_create(&th[k], &attr, tl_thread_{spec.name}, &as[k]);
      ++k;
    }}
    for (int i = 0; i < n; ++i) pthread_join(th[i], 0);
    pthread_barrier_destroy(&tl_barrier);
  }}
  free(th); free(as);
}}
"""


def _emulate(workdir, module, *arrays):
    """Run CudaModule ``module`` on NumPy arrays (in parameter order) on the CPU."""
    text = _cpu_source(module.get_source()) + "".join(_launcher(k) for k in module.kernels)
    d = tempfile.mkdtemp(dir=workdir)  # a fresh path: dlopen would reuse a loaded library
    src, lib = os.path.join(d, "k.cpp"), os.path.join(d, "k.so")
    open(src, "w").write(text)
    r = subprocess.run(["g++", "-O1", "-std=c++17", "-shared", "-fPIC", "-pthread",
                        "-w", src, "-o", lib], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr[:4000])
    so = ctypes.CDLL(lib)
    func = module.func
    env, data = {}, {}
    params = list(func.params)
    for p, a in zip(params, arrays):
        if isinstance(p, Buffer):
            data[p.uid] = a
            for d_expr, n in zip(p.shape, a.shape):
                if isinstance(d_expr, E.Var):
                    env[d_expr.uid] = n
        else:
            env[p.uid] = a
    for b in module._source.scratch:
        count = 1
        for e in b.allocation_extents():
            count *= _eval(e, env)
        data[b.uid] = np.zeros(count, np.dtype(b.dtype))
    for spec in module.kernels:
        grid = [max(1, max([_eval(e, env) for e in spec.launch.extents.get(t, [])] or [1]))
                for t in _LAUNCH_ORDER[0]]
        block = [max(1, max([_eval(e, env) for e in spec.launch.extents.get(t, [])] or [1]))
                 for t in _LAUNCH_ORDER[1]]
        ptrs = (ctypes.c_void_p * len(spec.params))()
        scal = (ctypes.c_longlong * len(spec.params))()
        for k, p in enumerate(spec.params):
            if isinstance(p, Buffer):
                ptrs[k] = data[p.uid].ctypes.data
            else:
                scal[k] = int(env[p.uid])
        getattr(so, "launch_" + spec.name)(ptrs, scal, *grid, *block)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to run CUDA C on the CPU")
@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_cuda_c_runs_right_with_threads_and_barriers_on_the_cpu(name, tmp_path):
    s, args = CASES[name][1]()
    module = tl.build(s, args, target="cuda")
    inputs = _inputs(args)
    out = np.full([int(d) for d in args[-1].shape], np.nan, np.float32)
    _emulate(tmp_path, module, *inputs, out)
    np.testing.assert_allclose(out, _reference(name, inputs), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to run CUDA C on the CPU")
def test_integer_division_and_symbolic_extent_on_the_cpu(tmp_path):
    n = tl.var("n")
    A = tl.placeholder((n,), "int32", name="A")
    B = tl.compute((n,), lambda i: tl.floordiv(A[i], 3) + tl.floormod(A[i], -2)
                   + tl.truncdiv(A[i], 4) + tl.truncmod(A[i], 5) + tl.floordiv(A[i], A[i] % 7),
                   name="B")
    s = tl.create_schedule(B)
    injective(s, B, threads=16)
    module = tl.build(s, [A, B], target="cuda")
    a = RNG.integers(-50, 50, size=37).astype(np.int32)
    b = np.zeros(37, np.int32)
    _emulate(tmp_path, module, a, b)
    m = a % 7
    want = a // 3 + a % -2 + np.trunc(a / 4).astype(np.int32) + np.fmod(a, 5) + \
        np.where(m == 0, 0, a // np.where(m == 0, 1, m))
    np.testing.assert_array_equal(b, want)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to run CUDA C on the CPU")
def test_block_all_reduce_runs_right_on_the_cpu(tmp_path):
    s, args = softmax_block_schedule(3, 37, 8)
    module = tl.build(s, args, target="cuda")
    x = _rand(3, 37)
    out = np.full((3, 37), np.nan, np.float32)
    _emulate(tmp_path, module, x, out)
    np.testing.assert_allclose(out, _softmax_ref(x), rtol=1e-5, atol=1e-6)
    s, args = row_reduce_schedule(4, 50, 16, tl.max, reduce_inside=False)
    module = tl.build(s, args, target="cuda")
    x = _rand(4, 50)
    out = np.full(4, np.nan, np.float32)
    _emulate(tmp_path, module, x, out)
    np.testing.assert_array_equal(out, x.max(1))
