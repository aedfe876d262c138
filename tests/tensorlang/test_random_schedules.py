"""Schedules never change meaning: random legal schedules of matmul and of conv2d + relu,
each built with LLVM and compared with NumPy on random data."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tensorlang as tl

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def _const_extent(stage, leaf):
    from tensorlang.lower.relations import static_extent
    e = static_extent(stage, leaf)
    return e.value if isinstance(e, tl.expr.IntImm) else None


def _annotate(draw, stage, allow_parallel=True):
    """Random reorder / fuse / vectorize / unroll / parallel choices on a stage's leaves."""
    leaves = list(stage.leaf_iter_vars)
    if len(leaves) > 1 and draw(st.booleans()):
        stage.reorder(*draw(st.permutations(leaves)))
    leaves = list(stage.leaf_iter_vars)
    if len(leaves) >= 2 and draw(st.booleans()):
        pos = draw(st.integers(0, len(leaves) - 2))
        a, b = leaves[pos], leaves[pos + 1]
        if (a.kind == "reduce") == (b.kind == "reduce"):
            stage.fuse(a, b)
    leaves = list(stage.leaf_iter_vars)
    constant = [lf for lf in leaves if _const_extent(stage, lf) is not None
                and _const_extent(stage, lf) <= 16]
    if constant and draw(st.booleans()):
        stage.vectorize(draw(st.sampled_from(constant)))
    spare = [lf for lf in constant if lf not in stage.iter_attrs]
    if spare and draw(st.booleans()):
        stage.unroll(draw(st.sampled_from(spare)))
    data = [lf for lf in stage.leaf_iter_vars if lf.kind != "reduce" and lf not in stage.iter_attrs]
    if allow_parallel and data and draw(st.booleans()):
        stage.parallel(draw(st.sampled_from(data)))


def _split_some(draw, stage, axes):
    for ax in axes:
        if draw(st.booleans()):
            stage.split(ax, factor=draw(st.integers(1, 9)))


@st.composite
def matmul_case(draw):
    m, n, k = (draw(st.integers(1, 23)) for _ in range(3))
    A = tl.placeholder((m, k), name="A")
    B = tl.placeholder((k, n), name="B")
    r = tl.reduce_axis((0, k), name="r")
    C = tl.compute((m, n), lambda i, j: tl.sum(A[i, r] * B[r, j], axis=r), name="C")
    s = tl.create_schedule(C)
    if draw(st.booleans()):
        CC = s.cache_write(C, "local")
        _split_some(draw, s[C], list(s[C].op.axis))
        _annotate(draw, s[C])
        where = draw(st.sampled_from(s[C].leaf_iter_vars + [None]))
        if where is not None:
            s[CC].compute_at(s[C], where)
        _split_some(draw, s[CC], list(s[CC].op.axis) + list(s[CC].op.reduce_axis))
        _annotate(draw, s[CC], allow_parallel=where is None)
    else:
        _split_some(draw, s[C], list(C.op.axis) + list(C.op.reduce_axis))
        _annotate(draw, s[C])
    return (m, n, k), s, [A, B, C]


@SETTINGS
@given(matmul_case())
def test_random_matmul_schedules(case):
    (m, n, k), s, args = case
    rng = np.random.default_rng(m * 1000 + n * 31 + k)
    a = rng.standard_normal((m, k)).astype("float32")
    b = rng.standard_normal((k, n)).astype("float32")
    c = np.full((m, n), np.nan, "float32")
    f = tl.build(s, args)
    f(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


@st.composite
def conv_relu_case(draw):
    n, ci, co = 1, draw(st.integers(1, 3)), draw(st.integers(1, 4))
    h, w = draw(st.integers(3, 9)), draw(st.integers(3, 9))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pad = draw(st.integers(0, 1))
    X = tl.placeholder((n, ci, h, w), name="X")
    W = tl.placeholder((co, ci, kh, kw), name="W")
    P = tl.compute((n, ci, h + 2 * pad, w + 2 * pad),
                   lambda b, c, y, x: tl.if_then_else(
                       tl.all(y >= pad, y < h + pad, x >= pad, x < w + pad),
                       X[b, c, y - pad, x - pad], 0.0), name="P")
    oh, ow = h + 2 * pad - kh + 1, w + 2 * pad - kw + 1
    rc = tl.reduce_axis((0, ci), name="rc")
    ry = tl.reduce_axis((0, kh), name="ry")
    rx = tl.reduce_axis((0, kw), name="rx")
    conv = tl.compute((n, co, oh, ow), lambda b, f, y, x: tl.sum(
        P[b, rc, y + ry, x + rx] * W[f, rc, ry, rx], axis=[rc, ry, rx]), name="conv")
    relu = tl.compute(conv.shape, lambda *i: tl.max(conv(*i), 0.0), name="relu")
    s = tl.create_schedule(relu)
    _split_some(draw, s[relu], list(relu.op.axis))
    _annotate(draw, s[relu])
    conv_at = draw(st.sampled_from(s[relu].leaf_iter_vars + [None]))
    if conv_at is not None:
        s[conv].compute_at(s[relu], conv_at)
    _split_some(draw, s[conv], list(conv.op.axis) + list(conv.op.reduce_axis))
    _annotate(draw, s[conv], allow_parallel=conv_at is None)
    pad_choice = draw(st.sampled_from(["root", "inline", "at"]))
    if pad_choice == "inline":
        s[P].compute_inline()
    elif pad_choice == "at":
        s[P].compute_at(s[conv], draw(st.sampled_from(s[conv].leaf_iter_vars)))
    return (ci, co, h, w, kh, kw, pad), s, [X, W, relu]


def _conv_reference(x, wt, pad):
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    co, ci, kh, kw = wt.shape
    oh, ow = xp.shape[2] - kh + 1, xp.shape[3] - kw + 1
    out = np.zeros((x.shape[0], co, oh, ow), np.float64)
    for dy in range(kh):
        for dx in range(kw):
            patch = xp[:, :, dy:dy + oh, dx:dx + ow]
            out += np.einsum("bchw,fc->bfhw", patch, wt[:, :, dy, dx])
    return np.maximum(out, 0)


@SETTINGS
@given(conv_relu_case())
def test_random_conv_relu_schedules(case):
    (ci, co, h, w, kh, kw, pad), s, args = case
    rng = np.random.default_rng(ci * 7 + co * 13 + h * 17 + w)
    x = rng.standard_normal((1, ci, h, w)).astype("float32")
    wt = rng.standard_normal((co, ci, kh, kw)).astype("float32")
    out = np.full((1, co, h + 2 * pad - kh + 1, w + 2 * pad - kw + 1), np.nan, "float32")
    f = tl.build(s, args)
    f(x, wt, out)
    np.testing.assert_allclose(out, _conv_reference(x, wt, pad), rtol=1e-4, atol=1e-4)
