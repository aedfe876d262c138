"""Illegal schedule requests and bad DSL input raise the project's errors, naming the culprit."""
import pytest

import tensorlang as tl
from tensorlang.errors import DTypeError, ScheduleError, ShapeError, UserError


def _matmul(n=16):
    A = tl.placeholder((n, n), name="A")
    B = tl.placeholder((n, n), name="B")
    k = tl.reduce_axis((0, n), name="k")
    C = tl.compute((n, n), lambda i, j: tl.sum(A[i, k] * B[k, j], axis=k), name="C")
    return A, B, C


def test_axis_of_another_stage():
    A, B, C = _matmul()
    D = tl.compute(C.shape, lambda i, j: C[i, j] + 1, name="D")
    s = tl.create_schedule(D)
    with pytest.raises(ScheduleError, match=r"stage D: split was given axis i, but it belongs "
                                            r"to stage C"):
        s[D].split(C.op.axis[0], factor=4)


def test_axis_already_split():
    A, B, C = _matmul()
    s = tl.create_schedule(C)
    i = C.op.axis[0]
    s[C].split(i, factor=4)
    with pytest.raises(ScheduleError, match=r"stage C: axis i was already split or fused"):
        s[C].split(i, factor=2)
    with pytest.raises(ScheduleError, match="already split"):
        s[C].vectorize(i)


def test_axis_fused_away():
    A, B, C = _matmul()
    s = tl.create_schedule(C)
    i, j = C.op.axis
    s[C].fuse(i, j)
    with pytest.raises(ScheduleError, match=r"stage C: axis j was already split or fused"):
        s[C].parallel(j)


def test_fuse_needs_adjacent_axes():
    A, B, C = _matmul()
    s = tl.create_schedule(C)
    i, j = C.op.axis
    with pytest.raises(ScheduleError, match="adjacent"):
        s[C].fuse(i, C.op.reduce_axis[0])


def test_compute_at_non_consumer():
    A, B, C = _matmul()
    P = tl.compute((16, 16), lambda i, j: A[i, j] * 2, name="P")
    D = tl.compute((16, 16), lambda i, j: P[i, j] + C[i, j], name="D")
    s = tl.create_schedule(D)
    with pytest.raises(ScheduleError, match=r"stage P: compute_at to stage C, which does not "
                                            r"read P"):
        s[P].compute_at(s[C], C.op.axis[0])


def test_compute_at_cycle():
    A = tl.placeholder((8,), name="A")
    P = tl.compute((8,), lambda i: A[i] + 1, name="P")
    Q = tl.compute((8,), lambda i: P[i] * 2, name="Q")
    R = tl.compute((8,), lambda i: Q[i] - 1, name="R")
    s = tl.create_schedule(R)
    s[Q].compute_at(s[R], R.op.axis[0])
    s[P].compute_at(s[Q], Q.op.axis[0])
    # Q is now inside R; putting R's producer chain in a loop of P would loop back
    with pytest.raises(ScheduleError, match="output"):
        s[R].compute_at(s[P], P.op.axis[0])


def test_compute_at_cycle_between_intermediates():
    A = tl.placeholder((8,), name="A")
    P = tl.compute((8,), lambda i: A[i] + 1, name="P")
    Q = tl.compute((8,), lambda i: P[i] * 2, name="Q")
    R = tl.compute((8,), lambda i: Q[i] - 1 + P[i], name="R")
    s = tl.create_schedule(R)
    s[P].compute_at(s[Q], Q.op.axis[0])
    # attaching a consumer inside its own producer would loop back: refused by name
    with pytest.raises(ScheduleError, match=r"stage Q: compute_at to stage P, which does not "
                                            r"read Q"):
        s[Q].compute_at(s[P], P.op.axis[0])


def test_inline_reduction_refused():
    A, B, C = _matmul()
    D = tl.compute(C.shape, lambda i, j: C[i, j] + 1, name="D")
    s = tl.create_schedule(D)
    with pytest.raises(ScheduleError, match=r"stage C: cannot inline a reduction"):
        s[C].compute_inline()


def test_inline_output_or_placeholder_refused():
    A, B, C = _matmul()
    s = tl.create_schedule(C)
    with pytest.raises(ScheduleError, match="stage C"):
        s[C].compute_inline()
    with pytest.raises(ScheduleError, match="placeholder"):
        s[A].compute_inline()


def test_vectorize_symbolic_extent():
    n = tl.var("n")
    A = tl.placeholder((n,), name="A")
    B = tl.compute((n,), lambda i: A[i] + 1, name="B")
    s = tl.create_schedule(B)
    with pytest.raises(ScheduleError, match=r"stage B: cannot vectorize axis i: its extent n "
                                            r"is not a compile-time constant"):
        s[B].vectorize(B.op.axis[0])


def test_vectorize_of_serial_inside_is_legal():
    A, B, C = _matmul()
    s = tl.create_schedule(C)
    i, j = C.op.axis
    k = C.op.reduce_axis[0]
    s[C].reorder(i, j, k)
    s[C].vectorize(j)  # k stays a serial loop inside the vectorized one
    func = tl.lower(s, [A, B, C])
    assert "for k in range" in str(func)


def test_parallel_reduction_refused():
    A, B, C = _matmul()
    s = tl.create_schedule(C)
    with pytest.raises(ScheduleError, match=r"stage C: cannot parallelize reduction axis k"):
        s[C].parallel(C.op.reduce_axis[0])


def test_split_needs_one_of_factor_nparts():
    A, B, C = _matmul()
    s = tl.create_schedule(C)
    with pytest.raises(ScheduleError, match="exactly one of"):
        s[C].split(C.op.axis[0])
    with pytest.raises(ScheduleError, match="positive"):
        s[C].split(C.op.axis[0], factor=0)


def test_cache_write_after_split_refused():
    A, B, C = _matmul()
    s = tl.create_schedule(C)
    s[C].split(C.op.axis[0], factor=4)
    with pytest.raises(ScheduleError, match="before splitting"):
        s.cache_write(C, "local")


def test_rfactor_needs_reduce_axis():
    A, B, C = _matmul()
    s = tl.create_schedule(C)
    with pytest.raises(ScheduleError, match="not a reduction axis"):
        s.rfactor(C, C.op.axis[0])


def test_tensor_not_in_schedule():
    A, B, C = _matmul()
    other = tl.placeholder((3,), name="other")
    s = tl.create_schedule(C)
    with pytest.raises(ScheduleError, match="other"):
        s[other]


def test_lower_missing_argument():
    A, B, C = _matmul()
    s = tl.create_schedule(C)
    with pytest.raises(UserError, match="input tensor B"):
        tl.lower(s, [A, C])
    with pytest.raises(UserError, match="output C"):
        tl.lower(s, [A, B])


def test_dsl_errors():
    A = tl.placeholder((4, 4), name="A")
    with pytest.raises(ShapeError, match="tensor A has 2 dimensions but was indexed with 3"):
        tl.compute((4,), lambda i: A[i, i, i])
    with pytest.raises(DTypeError, match="tensor A: index 0 is float32"):
        tl.compute((4,), lambda i: A[i.astype("float32"), i])
    with pytest.raises(ShapeError, match="takes 1 index arguments"):
        tl.compute((4, 4), lambda i: A[i, i])
    k = tl.reduce_axis((0, 4), name="k")
    with pytest.raises(UserError, match="reduction must be the whole body"):
        tl.compute((4,), lambda i: tl.sum(A[i, k], axis=k) * 2)
    with pytest.raises(UserError, match="Python bool"):
        tl.compute((4,), lambda i: A[i, 0] if i < 2 else A[i, 1])
    with pytest.raises(DTypeError, match="exp needs a floating-point operand"):
        tl.exp(tl.var("n"))
    with pytest.raises(DTypeError, match="unknown dtype"):
        tl.placeholder((2,), "float13")
    with pytest.raises(UserError, match="must be a reduce_axis"):
        tl.sum(A[0, 0], axis=[tl.var("x")])


def test_dtype_promotion():
    a = tl.var("a", "int32")
    b = tl.var("b", "int64")
    x = tl.var("x", "float32")
    assert (a + b).dtype == "int64"
    assert (a + x).dtype == "float32"
    assert (a + 1).dtype == "int32"
    assert (a + 1.5).dtype == "float32"
    assert (x * 2).dtype == "float32"
    assert (tl.var("u", "uint8") + tl.var("s", "int8")).dtype == "int16"
    assert tl.const(3).dtype == "int32" and tl.const(3.0).dtype == "float32"
    with pytest.raises(DTypeError, match="no integer type holds both"):
        tl.var("u", "uint64") + tl.var("s", "int64")
    with pytest.raises(DTypeError, match="boolean conditions"):
        a & b


def test_read_past_the_end_is_refused_at_lowering():
    A = tl.placeholder((10,), name="A")
    B = tl.compute((10,), lambda i: A[i + 1] - A[i], name="B")
    s = tl.create_schedule(B)
    with pytest.raises(ShapeError, match=r"stage B reads A out of range: index 0 \(i \+ 1\) "
                                         r"runs over \[1, 10\] but A has 10 elements"):
        tl.lower(s, [A, B])


def test_guarded_and_data_dependent_reads_are_allowed():
    A = tl.placeholder((10,), name="A")
    idx = tl.placeholder((4,), "int8", name="idx")
    B = tl.compute((10,), lambda i: tl.if_then_else(i < 9, A[i + 1], 0.0) + A[i], name="B")
    C = tl.compute((4,), lambda i: A[idx[i]], name="C")
    tl.lower(tl.create_schedule(B), [A, B])
    tl.lower(tl.create_schedule(C), [A, idx, C])
