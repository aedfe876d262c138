"""One-node ONNX models per supported operator, compared with ONNX Runtime on random data."""
import numpy as np
import pytest

from graph_onnx_util import check, helper, make_model, one_node, rand


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min"])
def test_binary_broadcast(op):
    a, b = rand(2, 3, 4), rand(3, 1, low=0.5, high=1.5)
    check(one_node(op, {"a": a, "b": b}), {"a": a, "b": b})


@pytest.mark.parametrize("op", ["Sum", "Mean", "Max"])
def test_variadic(op):
    feeds = {"a": rand(2, 3), "b": rand(3), "c": rand(1, 3)}
    check(one_node(op, feeds), feeds)


def test_pow_with_constant_exponent_of_another_dtype():
    a = rand(2, 5, low=0.5, high=2.0)
    model = one_node("Pow", {"a": a}, initializers={"e": np.array(3, np.int64)})
    check(model, {"a": a})


def test_binary_with_weight():
    a = rand(2, 3, 4)
    check(one_node("Mul", {"a": a}, initializers={"w": rand(4)}), {"a": a})


@pytest.mark.parametrize("op,low", [("Relu", -1), ("Sigmoid", -3), ("Tanh", -3), ("Exp", -2),
                                    ("Log", 0.1), ("Sqrt", 0.1), ("Erf", -2), ("Neg", -1),
                                    ("Abs", -1), ("Identity", -1)])
def test_unary(op, low):
    x = rand(3, 17, low=low, high=3.0)
    check(one_node(op, {"x": x}), {"x": x})


def test_leaky_relu():
    x = rand(4, 9)
    check(one_node("LeakyRelu", {"x": x}, alpha=0.2), {"x": x})


def test_dropout_is_identity():
    x = rand(4, 9)
    check(one_node("Dropout", {"x": x}), {"x": x})


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate):
    x = rand(3, 16, low=-3, high=3)
    check(one_node("Gelu", {"x": x}, opset=20, approximate=approximate), {"x": x})


def test_clip_attribute_form():
    x = rand(3, 8, low=-2, high=2)
    check(one_node("Clip", {"x": x}, opset=6, min=-0.5, max=0.75), {"x": x})


def test_clip_input_form_constant_and_missing_bounds():
    x = rand(3, 8, low=-2, high=2)
    node = helper.make_node("Clip", ["x", "", "hi"], ["y0"])
    model = make_model([node], [("x", x.shape, "float32")], [("y0", None, "float32")],
                       {"hi": np.array(0.3, np.float32)}, opset=13)
    check(model, {"x": x})


def test_clip_input_form_computed_bounds():
    feeds = {"x": rand(3, 8, low=-2, high=2), "lo": np.array(-0.5, np.float32),
             "hi": np.array(0.25, np.float32)}
    check(one_node("Clip", feeds, opset=13), feeds)


def test_cast_and_where():
    x, y = rand(2, 6), rand(2, 6)
    nodes = [helper.make_node("Cast", ["x"], ["xi"], to=6),  # int32
             helper.make_node("Cast", ["xi"], ["xf"], to=1),
             helper.make_node("Cast", ["x"], ["c"], to=9),  # bool: x != 0
             helper.make_node("Where", ["c", "xf", "y"], ["out"])]
    x[0, :3] = 0.0  # some False conditions
    x[1] *= 5
    model = make_model(nodes, [("x", x.shape, "float32"), ("y", y.shape, "float32")],
                       [("out", None, "float32")])
    check(model, {"x": x, "y": y})


# -- convolution and dense ----------------------------------------------------------------------

@pytest.mark.parametrize("attrs", [
    dict(pads=[1, 1, 1, 1]),
    dict(pads=[0, 1, 2, 1], strides=[2, 1]),                     # asymmetric
    dict(dilations=[2, 2], pads=[2, 2, 2, 2]),
    dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER", strides=[2, 2]),
    dict(auto_pad="VALID"),
    dict(group=2, pads=[1, 1, 1, 1]),
])
def test_conv(attrs):
    x = rand(1, 4, 9, 10)
    groups = attrs.get("group", 1)
    weights = {"w": rand(6, 4 // groups, 3, 3), "b": rand(6)}
    check(one_node("Conv", {"x": x}, initializers=weights, **attrs), {"x": x})


def test_conv_depthwise_without_bias():
    x = rand(2, 4, 8, 8)
    model = one_node("Conv", {"x": x}, initializers={"w": rand(8, 1, 3, 3)}, group=4,
                     pads=[1, 1, 1, 1], strides=[2, 2])
    check(model, {"x": x})


@pytest.mark.parametrize("attrs", [dict(), dict(transA=1), dict(transB=1),
                                   dict(transA=1, transB=1, alpha=0.5, beta=2.0)])
def test_gemm(attrs):
    a = rand(5, 7) if not attrs.get("transA") else rand(7, 5)
    b = rand(7, 3) if not attrs.get("transB") else rand(3, 7)
    check(one_node("Gemm", {"a": a}, initializers={"b": b, "c": rand(3)}, **attrs), {"a": a})


def test_gemm_computed_c():
    feeds = {"a": rand(4, 6), "b": rand(6, 3), "c": rand(4, 3)}
    check(one_node("Gemm", feeds, beta=0.5), feeds)


@pytest.mark.parametrize("a_shape,b_shape", [((5, 7), (7, 3)), ((2, 5, 7), (7, 3)),
                                             ((2, 1, 5, 7), (3, 7, 4)), ((7,), (7, 3)),
                                             ((2, 5, 7), (7,))])
def test_matmul(a_shape, b_shape):
    feeds = {"a": rand(*a_shape), "b": rand(*b_shape)}
    check(one_node("MatMul", feeds), feeds)


def test_batch_norm():
    x = rand(2, 3, 5, 4)
    w = {"g": rand(3), "b": rand(3), "m": rand(3), "v": rand(3, low=0.5, high=2.0)}
    check(one_node("BatchNormalization", {"x": x}, initializers=w, epsilon=1e-3), {"x": x})


def test_layer_norm():
    x = rand(2, 3, 8)
    w = {"g": rand(3, 8), "b": rand(3, 8)}
    check(one_node("LayerNormalization", {"x": x}, initializers=w, axis=1), {"x": x})


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset,axis", [(13, 1), (13, -1), (11, 1), (11, 0), (11, 2)])
def test_softmax(op, opset, axis):
    x = rand(2, 3, 4, low=-3, high=3)
    check(one_node(op, {"x": x}, opset=opset, axis=axis), {"x": x})


# -- pooling ------------------------------------------------------------------------------------

_POOL_ATTRS = [
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 0, 1], ceil_mode=1),
    dict(kernel_shape=[3, 2], auto_pad="SAME_UPPER", strides=[2, 2]),
]


@pytest.mark.parametrize("op,attrs", [
    *[("MaxPool", a) for a in _POOL_ATTRS], *[("AveragePool", a) for a in _POOL_ATTRS],
    # count_include_pad is an AveragePool attribute only
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                         count_include_pad=1)),
])
def test_pool(op, attrs):
    x = rand(1, 3, 9, 8)
    check(one_node(op, {"x": x}, **attrs), {"x": x})


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool(op):
    x = rand(2, 3, 5, 6)
    check(one_node(op, {"x": x}), {"x": x})


# -- layout -------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [(0, -1), (3, 0, 2), (-1,), (2, 2, 3, 2)])
def test_reshape(target):
    x = rand(3, 4, 2)
    model = one_node("Reshape", {"x": x}, initializers={"s": np.array(target, np.int64)})
    check(model, {"x": x})


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_flatten(axis):
    x = rand(2, 3, 4)
    check(one_node("Flatten", {"x": x}, axis=axis), {"x": x})


@pytest.mark.parametrize("perm", [None, [0, 2, 1], [2, 0, 1]])
def test_transpose(perm):
    x = rand(2, 3, 4)
    attrs = {} if perm is None else {"perm": perm}
    check(one_node("Transpose", {"x": x}, **attrs), {"x": x})


def test_concat():
    feeds = {"a": rand(2, 3, 4), "b": rand(2, 1, 4), "c": rand(2, 2, 4)}
    check(one_node("Concat", feeds, axis=1), feeds)


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze(opset):
    x = rand(2, 1, 4, 1)
    if opset < 13:
        nodes = [helper.make_node("Squeeze", ["x"], ["s"], axes=[1, -1]),
                 helper.make_node("Unsqueeze", ["s"], ["y0"], axes=[0, 3])]
        inits = {}
    else:
        nodes = [helper.make_node("Squeeze", ["x", "a1"], ["s"]),
                 helper.make_node("Unsqueeze", ["s", "a2"], ["y0"])]
        inits = {"a1": np.array([1, -1], np.int64), "a2": np.array([0, 3], np.int64)}
    model = make_model(nodes, [("x", x.shape, "float32")], [("y0", None, "float32")], inits,
                       opset=opset)
    check(model, {"x": x})


def test_squeeze_all():
    x = rand(1, 3, 1, 2)
    check(one_node("Squeeze", {"x": x}, opset=13), {"x": x})


# -- reductions ---------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_axes_attribute(op, keepdims):
    x = rand(2, 3, 5)
    check(one_node(op, {"x": x}, opset=11, axes=[0, -1], keepdims=keepdims), {"x": x})


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin"])
def test_reduce_axes_input_and_all_axes(op):
    x = rand(2, 3, 5)
    model = one_node(op, {"x": x}, opset=18, initializers={"axes": np.array([1], np.int64)},
                     keepdims=0)
    check(model, {"x": x})
    check(one_node(op, {"x": x}, opset=18, keepdims=1), {"x": x})
