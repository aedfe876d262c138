"""Tuning on a Dask cluster: records as a local run gives them, routing by target, faults.

One ``LocalCluster`` of two worker processes (one thread and one measuring slot each) serves the
whole module: starting workers and importing tensorlang in them takes seconds.
"""
import os
import pathlib
import signal
import sys
import threading
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed",
                                  reason="needs dask[distributed] (the distributed extra)")

import autotune  # noqa: E402
import tensorlang as tl  # noqa: E402
from autotune.database import Database  # noqa: E402
from autotune.measure import MeasureInput  # noqa: E402
from autotune.measure_dask import DaskRunner  # noqa: E402
from tensorlang.errors import UserError  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # workers inherit sys.path
import workloads_measure as broken  # noqa: E402
import workloads_search as wl  # noqa: E402

OTHER_CPU = "llvm -mtriple=x86_64-unknown-linux-gnu -mcpu=no-such-cpu -num-threads=1"
SMALL_SEARCH = {"population": 16, "generations": 1}  # the client's search is not under test


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  resources={"measure": 1}, dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        yield c


def _tune(task, path, client, trials, batch_size):
    return autotune.tune([task], trials=trials, database=path, batch_size=batch_size,
                         progress=False, remeasure=0, cluster=client, timeout=10, repeat=2,
                         search_options=SMALL_SEARCH)


def test_tuning_on_the_cluster_gives_records_like_a_local_run(tmp_path, client):
    task = autotune.Task(wl.matmul, args=(32, 32, 32))
    [summary] = _tune(task, tmp_path / "cluster.db", client, trials=8, batch_size=4)
    autotune.tune([task], trials=2, database=tmp_path / "local.db", batch_size=2,
                            progress=False, remeasure=0, timeout=10, repeat=2,
                  search_options=SMALL_SEARCH)
    assert summary.trials == 8 and summary.best_seconds > 0
    with Database(tmp_path / "cluster.db") as db:
        records = db.records(task.key, task.target_key)
    with Database(tmp_path / "local.db") as db:
        local_records = db.records(task.key, task.target_key)
    assert len(records) == 8 and len({r.schedule for r in records}) == 8
    for rec in records:
        assert set(rec.extra) == set(local_records[0].extra)
        assert rec.target == local_records[0].target == task.target_key
        assert rec.run_id and (rec.error is not None or len(rec.costs) == 2)
    assert sum(not r.ok for r in records) == summary.errors
    schedule, args = task.apply_best(tmp_path / "cluster.db")
    f = tl.build(schedule, args)
    a, b, c = task.random_inputs(seed=5)
    f(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


def test_crashing_and_hanging_candidates_are_recorded_as_locally(client):
    task = autotune.Task(broken.matmul, args=(32, 32, 32))
    good = MeasureInput(task.to_dict(), task.default_schedule()[0].to_json())
    inputs = [good]
    for func in (broken.aborts, broken.hangs):
        t = autotune.Task(func, args=(8,))
        inputs.append(MeasureInput(t.to_dict(), t.default_schedule()[0].to_json()))
    with DaskRunner(client, timeout=3, number=1, repeat=2) as runner:
        results = runner.measure(inputs + [good])
    assert [r.error_kind for r in results] == [None, "crash", "timeout", None]
    assert "SIGABRT" in results[1].error and "3 s" in results[2].error
    assert len(results[0].costs) == 2 and results[3].ok


def test_a_task_no_worker_can_measure_gets_a_clear_error(tmp_path, client):
    task = autotune.Task(wl.matmul, args=(32, 32, 32), target_key=OTHER_CPU)
    with pytest.raises(UserError) as info:
        _tune(task, tmp_path / "t.db", client, trials=4, batch_size=4)
    text = str(info.value)
    assert "no Dask worker can measure task matmul(32,32,32)" in text
    assert "-mcpu=no-such-cpu" in text and "2 worker(s)" in text
    host_cpu = client.run(lambda: __import__("llvmlite.binding").binding.get_host_cpu_name())
    assert f"CPU {next(iter(host_cpu.values()))}" in text
    assert not (tmp_path / "t.db").exists()


def test_cluster_and_a_runner_together_are_refused(tmp_path):
    task = autotune.Task(wl.matmul, args=(32, 32, 32))
    with pytest.raises(UserError, match="cluster= or builder/runner"):
        autotune.tune([task], trials=4, database=tmp_path / "t.db", cluster="tcp://x:1",
                      runner=object())


def test_an_unreachable_scheduler_is_a_user_error():
    with pytest.raises(UserError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        DaskRunner("tcp://127.0.0.1:9", connect_timeout=2)


def test_the_runner_requeues_a_dead_workers_candidate_once_then_restores_the_scheduler(client):
    def allowed(dask_scheduler=None):
        return dask_scheduler.allowed_failures

    before = client.run_on_scheduler(allowed)
    with DaskRunner(client) as runner:
        assert client.run_on_scheduler(allowed) == 1  # one requeue, the second death records
        with DaskRunner(client, requeue_once=False):
            assert client.run_on_scheduler(allowed) == 1  # left as the first runner set it
        assert runner.client is client
    assert client.run_on_scheduler(allowed) == before


@pytest.mark.slow
def test_a_worker_killed_mid_measurement_loses_no_trial(tmp_path, client):
    pids = client.run(os.getpid)
    killed = []

    def kill_one_measuring_worker():
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for address, keys in client.processing().items():
                if any(str(k).startswith("tensorlang-run-") for k in keys) and address in pids:
                    os.kill(pids[address], signal.SIGKILL)
                    killed.append(address)
                    return
            time.sleep(0.05)

    task = autotune.Task(wl.matmul, args=(40, 40, 40))
    killer = threading.Thread(target=kill_one_measuring_worker, daemon=True)
    killer.start()
    [summary] = _tune(task, tmp_path / "t.db", client, trials=8, batch_size=8)
    killer.join()
    assert killed, "no measurement was seen running to kill its worker"
    with Database(tmp_path / "t.db") as db:
        records = db.records(task.key, task.target_key)
    assert summary.trials == 8 and len(records) == 8
    assert len({r.schedule for r in records}) == 8  # none recorded twice
    # the nanny starts a new worker in the killed one's place; a second run resumes from the
    # database on the cluster as it is now
    client.wait_for_workers(2, timeout=60)
    assert killed[0] not in client.scheduler_info()["workers"]
    [again] = _tune(task, tmp_path / "t.db", client, trials=4, batch_size=4)
    with Database(tmp_path / "t.db") as db:
        records = db.records(task.key, task.target_key)
    assert again.previous_trials == 8 and again.trials == 4
    assert len(records) == 12 and len({r.schedule for r in records}) == 12


def test_a_host_without_declared_slots_gets_exactly_one():
    # in-process workers: nothing is measured, only slots and advertised targets are looked at
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c, DaskRunner(c) as runner:
        task = autotune.Task(wl.matmul, args=(32, 32, 32))
        runner.check_tasks([task])
        workers = c.scheduler_info()["workers"].values()
        assert sorted(w["resources"].get("measure", 0) for w in workers) == [0, 1]
        assert all(any(name.startswith("tensorlang-target-") for name in w["resources"])
                   for w in workers)
