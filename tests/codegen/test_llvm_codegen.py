"""LLVM CPU code generation on hand-built, flattened PrimFuncs, checked against NumPy."""
from __future__ import annotations

import ctypes
import re

import llvmlite.binding as llvm
import numpy as np
import pytest

import codegen
from codegen.llvm import parse_target
from tensorlang import expr as E
from tensorlang.errors import UnsupportedOpError, UserError
from tensorlang.ir import stmt as S
from tensorlang.ir.buffer import decl_buffer
from tensorlang.ir.function import PrimFunc

RNG = np.random.default_rng(0)
HOST_HAS_AVX = dict(llvm.get_host_cpu_features()).get("avx", False)


def i32(v: int) -> E.IntImm:
    return E.IntImm(v, "int32")


def f32(v: float) -> E.FloatImm:
    return E.FloatImm(v, "float32")


def vec(dtype: str, lanes: int) -> str:
    return f"{dtype}x{lanes}"


def ramp(base, lanes: int) -> E.Ramp:
    return E.Ramp(base, i32(1), lanes, vec("int32", lanes))


def store_loop(out, value_of, extent, kind="serial", name="i"):
    """for i in range(extent): out[i] = value_of(i)."""
    i = E.Var(name)
    return S.For(i, i32(0), extent, kind, S.BufferStore(out, value_of(i), (i,)))


def elementwise_add(n=None, kind="serial", dtype="float32"):
    n = n if n is not None else E.Var("n")
    A, B, C = (decl_buffer((n,), dtype, name) for name in "ABC")
    body = store_loop(C, lambda i: E.Add(A.vload((i,)), B.vload((i,)), dtype), n, kind)
    return PrimFunc(f"add_{kind}_{dtype}", (A, B, C), body)


def test_serial_elementwise_add():
    f = codegen.build(elementwise_add())
    a, b = RNG.random(1000, np.float32), RNG.random(1000, np.float32)
    c = np.empty_like(a)
    f(a, b, c)
    np.testing.assert_array_equal(c, a + b)


def test_symbolic_shape_with_several_sizes():
    f = codegen.build(elementwise_add())
    for size in (0, 1, 7, 64, 1001):
        a, b = RNG.random(size, np.float32), RNG.random(size, np.float32)
        c = np.full_like(a, -1)
        f(a, b, c)
        np.testing.assert_array_equal(c, a + b)


def vectorized_scale_add(N=1024, lanes=8):
    A, B, C = (decl_buffer((N,), "float32", name) for name in "ABC")
    io = E.Var("io")
    idx = ramp(E.Mul(io, i32(lanes), "int32"), lanes)
    vtype = vec("float32", lanes)
    value = E.Add(A.vload((idx,), vtype),
                  E.Mul(B.vload((idx,), vtype), E.Broadcast(f32(2.0), lanes, vtype), vtype), vtype)
    return PrimFunc("vector_add", (A, B, C),
                    S.For(io, i32(0), i32(N // lanes), "serial", S.BufferStore(C, value, (idx,))))


def test_vectorized_ramp_broadcast():
    f = codegen.build(vectorized_scale_add())
    a, b = RNG.random(1024, np.float32), RNG.random(1024, np.float32)
    c = np.empty_like(a)
    f(a, b, c)
    np.testing.assert_allclose(c, a + 2 * b, rtol=1e-6)
    if HOST_HAS_AVX:
        assert "<8 x float>" in f.get_source()


def test_vectorized_loop_kind_fallback_has_metadata():
    f = codegen.build(elementwise_add(kind="vectorized"))
    a, b = RNG.random(77, np.float32), RNG.random(77, np.float32)
    c = np.empty_like(a)
    f(a, b, c)
    np.testing.assert_array_equal(c, a + b)


def test_gather_and_scatter_with_stride():
    N = 64
    A, C = decl_buffer((N * 2,), "float32", "A"), decl_buffer((N * 2,), "float32", "C")
    io = E.Var("io")
    strided = E.Ramp(E.Mul(io, i32(8), "int32"), i32(2), 4, "int32x4")
    body = S.For(io, i32(0), i32(N * 2 // 8), "serial",
                 S.BufferStore(C, E.Add(A.vload((strided,), "float32x4"),
                                        E.Broadcast(f32(1.0), 4, "float32x4"), "float32x4"),
                               (strided,)))
    f = codegen.build(PrimFunc("strided", (A, C), body))
    a = RNG.random(N * 2, np.float32)
    c = np.zeros_like(a)
    f(a, c)
    np.testing.assert_array_equal(c[0::2], a[0::2] + 1)
    np.testing.assert_array_equal(c[1::2], 0)


@pytest.mark.parametrize("threads", [1, 2, 4, 7])
def test_parallel_loop_matches_numpy(threads):
    f = codegen.build(elementwise_add(kind="parallel"), f"llvm -num-threads={threads}")
    for size in (0, 1, 3, 1000, 4099):
        a, b = RNG.random(size, np.float32), RNG.random(size, np.float32)
        c = np.full_like(a, np.nan)
        f(a, b, c)
        np.testing.assert_array_equal(c, a + b)


def test_parallel_loop_uses_the_thread_pool():
    from codegen.llvm.threadpool import get_pool
    f = codegen.build(elementwise_add(kind="parallel"), "llvm -num-threads=2")
    assert "call void %" in f.get_source() or "tail call void %" in f.get_source()
    engine = f._keepalive
    slot = engine.get_global_value_address(f"{f.entry_name}__parallel_launch")
    assert ctypes.c_void_p.from_address(slot).value == get_pool().launch_address


def test_nested_parallel_runs_serially_inside():
    M, N = 37, 19
    A, C = decl_buffer((M * N,), "float32", "A"), decl_buffer((M * N,), "float32", "C")
    i, j = E.Var("i"), E.Var("j")
    index = E.Add(E.Mul(i, i32(N), "int32"), j, "int32")
    inner = S.For(j, i32(0), i32(N), "parallel",
                  S.BufferStore(C, E.Mul(A.vload((index,)), f32(3.0), "float32"), (index,)))
    f = codegen.build(PrimFunc("nested", (A, C), S.For(i, i32(0), i32(M), "parallel", inner)),
                      "llvm -num-threads=3")
    a = RNG.random(M * N, np.float32)
    c = np.empty_like(a)
    f(a, c)
    np.testing.assert_allclose(c, a * 3, rtol=1e-6)


def matmul(n=None, m=16, k=32, parallel=False):
    n = n if n is not None else E.Var("n")
    A, B = decl_buffer((n, k), "float32", "A"), decl_buffer((k, m), "float32", "B")
    C = decl_buffer((n, m), "float32", "C")
    acc = decl_buffer((1,), "float32", "acc", scope="local")
    i, j, r = E.Var("i"), E.Var("j"), E.Var("r")
    a = A.vload((E.Add(E.Mul(i, i32(k), "int32"), r, "int32"),))
    b = B.vload((E.Add(E.Mul(r, i32(m), "int32"), j, "int32"),))
    update = S.BufferStore(acc, E.Add(acc.vload((i32(0),)), E.Mul(a, b, "float32"), "float32"),
                           (i32(0),))
    cell = S.Allocate(acc, S.seq(
        S.BufferStore(acc, f32(0.0), (i32(0),)),
        S.For(r, i32(0), i32(k), "serial", update),
        S.BufferStore(C, acc.vload((i32(0),)), (E.Add(E.Mul(i, i32(m), "int32"), j, "int32"),))))
    body = S.For(i, i32(0), n, "parallel" if parallel else "serial",
                 S.For(j, i32(0), i32(m), "serial", cell))
    return PrimFunc("matmul", (A, B, C), body)


@pytest.mark.parametrize("parallel", [False, True])
def test_matmul_with_local_accumulator(parallel):
    f = codegen.build(matmul(parallel=parallel), "llvm -num-threads=2")
    a, b = RNG.random((20, 32), np.float32), RNG.random((32, 16), np.float32)
    c = np.empty((20, 16), np.float32)
    f(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5)
    assert not re.search(r"alloca \[\d+ x float\]", f.get_source())  # promoted to registers


def test_heap_allocation_with_symbolic_size():
    n = E.Var("n")
    A, C = decl_buffer((n,), "int32", "A"), decl_buffer((n,), "int32", "C")
    tmp = decl_buffer((n,), "int32", "tmp", scope="global")
    body = S.Allocate(tmp, S.seq(
        store_loop(tmp, lambda i: E.Mul(A.vload((i,)), i32(2), "int32"), n),
        store_loop(C, lambda i: E.Add(tmp.vload((i,)), i32(1), "int32"), n, name="j")))
    f = codegen.build(PrimFunc("twice_plus_one", (A, C), body))
    assert "aligned_alloc" in f.get_source()
    for size in (0, 5, 3000):
        a = RNG.integers(-100, 100, size).astype(np.int32)
        c = np.empty_like(a)
        f(a, c)
        np.testing.assert_array_equal(c, a * 2 + 1)


@pytest.mark.parametrize("dtype", ["int32", "int64", "int8"])
def test_integer_division_flavours_on_negative_numbers(dtype):
    n = E.Var("n")
    X, Y = decl_buffer((n,), dtype, "X"), decl_buffer((n,), dtype, "Y")
    outs = [decl_buffer((n,), dtype, name) for name in ("FD", "FM", "TD", "TM")]
    ops = [E.FloorDiv, E.FloorMod, E.Div, E.Mod]
    i = E.Var("i")
    body = S.For(i, i32(0), n, "serial", S.seq(*[
        S.BufferStore(out, op(X.vload((i,)), Y.vload((i,)), dtype), (i,))
        for out, op in zip(outs, ops)]))
    f = codegen.build(PrimFunc(f"divs_{dtype}", (X, Y, *outs), body))
    x = RNG.integers(-100, 100, 500).astype(dtype)
    y = RNG.integers(-9, 10, 500).astype(dtype)
    y[y == 0] = 3
    y[:4] = [0, -1, 0, -1]
    x[:4] = [5, np.iinfo(dtype).min, -7, 8]
    results = [np.empty_like(x) for _ in outs]
    f(x, y, *results)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(results[0], np.floor_divide(x, y))
        np.testing.assert_array_equal(results[1], np.remainder(x, y))
        trunc = np.where(y == 0, 0, np.fix(x.astype(np.float64) / np.where(y == 0, 1, y)))
        np.testing.assert_array_equal(results[2][4:], trunc[4:].astype(dtype))
        np.testing.assert_array_equal(results[3][4:], np.fmod(x, y)[4:])
    assert results[2][0] == 0 and results[3][0] == 0  # x / 0 gives 0, like NumPy


def test_floordiv_by_constant():
    n = E.Var("n")
    X, Q, R = (decl_buffer((n,), "int32", name) for name in ("X", "Q", "R"))
    i = E.Var("i")
    body = S.For(i, i32(0), n, "serial", S.seq(
        S.BufferStore(Q, E.FloorDiv(X.vload((i,)), i32(4), "int32"), (i,)),
        S.BufferStore(R, E.FloorMod(X.vload((i,)), i32(-3), "int32"), (i,))))
    f = codegen.build(PrimFunc("fdiv_const", (X, Q, R), body))
    x = np.arange(-50, 50, dtype=np.int32)
    q, r = np.empty_like(x), np.empty_like(x)
    f(x, q, r)
    np.testing.assert_array_equal(q, x // 4)
    np.testing.assert_array_equal(r, x % -3)


def test_if_then_else_reads_only_the_taken_branch():
    n = E.Var("n")
    A, C = decl_buffer((n,), "float32", "A"), decl_buffer((n,), "float32", "C")

    def value(i):
        inside = E.LT(i, i32(10), "bool")
        far_away = E.Sub(i, i32(1_000_000_000), "int32")  # would fault if read
        return E.Call("if_then_else", (inside, A.vload((i,)), A.vload((far_away,))), "float32")

    # The outer guard is itself an if_then_else: a Select evaluates both of its arms, so under
    # a Select the inner read of A[i - 10^9] would really happen for i >= 10 (LLVM may then
    # sink both loads into one load of a selected address, as it does with AVX-512).
    f = codegen.build(PrimFunc("pad", (A, C), store_loop(C, lambda i: E.Call(
        "if_then_else", (E.LT(i, i32(10), "bool"), value(i), f32(-1.0)), "float32"), n)))
    a = RNG.random(100, np.float32)
    c = np.empty_like(a)
    f(a, c)
    np.testing.assert_array_equal(c, np.where(np.arange(100) < 10, a, -1))


def test_vector_if_then_else_is_lazy_per_lane():
    N = 16
    A, C = decl_buffer((N,), "float32", "A"), decl_buffer((N,), "float32", "C")
    io = E.Var("io")
    idx = ramp(E.Mul(io, i32(8), "int32"), 8)
    inside = E.LT(idx, E.Broadcast(i32(5), 8, "int32x8"), "boolx8")
    far = E.Sub(idx, E.Broadcast(i32(1_000_000_000), 8, "int32x8"), "int32x8")
    value = E.Call("if_then_else", (inside, A.vload((idx,), "float32x8"),
                                    A.vload((far,), "float32x8")), "float32x8")
    lazy = E.Call("if_then_else", (inside, value, E.Broadcast(f32(0.0), 8, "float32x8")),
                  "float32x8")
    f = codegen.build(PrimFunc("vpad", (A, C), S.For(io, i32(0), i32(N // 8), "serial",
                                                     S.BufferStore(C, lazy, (idx,)))))
    a = RNG.random(N, np.float32)
    c = np.empty_like(a)
    f(a, c)
    np.testing.assert_array_equal(c, np.where(np.arange(N) < 5, a, 0))


def test_float16_elementwise():
    f = codegen.build(elementwise_add(dtype="float16"))
    a, b = RNG.random(300).astype(np.float16), RNG.random(300).astype(np.float16)
    c = np.empty_like(a)
    f(a, b, c)
    np.testing.assert_array_equal(c, a + b)


def test_bool_loads_and_stores():
    n = E.Var("n")
    X = decl_buffer((n,), "float32", "X")
    M, OUT = decl_buffer((n,), "bool", "M"), decl_buffer((n,), "bool", "OUT")
    body = store_loop(OUT, lambda i: E.And(M.vload((i,)), E.GT(X.vload((i,)), f32(0.5), "bool"),
                                           "bool"), n)
    f = codegen.build(PrimFunc("mask", (X, M, OUT), body))
    x, m = RNG.random(200, np.float32), RNG.random(200) > 0.5
    out = np.zeros(200, bool)
    f(x, m, out)
    np.testing.assert_array_equal(out, m & (x > 0.5))
    assert set(np.unique(out.view(np.uint8))) <= {0, 1}


def test_int8_stores_wrap_like_numpy():
    n = E.Var("n")
    X, Y = decl_buffer((n,), "int8", "X"), decl_buffer((n,), "int8", "Y")
    body = store_loop(Y, lambda i: E.Add(E.Mul(X.vload((i,)), E.IntImm(3, "int8"), "int8"),
                                         E.IntImm(1, "int8"), "int8"), n)
    f = codegen.build(PrimFunc("int8_ops", (X, Y), body))
    x = np.arange(-128, 128, dtype=np.int8)
    y = np.empty_like(x)
    f(x, y)
    np.testing.assert_array_equal(y, (x * np.int8(3) + np.int8(1)).astype(np.int8))


def test_casts_between_dtypes():
    n = E.Var("n")
    X = decl_buffer((n,), "float32", "X")
    outs = {"int32": None, "uint8": None, "float64": None, "bool": None, "float16": None}
    bufs = [decl_buffer((n,), dt, f"O_{dt}") for dt in outs]
    i = E.Var("i")
    body = S.For(i, i32(0), n, "serial", S.seq(*[
        S.BufferStore(b, E.Cast(X.vload((i,)), b.dtype), (i,)) for b in bufs]))
    f = codegen.build(PrimFunc("casts", (X, *bufs), body, attrs=(("output_indices", (1, 2, 3, 4, 5)),)))
    x = np.array([-2.7, -0.0, 0.0, 0.5, 3.9, 200.0, np.nan], np.float32)
    results = [np.empty(len(x), b.dtype) for b in bufs]
    f(x, *results)
    np.testing.assert_array_equal(results[0][:-1], x[:-1].astype(np.int32))
    np.testing.assert_array_equal(results[1][3:6], x[3:6].astype(np.uint8))
    np.testing.assert_array_equal(results[2], x.astype(np.float64))
    np.testing.assert_array_equal(results[3], x.astype(bool))
    np.testing.assert_array_equal(results[4], x.astype(np.float16))


def test_min_max_propagate_nan():
    n = E.Var("n")
    X, Y, LO, HI = (decl_buffer((n,), "float32", name) for name in ("X", "Y", "LO", "HI"))
    i = E.Var("i")
    body = S.For(i, i32(0), n, "serial", S.seq(
        S.BufferStore(LO, E.Min(X.vload((i,)), Y.vload((i,)), "float32"), (i,)),
        S.BufferStore(HI, E.Max(X.vload((i,)), Y.vload((i,)), "float32"), (i,))))
    f = codegen.build(PrimFunc("minmax", (X, Y, LO, HI), body, attrs=(("output_indices", (2, 3)),)))
    x = np.array([1, np.nan, 3, -np.inf], np.float32)
    y = np.array([2, 0, np.nan, 5], np.float32)
    lo, hi = np.empty_like(x), np.empty_like(x)
    f(x, y, lo, hi)
    np.testing.assert_array_equal(lo, np.minimum(x, y))
    np.testing.assert_array_equal(hi, np.maximum(x, y))


def test_let_unrolled_and_if_statement():
    A, C = decl_buffer((8,), "int32", "A"), decl_buffer((8,), "int32", "C")
    i, t = E.Var("i"), E.Var("t")
    body = S.For(i, i32(0), i32(8), "unrolled", S.LetStmt(t, E.Mul(A.vload((i,)), i32(2), "int32"),
                 S.IfThenElse(E.GT(t, i32(5), "bool"), S.BufferStore(C, t, (i,)),
                              S.BufferStore(C, E.Let(t, i32(-1), E.Sub(t, i32(1), "int32"),
                                                     "int32"), (i,)))))
    f = codegen.build(PrimFunc("unrolled", (A, C), body))
    a = np.arange(8, dtype=np.int32)
    c = np.empty_like(a)
    f(a, c)
    np.testing.assert_array_equal(c, np.where(a * 2 > 5, a * 2, -2))
    assert "for.i" not in f.get_source()


def test_assert_failure_is_reported_with_its_message():
    n = E.Var("n")
    A = decl_buffer((n,), "float32", "A")
    body = S.AssertStmt(E.GE(n, i32(4), "bool"), "A needs at least 4 elements",
                        store_loop(A, lambda i: f32(1.0), n))
    f = codegen.build(PrimFunc("checked", (A,), body))
    f(np.zeros(4, np.float32))
    with pytest.raises(UserError, match="A needs at least 4 elements"):
        f(np.zeros(3, np.float32))


def test_assert_inside_parallel_loop():
    n = E.Var("n")
    A = decl_buffer((n,), "float32", "A")
    i = E.Var("i")
    body = S.For(i, i32(0), n, "parallel", S.AssertStmt(
        E.LT(A.vload((i,)), f32(10.0), "bool"), "value too large",
        S.BufferStore(A, E.Add(A.vload((i,)), f32(1.0), "float32"), (i,))))
    f = codegen.build(PrimFunc("par_assert", (A,), body), "llvm -num-threads=2")
    a = np.zeros(100, np.float32)
    f(a)
    assert (a == 1).all()
    a[77] = 20
    with pytest.raises(UserError, match="value too large"):
        f(a)


def test_extern_call():
    n = E.Var("n")
    X, Y = decl_buffer((n,), "float64", "X"), decl_buffer((n,), "float64", "Y")
    body = store_loop(Y, lambda i: E.Call("cbrt", (X.vload((i,)),), "float64", True), n)
    f = codegen.build(PrimFunc("cbrt_all", (X, Y), body))
    x = RNG.random(10) * 100
    y = np.empty_like(x)
    f(x, y)
    np.testing.assert_allclose(y, np.cbrt(x))


def test_unknown_extern_is_refused_at_build():
    n = E.Var("n")
    X = decl_buffer((n,), "float32", "X")
    body = store_loop(X, lambda i: E.Call("no_such_function_xyz", (), "float32", True), n)
    with pytest.raises(UnsupportedOpError, match="no_such_function_xyz"):
        codegen.build(PrimFunc("bad_extern", (X,), body))


def test_scalar_parameter():
    n, alpha = E.Var("n"), E.Var("alpha", "float32")
    X, Y = decl_buffer((n,), "float32", "X"), decl_buffer((n,), "float32", "Y")
    body = store_loop(Y, lambda i: E.Mul(X.vload((i,)), alpha, "float32"), n)
    f = codegen.build(PrimFunc("scale", (X, alpha, Y), body))
    x = RNG.random(10, np.float32)
    y = np.empty_like(x)
    f(x, 2.5, y)
    np.testing.assert_allclose(y, x * np.float32(2.5))


def test_thread_binding_needs_cuda():
    n = E.Var("n")
    A = decl_buffer((n,), "float32", "A")
    i = E.Var("i")
    body = S.For(i, i32(0), n, "thread_binding", S.BufferStore(A, f32(0.0), (i,)),
                 thread_tag="blockIdx.x")
    with pytest.raises(UnsupportedOpError, match="blockIdx.x needs the CUDA target"):
        codegen.build(PrimFunc("gpu_only", (A,), body))


def test_unflattened_access_is_refused():
    A = decl_buffer((4, 4), "float32", "A")
    i = E.Var("i")
    body = S.For(i, i32(0), i32(4), "serial", S.BufferStore(A, f32(0.0), (i, i)))
    with pytest.raises(UserError, match="flattened"):
        codegen.build(PrimFunc("unflat", (A,), body))


def test_unbound_variable_is_refused():
    A = decl_buffer((4,), "float32", "A")
    stray = E.Var("stray")
    with pytest.raises(UserError, match="stray"):
        codegen.build(PrimFunc("unbound", (A,), S.BufferStore(A, f32(0.0), (stray,))))


@pytest.mark.parametrize("dtype", ["bfloat16", "float8_e4m3fn"])
def test_unsupported_dtypes_are_named(dtype):
    with pytest.raises(UnsupportedOpError, match=dtype):
        codegen.build(elementwise_add(dtype=dtype))


def test_target_with_avx2_mattr_runs():
    if not HOST_HAS_AVX:
        pytest.skip("host has no AVX")
    f = codegen.build(vectorized_scale_add(), parse_target("llvm -mattr=+avx2,+fma"))
    a, b = RNG.random(1024, np.float32), RNG.random(1024, np.float32)
    c = np.empty_like(a)
    f(a, b, c)
    np.testing.assert_allclose(c, a + 2 * b, rtol=1e-6)


@pytest.mark.parametrize("extent", [100, None])
def test_unrolled_loops_too_long_or_symbolic_stay_loops(extent):
    n = E.Var("n")
    size = i32(extent) if extent else n
    A, C = decl_buffer((size,), "float32", "A"), decl_buffer((size,), "float32", "C")
    f = codegen.build(PrimFunc(f"unroll_{extent}", (A, C), store_loop(
        C, lambda i: E.Mul(A.vload((i,)), f32(2.0), "float32"), size, "unrolled")))
    a = RNG.random(100, np.float32)
    c = np.empty_like(a)
    f(a, c)
    np.testing.assert_array_equal(c, a * 2)


def test_error_messages_are_readable_from_c():
    n = E.Var("n")
    A = decl_buffer((n,), "float32", "A")
    body = S.AssertStmt(E.GT(n, i32(0), "bool"), "A must not be empty",
                        store_loop(A, lambda i: f32(1.0), n))
    f = codegen.build(PrimFunc("c_errors", (A,), body))
    address = f._keepalive.get_function_address("c_errors__error_message")
    message = ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.c_int32)(address)
    assert message(1) == b"A must not be empty"
    assert message(0) is None and message(2) is None


def test_heap_buffer_inside_parallel_loop_with_failing_assert():
    n, m = E.Var("n"), E.Var("m")
    A = decl_buffer((n, m), "float32", "A")
    row = decl_buffer((m,), "float32", "row", scope="global")
    i, j, k = E.Var("i"), E.Var("j"), E.Var("k")
    at = E.Add(E.Mul(i, m, "int32"), j, "int32")
    at_k = E.Add(E.Mul(i, m, "int32"), k, "int32")
    body = S.For(i, i32(0), n, "parallel", S.Allocate(row, S.seq(
        S.For(j, i32(0), m, "serial", S.BufferStore(row, A.vload((at,)), (j,))),
        S.For(k, i32(0), m, "serial", S.AssertStmt(
            E.GE(row.vload((k,)), f32(0.0), "bool"), "negative entry",
            S.BufferStore(A, E.Add(row.vload((k,)), row.vload((E.Sub(m, E.Add(k, i32(1), "int32"),
                                                                      "int32"),)), "float32"),
                          (at_k,)))))))
    f = codegen.build(PrimFunc("rows", (A,), body), "llvm -num-threads=2")
    a = RNG.random((9, 6), np.float32)
    expected = a + a[:, ::-1]
    f(a)
    np.testing.assert_allclose(a, expected)
    a[5, 2] = -1
    with pytest.raises(UserError, match="negative entry"):
        f(a)


@pytest.mark.parametrize("vector", [False, True])
def test_float64_to_float16_rounds_once_like_numpy(vector):
    # a direct fptrunc double -> half calls a compiler-rt helper the JIT lacks (it crashed);
    # the conversion goes through float32 rounded to odd and must round exactly as NumPy
    import tensorlang as tl
    from tensorlang.ops import elemwise
    n = 4096
    A = tl.placeholder((n,), "float64", name="A")
    B = elemwise.cast(A, "float16")
    s = tl.create_schedule(B)
    if vector:
        _, inner = s[B].split(B.op.axis[0], factor=8)
        s[B].vectorize(inner)
    f = tl.build(s, [A, B], target="llvm")
    rng = np.random.default_rng(11)
    a = rng.standard_normal(n) * 10.0 ** rng.integers(-9, 6, n)
    halfway = (np.arange(1, 9, dtype=np.float16).astype(np.float64)
               + np.float64(2.0 ** -11))  # exactly between two halves: ties to even
    a[:24] = [np.inf, -np.inf, np.nan, 0.0, -0.0, 65519.99, 65520.0, 1e6, 2.0 ** -25,
              2.0 ** -25 * (1 + 2.0 ** -40), 6e-8, -6e-8, 1.0 + 2.0 ** -11 + 2.0 ** -40,
              1.0 + 2.0 ** -11 - 2.0 ** -40, 3.0, -7.5, *halfway]
    b = np.empty(n, np.float16)
    f(a, b)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(b, a.astype(np.float16))
