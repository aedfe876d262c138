"""Workloads the measurement tests import by module path (also from worker processes).

Besides a matmul, three deliberately broken kernels: ``aborts`` calls ``abort()`` (the process
dies by SIGABRT), ``hangs`` spins through ~2**62 calls to ``sched_yield`` and ``random_values``
stores ``rand()``, so no two runs (the reference and the candidate) agree.
"""
import ctypes.util
import os

import llvmlite.binding as llvm

import tensorlang as tl
from autotune.task import workload
from tensorlang.expr import var
from tensorlang.ir.stmt import BufferStore, Evaluate, For

# The JIT resolves extern calls in the symbols LLVM can see: make libc's (abort, rand, ...) visible.
llvm.load_library_permanently(ctypes.util.find_library("c"))


@workload
def matmul(m, n, k):
    A = tl.placeholder((m, k), name="A")
    B = tl.placeholder((k, n), name="B")
    r = tl.reduce_axis((0, k), name="r")
    C = tl.compute((m, n), lambda i, j: tl.sum(A[i, r] * B[r, j], axis=r), name="C")
    return [A, B, C]


@workload
def aborts(n):
    A = tl.placeholder((n,), name="A")
    E = tl.extern((n,), [A], lambda ins, outs: Evaluate(tl.call_extern("void", "abort")),
                  name="E")
    return [A, E]


@workload
def hangs(n):
    def body(ins, outs):
        i, j = var("i"), var("j")
        spin = Evaluate(tl.call_extern("int32", "sched_yield"))
        big = tl.const(2 ** 31 - 1)
        return For(i, tl.const(0), big, "serial", For(j, tl.const(0), big, "serial", spin))

    A = tl.placeholder((n,), name="A")
    return [A, tl.extern((n,), [A], body, name="E")]


@workload
def random_values(n):
    def body(ins, outs):
        i = var("i")
        value = tl.cast(tl.call_extern("int32", "rand"), "float32")
        return For(i, tl.const(0), tl.const(n), "serial", BufferStore(outs[0], value, (i,)))

    A = tl.placeholder((n,), name="A")
    return [A, tl.extern((n,), [A], body, name="E")]


@workload
def dies_when_called(n):
    """Kills the process that calls it: tests only name it in a task dict for a worker."""
    os.abort()
