"""Loop partitioning moves the guards of non-divisible splits into tail loops."""
import numpy as np
import pytest

import tensorlang as tl
from tensorlang.ir.functor import post_order_visit
from tensorlang.ir.stmt import For, IfThenElse


def _count(func, cls):
    found = []
    post_order_visit(func.body, lambda n: found.append(n) if isinstance(n, cls) else None)
    return found


def _tiled(rows, cols=30):
    A = tl.placeholder((rows, cols), name="A")
    B = tl.compute((rows, cols), lambda i, j: A[i, j] * 2.0 + 1.0, name="B")
    s = tl.create_schedule(B)
    io, jo, ii, ji = s[B].tile(B.op.axis[0], B.op.axis[1], 6, 8)
    s[B].vectorize(ji)
    s[B].parallel(io)
    return s, [A, B]


def test_main_loop_has_no_guard_and_tail_keeps_it():
    s, args = _tiled(20)
    func = tl.lower(s, args)
    loops = [f for f in _count(func, For) if f.kind == "parallel"]
    assert len(loops) == 2  # main part and tail part of the row tiles
    main, tail = loops
    assert not _count(main, IfThenElse)
    with tl.config(disabled_passes=["loop_partition"]):
        unpartitioned = tl.lower(s, args)
    assert _count(unpartitioned, IfThenElse)


@pytest.mark.parametrize("rows", [1, 5, 6, 13, 20])
def test_partitioned_code_matches_numpy_for_symbolic_rows(rows):
    n = tl.var("n")
    s, args = _tiled(n)
    f = tl.build(s, args)
    a = np.random.default_rng(rows).standard_normal((rows, 30)).astype("float32")
    b = np.full_like(a, np.nan)
    f(a, b)
    np.testing.assert_allclose(b, a * 2 + 1, rtol=1e-6)


def test_divisible_split_is_left_alone():
    s, args = _tiled(24, 32)
    func = tl.lower(s, args)
    assert len([f for f in _count(func, For) if f.kind == "parallel"]) == 1
    assert not _count(func, IfThenElse)


def _padding_copy(h, w, pad, lanes):
    from tensorlang import math as tm
    X = tl.placeholder((2, h, w), name="X")
    P = tl.compute((2, h + 2 * pad, w + 2 * pad), lambda c, y, x: tm.if_then_else(
        tm.all(y >= pad, y < h + pad, x >= pad, x < w + pad), X[c, y - pad, x - pad], 0.0),
        name="P")
    s = tl.create_schedule(P)
    _, xi = s[P].split(P.op.axis[2], factor=lanes)
    s[P].vectorize(xi)
    return s, [X, P]


def _guards(node):
    from tensorlang.expr import Call
    return [c for c in _count(node, Call) if c.op == "if_then_else"]


def test_padding_guards_run_only_at_the_borders():
    s, args = _padding_copy(12, 16, 1, 4)
    func = tl.lower(s, args)
    rows = [f for f in _count(func, For) if f.loop_var.name == "y"]
    interior = [f for f in rows if f.min.value == 1 and f.extent.value == 12]
    assert len(interior) == 1
    # inside the interior rows, only the first and last vector of a row keep a guard
    cols = [f for f in _count(interior[0], For) if f.loop_var.name == "x.outer"]
    assert any(not _guards(f) and f.extent.value == 3 for f in cols)
    with tl.config(disabled_passes=["loop_partition"]):
        assert len(_guards(tl.lower(s, args))) == 1


@pytest.mark.parametrize("h,w,pad,lanes", [(12, 16, 1, 4), (5, 7, 2, 4), (1, 1, 3, 2),
                                           (3, 30, 1, 8)])
def test_padding_copy_partitioned_matches_numpy(h, w, pad, lanes):
    s, args = _padding_copy(h, w, pad, lanes)
    f = tl.build(s, args)
    x = np.random.default_rng(h * w).standard_normal((2, h, w)).astype("float32")
    got = np.full((2, h + 2 * pad, w + 2 * pad), np.nan, np.float32)
    f(x, got)
    np.testing.assert_array_equal(got, np.pad(x, ((0, 0), (pad, pad), (pad, pad))))
