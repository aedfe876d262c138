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
    python benchmarks/models.py --layout NCHWc        # every eligible conv channel-blocked
    python benchmarks/models.py --torch               # PyTorch models vs eager / torch.compile
    python benchmarks/models.py --torch --models torch_mlp --threads 1

With ``--torch`` the models are PyTorch modules built in code (an MLP, a transformer encoder
layer, a small ResNet and a ResNet-18-like network, random weights, eval mode), imported with
``graph.from_torch`` and timed against PyTorch eager and ``torch.compile`` (reported as n/a, with
the reason, where it does not work on the host) with ``torch.set_num_threads`` and
``tensorlang.runtime.set_num_threads`` at the same count.
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


def measure_model(name: str, threads: int, database=None, cold: bool = True,
                  layout: str = "auto") -> dict:
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
    lib = graph.build(mod, database=database, layout=layout)
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


def run_child(models, threads: int, database, torch: bool = False,
              layout: str = "auto") -> list[dict]:
    """:func:`measure_model` (or :func:`measure_torch_model`) for ``models`` in a child process
    pinned to ``threads``; each result is echoed to stderr as it comes."""
    command = [sys.executable, os.path.abspath(__file__), "--child", "--threads", str(threads),
               "--models", *models]
    if database:
        command += ["--tuned", database]
    if torch:
        command.append("--torch")
    command += ["--layout", layout]
    results = []
    with subprocess.Popen(command, env=child_env(threads), stdout=subprocess.PIPE,
                          text=True) as child:
        for line in child.stdout:
            if line.startswith("{"):
                results.append(json.loads(line))
                r = results[-1]
                peer = f"eager {r['eager_ms']:.2f} ms" if torch else f"ORT {r['ort_ms']:.2f} ms"
                print(f"[{threads}T] {r['model']}: compile {r['compile_s']:.1f} s, ours "
                      f"{r['ours_ms']:.2f} ms, {peer}", file=sys.stderr, flush=True)
    if child.returncode:
        raise SystemExit(f"the {threads}-thread child failed (exit {child.returncode})")
    return results


# -- PyTorch models (graph.from_torch) against PyTorch eager and torch.compile ------------------

def _torch_models():
    """name -> (model factory, input shape at batch 1), built in code (no torchvision)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout)) if stride != 1 or cin != cout \
                else nn.Identity()

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.down(x))

    def resnet(widths, blocks):
        layers = [nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                  nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        cin = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(Block(cin, w, 2 if j == 0 and i > 0 else 1))
                cin = w
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1000)]
        model = nn.Sequential(*layers)
        for m in model.modules():  # running statistics that are not the identity
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        return model

    return {
        "torch_mlp": (lambda: nn.Sequential(nn.Linear(512, 2048), nn.GELU(),
                                            nn.Linear(2048, 2048), nn.GELU(),
                                            nn.Linear(2048, 512)), (512,)),
        "torch_encoder": (lambda: nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.0,
                                                             batch_first=True), (64, 256)),
        "torch_resnet_small": (lambda: resnet((32, 64), (1, 1)), (3, 64, 64)),
        "torch_resnet18": (lambda: resnet((64, 128, 256, 512), (2, 2, 2, 2)), (3, 224, 224)),
    }


def measure_torch_model(name: str, threads: int) -> dict:
    """Import PyTorch model ``name`` with ``graph.from_torch``, build it, and time it against
    PyTorch eager and ``torch.compile`` (None where that fails here) on one random input."""
    import torch

    import graph
    import tensorlang as tl
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    tl.runtime.set_num_threads(threads)
    make, shape = _torch_models()[name]
    model = make().eval()
    x = torch.randn(1, *shape)
    start = time.perf_counter()
    mod = graph.from_torch(model, (x,))
    lib = graph.build(mod)
    compile_s = time.perf_counter() - start
    xn = x.numpy()
    with torch.no_grad():
        want = model(x).numpy()
        error = float(np.max(np.abs(lib.run(xn)[0] - want)))
        ours_s = _timeit(lambda: lib.run(xn))
        eager_s = _timeit(lambda: model(x))
        compiled_s, compile_error = None, None
        try:
            compiled = torch.compile(model)
            compiled(x)
            compiled_s = _timeit(lambda: compiled(x))
        except Exception as err:  # noqa: BLE001 - report why torch.compile is unavailable
            compile_error = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
    return {"model": name, "threads": threads, "compile_s": compile_s, "max_abs_error": error,
            "ours_ms": ours_s * 1e3, "eager_ms": eager_s * 1e3,
            "compiled_ms": None if compiled_s is None else compiled_s * 1e3,
            "torch_compile_error": compile_error}


def torch_main(models, threads_list) -> None:
    """The PyTorch table: one child process per thread count, ratios to eager and compile."""
    results = {t: {r["model"]: r for r in run_child(models, t, None, torch=True)}
               for t in threads_list}
    print(f"host: {cpu_description()}; untuned; batch 1, median latency")
    head, rule = "| model | compile s |", "|---|---:|"
    for t in threads_list:
        head += (f" ours {t}T ms | eager {t}T ms | torch.compile {t}T ms | ours/eager {t}T |"
                 f" ours/compile {t}T |")
        rule += "---:|---:|---:|---:|---:|"
    print(head)
    print(rule)
    for name in models:
        row = f"| {name} | {results[threads_list[0]][name]['compile_s']:.1f} |"
        for t in threads_list:
            r = results[t][name]
            ours, eager, comp = r["ours_ms"], r["eager_ms"], r["compiled_ms"]
            comp_text = "n/a" if comp is None else f"{comp:.2f}"
            ratio_text = "n/a" if comp is None else f"{ours / comp:.2f}"
            row += f" {ours:.2f} | {eager:.2f} | {comp_text} | {ours / eager:.2f} | {ratio_text} |"
        print(row)
    for t in threads_list:
        for name in models:
            if results[t][name]["torch_compile_error"]:
                print(f"- {name} {t}T: torch.compile failed: "
                      f"{results[t][name]['torch_compile_error']}")


def main():
    from graph.light_models import LIGHT_MODELS
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=None,
                        help="default: the nine light ONNX models, or with --torch the "
                             "PyTorch ones")
    parser.add_argument("--torch", action="store_true",
                        help="the PyTorch models (graph.from_torch) against eager PyTorch and "
                             "torch.compile instead of the ONNX ones")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--tuned", metavar="DB", default=None,
                        help="build with this tuning database (default: untuned)")
    parser.add_argument("--layout", choices=["auto", "NCHW", "NCHWc"], default="auto",
                        help="graph.build's conv layout (default: auto)")
    parser.add_argument("--profile", action="store_true",
                        help="also print the slowest fused groups per model")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.models is None:
        args.models = list(_torch_models()) if args.torch else list(LIGHT_MODELS)
    if args.child:
        for name in args.models:
            result = measure_torch_model(name, args.threads[0]) if args.torch else \
                measure_model(name, args.threads[0], args.tuned, layout=args.layout)
            print(json.dumps(result), flush=True)
        return
    if args.torch:
        torch_main(args.models, args.threads)
        return
    results = {t: {r["model"]: r for r in run_child(args.models, t, args.tuned,
                                                      layout=args.layout)}
               for t in args.threads}
    first = results[args.threads[0]]
    print(f"host: {cpu_description()}; {'tuned: ' + args.tuned if args.tuned else 'untuned'}; "
          f"conv layout {args.layout}; batch 1, median latency")
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
