"""GPU sketches (autotune/sketch_gpu.py), CUDA task keys, GPU features and measurement plumbing.

Runs without a GPU: schedules are lowered, compiled with NVRTC for sm_90 and run in the loop-IR
interpreter (threads one after another) at tiny sizes. The tuning test at the end needs a GPU.
"""
import math
import os
import random
import sys

import numpy as np
import pytest

import tensorlang as tl
from autotune import features
from autotune.sketch import apply_record, to_record
from autotune.sketch_gpu import GpuLimits, default_gpu_schedule, generate_gpu_sketches
from autotune.task import Task
from tensorlang.errors import ScheduleError
from tensorlang.ir.interpreter import run as interpret
from tensorlang.ops.gpu_schedules import gpu_launch_stats
from tensorlang.runtime import cuda
from tensorlang.tensor import PlaceholderOp

sys.path.insert(0, os.path.dirname(__file__))
import test_sketch as cpu  # noqa: E402  the workloads and NumPy references of the CPU sketches
import workloads_for_tests as wl  # noqa: E402

LIMITS = GpuLimits()


_SMALL = {"conv_bias_relu": (1, 4, 6, 6, 4), "depthwise": (1, 4, 6, 6)}  # the interpreter is slow


def _workload(name):
    return cpu.WORKLOADS[name](*_SMALL.get(name, ()))


def _arrays(tensors, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal([int(d) for d in t.shape]).astype(np.float32)
            if isinstance(t.op, PlaceholderOp) else np.zeros([int(d) for d in t.shape],
                                                             np.float32)
            for t in tensors]


def _check(name, tensors, schedule, sketch, limits=LIMITS):
    func = tl.lower(schedule, tensors)
    sketch.check_lowered(func)
    stats = gpu_launch_stats(func)
    assert stats["threads"] <= limits.max_threads_per_block
    assert stats["shared_bytes"] <= limits.max_shared_per_block
    cubin = tl.build(schedule, tensors, target="cuda -arch=sm_90").get_source("cubin")
    assert cubin[:4] == b"\x7fELF"
    arrays = _arrays(tensors)
    expected = cpu._reference(name, [a.copy() for a in arrays[:-1]])
    interpret(func, *arrays)
    np.testing.assert_allclose(arrays[-1], expected, rtol=1e-4, atol=1e-4)
    return stats


def test_gpu_sketch_kinds():
    names = {n: [sk.name for sk in generate_gpu_sketches(_workload(n), LIMITS)]
             for n in ("matmul", "conv_bias_relu", "softmax", "layer_norm", "depthwise")}
    assert "gpu_tile" in names["matmul"][0]
    # conv: padding inlined into the shared loads, bias + relu carry the tiled loops
    assert "pad_temp:inline_late" in names["conv_bias_relu"][0]
    assert "fuse=" in names["conv_bias_relu"][0]
    assert any("gpu_simple" in n for n in names["conv_bias_relu"])
    assert "gpu_rfactor" in names["softmax"][0] and "gpu_reduce" in names["softmax"][-1]
    assert "gpu_rfactor" in names["layer_norm"][0]
    assert "gpu_tile" in names["depthwise"][0]


@pytest.mark.parametrize("name,samples", [("matmul", 3), ("batch_matmul", 1),
                                          ("conv_bias_relu", 1), ("depthwise", 1),
                                          ("softmax", 2), ("layer_norm", 2)])
def test_default_and_sampled_gpu_schedules_are_correct(name, samples):
    tensors = _workload(name)
    sketches = generate_gpu_sketches(tensors, LIMITS)
    rng = random.Random(7)
    first = sketches[0]
    _check(name, tensors, first.apply(tensors, first.default_decisions()), first)
    for _ in range(samples):
        index = rng.randrange(len(sketches))
        sk = sketches[index]
        decisions = sk.sample(rng)
        assert sk.fits(decisions)
        fresh = _workload(name)  # a record replays on a fresh build of the workload
        _check(name, fresh, sk.apply(fresh, decisions), sk)


def test_defaults_follow_the_hand_made_matmul():
    # 4096^3: 128 x 128 block tile, 16 x 16 threads of 8 x 8 accumulators, k steps of 16 --
    # the structure of gpu_schedules.matmul_cuda (0.8x cuBLAS on an H200)
    A = tl.placeholder((4096, 4096), name="A")
    B = tl.placeholder((4096, 4096), name="B")
    k = tl.reduce_axis((0, 4096), name="k")
    C = tl.compute((4096, 4096), lambda i, j: tl.sum(A[i, k] * B[k, j], axis=k), name="C")
    sk = generate_gpu_sketches([A, B, C], LIMITS)[0]
    d = sk.default_decisions()
    assert d["2.tile.0"] == [32, 1, 16, 1, 8] and d["2.tile.1"] == [32, 1, 16, 1, 8]
    assert d["2.rtile.0"] == [256, 16, 1]
    stats = gpu_launch_stats(tl.lower(sk.apply([A, B, C], d), [A, B, C]))
    assert stats["grid"] == (1024, 1, 1) and stats["threads"] == 256
    assert stats["shared_bytes"] == 2 * 128 * 16 * 4


def test_samples_respect_tight_limits():
    limits = GpuLimits(max_threads_per_block=64, max_shared_per_block=2048)
    tensors = _workload("matmul")
    sketches = generate_gpu_sketches(tensors, limits)
    rng = random.Random(3)
    for _ in range(20):
        sk = sketches[0]
        decisions = sk.mutate(sk.sample(rng), rng)
        assert sk.fits(decisions)
        threads = math.prod(decisions[f"2.tile.{d}"][2] for d in range(2))
        assert threads <= 64
    stats = gpu_launch_stats(tl.lower(sk.apply(tensors, decisions), tensors))
    assert stats["threads"] <= 64 and stats["shared_bytes"] <= 2048
    # an illegal combination is refused by apply with a ScheduleError (the search drops it)
    bad = dict(sk.default_decisions())
    bad["2.tile.0"], bad["2.tile.1"] = [1, 1, 24, 1, 1], [1, 1, 20, 1, 1]
    with pytest.raises(ScheduleError, match="threads per block"):
        sk.apply(tensors, bad)


def test_gpu_records_replay_deterministically():
    tensors = _workload("conv_bias_relu")
    sketches = generate_gpu_sketches(tensors, LIMITS)
    rng = random.Random(11)
    for _ in range(3):
        index = rng.randrange(len(sketches))
        record = to_record(index, sketches[index].sample(rng))
        first = apply_record(sketches, _workload("conv_bias_relu"), record).to_json()
        again = apply_record(generate_gpu_sketches(_workload("conv_bias_relu"), LIMITS),
                             _workload("conv_bias_relu"), record).to_json()
        assert first == again


def test_cuda_task_key_and_dispatch():
    llvm = Task(wl.matmul, (32, 32, 32), target="llvm")
    gpu = Task(wl.matmul, (32, 32, 32), target="cuda")
    sm80 = Task(wl.matmul, (32, 32, 32), target="cuda -arch=sm_80")
    assert gpu.is_cuda and not llvm.is_cuda
    assert gpu.target_key.startswith("cuda -arch=sm_")
    assert gpu.target_key != llvm.target_key and gpu != llvm
    assert "-arch=sm_80" in sm80.target_key and sm80.build_target == "cuda -arch=sm_80"
    if cuda.available():
        assert "-device=" in gpu.target_key
    # worker processes get the key with the task: they never probe the GPU
    assert Task.from_dict(gpu.to_dict()).target_key == gpu.target_key
    for s, args in (gpu.apply_best(None), gpu.default_schedule()):  # the GPU defaults
        stats = gpu_launch_stats(tl.lower(s, args))
        assert stats["threads"] > 1 and stats["shared_bytes"] > 0
    # the reference of a CUDA task is computed on the CPU
    arrays = gpu.random_inputs(0)
    [ref] = gpu.reference_outputs(arrays)
    np.testing.assert_allclose(ref, arrays[0] @ arrays[1], rtol=1e-4, atol=1e-4)


def test_gpu_features_are_fixed_length_and_name_the_launch():
    tensors = _workload("matmul")
    s = default_gpu_schedule(tensors, LIMITS)
    func = tl.lower(s, tensors)
    vector = features.extract_pooled_gpu(func)
    assert vector.shape == (features.POOLED_LENGTH,)
    stats = gpu_launch_stats(func)
    assert vector[features.gpu_slot("threads_per_block")] == pytest.approx(
        math.log2(1 + stats["threads"]))
    assert vector[features.gpu_slot("shared_bytes_per_block")] == pytest.approx(
        math.log2(1 + stats["shared_bytes"]))
    assert vector[features.gpu_slot("local_bytes_per_thread")] > 0


def test_search_proposes_buildable_gpu_candidates():
    from autotune.cost_model import RandomModel
    from autotune.search import EvolutionarySearch
    task = Task(wl.matmul, (32, 32, 32), target="cuda")
    search = EvolutionarySearch(task, None, seed=0, population=8, generations=1)
    batch = search.next_batch(3, RandomModel(0))
    assert len(batch) == 3
    for c in batch:
        assert c.features.shape == (features.POOLED_LENGTH,)
    s = tl.schedule_from_json(batch[-1].schedule_json, task.tensors)
    assert tl.build(s, task.tensors, target=task.build_target).get_source("cubin")[:4] == \
        b"\x7fELF"


def test_cost_model_without_xgboost_ranks_at_random(monkeypatch, capsys):
    from autotune import cost_model
    monkeypatch.setitem(sys.modules, "xgboost", None)  # import xgboost raises ImportError
    monkeypatch.setattr(cost_model, "_XGBOOST_NOTED", False)
    model = cost_model.XGBoostCostModel(seed=0)
    x = np.random.default_rng(0).random((6, features.POOLED_LENGTH)).astype(np.float32)
    model.update(x, [1.0, 2.0, 3.0, 4.0, math.inf, 0.5])
    assert model.predict(x).shape == (6,) and not model.is_trained
    assert "xgboost" in capsys.readouterr().err


@pytest.mark.skipif(cuda.available(), reason="checks the error path of a machine without GPU")
def test_gpu_measurement_without_gpu_records_errors():
    from autotune.measure import MeasureInput, measure
    from autotune.measure_gpu import GPUBuilder, GPURunner
    task = Task(wl.matmul, (16, 16, 16), target="cuda")
    s, _ = task.apply_best(None)
    inputs = [MeasureInput(task.to_dict(), s.to_json())]
    with GPUBuilder(n_parallel=1) as builder, GPURunner(timeout=60) as runner:
        builds = builder.build(inputs)
        assert builds[0].error is None and os.path.getsize(builds[0].path) > 0
        [res] = measure(inputs, builder, runner)
    assert not res.ok and res.error_kind == "run"
    assert "CUDA" in res.error


@pytest.mark.skipif(not cuda.available(), reason="no CUDA GPU/driver: "
                    f"{cuda.unavailable_reason()}")
def test_tune_matmul_on_the_gpu(tmp_path):
    import autotune
    task = Task(wl.matmul, (256, 256, 256), target="cuda")
    db = str(tmp_path / "gpu.db")
    [summary] = autotune.tune([task], trials=16, database=db, progress=False, timeout=10,
                              search_options={"population": 16, "generations": 1})
    assert summary.best_seconds is not None and summary.trials == 16
    s, args = task.apply_best(db)
    f = tl.build(s, args, target="cuda")
    a, b = (np.random.default_rng(1).standard_normal((256, 256)).astype(np.float32)
            for _ in range(2))
    out = tl.nd.empty((256, 256), "float32", device="cuda")
    f(tl.nd.array(a, device="cuda"), tl.nd.array(b, device="cuda"), out)
    np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-3, atol=1e-3)
