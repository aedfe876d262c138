"""Graph passes: batch-norm folding and common subexpressions, checked against ONNX Runtime."""
import numpy as np

from graph_onnx_util import helper, make_model, rand, run_ort

import graph
from graph import passes
from graph.ir import Call, post_order


def _ops(mod):
    return [n.op for n in post_order(mod.function.outputs) if isinstance(n, Call)]


def _bn_inits(channels, rng):
    return {"gamma": rng.uniform(0.5, 1.5, channels).astype("float32"),
            "beta": rng.standard_normal(channels).astype("float32"),
            "mean": rng.standard_normal(channels).astype("float32"),
            "var": rng.uniform(0.5, 2.0, channels).astype("float32")}


def _conv_bn_relu(with_bias):
    rng = np.random.default_rng(4)
    inits = {"w": rand(6, 3, 3, 3), **_bn_inits(6, rng)}
    conv_inputs = ["x", "w"]
    if with_bias:
        inits["b"] = rand(6)
        conv_inputs.append("b")
    nodes = [helper.make_node("Conv", conv_inputs, ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"],
                              epsilon=1e-3),
             helper.make_node("Relu", ["n"], ["y"])]
    return make_model(nodes, [("x", (1, 3, 7, 7), "float32")], [("y", None, "float32")], inits)


def test_batch_norm_folds_into_conv_with_and_without_bias():
    for with_bias in (False, True):
        model = _conv_bn_relu(with_bias)
        mod = passes.optimize(graph.from_onnx(model))
        assert "batch_norm" not in _ops(mod) and _ops(mod).count("conv2d") == 1
        lib = graph.build(graph.from_onnx(model))
        assert lib.num_kernels == 1  # conv + folded bias + relu
        x = rand(1, 3, 7, 7)
        np.testing.assert_allclose(lib.run(x)[0], run_ort(model, {"x": x})[0], rtol=1e-4,
                                   atol=1e-5)


def test_batch_norm_after_a_shared_conv_is_a_multiply_add():
    rng = np.random.default_rng(5)
    inits = {"w": rand(4, 2, 1, 1), **_bn_inits(4, rng)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"]),
             helper.make_node("Add", ["n", "c"], ["y"])]  # the conv is read twice: no folding
    model = make_model(nodes, [("x", (1, 2, 5, 5), "float32")], [("y", None, "float32")], inits)
    mod = passes.optimize(graph.from_onnx(model))
    ops = _ops(mod)
    assert "batch_norm" not in ops and "multiply" in ops
    x = rand(1, 2, 5, 5)
    np.testing.assert_allclose(graph.build(graph.from_onnx(model)).run(x)[0],
                               run_ort(model, {"x": x})[0], rtol=1e-4, atol=1e-5)


def test_common_subexpressions_become_one_node():
    nodes = [helper.make_node("Exp", ["x"], ["a"]), helper.make_node("Exp", ["x"], ["b"]),
             helper.make_node("Mul", ["a", "b"], ["y"])]
    model = make_model(nodes, [("x", (3, 4), "float32")], [("y", None, "float32")])
    mod = passes.eliminate_common_subexpressions(graph.from_onnx(model))
    assert _ops(mod).count("exp") == 1
    x = rand(3, 4)
    np.testing.assert_allclose(graph.build(graph.from_onnx(model)).run(x)[0], np.exp(2 * x),
                               rtol=1e-5)
