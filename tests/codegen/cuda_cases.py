"""Small GPU schedules and their NumPy references, shared by the CUDA codegen tests."""

import numpy as np
import pytest

import tensorlang as tl

RNG = np.random.default_rng(11)


def _rand(*shape, dtype="float32"):
    return RNG.standard_normal(shape).astype(dtype)


def _bind(st, ax, tag):
    st.bind(ax, tl.thread_axis(tag))


# -- small GPU schedules ------------------------------------------------------------------------

def matmul_schedule(n, tile=32, threads=8, k_tile=4):
    """Tiled matmul: 2-D blocks of tile x tile outputs, threads x threads threads, a register
    tile per thread, A and B staged through shared memory per k-tile."""
    A = tl.placeholder((n, n), name="A")
    B = tl.placeholder((n, n), name="B")
    k = tl.reduce_axis((0, n), name="k")
    C = tl.compute((n, n), lambda i, j: tl.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = tl.create_schedule(C)
    AS, BS = s.cache_read(A, "shared", [C]), s.cache_read(B, "shared", [C])
    CL = s.cache_write(C, "local")
    i, j = s[C].op.axis
    bi, ti = s[C].split(i, factor=tile)
    bj, tj = s[C].split(j, factor=tile)
    ty, ii = s[C].split(ti, nparts=threads)
    tx, jj = s[C].split(tj, nparts=threads)
    s[C].reorder(bi, bj, ty, tx, ii, jj)
    _bind(s[C], bi, "blockIdx.y")
    _bind(s[C], bj, "blockIdx.x")
    _bind(s[C], ty, "threadIdx.y")
    _bind(s[C], tx, "threadIdx.x")
    s[CL].compute_at(s[C], tx)
    ci, cj = s[CL].op.axis
    ko, ki = s[CL].split(s[CL].op.reduce_axis[0], factor=k_tile)
    s[CL].reorder(ko, ki, ci, cj)
    s[CL].unroll(cj)
    for st in (AS, BS):
        s[st].compute_at(s[CL], ko)
        fused = s[st].fuse(*s[st].op.axis)
        _, inner = s[st].split(fused, factor=threads * threads)
        fy, fx = s[st].split(inner, factor=threads)
        _bind(s[st], fy, "threadIdx.y")
        _bind(s[st], fx, "threadIdx.x")
    return s, [A, B, C]


def injective(s, out, threads=64, vector=1):
    st = s[out]
    axes = list(st.op.axis)
    if vector > 1:
        axes[-1], vec = st.split(axes[-1], factor=vector)
        st.vectorize(vec)
    fused = st.fuse(*axes) if len(axes) > 1 else axes[0]
    bx, tx = st.split(fused, factor=threads)
    _bind(st, bx, "blockIdx.x")
    _bind(st, tx, "threadIdx.x")


def elementwise_schedule(rows, cols, vector=4):
    x = tl.placeholder((rows, cols), name="x")
    a = tl.placeholder((cols,), name="a")
    r = tl.placeholder((rows, cols), name="r")
    scaled = tl.compute((rows, cols), lambda i, j: x[i, j] * a[j], name="scaled")
    act = tl.compute((rows, cols), lambda i, j: tl.max(scaled[i, j], tl.const(0.0)), name="act")
    out = tl.compute((rows, cols), lambda i, j: tl.tanh(act[i, j]) + tl.exp(r[i, j] * 0.5)
                     - tl.floor(r[i, j]), name="out")
    s = tl.create_schedule(out)
    s[scaled].compute_inline()
    s[act].compute_inline()
    injective(s, out, threads=64, vector=vector)
    return s, [x, a, r, out]


def _rows_reduce(s, t, threads=32):
    """One thread per row of a reduction stage."""
    bx, tx = s[t].split(s[t].op.axis[0], factor=threads)
    _bind(s[t], bx, "blockIdx.x")
    _bind(s[t], tx, "threadIdx.x")


def softmax_schedule(rows, cols):
    x = tl.placeholder((rows, cols), name="x")
    k = tl.reduce_axis((0, cols), name="k")
    mx = tl.compute((rows,), lambda i: tl.max(x[i, k], axis=k), name="row_max")
    k2 = tl.reduce_axis((0, cols), name="k2")
    ex = tl.compute((rows, cols), lambda i, j: tl.exp(x[i, j] - mx[i]), name="ex")
    sm = tl.compute((rows,), lambda i: tl.sum(ex[i, k2], axis=k2), name="row_sum")
    out = tl.compute((rows, cols), lambda i, j: ex[i, j] / sm[i], name="softmax")
    s = tl.create_schedule(out)
    _rows_reduce(s, mx)
    _rows_reduce(s, sm)
    injective(s, ex)
    injective(s, out)
    return s, [x, out]


def layernorm_schedule(rows, cols, eps=1e-5):
    x = tl.placeholder((rows, cols), name="x")
    g = tl.placeholder((cols,), name="gamma")
    b = tl.placeholder((cols,), name="beta")
    k = tl.reduce_axis((0, cols), name="k")
    mean = tl.compute((rows,), lambda i: tl.sum(x[i, k] / float(cols), axis=k), name="mean")
    k2 = tl.reduce_axis((0, cols), name="k2")
    var = tl.compute((rows,), lambda i: tl.sum((x[i, k2] - mean[i]) * (x[i, k2] - mean[i])
                                               / float(cols), axis=k2), name="var")
    out = tl.compute((rows, cols), lambda i, j: (x[i, j] - mean[i]) * tl.rsqrt(var[i] + eps)
                     * g[j] + b[j], name="layer_norm")
    s = tl.create_schedule(out)
    _rows_reduce(s, mean)
    _rows_reduce(s, var)
    injective(s, out)
    return s, [x, g, b, out]


def conv2d_schedule(n, c, h, w, k, r=3, pad=1):
    data = tl.placeholder((n, c, h, w), name="data")
    weight = tl.placeholder((k, c, r, r), name="weight")
    padded = tl.compute((n, c, h + 2 * pad, w + 2 * pad), lambda b, ci, y, x: tl.if_then_else(
        tl.all(y >= pad, y < h + pad, x >= pad, x < w + pad),
        data[b, ci, y - pad, x - pad], tl.const(0.0)), name="padded")
    rc = tl.reduce_axis((0, c), name="rc")
    ry = tl.reduce_axis((0, r), name="ry")
    rx = tl.reduce_axis((0, r), name="rx")
    out = tl.compute((n, k, h, w), lambda b, f, y, x: tl.sum(
        padded[b, rc, y + ry, x + rx] * weight[f, rc, ry, rx], axis=[rc, ry, rx]), name="conv")
    s = tl.create_schedule(out)
    s[padded].compute_inline()
    OL = s.cache_write(out, "local")
    b, f, y, x = s[out].op.axis
    _bind(s[out], s[out].fuse(b, f), "blockIdx.y")
    yx = s[out].fuse(y, x)
    bx, tx = s[out].split(yx, factor=32)
    _bind(s[out], bx, "blockIdx.x")
    _bind(s[out], tx, "threadIdx.x")
    s[OL].compute_at(s[out], tx)
    return s, [data, weight, out]


def depthwise_schedule(n, c, h, w, r=3, pad=1):
    data = tl.placeholder((n, c, h, w), name="data")
    weight = tl.placeholder((c, 1, r, r), name="weight")
    padded = tl.compute((n, c, h + 2 * pad, w + 2 * pad), lambda b, ci, y, x: tl.if_then_else(
        tl.all(y >= pad, y < h + pad, x >= pad, x < w + pad),
        data[b, ci, y - pad, x - pad], tl.const(0.0)), name="padded")
    ry = tl.reduce_axis((0, r), name="ry")
    rx = tl.reduce_axis((0, r), name="rx")
    out = tl.compute((n, c, h, w), lambda b, ci, y, x: tl.sum(
        padded[b, ci, y + ry, x + rx] * weight[ci, 0, ry, rx], axis=[ry, rx]),
        name="depthwise")
    s = tl.create_schedule(out)
    s[padded].compute_inline()
    injective(s, out, threads=32)
    return s, [data, weight, out]


def _softmax_ref(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _layernorm_ref(x, g, b, eps=1e-5):
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * g + b


def _conv_ref(data, weight, pad=1):
    n, c, h, w = data.shape
    k, cw, r, _ = weight.shape
    padded = np.pad(data, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, k, h, w), np.float64)
    depthwise = cw == 1 and k == c and c > 1
    for y in range(r):
        for x in range(r):
            window = padded[:, :, y:y + h, x:x + w]
            if depthwise:
                out += window * weight[None, :, 0, y, x, None, None]
            else:
                out += np.einsum("nchw,kc->nkhw", window, weight[:, :, y, x])
    return out.astype(np.float32)


# name -> (schedule at the sizes for NVRTC, schedule and data at tiny sizes, NumPy reference)
CASES = {
    "matmul": (lambda: matmul_schedule(256, 64, 16, 8), lambda: matmul_schedule(16, 8, 4, 4),
               lambda n: [_rand(n, n), _rand(n, n)], lambda a, b: a @ b),
    "elementwise": (lambda: elementwise_schedule(512, 512),
                    lambda: elementwise_schedule(4, 8),
                    None, None),
    "softmax": (lambda: softmax_schedule(1024, 1000), lambda: softmax_schedule(5, 7),
                None, None),
    "layer_norm": (lambda: layernorm_schedule(1024, 768), lambda: layernorm_schedule(5, 6),
                   None, None),
    "conv2d": (lambda: conv2d_schedule(1, 64, 56, 56, 64), lambda: conv2d_schedule(1, 2, 5, 5, 3),
               None, None),
    "depthwise_conv2d": (lambda: depthwise_schedule(1, 64, 56, 56),
                         lambda: depthwise_schedule(1, 3, 5, 5), None, None),
}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORLANG_CACHE_DIR", str(tmp_path / "cache"))


def _reference(name, arrays):
    if name == "matmul":
        return arrays[0] @ arrays[1]
    if name == "elementwise":
        x, a, r = arrays
        return np.tanh(np.maximum(x * a, 0)) + np.exp(r * 0.5) - np.floor(r)
    if name == "softmax":
        return _softmax_ref(arrays[0])
    if name == "layer_norm":
        return _layernorm_ref(*arrays)
    if name in ("conv2d", "depthwise_conv2d"):
        return _conv_ref(*arrays)
    raise KeyError(name)


def _inputs(args):
    return [_rand(*[int(d) for d in t.shape]) for t in args[:-1]]


def row_reduce_schedule(rows, cols, threads, reducer, reduce_inside=True):
    """A row reduction with the reduce axis split and its inner part bound to threadIdx.x:
    a block all-reduce per row."""
    x = tl.placeholder((rows, cols), name="x")
    k = tl.reduce_axis((0, cols), name="k")
    total = tl.compute((rows,), lambda i: reducer(x[i, k], axis=k), name="total")
    s = tl.create_schedule(total)
    _bind(s[total], total.op.axis[0], "blockIdx.x")
    ko, ki = s[total].split(k, factor=threads)
    if reduce_inside:  # each thread runs over its share of k, then one all-reduce
        s[total].reorder(total.op.axis[0], ki, ko)
    _bind(s[total], ki, "threadIdx.x")
    return s, [x, total]


def softmax_block_schedule(rows, cols, threads):
    """Softmax in one kernel: one block per row; the row max and sum are shared stages whose
    reduce axes are bound to threadIdx.x (block all-reduces)."""
    x = tl.placeholder((rows, cols), name="x")
    k = tl.reduce_axis((0, cols), name="k")
    mx = tl.compute((rows,), lambda i: tl.max(x[i, k], axis=k), name="row_max")
    k2 = tl.reduce_axis((0, cols), name="k2")
    sm = tl.compute((rows,), lambda i: tl.sum(tl.exp(x[i, k2] - mx[i]), axis=k2),
                    name="row_sum")
    out = tl.compute((rows, cols), lambda i, j: tl.exp(x[i, j] - mx[i]) / sm[i],
                     name="softmax")
    s = tl.create_schedule(out)
    i, j = out.op.axis
    _bind(s[out], i, "blockIdx.x")
    _, ji = s[out].split(j, factor=threads)
    _bind(s[out], ji, "threadIdx.x")
    for st in (mx, sm):
        s[st].set_scope("shared")
        s[st].compute_at(s[out], i)
        ko, ki = s[st].split(st.op.reduce_axis[0], factor=threads)
        s[st].reorder(st.op.axis[0], ki, ko)
        _bind(s[st], ki, "threadIdx.x")
    return s, [x, out]
