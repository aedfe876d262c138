"""One-node ONNX models per supported operator, compared with ONNX Runtime on random data."""
import numpy as np
import pytest

from graph_onnx_util import TensorProto, check, graph, helper, make_model, one_node, rand


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


# -- number formats without a code-generator type (graph.ops.formats, frontend.onnx_dtypes) ----

@pytest.mark.parametrize("fmt", ["bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
                                 "float8_e5m2fnuz", "float4_e2m1fn", "int4", "uint4", "int2"])
def test_round_to_format_matches_ml_dtypes(fmt):
    import ml_dtypes  # a core dependency
    from graph.build import build
    from graph.ir import Call, Function, Module, TensorType, Var
    scale = 10.0 ** RNG_FORMATS.uniform(-8, 5, 64)
    special = [np.inf, -np.inf, np.nan, 0.5, 1.5, 2.5, -7.5, 1e6]
    x = np.concatenate([RNG_FORMATS.standard_normal(64) * scale, special])
    v = Var("x", TensorType(x.shape, "float64"))
    call = Call("round_to_format", (v,), {"format": fmt, "saturate": 0})
    (y,) = build(Module(Function([v], [call]), ["x"], ["y"])).run(x)
    want = x.astype(getattr(ml_dtypes, fmt)).astype(np.float64)
    np.testing.assert_array_equal(y.astype(np.float64), want)


RNG_FORMATS = np.random.default_rng(7)


def _backend_run(model, *inputs):
    from graph.frontend.onnx_backend import prepare
    return prepare(model).run(list(inputs))


def test_cast_through_float8_saturates_and_rounds():
    import ml_dtypes  # a core dependency
    x = rand(4, 8, low=-600, high=600)
    nodes = [helper.make_node("Cast", ["x"], ["f8"], to=TensorProto.FLOAT8E4M3FN),
             helper.make_node("Cast", ["f8"], ["y"], to=TensorProto.FLOAT)]
    model = make_model(nodes, [("x", x.shape, "float32")], [("y", x.shape, "float32")],
                       opset=19)
    (y,) = _backend_run(model, x)
    want = np.clip(x, -448, 448).astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
    np.testing.assert_array_equal(y, want)


def test_bfloat16_input_and_output_round_each_result():
    import ml_dtypes  # a core dependency
    a, b = rand(3, 5).astype(ml_dtypes.bfloat16), rand(3, 5).astype(ml_dtypes.bfloat16)
    node = helper.make_node("Mul", ["a", "b"], ["y"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.BFLOAT16,
                                                                      [3, 5]) for n in "ab"],
                          [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [3, 5])])
    (y,) = _backend_run(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), a, b)
    assert y.dtype == np.dtype(ml_dtypes.bfloat16)
    want = (a.astype(np.float32) * b.astype(np.float32)).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(y.astype(np.float32), want.astype(np.float32))


def test_int4_input_cast_to_float():
    import ml_dtypes  # a core dependency
    x = RNG_FORMATS.integers(-8, 8, (2, 6)).astype(ml_dtypes.int4)
    node = helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.INT4,
                                                                      [2, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6])])
    (y,) = _backend_run(helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]), x)
    np.testing.assert_array_equal(y, x.astype(np.float32))


@pytest.mark.parametrize("op,low,high", [("Acos", -0.9, 0.9), ("Acosh", 1.1, 4.0)])
def test_libm_unary(op, low, high):
    x = rand(3, 7, low=low, high=high)
    check(one_node(op, {"x": x}), {"x": x})


# -- control flow (frontend.onnx_control) -----------------------------------------------------

def _graph_attr(nodes, inputs, outputs):
    info = helper.make_tensor_value_info
    return helper.make_graph(nodes, "body", [info(n, TensorProto.FLOAT, s) for n, s in inputs],
                             [info(n, TensorProto.FLOAT, s) for n, s in outputs])


def test_if_with_runtime_condition_selects_a_branch():
    x = rand(2, 3, low=0.5, high=1.5)
    then = _graph_attr([helper.make_node("Mul", ["x", "x"], ["t"])], [], [("t", [2, 3])])
    other = _graph_attr([helper.make_node("Neg", ["x"], ["e"])], [], [("e", [2, 3])])
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "k"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    for k in (0.0, 100.0):
        model = make_model(nodes, [("x", x.shape, "float32")], [("y", x.shape, "float32")],
                           initializers={"k": np.array(k, np.float32)}, opset=13)
        check(model, {"x": x})


def test_scan_running_sum_and_loop_unrolled():
    x = rand(5, 3)
    body = _graph_attr([helper.make_node("Add", ["s", "v"], ["s2"]),
                        helper.make_node("Identity", ["s2"], ["o"])],
                       [("s", [3]), ("v", [3])], [("s2", [3]), ("o", [3])])
    scan = helper.make_node("Scan", ["init", "x"], ["last", "all"], body=body,
                            num_scan_inputs=1, scan_input_directions=[1])
    model = make_model([scan], [("x", x.shape, "float32")],
                       [("last", [3], "float32"), ("all", [5, 3], "float32")],
                       initializers={"init": rand(3)}, opset=16)
    check(model, {"x": x})
    info = helper.make_tensor_value_info
    loop_body = helper.make_graph(
        [helper.make_node("Identity", ["cond"], ["cond_out"]),
         helper.make_node("Mul", ["acc", "x"], ["acc2"])], "body",
        [info("i", TensorProto.INT64, []), info("cond", TensorProto.BOOL, []),
         info("acc", TensorProto.FLOAT, [5, 3])],
        [info("cond_out", TensorProto.BOOL, []), info("acc2", TensorProto.FLOAT, [5, 3])])
    loop = helper.make_node("Loop", ["m", "", "x"], ["y"], body=loop_body)
    model = make_model([loop], [("x", x.shape, "float32")], [("y", [5, 3], "float32")],
                       initializers={"m": np.array(3, np.int64)}, opset=16)
    check(model, {"x": x})


# -- signal, sequence and bit ops (frontend.onnx_ops_signal, onnx_ops_bitcast) -----------------

@pytest.mark.parametrize("inverse,onesided", [(0, 0), (0, 1), (1, 0)])
def test_dft_matches_onnxruntime(inverse, onesided):
    parts = 2 if inverse else 1
    x = rand(2, 8, 3, parts)
    model = one_node("DFT", {"x": x}, opset=17, axis=1, inverse=inverse, onesided=onesided)
    check(model, {"x": x}, atol=1e-4)


def test_stft_matches_onnxruntime():
    x = rand(2, 32, 1)
    model = one_node("STFT", {"x": x}, initializers={"step": np.array(4, np.int64),
                                                    "window": np.hanning(8).astype(np.float32)},
                     opset=17)
    check(model, {"x": x}, atol=1e-4)


def test_reverse_sequence_matches_onnxruntime():
    x = rand(5, 3, 2)
    model = one_node("ReverseSequence", {"x": x},
                     initializers={"lens": np.array([5, 2, 3], np.int64)},
                     batch_axis=1, time_axis=0)
    check(model, {"x": x})


def test_col2im_matches_onnxruntime():
    x = rand(1, 2 * 4, 4)  # 2 channels, 2x2 blocks, 2x2 positions on a padded 5x5 image
    model = one_node("Col2Im", {"x": x}, opset=18,
                     initializers={"image": np.array([4, 4], np.int64),
                                   "block": np.array([2, 2], np.int64)},
                     strides=[2, 2], pads=[1, 0, 0, 1])
    check(model, {"x": x})


@pytest.mark.parametrize("src,dst,to", [("float32", "int32", TensorProto.INT32),
                                        ("int32", "float32", TensorProto.FLOAT),
                                        ("float64", "int64", TensorProto.INT64),
                                        ("int64", "float64", TensorProto.DOUBLE),
                                        ("int8", "uint8", TensorProto.UINT8)])
def test_bitcast_keeps_the_bits(src, dst, to):
    from graph.frontend.onnx_backend import prepare
    floats = rand(4, 6, dtype="float64") * 10.0 ** RNG_FORMATS.uniform(-30, 30, (4, 6))
    if src.startswith("float"):
        x = floats.astype(src)
    elif dst.startswith("float"):  # the bits of random floats, as integers
        x = floats.astype(dst).view(src)
    else:
        x = RNG_FORMATS.integers(-128, 128, (4, 6)).astype(src)
    node = helper.make_node("BitCast", ["x"], ["y"], to=to)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)],
        [helper.make_tensor_value_info("y", to, x.shape)])
    (y,) = prepare(helper.make_model(g, opset_imports=[helper.make_opsetid("", 26)])).run([x])
    np.testing.assert_array_equal(y.view(src), x)


def test_max_unpool_matches_onnxruntime():
    x = rand(1, 2, 2, 2, low=0.5, high=1.5)
    index = np.array([1, 3, 9, 15, 16, 19, 28, 31], np.int64).reshape(1, 2, 2, 2)
    model = one_node("MaxUnpool", {"x": x}, opset=11, initializers={"i": index},
                     kernel_shape=[2, 2], strides=[2, 2])
    check(model, {"x": x})


def test_space_to_depth_crd_mode():
    from onnx.reference import ReferenceEvaluator
    x = rand(1, 2, 4, 6)
    model = one_node("SpaceToDepth", {"x": x}, opset=28, blocksize=2, mode="CRD")
    (got,) = graph.build(graph.from_onnx(model)).run(x)
    (want,) = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_array_equal(got, want)
