"""ops.reduce against NumPy on random data, each under a non-trivial schedule."""
import numpy as np
import pytest

import tensorlang as tl
from tensorlang import ops
from tensorlang.errors import ShapeError, UserError
from tensorlang.expr import Call
from test_ops_harness import check, rand, run

R = ops.reduce
REDUCTIONS = [("sum", np.sum), ("max", np.max), ("min", np.min), ("prod", np.prod),
              ("mean", np.mean)]


@pytest.mark.parametrize("name,ref", REDUCTIONS)
@pytest.mark.parametrize("axis,keepdims", [(1, False), ((0, 2), True)])
def test_reduce_axes(name, ref, axis, keepdims):
    A = tl.placeholder((4, 9, 6), name="A")
    B = getattr(R, name)(A, axis=axis, keepdims=keepdims)
    red = B.op.input_tensors[0] if name == "mean" else B
    s = tl.create_schedule(B)
    k_first = s[red].op.reduce_axis[0]
    ko, ki = s[red].split(k_first, factor=4)       # 9, 4, 6: mostly non-divisible
    outer = s[red].op.axis[0]
    s[red].reorder(outer, ko, ki)
    s[red].parallel(outer)
    if name == "mean":
        s[B].vectorize(s[B].op.axis[-1])
    a = rand((4, 9, 6), low=0.5, high=1.5)
    check(s, [A, B], [a], ref(a, axis=axis, keepdims=keepdims), rtol=1e-5)


@pytest.mark.parametrize("name,ref", REDUCTIONS[:3])
def test_reduce_everything_to_a_scalar(name, ref):
    # keepdims=False and every axis: a 0-d result
    A = tl.placeholder((5, 7), name="A")
    B = getattr(R, name)(A)
    assert B.shape == ()
    s = tl.create_schedule(B)
    k0, k1 = s[B].op.reduce_axis
    fused = s[B].fuse(k0, k1)
    o, i = s[B].split(fused, factor=6)            # 35 % 6 != 0
    a = rand((5, 7))
    check(s, [A, B], [a], ref(a), rtol=1e-5)


def test_sum_with_rfactor_of_a_long_reduction():
    A = tl.placeholder((3, 1000), name="A")
    B = R.sum(A, axis=1)
    s = tl.create_schedule(B)
    ko, ki = s[B].split(s[B].op.reduce_axis[0], factor=16)   # 1000 % 16 != 0
    BF = s.rfactor(B, ki)
    s[BF].parallel(s[BF].op.axis[0])
    xo, xi = s[B].split(s[B].op.axis[0], factor=2)
    s[B].parallel(xo)
    a = rand((3, 1000))
    check(s, [A, B], [a], a.sum(axis=1), rtol=1e-4, atol=1e-4)


def test_max_with_rfactor_vectorized_over_the_factor():
    A = tl.placeholder((4, 300), name="A")
    B = R.max(A, axis=1)
    s = tl.create_schedule(B)
    ko, ki = s[B].split(s[B].op.reduce_axis[0], factor=8)
    BF = s.rfactor(B, ki, factor_axis=1)
    f, v = s[BF].op.axis
    rk = s[BF].op.reduce_axis[0]
    s[BF].reorder(f, rk, v)
    s[BF].vectorize(v)
    s[BF].parallel(f)
    a = rand((4, 300))
    check(s, [A, B], [a], a.max(axis=1))


def test_sum_with_cache_write_and_compute_at():
    A = tl.placeholder((10, 37), name="A")
    B = R.sum(A, axis=1)
    s = tl.create_schedule(B)
    BL = s.cache_write(B, "local")
    o, i = s[B].split(s[B].op.axis[0], factor=4)
    s[B].parallel(o)
    s[BL].compute_at(s[B], o)
    ko, ki = s[BL].split(s[BL].op.reduce_axis[0], factor=8)
    a = rand((10, 37))
    check(s, [A, B], [a], a.sum(axis=1), rtol=1e-5)


def test_integer_sum_and_mean_of_integers():
    A = tl.placeholder((6, 11), "int32", name="A")
    S = R.sum(A, axis=0)
    M = R.mean(A, axis=1)
    s = tl.create_schedule([S, M])
    o, i = s[S].split(s[S].op.axis[0], factor=4)
    s[S].reorder(o, s[S].op.reduce_axis[0], i)     # the reduction loop between data loops
    s[S].vectorize(i)
    s[M.op.input_tensors[0]].compute_at(s[M], s[M].op.axis[0])
    a = rand((6, 11), "int32", -100, 100)
    check(s, [A, S, M], [a], [a.sum(axis=0, dtype="int32"), a.mean(axis=1)], rtol=1e-6)


@pytest.mark.parametrize("which", ["argmax", "argmin"])
@pytest.mark.parametrize("axis", [0, 1, None])
def test_arg_reductions_with_ties_take_first(which, axis):
    A = tl.placeholder((6, 21), name="A")
    idx = getattr(R, which)(A, axis=axis)
    s = tl.create_schedule(idx)
    rks = s[idx].op.reduce_axis
    k = rks[0] if len(rks) == 1 else s[idx].fuse(*rks)
    ko, ki = s[idx].split(k, factor=5)
    if s[idx].op.axis:
        s[idx].parallel(s[idx].op.axis[0])
    a = np.round(rand((6, 21)) * 2).astype("float32")   # values in {-2..2}: many ties
    ref = getattr(np, which)
    # both outputs of the two-output stage are arguments (index, then value)
    check(s, [A, idx, idx.op.output(1)], [a],
          [ref(a, axis=axis).astype("int32"),
           (np.max if which == "argmax" else np.min)(a, axis=axis)])


def test_argmax_keepdims_and_int64_index_with_nan():
    A = tl.placeholder((3, 8), name="A")
    idx = R.argmax(A, axis=1, keepdims=True, dtype="int64")
    s = tl.create_schedule(idx)
    ko, ki = s[idx].split(s[idx].op.reduce_axis[0], factor=3)
    s[idx].reorder(ko, s[idx].op.axis[0], ki)
    a = rand((3, 8))
    a[1, 5] = np.nan          # NumPy: the first NaN wins
    a[2, 2] = a[2, 6] = 7.0
    got = run(s, [A, idx, idx.op.output(1)], [a])
    np.testing.assert_array_equal(got[0], np.argmax(a, axis=1, keepdims=True))
    assert got[0].dtype == np.int64


def test_argmin_vectorized_over_columns():
    A = tl.placeholder((16, 9), name="A")
    idx = R.argmin(A, axis=0)
    s = tl.create_schedule(idx)
    (j,) = s[idx].op.axis
    k = s[idx].op.reduce_axis[0]
    s[idx].reorder(k, j)                       # reduction outside, columns as vector lanes
    s[idx].vectorize(j)
    a = np.round(rand((16, 9)) * 2).astype("float32")
    check(s, [A, idx, idx.op.output(1)], [a], [np.argmin(a, axis=0).astype("int32"),
                                               a.min(axis=0)])


def test_reduce_errors():
    A = tl.placeholder((2, 3), name="A")
    with pytest.raises(ShapeError, match="sum: axis 2 is out of range"):
        R.sum(A, axis=2)
    with pytest.raises(ShapeError, match="repeats an axis"):
        R.max(A, axis=(1, -1))
    with pytest.raises(UserError, match="argmax: axis must be an int"):
        R.argmax(A, axis=(0, 1))


def test_rfactor_of_the_whole_split_reduction_guards_its_reads_lazily():
    # split (1000 % 16 != 0) then fused back: the factored stage keeps no reduction, and its
    # body must guard the read past k = 999 with a branch (if_then_else), not an eager Select
    A = tl.placeholder((3, 1000), name="A")
    B = R.sum(A, axis=1)
    s = tl.create_schedule(B)
    ko, ki = s[B].split(s[B].op.reduce_axis[0], factor=16)
    BF = s.rfactor(B, s[B].fuse(ko, ki))
    body = BF.op.body[0]
    assert isinstance(body, Call) and body.op == "if_then_else", body
    a = rand((3, 1000))
    check(s, [A, B], [a], a.sum(axis=1), rtol=1e-4, atol=1e-4)
