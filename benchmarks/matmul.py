"""fp32 matmul 1024x1024x1024: the default schedule, a hand schedule and NumPy, on 1 and 2 threads.

    python benchmarks/matmul.py [--size 1024] [--threads 1 2]

Each thread count runs in its own process with the thread count pinned for both sides
(TENSORLANG_NUM_THREADS and OPENBLAS/OMP/MKL_NUM_THREADS), so NumPy's BLAS and our pool use the
same number of cores. Prints GFLOP/s and the ratio to NumPy measured in the same process.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peak  # noqa: E402  (same folder: thread pinning, host description)


def matmul_tensors(n: int):
    import tensorlang as tl
    A = tl.placeholder((n, n), "float32", name="A")
    B = tl.placeholder((n, n), "float32", name="B")
    k = tl.reduce_axis((0, n), name="k")
    C = tl.compute((n, n), lambda i, j: tl.sum(A[i, k] * B[k, j], axis=k), name="C")
    return A, B, C


def default_schedule(n: int):
    import tensorlang as tl
    A, B, C = matmul_tensors(n)
    return tl.create_schedule(C), [A, B, C]


def hand_schedule(n: int, vector_lanes: int):
    """Packed B panels and a register-tiled micro-kernel (``tl.ops.cpu_schedules``)."""
    from tensorlang.ops.cpu_schedules import matmul_packed
    return matmul_packed(n, n, n, vector_lanes=vector_lanes)


def _gflops(n, seconds):
    return 2.0 * n ** 3 / seconds / 1e9


def run_one(n: int, threads: int) -> dict:
    import tensorlang as tl
    from codegen.llvm import host_target
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    expected = a @ b
    rows = {}
    lanes = host_target().vector_bits // 32
    for name, (s, args) in (("default", default_schedule(n)),
                            ("hand", hand_schedule(n, lanes))):
        f = tl.build(s, args, target="llvm")
        c = np.empty((n, n), np.float32)
        f(a, b, c)
        np.testing.assert_allclose(c, expected, rtol=1e-3, atol=1e-2)
        number = 1 if name == "default" else 5
        t = f.time_evaluator(number=number, repeat=3)(a, b, c).median
        rows[name] = t
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(5):
            np.matmul(a, b)
        best = min(best, (time.perf_counter() - start) / 5)
    rows["numpy"] = best
    return {"threads": threads, "n": n, **rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.size, args.threads[0])))
        return
    print(f"CPU: {peak.cpu_description()};  size {args.size}^3 fp32")
    print(f"{'threads':>7} {'variant':>8} {'GFLOP/s':>9} {'vs NumPy':>9}")
    for threads in args.threads:
        env = peak.child_env(threads)  # threads pinned for us and for the peers
        out = subprocess.run([sys.executable, __file__, "--child", "--size", str(args.size),
                              "--threads", str(threads)], env=env, check=True,
                             capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        for variant in ("default", "hand", "numpy"):
            t = row[variant]
            print(f"{threads:>7} {variant:>8} {_gflops(args.size, t):>9.1f} "
                  f"{row['numpy'] / t:>8.2f}x")


if __name__ == "__main__":
    main()
