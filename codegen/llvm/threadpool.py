"""The process-wide native thread pool that parallel loops in generated CPU code call.

Generated code declares ``void tl_parallel_launch(void (*body)(i64 task, i64 num_tasks, i8*
closure), i8* closure, i64 num_tasks)`` as an external symbol. It runs ``body(t, num_tasks,
closure)`` for every ``t`` in ``[0, num_tasks)`` on the pool's threads, the calling thread
included, and returns when all are done. Tasks are claimed from an atomic counter, so
``num_tasks`` may exceed the thread count and no task-to-thread mapping may be assumed. A launch
from inside a body of a parallel launch (nested parallelism), or while another Python thread's
launch is in flight, runs its tasks serially in the caller; it never deadlocks.

The pool is LLVM IR (built in ``threadpool_ir.py``) JIT-compiled with MCJIT: workers are
``pthread_create`` threads that spin briefly and then sleep on a futex, so an idle pool uses no
CPU while back-to-back launches cost microseconds. Nothing here needs a C compiler.

BLAS inside parallel regions: a body that calls a BLAS must use a single-threaded BLAS call
(e.g. limit OpenBLAS/MKL to one thread around the region); a BLAS that starts its own threads
on top of ours oversubscribes the cores. The pool does not enforce this.

Example::

    from codegen.llvm import threadpool
    threadpool.set_num_threads(4)
    threadpool.ensure_symbols()          # before JIT-compiling a module that calls the pool
    address = threadpool.get_pool().launch_address
"""

from __future__ import annotations

from tensorlang.runtime import threads as _threads
import atexit
import ctypes
import ctypes.util
import operator
import os
import threading
import time
import warnings

import llvmlite.binding as llvm

from codegen.llvm.threadpool_ir import PoolIR
from tensorlang.errors import InternalError, UnsupportedOpError, UserError

__all__ = ["ThreadPool", "get_pool", "set_num_threads", "get_num_threads", "ensure_symbols"]

LAUNCH_SYMBOL = "tl_parallel_launch"
MAX_THREADS = 1024
# ~4k `pause` iterations is some tens of microseconds: long enough to catch the next launch of a
# loop nest, short enough that an idle pool goes to sleep almost at once.
SPIN_ITERATIONS = 4096
_ENV_VAR = "TENSORLANG_NUM_THREADS"


class ThreadPool:
    """The JIT-compiled pool. Get it with :func:`get_pool`; never construct it directly.

    Attributes:
        launch_address (int): address of the C-ABI ``tl_parallel_launch``.
        num_threads (int): threads that run tasks, the calling thread included.

    Example::

        pool = get_pool()
        pool.num_threads, hex(pool.launch_address)
    """

    def __init__(self, num_threads: int) -> None:
        self._engine = _compile(PoolIR(llvm.get_process_triple(), SPIN_ITERATIONS, MAX_THREADS))
        # The workers run code owned by the engine: never let it be freed, not even during
        # interpreter teardown, while a thread might still be parked in it.
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(self._engine))
        address = self._engine.get_function_address
        self.launch_address: int = address(LAUNCH_SYMBOL)
        self._start = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int32)(address("tl_pool_start"))
        controls = ("request_stop", "join", "detach", "unlock", "reset_after_fork")
        for name in controls:
            setattr(self, "_" + name, ctypes.CFUNCTYPE(None)(address("tl_pool_" + name)))
        self._live = ctypes.CFUNCTYPE(ctypes.c_int32)(address("tl_pool_live"))
        self._try_lock = ctypes.CFUNCTYPE(ctypes.c_int32)(address("tl_pool_try_lock"))
        self.num_threads = 1
        self.resize(num_threads)

    def resize(self, num_threads: int) -> None:
        """Stop the workers, once no launch is in flight, and start ``num_threads - 1`` new ones."""
        while not self._try_lock():  # a launch in flight holds the lock until it returns
            time.sleep(1e-4)
        try:
            if not self._stop_workers(timeout=30.0):
                self._detach()
                raise InternalError("thread pool workers did not stop within 30 s")
            started = self._start(num_threads - 1)
            if started != num_threads - 1:  # out of threads or memory: run with what we got
                warnings.warn(f"the thread pool started {started} of {num_threads - 1} workers; "
                              f"using {started + 1} threads", RuntimeWarning, stacklevel=3)
            self.num_threads = started + 1
        finally:
            self._unlock()

    def shutdown(self, timeout: float = 1.0) -> None:
        """Stop and join the workers; later launches run serially in the caller.

        Does not wait for a launch still in flight on another thread (that would hang interpreter
        exit); workers that are not back within ``timeout`` seconds are detached, and are harmless
        since the pool's code is never unmapped.
        """
        locked = bool(self._try_lock())
        if not self._stop_workers(timeout):
            self._detach()
        self.num_threads = 1
        if locked:
            self._unlock()

    def _stop_workers(self, timeout: float) -> bool:
        self._request_stop()
        deadline = time.monotonic() + timeout
        while self._live() > 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(1e-4)
        self._join()
        return True

    def _restart_in_forked_child(self) -> None:
        self._reset_after_fork()
        wanted, self.num_threads = self.num_threads, 1
        self.resize(wanted)


def _compile(pool_ir: PoolIR) -> llvm.ExecutionEngine:
    """Optimise the pool module for the host and load it into a fresh MCJIT engine."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    _load_libc()
    target = llvm.Target.from_triple(pool_ir.module.triple)
    machine = target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                           features=llvm.get_host_cpu_features().flatten(), opt=2)
    pool_ir.module.data_layout = str(machine.target_data)
    module = llvm.parse_assembly(str(pool_ir.module))
    module.verify()
    passes = llvm.create_pass_builder(machine, llvm.PipelineTuningOptions(speed_level=2))
    passes.getModulePassManager().run(module, passes)
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    return engine


def _load_libc() -> None:
    """Make pthread_create, syscall, ... visible to the JIT's symbol resolver."""
    if llvm.address_of_symbol("pthread_create"):
        return
    for name in ("c", "pthread"):
        path = ctypes.util.find_library(name)
        if path:
            llvm.load_library_permanently(path)
    if not llvm.address_of_symbol("pthread_create"):
        raise UnsupportedOpError("the native thread pool needs POSIX threads (pthread_create), "
                                 "which this platform's C library does not provide")


def _check_num_threads(n: object, source: str) -> int:
    try:
        value = operator.index(n)  # type: ignore[arg-type]
    except TypeError:
        raise UserError(f"{source} must be an integer thread count, got {n!r}") from None
    if not 1 <= value <= MAX_THREADS:
        raise UserError(f"{source} must be between 1 and {MAX_THREADS}, got {value}")
    return value


def _default_num_threads() -> int:
    return _check_num_threads(_threads.get_num_threads(), _ENV_VAR)


def _default_from_environment() -> int:
    text = os.environ.get(_ENV_VAR, "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            raise UserError(f"{_ENV_VAR} must be an integer thread count, got {text!r}") from None
        return _check_num_threads(value, _ENV_VAR)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


_lock = threading.Lock()
_threads.on_change(lambda n: _apply(n))
_pool: ThreadPool | None = None
_requested: int | None = None


def get_pool() -> ThreadPool:
    """Return the process-wide pool, compiling and starting it on first use.

    Also registers ``tl_parallel_launch`` with LLVM's symbol table so modules JIT-compiled later
    resolve it.

    Returns:
        ThreadPool: its ``launch_address`` is the address of ``tl_parallel_launch``.

    Example::

        launch = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(
            get_pool().launch_address)
    """
    global _pool
    pool = _pool
    if pool is not None:
        return pool
    with _lock:
        if _pool is None:
            _pool = ThreadPool(_requested or _default_num_threads())
            llvm.add_symbol(LAUNCH_SYMBOL, _pool.launch_address)
        return _pool


def ensure_symbols() -> None:
    """Make ``tl_parallel_launch`` resolvable by the JIT; call before JIT-compiling a module.

    Example::

        ensure_symbols()
        engine = llvm.create_mcjit_compiler(module, target_machine)
    """
    get_pool()


def set_num_threads(n: int) -> None:
    """Set the pool size (threads that run tasks, the calling thread included).

    Takes effect at once if the pool is running (waiting for a launch in flight to finish), else
    when it starts. Do not call it from inside a parallel body: it would wait for itself.

    Args:
        n: thread count, ``1 <= n <= MAX_THREADS``; 1 runs every launch serially.

    Raises:
        UserError: ``n`` is not an integer in range.

    Example::

        set_num_threads(4)
    """
    _check_num_threads(n, "the number of threads")
    _threads.set_num_threads(int(n))  # the shared setting; it calls _apply below


def _apply(n: int) -> None:
    """Resize to ``n`` threads (called when tl.runtime.set_num_threads changes the setting)."""
    global _requested
    value = _check_num_threads(n, "the number of threads")
    with _lock:
        _requested = value
        if _pool is not None and _pool.num_threads != value:
            _pool.resize(value)


def get_num_threads() -> int:
    """Return the pool size: the running pool's, else the one it will start with.

    Example::

        get_num_threads()  # TENSORLANG_NUM_THREADS, or the CPUs this process may run on
    """
    if _pool is not None:
        return _pool.num_threads
    return _requested or _default_num_threads()


@atexit.register
def _shutdown_at_exit() -> None:
    if _pool is not None:
        _pool.shutdown(timeout=1.0)


def _after_fork_in_child() -> None:
    # Only the forking thread survives a fork: rebuild the workers (and the Python lock, which
    # another thread may have held at the time).
    global _lock
    _lock = threading.Lock()
    if _pool is not None:
        _pool._restart_in_forked_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
