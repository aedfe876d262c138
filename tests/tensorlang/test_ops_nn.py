"""ops.nn against NumPy on random data, each under a non-trivial schedule."""
import numpy as np
import pytest

import tensorlang as tl
from tensorlang import ops
from tensorlang.errors import DTypeError, ShapeError, UserError
from test_ops_harness import build_kernel, check, gelu_ref, rand, split_fuse_vectorize

NN = ops.nn


# -- NumPy references ----------------------------------------------------------------------

def conv2d_ref(x, w, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    n, c, h, wd = x.shape
    k, cg, kh, kw = w.shape
    top, left, bottom, right = pads
    xp = np.pad(x.astype("float64"), ((0, 0), (0, 0), (top, bottom), (left, right)))
    oh = (h + top + bottom - (kh - 1) * dilation[0] - 1) // stride[0] + 1
    ow = (wd + left + right - (kw - 1) * dilation[1] - 1) // stride[1] + 1
    out = np.zeros((n, k, oh, ow))
    kg = k // groups
    for f in range(k):
        g = f // kg
        for ry in range(kh):
            for rx in range(kw):
                ys = ry * dilation[0]
                xs = rx * dilation[1]
                patch = xp[:, g * cg:(g + 1) * cg, ys:ys + stride[0] * oh:stride[0],
                           xs:xs + stride[1] * ow:stride[1]]
                out[:, f] += np.einsum("nchw,c->nhw", patch, w[f, :, ry, rx])
    return out.astype("float32")


def pool_ref(x, kernel, stride, pads, pool_type, ceil_mode=False, count_include_pad=True):
    """PyTorch's pooling semantics written out."""
    n, c, h, w = x.shape
    top, left, bottom, right = pads

    def out_size(size, lo, hi, k, s):
        span = size + lo + hi - k
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= size + lo:
            o -= 1
        return o

    oh = out_size(h, top, bottom, kernel[0], stride[0])
    ow = out_size(w, left, right, kernel[1], stride[1])
    out = np.zeros((n, c, oh, ow), "float64")
    for y in range(oh):
        for xx in range(ow):
            y0, x0 = y * stride[0] - top, xx * stride[1] - left
            y1, x1 = min(y0 + kernel[0], h + bottom), min(x0 + kernel[1], w + right)
            window = x[:, :, max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
            if pool_type == "max":
                out[:, :, y, xx] = window.max(axis=(2, 3))
            else:
                count = (y1 - y0) * (x1 - x0) if count_include_pad else \
                    window.shape[2] * window.shape[3]
                out[:, :, y, xx] = window.sum(axis=(2, 3)) / count
    return out.astype("float32")


def softmax_ref(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# -- matmul family -------------------------------------------------------------------------

@pytest.mark.parametrize("transpose_a,transpose_b", [(False, False), (True, False),
                                                     (False, True), (True, True)])
def test_matmul_tiled(transpose_a, transpose_b):
    m, n, k = 19, 13, 23
    A = tl.placeholder((k, m) if transpose_a else (m, k), name="A")
    B = tl.placeholder((n, k) if transpose_b else (k, n), name="B")
    C = NN.matmul(A, B, transpose_a, transpose_b)
    s = tl.create_schedule(C)
    i, j = s[C].op.axis
    io, jo, ii, ji = s[C].tile(i, j, 8, 4)           # 19, 13: both tails
    ko, ki = s[C].split(s[C].op.reduce_axis[0], factor=5)
    s[C].reorder(io, jo, ko, ii, ki, ji)
    s[C].vectorize(ji)
    s[C].parallel(io)
    a = rand(tuple(int(d) for d in A.shape), seed=1)
    b = rand(tuple(int(d) for d in B.shape), seed=2)
    expect = (a.T if transpose_a else a) @ (b.T if transpose_b else b)
    check(s, [A, B, C], [a, b], expect, rtol=1e-4, atol=1e-5)


def test_matmul_symbolic_rows_several_sizes():
    n = tl.var("n")
    A = tl.placeholder((n, 24), name="A")
    B = tl.placeholder((24, 10), name="B")
    C = NN.matmul(A, B)
    s = tl.create_schedule(C)
    i, j = s[C].op.axis
    io, ii = s[C].split(i, factor=4)
    ko, ki = s[C].split(s[C].op.reduce_axis[0], factor=8)
    s[C].reorder(io, ko, ii, ki, j)
    s[C].parallel(io)
    s[C].vectorize(j)
    f = build_kernel(s, [A, B, C])
    b = rand((24, 10), seed=3)
    for rows in (1, 6, 17, 32):
        a = rand((rows, 24), seed=rows)
        check(s, [A, B, C], [a, b], a @ b, func=f)


def test_dense_with_bias_cache_write():
    X = tl.placeholder((9, 32), name="X")
    W = tl.placeholder((20, 32), name="W")
    Bias = tl.placeholder((20,), name="Bias")
    Y = NN.dense(X, W, Bias)
    D = Y.op.input_tensors[0]
    s = tl.create_schedule(Y)
    DL = s.cache_write(D, "local")
    i, j = s[D].op.axis
    io, jo, ii, ji = s[D].tile(i, j, 4, 8)           # 9 % 4, 20 % 8: both tails
    s[D].parallel(io)
    s[D].vectorize(ji)
    s[DL].compute_at(s[D], jo)                      # accumulate one 4x8 tile locally
    ko, ki = s[DL].split(s[DL].op.reduce_axis[0], factor=4)
    di, dj = s[DL].op.axis
    s[DL].reorder(ko, di, ki, dj)
    s[DL].vectorize(dj)
    split_fuse_vectorize(s, Y, factor=16)
    x, w, bias = rand((9, 32)), rand((20, 32)), rand((20,))
    check(s, [X, W, Bias, Y], [x, w, bias], x @ w.T + bias)


def test_dense_relu_fused_and_rfactor():
    X = tl.placeholder((4, 200), name="X")
    W = tl.placeholder((6, 200), name="W")
    D = NN.dense(X, W)
    Y = NN.relu(D)
    s = tl.create_schedule(Y)
    ko, ki = s[D].split(s[D].op.reduce_axis[0], factor=16)     # 200 % 16 != 0
    DF = s.rfactor(D, ki)
    s[DF].parallel(s[DF].op.axis[0])
    fused = s[Y].fuse(*s[Y].op.axis)
    o, i = s[Y].split(fused, factor=8)
    s[Y].vectorize(i)
    x, w = rand((4, 200)), rand((6, 200))
    check(s, [X, W, Y], [x, w], np.maximum(x @ w.T, 0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("transpose_b", [False, True])
def test_batch_matmul(transpose_b):
    A = tl.placeholder((3, 7, 12), name="A")
    B = tl.placeholder((3, 10, 12) if transpose_b else (3, 12, 10), name="B")
    C = NN.batch_matmul(A, B, transpose_b=transpose_b)
    s = tl.create_schedule(C)
    b, i, j = s[C].op.axis
    bi = s[C].fuse(b, i)
    o, inner = s[C].split(bi, factor=4)                         # 21 % 4 != 0
    ko, ki = s[C].split(s[C].op.reduce_axis[0], factor=5)
    s[C].reorder(o, inner, ko, ki, j)
    s[C].parallel(o)
    s[C].vectorize(j)
    a, bb = rand((3, 7, 12)), rand(tuple(int(d) for d in B.shape))
    expect = a @ (np.swapaxes(bb, 1, 2) if transpose_b else bb)
    check(s, [A, B, C], [a, bb], expect)


def test_batch_matmul_broadcasts_batch_one():
    A = tl.placeholder((1, 5, 6), name="A")
    B = tl.placeholder((4, 6, 3), name="B")
    C = NN.batch_matmul(A, B)
    s = tl.create_schedule(C)
    CL = s.cache_write(C, "local")
    s[CL].compute_at(s[C], s[C].op.axis[0])
    s[C].parallel(s[C].op.axis[0])
    a, b = rand((1, 5, 6)), rand((4, 6, 3))
    check(s, [A, B, C], [a, b], a @ b)


# -- convolution ---------------------------------------------------------------------------

CONV_CASES = [
    # (data, kernel, stride, padding, dilation, groups)
    ((1, 8, 12, 12), (4, 8, 3, 3), 1, 1, 1, 1),
    ((1, 8, 12, 12), (4, 8, 3, 3), 2, (1, 2), 1, 1),
    ((2, 4, 11, 10), (6, 4, 3, 2), (2, 1), (1, 0, 2, 1), 1, 1),
    ((1, 8, 12, 12), (4, 8, 3, 3), 1, 2, 2, 1),
    ((1, 8, 10, 10), (6, 4, 3, 3), 1, 1, 1, 2),
    ((1, 6, 9, 9), (6, 1, 3, 3), 2, 1, 1, 6),           # depthwise through groups
]


@pytest.mark.parametrize("dshape,kshape,stride,padding,dilation,groups", CONV_CASES)
def test_conv2d_nchw_pad_computed_at(dshape, kshape, stride, padding, dilation, groups):
    X = tl.placeholder(dshape, name="X")
    W = tl.placeholder(kshape, name="W")
    Y = NN.conv2d_nchw(X, W, stride, padding, dilation, groups)
    s = tl.create_schedule(Y)
    n, f, y, x = s[Y].op.axis
    rc, ry, rx = s[Y].op.reduce_axis
    yo, yi = s[Y].split(y, factor=4)
    s[Y].reorder(n, f, yo, rc, ry, yi, rx, x)
    s[Y].parallel(f)
    if Y.op.input_tensors[0].op.name == "pad_temp":
        s[Y.op.input_tensors[0]].compute_at(s[Y], yo)
    x_np, w_np = rand(dshape, seed=4), rand(kshape, seed=5)
    pads = padding if isinstance(padding, tuple) and len(padding) == 4 else \
        (padding[0], padding[1]) * 2 if isinstance(padding, tuple) else (padding,) * 4
    pair = (lambda v: v if isinstance(v, tuple) else (v, v))
    expect = conv2d_ref(x_np, w_np, pair(stride), pads, pair(dilation), groups)
    check(s, [X, W, Y], [x_np, w_np], expect, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dshape,kshape,stride,padding,dilation,blocks", [
    ((1, 8, 12, 12), (16, 8, 3, 3), 1, 1, 1, (None, None)),
    ((2, 6, 11, 10), (12, 6, 3, 2), (2, 1), (1, 0, 2, 1), 1, (2, 4)),
    ((1, 4, 9, 9), (8, 4, 3, 3), 1, 2, 2, (4, 8)),
])
def test_conv2d_nchw_blocked_matches_reference(dshape, kshape, stride, padding, dilation,
                                               blocks):
    X = tl.placeholder(dshape, name="X")
    W = tl.placeholder(kshape, name="W")
    Y = NN.conv2d_nchw_blocked(X, W, stride, padding, dilation, c_block=blocks[0],
                               k_block=blocks[1])
    assert [t.op.name for t in Y.op.input_tensors[0].op.input_tensors] == \
        ["data_pack", "kernel_pack"]
    s = tl.create_schedule(Y)
    x_np, w_np = rand(dshape, seed=6), rand(kshape, seed=7)
    pads = padding if isinstance(padding, tuple) else (padding,) * 4
    pair = (lambda v: v if isinstance(v, tuple) else (v, v))
    expect = conv2d_ref(x_np, w_np, pair(stride), pads, pair(dilation), 1)
    check(s, [X, W, Y], [x_np, w_np], expect, rtol=1e-4, atol=1e-4)


def test_conv2d_nchw_blocked_refuses_what_it_cannot_block():
    X = tl.placeholder((1, 8, 6, 6), name="X")
    with pytest.raises(ShapeError, match="k_block=3"):
        NN.conv2d_nchw_blocked(X, tl.placeholder((8, 8, 3, 3), name="W"), k_block=3)
    with pytest.raises(ShapeError, match="grouped"):
        NN.conv2d_nchw_blocked(X, tl.placeholder((8, 4, 3, 3), name="W"))


def test_conv2d_inline_pad_cache_write_vectorized():
    X = tl.placeholder((1, 8, 12, 12), name="X")
    W = tl.placeholder((4, 8, 3, 3), name="W")
    C = NN.conv2d_nchw(X, W, stride=1, padding=1)
    s = tl.create_schedule(C)
    s[C.op.input_tensors[0]].compute_inline()
    CL = s.cache_write(C, "local")
    n, f, y, x = s[C].op.axis
    xo, xi = s[C].split(x, factor=8)                  # 12 % 8 != 0
    fy = s[C].fuse(f, y)
    s[C].parallel(fy)
    s[C].vectorize(xi)
    s[CL].compute_at(s[C], fy)                        # one output row accumulated locally
    cn, cf, cy, cx = s[CL].op.axis
    rc, ry, rx = s[CL].op.reduce_axis
    s[CL].reorder(rc, ry, rx, cx)
    s[CL].vectorize(cx)
    x_np, w_np = rand((1, 8, 12, 12)), rand((4, 8, 3, 3))
    expect = conv2d_ref(x_np, w_np, pads=(1, 1, 1, 1))
    check(s, [X, W, C], [x_np, w_np], expect, rtol=1e-4, atol=1e-4)


def test_conv2d_relu_fused_into_row_loop():
    X = tl.placeholder((1, 8, 12, 12), name="X")
    W = tl.placeholder((4, 8, 3, 3), name="W")
    C = NN.conv2d_nchw(X, W, stride=1, padding=1)
    Y = NN.relu(C)
    s = tl.create_schedule(Y)
    pad = C.op.input_tensors[0]
    n, f, y, x = s[Y].op.axis
    fy = s[Y].fuse(f, y)
    s[Y].parallel(fy)
    s[Y].vectorize(x)
    s[C].compute_at(s[Y], fy)
    s[pad].compute_at(s[C], s[C].op.reduce_axis[0])   # only the rows one channel needs
    x_np, w_np = rand((1, 8, 12, 12)), rand((4, 8, 3, 3))
    expect = np.maximum(conv2d_ref(x_np, w_np, pads=(1, 1, 1, 1)), 0)
    check(s, [X, W, Y], [x_np, w_np], expect, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("multiplier,stride", [(1, 1), (2, 2)])
def test_depthwise_conv2d_nchw(multiplier, stride):
    X = tl.placeholder((1, 4, 10, 10), name="X")
    W = tl.placeholder((4, multiplier, 3, 3), name="W")
    Y = NN.depthwise_conv2d_nchw(X, W, stride=stride, padding=1)
    s = tl.create_schedule(Y)
    pad = Y.op.input_tensors[0]
    n, c, y, x = s[Y].op.axis
    co, ci = s[Y].split(c, factor=3)
    s[Y].parallel(co)
    s[pad].compute_at(s[Y], ci)
    ry, rx = s[Y].op.reduce_axis
    s[Y].reorder(y, ry, rx, x)
    s[Y].vectorize(x)
    x_np, w_np = rand((1, 4, 10, 10)), rand((4, multiplier, 3, 3))
    # depthwise == grouped conv with one input channel per group
    w_grouped = w_np.reshape(4 * multiplier, 1, 3, 3)
    expect = conv2d_ref(x_np, w_grouped, (stride, stride), (1, 1, 1, 1), groups=4)
    check(s, [X, W, Y], [x_np, w_np], expect, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size,kernel,stride,padding", [
    ((9, 11), 3, 2, 1), ((12, 12), 3, (1, 2), (0, 1, 2, 1)), ((10, 13), 5, 3, 2),
    ((7, 8), 3, (2, 1), 1), ((5, 6), 2, 2, 0)])
def test_depthwise_phased_matches_the_direct_form(size, kernel, stride, padding):
    """The column-phase form: same numbers as the direct depthwise conv, under its default
    schedule (phases materialized, vectors along the output width)."""
    from autotune.sketch import default_schedule
    h, w = size
    X = tl.placeholder((2, 5, h, w), name="X")
    W = tl.placeholder((5, 1, kernel, kernel), name="W")
    Y = NN.depthwise_conv2d_nchw_phased(X, W, stride=stride, padding=padding)
    x_np, w_np = rand((2, 5, h, w)), rand((5, 1, kernel, kernel))
    strides = (stride, stride) if isinstance(stride, int) else stride
    pads = {1: (1,) * 4, 2: (2,) * 4, 0: (0,) * 4}.get(padding, padding)
    expect = conv2d_ref(x_np, w_np, strides, pads, groups=5)
    assert Y.shape == expect.shape or tuple(int(d) for d in Y.shape) == expect.shape
    check(default_schedule([Y], 8), [X, W, Y], [x_np, w_np], expect, rtol=1e-4, atol=1e-5)
    text = str(tl.lower(default_schedule([Y], 8), [X, W, Y]))
    if strides[1] > 1:  # the convolution reads its phases contiguously: no strided ramps
        assert f", {strides[1]}, " not in text.split("phases[")[-1].split("]")[0]


def test_depthwise_phased_refuses_several_filters_per_channel():
    X = tl.placeholder((1, 4, 8, 8), name="X")
    with pytest.raises(ShapeError, match="one filter per channel"):
        NN.depthwise_conv2d_nchw_phased(X, tl.placeholder((4, 2, 3, 3), name="W"), stride=2)


# -- pooling -------------------------------------------------------------------------------

POOL_CASES = [
    # kernel, stride, padding, pool_type, ceil_mode, count_include_pad
    ((2, 2), (2, 2), (0, 0, 0, 0), "max", False, True),
    ((3, 3), (2, 2), (1, 1, 1, 1), "max", False, True),
    ((3, 3), (2, 2), (1, 1, 1, 1), "avg", False, True),
    ((3, 3), (2, 2), (1, 1, 1, 1), "avg", False, False),
    ((2, 3), (2, 2), (0, 1, 0, 1), "avg", True, True),
    ((3, 2), (2, 3), (1, 0, 1, 0), "max", True, True),
    ((3, 3), (2, 2), (1, 1, 1, 1), "avg", True, False),
]


@pytest.mark.parametrize("kernel,stride,pads,pool_type,ceil_mode,include", POOL_CASES)
def test_pool2d(kernel, stride, pads, pool_type, ceil_mode, include):
    X = tl.placeholder((1, 3, 11, 12), name="X")
    Y = NN.pool2d(X, kernel, stride, pads, pool_type, ceil_mode=ceil_mode,
                  count_include_pad=include)
    s = tl.create_schedule(Y)
    stages = {t.op.name: t for t in [Y] + Y.op.input_tensors +
              [u for t in Y.op.input_tensors for u in t.op.input_tensors]}
    if "pad_temp" in stages:
        s[stages["pad_temp"]].compute_inline()
    n, c, y, x = s[Y].op.axis
    yo, yi = s[Y].split(y, factor=3)
    s[Y].parallel(c)
    s[Y].reorder(n, c, yo, x, yi)
    if pool_type == "avg":
        s[stages["pool_sum"]].compute_at(s[Y], yo)
    x_np = rand((1, 3, 11, 12))
    expect = pool_ref(x_np, kernel, stride, pads, pool_type, ceil_mode, include)
    check(s, [X, Y], [x_np], expect, rtol=1e-5, atol=1e-6)


def test_conv2d_symbolic_batch_and_height():
    n, h = tl.var("n"), tl.var("h")
    X = tl.placeholder((n, 3, h, 9), name="X")
    W = tl.placeholder((4, 3, 3, 3), name="W")
    Y = NN.conv2d_nchw(X, W, stride=2, padding=1)
    s = tl.create_schedule(Y)
    b, f, y, x = s[Y].op.axis
    bf = s[Y].fuse(b, f)
    s[Y].parallel(bf)
    s[Y.op.input_tensors[0]].compute_at(s[Y], bf)
    func = build_kernel(s, [X, W, Y])
    w = rand((4, 3, 3, 3))
    for batch, height in ((1, 7), (2, 10)):
        x_np = rand((batch, 3, height, 9), seed=height)
        check(s, [X, W, Y], [x_np, w], conv2d_ref(x_np, w, (2, 2), (1, 1, 1, 1)), func=func,
              rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pool_type,include", [("avg", False), ("max", True)])
def test_pool2d_ceil_mode_symbolic_height(pool_type, include):
    h = tl.var("h")
    X = tl.placeholder((1, 2, h, 8), name="X")
    Y = NN.pool2d(X, (2, 3), 2, 1, pool_type, ceil_mode=True, count_include_pad=include)
    s = tl.create_schedule(Y)
    fused = s[Y].fuse(*s[Y].op.axis[:3])
    o, i = s[Y].split(fused, factor=3)
    s[Y].parallel(o)
    func = build_kernel(s, [X, Y])
    for height in (5, 8):         # 5: PyTorch drops a last window that starts in the padding
        x = rand((1, 2, height, 8), seed=height)
        expect = pool_ref(x, (2, 3), (2, 2), (1, 1, 1, 1), pool_type, True, include)
        check(s, [X, Y], [x], expect, func=func, rtol=1e-5, atol=1e-6)


def test_max_pool_int8_pads_with_the_lowest_value():
    X = tl.placeholder((1, 2, 6, 6), "int8", name="X")
    Y = NN.pool2d(X, 3, 2, 1, "max")
    s = tl.create_schedule(Y)
    s[Y.op.input_tensors[0]].compute_inline()
    s[Y].vectorize(s[Y].op.axis[3])
    x = rand((1, 2, 6, 6), "int8", -100, 100)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-128)
    expect = np.empty((1, 2, 3, 3), "int8")
    for i in range(3):
        for j in range(3):
            expect[:, :, i, j] = xp[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(2, 3))
    check(s, [X, Y], [x], expect)


@pytest.mark.parametrize("pool_type", ["max", "avg"])
def test_global_pool(pool_type):
    X = tl.placeholder((2, 5, 7, 6), name="X")
    Y = NN.global_pool(X, pool_type)
    s = tl.create_schedule(Y)
    red = Y if pool_type == "max" else Y.op.input_tensors[0]
    ry, rx = s[red].op.reduce_axis
    k = s[red].fuse(ry, rx)
    ko, ki = s[red].split(k, factor=8)               # 42 % 8 != 0
    s[red].parallel(s[red].op.axis[1])
    x = rand((2, 5, 7, 6))
    ref = x.max(axis=(2, 3), keepdims=True) if pool_type == "max" else \
        x.mean(axis=(2, 3), keepdims=True)
    check(s, [X, Y], [x], ref, rtol=1e-5)


# -- softmax and normalisation -------------------------------------------------------------

@pytest.mark.parametrize("axis", [-1, 1])
def test_softmax_stages_scheduled(axis):
    X = tl.placeholder((4, 10, 33), name="X")
    Y = NN.softmax(X, axis=axis)
    s = tl.create_schedule(Y)
    exp, expsum = Y.op.input_tensors
    maxelem = exp.op.input_tensors[1]
    s[exp].compute_inline()
    a, b, c = s[Y].op.axis
    if axis == -1:
        ab = s[Y].fuse(a, b)
        s[Y].parallel(ab)
        co, ci = s[Y].split(c, factor=8)              # 33 % 8 != 0
        s[Y].vectorize(ci)
        s[maxelem].compute_at(s[Y], ab)               # both reductions per row
        s[expsum].compute_at(s[Y], ab)
    else:
        s[Y].parallel(a)
        s[maxelem].compute_at(s[Y], a)
        s[expsum].compute_at(s[Y], a)
        s[Y].vectorize(c)
    x = rand((4, 10, 33), low=-5, high=5)
    check(s, [X, Y], [x], softmax_ref(x, axis), rtol=1e-5, atol=1e-6)


def test_softmax_large_values_stay_finite():
    X = tl.placeholder((3, 40), name="X")
    Y = NN.softmax(X)
    s = tl.create_schedule(Y)
    exp, expsum = Y.op.input_tensors
    ko, ki = s[expsum].split(s[expsum].op.reduce_axis[0], factor=16)
    EF = s.rfactor(expsum, ki)
    s[Y].parallel(s[Y].op.axis[0])
    x = rand((3, 40), low=80, high=120)    # exp would overflow without the max stage
    check(s, [X, Y], [x], softmax_ref(x.astype("float64"), -1), rtol=1e-5, atol=1e-7)


def test_log_softmax():
    X = tl.placeholder((6, 17), name="X")
    Y = NN.log_softmax(X)
    s = tl.create_schedule(Y)
    io, ii = s[Y].split(s[Y].op.axis[0], factor=4)    # 6 % 4 != 0
    s[Y].parallel(io)
    maxelem, expsum = Y.op.input_tensors[1:]
    s[expsum.op.input_tensors[0]].compute_inline()   # exp(x - max) into the sum
    for t in (maxelem, expsum):                       # max and exp-sum, per block of rows
        s[t].compute_at(s[Y], io)
    x = rand((6, 17), low=-4, high=4)
    x64 = x.astype("float64")
    m = x64.max(axis=1, keepdims=True)
    expect = x64 - m - np.log(np.exp(x64 - m).sum(axis=1, keepdims=True))
    check(s, [X, Y], [x], expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axis", [-1, (1, 2)])
def test_layer_norm(axis):
    X = tl.placeholder((3, 4, 20), name="X")
    norm_shape = (20,) if axis == -1 else (4, 20)
    G = tl.placeholder(norm_shape, name="G")
    B = tl.placeholder(norm_shape, name="B")
    Y = NN.layer_norm(X, G, B, axis=axis, epsilon=1e-5)
    s = tl.create_schedule(Y)
    total, var_sum = Y.op.input_tensors[1], Y.op.input_tensors[2]
    outer = s[Y].op.axis[0]
    s[Y].parallel(outer)
    s[total].compute_at(s[Y], outer)
    s[var_sum].compute_at(s[Y], outer)
    ko, ki = s[var_sum].split(s[var_sum].op.reduce_axis[-1], factor=6)
    s[Y].vectorize(s[Y].op.axis[-1])
    x = rand((3, 4, 20), low=-3, high=5)
    g, b = rand(norm_shape, low=0.5, high=1.5), rand(norm_shape)
    axes = (2,) if axis == -1 else (1, 2)
    x64 = x.astype("float64")
    mean = x64.mean(axis=axes, keepdims=True)
    var = x64.var(axis=axes, keepdims=True)
    expect = (x64 - mean) / np.sqrt(var + 1e-5) * g + b
    check(s, [X, G, B, Y], [x, g, b], expect, rtol=1e-4, atol=1e-5)


def test_batch_norm_inference():
    X = tl.placeholder((2, 5, 6, 7), name="X")
    params = [tl.placeholder((5,), name=n) for n in ("G", "B", "M", "V")]
    Y = NN.batch_norm(X, *params, axis=1, epsilon=1e-3)
    s = tl.create_schedule(Y)
    split_fuse_vectorize(s, Y, factor=16)
    x = rand((2, 5, 6, 7))
    g, b, m = rand((5,), seed=1), rand((5,), seed=2), rand((5,), seed=3)
    v = rand((5,), low=0.2, high=2.0, seed=4)
    r = (lambda p: p.reshape(1, 5, 1, 1))
    expect = (x - r(m)) / np.sqrt(r(v) + 1e-3) * r(g) + r(b)
    check(s, [X, *params, Y], [x, g, b, m, v], expect, rtol=1e-5, atol=1e-5)


def test_conv_bias_gelu_network():
    """A small block: conv -> + bias -> gelu -> 2x2 max pool -> dense -> softmax."""
    X = tl.placeholder((1, 3, 8, 8), name="X")
    W = tl.placeholder((4, 3, 3, 3), name="W")
    Bc = tl.placeholder((4, 1, 1), name="Bc")
    Wd = tl.placeholder((5, 36), name="Wd")
    conv = NN.conv2d_nchw(X, W, padding=1)
    act = NN.gelu(ops.elemwise.add(conv, Bc))
    pooled = NN.pool2d(act, 3, 3, pool_type="max", ceil_mode=True)   # (1, 4, 3, 3)
    flat = ops.transform.reshape(pooled, (1, 36))
    out = NN.softmax(NN.dense(flat, Wd))
    s = tl.create_schedule(out)
    s[conv.op.input_tensors[0]].compute_inline()
    s[act.op.input_tensors[0]].compute_inline()
    s[act].compute_inline()
    s[flat].compute_inline()
    pool_pad = pooled.op.input_tensors[0]
    s[pool_pad].compute_inline()
    s[conv].parallel(s[conv].op.axis[1])
    x, w, bc, wd = rand((1, 3, 8, 8)), rand((4, 3, 3, 3)), rand((4, 1, 1)), rand((5, 36))
    c = gelu_ref(conv2d_ref(x, w, pads=(1,) * 4) + bc)
    p = pool_ref(c, (3, 3), (3, 3), (0,) * 4, "max", ceil_mode=True)
    check(s, [X, W, Bc, Wd, out], [x, w, bc, wd], softmax_ref(p.reshape(1, 36) @ wd.T, -1),
          rtol=1e-4, atol=1e-6)


# -- argument errors ------------------------------------------------------------------------

def test_conv2d_channel_mismatch_message():
    D = tl.placeholder((1, 3, 8, 8), name="data")
    K = tl.placeholder((4, 4, 3, 3), name="kernel")
    with pytest.raises(ShapeError, match=r"conv2d_nchw: data data has 3 channels but kernel "
                                         r"kernel expects 4 \(groups=1"):
        NN.conv2d_nchw(D, K)
    K2 = tl.placeholder((6, 2, 3, 3), name="K2")
    with pytest.raises(ShapeError, match=r"expects 4 \(groups=2"):
        NN.conv2d_nchw(D, K2, groups=2)
    with pytest.raises(ShapeError, match="conv2d_nchw: data D3 must have 4 dimensions"):
        NN.conv2d_nchw(tl.placeholder((3, 8, 8), name="D3"), K)
    with pytest.raises(ShapeError, match="window .* is larger than the padded input"):
        NN.conv2d_nchw(D, tl.placeholder((4, 3, 9, 9), name="K9"))


def test_matmul_and_dense_errors():
    A = tl.placeholder((4, 5), name="A")
    B = tl.placeholder((6, 7), name="B")
    with pytest.raises(ShapeError, match=r"matmul: the reduction extents differ: A \(4, 5\) "
                                         r"dimension 1 is 5 but B \(6, 7\) dimension 0 is 6"):
        NN.matmul(A, B)
    with pytest.raises(DTypeError, match="dense: .* is float32 but .* is float16"):
        NN.dense(A, tl.placeholder((3, 5), "float16", name="W"))
    with pytest.raises(ShapeError, match="dense: bias Bias has 4 elements"):
        NN.dense(A, tl.placeholder((3, 5), name="W"), tl.placeholder((4,), name="Bias"))


def test_pool_softmax_norm_errors():
    X = tl.placeholder((1, 2, 4, 4), name="X")
    with pytest.raises(UserError, match="pool2d: pool_type must be 'max' or 'avg'"):
        NN.pool2d(X, 2, pool_type="sum")
    with pytest.raises(DTypeError, match="softmax: x I has dtype int32"):
        NN.softmax(tl.placeholder((3, 4), "int32", name="I"))
    with pytest.raises(ShapeError, match=r"layer_norm: gamma G has shape \(3,\) but \(4,\)"):
        NN.layer_norm(X, tl.placeholder((3,), name="G"), None, axis=-1)
