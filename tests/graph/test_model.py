"""Whole models: a small CNN against ONNX Runtime, fusion, the memory plan, folding, errors."""
import numpy as np
import pytest

from graph_onnx_util import check, helper, make_model, one_node, rand, run_ort

import graph
from tensorlang.errors import UserError


def _cnn():
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1",
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c2", "g", "bb", "m", "v"], ["bn"],
                              name="bn"),
             helper.make_node("Relu", ["bn"], ["r2"], name="relu2"),
             helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], strides=[2, 2],
                              name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1, name="fc"),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1, name="softmax")]
    weights = dict(w1=rand(8, 3, 3, 3), b1=rand(8), w2=rand(8, 8, 3, 3), g=rand(8), bb=rand(8),
                   m=rand(8), v=rand(8, low=0.5, high=1.5), fw=rand(10, 8 * 4 * 4), fb=rand(10))
    return make_model(nodes, [("x", (2, 3, 8, 8), "float32")],
                      [("probs", None, "float32"), ("logits", None, "float32")], weights)


def test_repeated_runs_read_each_new_input_and_write_fresh_outputs():
    """After the first run the executor reuses each kernel call's converted arguments and only
    swaps in the new input and output addresses: every run must still see its own input, and
    an earlier run's results must not change."""
    model = _cnn()
    lib = graph.build(graph.from_onnx(model))
    inputs = [rand(2, 3, 8, 8, low=-k, high=k) for k in (1.0, 2.0, 0.5)]
    results = [lib.run(x) for x in inputs]
    results.append(lib.run(np.asfortranarray(inputs[0])))  # a non-contiguous input, copied
    for x, got in zip(inputs + inputs[:1], results):
        want = run_ort(model, {"x": x})
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    assert not np.array_equal(results[0][1], results[1][1])
    with pytest.raises(UserError, match="shape"):
        lib.run(rand(2, 3, 8, 9))


def test_small_cnn_matches_onnxruntime():
    model = _cnn()
    x = rand(2, 3, 8, 8)
    lib = check(model, {"x": x})
    assert lib.input_names == ("x",) and lib.output_names == ("probs", "logits")
    assert lib.groups[0].startswith("fused_conv2d_add_relu_")
    # the batch norm after the second conv is folded into its weights and bias (graph.passes)
    assert sum(g.startswith("fused_conv2d_add_relu_") for g in lib.groups) == 2
    # positional and by name give the same numbers
    a, b = lib.run(x), lib.run(x=x)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0] is not b[0]  # fresh output arrays per run
    profile = lib.profile(x, number=2)
    assert sorted(name for name, _ in profile) == sorted(lib.groups)
    assert [t for _, t in profile] == sorted((t for _, t in profile), reverse=True)
    assert 0 < lib.planned_bytes <= lib.naive_bytes


def test_conv_bias_relu_is_one_kernel():
    x = rand(1, 3, 8, 8)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    model = make_model(nodes, [("x", x.shape, "float32")], [("y", None, "float32")],
                       {"w": rand(4, 3, 3, 3), "b": rand(4)})
    lib = check(model, {"x": x})
    assert lib.num_kernels == 1


def test_batch_norm_relu_is_one_kernel():
    x = rand(2, 3, 4, 4)
    nodes = [helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["n"]),
             helper.make_node("Relu", ["n"], ["y"])]
    model = make_model(nodes, [("x", x.shape, "float32")], [("y", None, "float32")],
                       dict(g=rand(3), b=rand(3), m=rand(3), v=rand(3, low=0.5, high=1.5)))
    assert check(model, {"x": x}).num_kernels == 1


def test_memory_plan_reuses_buffers_and_identical_groups_compile_once():
    x = rand(4, 64)
    nodes, prev = [], "x"
    for i in range(6):  # a chain of dense + tanh layers: two live buffers suffice
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"]))
        nodes.append(helper.make_node("Tanh", [f"h{i}"], [f"t{i}"]))
        prev = f"t{i}"
    model = make_model(nodes, [("x", x.shape, "float32")], [(prev, None, "float32")],
                       {f"w{i}": rand(64, 64) for i in range(6)})
    # six chained 64-term float32 sums: summation order alone moves the last digits
    lib = check(model, {"x": x}, atol=1e-4)
    assert lib.num_kernels == 6 and lib.num_compiled == 1
    assert lib.naive_bytes == 5 * 4 * 64 * 4
    assert lib.planned_bytes == 2 * 4 * 64 * 4


def test_constant_subgraphs_are_folded():
    # Shape -> Gather -> Unsqueeze -> Concat -> Reshape, and arithmetic on weights
    x = rand(2, 3, 4)
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"]),
             helper.make_node("Constant", [], ["k"], value=helper.make_tensor(
                 "k", 1, [12], rand(12).tolist())),
             helper.make_node("Mul", ["k", "two"], ["k2"]),
             helper.make_node("Add", ["flat", "k2"], ["y"])]
    model = make_model(nodes, [("x", x.shape, "float32")], [("y", None, "float32")],
                       {"zero": np.array(0, np.int64), "ax": np.array([0], np.int64),
                        "minus1": np.array([-1], np.int64), "two": rand(12)})
    mod = graph.from_onnx(model)
    ops = [line.split("= ")[1].split("(")[0] for line in str(mod).splitlines()
           if line.strip().startswith("%")]
    assert ops == ["reshape", "add"]
    check(model, {"x": x})


def test_initializers_listed_as_inputs_are_weights():
    x = rand(2, 5)
    w = rand(5, 3)
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    model = make_model([node], [("x", x.shape, "float32"), ("w", w.shape, "float32")],
                       [("y", None, "float32")], {"w": w})
    mod = graph.from_onnx(model)
    assert mod.input_names == ("x",)
    np.testing.assert_allclose(graph.build(mod).run(x)[0], x @ w, rtol=1e-5)


def test_symbolic_input_dims():
    node = helper.make_node("Relu", ["x"], ["y"])
    model = make_model([node], [("x", ("batch", 4), "float32")], [("y", None, "float32")])
    with pytest.raises(UserError, match=r"input 'x' has symbolic dimensions.*shape="):
        graph.from_onnx(model)
    with pytest.raises(UserError, match="not inputs of the model"):
        graph.from_onnx(model, shape={"input": (3, 4)})
    with pytest.raises(UserError, match="does not fit"):
        graph.from_onnx(model, shape={"x": (3, 5)})
    x = rand(3, 4)
    check(model, {"x": x}, shape={"x": (3, 4)})


def test_unsupported_ops_are_all_listed():
    nodes = [helper.make_node("Unique", ["x"], ["v"], name="unique_1"),
             helper.make_node("Relu", ["v"], ["r"], name="ok_relu"),
             helper.make_node("Bernoulli", ["r"], ["h"], name="bernoulli_2"),
             helper.make_node("MyOp", ["h"], ["y"], name="custom_3", domain="my.domain")]
    model = make_model(nodes, [("x", (2, 8), "float32")], [("y", None, "float32")])
    with pytest.raises(UserError) as info:
        graph.from_onnx(model)
    message = str(info.value)
    assert "3 unsupported node(s)" in message
    for piece in ("Unique (node 'unique_1')", "Bernoulli (node 'bernoulli_2')",
                  "my.domain.MyOp (node 'custom_3')"):
        assert piece in message
    assert "Relu" not in message


def test_bad_run_arguments_name_the_input():
    x = rand(2, 3)
    lib = graph.build(graph.from_onnx(one_node("Add", {"x": x, "y": x})))
    with pytest.raises(UserError, match=r"input 'y' must have shape \(2, 3\), got \(3, 2\)"):
        lib.run(x, x.T.copy())
    with pytest.raises(UserError, match=r"input 'x' must be float32, got float64"):
        lib.run(x=x.astype(np.float64), y=x)
    with pytest.raises(UserError, match=r"no input named 'z'.*\['x', 'y'\]"):
        lib.run(x=x, z=x)
    with pytest.raises(UserError, match=r"input 'y' is missing"):
        lib.run(x)
    with pytest.raises(UserError, match="takes 2 inputs"):
        lib.run(x, x, x)
    np.testing.assert_allclose(lib.run(x, y=x)[0], run_ort(one_node("Add", {"x": x, "y": x}),
                                                           {"x": x, "y": x})[0])


def test_model_file_path(tmp_path):
    x = rand(2, 3)
    model = one_node("Sigmoid", {"x": x})
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    lib = graph.build(graph.from_onnx(str(path)))
    np.testing.assert_allclose(lib.run(x)[0], 1 / (1 + np.exp(-x)), rtol=1e-5)
    with pytest.raises(UserError, match="no such file"):
        graph.from_onnx(str(tmp_path / "missing.onnx"))


def test_residual_block_with_branches_and_concat():
    # conv-relu, then a diamond (conv-bn and a depthwise conv) joined by Add, Concat with the
    # skip path, global pooling and a classifier
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["a1"]),
             helper.make_node("Conv", ["a1", "w1"], ["b"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["b", "g", "bb", "m", "v"], ["b1"]),
             helper.make_node("Conv", ["a1", "wd"], ["c"], pads=[1, 1, 1, 1], group=4),
             helper.make_node("Add", ["b1", "c"], ["s"]),
             helper.make_node("Relu", ["s"], ["s1"]),
             helper.make_node("Concat", ["s1", "a1"], ["cat"], axis=1),
             helper.make_node("GlobalAveragePool", ["cat"], ["gp"]),
             helper.make_node("Flatten", ["gp"], ["f"]),
             helper.make_node("Gemm", ["f", "fw"], ["y"], transB=1)]
    weights = dict(w0=rand(4, 3, 3, 3), b0=rand(4), w1=rand(4, 4, 3, 3), g=rand(4),
                   bb=rand(4), m=rand(4), v=rand(4, low=0.5, high=1.5), wd=rand(4, 1, 3, 3),
                   fw=rand(5, 8))
    model = make_model(nodes, [("x", (2, 3, 6, 6), "float32")], [("y", None, "float32")],
                       weights)
    lib = check(model, {"x": rand(2, 3, 6, 6)})
    assert lib.planned_bytes < lib.naive_bytes


def test_fully_constant_model():
    node = helper.make_node("Add", ["a", "b"], ["y"])
    model = make_model([node], [], [("y", None, "float32")], {"a": rand(3), "b": rand(3)})
    lib = graph.build(graph.from_onnx(model))
    assert lib.num_kernels == 0 and lib.input_names == ()
    np.testing.assert_allclose(lib.run()[0], run_ort(model, {})[0])


def test_converter_errors_name_the_node():
    feeds = {"x": rand(2, 6), "s": np.array([3, 4], np.int64)}
    with pytest.raises(UserError, match=r"'reshape_0' \(Reshape\): the target shape must be a "
                                        "constant"):
        graph.from_onnx(one_node("Reshape", feeds))
    x = rand(2, 6)
    bad = one_node("Reshape", {"x": x}, initializers={"s": np.array([5, -1], np.int64)})
    with pytest.raises(UserError, match=r"'reshape_0' \(Reshape\): cannot reshape \(2, 6\)"):
        graph.from_onnx(bad)
