"""The main job, at this stage: write an operator, schedule it, build it, time it against NumPy.

    python examples/demo.py [--size 512]
"""
import argparse
import time

import numpy as np

import tensorlang as tl
from tensorlang.ops.cpu_schedules import matmul_packed


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512)
    n = parser.parse_args().size
    # the computation: C[i, j] = sum_k A[i, k] * B[k, j]; the schedule packs B into column
    # panels and accumulates a register tile (read tensorlang/ops/cpu_schedules.py)
    from codegen.llvm import host_target
    lanes = host_target().vector_bits // 32
    s, (A, B, C) = matmul_packed(n, n, n, vector_lanes=lanes)
    print(tl.lower(s, [A, B, C]))
    f = tl.build(s, [A, B, C], target="llvm")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    # time ours before NumPy runs: OpenBLAS's threads keep spinning for a while after each
    # call and would compete with ours for the cores
    ours = f.time_evaluator(number=10, repeat=3)(a, b, c).median
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-3)  # also warms up the BLAS
    ref = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        ref = min(ref, (time.perf_counter() - start) / 5)
    flops = 2 * n ** 3
    print(f"tensorlang: {flops / ours / 1e9:7.1f} GFLOP/s   NumPy: {flops / ref / 1e9:7.1f} GFLOP/s"
          f"   ratio {ref / ours:.2f}x NumPy   (threads: {tl.runtime.get_num_threads()})")


if __name__ == "__main__":
    main()
