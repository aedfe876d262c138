"""Winograd convolution (tensorlang.ops.winograd): the transform matrices, the DSL stages built
with their schedule on the LLVM backend against a float64 NumPy convolution, and bad input."""
import numpy as np
import pytest

import tensorlang as tl
from tensorlang.errors import ShapeError
from tensorlang.ops.winograd import (conv2d_winograd_nchwc, schedule_winograd,
                                     winograd_matrices, winograd_weight)


def _blocked(x: np.ndarray, block: int) -> np.ndarray:
    n, c, h, w = x.shape
    return np.ascontiguousarray(x.reshape(n, c // block, block, h, w).transpose(0, 1, 3, 4, 2))


def _conv(x, w, pads):
    """Direct NCHW x OIHW correlation in float64; ``pads`` = (top, left, bottom, right)."""
    top, left, bottom, right = pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))
    r = w.shape[2]
    oh, ow = xp.shape[2] - r + 1, xp.shape[3] - r + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for i in range(r):
        for j in range(r):
            out += np.einsum("nchw,kc->nkhw", xp[:, :, i:i + oh, j:j + ow], w[:, :, i, j])
    return out


@pytest.mark.parametrize("tile", [2, 4, 6])
def test_matrices_compute_a_one_dimensional_correlation(tile):
    at, g, bt = winograd_matrices(tile, 3)
    assert at.shape == (tile, tile + 2) and g.shape == (tile + 2, 3) and bt.shape == (tile + 2,) * 2
    rng = np.random.default_rng(tile)
    for _ in range(5):
        kernel, data = rng.standard_normal(3), rng.standard_normal(tile + 2)
        want = np.array([kernel @ data[i:i + 3] for i in range(tile)])
        np.testing.assert_allclose(at @ ((g @ kernel) * (bt @ data)), want, rtol=1e-12,
                                   atol=1e-12)


def test_f4_input_transform_is_the_standard_integer_matrix():
    _, _, bt = winograd_matrices(4, 3)
    assert np.array_equal(bt[0], [4, 0, -5, 0, 1, 0])
    assert np.array_equal(bt[5], [0, 4, 0, -5, 0, 1])
    assert np.all(bt == np.round(bt))  # integer coefficients: exact in float32


@pytest.mark.parametrize("n,c,h,w,k,cb,kb,tile,pads", [
    (1, 16, 14, 14, 16, 8, 8, 4, (1, 1, 1, 1)),    # 14 = 3 whole tiles + a partial one
    (2, 8, 9, 11, 16, 4, 8, 2, (1, 1, 1, 1)),      # batch 2, odd sizes, other output block
    (1, 8, 10, 7, 8, 8, 4, 4, (0, 1, 2, 0)),       # uneven padding
])
def test_scheduled_winograd_conv_matches_numpy(n, c, h, w, k, cb, kb, tile, pads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    u = winograd_weight(weight, tile)
    assert u.shape == ((tile + 2) ** 2, c, k)
    X = tl.placeholder((n, c // cb, h, w, cb), name="X")
    U = tl.placeholder(u.shape, name="U")
    Y = conv2d_winograd_nchwc(X, U, tile=tile, padding=pads, out_block=kb)
    want = _blocked(_conv(x, weight, pads), kb)
    assert tuple(int(d) for d in Y.shape) == want.shape
    s = tl.create_schedule(Y)
    schedule_winograd(s, s[Y])
    f = tl.build(s, [X, U, Y])
    out = np.zeros(want.shape, np.float32)
    f(_blocked(x, cb), u, out)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_unscheduled_winograd_conv_with_its_dsl_product_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    weight = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    X = tl.placeholder((1, 1, 6, 6, 4), name="X")
    U = tl.placeholder((16, 4, 4), name="U")
    Y = conv2d_winograd_nchwc(X, U, tile=2, padding=1)
    f = tl.build(tl.create_schedule(Y), [X, U, Y])
    out = np.zeros((1, 1, 6, 6, 4), np.float32)
    f(_blocked(x, 4), winograd_weight(weight, 2), out)
    want = _blocked(_conv(x, weight, (1, 1, 1, 1)), 4)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_bad_input_names_what_is_wrong():
    X = tl.placeholder((1, 2, 8, 8, 8), name="X")
    with pytest.raises(ShapeError, match="weight U .*F\\(4x4, 3x3\\)"):
        conv2d_winograd_nchwc(X, tl.placeholder((16, 16, 8), name="U"), tile=4)
    with pytest.raises(ShapeError, match="tile must be one of"):
        conv2d_winograd_nchwc(X, tl.placeholder((49, 16, 8), name="U"), tile=5)
    with pytest.raises(ShapeError, match="out_block 3"):
        conv2d_winograd_nchwc(X, tl.placeholder((36, 16, 8), name="U"), tile=4, out_block=3)
    with pytest.raises(ShapeError, match="larger than the padded input"):
        conv2d_winograd_nchwc(tl.placeholder((1, 2, 2, 2, 8), name="X"),
                              tl.placeholder((36, 16, 8), name="U"), tile=4)
    with pytest.raises(ShapeError, match="square OIHW"):
        winograd_weight(np.zeros((4, 4, 3, 2), np.float32), 4)
    s = tl.create_schedule(tl.compute((4,), lambda i: X[0, 0, 0, 0, i], name="Z"))
    with pytest.raises(ShapeError, match="no winograd_pad"):
        schedule_winograd(s, s.stages[-1])
