"""Measurement: parallel builds, a separate runner process that survives crashes and hangs,
correctness checks against the reference, and records for the database."""
import pathlib
import sys

import pytest

from autotune.database import TuningRecord
from autotune.measure import (BuildResult, LocalBuilder, LocalRunner, MeasureInput,
                              MeasureResult, measure, to_record)
from autotune.task import Task
from tensorlang.errors import UserError

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import workloads_measure as wl  # noqa: E402


def _good_input(n=64):
    task = Task(wl.matmul, args=(n, n, n))
    s, _ = task.default_schedule()
    C = task.outputs[0]
    i, j = s[C].op.axis
    jo, ji = s[C].split(j, factor=8)
    s[C].vectorize(ji)
    return task, MeasureInput(task.to_dict(), s.to_json())


def _default_input(func, *args):
    task = Task(func, args=args)
    s, _ = task.default_schedule()
    return MeasureInput(task.to_dict(), s.to_json())


@pytest.fixture(scope="module")
def builder():
    with LocalBuilder(n_parallel=2, timeout=60) as b:
        yield b


def _assert_good(res: MeasureResult):
    assert res.error is None and res.error_kind is None, res.error
    assert res.ok and len(res.costs) == 3
    assert all(0 < c < 1.0 for c in res.costs)
    assert res.build_seconds > 0 and res.run_seconds > 0


def test_every_failure_is_recorded_and_the_next_candidate_still_measures(builder):
    task, good = _good_input()
    bad_replay = MeasureInput(task.to_dict(), good.schedule_json.replace('"C"', '"nope"'))
    inputs = [good, bad_replay, good,
              _default_input(wl.aborts, 8), good,
              _default_input(wl.hangs, 8), good,
              _default_input(wl.random_values, 16), good]
    with LocalRunner(timeout=3, number=3, repeat=3) as runner:
        results = measure(inputs, builder, runner)
    kinds = [r.error_kind for r in results]
    assert kinds == [None, "build", None, "crash", None, "timeout", None, "wrong_result", None]
    for r in results[::2]:
        _assert_good(r)
    assert "ScheduleError" in results[1].error and "nope" in results[1].error
    assert "SIGABRT" in results[3].error
    assert "3 s" in results[5].error
    assert 2.5 < results[5].run_seconds < 30
    assert "output E differs from the reference" in results[7].error
    assert not any(pathlib.Path(builder.directory).iterdir())  # libraries removed after


def test_good_schedule_has_sane_time_against_its_flop_count(builder):
    task, good = _good_input(128)
    with LocalRunner(number=5, repeat=3, min_repeat_ms=5, flush_cache=True) as runner:
        [res] = measure([good], builder, runner)
    _assert_good(res)
    gflops = task.flop_count() / res.mean_cost / 1e9
    assert 0.05 < gflops < 2000, gflops


def test_a_dying_build_worker_costs_only_its_own_candidate(builder):
    task, good = _good_input()
    killer = MeasureInput({"workload": "workloads_measure.dies_when_called", "args": [8],
                           "target": "llvm", "weight": 1.0}, good.schedule_json)
    results = builder.build([good, killer, good])
    assert [r.error_kind for r in results] == [None, "crash", None]
    assert "the build worker died" in results[1].error
    assert all(pathlib.Path(r.path).exists() for r in results[::2])
    [again] = builder.build([good])  # a fresh pool after the break
    assert again.path is not None


def test_failed_build_passes_through_the_runner_without_starting_it():
    runner = LocalRunner()
    task, good = _good_input()
    [res] = runner.run([good], [BuildResult(None, "no", "build", 0.25)])
    assert (res.costs, res.error, res.error_kind, res.build_seconds) == ((), "no", "build", 0.25)
    assert runner._process is None
    with pytest.raises(UserError, match="2 inputs but 1 builds"):
        runner.run([good, good], [BuildResult(None, "no", "build")])


def test_unloadable_library_is_a_run_error(tmp_path):
    task, good = _good_input()
    bogus = tmp_path / "bogus.so"
    bogus.write_text("not a library")
    with LocalRunner(timeout=30) as runner:
        [res] = runner.run([good], [BuildResult(str(bogus), seconds=0.1)])
    assert res.error_kind == "run" and "cannot load" in res.error


def test_to_record_keeps_costs_or_the_error():
    task, good = _good_input()
    ok = to_record(task, good, MeasureResult((1e-3, 3e-3), None, None, 0.5, 0.2), run_id="r1")
    assert isinstance(ok, TuningRecord) and ok.ok and ok.mean_cost == pytest.approx(2e-3)
    assert (ok.task_key, ok.target, ok.workload, ok.schedule, ok.run_id) == \
        (task.key, task.target_key, task.workload_name, good.schedule_json, "r1")
    bad = to_record(task, good, MeasureResult((), "died by SIGSEGV", "crash", 0.5, 0.2))
    assert not bad.ok and bad.error == "crash: died by SIGSEGV"
    assert bad.extra["error_kind"] == "crash"


def test_measure_result_checks_its_error_kind():
    with pytest.raises(UserError, match="unknown measurement error kind"):
        MeasureResult((), "x", "oops")
    assert MeasureResult((), "x", "run").mean_cost == float("inf")


def test_a_candidate_far_slower_than_the_best_is_timed_once(builder, monkeypatch):
    import autotune.measure as m
    monkeypatch.setattr(m, "CUTOFF_FLOOR", 0.0)  # let a small, fast task trip the cutoff
    task, good = _good_input(96)
    with LocalRunner(number=3, repeat=3) as runner:
        [full] = measure([good], builder, runner)
        [cut] = measure([good], builder, runner, best=full.mean_cost / 1000)
        [kept] = measure([good], builder, runner, best=full.mean_cost)
    _assert_good(full)
    _assert_good(kept)  # within 5x of the best: every repeat is timed
    assert cut.ok and len(cut.costs) == 1
    # the one cost is a real call of the candidate, not the cutoff
    assert cut.costs[0] > full.mean_cost / 1000 * 5
    assert cut.costs[0] < 1.0


def test_the_batch_best_so_far_bounds_later_candidates(builder, monkeypatch):
    import autotune.measure as m
    monkeypatch.setattr(m, "CUTOFF_FLOOR", 0.0)
    task = Task(wl.matmul, args=(128, 128, 128))
    _, fast = _good_input(128)
    slow_s, _ = task.default_schedule()
    C = task.outputs[0]
    slow_s[C].reorder(*reversed(list(slow_s[C].op.axis)))  # column-major walk: far slower
    slow = MeasureInput(task.to_dict(), slow_s.to_json())
    with LocalRunner(number=3, repeat=3, cutoff=1.0) as runner:
        results = measure([fast, slow], builder, runner)
    _assert_good(results[0])
    if results[1].costs[0] > results[0].mean_cost:  # slower than the first: timed once
        assert len(results[1].costs) == 1
    else:
        assert len(results[1].costs) == 3


@pytest.mark.parametrize("cutoff", [-1, 0.5, "10"])
def test_runner_refuses_a_bad_cutoff(cutoff):
    with pytest.raises(UserError, match="cutoff"):
        LocalRunner(cutoff=cutoff)


def test_the_output_check_scales_its_tolerance_with_the_outputs_magnitude():
    """Rounding errors scale with what was summed: a point that nearly cancels (as Winograd
    transforms make) may be off by 1e-3 of the output's RMS; a wrong value is still caught,
    and so is a small output that is wrong everywhere."""
    import numpy as np
    from autotune.measure import _compare
    task = Task(wl.matmul, args=(16, 16, 16))
    rng = np.random.default_rng(0)
    want = (rng.standard_normal((16, 16)) * 50).astype(np.float32)
    want[3, 4] = 0.8
    inputs = [np.zeros((16, 16), np.float32)] * 2
    near = want.copy()
    near[3, 4] += 0.02  # 2.5% of the value, 4e-4 of the RMS (about 50)
    assert _compare(task, inputs + [near], [want]) is None
    wrong = want.copy()
    wrong[7, 1] += 1.0
    message = _compare(task, inputs + [wrong], [want])
    assert message and "(7, 1)" in message and "1 of 256" in message
    small = (want / 1e4).astype(np.float32)
    assert _compare(task, inputs + [small * 1.1], [small]) is not None
