"""Tune fp32 matmul and the ResNet-50 3x3 convolution on the GPU, then compare the best
schedule found with PyTorch (cuBLAS with TF32 off / cuDNN) and the hand schedules of
``tensorlang.ops.gpu_schedules``, all timed in this process on the same inputs.

    python benchmarks/tune_gpu.py                      # 64 trials each, matmul 4096^3
    python benchmarks/tune_gpu.py --trials 32 --size 2048 --only matmul

Prints, per workload: the best tuned kernel (ms, GFLOP/s), PyTorch's and the hand schedule's,
the ratios, the relative error against a float64 reference, and tuning throughput (trials per
minute, wall clock of ``autotune.tune``). Needs a CUDA GPU, cuda-python and PyTorch; XGBoost is
optional (without it the cost model ranks candidates at random, with a notice).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import autotune  # noqa: E402
import tensorlang as tl  # noqa: E402
from autotune.workloads import conv2d_nchw, matmul  # noqa: E402
from tensorlang.ops import gpu_schedules  # noqa: E402
from tensorlang.runtime import cuda  # noqa: E402


def _events_ms(fn, number=20, repeat=5):
    """Median over ``repeat`` of the mean milliseconds of ``number`` back-to-back calls."""
    import torch
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(number):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / number)
    return float(np.median(times))


def _module_ms(f, args):
    """Our CudaModule, timed with its CUDA-event time_evaluator (as the tuner measures)."""
    res = f.time_evaluator(number=20, repeat=5, min_repeat_ms=20)(*args)
    return float(np.median(res.results)) * 1e3


def _rel_err(out, ref):
    out = np.asarray(out, np.float64)
    if not np.all(np.isfinite(out)):
        return float("inf")
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-30))


def _run(f, inputs, out_shape):
    """Launch ``f`` on device copies of ``inputs``; returns (device args, output NumPy)."""
    dev = [tl.nd.array(x, device="cuda") for x in inputs]
    out = tl.nd.empty(out_shape, "float32", device="cuda")
    f(*dev, out)
    cuda.synchronize()
    return dev + [out], out.numpy()


def bench(label, task, inputs, out_shape, ref, torch_fn, hand, args, builder, runner):
    import torch
    flops = task.flop_count()
    db = args.database or os.path.join(tempfile.mkdtemp(prefix="tune-gpu-"), "gpu.db")
    print(f"\n== {label}: {task.target_key}, {args.trials} trials, database {db}", flush=True)
    start = time.perf_counter()
    [summary] = autotune.tune([task], trials=args.trials, database=db, timeout=args.timeout,
                              batch_size=args.batch_size, progress=not args.quiet,
                              transfer=0, remeasure=2, builder=builder, runner=runner,
                              search_options={"population": args.population,
                                              "generations": args.generations})
    seconds = time.perf_counter() - start
    per_min = summary.trials / seconds * 60 if seconds > 0 else 0.0
    print(f"  tuning: {summary.trials} trials ({summary.errors} errors, "
          f"{summary.search_failed} dropped by the search) in {seconds:.1f} s = "
          f"{per_min:.1f} trials/min", flush=True)

    rows = []
    s, targs = task.apply_best(db)
    f = tl.build(s, targs, target="cuda")
    dev, out = _run(f, inputs, out_shape)
    rows.append(("tuned", _module_ms(f, dev), _rel_err(out, ref)))

    hs, hargs = hand()
    hf = tl.build(hs, hargs, target="cuda")
    hdev, hout = _run(hf, inputs, out_shape)
    rows.append(("hand schedule", _module_ms(hf, hdev), _rel_err(hout, ref)))

    tin = [torch.from_numpy(x).cuda() for x in inputs]
    tout = torch_fn(*tin)
    torch.cuda.synchronize()
    rows.append(("pytorch", _events_ms(lambda: torch_fn(*tin)),
                 _rel_err(tout.cpu().numpy(), ref)))

    peer = rows[2][1]
    for name, ms, err in rows:
        gflops = flops / (ms * 1e-3) / 1e9 if flops else float("nan")
        print(f"  {name:14s} {ms:9.4f} ms  {gflops:9.1f} GFLOP/s  "
              f"x{peer / ms:5.2f} of pytorch  rel err {err:.1e}", flush=True)
    return {"label": label, "trials": summary.trials, "errors": summary.errors,
            "seconds": seconds, "trials_per_min": per_min,
            **{name: ms for name, ms, _ in rows}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=64)
    p.add_argument("--size", type=int, default=4096, help="matmul m = n = k")
    p.add_argument("--only", choices=("matmul", "conv"), default=None)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per candidate run")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--generations", type=int, default=1)
    p.add_argument("--database", default=None, help="SQLite file (default: a fresh one)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if not cuda.available():
        print(f"tune_gpu: no CUDA GPU: {cuda.unavailable_reason()}", file=sys.stderr)
        return 2
    import torch
    import torch.nn.functional as F
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    print(f"device: {cuda.device_properties().name}; torch {torch.__version__}")
    rng = np.random.default_rng(0)
    results = []
    from autotune.measure_gpu import GPUBuilder, GPURunner
    # one pool of build workers and one runner child for both workloads
    builder = GPUBuilder(timeout=30.0)
    runner = GPURunner(timeout=args.timeout, repeat=3, min_repeat_ms=5.0)
    try:
        _workloads(args, rng, results, builder, runner, torch, F)
    finally:
        builder.close()
        runner.close()
    print("\nsummary (ms; ratio = pytorch / ours):")
    for r in results:
        print(f"  {r['label']}: tuned {r['tuned']:.4f}, hand {r['hand schedule']:.4f}, "
              f"pytorch {r['pytorch']:.4f}, ratio {r['pytorch'] / r['tuned']:.2f}; "
              f"{r['trials']} trials, {r['errors']} errors, {r['trials_per_min']:.1f} "
              f"trials/min")
    return 0


def _workloads(args, rng, results, builder, runner, torch, F):
    if args.only in (None, "matmul"):
        n = args.size
        a = rng.standard_normal((n, n)).astype(np.float32)
        b = rng.standard_normal((n, n)).astype(np.float32)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        task = autotune.Task(matmul, (n, n, n), target="cuda")
        results.append(bench(f"matmul {n}^3 fp32", task, [a, b], (n, n), ref, torch.matmul,
                             lambda: gpu_schedules.matmul_cuda(n, n, n), args, builder,
                             runner))
    if args.only in (None, "conv"):
        shape = (1, 64, 56, 56, 64, 3)
        x = rng.standard_normal(shape[:4]).astype(np.float32)
        w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
        ref = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                       padding=1).numpy()
        task = autotune.Task(conv2d_nchw, (*shape, 1, 1, 1, 1, "float32", False),
                             target="cuda")
        results.append(bench("conv2d 1x64x56x56, 64 3x3 pad 1 (ResNet-50)", task, [x, w],
                             (1, 64, 56, 56), ref,
                             lambda tx, tw: F.conv2d(tx, tw, padding=1),
                             lambda: gpu_schedules.conv2d_nchw_cuda(*shape, stride=1,
                                                                    padding=1), args, builder,
                             runner))


if __name__ == "__main__":
    sys.exit(main())
