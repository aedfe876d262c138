"""Machine limits measured with kernels tensorlang generates: fp32 FMA peak and memory bandwidth.

    python benchmarks/peak.py [--threads 1 2]

* FMA peak: ``C[p, i, j] = sum_k A[p, i, k] * B[j]`` with a local ``rows x 2*lanes`` register
  tile. ``B`` is loop invariant (two vector registers), ``A[p, i, k]`` is one broadcast per
  row and step of ``k`` and stays in L1, so the unrolled inner loop is ``2 * rows`` independent
  vector FMAs per ``rows`` broadcast loads (the matmul micro-kernel without its B stream).
* Bandwidth: a copy ``Y[i] = X[i]`` and a triad ``Y[i] = X[i] + 3 * Z[i]`` over arrays far larger
  than the caches, parallel and vectorized; NumPy's ``np.copyto`` for comparison. Bytes counted
  are those the kernel names (copy 8 B, triad 12 B per element; write-allocate traffic is not
  counted, as in STREAM).

Each thread count runs in its own process with TENSORLANG_NUM_THREADS / OPENBLAS_NUM_THREADS /
OMP_NUM_THREADS pinned. Other benchmarks import :func:`measure` (in an already pinned process)
or :func:`measure_in_subprocess`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

THREAD_VARS = ("TENSORLANG_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
               "MKL_NUM_THREADS")


def child_env(threads: int) -> dict:
    """The environment of a child process pinned to ``threads`` for us and for the peers."""
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    # OPENBLAS_CORETYPE / L2_SIZE pin an old kernel on some hosts; compare against the real one
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    return env


def vector_lanes() -> int:
    from codegen.llvm import host_target
    return host_target().vector_bits // 32


def fma_kernel(lanes: int, parts: int = 64, k: int = 512):
    """The FMA peak kernel: ``(schedule, args, flops)``."""
    import tensorlang as tl
    rows = 6 if lanes <= 8 else 12          # 12 (24 with AVX-512) accumulators + 2 invariants
    nr = 2 * lanes
    A = tl.placeholder((parts, rows, k), "float32", name="A")
    B = tl.placeholder((nr,), "float32", name="B")
    r = tl.reduce_axis((0, k), name="k")
    C = tl.compute((parts, rows, nr), lambda p, i, j: tl.sum(A[p, i, r] * B[j], axis=r),
                   name="C")
    s = tl.create_schedule(C)
    CC = s.cache_write(C, "local")
    p, i, j = s[C].op.axis
    s[C].parallel(p)
    s[C].vectorize(j)
    s[CC].compute_at(s[C], p)
    _, ci, cj = s[CC].op.axis
    (kk,) = s[CC].op.reduce_axis
    ko, ki = s[CC].split(kk, factor=4)
    s[CC].reorder(ko, ki, ci, cj)
    s[CC].unroll(ki)
    s[CC].unroll(ci)
    s[CC].vectorize(cj)
    return s, [A, B, C], 2.0 * parts * rows * nr * k


def stream_kernel(n: int, kind: str):
    """``copy``, ``triad`` or ``stream_copy`` (a copy whose stores bypass the caches, pragma
    ``nontemporal``) over ``n`` float32: ``(schedule, args, bytes)``."""
    import tensorlang as tl
    X = tl.placeholder((n,), "float32", name="X")
    if kind in ("copy", "stream_copy"):
        Y = tl.compute((n,), lambda i: X[i], name="Y")
        args, nbytes = [X, Y], 8.0 * n
    else:
        Z = tl.placeholder((n,), "float32", name="Z")
        Y = tl.compute((n,), lambda i: X[i] + tl.const(3.0, "float32") * Z[i], name="Y")
        args, nbytes = [X, Z, Y], 12.0 * n
    s = tl.create_schedule(Y)
    outer, inner = s[Y].split(Y.op.axis[0], factor=1 << 16)
    vo, vi = s[Y].split(inner, factor=4 * vector_lanes())
    ui, vv = s[Y].split(vi, factor=vector_lanes())
    s[Y].parallel(outer)
    s[Y].unroll(ui)
    s[Y].vectorize(vv)
    if kind == "stream_copy":
        s[Y].pragma(vo, "nontemporal", True)
    return s, args, nbytes


def best_time(fn, repeat: int, number: int = 1) -> float:
    """Best seconds per call of ``fn`` over ``repeat`` rounds of ``number`` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def measure(stream_elems: int = 1 << 25) -> dict:
    """Peak figures in this process (its thread count is whatever the environment pins).

    Returns ``{"fma_gflops", "copy_gbs", "triad_gbs", "stream_copy_gbs", "numpy_copy_gbs",
    "bandwidth_gbs"}``; ``bandwidth_gbs`` is the best of our copy, triad and streaming copy
    (64-byte aligned arrays, so the streaming stores apply)."""
    import tensorlang as tl
    out = {}
    s, args, flops = fma_kernel(vector_lanes())
    f = tl.build(s, args, target="llvm")
    rng = np.random.default_rng(0)
    a = rng.standard_normal([int(d) for d in args[0].shape], dtype=np.float32)
    b = rng.standard_normal([int(d) for d in args[1].shape], dtype=np.float32)
    c = np.empty([int(d) for d in args[2].shape], np.float32)
    f(a, b, c)
    np.testing.assert_allclose(c, np.einsum("pik,j->pij", a, b), rtol=1e-3, atol=1e-2)
    t = f.time_evaluator(number=50, repeat=7)(a, b, c)
    out["fma_gflops"] = flops / min(t.results) / 1e9
    x = tl.nd.array(rng.standard_normal(stream_elems, dtype=np.float32))
    z = tl.nd.array(rng.standard_normal(stream_elems, dtype=np.float32))
    y = tl.nd.empty((stream_elems,), "float32")
    for kind in ("copy", "triad", "stream_copy"):
        s, args, nbytes = stream_kernel(stream_elems, kind)
        f = tl.build(s, args, target="llvm")
        arrays = (x, z, y) if kind == "triad" else (x, y)
        f(*arrays)
        xs = x.numpy()
        expect = xs + np.float32(3.0) * z.numpy() if kind == "triad" else xs
        np.testing.assert_allclose(y.numpy(), expect, rtol=1e-5, atol=1e-5)
        t = f.time_evaluator(number=3, repeat=5)(*arrays)
        out[f"{kind}_gbs"] = nbytes / min(t.results) / 1e9
    xn, yn = x.numpy(), np.empty(stream_elems, np.float32)
    out["numpy_copy_gbs"] = 8.0 * stream_elems / best_time(lambda: np.copyto(yn, xn), 5, 3) / 1e9
    out["bandwidth_gbs"] = max(out["copy_gbs"], out["triad_gbs"], out["stream_copy_gbs"])
    return out


def measure_in_subprocess(threads: int) -> dict:
    """:func:`measure` in a child process pinned to ``threads``."""
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child",
                           "--threads", str(threads)], env=child_env(threads), check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_description() -> str:
    import llvmlite.binding as llvm
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, LLVM CPU `{llvm.get_host_cpu_name()}`, {os.cpu_count()} logical CPUs"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure()))
        return
    print(f"host: {cpu_description()}, {vector_lanes()} float32 lanes")
    print("| threads | FMA peak GFLOP/s | copy GB/s | triad GB/s | streaming copy GB/s | "
          "NumPy copy GB/s |")
    print("|--------:|-----------------:|----------:|-----------:|--------------------:|"
          "----------------:|")
    for threads in args.threads:
        r = measure_in_subprocess(threads)
        print(f"| {threads} | {r['fma_gflops']:.1f} | {r['copy_gbs']:.1f} | "
              f"{r['triad_gbs']:.1f} | {r['stream_copy_gbs']:.1f} | "
              f"{r['numpy_copy_gbs']:.1f} |")


if __name__ == "__main__":
    main()
