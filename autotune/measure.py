"""Measurement: build candidate schedules in worker processes, run them in a separate process.

A candidate is a :class:`MeasureInput`, a task (as ``Task.to_dict()``) and a schedule trace
(``Schedule.to_json()``): both plain JSON, so workers re-create the task by importing its workload
by module path and replay the trace; nothing is pickled but text.

- :class:`LocalBuilder` replays, lowers and compiles candidates in a pool of spawned processes and
  exports each kernel to a shared library in a temporary folder.
- :class:`LocalRunner` loads each library in one long-lived child process, checks its outputs on
  random inputs against the task's reference (the default schedule), then times it. A candidate
  that kills the child (a signal) is a ``"crash"``, one that outlives ``timeout`` is killed and is a
  ``"timeout"``; the child is restarted and the next candidate runs.

Every failure becomes a :class:`MeasureResult` with an ``error_kind`` (``"build"``, ``"run"``,
``"timeout"``, ``"crash"``, ``"wrong_result"``), so tuning goes on.

Example::

    task = Task(matmul, args=(256, 256, 256))
    s, _ = task.default_schedule()
    ...                                               # split, vectorize, ...
    with LocalBuilder(n_parallel=2) as builder:
        [res] = measure([MeasureInput(task.to_dict(), s.to_json())], builder, LocalRunner())
    res.costs, res.error_kind                          # (seconds per run, ...), None
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import math
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
import traceback
import uuid
from typing import Sequence

from tensorlang.errors import UserError

from .database import TuningRecord

__all__ = ["MeasureInput", "MeasureResult", "BuildResult", "LocalBuilder", "LocalRunner",
           "measure", "to_record", "ERROR_KINDS"]

ERROR_KINDS = ("build", "run", "timeout", "crash", "wrong_result")
_STARTUP_TIMEOUT = 120.0  # seconds for a fresh runner process to import tensorlang
_RUNS_PER_PROCESS = 256  # loaded libraries stay mapped: restart the runner now and then
CUTOFF_FLOOR = 0.05  # seconds: below this a first call is fully timed, whatever the ratio


@dataclasses.dataclass(frozen=True)
class MeasureInput:
    """One candidate: a task as ``Task.to_dict()`` and a schedule as ``Schedule.to_json()``."""

    task_dict: dict
    schedule_json: str


@dataclasses.dataclass(frozen=True)
class BuildResult:
    """A built candidate: the library's path, or why there is none."""

    path: str | None
    error: str | None = None
    error_kind: str | None = None
    seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class MeasureResult:
    """Seconds per run (one per repeat), or an error with its kind (see ``ERROR_KINDS``).

    Example:
        >>> r = MeasureResult((1e-3, 2e-3), None, None, 0.5, 0.1)
        >>> r.ok, r.mean_cost
        (True, 0.0015)
    """

    costs: tuple[float, ...]
    error: str | None = None
    error_kind: str | None = None
    build_seconds: float = 0.0
    run_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.error_kind is not None and self.error_kind not in ERROR_KINDS:
            raise UserError(f"unknown measurement error kind {self.error_kind!r}; "
                            f"expected one of {ERROR_KINDS}")

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.costs)

    @property
    def mean_cost(self) -> float:
        """Mean seconds per run; ``inf`` for a failed candidate."""
        return sum(self.costs) / len(self.costs) if self.ok else float("inf")


# -- building ---------------------------------------------------------------------------------

_worker_tasks: dict = {}  # per worker process: task JSON -> Task, built once


def _worker_task(task_dict: dict):
    import json
    from .task import Task
    key = json.dumps(task_dict, sort_keys=True)
    if key not in _worker_tasks:
        _worker_tasks[key] = Task.from_dict(task_dict)
    return _worker_tasks[key]


def _build_one(task_dict: dict, schedule_json: str, path: str) -> tuple:
    """In a builder worker: ``(path, None, seconds)`` or ``(None, error text, seconds)``."""
    import tensorlang as tl
    start = time.perf_counter()
    try:
        task = _worker_task(task_dict)
        schedule = tl.schedule_from_json(schedule_json, task.tensors)
        task.build(schedule).export_library(path)
        return path, None, time.perf_counter() - start
    except Exception as exc:  # any failure is the candidate's: report it, keep the worker
        return None, _error_text(exc), time.perf_counter() - start


def _error_text(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {tb[-1].filename}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


class LocalBuilder:
    """Builds candidates in ``n_parallel`` spawned worker processes, kept between calls.

    Each library lands in the builder's temporary folder (removed by :meth:`close`). A build that
    makes no progress for ``timeout`` seconds is a ``"timeout"``; a worker that dies takes the
    candidates it held with it (``"crash"``) after one retry in a fresh pool.

    Example::

        with LocalBuilder(n_parallel=2, timeout=30) as builder:
            results = builder.build(inputs)            # list[BuildResult]
    """

    # what a worker runs per candidate, the file suffix of its output and the pool's
    # initializer: a GPU builder (measure_gpu) swaps these
    _worker_build = staticmethod(_build_one)
    _suffix = ".so"
    _initializer = None

    def __init__(self, n_parallel: int | None = None, timeout: float = 30.0,
                 start_method: str = "spawn") -> None:
        self.n_parallel = max(1, n_parallel or os.cpu_count() or 1)
        self.timeout = float(timeout)
        self._context = multiprocessing.get_context(start_method)
        self._pool: cf.ProcessPoolExecutor | None = None
        self.directory = tempfile.mkdtemp(prefix="tensorlang-measure-")

    def build(self, inputs: Sequence[MeasureInput]) -> list[BuildResult]:
        """One :class:`BuildResult` per input, in order."""
        results: list[BuildResult | None] = [None] * len(inputs)
        pending = list(range(len(inputs)))
        for attempt in range(2):
            pending = self._build_round(inputs, pending, results, last=attempt == 1)
            if not pending:
                break
        return results  # type: ignore[return-value]

    def _build_round(self, inputs, indices, results, last: bool) -> list[int]:
        # The retry round builds one candidate at a time, so a worker that dies again takes
        # only its own candidate down.
        if not last:
            return self._build_batch(inputs, indices, results, last)
        for i in indices:
            self._build_batch(inputs, [i], results, last)
        return []

    def _build_batch(self, inputs, indices, results, last: bool) -> list[int]:
        """Build ``indices`` together; returns those lost to a dead worker (when not ``last``)."""
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(self.n_parallel, mp_context=self._context,
                                                initializer=type(self)._initializer)
        futures = {}
        for i in indices:
            path = os.path.join(self.directory, f"candidate-{uuid.uuid4().hex}{self._suffix}")
            futures[self._pool.submit(type(self)._worker_build, inputs[i].task_dict,
                                      inputs[i].schedule_json, path)] = i
        lost: list[int] = []
        waiting = set(futures)
        while waiting:
            done, waiting = cf.wait(waiting, timeout=self.timeout,
                                    return_when=cf.FIRST_COMPLETED)
            if not done:  # nothing finished for `timeout` seconds: the running ones hang
                for f in waiting:
                    results[futures[f]] = BuildResult(
                        None, f"build made no progress for {self.timeout:g} s", "timeout",
                        self.timeout)
                self._kill_pool()
                return lost
            for f in done:
                i = futures[f]
                try:
                    path, error, seconds = f.result()
                except cf.process.BrokenProcessPool as exc:
                    lost.append(i)
                    if last:
                        results[i] = BuildResult(None, f"the build worker died: {exc}", "crash")
                    continue
                results[i] = BuildResult(path, error, None if path else "build", seconds)
        if lost:
            self._kill_pool()
        return [] if last else lost

    def _kill_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # The executor cannot cancel a running call; its processes are killed outright.
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            if p.is_alive():
                p.kill()
        for p in processes:
            p.join(timeout=5)

    def close(self) -> None:
        """Stop the workers and remove the built libraries (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._kill_pool()
            shutil.rmtree(self.directory, ignore_errors=True)
        except Exception:
            pass


# -- running ----------------------------------------------------------------------------------

def _runner_main(conn) -> None:
    """The runner child: import once, then load, check and time one library per message."""
    import resource
    try:  # a crashing candidate should not leave a core file behind
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        pass
    import codegen.llvm  # noqa: F401  registers the thread pool loaded libraries launch on
    conn.send(("ready",))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(_run_job(job))


_child_references: dict = {}  # in the runner child: (task JSON, seed) -> (task, arrays, outputs)


def _run_job(job: dict) -> tuple:
    """In the runner child: ``(costs, error, error_kind)`` for one built library."""
    try:
        from tensorlang.runtime import load_module
        task, arrays, expected = _reference(job["task"], job["seed"], job["check"])
        module = load_module(job["path"])
        copies = [a.copy() for a in arrays]
        start = time.perf_counter()
        module(*copies)
        first = time.perf_counter() - start
        if job["check"]:
            mismatch = _compare(task, copies, expected)
            if mismatch:
                return (), mismatch, "wrong_result"
        cutoff = job.get("cutoff_seconds")
        if cutoff is not None and first > cutoff:
            return (first,), None, None  # far slower than the best: one call says enough
        if job["flush_cache"]:
            costs = _time_flushed(module, copies, job)
        else:
            timer = module.time_evaluator(job["number"], job["repeat"], job["min_repeat_ms"])
            costs = timer(*copies).results
        return tuple(float(c) for c in costs), None, None
    except Exception as exc:
        return (), _error_text(exc), "run"


def _reference(task_dict: dict, seed: int, check: bool) -> tuple:
    import json
    key = (json.dumps(task_dict, sort_keys=True), seed)
    if key not in _child_references:
        task = _worker_task(task_dict)
        arrays = task.random_inputs(seed)
        expected = task.reference_outputs(arrays) if check else None
        _child_references.clear()  # one task at a time is the usual pattern; bound the memory
        _child_references[key] = (task, arrays, expected)
    return _child_references[key]


def _compare(task, arrays, expected, scales=None) -> str | None:
    """None when the outputs among ``arrays`` match ``expected`` (rtol = atol = 1e-3 for
    float32, 1e-2 for float16; ``scales``: per output, a factor of at least 1 on atol; by
    default the root mean square of the expected output: rounding errors scale with the
    magnitude of what was summed, and a result that nearly cancels, as Winograd transforms
    make, has the error of its terms), else what differs and where."""
    import numpy as np
    from tensorlang.tensor import PlaceholderOp
    outputs = [(t, a) for t, a in zip(task.tensors, arrays) if not isinstance(t.op, PlaceholderOp)]
    if scales is None:
        scales = [float(np.sqrt(np.mean(np.square(w, dtype=np.float64))))
                  if np.issubdtype(w.dtype, np.floating) and w.size else 1.0 for w in expected]
    for (tensor, got), want, scale in zip(outputs, expected, scales):
        if np.issubdtype(want.dtype, np.floating):
            tol = 1e-2 if want.dtype == np.float16 else 1e-3
            close = np.isclose(got, want, rtol=tol, atol=tol * max(1.0, scale), equal_nan=True)
        else:
            close = got == want
        if not np.all(close):
            bad = np.argwhere(~close)
            first = tuple(int(x) for x in bad[0])
            return (f"output {tensor.name} differs from the reference at {len(bad)} of "
                    f"{want.size} points; first at {first}: got {got[first]!r}, "
                    f"expected {want[first]!r}")
    return None


def _time_flushed(module, arrays, job) -> list[float]:
    # time_evaluator warms up before its repeats, which would undo a flush: time each repeat
    # through the module's own native loop (internal API of the runtime) right after a flush.
    import numpy as np
    flush = np.zeros(_last_level_cache_bytes() * 2 // 8, dtype=np.float64)
    call = module._prepare(arrays)
    module._run(call, 1)  # pages in code and data once
    count, costs = job["number"], []
    while len(costs) < job["repeat"]:
        flush += 1.0
        seconds = module._timed(call, count)
        if seconds * 1e3 < job["min_repeat_ms"]:
            scale = job["min_repeat_ms"] / max(seconds * 1e3, 1e-3)
            count = max(count + 1, int(count * min(scale * 1.1, 1000)))
            continue
        costs.append(seconds / count)
    return costs


def _last_level_cache_bytes() -> int:
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in os.listdir(base):
            with open(os.path.join(base, entry, "size")) as f:
                text = f.read().strip()
            scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
            best = max(best, int(text.rstrip("KM")) * scale)
    except (OSError, ValueError):
        pass
    return max(best, 32 << 20)


class LocalRunner:
    """Runs built candidates, one at a time, in a separate long-lived child process.

    Args:
        timeout: seconds a candidate may take in the child (load, reference when not yet
            cached, check and timing); past it the child is killed (``"timeout"``).
        number, repeat, min_repeat_ms: as ``Module.time_evaluator``; ``costs`` has ``repeat``
            entries, seconds per call.
        flush_cache: write a buffer larger than the last-level cache before every repeat (then
            each repeat's first call starts cold; use ``number=1`` to time only cold runs).
        check_correctness: compare the outputs on random inputs with ``task.reference_outputs``
            (rtol = atol = 1e-3 for float32); a mismatch is ``"wrong_result"``.
        seed: the seed of ``task.random_inputs``.
        cutoff: a candidate whose first (checking) call takes longer than ``cutoff`` times the
            best time known to the caller (``run(..., best=)``, then the best of the batch so
            far), and longer than ``CUTOFF_FLOOR`` seconds, is not timed further: its one call
            is its one cost. On the first batches of a search most candidates are tens of times
            slower than the eventual best, and timing each of them in full dominated the
            tuning time. 0 turns it off.

    Example::

        runner = LocalRunner(timeout=10, repeat=5)
        results = runner.run(inputs, builder.build(inputs))   # list[MeasureResult]
        runner.close()
    """

    _child_main = staticmethod(_runner_main)  # the child's loop (measure_gpu swaps it)

    def __init__(self, timeout: float = 10.0, number: int = 3, repeat: int = 3,
                 min_repeat_ms: float = 0, flush_cache: bool = False,
                 check_correctness: bool = True, seed: int = 0,
                 start_method: str = "spawn", cutoff: float = 5.0) -> None:
        if number < 1 or repeat < 1:
            raise UserError(f"LocalRunner needs number >= 1 and repeat >= 1, got "
                            f"number={number}, repeat={repeat}")
        if not isinstance(cutoff, (int, float)) or cutoff < 0 or (0 < cutoff < 1):
            raise UserError(f"LocalRunner: cutoff must be 0 (off) or a ratio >= 1, got {cutoff!r}")
        self.cutoff = float(cutoff)
        self.timeout = float(timeout)
        self.number, self.repeat, self.min_repeat_ms = int(number), int(repeat), min_repeat_ms
        self.flush_cache, self.check_correctness, self.seed = flush_cache, check_correctness, seed
        self._context = multiprocessing.get_context(start_method)
        self._process = None
        self._conn = None
        self._runs = 0

    def run(self, inputs: Sequence[MeasureInput], builds: Sequence[BuildResult],
            best: float | None = None) -> list[MeasureResult]:
        """One :class:`MeasureResult` per input; failed builds pass their error through.
        ``best``: the best seconds per call known for these inputs' task (see ``cutoff``)."""
        if len(inputs) != len(builds):
            raise UserError(f"LocalRunner.run: {len(inputs)} inputs but {len(builds)} builds")
        results = []
        one_task = len({json.dumps(i.task_dict, sort_keys=True) for i in inputs}) == 1
        for inp, b in zip(inputs, builds):
            res = self.run_one(inp, b, best=best)
            if res.ok and one_task:
                best = res.mean_cost if best is None else min(best, res.mean_cost)
            results.append(res)
        return results

    def cutoff_seconds(self, best: float | None) -> float | None:
        """Past how many seconds a first call ends the timing of a candidate (None: never)."""
        if not self.cutoff or best is None or not math.isfinite(best) or best <= 0:
            return None
        return max(self.cutoff * best, CUTOFF_FLOOR)

    def run_one(self, inp: MeasureInput, build: BuildResult,
                best: float | None = None) -> MeasureResult:
        if build.path is None:
            return MeasureResult((), build.error, build.error_kind or "build", build.seconds)
        job = {"task": inp.task_dict, "path": build.path, "number": self.number,
               "repeat": self.repeat, "min_repeat_ms": self.min_repeat_ms,
               "flush_cache": self.flush_cache, "check": self.check_correctness,
               "seed": self.seed, "cutoff_seconds": self.cutoff_seconds(best)}
        start = time.perf_counter()
        costs, error, kind = self._send(job)
        return MeasureResult(tuple(costs), error, kind, build.seconds,
                             time.perf_counter() - start)

    def _send(self, job: dict) -> tuple:
        if self._runs >= _RUNS_PER_PROCESS:
            self.close()
        self._ensure_process()
        self._runs += 1
        return self._exchange(job, self.timeout)

    def _exchange(self, job, timeout: float) -> tuple:
        """Send one job to the (running) child and wait ``timeout`` seconds for its answer."""
        try:
            self._conn.send(job)
            if not self._conn.poll(timeout):
                self._kill()
                return (), f"killed after {timeout:g} s", "timeout"
            return self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            return (), self._death_message(), "crash"

    def _death_message(self) -> str:
        process = self._process
        process.join(timeout=5)
        code = process.exitcode
        self._forget()
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the runner process died by {name}"
        return f"the runner process exited with code {code}"

    def _ensure_process(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        self._forget()
        parent, child = self._context.Pipe()
        process = self._context.Process(target=type(self)._child_main, args=(child,),
                                        daemon=True, name="tensorlang-runner")
        process.start()
        child.close()
        if not parent.poll(_STARTUP_TIMEOUT):
            process.kill()
            raise UserError(f"the measurement runner process did not start within "
                            f"{_STARTUP_TIMEOUT:g} s")
        parent.recv()
        self._process, self._conn, self._runs = process, parent, 0

    def _kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)
        self._forget()

    def _forget(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = None, None

    def close(self) -> None:
        """Stop the child process (idempotent)."""
        if self._process is not None and self._process.is_alive():
            try:
                self._conn.send(None)
                self._process.join(timeout=5)
            except OSError:
                pass
        self._kill()

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._kill()
        except Exception:
            pass


# -- together ---------------------------------------------------------------------------------

def measure(inputs: Sequence[MeasureInput], builder: LocalBuilder | None,
            runner, best: float | None = None) -> list[MeasureResult]:
    """Build then run ``inputs``; one result per input, in order. Libraries are removed after.

    A ``runner`` that builds as well (it has ``measure(inputs)``, as
    ``measure_dask.DaskRunner``) measures the inputs alone; ``builder`` is then unused.
    ``best``: the best seconds per call known for the inputs' task, so that the runner can stop
    timing a candidate far slower than it (``LocalRunner``'s ``cutoff``)."""
    if hasattr(runner, "measure"):
        return runner.measure(inputs, best=best)
    builds = builder.build(inputs)
    try:
        return runner.run(inputs, builds, best=best)
    finally:
        for b in builds:
            if b.path:
                try:
                    os.remove(b.path)
                except OSError:
                    pass


def to_record(task, inp: MeasureInput, res: MeasureResult,
              run_id: str | None = None) -> TuningRecord:
    """The database record of one measurement (its error text prefixed by its kind)."""
    error = None if res.error is None else f"{res.error_kind}: {res.error}"
    return TuningRecord(task.key, task.target_key, task.workload_name, inp.schedule_json,
                        costs=res.costs if error is None else (), error=error, run_id=run_id,
                        extra={"error_kind": res.error_kind,
                               "build_seconds": res.build_seconds,
                               "run_seconds": res.run_seconds})
