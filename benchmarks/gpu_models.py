"""Whole models on one NVIDIA GPU: ``graph.build(mod, target="cuda")`` against PyTorch.

ResNet-50 and SqueezeNet 1.0 (the light ONNX models the ``onnx`` package ships, with random
weights in place of their ``ConstantOfShape`` ones), batch 1, float32:

- ours: built with ``vendor="auto"`` (convolutions and large dense layers by cuDNN / cuBLAS
  through PyTorch, every other group our CUDA kernels) and ``vendor="none"`` (every group our
  own CUDA kernel, default GPU schedules, untuned);
- PyTorch: torchvision's ``resnet50()`` / ``squeezenet1_0()`` (same architectures, random
  weights) in eval mode under ``torch.no_grad()``, float32 with TF32 off (the same arithmetic
  as ours) and with PyTorch's default (TF32 convolutions).

Latency: the median of single runs, each timed between two CUDA events on the default stream,
input already on the device (a torch CUDA tensor), after warm-up runs. Each build of ours is
checked against ONNX Runtime on the CPU (rtol 1e-3, atol 1e-5 x the output's largest value)
before it is timed ("err/tol": the largest error in units of that tolerance, <= 1 passes).
Prints a table; "vendor" counts the groups run by cuDNN / cuBLAS.

Usage::

    python benchmarks/gpu_models.py                       # resnet50 and squeezenet, both modes
    python benchmarks/gpu_models.py --models resnet50 --modes auto --runs 50
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TORCHVISION = {"resnet50": "resnet50", "squeezenet": "squeezenet1_0"}


def cuda_event_median_ms(fn, runs: int, warmup: int = 5) -> float:
    """Median milliseconds of ``fn()``, each call between two CUDA events (tensorlang's, on
    the legacy default stream, which PyTorch's default stream is)."""
    from tensorlang.runtime import cuda
    for _ in range(warmup):
        fn()
    cuda.synchronize()
    start, end = cuda.Event(), cuda.Event()
    times = []
    for _ in range(runs):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cuda.Event.elapsed_ms(start, end))
    return float(np.median(times))


def ours(name: str, mode: str, runs: int, x: np.ndarray, model, want: list) -> dict:
    import torch

    import graph
    import graph.compile
    graph.compile.clear_cache()
    mod = graph.from_onnx(model)
    start = time.perf_counter()
    lib = graph.build(mod, target="cuda", vendor=mode)
    compile_s = time.perf_counter() - start
    got = lib.run(x)  # NumPy in: copied to the device; NumPy out
    errs, ok = [], True
    for g, w in zip(got, want):
        if g.shape != w.shape:
            ok = False
            continue
        scale = float(np.abs(w).max())
        # the error in units of the tolerance (rtol 1e-3, atol 1e-5 x scale): <= 1 passes
        ratio = np.abs(g.astype(np.float64) - w) / (1e-3 * np.abs(w) + 1e-5 * scale + 1e-30)
        errs.append(float(ratio.max()))
        ok = ok and errs[-1] <= 1.0
    x_dev = torch.from_numpy(x).cuda()
    ms = cuda_event_median_ms(lambda: lib.run(x_dev), runs)
    from graph.gpu import VendorKernel
    vendor_groups = sum(isinstance(s.kernel, VendorKernel) for s in lib._steps)
    slowest = lib.profile(x_dev, number=3)[:3]
    return {"model": name, "who": f"tensorlang ({mode})", "ms": ms, "compile_s": compile_s,
            "kernels": lib.num_kernels, "vendor_groups": vendor_groups,
            "ort_ok": ok, "ort_err": max(errs, default=float("inf")), "slowest": slowest}


def pytorch(name: str, runs: int, shape: tuple) -> list:
    import torch
    try:
        import torchvision
    except ImportError as exc:
        print(f"torchvision is not importable ({exc}): no PyTorch baseline for {name}")
        return []
    net = getattr(torchvision.models, TORCHVISION[name])().eval().cuda()
    x = torch.randn(*shape, device="cuda")
    rows = []
    for label, tf32 in (("fp32, TF32 off", False), ("default, TF32 conv", True)):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        with torch.no_grad():
            ms = cuda_event_median_ms(lambda: net(x), runs)
        rows.append({"model": name, "who": f"torch eager ({label})", "ms": ms})
    torch.backends.cudnn.allow_tf32 = True
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "squeezenet"],
                        choices=sorted(TORCHVISION))
    parser.add_argument("--modes", nargs="+", default=["auto", "none"],
                        choices=["auto", "none", "torch"])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort

    from graph.light_models import light_model_path, randomize_weights
    from tensorlang.runtime import cuda
    if not cuda.available():
        sys.exit(f"no usable GPU: {cuda.unavailable_reason()}")
    props = cuda.device_properties()
    import torch
    print(f"device: {props.name} ({props.arch}), torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}")
    rows = []
    for name in args.models:
        model = randomize_weights(onnx.load(light_model_path(name)), seed=0)
        sess = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        feed = sess.get_inputs()[0]
        shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in feed.shape)
        x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
        want = sess.run(None, {feed.name: x})
        for mode in args.modes:
            try:
                row = ours(name, mode, args.runs, x, model, want)
            except Exception:  # noqa: BLE001 -- report and go on with the other rows
                traceback.print_exc()
                row = {"model": name, "who": f"tensorlang ({mode})", "error": True}
            rows.append(row)
            print(row, flush=True)
        try:
            rows.extend(pytorch(name, args.runs, shape))
        except Exception:  # noqa: BLE001
            traceback.print_exc()
    print()
    print(f"{'model':<11} {'who':<30} {'ms':>8} {'compile s':>10} {'kernels':>8} "
          f"{'vendor':>7} {'ORT-CPU err/tol':>18}")
    for r in rows:
        if r.get("error"):
            print(f"{r['model']:<11} {r['who']:<30} {'FAILED':>8}")
            continue
        ort_col = (f"{'ok' if r['ort_ok'] else 'MISMATCH'} {r['ort_err']:.1e}"
                   if "ort_ok" in r else "")
        compile_col = f"{r['compile_s']:.1f}" if "compile_s" in r else ""
        print(f"{r['model']:<11} {r['who']:<30} {r['ms']:>8.3f} {compile_col:>10} "
              f"{r.get('kernels', ''):>8} {r.get('vendor_groups', ''):>7} {ort_col:>18}")
    for r in rows:
        if r.get("slowest"):
            top = ", ".join(f"{n} {t * 1e3:.3f} ms" for n, t in r["slowest"])
            print(f"slowest groups, {r['model']} {r['who']}: {top}")


if __name__ == "__main__":
    main()
