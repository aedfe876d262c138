"""Multi-output operators (Split, TopK, MaxPool with indices) through build and the executor,
and the errors for unsupported ONNX nodes."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
from onnx import TensorProto, helper  # noqa: E402

import graph  # noqa: E402
from graph.ir import TupleGetItem  # noqa: E402
from tensorlang.errors import UnsupportedOpError  # noqa: E402


def _model(nodes, inputs, outputs, initializers=(), opset=18):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _info(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def test_split_outputs_feed_consumers_and_model_outputs():
    nodes = [helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3),
             helper.make_node("Relu", ["a"], ["ra"]),
             helper.make_node("Add", ["b", "c"], ["bc"])]
    m = _model(nodes, [_info("x", TensorProto.FLOAT, [2, 6])],
               [_info("ra", TensorProto.FLOAT, None), _info("bc", TensorProto.FLOAT, None),
                _info("c", TensorProto.FLOAT, None)])
    mod = graph.from_onnx(m)
    assert any(isinstance(o, TupleGetItem) for o in mod.function.outputs)
    lib = graph.build(mod)
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    ra, bc, c = lib.run(x)
    np.testing.assert_allclose(ra, np.maximum(x[:, :2], 0))
    np.testing.assert_allclose(bc, x[:, 2:4] + x[:, 4:])
    np.testing.assert_allclose(c, x[:, 4:])


def test_topk_values_and_indices():
    k = helper.make_tensor("k", TensorProto.INT64, [1], [2])
    m = _model([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=-1)],
               [_info("x", TensorProto.FLOAT, [3, 5])],
               [_info("v", TensorProto.FLOAT, None), _info("i", TensorProto.INT64, None)],
               initializers=[k])
    x = np.array([[1, 5, 3, 5, 0], [2, 2, 2, 2, 2], [-1, -3, 4, 0, 9]], np.float32)
    v, i = graph.build(graph.from_onnx(m)).run(x)
    np.testing.assert_array_equal(i, [[1, 3], [0, 1], [4, 2]])
    np.testing.assert_array_equal(v, [[5, 5], [2, 2], [9, 4]])


def test_unsupported_op_names_the_node():
    m = _model([helper.make_node("Unique", ["x"], ["y"], name="my_unique")],
               [_info("x", TensorProto.FLOAT, [4])], [_info("y", TensorProto.FLOAT, None)])
    with pytest.raises(UnsupportedOpError, match="my_unique"):
        graph.from_onnx(m)


def test_unsupported_attribute_names_the_node():
    m = _model([helper.make_node("Resize", ["x", "", "s"], ["y"], mode="cubic",
                                 antialias=1, name="rs")],
               [_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
               [_info("y", TensorProto.FLOAT, None)],
               initializers=[helper.make_tensor("s", TensorProto.FLOAT, [4], [1, 1, .5, .5])])
    with pytest.raises(UnsupportedOpError, match="'rs'.*antialias"):
        graph.from_onnx(m)
