"""ops.transform against NumPy on random data, each under a non-trivial schedule."""
import numpy as np
import pytest

import tensorlang as tl
from tensorlang import ops
from tensorlang.errors import DTypeError, ShapeError, UserError
from test_ops_harness import build_kernel, check, rand, split_fuse_vectorize

T = ops.transform


@pytest.mark.parametrize("axes", [(1, 0, 2), (2, 0, 1), None])
def test_transpose(axes):
    A = tl.placeholder((3, 5, 6), name="A")
    B = T.transpose(A, axes)
    s = tl.create_schedule(B)
    x, y, z = s[B].op.axis
    xo, xi = s[B].split(x, factor=2)
    s[B].reorder(xo, y, xi, z)
    s[B].parallel(xo)
    s[B].vectorize(z)
    a = rand((3, 5, 6))
    check(s, [A, B], [a], np.transpose(a, axes))


def test_transpose_inlined_into_consumer():
    A = tl.placeholder((9, 7), name="A")
    B = T.transpose(A)
    C = ops.elemwise.multiply(B, 2.0)
    s = tl.create_schedule(C)
    s[B].compute_inline()
    i, j = s[C].op.axis
    io, jo, ii, ji = s[C].tile(i, j, 4, 4)     # both extents non-divisible
    s[C].vectorize(ji)
    a = rand((9, 7))
    check(s, [A, C], [a], a.T * 2)


@pytest.mark.parametrize("src,dst", [((4, 6), (3, 8)), ((2, 3, 4), (6, -1)),
                                     ((24,), (2, 3, 4)), ((5, 1, 6), (30,))])
def test_reshape(src, dst):
    A = tl.placeholder(src, name="A")
    B = T.reshape(A, dst)
    s = tl.create_schedule(B)
    split_fuse_vectorize(s, B, factor=5)
    a = rand(src)
    check(s, [A, B], [a], a.reshape(dst))


def test_reshape_symbolic_rows():
    n = tl.var("n")
    A = tl.placeholder((n, 6), name="A")
    B = T.reshape(A, (-1, 3))
    s = tl.create_schedule(B)
    i, j = s[B].op.axis
    io, ii = s[B].split(i, factor=4)
    s[B].parallel(io)
    s[B].vectorize(j)
    f = build_kernel(s, [A, B])
    for rows in (1, 5, 8):
        a = rand((rows, 6))
        check(s, [A, B], [a], a.reshape(-1, 3), func=f)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate_three(axis):
    shapes = [(2, 3, 4), (2, 3, 4), (2, 3, 4)]
    shapes = [tuple(s[d] + k * (d == axis % 3) for d in range(3))
              for k, s in enumerate(shapes)]
    ins = [tl.placeholder(sh, name=f"A{k}") for k, sh in enumerate(shapes)]
    C = T.concatenate(ins, axis=axis)
    s = tl.create_schedule(C)
    fused = s[C].fuse(*s[C].op.axis[:2])
    o, i = s[C].split(fused, factor=4)
    s[C].parallel(o)
    s[C].vectorize(s[C].op.axis[2])             # lanes may straddle two inputs
    arrays = [rand(sh, seed=k) for k, sh in enumerate(shapes)]
    check(s, ins + [C], arrays, np.concatenate(arrays, axis=axis))


def test_split_sections_and_indices():
    A = tl.placeholder((4, 12), name="A")
    parts = T.split(A, 3, axis=1)
    more = T.split(A, [1, 3], axis=0)
    outs = parts + more
    s = tl.create_schedule(outs)
    for P in outs:
        i, j = s[P].op.axis
        io, ii = s[P].split(i, factor=3)
        s[P].vectorize(j)
    a = rand((4, 12))
    check(s, [A] + outs, [a], np.split(a, 3, axis=1) + np.split(a, [1, 3], axis=0))


@pytest.mark.parametrize("begin,end,strides", [
    ([1, 0], [5, 9], [1, 2]),
    ([-2, 8], [None, 1], [1, -3]),
    ([0, -100], [100, -1], [2, 1]),
    ([5, 3], [0, None], [-2, 1]),
])
def test_strided_slice(begin, end, strides):
    A = tl.placeholder((6, 10), name="A")
    B = T.strided_slice(A, begin, end, strides)
    s = tl.create_schedule(B)
    split_fuse_vectorize(s, B, factor=3)
    a = rand((6, 10))
    expect = a[tuple(slice(b, e, st) for b, e, st in zip(begin, end, strides))]
    check(s, [A, B], [a], expect)


def test_strided_slice_of_one_axis_of_symbolic_tensor():
    n = tl.var("n")
    A = tl.placeholder((n, 8), name="A")
    B = T.strided_slice(A, [1, 2], [None, 8], [1, 2])
    s = tl.create_schedule(B)
    io, ii = s[B].split(s[B].op.axis[0], factor=3)
    s[B].parallel(io)
    f = build_kernel(s, [A, B])
    for rows in (2, 7):
        a = rand((rows, 8))
        check(s, [A, B], [a], a[1:, 2::2], func=f)


def test_pad_is_lazy_and_fills():
    A = tl.placeholder((2, 5, 7), name="A")
    P = T.pad(A, (0, 2, 1), (1, 0, 3), pad_value=-7.5)
    s = tl.create_schedule(P)
    x, y, z = s[P].op.axis
    yz = s[P].fuse(y, z)
    o, i = s[P].split(yz, factor=8)
    s[P].parallel(x)
    s[P].vectorize(i)
    a = rand((2, 5, 7))
    check(s, [A, P], [a], np.pad(a, ((0, 1), (2, 0), (1, 3)), constant_values=-7.5))


def test_pad_computed_at_consumer_loop():
    A = tl.placeholder((10, 9), name="A")
    P = T.pad(A, (2, 1), (2, 3))
    K = tl.reduce_axis((0, 3), name="K")
    B = tl.compute((12, 11), lambda i, j: tl.sum(P[i + K, j + K], axis=K), name="B")
    s = tl.create_schedule(B)
    io, ii = s[B].split(B.op.axis[0], factor=5)
    s[P].compute_at(s[B], io)
    a = rand((10, 9))
    p = np.pad(a, ((2, 2), (1, 3)))
    expect = sum(p[k:k + 12, k:k + 11] for k in range(3))
    check(s, [A, B], [a], expect, rtol=1e-5)


@pytest.mark.parametrize("mode,np_mode", [("clip", "clip"), ("wrap", "wrap")])
@pytest.mark.parametrize("index_dtype", ["int32", "int64"])
def test_take_along_axis_out_of_range(mode, np_mode, index_dtype):
    A = tl.placeholder((5, 6, 4), name="A")
    I = tl.placeholder((3, 2), index_dtype, name="I")
    G = T.take(A, I, axis=1, mode=mode)
    s = tl.create_schedule(G)
    assert tuple(int(d) for d in G.shape) == (5, 3, 2, 4)
    a_, b_, c_, d_ = s[G].op.axis
    bc = s[G].fuse(b_, c_)
    o, i = s[G].split(bc, factor=4)
    s[G].reorder(o, a_, i, d_)
    s[G].parallel(o)
    s[G].vectorize(d_)
    a = rand((5, 6, 4))
    idx = rand((3, 2), index_dtype, -8, 14)       # some indices out of range
    check(s, [A, I, G], [a, idx], np.take(a, idx, axis=1, mode=np_mode))


def test_take_flat_embedding_lookup():
    A = tl.placeholder((4, 5), name="A")
    I = tl.placeholder((7,), "int64", name="I")
    G = T.take(A, I)
    H = ops.elemwise.multiply(G, 3.0)
    s = tl.create_schedule(H)
    s[G].compute_inline()
    split_fuse_vectorize(s, H, factor=4, parallel=False)
    a = rand((4, 5))
    idx = rand((7,), "int64", 0, 20)
    check(s, [A, I, H], [a, idx], np.take(a, idx) * 3)


def test_expand_dims_squeeze_broadcast_to_flip_chain():
    A = tl.placeholder((1, 5, 1, 3), name="A")
    B = T.squeeze(A)                      # (5, 3)
    C = T.expand_dims(B, 1, 2)            # (5, 1, 1, 3)
    D = T.broadcast_to(C, (2, 5, 4, 6, 3))
    F = T.flip(D, axis=(0, 4))
    s = tl.create_schedule(F)
    for X in (B, C, D):
        s[X].compute_inline()
    split_fuse_vectorize(s, F, factor=16)
    a = rand((1, 5, 1, 3))
    expect = np.flip(np.broadcast_to(np.expand_dims(np.squeeze(a), (1, 2)), (2, 5, 4, 6, 3)),
                     axis=(0, 4))
    check(s, [A, F], [a], expect)


def test_flip_and_squeeze_axis_computed_at():
    A = tl.placeholder((6, 1, 9), name="A")
    B = T.squeeze(A, axis=1)
    C = T.flip(B, axis=-1)
    s = tl.create_schedule(C)
    i, j = s[C].op.axis
    jo, ji = s[C].split(j, factor=4)
    s[B].compute_at(s[C], i)
    s[C].vectorize(ji)
    a = rand((6, 1, 9))
    check(s, [A, C], [a], a[:, 0, ::-1])


# -- argument errors ------------------------------------------------------------------------

def test_reshape_size_mismatch():
    A = tl.placeholder((4, 6), name="A")
    with pytest.raises(ShapeError, match=r"reshape: cannot reshape A of shape \(4, 6\) "
                                         r"\(24 elements\) into \(5, 5\)"):
        T.reshape(A, (5, 5))


def test_concatenate_mismatch_names_both():
    A = tl.placeholder((2, 3), name="A")
    B = tl.placeholder((3, 4), name="B")
    with pytest.raises(ShapeError, match=r"concatenate: B \(3, 4\) does not fit A \(2, 3\)"):
        T.concatenate([A, B], axis=1)
    C = tl.placeholder((2, 3), "float16", name="C")
    with pytest.raises(DTypeError, match="concatenate"):
        T.concatenate([A, C], axis=0)


def test_transpose_bad_axes_and_take_float_indices():
    A = tl.placeholder((2, 3), name="A")
    with pytest.raises(ShapeError, match="transpose: axes"):
        T.transpose(A, (0, 0))
    with pytest.raises(DTypeError, match="take: indices I has dtype float32"):
        T.take(A, tl.placeholder((2,), name="I"), axis=0)
    with pytest.raises(UserError, match="take: mode"):
        T.take(A, tl.placeholder((2,), "int32", name="J"), axis=0, mode="raise")


def test_pad_and_split_and_squeeze_errors():
    A = tl.placeholder((2, 5), name="A")
    with pytest.raises(ShapeError, match="pad: A has 2 dimensions"):
        T.pad(A, (1,), (1,))
    with pytest.raises(UserError, match="pad: pad_before must not be negative"):
        T.pad(A, (0, -1))
    with pytest.raises(ShapeError, match=r"split: dimension 1 of A \(5\)"):
        T.split(A, 2, axis=1)
    with pytest.raises(ShapeError, match="squeeze: dimension 0 of A has extent 2"):
        T.squeeze(A, axis=0)
    with pytest.raises(ShapeError, match="broadcast_to"):
        T.broadcast_to(A, (3, 5, 4))
