"""Hand-scheduled CPU operators against ONNX Runtime and NumPy, on 1 and 2 threads.

    python benchmarks/cpu_ops.py [--threads 1 2] [--only NAME ...] [--repeat 5]

Rows: matmul 256/512/1024/2048 (``cpu_schedules.matmul_packed``), the ResNet-50 convolutions
(3x3 64->64, 1x1 256->64, 3x3/2 128->128, all at 56x56), a MobileNet depthwise 3x3
(1x144x56x56), softmax over 4096x4096, layer norm 4096x1024 and GELU over 16M elements
(``tensorlang.ops.cpu_schedules``). Each thread count runs in its own process with
TENSORLANG_NUM_THREADS / OPENBLAS_NUM_THREADS / OMP_NUM_THREADS pinned, ORT's
``intra_op_num_threads`` set to the same count, and the peak FMA rate and memory bandwidth
measured in that same process (``peak.py``). Every kernel is checked against ORT (or NumPy)
on random data before it is timed. Times are the best of ``--repeat`` repeats. Prints a
markdown table; writes nothing to disk.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peak  # noqa: E402  (same folder)

CONVS = {  # name: (C, H, W, K, kernel, stride, pad)
    "conv3x3_64": (64, 56, 56, 64, 3, 1, 1),
    "conv1x1_256_64": (256, 56, 56, 64, 1, 1, 0),
    "conv3x3s2_128": (128, 56, 56, 128, 3, 2, 1),
}
ROWS = (["matmul256", "matmul512", "matmul1024", "matmul2048"] + list(CONVS)
        + ["depthwise3x3_144", "softmax4096", "layernorm4096x1024", "gelu16M"])


# -- one ONNX node per operator ---------------------------------------------------------------

def one_node_model(node, inputs, output, initializers=(), opset=17):
    """An ONNX model of one float32 node: ``inputs`` as ``[(name, shape)]``, ``output`` as
    ``(name, shape)``, ``initializers`` as ``[(name, array)]``."""
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [node], "bench",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(shape)) for n, shape in inputs],
        [helper.make_tensor_value_info(output[0], TensorProto.FLOAT, list(output[1]))],
        initializer=[onnx.numpy_helper.from_array(a, name=n) for n, a in initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _ort_session(node, inputs, output, initializers=(), opset=17, spinning=True):
    """An ONNX Runtime session of one node, pinned to ``TENSORLANG_NUM_THREADS`` threads.
    ``spinning=False`` lets ORT's idle workers sleep at once: needed where its calls are
    interleaved with ours, since on few cores its spinning workers (they spin for milliseconds)
    take the cores our next call runs on."""
    import onnxruntime as ort
    model = one_node_model(node, inputs, output, initializers, opset)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(os.environ.get("TENSORLANG_NUM_THREADS", "1"))
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _time(fn, repeat: int, number: int) -> float:
    fn()  # warm up
    return peak.best_time(fn, repeat, number)


# -- the cases: (our schedule, inputs, ORT session + feeds, NumPy callable, work) ------------------

def _case(name: str, lanes: int, rng):
    """``dict(sched, ours_inputs, out_shape, ort, feeds, numpy, flops | bytes)``."""
    from onnx import helper
    from tensorlang.ops import cpu_schedules as cs
    f32 = np.float32
    if name.startswith("matmul"):
        n = int(name[6:])
        a, b = rng.standard_normal((n, n), dtype=f32), rng.standard_normal((n, n), dtype=f32)
        sess = _ort_session(helper.make_node("MatMul", ["A", "B"], ["C"]),
                            [("A", (n, n)), ("B", (n, n))], ("C", (n, n)))
        return dict(sched=cs.matmul_packed(n, n, n, vector_lanes=lanes), ours=[a, b],
                    out=(n, n), ort=sess, feeds={"A": a, "B": b}, numpy=lambda: a @ b,
                    flops=2.0 * n ** 3)
    if name in CONVS:
        c, h, w, k, r, stride, pad = CONVS[name]
        x = rng.standard_normal((1, c, h, w), dtype=f32)
        wt = rng.standard_normal((k, c, r, r), dtype=f32)
        oh, ow = (h + 2 * pad - r) // stride + 1, (w + 2 * pad - r) // stride + 1
        node = helper.make_node("Conv", ["X", "W"], ["Y"], kernel_shape=[r, r],
                                strides=[stride, stride], pads=[pad] * 4)
        # the weights are an initializer, so ORT pre-packs them once, as it would in a model
        sess = _ort_session(node, [("X", x.shape)], ("Y", (1, k, oh, ow)), [("W", wt)])
        sched = cs.conv2d_nchw(1, c, h, w, k, r, stride, pad, vector_lanes=lanes)
        ours = [x, wt]
        if r == 1:  # the 1x1 schedule takes flattened views (no copy)
            ours = [x.reshape(1, c, h * w), wt.reshape(k, c)]
        return dict(sched=sched, ours=ours, out=(1, k, oh, ow), ort=sess, feeds={"X": x},
                    numpy=None, flops=2.0 * k * c * r * r * oh * ow)
    if name == "depthwise3x3_144":
        x = rng.standard_normal((1, 144, 56, 56), dtype=f32)
        wt = rng.standard_normal((144, 1, 3, 3), dtype=f32)
        node = helper.make_node("Conv", ["X", "W"], ["Y"], kernel_shape=[3, 3], group=144,
                                pads=[1] * 4)
        sess = _ort_session(node, [("X", x.shape)], ("Y", x.shape), [("W", wt)])
        return dict(sched=cs.depthwise_conv2d_nchw(1, 144, 56, 56, vector_lanes=lanes),
                    ours=[x, wt], out=x.shape, ort=sess, feeds={"X": x}, numpy=None,
                    flops=2.0 * 9 * x.size, bytes=2.0 * x.nbytes)
    if name == "softmax4096":
        x = rng.standard_normal((4096, 4096), dtype=f32)
        sess = _ort_session(helper.make_node("Softmax", ["X"], ["Y"], axis=-1),
                            [("X", x.shape)], ("Y", x.shape))

        def np_softmax():
            e = np.exp(x - x.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        return dict(sched=cs.softmax_rows(4096, 4096, vector_lanes=lanes), ours=[x],
                    out=x.shape, ort=sess, feeds={"X": x}, numpy=np_softmax,
                    bytes=2.0 * x.nbytes)
    if name == "layernorm4096x1024":
        x = rng.standard_normal((4096, 1024), dtype=f32)
        g, b = rng.standard_normal(1024, dtype=f32), rng.standard_normal(1024, dtype=f32)
        node = helper.make_node("LayerNormalization", ["X", "G", "B"], ["Y"], axis=-1,
                                epsilon=1e-5)
        sess = _ort_session(node, [("X", x.shape)], ("Y", x.shape), [("G", g), ("B", b)])

        def np_layernorm():
            m = x.mean(axis=1, keepdims=True)
            return (x - m) / np.sqrt(x.var(axis=1, keepdims=True) + 1e-5) * g + b
        return dict(sched=cs.layer_norm_rows(4096, 1024, vector_lanes=lanes), ours=[x, g, b],
                    out=x.shape, ort=sess, feeds={"X": x}, numpy=np_layernorm,
                    bytes=2.0 * x.nbytes)
    if name == "gelu16M":
        x = rng.standard_normal(1 << 24, dtype=f32)
        sess = _ort_session(helper.make_node("Gelu", ["X"], ["Y"]), [("X", x.shape)],
                            ("Y", x.shape), opset=20)
        from scipy.special import erf

        def np_gelu():
            return x * 0.5 * (1.0 + erf(x * np.float32(1 / math.sqrt(2))))
        return dict(sched=cs.gelu(1 << 24, vector_lanes=lanes), ours=[x], out=x.shape,
                    ort=sess, feeds={"X": x}, numpy=np_gelu, bytes=2.0 * x.nbytes)
    raise SystemExit(f"unknown row {name!r}; rows: {', '.join(ROWS)}")


def run_child(names, repeat: int) -> dict:
    import tensorlang as tl
    results = {"peak": peak.measure()}
    lanes = peak.vector_lanes()
    rng = np.random.default_rng(0)
    for name in names:
        case = _case(name, lanes, rng)
        big = case.get("flops", 0) > 4e9 or case.get("bytes", 0) > 1e8
        number = 1 if big else 5
        s, args = case["sched"]
        f = tl.build(s, args, target="llvm")
        # our runtime's arrays (64-byte aligned, as tl.nd and the graph executor allocate)
        inputs = [tl.nd.array(a) for a in case["ours"]]
        out = tl.nd.empty([int(d) for d in args[-1].shape], "float32")
        f(*inputs, out)
        expect = case["ort"].run(None, case["feeds"])[0]
        tol = dict(rtol=1e-3, atol=1e-3) if "flops" in case and "bytes" not in case \
            else dict(rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out.numpy().reshape(expect.shape), expect, **tol,
                                   err_msg=f"{name}: ours vs ONNX Runtime")
        ours = min(f.time_evaluator(number=number, repeat=repeat)(*inputs, out).results)
        ort_t = _time(lambda: case["ort"].run(None, case["feeds"]), repeat, number)
        np_t = _time(case["numpy"], repeat, number) if case["numpy"] else None
        results[name] = {"ours": ours, "ort": ort_t, "numpy": np_t,
                         "flops": case.get("flops"), "bytes": case.get("bytes")}
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--only", nargs="*", default=None, help=f"rows: {', '.join(ROWS)}")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.only or ROWS
    if args.child:
        print(json.dumps(run_child(names, args.repeat)))
        return
    import onnxruntime
    print(f"host: {peak.cpu_description()}; ONNX Runtime {onnxruntime.__version__}, "
          f"NumPy {np.__version__}")
    print()
    results, peaks = {}, {}
    for threads in args.threads:
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child",
                               "--threads", str(threads), "--repeat", str(args.repeat),
                               "--only", *names], env=peak.child_env(threads),
                              capture_output=True, text=True)
        if done.returncode:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"child for {threads} thread(s) failed")
        results[threads] = json.loads(done.stdout.strip().splitlines()[-1])
        peaks[threads] = results[threads].pop("peak")
    print("| op | threads | ours ms | ORT ms | NumPy ms | ours GFLOP/s | ours GB/s | "
          "ORT / ours time | % of peak FMA | % of bandwidth | scaling vs 1 thread |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for name in names:
        for threads in args.threads:
            r, pk = results[threads][name], peaks[threads]
            gflops = r["flops"] / r["ours"] / 1e9 if r["flops"] else None
            gbs = r["bytes"] / r["ours"] / 1e9 if r["bytes"] else None
            np_ms = f"{r['numpy'] * 1e3:.3f}" if r["numpy"] else "—"
            pct_fma = f"{100 * gflops / pk['fma_gflops']:.0f}%" if gflops else "—"
            pct_bw = f"{100 * gbs / pk['bandwidth_gbs']:.0f}%" if gbs else "—"
            scaling = "—"
            if threads != 1 and 1 in results:
                scaling = f"{results[1][name]['ours'] / r['ours']:.2f}x"
            print(f"| {name} | {threads} | {r['ours'] * 1e3:.3f} | {r['ort'] * 1e3:.3f} | "
                  f"{np_ms} | {f'{gflops:.1f}' if gflops else '—'} | "
                  f"{f'{gbs:.1f}' if gbs else '—'} | {r['ort'] / r['ours']:.2f}x | "
                  f"{pct_fma} | {pct_bw} | {scaling} |")
    print()
    print("| threads | peak FMA GFLOP/s | copy GB/s | triad GB/s | streaming copy GB/s | "
          "NumPy copy GB/s |")
    print("|--:|--:|--:|--:|--:|--:|")
    for threads, pk in peaks.items():
        print(f"| {threads} | {pk['fma_gflops']:.1f} | {pk['copy_gbs']:.1f} | "
              f"{pk['triad_gbs']:.1f} | {pk['stream_copy_gbs']:.1f} | "
              f"{pk['numpy_copy_gbs']:.1f} |")
    print()
    print("GB/s counts one read of the input and one write of the output; % of bandwidth is "
          "against the best of our copy / triad / streaming-store copy in the same process "
          "(data that fits in cache can exceed 100%).")


if __name__ == "__main__":
    main()
