"""graph.tune: a model's fused groups become weighted tasks; tuned records apply in build."""
import numpy as np
import pytest

from graph_onnx_util import helper, make_model, rand, run_ort

import graph
from autotune import Database
from graph.tune import extract_tasks
from tensorlang.errors import UserError


def _two_block_model():
    """Two identical conv + relu blocks (same shapes, different weights) and a matmul head."""
    w1, w2 = rand(8, 8, 3, 3), rand(8, 8, 3, 3)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"]),
             helper.make_node("MatMul", ["f", "w3"], ["y"])]
    return make_model(nodes, [("x", (1, 8, 6, 6), "float32")], [("y", None, "float32")],
                      {"w1": w1, "w2": w2, "w3": rand(8 * 36, 10)})


def test_extract_tasks_weights_repeated_groups():
    tasks = extract_tasks(graph.from_onnx(_two_block_model()))
    weights = sorted(t.weight for t in tasks)
    assert weights == [1.0, 2.0]  # the conv + relu group twice, the matmul once
    assert all(t.flop_count() for t in tasks)
    everything = extract_tasks(graph.from_onnx(_two_block_model()), only_reductions=False)
    assert len(everything) > len(tasks)  # the flatten copy is a task too when asked


def test_tune_then_build_uses_the_records(tmp_path):
    model = _two_block_model()
    mod = graph.from_onnx(model)
    path = tmp_path / "tuning.db"
    summaries = graph.tune(mod, trials=6, database=path, progress=False, batch_size=3)
    assert sum(s.trials for s in summaries) == 6
    with Database(path) as db:
        assert db.count() == 6
    lib = graph.build(mod, database=path)
    x = rand(1, 8, 6, 6)
    (y,) = lib.run(x)
    np.testing.assert_allclose(y, run_ort(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_tune_rejects_a_model_without_reductions():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    mod = graph.from_onnx(make_model(nodes, [("x", (4, 4), "float32")], [("y", None, "float32")]))
    with pytest.raises(UserError, match="no kernel with a reduction"):
        graph.tune(mod, trials=4, database=":memory:")
