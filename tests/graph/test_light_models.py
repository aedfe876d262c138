"""The light models the onnx package ships, as shipped and with random weights, against ONNX
Runtime on a random input; the LRN and Dropout-mask converters and the kernel compile cache.

Besides the model's own output (a softmax, nearly one-hot with random weights), the softmax's
input (the logits) is made an output too, so the comparison sees values of every size; where
the logits are so large that their softmax is decided by rounding (the shipped weights), only
the logits are compared.
Tolerance: rtol 1e-3, and an absolute floor of 1e-5 x the largest magnitude of each output —
float32 sums over long reductions (up to 25,088 terms) in another order than ONNX Runtime's
differ by a few ulps of the running sum, which near-zero elements only see in absolute terms.
"""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="comparing models needs onnxruntime "
                          "(the onnx extra)")
from onnx import helper  # noqa: E402

from graph_onnx_util import check, make_model, rand  # noqa: E402

import graph  # noqa: E402
import graph.compile  # noqa: E402
from graph.light_models import LIGHT_MODELS, light_model_path, randomize_weights  # noqa: E402

SLOW = {"densenet121", "inception_v1", "inception_v2"}  # the most distinct kernels (188, 74, 60)
FAST = [m for m in LIGHT_MODELS if m not in SLOW]


def _with_logits(model):
    """``model`` with the input of its first Softmax as an extra graph output."""
    softmax = [n for n in model.graph.node if n.op_type == "Softmax"]
    if softmax:
        model.graph.output.append(helper.make_empty_tensor_value_info(softmax[0].input[0]))
    return model


def _compare(name: str, randomize: bool) -> None:
    model = onnx.load(light_model_path(name))
    if randomize:
        model = randomize_weights(model, seed=0)
    model = _with_logits(model)
    mod = graph.from_onnx(model)
    lib = graph.build(mod)
    x = np.random.default_rng(1).uniform(-1, 1, mod.function.params[0].type.shape) \
        .astype(np.float32)
    got = lib.run(x)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {lib.input_names[0]: x})
    assert len(got) == len(want)
    logits = want[-1]  # the softmax's input, or the only output (DenseNet-121 has no softmax)
    # the shipped weights (0.02 everywhere) give logits near 5e9 that differ in the last few
    # ulps: their softmax depends on rounding (e ** 512 for one ulp), no two orders agree
    well_conditioned = float(np.abs(logits).max()) < 1e4
    for g, w in zip(got, want) if well_conditioned else [(got[-1], want[-1])]:
        assert g.shape == w.shape and g.dtype == w.dtype
        assert np.isfinite(w).all()
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5 * float(np.abs(w).max()),
                                   err_msg=f"{name} ({'random' if randomize else 'shipped'})")


@pytest.mark.parametrize("randomize", [False, True], ids=["shipped", "random"])
@pytest.mark.parametrize("name", FAST)
def test_light_model_matches_onnxruntime(name, randomize):
    _compare(name, randomize)


@pytest.mark.slow
@pytest.mark.parametrize("randomize", [False, True], ids=["shipped", "random"])
@pytest.mark.parametrize("name", sorted(SLOW))
def test_large_light_model_matches_onnxruntime(name, randomize):
    _compare(name, randomize)


def test_randomize_weights_replaces_constant_of_shape():
    model = onnx.load(light_model_path("zfnet512"))
    before = {n.output[0]: n for n in model.graph.node if n.op_type == "ConstantOfShape"}
    rewritten = randomize_weights(model, seed=0)
    assert not any(n.op_type == "ConstantOfShape" for n in rewritten.graph.node)
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in rewritten.graph.initializer}
    for name, node in before.items():
        shape = tuple(onnx.numpy_helper.to_array(
            next(i for i in model.graph.initializer if i.name == node.input[0])))
        assert weights[name].shape == shape and weights[name].dtype == np.float32
        assert weights[name].std() > 0
    conv = next(n for n in rewritten.graph.node if n.op_type == "Conv")
    w = weights[conv.input[1]]
    fan_in = int(np.prod(w.shape[1:]))
    assert 0.7 < w.std() / np.sqrt(2.0 / fan_in) < 1.3  # He-normal
    assert len(model.graph.node) == len(before) + len(rewritten.graph.node)  # input untouched


@pytest.mark.parametrize("size", [1, 3, 5])
def test_lrn(size):
    x = rand(2, 7, 5, 6)
    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=0.01, beta=0.75, bias=2.0)
    check(make_model([node], [("x", x.shape, "float32")], [("y", None, "float32")]), {"x": x})


def test_dropout_mask_is_all_ones():
    x = rand(2, 3, 4)
    node = helper.make_node("Dropout", ["x"], ["y", "mask"])
    model = make_model([node], [("x", x.shape, "float32")],
                       [("y", None, "float32"), ("mask", None, "bool")], opset=13)
    check(model, {"x": x})
    # before opset 12 ONNX Runtime leaves the mask zero; ONNX's reference gives ones, as we do
    model = make_model([node], [("x", x.shape, "float32")],
                       [("y", None, "float32"), ("mask", None, "float32")], opset=9)
    y, mask = graph.build(graph.from_onnx(model)).run(x)
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == np.bool_ and mask.shape == x.shape and mask.all()


def test_kernels_are_cached_across_builds_and_compiled_in_workers(monkeypatch):
    monkeypatch.setenv("TENSORLANG_COMPILE_WORKERS", "2")
    graph.compile.clear_cache()
    nodes = [helper.make_node("Conv", ["x", f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1])
             for i in range(4)]
    nodes += [helper.make_node("Relu", [f"c{i}"], [f"y{i}"]) for i in range(4)]
    x = rand(1, 3, 6, 6)
    weights = {f"w{i}": rand(2 + i, 3, 3, 3) for i in range(4)}  # four distinct kernels
    model = make_model(nodes, [("x", x.shape, "float32")],
                       [(f"y{i}", None, "float32") for i in range(4)], weights)
    lib = check(model, {"x": x})  # four jobs: compiled in two worker processes
    assert lib.num_compiled == 4
    again = graph.build(graph.from_onnx(model))
    assert [s.kernel for s in again._steps] == [s.kernel for s in lib._steps]
