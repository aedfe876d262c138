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
