"""graph.tune: a model's fused groups become weighted tasks; tuned records apply in build."""
import numpy as np
import pytest

from graph_onnx_util import helper, make_model, rand, run_ort

import graph
from autotune import Database
from graph.tune import extract_tasks
from tensorlang.errors import UserError


def _two_block_model():
    """Two identical matmul + relu blocks (same shapes, different weights) and a matmul head
    (float32 convolutions of batch 1 go to the BLAS, which has no knobs to tune)."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["c1"]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MatMul", ["r1", "w2"], ["c2"]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("MatMul", ["r2", "w3"], ["y"])]
    return make_model(nodes, [("x", (4, 32), "float32")], [("y", None, "float32")],
                      {"w1": rand(32, 32), "w2": rand(32, 32), "w3": rand(32, 10)})


def test_extract_tasks_weights_repeated_groups():
    tasks = extract_tasks(graph.from_onnx(_two_block_model()))
    weights = sorted(t.weight for t in tasks)
    assert weights == [1.0, 2.0]  # the matmul + relu group twice, the head once
    assert all(t.flop_count() for t in tasks)


def test_tune_then_build_uses_the_records(tmp_path):
    model = _two_block_model()
    mod = graph.from_onnx(model)
    path = tmp_path / "tuning.db"
    summaries = graph.tune(mod, trials=6, database=path, progress=False, batch_size=3)
    assert sum(s.trials for s in summaries) == 6
    with Database(path) as db:
        assert db.count() == 6
    lib = graph.build(mod, database=path)
    x = rand(4, 32)
    (y,) = lib.run(x)
    np.testing.assert_allclose(y, run_ort(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_tune_rejects_a_model_without_reductions():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    mod = graph.from_onnx(make_model(nodes, [("x", (4, 4), "float32")], [("y", None, "float32")]))
    with pytest.raises(UserError, match="no kernel with a reduction"):
        graph.tune(mod, trials=4, database=":memory:")


def _conv_model():
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    return make_model(nodes, [("x", (1, 8, 10, 10), "float32")], [("y", None, "float32")],
                      {"w": rand(16, 8, 3, 3), "b": rand(16)})


def test_a_cpu_conv_is_tuned_in_the_blocked_layout_and_as_winograd():
    """A 3x3 stride-1 conv gives two tasks in one group: the direct blocked kernel and the
    Winograd form with its products a DSL reduction (the alternatives the build times)."""
    direct, winograd = sorted(extract_tasks(graph.from_onnx(_conv_model())),
                              key=lambda t: "winograd" in t.args[0])
    assert '"conv2d_nchwc"' in direct.args[0]
    names = {t.op.name for t in _all_tensors(direct.outputs)}
    assert {"data_pad", "conv_blocked"} <= names  # the weights come packed, a constant
    assert '"conv2d_winograd_nchwc"' in winograd.args[0] and '"dsl"' in winograd.args[0]
    tags = {t.op.tag for t in _all_tensors(winograd.outputs)}
    assert {"winograd_input", "winograd_product", "winograd_output"} <= tags
    assert direct.group is not None and direct.group == winograd.group
    assert winograd.weight == direct.weight == 1.0


def test_a_strided_conv_has_no_winograd_alternative():
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2])]
    model = make_model(nodes, [("x", (1, 8, 20, 20), "float32")], [("y", None, "float32")],
                       {"w": rand(16, 8, 3, 3)})
    [task] = extract_tasks(graph.from_onnx(model))
    assert '"conv2d_nchwc"' in task.args[0] and task.group is None


def _all_tensors(outputs):
    seen, stack = {}, list(outputs)
    while stack:
        t = stack.pop()
        if t.op.name not in seen:
            seen[t.op.name] = t
            stack.extend(t.op.input_tensors)
    return seen.values()


@pytest.fixture(scope="module")
def tuned_conv_db(tmp_path_factory):
    """A database with records of ``_conv_model``'s conv: one batch for its blocked task and
    one for its Winograd alternative (a small search: lowering the Winograd candidates is
    slow)."""
    path = tmp_path_factory.mktemp("tuned") / "tuning.db"
    graph.tune(graph.from_onnx(_conv_model()), trials=4, database=path, progress=False,
               batch_size=2, remeasure=0, search_options={"population": 8, "generations": 1})
    return path


@pytest.mark.parametrize("blocked_faster", [True, False, None])
def test_build_keeps_the_faster_of_blas_and_the_tuned_blocked_conv(tuned_conv_db, monkeypatch,
                                                                   blocked_faster):
    """True / False: the clock is fixed so the test checks the choosing; None: real timing
    (either kernel may win; the result must be right)."""
    import graph.conv_layout as cl
    model = _conv_model()
    mod = graph.from_onnx(model)
    path = tuned_conv_db
    if blocked_faster is not None:
        monkeypatch.setattr(cl, "_seconds", lambda kernel, spec, target:
                            (1.0 if blocked_faster else 3.0) if "conv2d_nchwc" in spec
                            else 2.0)
    lib = graph.build(mod, database=path)
    blocked = any("conv2d_nchwc" in name for name in lib.groups)
    if blocked_faster is not None:
        assert blocked == blocked_faster
    if blocked:  # one transform in, one out: the convolution's region is the whole model
        assert sum("layout" in name for name in lib.groups) == 2
    x = rand(1, 8, 10, 10)
    np.testing.assert_allclose(lib.run(x)[0], run_ort(model, {"x": x})[0], rtol=1e-4,
                               atol=1e-4)
    untuned = graph.build(mod)  # no database: NCHW with BLAS, no layout transforms
    assert not any("layout" in name for name in untuned.groups)
