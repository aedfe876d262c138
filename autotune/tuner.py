"""``tune``: measure candidate schedules of several tasks within one trial budget.

Each task has its own :class:`~autotune.search.EvolutionarySearch`; one XGBoost cost model is
shared by all tasks (trained on every record of the tasks already in the database at the start,
then updated after every measured batch). Every candidate is measured in isolation
(``autotune.measure``) and committed to the SQLite database with its sketch record in
``extra["sketch"]``, failures included, so a later ``tune`` on the same file continues where
this one stopped and never measures a schedule twice.

Task scheduler: the first batches go round-robin, one per task. After that each batch goes to
the task with the largest ``weight * expected_gain``, where

    expected_gain = recent_gain + best * 0.1 / sqrt(1 + measured / batch_size)

``recent_gain`` is how much the task's best latency fell (seconds) over its last
``batch_size`` trials -- the recent slope of its curve times one batch -- and the second term
is an exploration bonus: a share of its current best latency (what one batch could save), large
for tasks with few trials and decaying as they get more. A task without any successful
measurement counts the slowest best latency of the others. A task whose search space is
exhausted (every candidate measured) gets no more batches.

Example::

    summaries = autotune.tune([task_a, task_b], trials=200, database="tuning.db")
    for s in summaries:
        print(s.task, s.best_gflops, s.trials, s.errors)
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
import uuid
from typing import Sequence

from tensorlang.errors import UserError

from .cost_model import XGBoostCostModel
from .database import Database
from .measure import LocalBuilder, LocalRunner, MeasureInput, measure, to_record
from .search import Candidate, EvolutionarySearch
from .task import Task

__all__ = ["tune", "TaskTuneSummary", "TuneSummaries"]

_EXPLORATION = 0.1


@dataclasses.dataclass
class TaskTuneSummary:
    """What ``tune`` did for one task.

    ``best_seconds`` / ``best_gflops`` are over all the task's records in the database (this
    call's and earlier ones), ``None`` when none succeeded; ``trials`` and ``errors`` count this
    call's measurements only.
    """

    task: Task
    best_seconds: float | None
    best_gflops: float | None
    trials: int
    errors: int
    previous_trials: int = 0      # records of the task already in the database at the start
    search_failed: int = 0        # candidates the search dropped (did not apply or lower)


class TuneSummaries(list):
    """The per-task summaries (a list, in the order of the tasks given) plus notes about the
    run as a whole (``notes``: e.g. a skipped curve picture) and the curve files written."""

    def __init__(self, items=(), notes=(), curve_files=()):
        super().__init__(items)
        self.notes = list(notes)
        self.curve_files = list(curve_files)


@dataclasses.dataclass
class _TaskState:
    task: Task
    search: EvolutionarySearch
    best: float = math.inf
    measured: int = 0           # records in the database (previous and new)
    previous: int = 0
    trials: int = 0
    proposed: int = 0           # candidates handed to measurement in this call
    errors: int = 0
    exhausted: bool = False
    batches: int = 0
    history: list = dataclasses.field(default_factory=list)  # best seconds after each trial
    curve: list = dataclasses.field(default_factory=list)    # [trial index, best GFLOP/s]

    @property
    def label(self) -> str:
        return self.task.name

    def gflops(self, seconds: float) -> float | None:
        flops = self.task.flop_count()
        if flops is None or not math.isfinite(seconds) or seconds <= 0:
            return None
        return flops / seconds / 1e9


def tune(tasks: "Task | Sequence[Task]", trials: int = 64,
         database: "str | os.PathLike | Database" = "tuning.db", *, timeout: float = 10.0,
         repeat: int = 3, min_repeat_ms: float = 0.0, seed: int = 0,
         builder: LocalBuilder | None = None, runner: LocalRunner | None = None,
         cluster=None, batch_size: int = 16, progress: bool = True,
         curve: "str | os.PathLike | None" = None, cost_model=None,
         transfer: int = 2000, remeasure: int = 4,
         search_options: dict | None = None) -> TuneSummaries:
    """Search schedules for ``tasks``, measuring ``trials`` candidates in all.

    Args:
        tasks: one task or several; ``Task.weight`` says how much each counts.
        trials: measurements to make in this call, over all tasks. Records already in the
            database are not counted; they train the cost model and seed the search.
        database: the SQLite file (or an open ``Database``); created when missing.
        timeout: seconds one candidate may run (and the build workers may go without progress,
            at least 30).
        repeat, min_repeat_ms: timing repeats per candidate, as ``Module.time_evaluator``.
        seed: seeds the searches and the cost model.
        builder, runner: measurement back-ends (default: ``LocalBuilder`` and ``LocalRunner``
            made from the options above, closed at the end -- ``measure_gpu.GPUBuilder`` and
            ``GPURunner`` for CUDA tasks); ones passed in are left open. A runner that also
            builds (``measure_dask.DaskRunner``) needs no builder.
        cluster: measure on a Dask cluster instead of this machine: a scheduler address
            (``"tcp://host:8786"``) or a ``distributed.Client`` (the ``distributed`` extra);
            see ``autotune.measure_dask.DaskRunner``. Search, cost model and database stay
            here; workers build and measure with the options above. Not with builder/runner.
            A runner with ``submit`` / ``collect`` / ``cancel`` (as ``DaskRunner``) gets the
            next batch, searched with the model as it stood, while the current one measures.
        batch_size: candidates measured at a time (the cost model retrains after each batch).
        progress: a one-line progress bar on stderr.
        curve: a path prefix: writes ``prefix.json`` ({task label: [[trial, best GFLOP/s],
            ...]}) and ``prefix.png`` when matplotlib (the ``report`` extra) is installed.
        cost_model: the model to use and update (default: a new ``XGBoostCostModel``).
        transfer: before the first batch, also train the model on up to this many records of
            *other* tasks in the database measured on the same target (their workloads are
            rebuilt from the runs that tuned them), so a new task starts from what the machine
            taught the model on earlier ones; 0 turns it off.
        remeasure: at the end, the best ``remeasure`` records of each task tuned in this call
            are measured again side by side (two rounds, in opposite orders) and their stored
            costs replaced by those, so that the record ``apply_best`` picks won on comparable
            timings rather than on one lucky first measurement on a noisy machine (the first
            costs stay in the record's ``extra["first_costs"]``); 0 turns it off. Re-measuring
            does not count against ``trials``.
        search_options: keyword arguments of every task's ``EvolutionarySearch``
            (``population``, ``generations``, ``epsilon``, ...), e.g. a smaller population
            where lowering candidates is slow.

    Returns:
        :class:`TuneSummaries`: one :class:`TaskTuneSummary` per task, in order.

    Raises:
        UserError: bad arguments, an unreachable cluster, or a task no worker can measure.

    Example:
        >>> task = Task(matmul, args=(256, 256, 256))                    # doctest: +SKIP
        >>> [s] = tune([task], trials=64, database="tuning.db")           # doctest: +SKIP
        >>> s.best_gflops, s.trials, s.errors                             # doctest: +SKIP
    """
    tasks = _check_tasks(tasks)
    if not isinstance(trials, int) or trials < 0:
        raise UserError(f"tune: trials must be a non-negative int, got {trials!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"tune: batch_size must be a positive int, got {batch_size!r}")
    cuda_tasks = [t for t in tasks if getattr(t, "is_cuda", False)]
    if cuda_tasks and len(cuda_tasks) != len(tasks):
        raise UserError("tune: CUDA and CPU tasks are measured by different machinery; tune "
                        "them in separate calls")
    own_builder, own_runner = builder is None, runner is None
    if cluster is not None:
        runner = _cluster_runner(cluster, builder, runner, tasks, timeout=timeout,
                                 repeat=repeat, min_repeat_ms=min_repeat_ms, seed=seed)
        own_builder = False
    db = database if isinstance(database, Database) else Database(database)
    if cuda_tasks and not hasattr(runner, "measure"):
        from .measure_gpu import GPUBuilder, GPURunner
        builder = builder or GPUBuilder(timeout=max(float(timeout), 30.0))
        runner = runner or GPURunner(timeout=timeout, repeat=repeat,
                                     min_repeat_ms=max(min_repeat_ms, 5.0), seed=seed)
    if not hasattr(runner, "measure"):  # a runner that also builds needs no builder
        builder = builder or LocalBuilder(timeout=max(float(timeout), 30.0))
    runner = runner or LocalRunner(timeout=timeout, repeat=repeat, min_repeat_ms=min_repeat_ms,
                                   seed=seed)
    model = cost_model if cost_model is not None else XGBoostCostModel(seed=seed)
    run_id = f"tune-{uuid.uuid4().hex[:12]}"
    bar = _Progress(trials, enabled=progress)
    try:
        states = [_TaskState(t, EvolutionarySearch(t, db, seed=seed + i,
                                                    **(search_options or {})))
                  for i, t in enumerate(tasks)]
        _pretrain(states, db, model, transfer)
        db.start_run(run_id, {"tasks": [t.to_dict() for t in tasks], "trials": trials})
        if all(hasattr(runner, name) for name in ("submit", "collect", "cancel")):
            _tune_pipelined(states, trials, batch_size, db, runner, model, run_id, bar)
        else:
            done = 0
            while done < trials:
                state = _next_task(states, batch_size)
                if state is None:
                    break  # every search space is exhausted
                proposal = _propose(state, min(batch_size, trials - done), model)
                if proposal is None:
                    continue
                batch, inputs = proposal
                results = measure(inputs, builder, runner, best=state.best)
                done += _record(state, batch, inputs, results, db, model, run_id)
                bar.update(done, state)
        if remeasure:
            for state in states:
                _remeasure(state, db, builder, runner, int(remeasure))
        db.finish_run(run_id)
    finally:
        bar.close()
        if own_builder and builder is not None:
            builder.close()
        if own_runner:
            runner.close()
        if not isinstance(database, Database):
            db.close()
    summaries = TuneSummaries(
        TaskTuneSummary(s.task, s.best if math.isfinite(s.best) else None, s.gflops(s.best),
                        s.trials, s.errors, s.previous, s.search.stats.failed) for s in states)
    if curve is not None:
        _write_curves(os.fspath(curve), states, summaries)
    for note in summaries.notes:
        if progress:
            print(f"tune: {note}", file=sys.stderr)
    return summaries


def _cluster_runner(cluster, builder, runner, tasks, **options):
    """A ``DaskRunner`` on ``cluster`` that can measure every task (or a clear error)."""
    if builder is not None or runner is not None:
        raise UserError("tune: give cluster= or builder/runner, not both")
    try:
        from .measure_dask import DaskRunner
    except ImportError as exc:
        raise UserError(f"tune(cluster=...) needs Dask ({exc}): pip install "
                        "'tensorlang[distributed]'") from exc
    dask_runner = DaskRunner(cluster, build_timeout=max(float(options["timeout"]), 30.0),
                             **options)
    try:
        dask_runner.check_tasks(tasks)
    except BaseException:
        dask_runner.close()
        raise
    return dask_runner


def _check_tasks(tasks) -> list[Task]:
    tasks = [tasks] if isinstance(tasks, Task) else list(tasks)
    if not tasks:
        raise UserError("tune needs at least one Task")
    unique: dict = {}
    for t in tasks:
        if not isinstance(t, Task):
            raise UserError(f"tune takes autotune.Task objects, got {type(t).__name__}")
        unique.setdefault((t.key, t.target_key), t)  # the same computation is tuned once
    return list(unique.values())


def _pretrain(states, db: Database, model, transfer: int = 0) -> None:
    """Train the shared model on every record of the tasks already in the database, plus up
    to ``transfer`` records of other tasks of the same targets (see ``tune``)."""
    rows, costs, keys = [], [], []
    if transfer > 0:
        for key, features, cost in _transfer_rows(states, db, transfer):
            rows.append(features)
            costs.append(cost)
            keys.append(key)
    for s in states:
        records = db.records(s.task.key, s.task.target_key)
        s.previous = s.measured = len(records)
        for rec in records:
            s.search.mark_measured([rec.schedule])
            if rec.ok:
                s.best = min(s.best, rec.mean_cost)
            f = s.search.record_features(rec)
            if f is not None:
                rows.append(f)
                costs.append(rec.mean_cost)
                keys.append(s.task.key)
    if rows:
        model.update(rows, costs, tasks=keys)


def _transfer_rows(states, db: Database, limit: int) -> list:
    """``(task key, features, cost)`` of the best records of other tasks tuned in ``db`` on
    the targets of ``states``; tasks whose workload no longer imports or builds are skipped."""
    mine = {(s.task.key, s.task.target_key) for s in states}
    targets = {s.task.target_key for s in states}
    others: dict = {}
    for run in db.all_runs():
        for d in run.meta.get("tasks", []):
            try:
                task = Task.from_dict(d)
            except Exception:  # noqa: BLE001 — a workload gone or changed: nothing to learn
                continue
            pair = (task.key, task.target_key)
            if pair not in mine and task.target_key in targets:
                others.setdefault(pair, task)
    rows: list = []
    share = max(1, limit // max(1, len(others)))
    for (key, target), task in others.items():
        if len(rows) >= limit:
            break
        try:
            search = EvolutionarySearch(task, None)
        except Exception:  # noqa: BLE001 — no search space for it
            continue
        for rec in db.records(key, target)[:share]:
            features = search.record_features(rec)
            if features is not None:
                rows.append((key, features, rec.mean_cost))
    return rows[:limit]


def _next_task(states, batch_size: int) -> _TaskState | None:
    live = [s for s in states if not s.exhausted]
    if not live:
        return None
    for s in live:  # round-robin first: one batch each
        if s.batches == 0:
            return s
    finite = [s.best for s in states if math.isfinite(s.best)]
    fallback = max(finite) if finite else 1.0
    fastest: dict = {}  # per group of alternative algorithms: its fastest task's time
    for s in states:
        if s.task.group is not None:
            fastest[s.task.group] = min(fastest.get(s.task.group, math.inf), s.best)
    return max(live, key=lambda s: s.task.weight * _expected_gain(
        s, batch_size, fallback, fastest.get(s.task.group, math.inf)))


def _expected_gain(state: _TaskState, batch_size: int, fallback: float,
                   fastest: float = math.inf) -> float:
    """Seconds a batch of this task is expected to save: its recent improvement plus an
    exploration bonus that shrinks with its trials. In a group of alternative algorithms
    whose ``fastest`` task is faster than this one, only improvement past that time counts,
    and the bonus shrinks with the square of the gap (a Winograd convolution at half the
    direct one's time leaves the direct one a quarter of its bonus)."""
    best = state.best if math.isfinite(state.best) else fallback
    history = state.history
    recent = 0.0
    if len(history) > batch_size and math.isfinite(history[-1 - batch_size]):
        recent = history[-1 - batch_size] - history[-1]
    elif history and math.isfinite(best):  # fewer trials than one window: from the start
        first = next((h for h in history if math.isfinite(h)), best)
        recent = first - best
    bonus = best * _EXPLORATION / math.sqrt(1 + state.measured / batch_size)
    if math.isfinite(fastest) and math.isfinite(state.best) and state.best > fastest:
        return max(0.0, recent - (state.best - fastest)) + bonus * (fastest / state.best) ** 2
    return recent + bonus


def _tune_pipelined(states, trials, batch_size, db, runner, model, run_id, bar) -> None:
    """The tuning loop for a runner that takes batches asynchronously (``submit`` and
    ``collect``, as ``DaskRunner``): batch k+1 is searched and submitted while batch k is
    built and measured, so the client's search and the cluster's measurements overlap. Batch
    k+1 is scored by the model as it was before batch k's costs came in."""
    done = queued = 0
    flight = None  # (state, batch, inputs, handle)
    while True:
        following = None
        while following is None and done + queued < trials:
            state = _next_task(states, batch_size)
            if state is None:
                break  # every search space is exhausted
            proposal = _propose(state, min(batch_size, trials - done - queued), model)
            if proposal is not None:
                batch, inputs = proposal
                following = (state, batch, inputs, runner.submit(inputs, best=state.best))
                queued += len(inputs)
        if flight is not None:
            state, batch, inputs, handle = flight
            try:
                results = runner.collect(handle)
            except BaseException:
                if following is not None:
                    runner.cancel(following[3])
                raise
            queued -= len(inputs)
            done += _record(state, batch, inputs, results, db, model, run_id)
            bar.update(done, state)
        flight = following
        if flight is None:
            return


def _propose(state: _TaskState, size: int, model) -> "tuple[list, list] | None":
    """The next batch of ``state``'s search and its measure inputs; None when its space is
    exhausted (then the task is marked so)."""
    state.batches += 1
    batch = state.search.next_batch(size, model)
    if not batch and state.proposed == 0 and state.measured == 0:
        batch = _fallback(state)
    if not batch:
        state.exhausted = True
        return None
    state.proposed += len(batch)
    return batch, [MeasureInput(state.task.to_dict(), c.schedule_json) for c in batch]


def _record(state, batch, inputs, results, db, model, run_id) -> int:
    """Store one measured batch, update the task's best and curve, and train the model."""
    task = state.task
    records = []
    for c, inp, res in zip(batch, inputs, results):
        rec = to_record(task, inp, res, run_id)
        if c.record:
            rec = dataclasses.replace(rec, extra={**rec.extra, "sketch": c.record})
        records.append(rec)
    db.commit_records(records)
    for rec in records:
        state.trials += 1
        state.measured += 1
        state.errors += not rec.ok
        if rec.ok:
            state.best = min(state.best, rec.mean_cost)
        state.history.append(state.best)
        state.curve.append([state.measured, state.gflops(state.best)])
    rows = [(c.features, r.mean_cost) for c, r in zip(batch, records) if c.features is not None]
    if rows:
        model.update([f for f, _ in rows], [cost for _, cost in rows],
                     tasks=[task.key] * len(rows))
    return len(records)


def _remeasure(state: _TaskState, db: Database, builder, runner, k: int) -> None:
    """Measure the best ``k`` records of a task tuned in this run again, side by side, and
    store those costs; repeats while a record not yet re-measured enters the top ``k``."""
    task = state.task
    if state.measured == 0 or k < 2:
        return
    for _ in range(2):
        top = db.best(task.key, task.target_key, k=k)
        if len(top) < 2 or all(r.extra.get("remeasured") for r in top):
            break
        inputs = [MeasureInput(task.to_dict(), r.schedule) for r in top]
        first = measure(inputs, builder, runner)
        second = measure(inputs[::-1], builder, runner)[::-1]
        for rec, a, b in zip(top, first, second):
            if a.error is not None or b.error is not None:
                continue  # it measured once; a flaky re-run leaves the first costs
            db.update_costs(rec, tuple(a.costs) + tuple(b.costs),
                            {"remeasured": True,
                             "first_costs": rec.extra.get("first_costs", list(rec.costs))})
    best = db.best(task.key, task.target_key, k=1)
    if best:
        state.best = best[0].mean_cost


def _fallback(state: _TaskState) -> list:
    """A task whose every candidate fails to lower still gets one measurement, of its plain
    schedule, so the failure is recorded (and the search never proposes anything)."""
    schedule, _ = state.task.default_schedule()
    text = schedule.to_json()
    state.search.mark_measured([text])
    return [Candidate(-1, {}, "", text, None)]


# -- progress and curves --------------------------------------------------------------------

class _Progress:
    """``tune [#####.....] 24/64 trials | matmul(128,128,128) 12.3 GFLOP/s | 0:12, ETA 0:20``"""

    def __init__(self, total: int, enabled: bool, width: int = 24):
        self.total, self.enabled, self.width = total, enabled, width
        self.start = time.perf_counter()
        self.shown = False

    def update(self, done: int, state: _TaskState) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        filled = int(self.width * done / self.total) if self.total else self.width
        gflops = state.gflops(state.best)
        best = f"{gflops:.1f} GFLOP/s" if gflops is not None else (
            f"{state.best * 1e3:.3f} ms" if math.isfinite(state.best) else "no valid result")
        eta = elapsed / done * (self.total - done) if done else 0.0
        line = (f"tune [{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} trials"
                f" | {state.label} best {best} | {_clock(elapsed)} elapsed, ETA {_clock(eta)}")
        sys.stderr.write("\r" + line.ljust(100))
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.enabled and self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def _write_curves(prefix: str, states, summaries: TuneSummaries) -> None:
    labels: dict = {}
    for s in states:
        label = s.label if s.label not in labels else f"{s.label}#{s.task.key[:8]}"
        labels[label] = s.curve
    json_path = prefix + ".json"
    with open(json_path, "w") as f:
        json.dump(labels, f, indent=1)
    summaries.curve_files.append(json_path)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        summaries.notes.append(f"wrote {json_path}; skipped {prefix}.png: matplotlib is not "
                               "installed (pip install tensorlang[report])")
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, points in labels.items():
        points = [p for p in points if p[1] is not None]
        if points:
            ax.step([p[0] for p in points], [p[1] for p in points], where="post", label=label)
    ax.set_xlabel("trials of the task")
    ax.set_ylabel("best GFLOP/s")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(prefix + ".png")
    plt.close(fig)
    summaries.curve_files.append(prefix + ".png")
