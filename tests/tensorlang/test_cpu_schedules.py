"""Each hand schedule of ``tensorlang.ops.cpu_schedules`` built at small sizes and checked
against NumPy on random data."""
import math

import numpy as np
import pytest

import tensorlang as tl
from tensorlang.ops import cpu_schedules as cs

LANES = 8
RNG = np.random.default_rng(7)


def _run(sched, inputs):
    s, args = sched
    f = tl.build(s, args, target="llvm")
    out = np.empty([int(d) for d in args[-1].shape], np.float32)
    f(*inputs, out)
    return out


def _rand(*shape):
    return RNG.standard_normal(shape, dtype=np.float32)


def _conv_ref(x, w, stride, pad):
    n, c, h, wd = x.shape
    k, _, r, q = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - r) // stride + 1, (wd + 2 * pad - q) // stride + 1
    out = np.zeros((n, k, oh, ow))
    for dr in range(r):
        for dq in range(q):
            patch = xp[:, :, dr:dr + stride * oh:stride, dq:dq + stride * ow:stride]
            out += np.einsum("kc,nchw->nkhw", w[:, :, dr, dq], patch)
    return out


@pytest.mark.parametrize("m,n,k", [(24, 32, 20), (20, 40, 16)])
def test_matmul_packed(m, n, k):
    a, b = _rand(m, k), _rand(k, n)
    out = _run(cs.matmul_packed(m, n, k, vector_lanes=LANES), [a, b])
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("c,h,k,r,stride,pad", [
    (16, 12, 32, 3, 1, 1),      # 3x3, blocked layout
    (16, 12, 16, 3, 2, 1),      # 3x3 stride 2
    (8, 10, 8, 3, 1, 0),        # one vector of output channels, no padding
])
def test_conv2d_nchw_blocked(c, h, k, r, stride, pad):
    x, w = _rand(1, c, h, h), _rand(k, c, r, r)
    out = _run(cs.conv2d_nchw(1, c, h, h, k, r, stride, pad, vector_lanes=LANES), [x, w])
    np.testing.assert_allclose(out, _conv_ref(x, w, stride, pad), rtol=1e-4, atol=1e-4)


def test_conv2d_nchw_1x1_takes_flat_views():
    c, h, k = 32, 8, 24
    x, w = _rand(1, c, h, h), _rand(k, c, 1, 1)
    out = _run(cs.conv2d_nchw(1, c, h, h, k, 1, vector_lanes=LANES),
               [x.reshape(1, c, h * h), w.reshape(k, c)])
    np.testing.assert_allclose(out.reshape(1, k, h, h), _conv_ref(x, w, 1, 0),
                               rtol=1e-4, atol=1e-4)


def test_depthwise_conv2d_nchw():
    x, w = _rand(1, 6, 16, 16), _rand(6, 1, 3, 3)
    out = _run(cs.depthwise_conv2d_nchw(1, 6, 16, 16, vector_lanes=LANES), [x, w])
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expect = sum(xp[:, :, r:r + 16, q:q + 16] * w[None, :, 0, r, q, None, None]
                 for r in range(3) for q in range(3))
    np.testing.assert_allclose(out, expect, rtol=1e-4, atol=1e-5)


def test_softmax_rows():
    x = _rand(6, 64) * 4
    out = _run(cs.softmax_rows(6, 64, vector_lanes=LANES), [x])
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(out, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_softmax_rows_nan_and_inf_rows_as_numpy():
    x = _rand(4, 64)
    x[1, 5] = np.nan          # a NaN anywhere in a row: the whole row is NaN
    x[2, 7] = -np.inf         # -inf: that entry is 0
    x[3, :] = -np.inf         # all -inf: NaN (inf - inf)
    out = _run(cs.softmax_rows(4, 64, vector_lanes=LANES), [x])
    with np.errstate(invalid="ignore"):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        expect = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-7)


def test_layer_norm_rows():
    x, g, b = _rand(5, 96) + 3, _rand(96), _rand(96)
    out = _run(cs.layer_norm_rows(5, 96, vector_lanes=LANES), [x, g, b])
    x64 = x.astype(np.float64)
    m, v = x64.mean(axis=1, keepdims=True), x64.var(axis=1, keepdims=True)
    np.testing.assert_allclose(out, (x64 - m) / np.sqrt(v + 1e-5) * g + b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [1000, 1 << 18])
def test_gelu(size):
    x = _rand(size) * 3
    out = _run(cs.gelu(size, vector_lanes=LANES), [x])
    erf = np.vectorize(math.erf)
    x64 = x.astype(np.float64)
    expect = x64 * 0.5 * (1 + erf(x64 / math.sqrt(2)))
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-6)
