"""The main job, at this stage: write an operator, schedule it, build it, time it against NumPy.

    python examples/demo.py [--size 512]
"""
import argparse
import time

import numpy as np

import tensorlang as tl


def matmul(n: int):
    A = tl.placeholder((n, n), "float32", name="A")
    B = tl.placeholder((n, n), "float32", name="B")
    k = tl.reduce_axis((0, n), name="k")
    C = tl.compute((n, n), lambda i, j: tl.sum(A[i, k] * B[k, j], axis=k), name="C")
    return A, B, C


def schedule(A, B, C):
    s = tl.create_schedule(C)
    CC = s.cache_write(C, "local")
    i, j = s[C].op.axis
    io, jo, ii, ji = s[C].tile(i, j, 4, 16)
    s[C].vectorize(ji)
    s[C].parallel(io)
    s[CC].compute_at(s[C], jo)
    ci, cj = s[CC].op.axis
    (k,) = s[CC].op.reduce_axis
    ko, ki = s[CC].split(k, factor=4)
    s[CC].reorder(ko, ki, ci, cj)
    s[CC].unroll(ki)
    s[CC].unroll(ci)
    s[CC].vectorize(cj)
    return s


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512)
    n = parser.parse_args().size
    A, B, C = matmul(n)
    s = schedule(A, B, C)
    print(tl.lower(s, [A, B, C]))
    f = tl.build(s, [A, B, C], target="llvm")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    f(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-3)
    ours = f.time_evaluator(number=5, repeat=3)(a, b, c).median
    a @ b  # warm up the BLAS
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
