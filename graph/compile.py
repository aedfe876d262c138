"""Compile the kernels of a build: each distinct group spec once, in parallel worker processes,
and cached in this process across builds.

A group's kernel depends only on its spec (the JSON text of its ops and input types), the target,
the thread-pool size its parallel loops are split for and the tuning records that apply to it,
so :func:`compile_kernels` keys a process-wide cache by ``(spec, target, threads, database
identity)``: building the same model twice, or two models that share
layers, compiles each kernel once. Kernels not in the cache are compiled by worker processes
(``python -m graph._compile_worker``: fresh interpreters, so neither the parent's LLVM state and
thread pool nor its ``__main__`` script are inherited), fed one spec at a time; a worker
schedules, lowers and compiles it and writes it as a shared library that the parent loads. With
one worker, few jobs, an open Database object, or no C compiler to link with, they are compiled
here instead, and so is any job a worker failed on (so its error is raised here). Groups that
call the BLAS (``graph/ops/gemm.py``) are always compiled here, while the workers run: their
kernels resolve the BLAS shims from this process's LLVM symbol table; they get
:func:`_extern_schedule` (no tuning records: the extern stage has no knobs); compiling one sets
scipy's OpenBLAS to one thread (``graph.ops.gemm.single_threaded_blas``), since its spinning
threads and the tensorlang pool's oversubscribe the cores. Dense layers of one row (batch 1)
without a tuning record get the rfactor sketch instead of the default tiled one
(:func:`_gemv_schedule`), with or without a database.

The worker count is ``TENSORLANG_COMPILE_WORKERS`` if set, else the number of CPUs.

Example::

    kernels = compile_kernels([(name, spec), ...], target="llvm", database=None)
    kernels[spec](*arrays)
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import tempfile
import threading

import tensorlang as tl
from autotune.sketch import Sketch, generate_sketches
from autotune.task import Task, _vector_lanes
from tensorlang.ops.winograd import schedule_winograd
from tensorlang.tensor import ComputeOp, ExternOp

from .ops.gemm import single_threaded_blas

_CACHE: dict[tuple, object] = {}
_CACHE_LIMIT = 2048
_lock = threading.Lock()
_library_dir: list[str] = []
MIN_PARALLEL_JOBS = 4   # below this, starting workers costs more than it saves


def _database_key(database):
    """What identifies the records a database holds: None, a path with its modification time
    and size, or False for an open Database object (its records may change: never cached)."""
    if database is None:
        return None
    if isinstance(database, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(database))
        try:
            st = os.stat(path)
        except OSError:
            return (path, None)  # a missing file: the default schedules
        return (path, st.st_mtime_ns, st.st_size)
    return False


def _task(spec: str, target: str) -> Task:
    from .build import group_workload
    return Task(group_workload, args=(spec,), target=target)


def _calls_extern(task: Task) -> bool:
    """Whether the group has an extern stage (a BLAS call): such kernels are compiled in this
    process, whose LLVM symbol table provides the BLAS shims (a worker's shared library could
    not be loaded here), and scheduled by :func:`_extern_schedule`."""
    return any(isinstance(st.op, ExternOp) for st in tl.create_schedule(task.outputs).stages)


def _extern_schedule(task: Task) -> tl.Schedule:
    """The schedule of a group with an extern stage: elementwise stages read only by compute
    stages are inlined, every other compute stage (im2col, the group's output) runs parallel
    and vectorized. The sketches would inline a stage an extern reads, which cannot be done.
    A Winograd convolution's pad, input transform and output stages get
    ``tensorlang.ops.winograd.schedule_winograd`` (tile axes unrolled)."""
    sch = tl.create_schedule(task.outputs)
    winograd = next((st for st in sch.stages if st.op.tag == "winograd_output"), None)
    carrier = None  # the stage that carries the winograd output's loops
    if winograd is not None:
        outputs = [st for st in sch.stages if st.is_output]
        same = len(outputs) == 1 and [int(d) for d in outputs[0].op.output(0).shape] == \
            [int(d) for d in winograd.op.output(0).shape]
        carrier = outputs[0] if same else winograd
    plans = []
    for i, st in enumerate(sch.stages):
        readers = sch.consumers_of(st)
        if not isinstance(st.op, ComputeOp) or st.op.tag in _WINOGRAD_OWN or st is carrier:
            plans.append((i, "skip", {}))
        elif not st.is_output and not st.op.reduce_axis and readers and \
                all(isinstance(r.op, ComputeOp) for r in readers):
            plans.append((i, "inline", {}))
        else:
            plans.append((i, "simple", {}))
    sketch = Sketch(task.outputs, plans, _vector_lanes(task))
    sch = sketch.apply(task.outputs, sketch.default_decisions())
    if carrier is not None:  # the output stage holding the inlined winograd output, or itself
        schedule_winograd(sch, next(st for st in sch.stages if st.op is carrier.op))
    return sch


# the Winograd stages that tensorlang.ops.winograd.schedule_winograd schedules itself
_WINOGRAD_OWN = ("winograd_pad", "winograd_rows", "winograd_input", "winograd_half")


def _compile_here(name: str, spec: str, target: str, database):
    task = _task(spec, target)
    if _calls_extern(task):
        kernel = tl.build(_extern_schedule(task), list(task.tensors), target=target, name=name)
        single_threaded_blas()  # after the build, which loads the BLAS shims
        return kernel
    if _is_gemv(spec) and not _has_record(task, database):
        schedule, args = _gemv_schedule(task), list(task.tensors)
    else:
        schedule, args = task.apply_best(database)
    return tl.build(schedule, args, target=target, name=name)


@contextlib.contextmanager
def opened_database(database):
    """``database`` (None, a path or an open Database) as an open Database or None; one
    opened here is closed on exit."""
    from autotune.database import Database
    db = database if database is None or hasattr(database, "best") else Database(database)
    try:
        yield db
    finally:
        if db is not None and db is not database:
            db.close()


def _has_record(task: Task, database) -> bool:
    """Whether ``database`` (None, a path or an open Database) holds a record for ``task``."""
    with opened_database(database) as db:
        return db is not None and bool(db.best(task.key, task.target_key, k=1))


def _is_gemv(spec: str) -> bool:
    """A dense layer of one row (batch 1): the group starts with ``dense`` on a [1, K] input."""
    data = json.loads(spec)
    op, _, refs = data["ops"][0]
    first = refs[0]
    return op == "dense" and first[0] == "i" and data["inputs"][first[1]][0][0] == 1


def _gemv_schedule(task: Task) -> tl.Schedule:
    """The first rfactor sketch (the reduction split into vector lanes, parallel over output
    columns): memory-bound matrix-vector products run near bandwidth with it, about 3x faster
    than the default tiled sketch, which has one row to tile."""
    sketches = generate_sketches(task.outputs, _vector_lanes(task))
    for sketch in sketches:
        if any(kind == "rfactor" for _, kind, _ in sketch.plans):
            return sketch.apply(task.outputs, sketch.default_decisions())
    return sketches[0].apply(task.outputs, sketches[0].default_decisions())


def _workers(jobs: int) -> int:
    env = os.environ.get("TENSORLANG_COMPILE_WORKERS", "")
    count = int(env) if env.strip().isdigit() else (os.cpu_count() or 1)
    return max(1, min(count, jobs))


def _libraries() -> str:
    """A folder for the workers' libraries, removed when this process exits."""
    with _lock:
        if not _library_dir:
            _library_dir.append(tempfile.mkdtemp(prefix="tensorlang_kernels_"))
            atexit.register(shutil.rmtree, _library_dir[0], True)
        return _library_dir[0]


def compile_kernels(jobs, target: str = "llvm", database=None, vendor: str = "auto",
                    progress=None) -> dict:
    """``{spec: kernel}`` for ``jobs``, a list of ``(group name, spec)`` pairs (a spec may
    repeat; the first name gives the kernel's entry name). ``vendor``: CUDA targets only (see
    :func:`_compile_cuda`). ``progress``: called as ``progress(done, total)`` (distinct
    kernels) each time one is ready, cached ones first (CPU targets; a CUDA build calls it
    once at the end).

    Example:
        >>> kernels = compile_kernels([("fused_relu_0", spec)])  # doctest: +SKIP
    """
    from .gpu import is_cuda_target
    if is_cuda_target(target):
        kernels = _compile_cuda(jobs, target, database, vendor)
        if progress is not None:
            progress(len(kernels), len(kernels))
        return kernels
    db_key = _database_key(database)
    # parallel loops are split for the pool size at compile time: a kernel is cached per size
    threads = tl.runtime.get_num_threads()
    kernels, todo = {}, {}
    for name, spec in jobs:
        key = (spec, target, threads, db_key)
        if spec in kernels or spec in todo:
            continue
        if db_key is not False and key in _CACHE:
            kernels[spec] = _CACHE[key]
        else:
            todo[spec] = name
    ready = _Ready(progress, len(kernels), len(kernels) + len(todo))
    if todo:
        workers = _workers(len(todo))
        if workers > 1 and len(todo) >= MIN_PARALLEL_JOBS and _can_export() and \
                not hasattr(database, "best"):  # an open Database does not travel to workers
            kernels.update(_compile_parallel(todo, target, database, workers, on_ready=ready))
        else:
            for spec, name in todo.items():
                kernels[spec] = _compile_here(name, spec, target, database)
                ready()
    if db_key is not False:
        with _lock:
            for spec in todo:
                _CACHE[(spec, target, threads, db_key)] = kernels[spec]
            while len(_CACHE) > _CACHE_LIMIT:
                _CACHE.pop(next(iter(_CACHE)))
    return kernels


class _Ready:
    """Counts kernels as they become ready and reports ``(done, total)`` to ``progress``
    (called from the threads that serve the compile workers, hence the lock)."""

    def __init__(self, progress, done: int, total: int):
        self.progress, self.done, self.total = progress, done, total
        self.lock = threading.Lock()
        if progress is not None and done:
            progress(done, total)

    def __call__(self) -> None:
        if self.progress is not None:
            with self.lock:
                self.done += 1
                self.progress(self.done, self.total)


def _can_export() -> bool:
    from codegen.llvm.export import find_compiler
    return find_compiler() is not None


def _compile_parallel(todo: dict, target: str, database, workers: int,
                      cuda_key: str | None = None, on_ready=None) -> dict:
    """Compile ``todo`` ({spec: name}) in ``workers`` child processes (``python -m
    graph._compile_worker``, fed one job at a time, so a fast worker takes more jobs).
    ``cuda_key``: a CUDA build's target key; the workers then see no GPU and probe none
    (NVRTC needs neither) and hand back pickled CUDA modules."""
    import json
    import queue
    import subprocess
    import sys
    folder = tempfile.mkdtemp(dir=_libraries())
    database = os.fspath(database) if database is not None else None
    # the costliest groups (longest specs: convolutions with their fused consumers) first
    order = sorted(todo.items(), key=lambda item: -len(item[0]))
    local = set() if cuda_key else \
        {spec for spec, _ in order if _calls_extern(_task(spec, target))}
    pending: queue.Queue = queue.Queue()
    for i, (spec, name) in enumerate(order):
        if spec in local:
            continue
        job = {"name": name, "spec": spec, "target": target, "database": database,
               "path": os.path.join(folder, f"k{i}.pkl" if cuda_key else f"k{i}.so")}
        if cuda_key:
            job["target_key"] = cuda_key
        pending.put(job)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    # kernels split parallel loops for this process's pool size, whatever set it
    env["TENSORLANG_NUM_THREADS"] = str(tl.runtime.get_num_threads())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
    if cuda_key:  # compile workers must not open the GPU (NVRTC runs without one)
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["TENSORLANG_NO_CUDA_PROBE"] = "1"
    done: dict[str, str] = {}

    def serve():
        try:
            job = pending.get_nowait()
        except queue.Empty:
            return
        child = subprocess.Popen([sys.executable, "-m", "graph._compile_worker"], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            while job is not None:
                child.stdin.write(json.dumps(job) + "\n")
                child.stdin.flush()
                reply = child.stdout.readline()
                if reply.strip() == "ok":
                    done[job["spec"]] = job["path"]
                    if on_ready is not None:
                        on_ready()
                try:
                    job = pending.get_nowait()
                except queue.Empty:
                    job = None
        except (OSError, ValueError):  # a dead worker: what it left is compiled here
            return
        finally:
            if child.stdin:
                child.stdin.close()
            child.wait()

    threads = [threading.Thread(target=serve, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    kernels = {}
    for spec, _ in order:  # the BLAS groups here, while the workers compile the rest
        if spec in local:
            kernels[spec] = _compile_here(todo[spec], spec, target, database)
            if on_ready is not None:
                on_ready()
    for t in threads:
        t.join()
    for spec, name in order:  # a job a worker failed on is compiled here: its error is raised
        if spec in local:
            continue
        if cuda_key:
            kernels[spec] = _load_pickled(done[spec]) if spec in done else \
                _compile_cuda_here(name, spec, target, database, cuda_key)
            continue
        kernels[spec] = _load_compiled(done[spec]) if spec in done else \
            _compile_here(name, spec, target, database)
        if spec not in done and on_ready is not None:
            on_ready()
    return kernels


def _load_compiled(path: str):
    """A worker's kernel library, with the LLVM IR it wrote beside it (for ``get_source`` and
    ``export_library``)."""
    from tensorlang.runtime.module import load_module
    try:
        with open(path + ".ll") as f:
            ir_text = f.read()
    except OSError:
        ir_text = None
    return load_module(path, ir_text=ir_text)


def _load_pickled(path: str):
    import pickle
    with open(path, "rb") as f:
        return pickle.load(f)


# -- CUDA ----------------------------------------------------------------------------------------
def _compile_cuda_here(name: str, spec: str, target: str, database, target_key: str):
    """The CUDA module of a group: its tuned record or the GPU default schedule
    (``Task.apply_best``), compiled to a cubin for the architecture of ``target_key`` (NVRTC:
    no GPU needed)."""
    from tensorlang.errors import UnsupportedOpError
    from .build import group_workload
    task = Task(group_workload, args=(spec,), target=target, target_key=target_key)
    schedule, args = task.apply_best(database)
    if any(isinstance(st.op, ExternOp) for st in schedule.stages):
        raise UnsupportedOpError(f"graph.build(target='cuda'): group {name} calls an extern "
                                 "function, which has no GPU kernel")
    return tl.build(schedule, args, target=task.build_target, name=name)


def _compile_cuda(jobs, target: str, database, vendor: str) -> dict:
    """``{spec: kernel}`` for a CUDA build: a CudaModule per group, or with ``vendor``
    ("auto": when PyTorch with CUDA is importable here; "torch": required; "none": never)
    a :class:`graph.gpu.VendorKernel` for convolutions and large dense / matmul layers (whose
    CUDA epilogue kernels are compiled like groups). Cached like CPU kernels; compiled in
    worker processes that see no GPU."""
    from autotune.task import cuda_target_key
    from tensorlang.errors import UserError
    from .gpu import VendorKernel, torch_cuda_usable, vendor_plan
    if vendor not in ("auto", "torch", "none"):
        raise UserError(f"graph.build: vendor must be 'auto', 'torch' or 'none', got "
                        f"{vendor!r}")
    use_torch = vendor != "none" and torch_cuda_usable()
    if vendor == "torch" and not use_torch:
        raise UserError("graph.build(vendor='torch') needs PyTorch with a usable CUDA GPU in "
                        "this process; use vendor='auto' or 'none' for our own kernels")
    cuda_key = cuda_target_key(target)
    db_key = _database_key(database)
    kernels, todo, plans, own = {}, {}, {}, []
    for name, spec in jobs:
        if spec in kernels or spec in plans or spec in own:
            continue
        key = (spec, target, db_key, use_torch)
        if db_key is not False and key in _CACHE:
            kernels[spec] = _CACHE[key]
            continue
        plan = vendor_plan(spec) if use_torch else None
        if plan is not None:
            plans[spec] = (name, plan)
            if plan.epilogue is not None:
                todo.setdefault(plan.epilogue, name + "_epilogue")
        else:
            own.append(spec)
            todo.setdefault(spec, name)
    compiled = {}
    if todo:
        workers = _workers(len(todo))
        if workers > 1 and len(todo) >= MIN_PARALLEL_JOBS and not hasattr(database, "best"):
            compiled = _compile_parallel(todo, target, database, workers, cuda_key=cuda_key)
        else:
            compiled = {spec: _compile_cuda_here(name, spec, target, database, cuda_key)
                        for spec, name in todo.items()}
    for spec in own:
        kernels[spec] = compiled[spec]
    for spec, (name, plan) in plans.items():
        kernels[spec] = VendorKernel(name, plan, compiled.get(plan.epilogue))
    if db_key is not False:
        with _lock:
            for spec in [*own, *plans]:
                _CACHE[(spec, target, db_key, use_torch)] = kernels[spec]
            while len(_CACHE) > _CACHE_LIMIT:
                _CACHE.pop(next(iter(_CACHE)))
    return kernels


def clear_cache() -> None:
    """Forget every cached kernel (the next build compiles them again)."""
    with _lock:
        _CACHE.clear()


__all__ = ["compile_kernels", "clear_cache", "MIN_PARALLEL_JOBS"]
