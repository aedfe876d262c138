"""Each form of a convolution layer, untuned, beside ONNX Runtime: the layers are one-node ONNX
models (conv + bias + relu) built by ``graph.build`` once per form:

- ``im2col``: NCHW, im2col + one BLAS call (``layout="NCHW"``);
- ``direct``: the blocked NCHW16c direct kernel with its default schedule;
- ``wino-blas`` / ``wino-dsl``: Winograd F(4x4, 3x3), its 36 products one grouped BLAS call or
  a DSL reduction with the auto-scheduler's default schedule (3x3 stride-1 layers only);
- ``auto``: what ``layout="auto"`` picks by timing them (named in the last column).

Every form includes the layout transforms from and to NCHW and the executor's call, so the rows
compare what a one-conv model costs. All are timed in interleaved rounds (median of the
per-round times), each thread count in its own process with ours and ORT pinned to it.

    python benchmarks/conv_forms.py --threads 1 2
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peak import child_env, cpu_description

# (name, channels, height = width, filters, kernel, stride, pad): ResNet-50's 3x3 layers and
# VGG's widest early one, batch 1
LAYERS = [("r50 64x56", 64, 56, 64, 3, 1, 1), ("r50 128x28", 128, 28, 128, 3, 1, 1),
          ("r50 256x14", 256, 14, 256, 3, 1, 1), ("r50 512x7", 512, 7, 512, 3, 1, 1),
          ("vgg 128x112", 128, 112, 128, 3, 1, 1)]
FORMS = ["im2col", "direct", "wino-blas", "wino-dsl", "auto"]


def _model(channels, size, filters, kernel, stride, pad, rng):
    import onnx
    from onnx import TensorProto, helper
    w = rng.standard_normal((filters, channels, kernel, kernel)).astype(np.float32) * 0.05
    b = rng.standard_normal(filters).astype(np.float32)
    out = (size + 2 * pad - kernel) // stride + 1
    nodes = [helper.make_node("Conv", ["X", "W", "B"], ["C"], pads=[pad] * 4,
                              strides=[stride] * 2, kernel_shape=[kernel, kernel]),
             helper.make_node("Relu", ["C"], ["Y"])]
    g = helper.make_graph(
        nodes, "layer", [helper.make_tensor_value_info("X", TensorProto.FLOAT,
                                                       [1, channels, size, size])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, filters, out, out])],
        initializer=[onnx.numpy_helper.from_array(w, "W"), onnx.numpy_helper.from_array(b, "B")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _builds(model) -> dict:
    """``{form: (built library or None, label)}``."""
    import graph
    from graph.passes import optimize
    from graph.passes.layout import convert_conv_layout, winograd_conv
    mod = graph.from_onnx(model)
    libs = {"im2col": graph.build(mod, layout="NCHW"),
            "direct": graph.build(convert_conv_layout(optimize(mod)), layout="NCHW")}
    for product in ("blas", "dsl"):
        opt = optimize(mod)
        can = any(winograd_conv(c) for c in _convs(opt))
        libs[f"wino-{product}"] = graph.build(convert_conv_layout(
            opt, winograd=lambda conv, p=product: p), layout="NCHW") if can else None
    libs["auto"] = graph.build(mod)
    return libs


def _convs(mod):
    from graph.ir import Call, post_order
    return [n for n in post_order(mod.function.outputs)
            if isinstance(n, Call) and n.op == "conv2d"]


def run_child(rounds: int) -> None:
    import onnxruntime as ort
    from tune_common import _interleaved
    threads = int(os.environ["TENSORLANG_NUM_THREADS"])
    rng = np.random.default_rng(0)
    for name, c, size, k, kernel, stride, pad in LAYERS:
        model = _model(c, size, k, kernel, stride, pad, rng)
        x = rng.standard_normal((1, c, size, size)).astype(np.float32)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        (want,) = sess.run(None, {"X": x})
        libs = _builds(model)
        fns = {"ORT": lambda sess=sess, x=x: sess.run(None, {"X": x})}
        for form, lib in libs.items():
            if lib is None:
                continue
            np.testing.assert_allclose(lib.run(x)[0], want, rtol=2e-3, atol=2e-3)
            fns[form] = lambda lib=lib, x=x: lib.run(x)
        times = _interleaved(fns, rounds)
        ms = {f: float(np.median(t)) * 1e3 for f, t in times.items()}
        print(json.dumps({"layer": name, "ms": ms, "auto": _auto_form(libs["auto"])}),
              flush=True)


def _auto_form(lib) -> str:
    kernels = [g for g in lib.groups if "conv" in g]
    text = " ".join(kernels)
    if "winograd" in text:
        return "wino"
    return "direct" if "nchwc" in text else "im2col"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.rounds)
        return
    print(f"host: {cpu_description()}; untuned; batch 1; median of {args.rounds} interleaved "
          f"rounds; ms per model call (ORT / ours in the last columns)")
    print("| layer | threads | " + " | ".join(FORMS) + " | ORT | auto picks | ORT / auto |")
    print("|---|--:|" + "--:|" * (len(FORMS) + 1) + "---|--:|")
    for t in args.threads:
        command = [sys.executable, os.path.abspath(__file__), "--child",
                   "--rounds", str(args.rounds)]
        out = subprocess.run(command, env=child_env(t), stdout=subprocess.PIPE, text=True,
                             check=True).stdout
        for line in out.splitlines():
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            ms = r["ms"]
            cells = " | ".join(f"{ms[f]:.3f}" if f in ms else "-" for f in FORMS)
            print(f"| {r['layer']} | {t} | {cells} | {ms['ORT']:.3f} | {r['auto']} | "
                  f"{ms['ORT'] / ms['auto']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
