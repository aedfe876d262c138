"""Workloads the task tests import by module path (also from a subprocess)."""
import tensorlang as tl
from autotune.task import workload


@workload
def matmul(m, n, k, dtype="float32"):
    A = tl.placeholder((m, k), dtype, name="A")
    B = tl.placeholder((k, n), dtype, name="B")
    r = tl.reduce_axis((0, k), name="r")
    C = tl.compute((m, n), lambda i, j: tl.sum(A[i, r] * B[r, j], axis=r), name="C")
    return [A, B, C]


@workload
def matmul_renamed(rows, cols, depth, dtype="float32"):
    """The same computation as ``matmul``: other function, tensor and variable names."""
    X = tl.placeholder((rows, depth), dtype, name="lhs")
    Y = tl.placeholder((depth, cols), dtype, name="rhs")
    kk = tl.reduce_axis((0, depth), name="kk")
    Z = tl.compute((rows, cols), lambda a, b: tl.sum(X[a, kk] * Y[kk, b], axis=kk), name="out")
    return (X, Y, Z)


@workload
def scale(n, factor=2.0):
    A = tl.placeholder((n,), name="A")
    return [A, tl.compute((n,), lambda i: A[i] * factor, name="B")]
