"""Fused groups are autotune tasks: structural keys, and tuned records applied by build."""
import numpy as np

from graph_onnx_util import commit_split_record, helper, make_model, rand, run_ort

import graph
from autotune import Database, Task
from graph.build import group_spec, group_workload, partition


def _model(seed_weights):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Relu", ["h"], ["y"])]
    return make_model(nodes, [("x", (9, 16), "float32")], [("y", None, "float32")],
                      {"w": seed_weights})


def test_group_task_key_is_structural():
    mods = [graph.from_onnx(_model(rand(16, 8))) for _ in range(2)]  # different weights
    specs = [group_spec(partition(m)[0]) for m in mods]
    assert specs[0] == specs[1]
    task = Task(group_workload, args=(specs[0],), target="llvm")
    assert [t.name for t in task.tensors][:2] == ["in0", "in1"]
    assert task.outputs[0].shape[0].value == 9


def test_build_applies_a_tuned_record(tmp_path):
    model = _model(rand(16, 8))
    mod = graph.from_onnx(model)
    spec = group_spec(partition(mod)[0])
    path = str(tmp_path / "tuning.db")
    commit_split_record(spec, path, axis=0, factor=3)
    tuned = graph.build(mod, database=path)
    untuned = graph.build(mod)
    x = rand(9, 16)
    want = run_ort(model, {"x": x})[0]
    for lib in (tuned, untuned):
        np.testing.assert_allclose(lib.run(x)[0], want, rtol=1e-4, atol=1e-5)
    source = tuned._steps[0].kernel.get_source()
    assert source != untuned._steps[0].kernel.get_source()


def test_untuned_one_row_dense_gets_the_gemv_schedule_with_or_without_a_database(tmp_path):
    """A batch-1 dense layer with no record in the build's database is compiled exactly as
    without a database (the rfactor GEMV schedule), not with the generic default."""
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)]
    model = make_model(nodes, [("x", (1, 96), "float32")], [("y", None, "float32")],
                       dict(w=rand(40, 96), b=rand(40)))
    mod = graph.from_onnx(model)
    empty = tmp_path / "empty.db"
    Database(str(empty)).close()
    plain = graph.build(mod)
    with_db = graph.build(mod, database=str(empty))
    (a,), (b,) = [[s.kernel for s in lib._steps] for lib in (plain, with_db)]
    assert a.get_source() == b.get_source()
    x = rand(1, 96)
    np.testing.assert_allclose(with_db.run(x)[0], run_ort(model, {"x": x})[0], rtol=1e-5,
                               atol=1e-5)
