"""ops.elemwise against NumPy on random data, each under a non-trivial schedule."""
import math

import numpy as np
import pytest

import tensorlang as tl
from tensorlang import ops
from tensorlang.errors import DTypeError, ShapeError, UserError
from test_ops_harness import check, gelu_ref, rand, split_fuse_vectorize

E = ops.elemwise

BINARY = [
    ("add", np.add), ("subtract", np.subtract), ("multiply", np.multiply),
    ("divide", np.divide), ("maximum", np.maximum), ("minimum", np.minimum),
    ("power", np.power),
]


@pytest.mark.parametrize("name,ref", BINARY)
def test_binary_broadcast(name, ref):
    # (4, 1, 6) with (3, 6) -> (4, 3, 6): a stretched middle axis and a missing leading axis
    A = tl.placeholder((4, 1, 6), name="A")
    B = tl.placeholder((3, 6), name="B")
    C = getattr(E, name)(A, B)
    assert tuple(int(d) for d in C.shape) == (4, 3, 6)
    s = tl.create_schedule(C)
    i, j, k = s[C].op.axis
    io, ii = s[C].split(i, factor=3)          # 4 % 3 != 0: a guarded tail
    s[C].reorder(io, j, ii, k)
    s[C].parallel(io)
    s[C].vectorize(k)
    low = 0.5 if name == "power" else -2.0   # power: positive bases keep NumPy finite
    a, b = rand((4, 1, 6), low=low, high=2.0), rand((3, 6), low=0.5, high=2.0)
    check(s, [A, B, C], [a, b], ref(a, b), rtol=1e-5)


@pytest.mark.parametrize("name,ref", BINARY[:4])
def test_binary_with_scalar_on_either_side(name, ref):
    A = tl.placeholder((5, 7), name="A")
    C = getattr(E, name)(A, 1.5)
    D = getattr(E, name)(2.5, C)
    s = tl.create_schedule(D)
    s[C].compute_inline()
    split_fuse_vectorize(s, D, factor=4)
    a = rand((5, 7), low=0.5, high=2.0)
    check(s, [A, D], [a], ref(np.float32(2.5), ref(a, np.float32(1.5))), rtol=1e-5)


def test_broadcast_both_sides_stretch():
    A = tl.placeholder((6, 1), name="A")
    B = tl.placeholder((1, 9), name="B")
    C = E.add(A, B)
    s = tl.create_schedule(C)
    fused = s[C].fuse(*s[C].op.axis)
    o, i = s[C].split(fused, factor=5)    # 54 % 5 != 0
    s[C].parallel(o)
    a, b = rand((6, 1)), rand((1, 9))
    check(s, [A, B, C], [a, b], a + b)


def test_integer_arithmetic_and_cast():
    A = tl.placeholder((3, 10), "int32", name="A")
    B = tl.placeholder((10,), "int32", name="B")
    C = E.multiply(E.add(A, B), 3)
    Q = E.floor_divide(C, 7)                   # rounds toward minus infinity, like NumPy
    D = E.cast(Q, "float32")
    s = tl.create_schedule(D)
    for X in (Q, C, C.op.input_tensors[0]):
        s[X].compute_inline()
    split_fuse_vectorize(s, D, factor=8)
    a, b = rand((3, 10), "int32", -50, 50), rand((10,), "int32", -50, 50)
    check(s, [A, B, D], [a, b], (((a + b) * 3) // 7).astype("float32"))


def test_cast_float_to_int_truncates():
    A = tl.placeholder((40,), name="A")
    B = E.cast(A, "int32")
    s = tl.create_schedule(B)
    o, i = s[B].split(B.op.axis[0], factor=16)
    s[B].vectorize(i)
    a = rand((40,), low=-10, high=10)
    check(s, [A, B], [a], a.astype("int32"))


def _sigmoid(x):
    return (1.0 / (1.0 + np.exp(-x.astype("float64")))).astype("float32")


UNARY = [
    ("relu", lambda x: np.maximum(x, 0), -2, 2),
    ("leaky_relu", lambda x: np.where(x > 0, x, 0.01 * x), -2, 2),
    ("sigmoid", _sigmoid, -6, 6),
    ("tanh", np.tanh, -3, 3),
    ("exp", np.exp, -3, 3),
    ("log", np.log, 0.1, 5),
    ("sqrt", np.sqrt, 0.1, 5),
    ("rsqrt", lambda x: 1 / np.sqrt(x), 0.1, 5),
    ("gelu", gelu_ref, -3, 3),
    ("erf", np.vectorize(math.erf, otypes=["float32"]), -2, 2),
    ("negative", np.negative, -2, 2),
    ("abs", np.abs, -2, 2),
]


@pytest.mark.parametrize("name,ref,low,high", UNARY)
def test_unary(name, ref, low, high):
    A = tl.placeholder((3, 29), name="A")
    B = getattr(E, name)(A)
    s = tl.create_schedule(B)
    i, j = s[B].op.axis
    jo, ji = s[B].split(j, factor=8)        # 29 % 8 != 0, vectorized tail
    s[B].reorder(jo, i, ji)
    s[B].parallel(jo)
    s[B].vectorize(ji)
    a = rand((3, 29), low=low, high=high)
    check(s, [A, B], [a], ref(a), rtol=2e-5, atol=2e-6)


def test_leaky_relu_alpha_and_relu_chain_inlined():
    A = tl.placeholder((7, 13), name="A")
    B = E.leaky_relu(A, alpha=0.2)
    C = E.sigmoid(B)
    D = E.relu(E.subtract(C, 0.5))
    s = tl.create_schedule(D)
    for T in (B, C, D.op.input_tensors[0]):
        s[T].compute_inline()
    split_fuse_vectorize(s, D, factor=16)
    a = rand((7, 13), low=-3, high=3)
    expect = np.maximum(_sigmoid(np.where(a > 0, a, 0.2 * a)) - 0.5, 0)
    check(s, [A, D], [a], expect, rtol=1e-5, atol=1e-6)


def test_clip():
    A = tl.placeholder((4, 25), name="A")
    B = E.clip(A, -0.5, 0.25)
    s = tl.create_schedule(B)
    split_fuse_vectorize(s, B, factor=8)
    a = rand((4, 25))
    check(s, [A, B], [a], np.clip(a, -0.5, 0.25))


def test_where_broadcasts_condition_and_scalar():
    Cd = tl.placeholder((5, 1), "bool", name="Cd")
    X = tl.placeholder((5, 12), name="X")
    Z = E.where(Cd, X, -1.0)
    s = tl.create_schedule(Z)
    i, j = s[Z].op.axis
    jo, ji = s[Z].split(j, factor=5)
    s[Z].reorder(jo, i, ji)
    s[Z].parallel(jo)
    c, x = rand((5, 1), "bool"), rand((5, 12))
    check(s, [Cd, X, Z], [c, x], np.where(c, x, np.float32(-1.0)))


def test_where_of_two_tensors_with_float_condition():
    Cd = tl.placeholder((12,), name="Cd")
    X = tl.placeholder((3, 12), name="X")
    Y = tl.placeholder((3, 1), name="Y")
    G = E.maximum(Cd, 0.0)                   # positive where Cd > 0, else exactly zero
    Z = E.where(G, X, Y)
    s = tl.create_schedule(Z)
    s[G].compute_inline()
    split_fuse_vectorize(s, Z, factor=7)
    c, x, y = rand((12,)), rand((3, 12)), rand((3, 1))
    check(s, [Cd, X, Y, Z], [c, x, y], np.where(np.maximum(c, 0) != 0, x, y))


# -- argument errors ------------------------------------------------------------------------

def test_broadcast_mismatch_names_the_tensors():
    A = tl.placeholder((4, 3), name="A")
    B = tl.placeholder((4, 5), name="B")
    with pytest.raises(ShapeError, match=r"add: shapes cannot be broadcast.*A \(4, 3\).*B"):
        E.add(A, B)


def test_float_only_ops_refuse_integers():
    A = tl.placeholder((4,), "int32", name="A")
    with pytest.raises(DTypeError, match="exp: x A has dtype int32"):
        E.exp(A)


def test_two_scalars_are_refused():
    with pytest.raises(UserError, match="add: at least one operand must be a tensor"):
        E.add(1.0, 2.0)


def test_clip_bounds_must_fit_the_dtype():
    A = tl.placeholder((4,), "int32", name="A")
    with pytest.raises(DTypeError, match="clip: bounds"):
        E.clip(A, 0.5, 3)
