"""Shared driver of ``tune_matmul.py`` and ``tune_conv2d.py``: tune one workload with
``autotune.tune`` in stages (64, 200, 1000 trials by default), then time the best schedule
found at each stage beside ONNX Runtime, NumPy and the hand schedule of ``cpu_schedules``, in
the same process. For a convolution, the same layer built by ``graph.build`` (untuned, which
picks the blocked kernel, im2col + BLAS or Winograd by timing them) is timed beside them.

The workloads are ``autotune.workloads.matmul`` and ``conv2d_nchw`` (importable by name, as
build and measure workers need), so their records serve any user who tunes the same shapes.

Each thread count runs in its own process with ``TENSORLANG_NUM_THREADS`` and the BLAS / ORT
thread counts pinned to it; the tuning database is a fresh SQLite file per thread count unless
``--database`` names one (a tuning record belongs to the CPU and thread count it was measured
with). The trial counts are totals: the records a named database already holds count, so a
run resumes (``--trials 1000`` on a file with 500 records tunes 500 more). After tuning, every
variant and peer is timed in interleaved rounds; the report gives the best round and the median
of the per-round ratios to the peer.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peak  # noqa: E402

import autotune  # noqa: E402
import tensorlang as tl  # noqa: E402


# -- peers ----------------------------------------------------------------------------------------

def _ort_matmul(m, n, k, threads):
    import onnxruntime  # noqa: F401  (ImportError: no peer)
    from cpu_ops import _ort_session
    from onnx import helper
    node = helper.make_node("MatMul", ["A", "B"], ["C"])
    return _ort_session(node, [("A", (m, k)), ("B", (k, n))], ("C", (m, n)), spinning=False)


def _conv_node(batch, channels, height, width, filters, kernel, stride, pad):
    """The ONNX Conv node of the layer and its output ``(name, shape)``."""
    from onnx import helper
    oh = (height + 2 * pad - kernel) // stride + 1
    ow = (width + 2 * pad - kernel) // stride + 1
    node = helper.make_node("Conv", ["X", "W"], ["Y"], pads=[pad] * 4, strides=[stride] * 2,
                            kernel_shape=[kernel, kernel])
    return node, ("Y", (batch, filters, oh, ow))


def _ort_conv(batch, channels, height, width, filters, kernel, stride, pad, weight):
    import onnxruntime  # noqa: F401
    from cpu_ops import _ort_session
    node, output = _conv_node(batch, channels, height, width, filters, kernel, stride, pad)
    return _ort_session(node, [("X", (batch, channels, height, width))], output,
                        initializers=[("W", weight)], spinning=False)


def _setup(kind: str, args: tuple, rng):
    """Inputs, the reference output, peers ``{name: callable}`` and the hand schedule."""
    from codegen.llvm import host_target
    from tensorlang.ops import cpu_schedules as cs
    lanes = host_target().vector_bits // 32
    threads = int(os.environ.get("TENSORLANG_NUM_THREADS", "1"))
    peers = {}
    if kind == "matmul":
        m, n, k = args
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        inputs, expected = [a, b], a @ b
        peers["NumPy"] = lambda: a @ b
        try:
            sess = _ort_matmul(m, n, k, threads)
            peers["ONNX Runtime"] = lambda: sess.run(None, {"A": a, "B": b})
        except ImportError:
            pass
        hand = cs.matmul_packed(m, n, k, vector_lanes=lanes)
    else:
        batch, channels, height, width, filters, kernel, stride, pad = args
        x = rng.standard_normal((batch, channels, height, width), dtype=np.float32)
        w = rng.standard_normal((filters, channels, kernel, kernel), dtype=np.float32)
        inputs = [x, w]
        expected = None
        try:
            sess = _ort_conv(batch, channels, height, width, filters, kernel, stride, pad, w)
            expected = sess.run(None, {"X": x})[0]
            peers["ONNX Runtime"] = lambda: sess.run(None, {"X": x})
        except ImportError:
            pass
        hand = cs.conv2d_nchw(batch, channels, height, width, filters, kernel, stride=stride,
                              padding=pad, vector_lanes=lanes)
    return inputs, expected, peers, hand


def _interleaved(fns: dict, rounds: int, number: int = 3, warmup: int = 2) -> dict:
    """``{name: [seconds per call in each round]}``: every callable timed once per round, in
    turn, so that a slow spell of this (shared, noisy) host hits all of them alike. Each turn
    starts with ``warmup`` untimed calls: the previous callable's pool may still have workers
    spinning. (ORT's spin for milliseconds, long enough to halve the speed of our next 2-thread
    call on a 2-core host: the ORT peers here are made with spinning off.)"""
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(warmup):
                fn()
            times[name].append(peak.best_time(fn, 1, number))
    return times


def _tasks(kind: str, args: tuple) -> list:
    """The tasks tuned for the layer: the workload itself and, for a 3x3 stride-1 conv with
    outputs of at least 8 x 8, its Winograd F(4x4, 3x3) form, in one group (the tuner splits
    the trials between them by expected gain; the faster one's best record is reported)."""
    task = autotune.Task(kind_workload(kind), args=args, target="llvm")
    if kind != "conv2d":
        return [task]
    batch, channels, height, width, filters, kernel, stride, pad = args
    oh, ow = height + 2 * pad - kernel + 1, width + 2 * pad - kernel + 1
    from autotune.workloads import conv2d_winograd_nchw
    from graph.passes.layout import WINOGRAD_MIN_OUTPUT, WINOGRAD_TILE  # the build's rule
    if (kernel, stride) != (3, 1) or min(oh, ow) < WINOGRAD_MIN_OUTPUT:
        return [task]
    group = f"conv2d{args}"
    return [autotune.Task(kind_workload(kind), args=args, target="llvm", group=group),
            autotune.Task(conv2d_winograd_nchw, args=(batch, channels, height, width, filters,
                                                      pad, WINOGRAD_TILE), target="llvm",
                          group=group)]


def _algorithm(task) -> str:
    return "Winograd" if "winograd" in task.workload_name else "direct"


def run_child(kind: str, args: tuple, stages: list[int], database: str, repeat: int) -> dict:
    """Tune to each total of ``stages`` (records already in ``database`` count: a run resumes),
    then time every variant and peer in interleaved rounds."""
    tasks = _tasks(kind, args)
    task = tasks[0]
    flops = task.flop_count()  # the direct computation's: Winograd rows report effective rates
    rng = np.random.default_rng(0)
    inputs, expected, peers, hand = _setup(kind, args, rng)
    out_shape = [int(d) for d in task.outputs[0].shape]
    nd_inputs = [tl.nd.array(a) for a in inputs]
    if len(tasks) > 1:
        from tensorlang.ops.winograd import winograd_weight
        from graph.passes.layout import WINOGRAD_TILE
        weight = tl.nd.array(winograd_weight(inputs[1], WINOGRAD_TILE))
        winograd_inputs = [nd_inputs[0], weight]
    inputs_of = {id(t): nd_inputs if _algorithm(t) == "direct" else winograd_inputs
                 for t in tasks}

    def callable_of(s, args_, nd_in=nd_inputs):
        f = tl.build(s, args_, target="llvm")
        out = tl.nd.empty(out_shape, "float32")
        f(*nd_in, out)
        if expected is not None:
            np.testing.assert_allclose(out.numpy(), expected, rtol=2e-3, atol=2e-3)
        arrays = list(nd_in) + [out]
        return lambda: f(*arrays)

    fns = {}
    s, a = autotune.Task(kind_workload(kind), args=args).apply_best(None)
    fns["default"] = callable_of(s, a)
    for alt in tasks[1:]:
        s, a = alt.apply_best(None)
        fns[f"default ({_algorithm(alt)})"] = callable_of(s, a, inputs_of[id(alt)])
    hand_s, hand_args = hand
    if kind == "conv2d" and len(hand_args) == 3 and len(hand_args[0].shape) != 4:
        hand_args = None  # the 1x1 hand schedule takes flat views: not comparable here
    if hand_args is not None:
        fns["hand"] = callable_of(hand_s, hand_args)
    with autotune.Database(database) as db:
        done = sum(db.count(t.key, t.target_key) for t in tasks)
    rows = {"stages": [], "peers": {}, "hand": None, "default": None, "resumed_from": done,
            "alternatives": [_algorithm(t) for t in tasks[1:]]}
    wall = 0.0
    for target in stages:
        if target > done:
            start = time.perf_counter()
            autotune.tune(tasks, trials=target - done, database=database,
                          progress=sys.stderr.isatty(), seed=target)
            wall += time.perf_counter() - start
            done = target
        elif target < done:
            continue  # the database already holds more trials than this stage
        best = autotune.best_task(tasks, database)
        s, a = best.apply_best(database)
        fns[f"tuned {target}"] = callable_of(s, a, inputs_of[id(best)])
        with autotune.Database(database) as db:
            split = {_algorithm(t): db.count(t.key, t.target_key) for t in tasks}
        rows["stages"].append({"trials": target, "wall": wall, "algorithm": _algorithm(best),
                               "split": split})
    if kind == "conv2d":
        graph_fn, label = _graph_conv(args, inputs, expected)
        if graph_fn is not None:
            fns[label] = graph_fn
            rows["graph"] = label
    for name, fn in peers.items():
        fn()
        fns[name] = fn
    times = _interleaved(fns, rounds=max(repeat, 3) * 3)
    ref = "ONNX Runtime" if "ONNX Runtime" in peers else ("NumPy" if "NumPy" in peers else None)
    ratios = {name: float(np.median(np.array(times[ref]) / np.array(t))) if ref else None
              for name, t in times.items()}
    best = {name: min(t) for name, t in times.items()}
    rows["default"], rows["hand"] = best["default"], best.get("hand")
    rows["alternative_defaults"] = {name: best[f"default ({name})"]
                                    for name in rows["alternatives"]}
    rows["median_ratio"] = ratios
    for st in rows["stages"]:
        st["seconds"] = best[f"tuned {st['trials']}"]
    rows["peers"] = {name: best[name] for name in peers}
    if rows.get("graph"):
        rows["graph_seconds"] = best[rows["graph"]]
    rows["flops"] = flops
    return rows


def _graph_conv(args: tuple, inputs: list, expected):
    """The same layer as a one-node ONNX model through ``graph.build`` (untuned, conv layout
    "auto": blocked, im2col + BLAS or Winograd F(4x4, 3x3), whichever times fastest here,
    with the layout transforms from and to NCHW), as ``(callable, label)``; (None, None)
    without the onnx package."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        return None, None
    import graph
    from cpu_ops import one_node_model
    x, w = inputs
    node, output = _conv_node(*args)
    model = one_node_model(node, [("X", x.shape)], output, initializers=[("W", w)])
    lib = graph.build(graph.from_onnx(model))
    (out,) = lib.run(x)
    if expected is not None:
        np.testing.assert_allclose(out, expected, rtol=2e-3, atol=2e-3)
    form = "Winograd" if any("winograd" in g for g in lib.groups) else \
        "blocked" if any("nchwc" in g for g in lib.groups) else "im2col+BLAS"
    return (lambda: lib.run(x)), f"graph.build, untuned ({form})"


def kind_workload(kind: str):
    from autotune import workloads
    return {"matmul": workloads.matmul, "conv2d": workloads.conv2d_nchw}[kind]


def main(kind: str, default_args: tuple, description: str) -> None:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--trials", type=int, nargs="+", default=[64, 200, 1000],
                    help="report the best schedule after each of these trial counts")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--database", default=None,
                    help="SQLite file (default: a fresh one per thread count)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--args", type=int, nargs="+", default=list(default_args),
                    help="workload arguments")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    opts = ap.parse_args()
    stages = sorted(set(opts.trials))
    if opts.child is not None:
        print(json.dumps(run_child(kind, tuple(opts.args), stages, opts.database, opts.repeat)))
        return
    print(peak.cpu_description())
    print(f"{kind}{tuple(opts.args)}: tuned after {stages} trials, "
          "times from interleaved rounds, threads pinned per row")
    for threads in opts.threads:
        database = opts.database or os.path.join(tempfile.mkdtemp(prefix="tune_bench_"),
                                                 f"{kind}_{threads}t.db")
        cmd = [sys.executable, os.path.abspath(sys.argv[0]), "--child", str(threads),
               "--database", database, "--repeat", str(opts.repeat),
               "--trials", *map(str, stages), "--args", *map(str, opts.args)]
        proc = subprocess.run(cmd, env=peak.child_env(threads), capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{threads}-thread run failed")
        rows = json.loads(proc.stdout.strip().splitlines()[-1])
        _report(threads, rows, database)


def _report(threads: int, rows: dict, database: str) -> None:
    flops = rows["flops"]

    def gf(seconds):
        return flops / seconds / 1e9

    ref = rows["peers"].get("ONNX Runtime") or rows["peers"].get("NumPy")
    ref_name = "ONNX Runtime" if "ONNX Runtime" in rows["peers"] else "NumPy"
    median = rows.get("median_ratio", {})
    print(f"\n{threads} thread(s), database {database}"
          + (f" (resumed with {rows['resumed_from']} trials in it)"
             if rows.get("resumed_from") else ""))
    print(f"{'variant':<40}{'ms':>10}{'GFLOP/s':>10}{'vs ' + ref_name:>20}"
          f"{'median ratio':>14}{'tuning wall s':>15}")
    lines = [("default schedule (untuned)", "default", rows["default"], None)]
    for name, sec in rows.get("alternative_defaults", {}).items():
        lines.append((f"default schedule ({name})", f"default ({name})", sec, None))
    if rows["hand"]:
        lines.append(("hand schedule", "hand", rows["hand"], None))
    for st in rows["stages"]:
        algo = f" ({st['algorithm']})" if rows.get("alternatives") else ""
        lines.append((f"tuned, {st['trials']} trials{algo}", f"tuned {st['trials']}",
                      st["seconds"], st["wall"]))
    if rows.get("graph"):
        lines.append((rows["graph"], rows["graph"], rows["graph_seconds"], None))
    lines += [(name, name, sec, None) for name, sec in rows["peers"].items()]
    for label, key, sec, wall in lines:
        ratio = f"{ref / sec:.2f}x" if ref else "-"
        med = f"{median[key]:.2f}x" if median.get(key) else "-"
        wall_s = f"{wall:.0f}" if wall else ""
        print(f"{label:<40}{sec * 1e3:>10.3f}{gf(sec):>10.1f}{ratio:>20}{med:>14}{wall_s:>15}")
    print("(ms and the first ratio: the best round; median ratio: the median over interleaved "
          "rounds of the peer's time / this variant's)")
    if rows.get("alternatives") and rows["stages"]:
        split = ", ".join(f"{n} {c}" for n, c in rows["stages"][-1]["split"].items())
        print(f"trials per algorithm (one group, split by the task scheduler): {split}")
    timed = [st for st in rows["stages"] if st["wall"]]
    if timed:
        last = timed[-1]
        new_trials = last["trials"] - rows.get("resumed_from", 0)
        print(f"measured trials per minute: {new_trials / last['wall'] * 60:.1f}")
    if rows["stages"]:
        last = rows["stages"][-1]
        if rows["hand"]:
            print(f"tuned / hand schedule: {rows['hand'] / last['seconds']:.2f}x")
        print(f"default within {last['seconds'] and rows['default'] / last['seconds']:.2f}x "
              "of the tuned time")
        same = rows.get("alternative_defaults", {}).get(last.get("algorithm"))
        if same:
            print(f"{last['algorithm']} default within {same / last['seconds']:.2f}x of its "
                  "tuned time")
