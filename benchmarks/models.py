"""End-to-end batch-1 latency of the light ONNX models (those the ``onnx`` package ships) against
ONNX Runtime, measured in the same run.

Each thread count runs in its own child process with ``TENSORLANG_NUM_THREADS`` (and the BLAS
peers) pinned, and ONNX Runtime's ``intra_op_num_threads`` set to the same count. The models get
random weights in place of their ``ConstantOfShape`` ones (``graph.light_models``), so values
stay finite and O(1). Compile time is a cold build (caches cleared) in the 1-thread child; "ops"
is the number of graph operator calls after import, "kernels" the fused groups run per call.

Usage::

    python benchmarks/models.py                       # all nine, 1 and 2 threads, untuned
    python benchmarks/models.py --models resnet50 vgg19 --threads 1
    python benchmarks/models.py --tuned tuning.db     # build with tuning records
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
from peak import child_env, cpu_description  # noqa: E402


def _timeit(fn, min_time: float = 1.0, min_runs: int = 5, max_runs: int = 200) -> float:
    """Median seconds of ``fn()`` after a warm-up call, over at least ``min_runs`` runs and
    ``min_time`` seconds."""
    fn()
    times, start = [], time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or
                                     time.perf_counter() - start < min_time):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def measure_model(name: str, threads: int, database=None, cold: bool = True) -> dict:
    """Build light model ``name`` and time it and ONNX Runtime on one random input."""
    import onnx
    import onnxruntime as ort

    import codegen.llvm
    import graph
    import graph.compile
    from graph.ir import Call, post_order
    from graph.light_models import light_model_path, randomize_weights

    model = randomize_weights(onnx.load(light_model_path(name)), seed=0)
    mod = graph.from_onnx(model)
    if cold:
        graph.compile.clear_cache()
        codegen.llvm.clear_cache()
    start = time.perf_counter()
    lib = graph.build(mod, database=database)
    compile_s = time.perf_counter() - start
    x = np.random.default_rng(0).uniform(-1, 1, mod.function.params[0].type.shape) \
        .astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])
    feeds = {lib.input_names[0]: x}
    ours = lib.run(x)
    want = sess.run(None, feeds)
    error = max(float(np.max(np.abs(a - b))) for a, b in zip(ours, want))
    ours_s = _timeit(lambda: lib.run(x))
    ort_s = _timeit(lambda: sess.run(None, feeds))
    profile = lib.profile(x, number=3)
    return {"model": name, "threads": threads, "onnx_nodes": len(model.graph.node),
            "ops": sum(isinstance(n, Call) for n in post_order(mod.function.outputs)),
            "kernels": lib.num_kernels, "compiled": lib.num_compiled, "compile_s": compile_s,
            "ours_ms": ours_s * 1e3, "ort_ms": ort_s * 1e3, "max_abs_error": error,
            "top_groups": [(g, t * 1e3) for g, t in profile[:5]]}


def run_child(models, threads: int, database) -> list[dict]:
    """:func:`measure_model` for ``models`` in a child process pinned to ``threads``; each
    result is echoed to stderr as it comes."""
    command = [sys.executable, os.path.abspath(__file__), "--child", "--threads", str(threads),
               "--models", *models]
    if database:
        command += ["--tuned", database]
    results = []
    with subprocess.Popen(command, env=child_env(threads), stdout=subprocess.PIPE,
                          text=True) as child:
        for line in child.stdout:
            if line.startswith("{"):
                results.append(json.loads(line))
                r = results[-1]
                print(f"[{threads}T] {r['model']}: compile {r['compile_s']:.1f} s, ours "
                      f"{r['ours_ms']:.2f} ms, ORT {r['ort_ms']:.2f} ms", file=sys.stderr,
                      flush=True)
    if child.returncode:
        raise SystemExit(f"the {threads}-thread child failed (exit {child.returncode})")
    return results


def main():
    from graph.light_models import LIGHT_MODELS
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(LIGHT_MODELS))
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--tuned", metavar="DB", default=None,
                        help="build with this tuning database (default: untuned)")
    parser.add_argument("--profile", action="store_true",
                        help="also print the slowest fused groups per model")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        for name in args.models:
            print(json.dumps(measure_model(name, args.threads[0], args.tuned)), flush=True)
        return
    results = {t: {r["model"]: r for r in run_child(args.models, t, args.tuned)}
               for t in args.threads}
    first = results[args.threads[0]]
    print(f"host: {cpu_description()}; {'tuned: ' + args.tuned if args.tuned else 'untuned'}; "
          "batch 1, median latency")
    head = "| model | ONNX nodes | graph ops | kernels (distinct) | compile s |"
    rule = "|---|---:|---:|---:|---:|"
    for t in args.threads:
        head += f" ours {t}T ms | ORT {t}T ms | ours/ORT {t}T |"
        rule += "---:|---:|---:|"
    print(head)
    print(rule)
    for name in args.models:
        r = first[name]
        row = (f"| {name} | {r['onnx_nodes']} | {r['ops']} | {r['kernels']} ({r['compiled']}) | "
               f"{r['compile_s']:.1f} |")
        for t in args.threads:
            q = results[t][name]
            row += f" {q['ours_ms']:.2f} | {q['ort_ms']:.2f} | {q['ours_ms'] / q['ort_ms']:.2f} |"
        print(row)
    if args.profile:
        for t in args.threads:
            for name in args.models:
                groups = ", ".join(f"{g} {ms:.2f}" for g, ms in results[t][name]["top_groups"])
                print(f"- {name} {t}T slowest groups (ms): {groups}")


if __name__ == "__main__":
    main()
