"""The BLAS extern: tl.extern stages calling sgemm / dgemm through JIT-compiled shims."""
import ctypes
import itertools

import llvmlite.binding as llvm
import numpy as np
import pytest

import tensorlang as tl
from codegen.llvm import blas as llvm_blas
from tensorlang.errors import DTypeError, ShapeError, UnsupportedOpError
from tensorlang.ops import blas

RNG = np.random.default_rng(7)


def _rand(shape, dtype="float32"):
    return RNG.standard_normal(shape).astype(dtype)


def _matmul_function(m, n, k, transpose_a, transpose_b, dtype="float32"):
    A = tl.placeholder((k, m) if transpose_a else (m, k), dtype=dtype, name="A")
    B = tl.placeholder((n, k) if transpose_b else (k, n), dtype=dtype, name="B")
    C = blas.matmul(A, B, transpose_a, transpose_b)
    return tl.build(tl.create_schedule(C), [A, B, C]), A, B, C


@pytest.mark.parametrize("transpose_a,transpose_b", list(itertools.product([False, True],
                                                                           repeat=2)))
def test_matmul_all_transposes_match_numpy(transpose_a, transpose_b):
    m, n, k = 37, 29, 53
    f, A, B, _ = _matmul_function(m, n, k, transpose_a, transpose_b)
    a, b = _rand(A.shape), _rand(B.shape)
    c = np.full((m, n), np.nan, "float32")  # beta = 0: what was there must not leak through
    f(a, b, c)
    expected = (a.T if transpose_a else a) @ (b.T if transpose_b else b)
    np.testing.assert_allclose(c, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("transpose_a,transpose_b", list(itertools.product([False, True],
                                                                           repeat=2)))
def test_matmul_float64_calls_dgemm(transpose_a, transpose_b):
    m, n, k = 31, 17, 23
    f, A, B, _ = _matmul_function(m, n, k, transpose_a, transpose_b, "float64")
    a, b = _rand(A.shape, "float64"), _rand(B.shape, "float64")
    c = np.empty((m, n))
    f(a, b, c)
    expected = (a.T if transpose_a else a) @ (b.T if transpose_b else b)
    np.testing.assert_allclose(c, expected, rtol=1e-12, atol=1e-12)
    assert "call void @tl_blas_dgemm" in f.get_source("ll")


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (7, 13, 5), (1, 64, 3), (65, 1, 1)])
def test_odd_sizes(m, n, k):
    f, A, B, _ = _matmul_function(m, n, k, False, False)
    a, b = _rand(A.shape), _rand(B.shape)
    c = np.empty((m, n), "float32")
    f(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-6)


def test_dense_with_bias_stage():
    m, n, k = 48, 40, 72
    X = tl.placeholder((m, k), name="X")
    W = tl.placeholder((n, k), name="W")
    bias = tl.placeholder((n,), name="bias")
    Y = blas.dense(X, W, bias)
    assert Y.op.tag == "elemwise" and isinstance(Y.op.input_tensors[0].op, tl.tensor.ExternOp)
    s = tl.create_schedule(Y)
    s[Y].vectorize(s[Y].op.axis[1])  # the bias stage schedules like any elementwise stage
    f = tl.build(s, [X, W, bias, Y])
    x, w, b = _rand((m, k)), _rand((n, k)), _rand((n,))
    y = np.empty((m, n), "float32")
    f(x, w, b, y)
    np.testing.assert_allclose(y, x @ w.T + b, rtol=1e-5, atol=1e-5)


def test_dense_without_bias_is_the_extern_stage():
    X = tl.placeholder((5, 6), name="X")
    W = tl.placeholder((3, 6), name="W")
    Y = blas.dense(X, W)
    f = tl.build(tl.create_schedule(Y), [X, W, Y])
    x, w = _rand((5, 6)), _rand((3, 6))
    y = np.empty((5, 3), "float32")
    f(x, w, y)
    np.testing.assert_allclose(y, x @ w.T, rtol=1e-5, atol=1e-6)


def test_symbolic_batch_runs_at_several_sizes():
    m = tl.var("m")
    n, k = 24, 40
    X = tl.placeholder((m, k), name="X")
    W = tl.placeholder((n, k), name="W")
    bias = tl.placeholder((n,), name="bias")
    Y = blas.dense(X, W, bias)
    f = tl.build(tl.create_schedule(Y), [X, W, bias, Y])
    w, b = _rand((n, k)), _rand((n,))
    for rows in (1, 3, 64, 129):
        x = _rand((rows, k))
        y = np.empty((rows, n), "float32")
        f(x, w, b, y)
        np.testing.assert_allclose(y, x @ w.T + b, rtol=1e-5, atol=1e-5)


def test_fully_symbolic_matmul():
    m, n, k = tl.var("m"), tl.var("n"), tl.var("k")
    A = tl.placeholder((k, m), name="A")
    B = tl.placeholder((k, n), name="B")
    C = blas.matmul(A, B, transpose_a=True)
    f = tl.build(tl.create_schedule(C), [A, B, C])
    for rows, cols, inner in ((2, 3, 4), (33, 9, 17)):
        a, b = _rand((inner, rows)), _rand((inner, cols))
        c = np.empty((rows, cols), "float32")
        f(a, b, c)
        np.testing.assert_allclose(c, a.T @ b, rtol=1e-5, atol=1e-5)


def test_generated_code_calls_the_shim_directly():
    f, *_ = _matmul_function(8, 8, 8, False, True)
    ll = f.get_source("ll")
    assert "declare void @tl_blas_sgemm(i32, i32, i32, i32, i32, float, ptr, i32, ptr, i32, " \
           "float, ptr, i32)" in ll
    assert "call void @tl_blas_sgemm(i32 0, i32 1, i32 8, i32 8, i32 8, float" in ll


def test_int32_inputs_are_refused_naming_the_tensor():
    A = tl.placeholder((4, 4), dtype="int32", name="Ai")
    B = tl.placeholder((4, 4), dtype="int32", name="Bi")
    with pytest.raises(DTypeError, match=r"matmul_blas: A Ai has dtype int32.*float32 and "
                                         r"float64"):
        blas.matmul(A, B)


def test_mixed_dtypes_are_refused():
    A = tl.placeholder((4, 4), dtype="float32", name="A")
    B = tl.placeholder((4, 4), dtype="float64", name="B")
    with pytest.raises(DTypeError, match=r"A A \(float32\) and B B \(float64\)"):
        blas.matmul(A, B)


def test_shape_errors_name_the_tensors():
    X = tl.placeholder((4, 5), name="X")
    W = tl.placeholder((3, 6), name="W")
    with pytest.raises(ShapeError, match=r"dense_blas: the inner extents differ: X \(4, 5\) and "
                                         r"W \(3, 6\) \(transposed\)"):
        blas.dense(X, W)
    with pytest.raises(ShapeError, match=r"dense_blas: bias b \(4,\) does not match"):
        blas.dense(X, tl.placeholder((3, 5), name="W"), tl.placeholder((4,), name="b"))
    with pytest.raises(ShapeError, match=r"A V must have 2 dimensions"):
        blas.matmul(tl.placeholder((4,), name="V"), W)


def test_blas_shim_inside_a_parallel_loop_is_refused():
    with pytest.raises(UnsupportedOpError, match=r"'tl_blas_sgemm' is called inside a parallel "
                                                 r"loop"):
        llvm_blas.ensure_symbol("tl_blas_sgemm", in_parallel=True)
    llvm_blas.ensure_symbol("expf", in_parallel=True)  # other externs are not our business


def test_shims_are_registered_for_both_dtypes():
    assert set(blas.GEMM_FUNCTIONS.values()) == set(llvm_blas.SHIMS)
    for name in llvm_blas.SHIMS:
        llvm_blas.ensure_symbol(name)
        assert llvm.address_of_symbol(name) == llvm_blas.shim_address(name) != 0


def test_shim_called_directly_with_strides_and_beta():
    # the C ABI itself: row strides wider than the matrices, alpha and beta honoured
    float_p = ctypes.c_void_p
    sgemm = ctypes.CFUNCTYPE(None, *[ctypes.c_int32] * 5, ctypes.c_float, float_p,
                             ctypes.c_int32, float_p, ctypes.c_int32, ctypes.c_float, float_p,
                             ctypes.c_int32)(llvm_blas.shim_address("tl_blas_sgemm"))
    a_full, b_full, c_full = _rand((6, 10)), _rand((4, 9)), _rand((6, 8))
    a, b, c = a_full[:, :4], b_full[:, :5], c_full[:, :5]
    expected = 2.0 * a @ b + 0.5 * c
    sgemm(0, 0, 6, 5, 4, 2.0, a_full.ctypes.data, 10, b_full.ctypes.data, 9, 0.5,
          c_full.ctypes.data, 8)
    np.testing.assert_allclose(c_full[:, :5], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m,n", [(37, 5), (5, 37), (16, 16), (3, 2)])
def test_part_shim_bands_assemble_the_whole_product(m, n):
    # tl_blas_sgemm_part: band `part` of `parts` (rows when m >= n, else columns), strided
    ptr = ctypes.c_void_p
    part = ctypes.CFUNCTYPE(None, *[ctypes.c_int32] * 5, ctypes.c_float, ptr, ctypes.c_int32,
                            ptr, ctypes.c_int32, ctypes.c_float, ptr, ctypes.c_int32,
                            ctypes.c_int32, ctypes.c_int32)(
        llvm_blas.shim_address("tl_blas_sgemm_part"))
    k = 7
    a_full, b_full = _rand((m, k + 3)), _rand((k, n + 2))
    c_full = np.full((m, n + 4), 9.0, np.float32)
    parts = 4  # more bands than rows or columns in the small cases: empty bands do nothing
    for p in range(parts):
        part(0, 0, m, n, k, 1.0, a_full.ctypes.data, k + 3, b_full.ctypes.data, n + 2, 0.0,
             c_full.ctypes.data, n + 4, p, parts)
    np.testing.assert_allclose(c_full[:, :n], a_full[:, :k] @ b_full[:, :n], rtol=1e-5,
                               atol=1e-5)
    assert (c_full[:, n:] == 9.0).all()  # nothing written past the columns of C
    llvm_blas.ensure_symbol("tl_blas_sgemm_part", in_parallel=True)  # made for parallel loops


def test_blas_stage_computed_inside_a_parallel_loop_is_refused_at_build():
    X = tl.placeholder((8, 16), name="X")
    W = tl.placeholder((4, 16), name="W")
    b = tl.placeholder((4,), name="b")
    Y = blas.dense(X, W, b)
    s = tl.create_schedule(Y)
    i = s[Y].op.axis[0]
    s[Y].parallel(i)
    s[Y.op.input_tensors[0]].compute_at(s[Y], i)
    with pytest.raises(UnsupportedOpError, match=r"'tl_blas_sgemm' is called inside a parallel"):
        tl.build(s, [X, W, b, Y])


def test_group_shim_computes_one_group_of_a_grouped_product():
    # tl_blas_sgemm_group: the part shim on group g, A / B / C moved on by g * their strides
    ptr, i32, i64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64
    group = ctypes.CFUNCTYPE(None, *[i32] * 5, ctypes.c_float, ptr, i32, ptr, i32,
                             ctypes.c_float, ptr, i32, i32, i32, i32, i64, i64, i64)(
        llvm_blas.shim_address("tl_blas_sgemm_group"))
    groups, m, n, k = 3, 5, 7, 4
    a, b = _rand((groups, m, k)), _rand((groups, k, n))
    c = np.full((groups, m, n), 9.0, np.float32)
    parts = 2
    for g in range(groups):
        for p in range(parts):
            group(0, 0, m, n, k, 1.0, a.ctypes.data, k, b.ctypes.data, n, 0.0, c.ctypes.data, n,
                  p, parts, g, m * k, k * n, m * n)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)
    llvm_blas.ensure_symbol("tl_blas_sgemm_group", in_parallel=True)  # made for parallel loops
