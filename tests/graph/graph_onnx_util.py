"""Helpers for the graph tests: one-node ONNX models, and comparison with ONNX Runtime."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graph  # noqa: E402

RNG = np.random.default_rng(0)


def rand(*shape, dtype="float32", low=-1.0, high=1.0):
    """Random data in [low, high), never all zeros."""
    return RNG.uniform(low, high, shape).astype(dtype)


def make_model(nodes, inputs, outputs, initializers=(), opset=17):
    """``inputs``/``outputs``: ``[(name, shape, dtype)]``; shape None for an output leaves it
    to inference. ``initializers``: ``{name: array}``."""
    def info(name, shape, dtype="float32"):
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(
            np.dtype(dtype)), shape)
    g = helper.make_graph(nodes, "test", [info(*i) for i in inputs],
                          [info(*o) for o in outputs],
                          [numpy_helper.from_array(np.asarray(v), k)
                           for k, v in dict(initializers).items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def run_ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def check(model, feeds, rtol=1e-4, atol=1e-5, shape=None):
    """Import and build ``model``, run it on ``feeds`` and compare with ONNX Runtime; returns
    the library."""
    mod = graph.from_onnx(model, shape=shape)
    lib = graph.build(mod)
    got = lib.run(**feeds)
    want = run_ort(model, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape, (g.shape, w.shape)
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return lib


def one_node(op_type, inputs, n_outputs=1, initializers=None, opset=17, **attrs):
    """A model with a single ``op_type`` node: ``inputs`` is ``{name: array}`` (graph inputs)
    and ``initializers`` ``{name: array}`` (weights); the node reads inputs then weights."""
    initializers = initializers or {}
    names = list(inputs) + list(initializers)
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, names, outs, name=f"{op_type.lower()}_0", **attrs)
    return make_model([node], [(k, v.shape, v.dtype) for k, v in inputs.items()],
                      [(o, None, "float32") for o in outs], initializers, opset)


__all__ = ["TensorProto", "helper", "numpy_helper", "rand", "make_model", "run_ort", "check",
           "one_node", "onnx", "ort", "graph"]


def commit_split_record(spec: str, path: str, axis: int, factor: int) -> None:
    """A tuning record in the SQLite database ``path`` for the graph group ``spec``: its output
    ``axis`` split by ``factor`` with the inner loop unrolled (a schedule that differs visibly
    from the default one)."""
    import tensorlang as tl
    from autotune import Database, Task, TuningRecord
    from graph.build import group_workload
    task = Task(group_workload, args=(spec,), target="llvm")
    s = tl.create_schedule(task.outputs)
    out = task.outputs[0]
    _, inner = s[out].split(s[out].op.axis[axis], factor=factor)
    s[out].unroll(inner)
    db = Database(path)
    try:
        db.commit_record(TuningRecord(task.key, task.target_key, task.workload_name,
                                      s.to_json(), costs=(1e-6,)))
    finally:
        db.close()
