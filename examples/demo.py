"""The main job: tune the heaviest kernels of a real model into the default SQLite database,
compile the model with the records, run it, and compare with ONNX Runtime.

    python examples/demo.py [--model resnet50] [--trials 32] [--database tuning.db]

The model is one of the light models the `onnx` package ships (ResNet-50, SqueezeNet, ...;
their weights are constants, so random inputs give nearly uniform outputs: the comparison
with ONNX Runtime is still exact work on every layer). Tuning resumes from the database: run
it again with more trials to continue.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import autotune
import graph
import tensorlang as tl


def light_model(name: str) -> str:
    import onnx
    folder = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    path = os.path.join(folder, f"light_{name}.onnx")
    if not os.path.exists(path):
        names = sorted(f[6:-5] for f in os.listdir(folder) if f.endswith(".onnx"))
        raise SystemExit(f"no light model {name!r}; choose from {', '.join(names)}")
    return path


def best_ms(fn, repeat: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--trials", type=int, default=32, help="tuning measurements (total)")
    parser.add_argument("--database", default="tuning.db", help="SQLite file (created)")
    opts = parser.parse_args()
    path = light_model(opts.model)
    threads = tl.runtime.get_num_threads()
    print(f"model {os.path.basename(path)}, {threads} thread(s), database {opts.database}")

    mod = graph.from_onnx(path)
    tasks = graph.extract_tasks(mod)
    print(f"{len(tasks)} distinct kernels with a reduction to tune; tuning {opts.trials} "
          "candidates (the heaviest tasks get the most)")
    start = time.perf_counter()
    summaries = autotune.tune(tasks, trials=opts.trials, database=opts.database)
    tuned = [s for s in summaries if s.trials]
    print(f"tuned {len(tuned)} task(s) in {time.perf_counter() - start:.0f} s:")
    for s in tuned[:5]:
        gflops = f"{s.best_gflops:.1f} GFLOP/s" if s.best_gflops else "no working candidate"
        print(f"  {s.task.name} x{s.task.weight:.0f}: "
              f"{s.trials} trials, {s.errors} errors, best {gflops}")

    start = time.perf_counter()
    lib = graph.build(mod, target="llvm", database=opts.database)
    print(f"compiled in {time.perf_counter() - start:.1f} s: {lib.num_kernels} kernel calls")
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(p.type.shape).astype(p.type.dtype)
              for p in mod.function.params]
    outputs = lib.run(*inputs)
    ours = best_ms(lambda: lib.run(*inputs))
    line = f"latency: tensorlang {ours:.2f} ms"
    try:
        import onnxruntime as ort
        opts_ort = ort.SessionOptions()
        opts_ort.intra_op_num_threads = threads
        sess = ort.InferenceSession(path, opts_ort, providers=["CPUExecutionProvider"])
        feeds = dict(zip(lib.input_names, inputs))
        expected = sess.run(None, feeds)
        peer = best_ms(lambda: sess.run(None, feeds))
        error = max(float(np.max(np.abs(a - b))) for a, b in zip(outputs, expected))
        line += f", ONNX Runtime {peer:.2f} ms ({peer / ours:.2f}x); max |diff| {error:.2e}"
    except ImportError:
        line += " (install onnxruntime to compare)"
    print(line)
    top = lib.profile(*inputs)[:3]
    print("slowest kernels: " + ", ".join(f"{name} {sec * 1e3:.2f} ms" for name, sec in top))


if __name__ == "__main__":
    main()
