"""Tasks: workload registry, structural keys, flop counts, default builds, serialization."""
import json
import os
import pathlib
import platform
import subprocess
import sys

import numpy as np
import pytest

import tensorlang as tl
from autotune.database import Database, TuningRecord
from autotune.task import Task, best_task, lookup_workload, workload
from tensorlang.errors import UserError

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import workloads_for_tests as wl  # noqa: E402

MATMUL = "workloads_for_tests.matmul"


@workload
def matmul_swapped_args(m, n, k):
    A = tl.placeholder((m, k), name="A")
    B = tl.placeholder((k, n), name="B")
    r = tl.reduce_axis((0, k), name="r")
    C = tl.compute((m, n), lambda i, j: tl.sum(A[i, r] * B[r, j], axis=r), name="C")
    return [B, A, C]


@workload
def matmul_plus(m, n, k):
    A = tl.placeholder((m, k), name="A")
    B = tl.placeholder((k, n), name="B")
    r = tl.reduce_axis((0, k), name="r")
    C = tl.compute((m, n), lambda i, j: tl.sum(A[i, r] + B[r, j], axis=r), name="C")
    return [A, B, C]


@workload
def matmul_symbolic():
    n = tl.var("n")
    A = tl.placeholder((n, n), name="A")
    r = tl.reduce_axis((0, n), name="r")
    return [A, tl.compute((n, n), lambda i, j: tl.sum(A[i, r] * A[r, j], axis=r), name="C")]


@workload
def returns_a_number(n):
    return 3


def test_same_computation_same_key_whatever_the_names():
    a = Task(wl.matmul, (32, 48, 16))
    b = Task(wl.matmul_renamed, (32, 48, 16))
    assert a.workload_name != b.workload_name
    assert a.key == b.key and len(a.key) == 64
    assert a == b and hash(a) == hash(b)
    assert Task(wl.matmul, (32, 48, 16)).key == a.key  # fresh variables, same key


@pytest.mark.parametrize("other", [
    lambda: Task(wl.matmul, (32, 48, 17)),                     # shape
    lambda: Task(wl.matmul, (32, 48, 16, "float64")),          # dtype
    lambda: Task(matmul_plus, (32, 48, 16)),                   # op
    lambda: Task(matmul_swapped_args, (32, 48, 16)),           # argument order
], ids=["shape", "dtype", "op", "argument-order"])
def test_different_computation_different_key(other):
    assert other().key != Task(wl.matmul, (32, 48, 16)).key


def test_constants_are_part_of_the_key():
    assert Task(wl.scale, (64, 2.0)).key != Task(wl.scale, (64, 3.0)).key
    assert Task(wl.scale, (64, 2.0)).key == Task(wl.scale, (64, 2.0)).key


def test_key_is_the_same_in_another_process():
    task = Task(wl.matmul, (32, 48, 16))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from autotune.task import Task; "
            f"print(Task({MATMUL!r}, (32, 48, 16)).key)")  # imported by name, not by us
    env = dict(os.environ, PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", code, str(HERE)], capture_output=True,
                         text=True, env=env, check=True, timeout=60)
    assert out.stdout.strip() == task.key


def test_lambdas_and_nested_functions_are_refused():
    with pytest.raises(UserError, match="cannot be imported by name"):
        workload(lambda n: [])

    def nested(n):
        return []

    with pytest.raises(UserError, match="cannot be imported by name"):
        workload(nested)
    with pytest.raises(UserError, match="cannot be imported by name"):
        Task(lambda: [], ())


def test_a_second_function_under_a_registered_name_is_refused():
    def impostor(m, n, k):
        return wl.matmul(m, n, k)

    impostor.__module__, impostor.__qualname__ = wl.__name__, "matmul"
    with pytest.raises(UserError, match="already registered as 'workloads_for_tests.matmul'"):
        workload(impostor)
    assert workload(wl.matmul) is wl.matmul  # registering the same function again is fine


def test_registry_lookup_by_name():
    assert lookup_workload(MATMUL) is wl.matmul
    assert Task(MATMUL, (8, 8, 8)) == Task(wl.matmul, (8, 8, 8))
    assert len(wl.matmul(4, 4, 4)) == 3  # still callable as before
    with pytest.raises(UserError, match="no workload named 'no_such_module.f'"):
        lookup_workload("no_such_module.f")
    with pytest.raises(UserError, match="no workload named 'workloads_for_tests.nothing'"):
        lookup_workload("workloads_for_tests.nothing")


def test_bad_workload_result_names_the_workload():
    with pytest.raises(UserError, match="returns_a_number must return"):
        Task(returns_a_number, (4,))


def test_dict_round_trip_through_json():
    task = Task(wl.matmul, (16, 8, 4, "float64"), target="llvm -num-threads=1", weight=3.0)
    d = json.loads(json.dumps(task.to_dict()))
    back = Task.from_dict(d)
    assert back == task
    assert (back.workload_name, back.args, back.target, back.weight) == \
        (MATMUL, (16, 8, 4, "float64"), "llvm -num-threads=1", 3.0)
    assert "workloads_for_tests.matmul" in repr(back)


def test_a_group_label_travels_but_is_not_part_of_the_key():
    plain = Task(wl.matmul, (16, 8, 4))
    grouped = Task(wl.matmul, (16, 8, 4), group="layer1")
    assert grouped.key == plain.key and grouped.group == "layer1" and plain.group is None
    back = Task.from_dict(json.loads(json.dumps(grouped.to_dict())))
    assert back.group == "layer1"
    assert "group" not in plain.to_dict()


def test_best_task_picks_the_alternative_with_the_fastest_record(tmp_path):
    first = Task(wl.matmul, (16, 8, 4), group="g")
    second = Task(wl.matmul, (8, 16, 4), group="g")
    path = tmp_path / "t.db"
    assert best_task([first, second], path) is first  # no file: the first task
    assert not path.exists()
    with Database(path) as db:
        for task, cost in ((first, 2e-3), (second, 3e-3)):
            db.commit_record(TuningRecord(task.key, task.target_key, task.workload_name,
                                          '{"a": 1}', costs=(cost,)))
        assert best_task([first, second], db) is first
        db.commit_record(TuningRecord(second.key, second.target_key, second.workload_name,
                                      '{"a": 2}', costs=(1e-3,)))
        assert best_task([first, second], db) is second
        db.commit_record(TuningRecord(first.key, first.target_key, first.workload_name,
                                      '{"a": 3}', error="crash: segfault"))
        assert best_task([second, first], db) is second  # failures do not count
    assert best_task([first, second], str(path)) is second
    with pytest.raises(UserError, match="at least one task"):
        best_task([], path)


def test_flop_count():
    assert Task(wl.matmul, (32, 48, 16)).flop_count() == 2 * 32 * 48 * 16
    assert Task(wl.scale, (100,)).flop_count() == 100
    assert Task(matmul_symbolic, ()).flop_count() is None


def test_default_schedule_builds_and_matches_numpy():
    task = Task(wl.matmul, (24, 40, 16))
    schedule, args = task.default_schedule()
    assert args == task.tensors and task.outputs == [task.tensors[2]]
    f = task.build(schedule)
    a, b, c = task.random_inputs(seed=1)
    assert not c.any() and a.dtype == np.float32
    f(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)
    a2, b2, c2 = task.random_inputs(seed=1)
    np.testing.assert_array_equal(a, a2)
    (ref,) = task.reference_outputs([a2, b2, c2])
    np.testing.assert_allclose(ref, a @ b, rtol=1e-5, atol=1e-5)
    assert not c2.any()  # the arrays passed in are left alone


def test_random_inputs_of_integer_and_symbolic_tasks():
    a, b, c = Task(wl.matmul, (4, 4, 4, "int32")).random_inputs(0)
    assert a.dtype == np.int32 and np.abs(a).max() <= 4
    with pytest.raises(UserError, match="symbolic shape"):
        Task(matmul_symbolic, ()).random_inputs(0)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="avx2 is x86")
def test_target_key_names_the_cpu_features():
    host = Task(wl.matmul, (8, 8, 8), target="llvm")
    avx2 = Task(wl.matmul, (8, 8, 8), target="llvm -mattr=+avx2")
    assert host.key == avx2.key
    assert host.target_key != avx2.target_key and host != avx2
    assert "-mcpu=" in host.target_key and "-num-threads=" in host.target_key
