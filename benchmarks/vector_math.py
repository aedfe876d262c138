"""float32 exp, tanh, erf and sigmoid over 16M elements: our vector math against NumPy / SciPy.

    python benchmarks/vector_math.py [--size 16777216] [--threads 1 2] [--fast-math]

Our kernels: inner axis vectorized by 8 lanes, outer chunks run on the thread pool. The peers:
``np.exp``, ``np.tanh``, ``scipy.special.erf`` and ``scipy.special.expit`` (sigmoid), writing
into a preallocated output. Each thread count runs in its own process with TENSORLANG_NUM_THREADS
and OPENBLAS/OMP/MKL_NUM_THREADS pinned. Prints elements/s and our speed-up over the peer.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peak  # noqa: E402  (same folder: thread pinning, host description)

OPS = ("exp", "tanh", "erf", "sigmoid")
CHUNK = 8 * 1024  # elements per parallel task


def _peer(op: str):
    from scipy import special
    return {"exp": np.exp, "tanh": np.tanh, "erf": special.erf, "sigmoid": special.expit}[op]


def _kernel(op: str, n: int):
    import tensorlang as tl
    fn = {"exp": tl.exp, "tanh": tl.tanh, "erf": tl.erf, "sigmoid": tl.sigmoid}[op]
    A = tl.placeholder((n,), "float32", name="A")
    B = tl.compute((n,), lambda i: fn(A[i]), name="B")
    s = tl.create_schedule(B)
    outer, inner = s[B].split(B.op.axis[0], factor=CHUNK)
    _, lanes = s[B].split(inner, factor=8)
    s[B].vectorize(lanes)
    s[B].parallel(outer)
    return tl.build(s, [A, B], target="llvm", name=f"{op}_bench")


def run_one(n: int, fast_math: bool) -> dict:
    import tensorlang as tl
    rng = np.random.default_rng(0)
    x = rng.uniform(-8, 8, n).astype(np.float32)
    y, z = np.empty_like(x), np.empty_like(x)
    rows = {}
    for op in OPS:
        with tl.config(fast_math=fast_math):
            f = _kernel(op, n)
        f(x, y)
        peer = _peer(op)
        peer(x, out=z)
        np.testing.assert_allclose(y, z, rtol=1e-3 if fast_math else 1e-5, atol=1e-6)
        ours = f.time_evaluator(number=3, repeat=5)(x, y).median
        theirs = peak.best_time(lambda: peer(x, out=z), 5)
        rows[op] = {"ours": ours, "peer": theirs}
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=16 * 1024 * 1024)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--fast-math", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.size, args.fast_math)))
        return
    print(f"CPU: {peak.cpu_description()}; {args.size} float32 elements, "
          f"fast_math={args.fast_math}")
    print(f"{'threads':>7} {'op':>8} {'ours Gelem/s':>13} {'peer Gelem/s':>13} {'speed-up':>9}")
    for threads in args.threads:
        env = peak.child_env(threads)  # threads pinned for us and for the peers
        command = [sys.executable, __file__, "--child", "--size", str(args.size)]
        if args.fast_math:
            command.append("--fast-math")
        out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
        rows = json.loads(out.strip().splitlines()[-1])
        for op in OPS:
            ours, peer = rows[op]["ours"], rows[op]["peer"]
            print(f"{threads:>7} {op:>8} {args.size / ours / 1e9:>13.2f} "
                  f"{args.size / peer / 1e9:>13.2f} {peer / ours:>8.2f}x")


if __name__ == "__main__":
    main()
