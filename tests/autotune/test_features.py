"""Program features of lowered loop IR: layout, meaning of the main features, speed."""
import time

import numpy as np
import pytest

import tensorlang as tl
from autotune import features
from autotune.features import FEATURE_NAMES, N_FEATURES, POOLED_LENGTH


def column(name):
    return FEATURE_NAMES.index(name)


def _matmul(n=64, transposed_b=False):
    A = tl.placeholder((n, n), name="A")
    B = tl.placeholder((n, n), name="B")
    r = tl.reduce_axis((0, n), name="r")
    if transposed_b:
        C = tl.compute((n, n), lambda i, j: tl.sum(A[i, r] * B[j, r], axis=r), name="C")
    else:
        C = tl.compute((n, n), lambda i, j: tl.sum(A[i, r] * B[r, j], axis=r), name="C")
    return A, B, C


def tiled_matmul(vectorize=True, parallel=True):
    A, B, C = _matmul()
    s = tl.create_schedule(C)
    CC = s.cache_write(C, "local")
    i, j = s[C].op.axis
    io, jo, ii, ji = s[C].tile(i, j, 16, 16)
    if parallel:
        s[C].parallel(io)
    s[CC].compute_at(s[C], jo)
    ci, cj = s[CC].op.axis
    (rk,) = s[CC].op.reduce_axis
    ko, ki = s[CC].split(rk, 4)
    s[CC].reorder(ko, ci, ki, cj)
    if vectorize:
        s[CC].vectorize(cj)
        s[C].vectorize(ji)
    s[CC].unroll(ki)
    return tl.lower(s, [A, B, C])


def test_shape_dtype_and_determinism():
    func = tiled_matmul()
    rows = features.extract(func)
    assert rows.dtype == np.float32 and rows.shape == (3, N_FEATURES)  # init, update, copy out
    assert np.isfinite(rows).all()
    np.testing.assert_array_equal(rows, features.extract(tiled_matmul()))
    pooled = features.extract_pooled(func)
    assert pooled.shape == (POOLED_LENGTH,) and pooled[-1] == 3
    assert len(set(FEATURE_NAMES)) == N_FEATURES


def test_vector_width():
    lanes = column("vector_lanes")
    assert features.extract(tiled_matmul(vectorize=True))[:, lanes].max() > 1
    assert features.extract(tiled_matmul(vectorize=False))[:, lanes].max() == 1  # log2(1 + 1)
    vectorized = features.extract(tiled_matmul(vectorize=True))
    assert vectorized[:, column("innermost_vectorized")].max() == 1


def test_parallel_loops_are_counted():
    with_parallel = features.extract(tiled_matmul(parallel=True))
    without = features.extract(tiled_matmul(parallel=False))
    assert (with_parallel[:, column("num_parallel")] == 1).all()
    assert (without[:, column("num_parallel")] == 0).all()
    assert with_parallel[0, column("parallel_product")] == pytest.approx(np.log2(1 + 4))


def test_float_arithmetic_counts_the_multiply_adds():
    A, B, C = _matmul(16)
    rows = features.extract(tl.lower(tl.create_schedule(C), [A, B, C]))
    update = rows[np.argmax(rows[:, column("float_mul")])]
    flops = np.log2(1 + 16 ** 3)
    for name in ("float_mul", "float_addsub", "float_fma"):
        assert update[column(name)] == pytest.approx(flops)
    assert update[column("float_div")] == 0 and update[column("float_math")] == 0


def _b_strides(transposed_b):
    A, B, C = _matmul(32, transposed_b)
    rows = features.extract(tl.lower(tl.create_schedule(C), [A, B, C]))
    update = rows[np.argmax(rows[:, column("float_mul")])]
    # The innermost strides of the read-only buffers (A and B), whatever their slots.
    strides = []
    for k in range(features.MAX_BUFFERS):
        if update[column(f"buffer{k}_present")] and not update[column(f"buffer{k}_write")]:
            strides.append(round(2 ** update[column(f"buffer{k}_stride_innermost")] - 1))
    return sorted(strides)


def test_strides_tell_row_major_from_column_major_access():
    # Innermost loop is the reduction r: A[i, r] has stride 1; B[r, j] stride 32; B[j, r] 1.
    assert _b_strides(transposed_b=False) == [1, 32]
    assert _b_strides(transposed_b=True) == [1, 1]


def test_reuse_and_unique_bytes():
    A, B, C = _matmul(32)
    rows = features.extract(tl.lower(tl.create_schedule(C), [A, B, C]))
    update = rows[np.argmax(rows[:, column("float_mul")])]
    for k in range(3):
        unique = 2 ** update[column(f"buffer{k}_bytes_unique")] - 1
        assert unique == pytest.approx(32 * 32 * 4)  # every matrix is touched whole
        accesses = 2 ** update[column(f"buffer{k}_accesses")] - 1  # C is read and written
        assert 2 ** update[column(f"buffer{k}_reuse")] - 1 == pytest.approx(32 * accesses, rel=0.01)


def test_function_without_stores_gives_no_rows():
    empty = tiled_matmul().with_body(tl.ir.stmt.Evaluate(tl.const(0)))
    assert features.extract(empty).shape == (0, N_FEATURES)
    assert features.extract_pooled(empty).shape == (POOLED_LENGTH,)


def test_extraction_is_fast():
    func = tiled_matmul()
    start = time.perf_counter()
    for _ in range(200):
        features.extract_pooled(func)
    seconds = time.perf_counter() - start
    print(f"\n200 extractions of a tiled matmul in {seconds:.3f} s")
    assert seconds < 6.0
