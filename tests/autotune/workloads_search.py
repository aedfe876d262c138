"""Workloads the search and tune tests import by module path (also from worker processes)."""
import tensorlang as tl
from autotune.task import workload
from tensorlang.ir.stmt import Evaluate


@workload
def matmul(m, n, k):
    A = tl.placeholder((m, k), name="A")
    B = tl.placeholder((k, n), name="B")
    r = tl.reduce_axis((0, k), name="r")
    C = tl.compute((m, n), lambda i, j: tl.sum(A[i, r] * B[r, j], axis=r), name="C")
    return [A, B, C]


@workload
def dense_relu(m, n, k):
    A = tl.placeholder((m, k), name="A")
    W = tl.placeholder((n, k), name="W")
    r = tl.reduce_axis((0, k), name="r")
    D = tl.compute((m, n), lambda i, j: tl.sum(A[i, r] * W[j, r], axis=r), name="D")
    R = tl.compute((m, n), lambda i, j: tl.max(D[i, j], 0.0), name="R")
    return [A, W, R]


@workload
def never_builds(n):
    """Lowers, but every build fails: it calls a function no library defines."""
    A = tl.placeholder((n,), name="A")
    E = tl.extern((n,), [A], lambda ins, outs: Evaluate(
        tl.call_extern("void", "tensorlang_test_no_such_function")), name="E")
    return [A, E]
