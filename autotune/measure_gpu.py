"""Measurement of CUDA candidates: NVRTC builds in worker processes, runs on the GPU in a child.

- :class:`GPUBuilder` is a :class:`~autotune.measure.LocalBuilder` whose workers hide the GPU
  (``CUDA_VISIBLE_DEVICES=""``: no CUDA context per worker; NVRTC needs no GPU), replay the
  schedule, lower it and compile it to a cubin for the architecture in the task's target key
  (``task.build_target``), and write the compiled module (its CUDA source, cubin and launch
  plan) to a file with :mod:`pickle`.
- :class:`GPURunner` is a :class:`~autotune.measure.LocalRunner` whose long-lived child loads
  that module, copies the task's random inputs to the device (once per task), fills the
  outputs with NaN, launches once and compares the outputs with the CPU reference
  (``task.reference_outputs``, rtol = atol = 1e-3 for float32, the atol scaled by the
  output's RMS when above 1: see ``_compare_scaled``), then times the kernel with
  CUDA events (``CudaModule.time_evaluator``). The reference of a task is prepared in the
  child by a separate message with a long timeout, before its first candidate.

A kernel that faults (an illegal address, a trap) leaves the CUDA context of the child unusable:
the child reports the error (``"run"``), and the parent restarts it before the next candidate,
so tuning goes on. A hang is killed after ``timeout`` (``"timeout"``) and the child restarted.

Example::

    task = Task(matmul, (1024, 1024, 1024), target="cuda")
    with GPUBuilder() as builder, GPURunner(timeout=10) as runner:
        results = measure(inputs, builder, runner)
"""
from __future__ import annotations

import os
import pickle
import time

from .measure import (LocalBuilder, LocalRunner, MeasureInput, MeasureResult, BuildResult,
                      _compare, _error_text, _worker_task)

__all__ = ["GPUBuilder", "GPURunner"]

_PREPARE_TIMEOUT = 600.0  # seconds for the child to build the CPU reference of a task


# -- building ---------------------------------------------------------------------------------

def _hide_gpu() -> None:
    """Builder workers compile only: no CUDA context (and no GPU memory) per worker."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ["TENSORLANG_NO_CUDA_PROBE"] = "1"


def _build_one_gpu(task_dict: dict, schedule_json: str, path: str) -> tuple:
    """In a builder worker: ``(path, None, seconds)`` or ``(None, error text, seconds)``."""
    import tensorlang as tl
    start = time.perf_counter()
    try:
        task = _worker_task(task_dict)
        schedule = tl.schedule_from_json(schedule_json, task.tensors)
        module = task.build(schedule)          # "cuda -arch=sm_XX": NVRTC compiles now
        try:
            data = pickle.dumps(module, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 -- a module that does not pickle: the runner
            data = _REBUILD  # rebuilds it from the schedule (the cubin is in NVRTC's cache)
        with open(path, "wb") as f:
            f.write(data)
        return path, None, time.perf_counter() - start
    except Exception as exc:  # the candidate's failure: report it, keep the worker
        return None, _error_text(exc), time.perf_counter() - start


_REBUILD = b"tensorlang-rebuild-from-schedule\n"


def _load_module(job: dict, task):
    with open(job["path"], "rb") as f:
        data = f.read()
    if data == _REBUILD:
        import tensorlang as tl
        return task.build(tl.schedule_from_json(job["schedule"], task.tensors))
    return pickle.loads(data)


class GPUBuilder(LocalBuilder):
    """Compiles CUDA candidates (to cubins, with NVRTC) in ``n_parallel`` worker processes.

    Example::

        with GPUBuilder(n_parallel=8, timeout=30) as builder:
            builds = builder.build(inputs)        # BuildResult.path: a pickled CudaModule
    """

    _worker_build = staticmethod(_build_one_gpu)
    _suffix = ".cumod"
    _initializer = staticmethod(_hide_gpu)


# -- running ------------------------------------------------------------------------------------

def _gpu_runner_main(conn) -> None:
    """The GPU runner child: probe CUDA once, then prepare tasks and run candidates."""
    import resource
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        pass
    os.environ["TENSORLANG_NO_CUDA_PROBE"] = "1"  # task keys come from the parent
    from tensorlang.runtime import cuda
    try:
        ok = cuda.available()
        reason = "" if ok else cuda.unavailable_reason()
    except Exception as exc:  # noqa: BLE001
        ok, reason = False, _error_text(exc)
    conn.send(("ready", ok, reason))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        if job.get("prepare"):
            conn.send(_prepare(job))
        else:
            conn.send(_run_gpu_job(job, ok, reason))


_state: dict = {}  # in the child: the prepared task (host arrays, references, device arrays)


def _task_key(task_dict: dict, seed: int) -> str:
    import json
    return json.dumps([task_dict, seed], sort_keys=True)


def _prepare(job: dict) -> tuple:
    """Random inputs, the CPU reference and device copies of one task; ``(ok, error)``."""
    try:
        key = _task_key(job["task"], job["seed"])
        if _state.get("key") == key:
            return True, None
        _state.clear()
        import numpy as np
        import tensorlang as tl
        from tensorlang.tensor import PlaceholderOp
        task = _worker_task(job["task"])
        if job.get("reference"):  # inputs and outputs computed once by the parent
            with np.load(job["reference"], allow_pickle=False) as data:
                arrays = [data[f"a{i}"] for i in range(len(task.tensors))]
                expected = [data[f"e{i}"] for i in range(int(data["n_expected"]))] \
                    if job["check"] else None
        else:
            arrays = task.random_inputs(job["seed"])
            expected = task.reference_outputs(arrays) if job["check"] else None
        device = [tl.nd.array(np.ascontiguousarray(a), device="cuda") for a in arrays]
        outputs = [i for i, t in enumerate(task.tensors) if not isinstance(t.op, PlaceholderOp)]
        poison = {i: _poison(arrays[i]) for i in outputs}
        if expected is not None:
            expected = [(e, _rms(e)) for e in expected]
        _state.update(key=key, task=task, arrays=arrays, expected=expected, device=device,
                      outputs=outputs, poison=poison)
        return True, None
    except Exception as exc:  # noqa: BLE001
        _state.clear()
        return False, _error_text(exc)


def _poison(array):
    """What outputs hold before a checked launch: NaN for floats (never equal to a value
    the reference computes), a large sentinel for integers."""
    import numpy as np
    if np.issubdtype(array.dtype, np.floating):
        return np.full(array.shape, np.nan, array.dtype)
    if array.dtype == np.bool_:
        return np.zeros(array.shape, array.dtype)
    return np.full(array.shape, np.iinfo(array.dtype).max // 3, array.dtype)


def _rms(array) -> float:
    import numpy as np
    if not np.issubdtype(array.dtype, np.floating):
        return 1.0
    finite = array[np.isfinite(array)].astype(np.float64)
    return float(np.sqrt(np.mean(finite * finite))) if finite.size else 1.0


def _compare_scaled(task, arrays, expected) -> str | None:
    """``measure._compare`` with the absolute tolerance scaled by the root-mean-square of the
    expected output when that is above 1: a long fp32 reduction summed in another order (a
    4096-long dot product of normal values has an RMS of 64) differs from the CPU reference by
    more than 1e-3 near zero, while a wrong element is off by about the RMS.
    ``expected``: ``[(array, rms)]``."""
    return _compare(task, arrays, [w for w, _ in expected], [r for _, r in expected])


def _run_gpu_job(job: dict, ok: bool, reason: str) -> tuple:
    """``(costs, error, error_kind, restart)`` for one built candidate."""
    if not ok:
        return (), f"no usable CUDA GPU in the runner: {reason}", "run", False
    try:
        from tensorlang.runtime import cuda
        if _state.get("key") != _task_key(job["task"], job["seed"]):
            return (), "internal: the task was not prepared in the runner", "run", False
        module = _load_module(job, _state["task"])
        device = _state["device"]
        if job["check"]:
            for i in _state["outputs"]:
                device[i].copyfrom(_state["poison"][i])
            module(*device)
            cuda.synchronize()
            outs = set(_state["outputs"])
            got = [d.numpy() if i in outs else None for i, d in enumerate(device)]
            mismatch = _compare_scaled(_state["task"], got, _state["expected"])
            if mismatch:
                return (), mismatch, "wrong_result", False
        timer = module.time_evaluator(job["number"], job["repeat"], job["min_repeat_ms"])
        costs = timer(*device).results
        return tuple(float(c) for c in costs), None, None, False
    except Exception as exc:  # noqa: BLE001
        from tensorlang.errors import CudaError
        # a CUDA error may be sticky (a fault poisons the context): start a fresh child
        restart = isinstance(exc, CudaError) or "CUDA" in type(exc).__name__
        return (), _error_text(exc), "run", restart


class GPURunner(LocalRunner):
    """Runs built CUDA candidates one at a time in a long-lived child process on the GPU.

    Args are those of :class:`~autotune.measure.LocalRunner` (``flush_cache`` is ignored);
    ``timeout`` bounds one candidate (load, check, timing), the first candidate of a task also
    waits for its CPU reference (up to ``prepare_timeout`` seconds).

    Example::

        runner = GPURunner(timeout=10, number=3, repeat=3, min_repeat_ms=5)
        results = runner.run(inputs, builder.build(inputs))
    """

    _child_main = staticmethod(_gpu_runner_main)

    def __init__(self, timeout: float = 10.0, number: int = 3, repeat: int = 3,
                 min_repeat_ms: float = 5.0, check_correctness: bool = True, seed: int = 0,
                 prepare_timeout: float = _PREPARE_TIMEOUT, start_method: str = "spawn"):
        super().__init__(timeout=timeout, number=number, repeat=repeat,
                         min_repeat_ms=min_repeat_ms, flush_cache=False,
                         check_correctness=check_correctness, seed=seed,
                         start_method=start_method)
        self.prepare_timeout = float(prepare_timeout)
        self._prepared: str | None = None   # task key the current child holds
        self._references: dict = {}         # task key -> .npz of inputs and reference outputs
        self._directory = None

    def _forget(self) -> None:
        super()._forget()
        self._prepared = None

    def run_one(self, inp: MeasureInput, build: BuildResult,
                best: float | None = None) -> MeasureResult:
        # ``best`` is not used: GPU candidates run in microseconds, each is timed in full
        if build.path is None:
            return MeasureResult((), build.error, build.error_kind or "build", build.seconds)
        start = time.perf_counter()
        key = _task_key(inp.task_dict, self.seed)
        if self._runs >= 256:
            self.close()
        self._ensure_process()
        if self._prepared != key:
            try:
                reference = self._reference_file(inp.task_dict, key)
            except Exception:  # noqa: BLE001 -- the child computes it instead
                reference = None
            answer = self._exchange({"prepare": True, "task": inp.task_dict, "seed": self.seed,
                                     "check": self.check_correctness,
                                     "reference": reference}, self.prepare_timeout)
            if len(answer) == 3:  # (costs, error, kind): the child died or timed out
                return MeasureResult((), f"preparing the task: {answer[1]}", answer[2],
                                     build.seconds, time.perf_counter() - start)
            prepared, error = answer
            if not prepared:
                return MeasureResult((), f"preparing the task failed: {error}", "run",
                                     build.seconds, time.perf_counter() - start)
            self._prepared = key
        job = {"task": inp.task_dict, "path": build.path, "schedule": inp.schedule_json,
               "number": self.number,
               "repeat": self.repeat, "min_repeat_ms": self.min_repeat_ms,
               "check": self.check_correctness, "seed": self.seed}
        self._runs += 1
        answer = self._exchange(job, self.timeout)
        if len(answer) == 3:  # timeout or crash: the child is gone already
            costs, error, kind = answer
        else:
            costs, error, kind, restart = answer
            if restart:
                self._kill()  # a poisoned context: the next candidate gets a fresh child
        return MeasureResult(tuple(costs), error, kind, build.seconds,
                             time.perf_counter() - start)

    def _ensure_process(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        super()._ensure_process()
        self._prepared = None

    def _reference_file(self, task_dict: dict, key: str) -> str:
        """Random inputs and CPU reference outputs of a task, computed once in this process
        and saved for the children (a restarted child reloads them instead of recomputing)."""
        if key in self._references:
            return self._references[key]
        import tempfile
        import numpy as np
        task = _worker_task(task_dict)
        arrays = task.random_inputs(self.seed)
        expected = task.reference_outputs(arrays) if self.check_correctness else []
        if self._directory is None:
            self._directory = tempfile.mkdtemp(prefix="tensorlang-gpu-ref-")
        path = os.path.join(self._directory, f"ref-{len(self._references)}.npz")
        np.savez(path, n_expected=np.array(len(expected)),
                 **{f"a{i}": a for i, a in enumerate(arrays)},
                 **{f"e{i}": e for i, e in enumerate(expected)})
        self._references[key] = path
        return path

    def close(self) -> None:
        super().close()
        if self._directory is not None:
            import shutil
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
            self._references.clear()
