"""Measurement on a Dask cluster: candidates travel as text, workers build and measure them.

:class:`DaskRunner` is a combined back-end (``measure(inputs) -> list[MeasureResult]``, or
``submit(inputs)`` then ``collect(batch)``) that ``tune(cluster=...)`` uses in place of the local
builder and runner; ``tune`` keeps one batch in flight while it searches the next, so the
client's search overlaps the cluster's builds and measurements. Search, cost model and the
SQLite database stay on the client; only :class:`~autotune.measure.MeasureInput` s travel, as
the task's JSON description (its workload is imported by module path on the worker) and the
schedule's JSON trace, never pickled DSL objects.

Per candidate the client submits two Dask tasks:

- a **build** (any worker whose target matches the task's): the worker's own
  :class:`~autotune.measure.LocalBuilder` (a spawned process, so a crashing compiler takes only
  that process down) compiles the candidate and hands back the library's bytes;
- a **run**, which needs one ``measure`` slot (a Dask worker resource) besides the target: the
  worker writes the library to its scratch folder and times it with its own
  :class:`~autotune.measure.LocalRunner` -- the same child process, timeout, repeats, minimum
  time, cache flushing and output check as local measurement, and the same error kinds.

Builds run on every worker in parallel; measurements run only where a slot is free. Workers
started with ``--resources measure=1`` keep what they declare; on a host where no worker declares
a slot, the runner gives one worker a single slot, so measurements on that host never overlap.

Routing: a worker plugin computes, on each worker (and on every worker that joins later), the
target key each tuned target string has there -- the CPU name, its features and the thread
count, as ``Task.target_key`` computes them; a CUDA target only where a GPU is present -- and
advertises it as a worker resource named after the key's hash. A task's tasks ask for the
resource of its key, so they only reach matching workers; when none matches,
:meth:`DaskRunner.check_tasks` raises a ``UserError`` naming the target and what each worker has.

Faults: a worker that dies while holding a candidate makes the scheduler queue the candidate
elsewhere, once (the runner sets the scheduler's allowed failures to 1 while it is open); a
second death brings it back as ``KilledWorker``, recorded as a ``"crash"``. A candidate lost any other way (cancelled, a
lost connection) is submitted once more, then recorded as a ``"crash"``. Each input gets exactly
one result, and the client alone writes the database, so nothing is recorded twice.

Example::

    from distributed import Client
    client = Client("tcp://scheduler:8786")
    autotune.tune(tasks, trials=1000, database="tuning.db", cluster=client)
    # or by hand:
    with DaskRunner(client, repeat=5) as runner:
        runner.check_tasks(tasks)
        results = runner.measure(inputs)             # list[MeasureResult], in order
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import shlex
import tempfile
import threading
import time
import uuid
from typing import Sequence

import distributed
from distributed.diagnostics.plugin import WorkerPlugin

from tensorlang.errors import UserError

from .measure import BuildResult, LocalBuilder, LocalRunner, MeasureInput, MeasureResult
from .measure_gpu import GPUBuilder, GPURunner, _hide_gpu
from .task import cuda_target_key, is_cuda_target

__all__ = ["DaskRunner", "MEASURE_RESOURCE", "target_resource"]

MEASURE_RESOURCE = "measure"
_PLUGIN_NAME = "tensorlang-targets"
_PLENTY = 1e9          # a target resource limits nothing: threads and slots do
_POLL_SECONDS = 2.0    # how often the client looks at the cluster while it waits


def target_resource(target_key: str) -> str:
    """The name of the worker resource that says a worker measures ``target_key``.

    Example:
        >>> target_resource("cuda -arch=sm_90")[:18]
        'tensorlang-target-'
    """
    return "tensorlang-target-" + hashlib.sha256(target_key.encode()).hexdigest()[:16]


# -- on the workers ---------------------------------------------------------------------------

_advertised: dict = {}         # target string -> key here (None: cannot measure it here)
_why_not: dict = {}            # target string -> why not, where the key is None
_builders: dict = {}           # (thread id, kind, timeout) -> builder; one per worker thread
_runners: dict = {}            # run options -> runner; one per worker process
_runner_lock = threading.Lock()
_scratch: list = []            # the folder received libraries are written to


def _die_with_parent() -> None:
    """Build processes end with the worker that spawned them, even when it is SIGKILLed."""
    try:
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 -- not Linux: the pool ends when its queue closes
        pass


class _WorkerBuilder(LocalBuilder):
    _initializer = staticmethod(_die_with_parent)


def _gpu_build_initializer() -> None:
    _die_with_parent()
    _hide_gpu()


class _GPUWorkerBuilder(GPUBuilder):
    _initializer = staticmethod(_gpu_build_initializer)


def _allow_children() -> None:
    # A nanny starts its worker as a daemonic process, and multiprocessing refuses to start
    # children from one. Measurement needs them (builds and runs are isolated in processes,
    # which end with the worker: see _die_with_parent and the runner's closed pipe).
    import multiprocessing
    process = multiprocessing.current_process()
    if process.daemon:
        process.daemon = False


def _key_here(target: str) -> tuple:
    """``(key, None)`` when this worker can measure ``target``, else ``(None, why not)``."""
    from codegen.llvm import parse_target
    try:
        if is_cuda_target(target):
            from tensorlang.runtime import cuda
            if cuda.available():
                return cuda_target_key(target), None
            return None, "has no usable GPU"
        missing = parse_target(target).missing_host_features()
        if missing:
            more = " ..." if len(missing) > 6 else ""
            return None, f"cannot run code for that target (lacks {', '.join(missing[:6])}{more})"
        return parse_target(target).key(), None
    except Exception as exc:  # noqa: BLE001 -- a target this worker cannot even parse
        return None, f"cannot parse that target ({exc})"


def _advertise(targets: list) -> dict:
    """On a worker: the key of each target string here (None where it cannot be measured)."""
    _allow_children()
    for target in targets:
        if target not in _advertised:
            _advertised[target], _why_not[target] = _key_here(target)
    return dict(_advertised)


def _describe_worker(dask_worker=None) -> dict:
    """On a worker: its CPU (and GPU) and the target keys it advertises."""
    import llvmlite.binding as llvm
    from codegen.llvm import host_target
    info = {"cpu": llvm.get_host_cpu_name(), "host_key": host_target().key(),
            "keys": dict(_advertised), "why_not": dict(_why_not), "pid": os.getpid()}
    if any(k and k.startswith("cuda") for k in _advertised.values()):
        try:
            from tensorlang.runtime import cuda
            props = cuda.device_properties()
            info["gpu"] = f"{props.name} ({props.arch})"
        except Exception as exc:  # noqa: BLE001 -- describing must not fail
            info["gpu"] = f"unknown ({exc})"
    return info


class _TargetPlugin(WorkerPlugin):
    """Advertises, on every worker (present and future), the target keys it can measure."""

    def __init__(self, targets: Sequence[str]) -> None:
        self.targets = sorted(set(targets))

    async def setup(self, worker) -> None:
        loop = asyncio.get_running_loop()
        keys = await loop.run_in_executor(None, _advertise, self.targets)  # imports tensorlang
        resources = {target_resource(k): _PLENTY for k in keys.values() if k}
        if resources:
            await worker.set_resources(**resources)

    # No teardown: the plugin is replaced whenever new targets appear, while candidates may
    # be running; the build and runner processes end with the worker process itself.


async def _take_measure_slot(dask_worker) -> None:
    await dask_worker.set_resources(**{MEASURE_RESOURCE: 1})


def _build_on_worker(task_dict: dict, schedule_json: str, timeout: float) -> dict:
    """A Dask task: compile one candidate here; its library's bytes, or why there are none."""
    _allow_children()
    kind = "cuda" if is_cuda_target(task_dict.get("target", "")) else "llvm"
    slot = (threading.get_ident(), kind, timeout)
    builder = _builders.get(slot)
    if builder is None:
        cls = _GPUWorkerBuilder if kind == "cuda" else _WorkerBuilder
        builder = _builders[slot] = cls(n_parallel=1, timeout=timeout)
    [built] = builder.build([MeasureInput(task_dict, schedule_json)])
    data = None
    if built.path is not None:
        with open(built.path, "rb") as f:
            data = f.read()
        os.remove(built.path)
    return {"library": data, "suffix": os.path.splitext(built.path or "")[1], "error": built.error,
            "error_kind": built.error_kind, "seconds": built.seconds, "worker": _address()}


def _run_on_worker(built: dict, task_dict: dict, schedule_json: str, options: tuple,
                   best: float | None = None) -> tuple:
    """A Dask task holding a measure slot: time one built candidate here, as ``LocalRunner``
    does; ``(costs, error, error_kind, build seconds, run seconds)``."""
    if built["library"] is None:
        return (), built["error"], built["error_kind"] or "build", built["seconds"], 0.0
    _allow_children()
    if not _scratch:
        _scratch.append(tempfile.mkdtemp(prefix="tensorlang-dask-"))
    path = os.path.join(_scratch[0], f"candidate-{uuid.uuid4().hex}{built['suffix']}")
    with open(path, "wb") as f:
        f.write(built["library"])
    try:
        with _runner_lock:  # one child per process: one candidate at a time
            runner = _runners.get(options)
            if runner is None:
                runner = _runners[options] = _make_runner(options)
            res = runner.run_one(MeasureInput(task_dict, schedule_json),
                                 BuildResult(path, None, None, built["seconds"]), best=best)
    finally:
        os.remove(path)
    return res.costs, res.error, res.error_kind, res.build_seconds, res.run_seconds


def _make_runner(options: tuple) -> LocalRunner:
    kind, timeout, number, repeat, min_repeat_ms, flush_cache, check, seed = options
    if kind == "cuda":
        return GPURunner(timeout=timeout, number=number, repeat=repeat,
                         min_repeat_ms=max(min_repeat_ms, 5.0), check_correctness=check,
                         seed=seed)
    return LocalRunner(timeout=timeout, number=number, repeat=repeat,
                       min_repeat_ms=min_repeat_ms, flush_cache=flush_cache,
                       check_correctness=check, seed=seed)


def _address() -> str:
    try:
        return distributed.get_worker().address
    except ValueError:
        return "?"


# -- on the client ----------------------------------------------------------------------------

@dataclasses.dataclass
class _Batch:
    """Candidates submitted together: their run futures (-> input index), the build future of
    each run, and the results collected so far."""

    inputs: list
    best: float | None
    results: list = dataclasses.field(default_factory=list)
    pending: dict = dataclasses.field(default_factory=dict)
    builds: dict = dataclasses.field(default_factory=dict)


class DaskRunner:
    """Builds and measures candidates on the workers of a Dask cluster.

    Args:
        cluster: a scheduler address (``"tcp://host:8786"``), a ``distributed.Client`` (left
            open by :meth:`close`) or a cluster object such as ``LocalCluster``.
        timeout, number, repeat, min_repeat_ms, flush_cache, check_correctness, seed: as
            :class:`~autotune.measure.LocalRunner`, applied on every worker.
        build_timeout: seconds a worker's build may go without progress.
        connect_timeout: seconds to wait for the scheduler.
        stall_timeout: seconds to wait, with candidates pending, while no worker can take
            them (every matching worker gone); then they are recorded as ``"crash"``.
        requeue_once: while this runner is open, the scheduler lets a task outlive one dead
            worker, not ``distributed.scheduler.allowed-failures`` (3 by default): a candidate
            whose worker dies is queued once elsewhere, and a second death records it as a
            ``"crash"``. :meth:`close` restores the scheduler's value. False leaves it alone.

    Raises:
        UserError: the scheduler cannot be reached.

    Example::

        with DaskRunner("tcp://scheduler:8786", repeat=5) as runner:
            runner.check_tasks([task])                 # UserError when no worker matches
            results = runner.measure(inputs)           # list[MeasureResult]
    """

    def __init__(self, cluster, *, timeout: float = 10.0, number: int = 3, repeat: int = 3,
                 min_repeat_ms: float = 0.0, flush_cache: bool = False,
                 check_correctness: bool = True, seed: int = 0, build_timeout: float = 30.0,
                 connect_timeout: float = 30.0, stall_timeout: float = 120.0,
                 requeue_once: bool = True) -> None:
        if number < 1 or repeat < 1:
            raise UserError(f"DaskRunner needs number >= 1 and repeat >= 1, got "
                            f"number={number}, repeat={repeat}")
        self.build_timeout = float(build_timeout)
        self.stall_timeout = float(stall_timeout)
        self._run_options = (float(timeout), int(number), int(repeat), float(min_repeat_ms),
                             bool(flush_cache), bool(check_correctness), int(seed))
        self.client, self._own_client = _connect(cluster, connect_timeout)
        self._allowed_failures = None  # the scheduler's own value, while ours is in force
        if requeue_once:
            self._allowed_failures = self.client.run_on_scheduler(_set_allowed_failures, 1)
        self._targets: set = set()       # target strings the plugin advertises
        self._keys: dict = {}            # task JSON -> (target key, label)

    # -- routing ------------------------------------------------------------------------------
    def check_tasks(self, tasks: Sequence) -> None:
        """Make sure every task has a worker that can measure it.

        Raises:
            UserError: naming the task, its target key and what each worker has.
        """
        tasks = list(tasks)
        for task in tasks:
            self._keys[_task_json(task.to_dict())] = (task.target_key, task.name)
        self._advertise({t.target for t in tasks})
        self._ensure_measure_slots()
        workers = self._workers()
        for task in tasks:
            wanted = target_resource(task.target_key)
            if not any(w["resources"].get(wanted) for w in workers.values()):
                raise UserError(self._no_worker_message(task.name, task.target_key, task.target))
            if not any(w["resources"].get(wanted) and w["resources"].get(MEASURE_RESOURCE)
                       for w in workers.values()):
                raise UserError(f"task {task.name}: the workers that build for its target "
                                f"have no '{MEASURE_RESOURCE}' slot to measure on")

    def _advertise(self, targets: set) -> None:
        if targets <= self._targets:
            return
        self._targets |= targets
        # Registering under the same name replaces the plugin: every worker, and every worker
        # that joins later, advertises all the targets seen so far.
        self.client.register_plugin(_TargetPlugin(self._targets), name=_PLUGIN_NAME)

    def _workers(self) -> dict:
        try:
            info = self.client.scheduler_info(n_workers=-1)  # newer Dask lists 5 by default
        except TypeError:
            info = self.client.scheduler_info()
        return dict(info["workers"])

    def _ensure_measure_slots(self) -> None:
        """Give one worker a slot on each host where no worker declares one."""
        hosts: dict = {}
        for address, w in self._workers().items():
            hosts.setdefault(w.get("host", address), []).append((address, w))
        for members in hosts.values():
            if not any(w["resources"].get(MEASURE_RESOURCE) for _, w in members):
                self.client.run(_take_measure_slot, workers=[min(a for a, _ in members)])

    def _no_worker_message(self, name: str, key: str, target: str) -> str:
        lines = []
        try:
            described = self.client.run(_describe_worker)
        except Exception as exc:  # noqa: BLE001 -- the message must still come out
            described, lines = {}, [f"  (the workers could not describe themselves: {exc})"]
        for address, info in sorted(described.items()):
            have = info["keys"].get(target)
            gpu = f", GPU {info['gpu']}" if info.get("gpu") else ""
            if have is None:
                why = info["why_not"].get(target) or "has not advertised it yet"
                lines.append(f"  {address}: CPU {info['cpu']}{gpu}; {why}")
            else:
                lines.append(f"  {address}: CPU {info['cpu']}{gpu}; measures "
                             f"'{_short(have)}' ({_difference(key, have)})")
        listing = "\n".join(lines) or "  (no workers)"
        full = f" (full key: {key})" if len(key) < 200 and key != _short(key) else ""
        return (f"no Dask worker can measure task {name}: its target is '{_short(key)}'"
                f"{full}, and the {len(described)} worker(s) have:\n{listing}\n"
                "Tune it on a cluster of such machines, or make the task for a target the "
                "workers have")

    def _resource_of(self, inp: MeasureInput) -> str:
        text = _task_json(inp.task_dict)
        if text not in self._keys:  # a task measure() sees first: key it here
            from .task import Task
            self.check_tasks([Task.from_dict(inp.task_dict)])
        return target_resource(self._keys[text][0])

    # -- measuring ----------------------------------------------------------------------------
    def measure(self, inputs: Sequence[MeasureInput],
                best: float | None = None) -> list[MeasureResult]:
        """Build and measure ``inputs`` on the cluster; one result per input, in order.
        ``best``: the best seconds per call known for their task (``LocalRunner.cutoff``)."""
        return self.collect(self.submit(inputs, best=best))

    def submit(self, inputs: Sequence[MeasureInput], best: float | None = None) -> _Batch:
        """Start building and measuring ``inputs``; :meth:`collect` waits for their results.
        Several batches may be in flight (``tune`` searches the next while one measures)."""
        batch = _Batch(list(inputs), best)
        batch.results = [None] * len(batch.inputs)
        for i, inp in enumerate(batch.inputs):
            run, batch.builds[run] = self._submit(inp, best)
            batch.pending[run] = i
        return batch

    def collect(self, batch: _Batch) -> list[MeasureResult]:
        """The results of a submitted batch, in order, once every candidate has one."""
        try:
            self._wait(batch)
        except BaseException:  # interrupted: the cluster need not finish what nobody records
            self.cancel(batch)
            raise
        return batch.results

    def cancel(self, batch: _Batch) -> None:
        """Drop what is left of a submitted batch (its candidates are not recorded)."""
        self.client.cancel([*batch.pending, *batch.builds.values()])
        batch.pending.clear()
        batch.builds.clear()

    def _wait(self, batch: _Batch) -> None:
        inputs, results, pending, builds = batch.inputs, batch.results, batch.pending, batch.builds
        resubmitted: set = set()
        quiet_since = time.monotonic()
        while pending:
            try:
                done, _ = distributed.wait(list(pending), timeout=_POLL_SECONDS,
                                           return_when="FIRST_COMPLETED")
            except TimeoutError:
                if time.monotonic() - quiet_since > self.stall_timeout and \
                        not self._anyone_can_take(inputs, pending.values()):
                    for future, i in list(pending.items()):
                        key = self._keys[_task_json(inputs[i].task_dict)][0]
                        results[i] = MeasureResult(
                            (), f"no Dask worker with a '{MEASURE_RESOURCE}' slot for target "
                            f"'{_short(key)}' was left for {self.stall_timeout:g} s", "crash")
                        self._release(future, builds)
                    pending.clear()
                else:
                    self._ensure_measure_slots()  # a restarted worker lost the one it had
                continue
            quiet_since = time.monotonic()
            for future in done:
                i = pending.pop(future)
                outcome = self._outcome(future)
                self._release(future, builds)
                if isinstance(outcome, MeasureResult):
                    results[i] = outcome
                elif i not in resubmitted and not isinstance(outcome, distributed.KilledWorker):
                    resubmitted.add(i)
                    run, builds[run] = self._submit(inputs[i], batch.best)
                    pending[run] = i
                else:
                    results[i] = MeasureResult((), _lost_text(outcome), "crash")

    def _submit(self, inp: MeasureInput, best: float | None):
        resource = self._resource_of(inp)
        kind = "cuda" if is_cuda_target(inp.task_dict.get("target", "")) else "llvm"
        tag = uuid.uuid4().hex
        build = self.client.submit(_build_on_worker, inp.task_dict, inp.schedule_json,
                                   self.build_timeout, key=f"tensorlang-build-{tag}",
                                   resources={resource: 1}, pure=False)
        run = self.client.submit(_run_on_worker, build, inp.task_dict, inp.schedule_json,
                                 (kind, *self._run_options), best,
                                 key=f"tensorlang-run-{tag}",
                                 resources={resource: 1, MEASURE_RESOURCE: 1}, priority=1,
                                 pure=False)
        return run, build

    def _outcome(self, future):
        """A :class:`MeasureResult`, or the exception that lost the candidate."""
        try:
            costs, error, kind, build_s, run_s = future.result()
        except Exception as exc:  # noqa: BLE001 -- anything here is the cluster's failure
            return exc
        return MeasureResult(tuple(costs), error, kind, build_s, run_s)

    def _release(self, future, builds: dict) -> None:
        build = builds.pop(future, None)
        future.release()
        if build is not None:
            build.release()

    def _anyone_can_take(self, inputs, indices) -> bool:
        workers = self._workers().values()
        for i in indices:
            wanted = target_resource(self._keys[_task_json(inputs[i].task_dict)][0])
            if not any(w["resources"].get(wanted) and w["resources"].get(MEASURE_RESOURCE)
                       for w in workers):
                return False
        return True

    # -- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the client when this runner opened it (idempotent); workers keep running."""
        if self._allowed_failures is not None and self.client is not None:
            try:
                self.client.run_on_scheduler(_set_allowed_failures, self._allowed_failures)
            except Exception:  # noqa: BLE001 -- a scheduler already gone has nothing to restore
                pass
            self._allowed_failures = None
        if self._own_client and self.client is not None:
            self.client.close()
        self._own_client = False

    def __enter__(self) -> DaskRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _set_allowed_failures(count: int, dask_scheduler=None) -> int:
    """On the scheduler: how many worker deaths a task may outlive; returns the old value."""
    old = dask_scheduler.allowed_failures
    dask_scheduler.allowed_failures = int(count)
    return old


def _connect(cluster, timeout: float):
    if isinstance(cluster, distributed.Client):
        return cluster, False
    try:
        return distributed.Client(cluster, timeout=timeout, set_as_default=False), True
    except (OSError, TimeoutError, ValueError) as exc:
        raise UserError(f"cannot reach the Dask scheduler at {cluster!r} within {timeout:g} s "
                        f"({type(exc).__name__}: {exc}); start one with `dask scheduler` and "
                        "workers with `dask worker ADDRESS`") from exc


def _task_json(task_dict: dict) -> str:
    return json.dumps(task_dict, sort_keys=True)


def _lost_text(exc: BaseException) -> str:
    if isinstance(exc, distributed.KilledWorker):
        return (f"the Dask worker(s) measuring it died ({exc}); the scheduler queued it "
                "elsewhere each time, up to distributed.scheduler.allowed-failures")
    return (f"the cluster lost it twice ({type(exc).__name__}: {exc}); it was submitted "
            "once more after the first loss")


def _short(key: str) -> str:
    """A target key without its feature list: ``llvm -mcpu=znver3 -num-threads=1``."""
    words = [w for w in shlex.split(key) if not w.startswith(("-mattr=", "-mtriple="))]
    return " ".join(words)


def _difference(want: str, have: str) -> str:
    """What separates two target keys, briefly."""
    a, b = _options(want), _options(have)
    parts = [f"{name}={b.get(name)} instead of {a.get(name)}"
             for name in sorted(set(a) | set(b)) if name != "-mattr" and a.get(name) != b.get(name)]
    fa = set(a.get("-mattr", "").split(",")) - {""}
    fb = set(b.get("-mattr", "").split(",")) - {""}
    if fa != fb:
        wanted = sorted(fa - fb)
        parts.append("features the task wants that it lacks: "
                     + (", ".join(wanted[:6]) + (" ..." if len(wanted) > 6 else "")
                        if wanted else "none (it has others)"))
    return "; ".join(parts) or "the same key"


def _options(key: str) -> dict:
    words = shlex.split(key)
    out = {"kind": words[0] if words else ""}
    for w in words[1:]:
        name, _, value = w.partition("=")
        out[name] = value
    return out
