"""Launch overhead of the native thread pool (``codegen/llvm/threadpool.py``).

Times ``tl_parallel_launch`` of an empty body from a JIT-compiled driver loop, so no Python runs
between launches: each launch is timed with ``clock_gettime`` inside the driver and the median is
reported. With empty tasks the caller often claims every task before a worker gets there, so a
second row uses a rendezvous body (each task waits for all the others) to time the full round
trip in which every task runs on its own thread. For reference it also times launches that find
the workers asleep on their futex, and a Python ``ThreadPoolExecutor`` submit + wait.

The asleep row depends on the OS scheduler more than on the pool: on some KVM guests an idle
vCPU looks preempted, so the woken worker is queued on the caller's busy CPU and runs only when
the caller's time slice ends (milliseconds); with the caller and the workers on different CPUs it
is the futex wake-up latency (tens of microseconds).

Usage: ``PYTHONPATH=. python benchmarks/parallel_launch.py [--threads N] [--tasks 2]``
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import statistics
import sys
import time
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from codegen.llvm import threadpool  # noqa: E402

I32, I64 = ir.IntType(32), ir.IntType(64)
I8_PTR = ir.IntType(8).as_pointer()
BODY_TYPE = ir.FunctionType(ir.VoidType(), [I64, I64, I8_PTR])
CLOCK_MONOTONIC = 1


def build_rendezvous(module: ir.Module) -> ir.Function:
    """A body whose tasks wait for each other: closure is an i64 arrival counter, never reset."""
    fn = ir.Function(module, BODY_TYPE, "rendezvous_body")
    _, num_tasks, closure = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    counter = b.bitcast(closure, I64.as_pointer())
    arrived = b.add(b.atomic_rmw("add", counter, I64(1), "seq_cst"), I64(1))
    # Wait until this launch's group of num_tasks has arrived: counter >= ceil(arrived / n) * n.
    target = b.mul(b.sdiv(b.add(arrived, b.sub(num_tasks, I64(1))), num_tasks), num_tasks)
    spin, done = fn.append_basic_block("spin"), fn.append_basic_block("done")
    b.branch(spin)
    b.position_at_end(spin)
    b.cbranch(b.icmp_signed(">=", b.load_atomic(counter, "seq_cst", 8), target), done, spin)
    b.position_at_end(done)
    b.ret_void()
    return fn


def build_driver() -> tuple[llvm.ExecutionEngine, ctypes.CFUNCTYPE, dict[str, int]]:
    """JIT ``timed_launches(count, body, closure, num_tasks, i64* out_ns)`` and two bodies."""
    module = ir.Module(name="parallel_launch_bench")
    module.triple = llvm.get_process_triple()
    empty = ir.Function(module, BODY_TYPE, "empty_body")
    ir.IRBuilder(empty.append_basic_block()).ret_void()
    build_rendezvous(module)
    launch = ir.Function(module, ir.FunctionType(ir.VoidType(), [BODY_TYPE.as_pointer(), I8_PTR,
                                                                 I64]), "tl_parallel_launch")
    timespec = ir.LiteralStructType([I64, I64])
    clock = ir.Function(module, ir.FunctionType(I32, [I32, timespec.as_pointer()]),
                        "clock_gettime")
    driver = ir.Function(module, ir.FunctionType(
        ir.VoidType(), [I64, BODY_TYPE.as_pointer(), I8_PTR, I64, I64.as_pointer()]),
        "timed_launches")
    count, body, closure, num_tasks, out = driver.args
    b = ir.IRBuilder(driver.append_basic_block("entry"))
    stamp = b.alloca(timespec)

    def now() -> ir.Value:
        b.call(clock, [I32(CLOCK_MONOTONIC), stamp])
        seconds = b.load(b.gep(stamp, [I32(0), I32(0)]))
        nanoseconds = b.load(b.gep(stamp, [I32(0), I32(1)]))
        return b.add(b.mul(seconds, I64(1_000_000_000)), nanoseconds)

    entry = b.block
    loop, done = driver.append_basic_block("loop"), driver.append_basic_block("done")
    b.cbranch(b.icmp_signed(">", count, I64(0)), loop, done)
    b.position_at_end(loop)
    index = b.phi(I64)
    index.add_incoming(I64(0), entry)
    start = now()
    b.call(launch, [body, closure, num_tasks])
    b.store(b.sub(now(), start), b.gep(out, [index]))
    following = b.add(index, I64(1))
    index.add_incoming(following, b.block)
    b.cbranch(b.icmp_signed("<", following, count), loop, done)
    b.position_at_end(done)
    b.ret_void()

    threadpool.ensure_symbols()
    machine = llvm.Target.from_triple(module.triple).create_target_machine(opt=2)
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(str(module)), machine)
    engine.finalize_object()
    signature = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                 ctypes.c_int64, ctypes.c_void_p)
    bodies = {name: engine.get_function_address(name + "_body") for name in ("empty", "rendezvous")}
    return engine, signature(engine.get_function_address("timed_launches")), bodies


def native_launch_us(driver, body: int, num_tasks: int, launches: int) -> float:
    """Median microseconds per back-to-back launch."""
    samples, closure = np.zeros(launches, dtype=np.int64), np.zeros(1, dtype=np.int64)
    args = (body, closure.ctypes.data, num_tasks, samples.ctypes.data)
    driver(1000, *args)  # warm up: workers spinning, caches hot
    driver(launches, *args)
    return float(np.median(samples)) / 1e3


def native_cold_launch_us(driver, body: int, num_tasks: int, launches: int,
                          idle_s: float) -> float:
    """Median microseconds per launch that finds the workers asleep (after ``idle_s`` idle)."""
    samples, one, closure = [], np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
    for _ in range(launches):
        time.sleep(idle_s)
        driver(1, body, closure.ctypes.data, num_tasks, one.ctypes.data)
        samples.append(int(one[0]))
    return statistics.median(samples) / 1e3


def executor_us(num_threads: int, num_tasks: int, launches: int) -> float:
    """Median microseconds for a ThreadPoolExecutor to run ``num_tasks`` empty tasks."""
    def empty() -> None:
        return None

    samples = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=num_threads) as pool:
        for index in range(launches + 1000):
            start = time.perf_counter_ns()
            concurrent.futures.wait([pool.submit(empty) for _ in range(num_tasks)])
            if index >= 1000:
                samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="pool size (default: TENSORLANG_NUM_THREADS or all usable CPUs)")
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--launches", type=int, default=10_000)
    args = parser.parse_args()
    if args.threads is not None:
        threadpool.set_num_threads(args.threads)
    threads = threadpool.get_num_threads()
    engine, driver, bodies = build_driver()  # noqa: F841 - the engine owns the driver's code
    empty, rendezvous = bodies["empty"], bodies["rendezvous"]

    print(f"CPU {llvm.get_host_cpu_name()}, pool of {threads} threads (caller included), "
          f"{args.tasks} tasks per launch, median of {args.launches} launches")
    rows = [(f"tl_parallel_launch, {threads} threads, empty tasks",
             native_launch_us(driver, empty, args.tasks, args.launches))]
    if 2 <= args.tasks <= threads:  # a rendezvous of more tasks than threads would never meet
        rows += [(f"tl_parallel_launch, {threads} threads, rendezvous (one task per thread)",
                  native_launch_us(driver, rendezvous, args.tasks, args.launches)),
                 (f"tl_parallel_launch, {threads} threads, rendezvous, workers asleep (5 ms idle)",
                  native_cold_launch_us(driver, rendezvous, args.tasks, 200, 5e-3))]
    threadpool.set_num_threads(1)
    rows.append(("tl_parallel_launch, 1 thread (serial floor), empty tasks",
                 native_launch_us(driver, empty, args.tasks, args.launches)))
    threadpool.set_num_threads(threads)
    rows.append((f"ThreadPoolExecutor({threads}) submit + wait",
                 executor_us(threads, args.tasks, args.launches)))
    width = max(len(name) for name, _ in rows)
    for name, microseconds in rows:
        print(f"  {name:<{width}}  {microseconds:9.2f} us/launch")


if __name__ == "__main__":
    main()
