"""The ready-made workloads of ``autotune.workloads``: registered by importable name, their
default schedules match NumPy on random data."""
import numpy as np
import pytest
from scipy.signal import correlate

import autotune
from autotune import workloads


def _run(task):
    s, args = task.apply_best(None)
    arrays = task.random_inputs(seed=1)
    task.build(s)(*arrays)
    return arrays


def test_names_are_importable():
    task = autotune.Task("autotune.workloads.matmul", args=(8, 8, 8))
    assert task.workload_name == "autotune.workloads.matmul"


def test_matmul_and_batch_matmul():
    a, b, c = _run(autotune.Task(workloads.matmul, args=(24, 40, 20)))
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)
    a, b, c = _run(autotune.Task(workloads.batch_matmul, args=(3, 8, 16, 12)))
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bias,relu", [(False, False), (True, True)])
def test_dense(bias, relu):
    arrays = _run(autotune.Task(workloads.dense, args=(5, 24, 16, bias, relu)))
    x, w, y = arrays[0], arrays[1], arrays[-1]
    expect = x @ w.T + (arrays[2] if bias else 0)
    np.testing.assert_allclose(y, np.maximum(expect, 0) if relu else expect, rtol=1e-4,
                               atol=1e-4)


def test_conv2d_nchw_stride_and_padding():
    data, weight, out = _run(autotune.Task(workloads.conv2d_nchw,
                                           args=(1, 4, 9, 9, 6, 3, 2, 1)))
    padded = np.pad(data[0].astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    expect = np.stack([sum(correlate(padded[c], weight[k, c], mode="valid")
                           for c in range(4)) for k in range(6)])[:, ::2, ::2]
    np.testing.assert_allclose(out[0], expect, rtol=1e-4, atol=1e-4)


def test_task_name_is_short_and_overridable():
    task = autotune.Task(workloads.matmul, args=(8, 16, 4))
    assert task.name == "matmul(8,16,4)"
    named = autotune.Task(workloads.matmul, args=(8, 16, 4), name="head")
    assert named.name == "head" and named.key == task.key  # a label, not part of the key
    long = autotune.Task(workloads.dense, args=(1, 1000, 2048, True, True))
    assert len(long.name) <= len("dense()") + 40


def _direct_conv(data, weight, pad):
    padded = np.pad(data[0].astype(np.float64), ((0, 0), (pad, pad), (pad, pad)))
    return np.stack([sum(correlate(padded[c], weight[k, c].astype(np.float64), mode="valid")
                         for c in range(data.shape[1])) for k in range(weight.shape[0])])


@pytest.mark.parametrize("args", [(1, 16, 12, 12, 32, 1), (1, 8, 10, 9, 12, 0)])
def test_winograd_conv_equals_the_direct_convolution(args):
    """The Winograd workload with its default (sketch) schedule, fed the transformed weight,
    gives the direct convolution of the OIHW weight (odd sizes: partial tiles)."""
    from tensorlang.ops.winograd import winograd_weight
    task = autotune.Task(workloads.conv2d_winograd_nchw, args=args)
    batch, channels, height, width, filters, pad = args
    rng = np.random.default_rng(3)
    data = rng.standard_normal((batch, channels, height, width), dtype=np.float32)
    weight = rng.standard_normal((filters, channels, 3, 3), dtype=np.float32)
    out = np.zeros((batch, filters, height + 2 * pad - 2, width + 2 * pad - 2), np.float32)
    s, _ = task.apply_best(None)
    task.build(s)(data, winograd_weight(weight, tile=4), out)
    np.testing.assert_allclose(out[0], _direct_conv(data, weight, pad), rtol=1e-4, atol=1e-4)
