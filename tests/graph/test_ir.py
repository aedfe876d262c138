"""The graph IR: types from the op registry, structural equality, printing, errors."""
import dataclasses

import numpy as np
import pytest

from graph.ir import (Call, Constant, Function, Module, TensorType, Var, post_order,
                      structural_hash)
from graph.ops import get_op, registered_ops
from tensorlang.errors import ShapeError, UnsupportedOpError, UserError


def _x(shape=(1, 3, 8, 8)):
    return Var("x", TensorType(shape, "float32"))


def test_call_types_come_from_the_registry():
    x = _x()
    w = Constant("w", np.ones((4, 3, 3, 3), np.float32))
    conv = Call("conv2d", (x, w), {"pads": (1, 1, 1, 1), "strides": (2, 2)})
    assert conv.type == TensorType((1, 4, 4, 4), "float32")
    assert Call("reduce_sum", (conv,), {"axes": (1,), "keepdims": False}).type.shape == (1, 4, 4)
    assert Call("matmul", (Var("a", TensorType((2, 1, 5, 7), "float32")),
                           Var("b", TensorType((3, 7, 4), "float32")))).type.shape == (2, 3, 5, 4)


def test_attrs_are_sorted_pairs_and_nodes_are_immutable():
    c = Call("transpose", (_x(),), {"axes": [0, 2, 3, 1]})
    assert c.attrs == (("axes", (0, 2, 3, 1)),)
    assert c.attr("axes") == (0, 2, 3, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.op = "relu"
    with pytest.raises(ValueError):
        Constant("w", np.ones(3, np.float32)).value[0] = 2.0


def test_structural_equality_and_hash():
    def net(name):
        x = _x()
        w = Constant(name, np.arange(12, dtype=np.float32).reshape(4, 3, 1, 1))
        return Call("relu", (Call("conv2d", (x, w), name=f"conv_{name}"),))
    a, b = net("w1"), net("w2")  # names of constants and nodes do not matter
    assert a == b and hash(a) == hash(b)
    assert structural_hash(a) == structural_hash(b)
    c = Call("sigmoid", a.args)
    assert c != a and structural_hash(c) != structural_hash(a)


def test_deep_shared_graph_hashes_quickly():
    x = _x((4,))
    node = x
    for _ in range(200):  # each node used twice: exponential without cached hashes
        node = Call("add", (node, node))
    assert len(post_order([node])) == 201
    assert hash(node) == hash(node) and len(structural_hash(node)) == 64


def test_type_error_names_op_and_node():
    with pytest.raises(ShapeError, match=r"op add \(node 'bad_add'\): shapes \(2, 3\), \(4,\)"):
        Call("add", (_x((2, 3)), _x((4,))), name="bad_add")
    with pytest.raises(UserError, match="conv2d"):
        Call("conv2d", (_x(), Constant("w", np.ones((4, 5, 3, 3), np.float32))), name="c")


def test_unknown_op():
    with pytest.raises(UnsupportedOpError, match="no graph operator named 'frobnicate'"):
        Call("frobnicate", (_x(),))


def test_printer():
    x = _x((1, 8))
    y = Call("relu", (Call("dense", (x, Constant("w", np.ones((4, 8), np.float32)))),))
    text = str(Module(Function((x,), (y,)), ("x",), ("y",)))
    assert text.splitlines() == [
        "def main(%x: Tensor[1, 8; float32]):",
        "  @w = constant : Tensor[4, 8; float32]",
        "  %0 = dense(%x, @w) : Tensor[1, 4; float32]",
        "  %1 = relu(%0) : Tensor[1, 4; float32]",
        "  return (%1)  # y",
    ]


def test_registry_has_the_required_ops():
    required = {"add", "subtract", "multiply", "divide", "pow", "maximum", "minimum", "relu",
                "leaky_relu", "sigmoid", "tanh", "exp", "log", "sqrt", "erf", "neg", "abs",
                "clip", "cast", "where", "conv2d", "dense", "matmul", "batch_norm", "softmax",
                "log_softmax", "max_pool2d", "avg_pool2d", "global_avg_pool2d",
                "global_max_pool2d", "reshape", "transpose", "concat", "flatten", "squeeze",
                "unsqueeze", "reduce_sum", "reduce_mean", "reduce_max", "reduce_min",
                "layer_norm", "gelu"}
    assert required <= set(registered_ops())
    assert get_op("conv2d").pattern == "out_fusable"
    assert get_op("add").pattern == "broadcast"
