"""Grouped convolutions through the BLAS (one extern stage, one product per group, no copies of
the groups' inputs or results) and data-movement chains fused into one kernel (ShuffleNet's
channel shuffle), checked against ONNX Runtime on random data."""
import numpy as np
import pytest

from graph_onnx_util import helper, make_model, rand, run_ort

import graph
import tensorlang as tl
from autotune.task import Task
from graph.build import group_spec, group_workload, partition
from graph.passes import optimize
from tensorlang.tensor import ComputeOp, ExternOp


def _grouped(channels, out_channels, groups, kernel, stride=1, pad=0, size=9):
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], group=groups,
                              kernel_shape=[kernel, kernel], strides=[stride, stride],
                              pads=[pad] * 4),
             helper.make_node("Relu", ["c"], ["y"])]
    weights = dict(w=rand(out_channels, channels // groups, kernel, kernel),
                   b=rand(out_channels))
    return make_model(nodes, [("x", (1, channels, size, size), "float32")],
                      [("y", None, "float32")], weights)


def _stages(model):
    """The stages of the model's single conv group, by kind."""
    (group,) = [g for g in partition(optimize(graph.from_onnx(model)))
                if g.calls[0].op == "conv2d"]
    task = Task(group_workload, args=(group_spec(group),), target="llvm")
    stages = tl.create_schedule(task.outputs).stages
    return ([s.op.name for s in stages if isinstance(s.op, ExternOp)],
            [s.op.name for s in stages if isinstance(s.op, ComputeOp)])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("channels,out_channels,groups,kernel,stride,pad", [
    (32, 64, 4, 1, 1, 0),   # ShuffleNet's pointwise group conv: the input read in place
    (24, 24, 3, 3, 1, 1),   # 3 groups on 2 threads: each product is cut into bands too
    (32, 16, 2, 3, 2, 1),   # strided, padded: one im2col for all the groups
    (12, 24, 4, 1, 1, 0),   # products too small for the BLAS: the native kernel
])
def test_grouped_conv_matches_onnxruntime(threads, channels, out_channels, groups, kernel,
                                          stride, pad):
    model = _grouped(channels, out_channels, groups, kernel, stride, pad)
    before = tl.runtime.get_num_threads()
    tl.runtime.set_num_threads(threads)
    try:
        lib = graph.build(graph.from_onnx(model), layout="NCHW")
        x = rand(1, channels, 9, 9)
        source = "".join(lib.sources().values())
        assert ("tl_blas_sgemm_group" in source) == (channels > 12)
        np.testing.assert_allclose(lib.run(x)[0], run_ort(model, {"x": x})[0], rtol=1e-4,
                                   atol=1e-5)
    finally:
        tl.runtime.set_num_threads(before)


def test_grouped_conv_is_one_blas_stage_without_copies():
    externs, computes = _stages(_grouped(32, 64, 4, 1))
    assert externs == ["T_conv2d_blas"]
    assert not any("im2col" in name or "weight" in name or "groups" in name
                   for name in computes)
    externs, computes = _stages(_grouped(24, 24, 3, 3, pad=1))
    assert externs == ["T_conv2d_blas"]
    assert sum("im2col" in name for name in computes) == 1


def test_channel_shuffle_is_one_kernel_and_matches_onnxruntime():
    # reshape -> transpose -> reshape between two convolutions, as in ShuffleNet
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], group=2),
             helper.make_node("Reshape", ["c1", "s1"], ["r1"]),
             helper.make_node("Transpose", ["r1"], ["t"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t", "s2"], ["r2"]),
             helper.make_node("Conv", ["r2", "w2"], ["y"], group=2)]
    weights = dict(w1=rand(8, 4, 1, 1), w2=rand(8, 4, 1, 1),
                   s1=np.array([1, 2, 4, 5, 5], np.int64),
                   s2=np.array([1, 8, 5, 5], np.int64))
    model = make_model(nodes, [("x", (1, 8, 5, 5), "float32")], [("y", None, "float32")],
                       weights)
    groups = partition(optimize(graph.from_onnx(model)))
    shuffle = [[c.op for c in g.calls] for g in groups if g.calls[0].op != "conv2d"]
    assert shuffle == [["reshape", "transpose", "reshape"]]
    lib = graph.build(graph.from_onnx(model))
    assert lib.num_kernels == 3
    x = rand(1, 8, 5, 5)
    np.testing.assert_allclose(lib.run(x)[0], run_ort(model, {"x": x})[0], rtol=1e-4,
                               atol=1e-5)


def test_a_reduction_does_not_take_an_injective_consumer():
    # a reduction group keeps to elementwise consumers: the transpose after it is its own kernel
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=1),
             helper.make_node("Relu", ["s"], ["r"]),
             helper.make_node("Transpose", ["r"], ["y"], perm=[1, 0])]
    model = make_model(nodes, [("x", (6, 7), "float32")], [("y", None, "float32")],
                       dict(axes=np.array([1], np.int64)))
    groups = partition(optimize(graph.from_onnx(model)))
    assert [[c.op for c in g.calls] for g in groups][-1] == ["transpose"]
    x = rand(6, 7)
    np.testing.assert_allclose(graph.build(graph.from_onnx(model)).run(x)[0],
                               run_ort(model, {"x": x})[0], rtol=1e-5, atol=1e-6)



@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_conv_reads_its_weight_in_place_with_one_filter_per_channel(multiplier):
    model = _grouped(6, 6 * multiplier, 6, 3, pad=1)
    _, computes = _stages(model)
    assert any("reshape" in name for name in computes) == (multiplier > 1)
    x = rand(1, 6, 9, 9)
    lib = graph.build(graph.from_onnx(model))
    np.testing.assert_allclose(lib.run(x)[0], run_ort(model, {"x": x})[0], rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("stride,pad,size", [(2, 1, 9), (2, 1, 12), (3, 0, 10)])
def test_strided_depthwise_conv_reads_column_phases_and_matches_onnxruntime(stride, pad, size):
    model = _grouped(8, 8, 8, 3, stride=stride, pad=pad, size=size)
    _, computes = _stages(model)
    assert "phases" in computes and "pad_temp" not in computes
    x = rand(1, 8, size, size)
    lib = graph.build(graph.from_onnx(model))
    np.testing.assert_allclose(lib.run(x)[0], run_ort(model, {"x": x})[0], rtol=1e-4,
                               atol=1e-5)
