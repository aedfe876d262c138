"""The LLVM IR of the native thread pool that ``threadpool.py`` JIT-compiles.

Everything that runs per launch lives here, in IR, so a launch never touches Python. The state
is a handful of globals, each on its own cache line so spinning threads do not false-share:

* ``generation`` (futex word): bumped by one when a launch opens (becomes odd) and again when
  it closes (even); bumped by two to tell workers to check ``shutdown``.
* ``active``: workers currently inside a launch. A worker increments it, then re-reads
  ``generation``; only if the launch it saw is still open does it take tasks. The caller closes
  the launch *before* waiting for ``active == 0``, so with seq_cst ordering a worker either is
  counted or sees the launch closed (Dekker-style). That lets the caller return without waiting
  for workers that were still asleep, and no late worker ever reads the next launch's state.
* ``next_task``: the atomic task counter every participant (caller included) claims from.
* ``busy``: taken with cmpxchg by the launching thread; a launch that cannot take it (nested in
  a body, or racing another Python thread) runs its tasks serially in the caller. A launch that
  runs serially anyway (one task, or a pool of one) does not take it, so a launch nested in
  such a body may still use the pool.
* ``sleepers`` / ``caller_waiting``: so the futex wake syscalls are made only when somebody
  is actually asleep.
"""

from __future__ import annotations

from typing import Callable

from llvmlite import ir

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
VOID = ir.VoidType()
I8_PTR = I8.as_pointer()
BODY_TYPE = ir.FunctionType(VOID, [I64, I64, I8_PTR])
WORKER_TYPE = ir.FunctionType(I8_PTR, [I8_PTR])

SEQ_CST = "seq_cst"
MONOTONIC = "monotonic"
_FUTEX_WAIT_PRIVATE, _FUTEX_WAKE_PRIVATE = 128, 129
_FUTEX_SYSCALL = {"x86_64": 202, "aarch64": 98}
# SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGCHLD, SIGWINCH
_ASYNC_SIGNALS = (1, 2, 3, 10, 12, 13, 14, 15, 17, 28)

Emit = Callable[[ir.IRBuilder], ir.Value]


class PoolIR:
    """Builds the pool module for one target triple; ``module`` holds the result.

    Exported functions: ``tl_parallel_launch`` (the contract) and the ``tl_pool_*`` controls
    that ``threadpool.py`` calls through ctypes to start, stop and lock the pool.
    """

    def __init__(self, triple: str, spin_iterations: int, max_threads: int) -> None:
        self.module = ir.Module(name="tensorlang_threadpool")
        self.module.triple = triple
        self.arch = triple.split("-")[0]
        self.linux = "linux" in triple
        self.spin_iterations = spin_iterations
        self.max_threads = max_threads
        g = self._global
        self.generation, self.active, self.next_task = g("generation"), g("active"), g("next", I64)
        self.busy, self.sleepers, self.caller_waiting = g("busy"), g("sleepers"), g("waiting")
        self.shutdown, self.live, self.num_workers = g("shutdown"), g("live"), g("num_workers")
        # The launch parameters share one line: written once per launch, then only read.
        self.body = g("body", BODY_TYPE.as_pointer(), align=8)
        self.closure = g("closure", I8_PTR, align=8)
        self.num_tasks = g("num_tasks", I64, align=8)
        self.threads = g("threads", ir.ArrayType(I64, max_threads), align=8)  # pthread_t handles
        self._declare_libc()
        self.pause = self._build_pause()
        self.futex_wait, self.futex_wake = self._build_futex()
        self.run_tasks = self._build_run_tasks()
        self.worker = self._build_worker()
        self._build_launch()
        self._build_controls()

    # -- small builders -------------------------------------------------------------------------

    def _global(self, name: str, typ: ir.Type = I32, align: int = 64) -> ir.GlobalVariable:
        var = ir.GlobalVariable(self.module, typ, "tl_pool." + name)
        var.initializer = ir.Constant(typ, None)
        var.linkage = "internal"
        var.align = align
        return var

    def _function(self, name: str, ret: ir.Type, args: list[ir.Type],
                  exported: bool = False) -> tuple[ir.Function, ir.IRBuilder]:
        fn = ir.Function(self.module, ir.FunctionType(ret, args), name)
        if not exported:
            fn.linkage = "internal"
        return fn, ir.IRBuilder(fn.append_basic_block("entry"))

    @staticmethod
    def _load(b: ir.IRBuilder, var: ir.GlobalVariable) -> ir.Value:
        return b.load_atomic(var, SEQ_CST, var.value_type.width // 8)

    @staticmethod
    def _store(b: ir.IRBuilder, value: ir.Value | int, var: ir.GlobalVariable) -> None:
        value = value if isinstance(value, ir.Value) else ir.Constant(var.value_type, value)
        b.store_atomic(value, var, SEQ_CST, var.value_type.width // 8)

    @staticmethod
    def _add(b: ir.IRBuilder, var: ir.GlobalVariable, delta: int | ir.Value) -> ir.Value:
        """Atomic ``var += delta``; returns the old value."""
        delta = delta if isinstance(delta, ir.Value) else ir.Constant(var.value_type, delta)
        return b.atomic_rmw("add", var, delta, SEQ_CST)

    @staticmethod
    def _if(b: ir.IRBuilder, cond: ir.Value, then: Callable[[], None]) -> None:
        with b.if_then(cond):
            then()

    def _spin_until(self, b: ir.IRBuilder, ready: Emit, done: ir.Block, sleep: ir.Block) -> None:
        """Check ``ready`` up to ``spin_iterations`` times with a pause between, then go to sleep.

        Spinning first keeps back-to-back launches in the microseconds; the futex behind it keeps
        idle threads off the CPU.
        """
        entry = b.block
        head, step, again = (b.append_basic_block(n) for n in ("spin", "spin.step", "spin.again"))
        b.branch(head)
        b.position_at_end(head)
        count = b.phi(I32)
        count.add_incoming(I32(0), entry)
        b.cbranch(ready(b), done, step)
        b.position_at_end(step)
        b.cbranch(b.icmp_unsigned("<", count, I32(self.spin_iterations)), again, sleep)
        b.position_at_end(again)
        b.call(self.pause, [])
        count.add_incoming(b.add(count, I32(1)), again)
        b.branch(head)

    def _for(self, b: ir.IRBuilder, count: ir.Value, body: Callable[[ir.Value], None]) -> None:
        """Emit ``for i in range(count): body(i)``; the builder continues after the loop."""
        entry = b.block
        head, loop, done = (b.append_basic_block(n) for n in ("for", "for.body", "for.end"))
        b.branch(head)
        b.position_at_end(head)
        index = b.phi(count.type)
        index.add_incoming(ir.Constant(count.type, 0), entry)
        b.cbranch(b.icmp_signed("<", index, count), loop, done)
        b.position_at_end(loop)
        body(index)
        index.add_incoming(b.add(index, ir.Constant(count.type, 1)), b.block)
        b.branch(head)
        b.position_at_end(done)

    # -- libc, pause and futex ------------------------------------------------------------------

    def _declare_libc(self) -> None:
        m = self.module
        self.pthread_create = ir.Function(m, ir.FunctionType(
            I32, [I64.as_pointer(), I8_PTR, WORKER_TYPE.as_pointer(), I8_PTR]), "pthread_create")
        self.pthread_join = ir.Function(m, ir.FunctionType(I32, [I64, I8_PTR.as_pointer()]),
                                        "pthread_join")
        self.pthread_detach = ir.Function(m, ir.FunctionType(I32, [I64]), "pthread_detach")
        self.pthread_sigmask = ir.Function(m, ir.FunctionType(I32, [I32, I8_PTR, I8_PTR]),
                                           "pthread_sigmask")
        # syscall(2) is variadic and reads every argument as a long: pass them all as i64.
        self.syscall = ir.Function(m, ir.FunctionType(I64, [I64], var_arg=True), "syscall")
        self.sched_yield = ir.Function(m, ir.FunctionType(I32, []), "sched_yield")

    def _build_pause(self) -> ir.Function:
        fn, b = self._function("tl_pool_pause", VOID, [])
        fn.attributes.add("alwaysinline")
        if self.arch in ("x86_64", "i386", "i686"):
            # `pause` marks a spin loop: saves power and frees the sibling hyperthread.
            b.call(ir.Function(self.module, ir.FunctionType(VOID, []), "llvm.x86.sse2.pause"), [])
        elif self.arch == "aarch64":
            b.call(ir.Function(self.module, ir.FunctionType(VOID, [I32]), "llvm.aarch64.hint"),
                   [I32(1)])  # hint #1 is YIELD
        b.ret_void()
        return fn

    def _build_futex(self) -> tuple[ir.Function, ir.Function]:
        number = _FUTEX_SYSCALL.get(self.arch) if self.linux else None
        wait, bw = self._function("tl_pool_futex_wait", VOID, [I32.as_pointer(), I32])
        wake, bk = self._function("tl_pool_futex_wake", VOID, [I32.as_pointer(), I32])
        if number is None:
            # No futex here: every wait sits in a re-checking loop, so yielding is still correct,
            # only idle workers keep polling.
            bw.call(self.sched_yield, [])
        else:
            for b, fn, op in ((bw, wait, _FUTEX_WAIT_PRIVATE), (bk, wake, _FUTEX_WAKE_PRIVATE)):
                address, value = fn.args
                # futex(addr, op, val, timeout=NULL): WAIT sleeps only if *addr still equals val,
                # which is what makes the check-then-sleep in the callers race-free.
                b.call(self.syscall, [I64(number), b.ptrtoint(address, I64), I64(op),
                                      b.sext(value, I64), I64(0), I64(0), I64(0)])
        bw.ret_void()
        bk.ret_void()
        return wait, wake

    # -- the launch protocol ----------------------------------------------------------------------

    def _build_run_tasks(self) -> ir.Function:
        """Claim task ids from ``next_task`` and run the body until none are left."""
        fn, b = self._function("tl_pool_run_tasks", VOID, [])
        body, closure = b.load(self.body), b.load(self.closure)
        num_tasks = b.load(self.num_tasks)
        loop, run, done = (fn.append_basic_block(n) for n in ("claim", "run", "done"))
        b.branch(loop)
        b.position_at_end(loop)
        # Monotonic is enough: results are published by the seq_cst `active` decrement.
        task = b.atomic_rmw("add", self.next_task, I64(1), MONOTONIC)
        b.cbranch(b.icmp_signed("<", task, num_tasks), run, done)
        b.position_at_end(run)
        b.call(body, [task, num_tasks, closure])
        b.branch(loop)
        b.position_at_end(done)
        b.ret_void()
        return fn

    def _block_async_signals(self, b: ir.IRBuilder) -> None:
        """Keep asynchronous signals (Ctrl-C, alarms) for Python's threads, not for our workers."""
        if not (self.linux and self.arch in _FUTEX_SYSCALL):  # signal numbers differ elsewhere
            return
        mask = sum(1 << (signal - 1) for signal in _ASYNC_SIGNALS)
        sigset = b.alloca(ir.ArrayType(I64, 16))  # glibc's sigset_t is 128 bytes
        b.store(ir.Constant(sigset.type.pointee, [mask] + [0] * 15), sigset)
        b.call(self.pthread_sigmask, [I32(0), b.bitcast(sigset, I8_PTR), I8_PTR(None)])  # SIG_BLOCK

    def _build_worker(self) -> ir.Function:
        fn, b = self._function("tl_pool_worker", I8_PTR, [I8_PTR])
        self._block_async_signals(b)
        last = b.alloca(I32)  # the last generation this worker has seen
        names = ("wait", "sleep", "woke", "check", "join", "work", "leave", "exit")
        wait, sleep, woke, check, join, work, leave, exit_ = map(fn.append_basic_block, names)
        # Start as if just woken: a thread that gets scheduled only after a stop request (or
        # after a launch opened) must still notice it.
        b.branch(woke)

        b.position_at_end(wait)
        changed = lambda b: b.icmp_unsigned("!=", self._load(b, self.generation), b.load(last))
        self._spin_until(b, changed, woke, sleep)

        b.position_at_end(sleep)
        self._add(b, self.sleepers, 1)
        seen = b.load(last)
        still = b.icmp_unsigned("==", self._load(b, self.generation), seen)
        self._if(b, still, lambda: b.call(self.futex_wait, [self.generation, seen]))
        self._add(b, self.sleepers, -1)
        b.branch(wait)

        b.position_at_end(woke)
        generation = self._load(b, self.generation)
        b.store(generation, last)
        b.cbranch(b.icmp_unsigned("!=", self._load(b, self.shutdown), I32(0)), exit_, check)

        b.position_at_end(check)  # even generation: a launch closed, or a spurious change
        b.cbranch(b.trunc(generation, I1), join, wait)

        b.position_at_end(join)
        self._add(b, self.active, 1)
        still_open = b.icmp_unsigned("==", self._load(b, self.generation), generation)
        b.cbranch(still_open, work, leave)

        b.position_at_end(work)
        b.call(self.run_tasks, [])
        b.branch(leave)

        b.position_at_end(leave)
        was_last = b.icmp_unsigned("==", self._add(b, self.active, -1), I32(1))
        with b.if_then(was_last):
            waiting = b.icmp_unsigned("!=", self._load(b, self.caller_waiting), I32(0))
            self._if(b, waiting, lambda: b.call(self.futex_wake, [self.active, I32(1)]))
        b.branch(wait)

        b.position_at_end(exit_)
        self._add(b, self.live, -1)
        b.ret(I8_PTR(None))
        return fn

    def _build_wait_idle(self) -> ir.Function:
        """Caller side: wait until no worker is inside the (already closed) launch."""
        fn, b = self._function("tl_pool_wait_idle", VOID, [])
        head, sleep, done = map(fn.append_basic_block, ("head", "sleep", "done"))
        b.branch(head)
        b.position_at_end(head)
        idle = lambda b: b.icmp_unsigned("==", self._load(b, self.active), I32(0))
        self._spin_until(b, idle, done, sleep)
        b.position_at_end(sleep)
        self._store(b, 1, self.caller_waiting)
        active = self._load(b, self.active)
        self._if(b, b.icmp_unsigned("!=", active, I32(0)),
                 lambda: b.call(self.futex_wait, [self.active, active]))
        self._store(b, 0, self.caller_waiting)
        b.branch(head)
        b.position_at_end(done)
        b.ret_void()
        return fn

    def _build_launch(self) -> None:
        wait_idle = self._build_wait_idle()
        fn, b = self._function("tl_parallel_launch", VOID, [BODY_TYPE.as_pointer(), I8_PTR, I64],
                               exported=True)
        body, closure, num_tasks = fn.args
        serial, try_lock, parallel, wake, run = map(
            fn.append_basic_block, ("serial", "try_lock", "parallel", "wake", "run"))
        with b.if_then(b.icmp_signed("<=", num_tasks, I64(0))):
            b.ret_void()
        workers = b.load_atomic(self.num_workers, MONOTONIC, 4)
        alone = b.or_(b.icmp_signed("==", num_tasks, I64(1)), b.icmp_signed("==", workers, I32(0)))
        b.cbranch(alone, serial, try_lock)

        b.position_at_end(serial)  # also the nested / concurrent-launch path
        self._for(b, num_tasks, lambda task: b.call(body, [task, num_tasks, closure]))
        b.ret_void()

        b.position_at_end(try_lock)
        taken = b.cmpxchg(self.busy, I32(0), I32(1), SEQ_CST, SEQ_CST)
        b.cbranch(b.extract_value(taken, 1), parallel, serial)

        b.position_at_end(parallel)
        b.store(body, self.body)
        b.store(closure, self.closure)
        b.store(num_tasks, self.num_tasks)
        b.store_atomic(I64(0), self.next_task, MONOTONIC, 8)
        self._add(b, self.generation, 1)  # open: odd; publishes the stores above
        asleep = b.icmp_unsigned("!=", self._load(b, self.sleepers), I32(0))
        b.cbranch(asleep, wake, run)

        b.position_at_end(wake)  # wake no more workers than there are tasks left for them
        helpers = b.sub(num_tasks, I64(1))
        few = b.icmp_signed("<", helpers, b.zext(workers, I64))
        b.call(self.futex_wake, [self.generation, b.select(few, b.trunc(helpers, I32), workers)])
        b.branch(run)

        b.position_at_end(run)
        b.call(self.run_tasks, [])
        self._add(b, self.generation, 1)  # close: late workers now back off instead of joining
        b.call(wait_idle, [])
        self._store(b, 0, self.busy)
        b.ret_void()

    # -- controls called from Python (always with the pool lock held) ---------------------------

    def _build_controls(self) -> None:
        start, b = self._function("tl_pool_start", I32, [I32], exported=True)
        wanted = start.args[0]
        created = b.alloca(I32)
        b.store(I32(0), created)
        self._store(b, 0, self.shutdown)
        self._store(b, wanted, self.live)

        def spawn(_: ir.Value) -> None:
            count = b.load(created)
            handle = b.gep(self.threads, [I32(0), count], inbounds=True)
            status = b.call(self.pthread_create, [handle, I8_PTR(None), self.worker, I8_PTR(None)])
            b.store(b.add(count, b.zext(b.icmp_signed("==", status, I32(0)), I32)), created)

        self._for(b, wanted, spawn)
        count = b.load(created)
        self._add(b, self.live, b.sub(count, wanted))  # threads that failed to start never run
        self._store(b, count, self.num_workers)
        b.ret(count)

        stop, b = self._function("tl_pool_request_stop", VOID, [], exported=True)
        self._store(b, 1, self.shutdown)
        self._add(b, self.generation, 2)  # parity kept, value changed: every worker looks up
        b.call(self.futex_wake, [self.generation, I32(2**31 - 1)])
        b.ret_void()

        live, b = self._function("tl_pool_live", I32, [], exported=True)
        b.ret(self._load(b, self.live))

        for name, call in (("join", lambda h: [h, I8_PTR.as_pointer()(None)]),
                           ("detach", lambda h: [h])):
            fn, b = self._function("tl_pool_" + name, VOID, [], exported=True)
            count = self._load(b, self.num_workers)
            self._store(b, 0, self.num_workers)
            libc = getattr(self, "pthread_" + name)
            self._for(b, count, lambda i: b.call(libc, call(b.load(
                b.gep(self.threads, [I32(0), i], inbounds=True)))))
            b.ret_void()

        lock, b = self._function("tl_pool_try_lock", I32, [], exported=True)
        b.ret(b.zext(b.extract_value(
            b.cmpxchg(self.busy, I32(0), I32(1), SEQ_CST, SEQ_CST), 1), I32))
        unlock, b = self._function("tl_pool_unlock", VOID, [], exported=True)
        self._store(b, 0, self.busy)
        b.ret_void()

        # In a forked child only the forking thread exists: forget the workers and any launch.
        reset, b = self._function("tl_pool_reset_after_fork", VOID, [], exported=True)
        for var in (self.busy, self.active, self.sleepers, self.caller_waiting, self.shutdown,
                    self.live, self.num_workers):
            self._store(b, 0, var)
        self._store(b, b.add(b.or_(self._load(b, self.generation), I32(1)), I32(1)),
                    self.generation)
        b.ret_void()
