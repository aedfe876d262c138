"""The native thread pool, through the real JIT: bodies are LLVM IR compiled here and launched
through ``tl_parallel_launch`` with ctypes. Every wait is bounded so a hang fails the test."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
import pytest
from llvmlite import ir

from codegen.llvm import threadpool
from tensorlang.errors import UserError

I32, I64 = ir.IntType(32), ir.IntType(64)
I8_PTR = ir.IntType(8).as_pointer()
BODY_TYPE = ir.FunctionType(ir.VoidType(), [I64, I64, I8_PTR])
LAUNCH = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
TIMEOUT_S = 60.0
REPO = Path(__file__).resolve().parents[2]


def _atomic_add(b: ir.IRBuilder, array: ir.Value, index: ir.Value | int, value: ir.Value) -> None:
    slot = b.gep(array, [index if isinstance(index, ir.Value) else I64(index)])
    b.atomic_rmw("add", slot, value, "seq_cst")


def _body(module: ir.Module, name: str) -> tuple[ir.Function, ir.IRBuilder, ir.Value]:
    fn = ir.Function(module, BODY_TYPE, name)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    return fn, b, b.bitcast(fn.args[2], I64.as_pointer())


def _build_bodies() -> ir.Module:
    module = ir.Module(name="threadpool_test_bodies")
    module.triple = llvm.get_process_triple()
    pthread_self = ir.Function(module, ir.FunctionType(I64, []), "pthread_self")
    launch = ir.Function(module, ir.FunctionType(ir.VoidType(), [BODY_TYPE.as_pointer(), I8_PTR,
                                                                 I64]), "tl_parallel_launch")

    # count: A[0] += task + 1; A[1 + task] += 1
    fn, b, array = _body(module, "count_body")
    task = fn.args[0]
    _atomic_add(b, array, 0, b.add(task, I64(1)))
    _atomic_add(b, array, b.add(task, I64(1)), I64(1))
    b.ret_void()

    # barrier: every task waits (bounded) until all num_tasks have arrived; A[1] counts timeouts.
    # Only finishes promptly if the tasks really run on different threads at once.
    fn, b, array = _body(module, "barrier_body")
    _atomic_add(b, array, 0, I64(1))
    head, spin, timed_out, done = map(fn.append_basic_block, ("head", "spin", "timeout", "done"))
    entry = b.block
    b.branch(head)
    b.position_at_end(head)
    count = b.phi(I64)
    count.add_incoming(I64(0), entry)
    arrived = b.load_atomic(b.gep(array, [I64(0)]), "seq_cst", 8)
    b.cbranch(b.icmp_signed(">=", arrived, fn.args[1]), done, spin)
    b.position_at_end(spin)
    count.add_incoming(b.add(count, I64(1)), spin)
    b.cbranch(b.icmp_signed("<", count, I64(2_000_000_000)), head, timed_out)
    b.position_at_end(timed_out)
    _atomic_add(b, array, 1, I64(1))
    b.branch(done)
    b.position_at_end(done)
    b.ret_void()

    # nested inner: closure = [owner thread, address of A]; A[0] += task + 1, and A[1] += 1 if it
    # ran on a thread other than the one that launched it (it must not: nested runs serially).
    inner, b, closure = _body(module, "nested_inner")
    array = b.inttoptr(b.load(b.gep(closure, [I64(1)])), I64.as_pointer())
    _atomic_add(b, array, 0, b.add(inner.args[0], I64(1)))
    other = b.icmp_unsigned("!=", b.call(pthread_self, []), b.load(closure))
    _atomic_add(b, array, 1, b.zext(other, I64))
    b.ret_void()

    # nested outer: A[2] += 1, then launch nested_inner over 8 tasks from inside the body.
    outer, b, array = _body(module, "nested_outer")
    _atomic_add(b, array, 2, I64(1))
    inner_closure = b.alloca(I64, 2)
    b.store(b.call(pthread_self, []), inner_closure)
    b.store(b.ptrtoint(array, I64), b.gep(inner_closure, [I64(1)]))
    b.call(launch, [inner, b.bitcast(inner_closure, I8_PTR), I64(8)])
    b.ret_void()
    return module


@pytest.fixture(scope="module")
def bodies() -> dict[str, int]:
    threadpool.ensure_symbols()  # nested_outer calls tl_parallel_launch as an extern
    machine = llvm.Target.from_triple(llvm.get_process_triple()).create_target_machine()
    module = llvm.parse_assembly(str(_build_bodies()))
    module.verify()
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    names = ("count_body", "barrier_body", "nested_inner", "nested_outer")
    yield {name: engine.get_function_address(name) for name in names}
    del engine


@pytest.fixture
def launch() -> LAUNCH:
    before = threadpool.get_num_threads()
    yield LAUNCH(threadpool.get_pool().launch_address)
    threadpool.set_num_threads(before)


def _within_timeout(work, timeout: float = TIMEOUT_S) -> None:
    """Run ``work`` on a daemon thread; fail (not hang) if it does not finish in time."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as err:  # noqa: BLE001 - re-raised on the test thread
            errors.append(err)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"thread pool launch did not finish within {timeout} s"
    if errors:
        raise errors[0]


def _check_count(launch: LAUNCH, body: int, num_tasks: int) -> None:
    array = np.zeros(num_tasks + 1, dtype=np.int64)
    launch(body, array.ctypes.data, num_tasks)
    assert array[0] == num_tasks * (num_tasks + 1) // 2
    np.testing.assert_array_equal(array[1:], np.ones(num_tasks, dtype=np.int64))


@pytest.mark.parametrize("num_tasks", [1, 2, 3, 7, 64, 1000])
def test_every_task_runs_exactly_once(launch, bodies, num_tasks):
    def work() -> None:
        for _ in range(20):  # repeat: the interesting races are between consecutive launches
            _check_count(launch, bodies["count_body"], num_tasks)

    _within_timeout(work)


def test_pool_is_one_per_process_and_its_symbol_is_registered():
    threadpool.ensure_symbols()
    pool = threadpool.get_pool()
    assert threadpool.get_pool() is pool
    assert llvm.address_of_symbol(threadpool.LAUNCH_SYMBOL) == pool.launch_address


@pytest.mark.parametrize("num_tasks", [0, -5])
def test_no_tasks_runs_nothing(launch, bodies, num_tasks):
    array = np.zeros(2, dtype=np.int64)
    _within_timeout(lambda: launch(bodies["count_body"], array.ctypes.data, num_tasks))
    assert not array.any()


def test_tasks_really_run_in_parallel(launch, bodies):
    threadpool.set_num_threads(2)
    array = np.zeros(2, dtype=np.int64)
    _within_timeout(lambda: launch(bodies["barrier_body"], array.ctypes.data, 2))
    assert array[0] == 2 and array[1] == 0, "the two tasks never ran at the same time"


def test_nested_launch_runs_serially_and_completes(launch, bodies):
    outer_tasks = 16
    array = np.zeros(3, dtype=np.int64)
    _within_timeout(lambda: launch(bodies["nested_outer"], array.ctypes.data, outer_tasks))
    assert array[2] == outer_tasks
    assert array[0] == outer_tasks * (8 * 9 // 2)
    assert array[1] == 0, "a nested launch ran tasks on another thread"


def test_concurrent_launches_from_python_threads(launch, bodies):
    threadpool.set_num_threads(max(2, threadpool.get_num_threads()))

    def one_thread(seed: int) -> None:
        for index in range(100):
            _check_count(launch, bodies["count_body"], [1, 3, 64, 1000][(seed + index) % 4])

    def work() -> None:
        threads = [threading.Thread(target=_within_timeout, args=(lambda s=s: one_thread(s),))
                   for s in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    _within_timeout(work)
    # The pool is still usable, in parallel, afterwards.
    _within_timeout(lambda: _check_count(launch, bodies["count_body"], 1000))


@pytest.mark.parametrize("num_threads", [1, 3])
def test_set_num_threads(launch, bodies, num_threads):
    threadpool.set_num_threads(num_threads)
    assert threadpool.get_num_threads() == num_threads
    assert threadpool.get_pool().num_threads == num_threads
    _within_timeout(lambda: [_check_count(launch, bodies["count_body"], n) for n in (1, 7, 1000)])


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", None, threadpool.MAX_THREADS + 1])
def test_bad_thread_count_raises_user_error(bad):
    before = threadpool.get_num_threads()
    with pytest.raises(UserError, match="thread"):
        threadpool.set_num_threads(bad)
    assert threadpool.get_num_threads() == before


def _run_python(code: str, env: dict[str, str] | None = None) -> str:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return done.stdout


_SUBPROCESS_PRELUDE = """
    import ctypes, os
    import numpy as np
    from llvmlite import ir
    import llvmlite.binding as llvm
    from codegen.llvm import threadpool
    launch = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(
        threadpool.get_pool().launch_address)
    i64 = ir.IntType(64)
    m = ir.Module(); m.triple = llvm.get_process_triple()
    f = ir.Function(m, ir.FunctionType(ir.VoidType(), [i64, i64, ir.IntType(8).as_pointer()]), "b")
    b = ir.IRBuilder(f.append_basic_block())
    b.atomic_rmw("add", b.bitcast(f.args[2], i64.as_pointer()), f.args[0], "seq_cst"); b.ret_void()
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(str(m)),
                                        llvm.Target.from_default_triple().create_target_machine())
    body = engine.get_function_address("b")
    def total(n):
        a = np.zeros(1, dtype=np.int64); launch(body, a.ctypes.data, n); return int(a[0])
"""


def test_env_var_sets_default_and_exit_is_clean():
    out = _run_python(_SUBPROCESS_PRELUDE + """
    print(threadpool.get_num_threads(), total(100))
    """, env={"TENSORLANG_NUM_THREADS": "3"})
    assert out.split() == ["3", str(sum(range(100)))]


def test_bad_env_var_raises_user_error():
    out = _run_python("""
        from codegen.llvm import threadpool
        from tensorlang.errors import UserError
        try:
            threadpool.get_num_threads()
        except UserError as err:
            print("UserError", err)
    """, env={"TENSORLANG_NUM_THREADS": "many"})
    assert out.startswith("UserError") and "TENSORLANG_NUM_THREADS" in out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_pool_works_in_a_forked_child():
    out = _run_python(_SUBPROCESS_PRELUDE + """
    threadpool.set_num_threads(2)
    pid = os.fork()
    if pid == 0:
        os._exit(0 if total(1000) == sum(range(1000)) and threadpool.get_num_threads() == 2 else 1)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), total(1000))
    """)
    assert out.split() == ["0", str(sum(range(1000)))]
