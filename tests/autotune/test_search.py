"""The evolutionary search (autotune/search.py): valid children, no repeats, cheap rounds."""
import pathlib
import random
import sys
import time

import numpy as np
import tensorlang as tl
from autotune.cost_model import RandomModel, XGBoostCostModel
from autotune.database import Database, TuningRecord
from autotune.search import EvolutionarySearch, crossover
from autotune.task import Task

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import workloads_search as wl  # noqa: E402


def _fake_record(task, candidate, cost):
    return TuningRecord(task.key, task.target_key, task.workload_name, candidate.schedule_json,
                        costs=(cost,), extra={"sketch": candidate.record})


def test_mutation_and_crossover_give_valid_correct_candidates():
    task = Task(wl.matmul, args=(64, 64, 64))
    search = EvolutionarySearch(task, seed=1)
    rng = random.Random(0)
    a = rng.randrange(len(search.sketches))
    sketch = search.sketches[a]
    first, second = sketch.sample(rng), sketch.sample(rng)
    children = [sketch.mutate(first, rng) for _ in range(10)]
    for _ in range(10):
        child = crossover(sketch, first, second, rng)
        assert child is not None
        assert all(child[k] in (first[k], second[k]) for k in child)
        children.append(child)
    lowered = [search.lower(a, c) for c in children]
    assert all(c is not None and c.features.ndim == 1 for c in lowered)
    assert search.stats.failed == 0
    x, y = (np.random.default_rng(0).standard_normal((64, 64)).astype("float32")
            for _ in range(2))
    for c in lowered[:1] + lowered[10:11]:  # one mutant and one crossover child, built and run
        s = tl.schedule_from_json(c.schedule_json, task.tensors)
        out = np.zeros((64, 64), "float32")
        tl.build(s, task.tensors)(x, y, out)
        np.testing.assert_allclose(out, x @ y, rtol=1e-4, atol=1e-4)


def test_crossover_rejects_an_invalid_child():
    task = Task(wl.matmul, args=(64, 64, 64))
    sketch = EvolutionarySearch(task).sketches[0]
    good = sketch.default_decisions()
    bad = {**good, "2.unroll": 3}  # not one of the options
    children = [crossover(sketch, good, bad, random.Random(s)) for s in range(8)]
    assert None in children and good in children


def test_batches_never_repeat_and_skip_the_database(tmp_path):
    task = Task(wl.matmul, args=(64, 64, 64))
    db = Database(tmp_path / "t.db")
    search = EvolutionarySearch(task, db, seed=0, population=16, generations=2)
    model = RandomModel(0)
    first = search.next_batch(8, model)
    second = search.next_batch(8, model)
    assert len(first) == len(second) == 8
    texts = [c.schedule_json for c in first + second]
    assert len(set(texts)) == 16
    db.commit_records(_fake_record(task, c, 1e-3 + i * 1e-5) for i, c in enumerate(first))
    again = EvolutionarySearch(task, db, seed=0, population=16, generations=2)
    seeds = again._seeds()  # the measured records come back as population seeds
    assert {c.record for c in seeds} == {c.record for c in first}
    third = again.next_batch(8, model)
    assert not {c.schedule_json for c in third} & {c.schedule_json for c in first}


def test_failing_candidates_are_dropped_and_counted(monkeypatch):
    task = Task(wl.matmul, args=(32, 32, 32))
    search = EvolutionarySearch(task, population=8, generations=1)
    assert search.lower(0, {"no such decision": 1}) is None
    assert search.stats.failed == 1
    for sk in search.sketches:
        monkeypatch.setattr(sk, "apply", lambda *a, **k: (_ for _ in ()).throw(
            tl.errors.ScheduleError("broken on purpose")))
    assert search.next_batch(4, RandomModel()) == []
    assert search.stats.failed > 1


def test_a_round_of_search_is_cheap_for_matmul_256():
    task = Task(wl.matmul, args=(256, 256, 256))
    search = EvolutionarySearch(task, seed=0, population=64, generations=3)
    model = XGBoostCostModel(seed=0)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    batch = search.next_batch(16, model)
    first = time.perf_counter() - start
    # train on fake costs so the second round scores with a real model
    model.update([c.features for c in batch], rng.uniform(1e-3, 2e-3, len(batch)))
    start = time.perf_counter()
    batch2 = search.next_batch(16, model)
    second = time.perf_counter() - start
    print(f"\nsearch matmul 256, population 64, 3 generations: first round {first:.2f} s, "
          f"second {second:.2f} s, {search.stats.scored} candidates lowered and scored "
          f"({search.stats.scored_per_second:.0f}/s), {search.stats.failed} dropped")
    assert len(batch) == len(batch2) == 16
    assert first < 30 and second < 30  # a few seconds unloaded; generous for a shared machine
