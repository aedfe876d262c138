"""The loop-IR interpreter against NumPy, on IR built by hand."""
import numpy as np
import pytest

from tensorlang import expr as E
from tensorlang.errors import DTypeError, InternalError, ShapeError, UnsupportedOpError, UserError
from tensorlang.ir import interpreter
from tensorlang.ir.buffer import decl_buffer
from tensorlang.ir.function import PrimFunc
from tensorlang.ir.stmt import (Allocate, AssertStmt, BufferStore, Evaluate, For, IfThenElse,
                                LetStmt, seq)
from tensorlang.ir.verify import verify_well_formed

rng = np.random.default_rng(0)
c = E.const


def loop(var, extent, body, kind="serial", tag=""):
    return For(var, c(0), E.convert(extent), kind, body, thread_tag=tag)


def func(name, params, body):
    f = PrimFunc(name, tuple(params), body)
    verify_well_formed(f)
    return f


def matmul_func(kind="serial"):
    n = E.var("n")
    A = decl_buffer((n, 8), "float32", "A")
    B = decl_buffer((8, 6), "float32", "B")
    C = decl_buffer((n, 6), "float32", "C")
    i, j, k = E.var("i"), E.var("j"), E.var("k")
    body = loop(i, n, loop(j, 6, seq(
        BufferStore(C, c(0.0), (i, j)),
        loop(k, 8, BufferStore(C, C[i, j] + A[i, k] * B[k, j], (i, j))))), kind)
    return func("matmul", (A, B, C), body)


@pytest.mark.parametrize("kind", ["serial", "parallel", "unrolled"])
def test_matmul_with_symbolic_rows(kind):
    a = rng.standard_normal((5, 8), dtype=np.float32)
    b = rng.standard_normal((8, 6), dtype=np.float32)
    out = np.full((5, 6), 7.0, np.float32)
    interpreter.run(matmul_func(kind), a, b, out)
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)


def test_thread_bound_loops_run_sequentially():
    A = decl_buffer((4, 32), "float32", "A")
    B = decl_buffer((4, 32), "float32", "B")
    bx, tx = E.var("bx"), E.var("tx")
    body = loop(bx, 4, loop(tx, 32, BufferStore(B, A[bx, tx] * 3.0, (bx, tx)),
                            "thread_binding", "threadIdx.x"), "thread_binding", "blockIdx.x")
    a = rng.standard_normal((4, 32), dtype=np.float32)
    b = np.zeros_like(a)
    interpreter.run(func("scale", (A, B), body), a, b)
    np.testing.assert_array_equal(b, a * np.float32(3.0))


def test_vectorized_ramp_load_store_and_gather():
    A = decl_buffer((32,), "float32", "A")
    B = decl_buffer((16,), "float32", "B")
    i = E.var("i")
    contiguous = E.Ramp(i * 4, c(1), 4, "int32x4")
    strided = E.Ramp(i * 8, c(2), 4, "int32x4")  # even elements of A: a gather
    value = A.vload((strided,), "float32x4") * E.Broadcast(c(2.0), 4, "float32x4")
    body = loop(i, 4, BufferStore(B, value, (contiguous,)), "vectorized")
    a = rng.standard_normal(32, dtype=np.float32)
    b = np.zeros(16, np.float32)
    interpreter.run(func("gather", (A, B), body), a, b)
    np.testing.assert_array_equal(b, a[::2] * np.float32(2.0))


def test_if_then_else_pads_without_touching_out_of_range_elements():
    n = E.var("n")
    A = decl_buffer((n,), "float32", "A")
    B = decl_buffer((n + 2,), "float32", "B")
    i = E.var("i")
    inside = (i >= 1) & (i < n + 1)
    value = E.Call("if_then_else", (inside, A[i - 1], c(0.0)), "float32")
    body = loop(i, n + 2, BufferStore(B, value, (i,)))
    a = rng.standard_normal(6, dtype=np.float32)
    b = np.full(8, np.nan, np.float32)
    interpreter.run(func("pad", (A, B), body), a, b)
    np.testing.assert_array_equal(b, np.pad(a, 1))


def test_vector_if_then_else_masks_the_lanes_it_does_not_take():
    A = decl_buffer((6,), "float32", "A")
    B = decl_buffer((8,), "float32", "B")
    i = E.var("i")
    lanes = E.Ramp(i * 4, c(1), 4, "int32x4")
    one = E.Broadcast(c(1), 4, "int32x4")
    inside = E.And(E.GE(lanes, one, "boolx4"),
                   E.LT(lanes, E.Broadcast(c(7), 4, "int32x4"), "boolx4"), "boolx4")
    load = A.vload((E.Sub(lanes, one, "int32x4"),), "float32x4")
    value = E.Call("if_then_else", (inside, load, E.Broadcast(c(0.0), 4, "float32x4")),
                   "float32x4")
    body = loop(i, 2, BufferStore(B, value, (lanes,)), "vectorized")
    a = rng.standard_normal(6, dtype=np.float32)
    b = np.full(8, np.nan, np.float32)
    interpreter.run(func("vpad", (A, B), body), a, b)
    np.testing.assert_array_equal(b, np.pad(a, 1))


def test_allocated_local_accumulator():
    A = decl_buffer((4, 16), "float32", "A")
    C = decl_buffer((4,), "float32", "C")
    acc = decl_buffer((1,), "float32", "acc", scope="local")
    i, k = E.var("i"), E.var("k")
    body = loop(i, 4, Allocate(acc, seq(
        BufferStore(acc, c(0.0), (c(0),)),
        loop(k, 16, BufferStore(acc, acc[0] + A[i, k], (c(0),))),
        BufferStore(C, acc[0], (i,)))))
    a = rng.standard_normal((4, 16), dtype=np.float32)
    out = np.zeros(4, np.float32)
    interpreter.run(func("rowsum", (A, C), body), a, out)
    np.testing.assert_allclose(out, a.sum(axis=1), rtol=1e-5)


def test_uninitialised_allocation_reads_as_nan_and_int_sentinel():
    F = decl_buffer((2,), "float32", "F")
    I = decl_buffer((2,), "int32", "I")
    tmp_f = decl_buffer((2,), "float32", "tmp_f", scope="local")
    tmp_i = decl_buffer((2,), "int32", "tmp_i", scope="local")
    i = E.var("i")
    body = loop(i, 2, Allocate(tmp_f, Allocate(tmp_i, seq(
        BufferStore(F, tmp_f[i], (i,)), BufferStore(I, tmp_i[i], (i,))))))
    f, n = np.zeros(2, np.float32), np.zeros(2, np.int32)
    interpreter.run(func("uninit", (F, I), body), f, n)
    assert np.isnan(f).all()
    assert (n == np.iinfo(np.int32).min).all()


def int_ops_func(make):
    A = decl_buffer((8,), "int32", "A")
    B = decl_buffer((8,), "int32", "B")
    C = decl_buffer((8,), "int32", "C")
    i = E.var("i")
    body = loop(i, 8, BufferStore(C, make(A[i], B[i]), (i,)))
    return func("intop", (A, B, C), body)


@pytest.mark.parametrize("op, expected", [
    (E.FloorDiv, np.floor_divide),
    (E.FloorMod, np.remainder),
    (E.Div, lambda a, b: np.trunc(a / b).astype(np.int32)),  # C truncation
    (E.Mod, np.fmod),
])
def test_integer_division_on_negatives(op, expected):
    a = np.array([-7, 7, -7, 7, -1, 0, -8, 9], np.int32)
    b = np.array([2, -2, -2, 2, 3, -5, 4, -4], np.int32)
    out = np.zeros(8, np.int32)
    interpreter.run(int_ops_func(lambda x, y: op(x, y, "int32")), a, b, out)
    np.testing.assert_array_equal(out, expected(a, b))


def test_floordiv_of_negative_constants():
    assert _eval(E.FloorDiv(c(-7), c(2), "int32")) == -4
    assert _eval(E.FloorMod(c(-7), c(2), "int32")) == 1
    assert _eval(E.Div(c(-7), c(2), "int32")) == -3
    assert _eval(E.Mod(c(-7), c(2), "int32")) == -1


def test_integer_division_by_zero_is_an_error():
    a = np.ones(8, np.int32)
    with pytest.raises(UserError, match="division by zero"):
        interpreter.run(int_ops_func(lambda x, y: E.FloorDiv(x, y, "int32")), a,
                        np.zeros(8, np.int32), np.zeros(8, np.int32))


def _eval(e):
    """Value of a scalar expression, through a one-element output buffer."""
    out = decl_buffer((1,), e.dtype, "out")
    f = PrimFunc("eval", (out,), BufferStore(out, e, (c(0),)))
    verify_well_formed(f)
    result = np.zeros(1, interpreter.np_dtype(e.dtype))
    interpreter.run(f, result)
    return result[0]


def test_integer_overflow_wraps_like_the_dtype():
    assert _eval(E.Add(c(2**31 - 1), c(1), "int32")) == -2**31
    assert _eval(E.Mul(c(2**30), c(4), "int32")) == 0
    assert _eval(E.Sub(c(0, "uint8"), c(1, "uint8"), "uint8")) == 255
    assert _eval(E.Cast(c(300), "int8")) == 44


def test_float32_arithmetic_stays_in_float32():
    value = _eval(E.Add(c(1e8), c(1.0), "float32"))
    assert value == np.float32(1e8)  # float64 would give 100000001
    assert _eval(E.Add(c(1e8, "float64"), c(1.0, "float64"), "float64")) == 100000001.0


@pytest.mark.parametrize("name, reference", [
    ("exp", np.exp), ("tanh", np.tanh), ("sqrt", lambda x: np.sqrt(np.abs(x))),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x))), ("round", np.round), ("floor", np.floor),
])
def test_intrinsics_match_numpy(name, reference):
    A = decl_buffer((9,), "float32", "A")
    B = decl_buffer((9,), "float32", "B")
    i = E.var("i")
    arg = E.call_intrin("fabs", A[i]) if name == "sqrt" else A[i]
    body = loop(i, 9, BufferStore(B, E.call_intrin(name, arg), (i,)))
    a = np.array([-2.5, -1.5, -0.5, 0.0, 0.5, 1.5, 2.5, 0.25, 3.7], np.float32)
    b = np.zeros(9, np.float32)
    interpreter.run(func(name, (A, B), body), a, b)
    np.testing.assert_allclose(b, reference(a).astype(np.float32), rtol=1e-6)


def test_erf_round_half_to_even_and_isnan():
    from scipy.special import erf
    assert np.isclose(_eval(E.call_intrin("erf", c(0.5))), erf(0.5), rtol=1e-6)
    assert _eval(E.call_intrin("round", c(2.5))) == 2.0
    assert _eval(E.call_intrin("round", c(-0.5))) == 0.0
    assert _eval(E.Call("isnan", (c(float("nan")),), "bool")) == True  # noqa: E712


def test_min_max_propagate_nan():
    assert np.isnan(_eval(E.Min(c(float("nan")), c(1.0), "float32")))
    assert np.isnan(_eval(E.Max(c(1.0), c(float("nan")), "float32")))


def test_flattened_single_indices_on_multidimensional_buffers():
    A = decl_buffer((3, 4), "float32", "A")
    B = decl_buffer((3, 4), "float32", "B")
    i, j = E.var("i"), E.var("j")
    body = loop(i, 3, loop(j, 4, BufferStore(B, A[i * 4 + j] + 1.0, (i * 4 + j,))))
    a = rng.standard_normal((3, 4), dtype=np.float32)
    b = np.zeros_like(a)
    interpreter.run(func("flat", (A, B), body), a, b)
    np.testing.assert_array_equal(b, a + np.float32(1.0))


def test_let_and_letstmt():
    A = decl_buffer((4,), "int32", "A")
    i, x, y = E.var("i"), E.var("x"), E.var("y")
    value = E.Let(y, x * 2, y + 1, "int32")
    body = loop(i, 4, LetStmt(x, i + 10, BufferStore(A, value, (i,))))
    out = np.zeros(4, np.int32)
    interpreter.run(func("lets", (A,), body), out)
    np.testing.assert_array_equal(out, (np.arange(4) + 10) * 2 + 1)


def test_scalar_parameters_by_position_and_name():
    A = decl_buffer((4,), "float32", "A")
    alpha = E.Var("alpha", "float32")
    i = E.var("i")
    f = func("scale", (A, alpha), loop(i, 4, BufferStore(A, A[i] * alpha, (i,))))
    a = np.ones(4, np.float32)
    interpreter.run(f, a, 3.0)
    interpreter.run(f, a, alpha=2.0)
    np.testing.assert_array_equal(a, np.full(4, 6.0, np.float32))


def test_out_of_bounds_access_names_buffer_and_index():
    A = decl_buffer((4,), "float32", "A")
    i = E.var("i")
    f = func("oob", (A,), loop(i, 5, BufferStore(A, c(1.0), (i,))))
    with pytest.raises(InternalError, match=r"'A'.*index \[4\]"):
        interpreter.run(f, np.zeros(4, np.float32))


def test_negative_index_is_out_of_bounds_not_wrapped():
    A = decl_buffer((4,), "float32", "A")
    B = decl_buffer((4,), "float32", "B")
    i = E.var("i")
    f = func("neg", (A, B), loop(i, 4, BufferStore(B, A[i - 1], (i,))))
    with pytest.raises(InternalError, match=r"'A'.*-1"):
        interpreter.run(f, np.zeros(4, np.float32), np.zeros(4, np.float32))
    flat = decl_buffer((2, 2), "float32", "M")
    g = func("negflat", (flat,), BufferStore(flat, c(0.0), (c(-1),)))
    with pytest.raises(InternalError, match=r"'M'.*-1"):
        interpreter.run(g, np.zeros((2, 2), np.float32))


def test_assert_raises_user_error_with_its_message():
    A = decl_buffer((4,), "float32", "A")
    n = E.Var("n", "int32")
    body = AssertStmt(n < 4, "n must be below 4", Evaluate(c(0)))
    f = func("check", (A, n), body)
    interpreter.run(f, np.zeros(4, np.float32), 3)
    with pytest.raises(UserError, match="n must be below 4"):
        interpreter.run(f, np.zeros(4, np.float32), 5)


def test_extern_calls_need_a_registered_implementation():
    A = decl_buffer((4,), "float32", "A")
    call = E.Call("fill_ones", (A.data, c(4)), "void", extern=True)
    f = func("ext", (A,), Evaluate(call))
    a = np.zeros(4, np.float32)
    with pytest.raises(UnsupportedOpError, match="fill_ones"):
        interpreter.run(f, a)

    def fill_ones(data, count):
        data[:count] = 1.0
    interpreter.register_extern("fill_ones", fill_ones)
    try:
        interpreter.run(f, a)
    finally:
        interpreter.register_extern("fill_ones", None)
    np.testing.assert_array_equal(a, np.ones(4, np.float32))


def test_if_statement_with_else():
    A = decl_buffer((6,), "int32", "A")
    i = E.var("i")
    body = loop(i, 6, IfThenElse(i % 2 == 0, BufferStore(A, i, (i,)),
                                 BufferStore(A, -i, (i,))))
    out = np.zeros(6, np.int32)
    interpreter.run(func("parity", (A,), body), out)
    np.testing.assert_array_equal(out, [0, -1, 2, -3, 4, -5])


def test_bad_arguments_are_user_errors():
    f = matmul_func()
    a, b = np.zeros((5, 8), np.float32), np.zeros((8, 6), np.float32)
    with pytest.raises(ShapeError, match="dimension 0 of 'C' is 4"):
        interpreter.run(f, a, b, np.zeros((4, 6), np.float32))
    with pytest.raises(DTypeError, match="'B' has dtype float64"):
        interpreter.run(f, a, b.astype(np.float64), np.zeros((5, 6), np.float32))
    with pytest.raises(UserError, match="no array"):
        interpreter.run(f, a, b)


def test_non_contiguous_output_is_written_back():
    A = decl_buffer((3,), "float32", "A")
    i = E.var("i")
    f = func("fill", (A,), loop(i, 3, BufferStore(A, E.cast(i, "float32"), (i,))))
    base = np.zeros(6, np.float32)
    interpreter.run(f, base[::2])
    np.testing.assert_array_equal(base, [0, 0, 1, 0, 2, 0])


def test_select_with_scalar_condition_and_vector_branches():
    A = decl_buffer((8,), "float32", "A")
    i = E.var("i")
    lanes = E.Ramp(i * 4, c(1), 4, "int32x4")
    value = E.Select(i < 1, E.Broadcast(c(1.0), 4, "float32x4"),
                     E.Broadcast(c(2.0), 4, "float32x4"), "float32x4")
    a = np.zeros(8, np.float32)
    interpreter.run(func("sel", (A,), loop(i, 2, BufferStore(A, value, (lanes,)), "vectorized")), a)
    np.testing.assert_array_equal(a, [1, 1, 1, 1, 2, 2, 2, 2])


def test_unknown_keyword_is_refused():
    f = matmul_func()
    with pytest.raises(UserError, match="no scalar parameter or shape variable named 'beta'"):
        interpreter.run(f, np.zeros((5, 8), np.float32), np.zeros((8, 6), np.float32),
                        np.zeros((5, 6), np.float32), beta=1)
