"""Hand-written CPU schedules for common operators (a starting point before tuning).

The vector width is the caller's to give (``codegen.llvm.host_target().vector_bits // 32`` for
float32): this layer does not know the target.
"""
from __future__ import annotations

from .. import tensor as _t
from ..reduction import sum as _sum
from ..math import if_then_else
from ..schedule import create_schedule
from .conv import conv2d_nchw_blocked


def matmul_packed(m: int, n: int, k: int, dtype: str = "float32", vector_lanes: int = 8):
    """``C = A @ B`` with B packed into column panels and a register-tiled micro-kernel.

    The output is accumulated in a local ``mr x (2 * vector_lanes)`` tile (``cache_write``)
    computed at the column-tile loop; the reduction is split by 4 and unrolled, tile rows
    unrolled, tile columns vectorized, row tiles parallel. Returns ``(schedule, [A, B, C])``.

    Example::

        s, args = matmul_packed(1024, 1024, 1024, vector_lanes=8)
        f = tl.build(s, args)
    """
    nr = 2 * vector_lanes
    # rows of the register tile: 6 fills 16 AVX2 registers best, but only when it divides m
    # (a guarded tail inside the micro-kernel costs more than the registers gain)
    rows = (6, 4, 2, 1) if vector_lanes <= 8 else (8, 4, 2, 1)
    mr = next(r for r in rows if m % r == 0)
    panels = (n + nr - 1) // nr
    A = _t.placeholder((m, k), dtype, name="A")
    B = _t.placeholder((k, n), dtype, name="B")
    r = _t.reduce_axis((0, k), name="k")
    packed = _t.compute(
        (panels, k, nr),
        lambda jo, kk, ji: if_then_else(jo * nr + ji < n, B[kk, jo * nr + ji], 0.0)
        if n % nr else B[kk, jo * nr + ji], name="packedB")
    C = _t.compute((m, n), lambda i, j: _sum(A[i, r] * packed[j // nr, r, j % nr], axis=r),
                   name="C")
    s = create_schedule(C)
    CC = s.cache_write(C, "local")
    i, j = s[C].op.axis
    io, jo, ii, ji = s[C].tile(i, j, mr, nr)
    s[C].vectorize(ji)
    s[C].parallel(io)
    # when packed B outgrows the last-level cache (here: over 8 MiB), sweep all row tiles over
    # one block of panels at a time so that block stays cached while A streams past it
    if panels * nr * k * 4 > (8 << 20) and panels % 8 == 0:
        jb, jo = s[C].split(jo, factor=8)
        s[C].reorder(jb, io, jo, ii, ji)
    s[CC].compute_at(s[C], jo)
    ci, cj = s[CC].op.axis
    (kk,) = s[CC].op.reduce_axis
    ko, ki = s[CC].split(kk, factor=4)
    s[CC].reorder(ko, ki, ci, cj)
    s[CC].unroll(ki)
    s[CC].unroll(ci)
    s[CC].vectorize(cj)
    po, _, pi = s[packed].op.axis
    s[packed].vectorize(pi)
    s[packed].parallel(po)
    return s, [A, B, C]


# -- convolution --------------------------------------------------------------------------

def _largest_divisor(n: int, candidates) -> int:
    return next(c for c in candidates if n % c == 0)


def conv2d_nchw(batch: int, in_channels: int, height: int, width: int, out_channels: int,
                kernel_size: int, stride: int = 1, padding: int = 0, dtype: str = "float32",
                vector_lanes: int = 8, k_block: int | None = None, ow_block: int | None = None):
    """``conv2d`` on NCHW data and a KCRS kernel, computed in a blocked (NCHWc) layout.

    The data is packed (and padded) into ``[N, C/cb, H+2p, W+2p, cb]``, the kernel into
    ``[K/kb, C/cb, R, S, cb, kb]`` with ``kb = 2 * vector_lanes``; the convolution writes a
    blocked ``[N, K/kb, OH, OW, kb]`` result through a local ``ow_block x kb`` register tile
    (``kb`` vectorized, ``ow_block`` output columns unrolled; each input value is one broadcast
    for ``kb / vector_lanes`` FMAs), then is unpacked to NCHW. 1x1 stride-1 convolutions skip
    the packing: they are a matmul ``W[K, C] @ X[C, H*W]`` tiled over rows of K and vectors
    of H*W, on the NCHW arrays as they are (a contiguous copy of the ``C x nr`` column panel
    is made per panel). ``k_block`` / ``ow_block`` override the register tile; by default the
    largest ``ow_block`` dividing OW whose accumulators, kernel vectors and broadcast fit the
    register file (16 vector registers for 8 lanes, 32 for 16). Returns
    ``(schedule, [data, kernel, out])``.

    Example::

        s, args = conv2d_nchw(1, 64, 56, 56, 64, 3, padding=1, vector_lanes=8)
    """
    if kernel_size == 1 and stride == 1 and padding == 0:
        return _conv1x1_nchw(batch, in_channels, height, width, out_channels, dtype,
                             vector_lanes)
    kb = k_block or (2 * vector_lanes if out_channels % (2 * vector_lanes) == 0
                     else vector_lanes)
    cb = _largest_divisor(in_channels, (kb, 8, 4, 2, 1))
    R = S = kernel_size
    ph, pw = height + 2 * padding, width + 2 * padding
    ow = (pw - S) // stride + 1
    # accumulators + one kernel vector per kb/lanes + one broadcast within the register file
    # (16 vector registers with AVX2, 32 with AVX-512)
    regs = 16 if vector_lanes <= 8 else 32
    per_col = kb // vector_lanes
    fits = [b for b in (14, 12, 8, 7, 6, 4, 3, 2, 1) if b * per_col + per_col + 1 <= regs]
    ow_block = ow_block or _largest_divisor(ow, fits)
    data = _t.placeholder((batch, in_channels, height, width), dtype, name="data")
    kernel = _t.placeholder((out_channels, in_channels, R, S), dtype, name="kernel")
    out = conv2d_nchw_blocked(data, kernel, stride, padding, c_block=cb, k_block=kb,
                              name="conv")
    conv = out.op.input_tensors[0]
    dpack, kpack = conv.op.input_tensors
    s = create_schedule(out)
    cc = s.cache_write(conv, "local")
    # blocked output: parallel over (n, k-block, row), register tile ow_block x kb
    n, ko, y, x, ki = s[conv].op.axis
    xo, xi = s[conv].split(x, factor=ow_block)
    s[conv].reorder(n, ko, y, xo, xi, ki)
    s[conv].parallel(s[conv].fuse(n, ko, y))
    s[conv].vectorize(ki)
    s[cc].compute_at(s[conv], xo)
    _, _, _, cx, cki = s[cc].op.axis
    c_co, c_r, c_s, c_ci = s[cc].op.reduce_axis
    c_cio, c_cii = s[cc].split(c_ci, factor=_largest_divisor(cb, (4, 2, 1)))
    s[cc].reorder(c_co, c_r, c_s, c_cio, c_cii, cx, cki)
    s[cc].unroll(c_cii)
    s[cc].unroll(cx)
    s[cc].vectorize(cki)
    # data pack: parallel over (n, channel block, row), channel block innermost
    n, co, h, w, ci = s[dpack].op.axis
    s[dpack].parallel(s[dpack].fuse(n, co, h))
    s[dpack].unroll(ci)
    ko, co, r, q, ci, ki = s[kpack].op.axis
    s[kpack].parallel(ko)
    s[kpack].vectorize(ki)
    # unpack: read kb-strided, write rows of OW
    n, k, y, x = s[out].op.axis
    s[out].parallel(s[out].fuse(n, k))
    xo, xi = s[out].split(x, factor=vector_lanes)
    s[out].vectorize(xi)
    return s, [data, kernel, out]


def _all_of(*conds):
    result = conds[0]
    for c in conds[1:]:
        result = result & c
    return result


def _conv1x1_nchw(batch, in_channels, height, width, out_channels, dtype, vector_lanes):
    """1x1 stride-1 convolution as ``out[n, k, p] = sum_c W[k, c] * X[n, c, p]``: the arguments
    are flattened views (``data (N, C, H*W)``, ``kernel (K, C)``, ``out (N, K, H*W)``) of the
    NCHW / KCRS arrays, which NumPy's ``reshape`` gives without a copy."""
    hw = height * width
    nr = 2 * vector_lanes if hw % (2 * vector_lanes) == 0 else vector_lanes
    mr = _largest_divisor(out_channels, (6, 4, 2, 1) if vector_lanes <= 8 else (12, 8, 4, 2, 1))
    data = _t.placeholder((batch, in_channels, hw), dtype, name="data")
    kernel = _t.placeholder((out_channels, in_channels), dtype, name="kernel")
    rc = _t.reduce_axis((0, in_channels), name="rc")
    out = _t.compute((batch, out_channels, hw),
                     lambda n, k, p: _sum(kernel[k, rc] * data[n, rc, p], axis=rc), name="conv")
    s = create_schedule(out)
    cc = s.cache_write(out, "local")
    # the column panel of X (in_channels x nr) copied to a contiguous buffer per panel: read
    # in place, its rows (H*W apart) fall into few L1 sets and evict each other
    panel = s.cache_read(data, "global", [cc])
    n, k, p = s[out].op.axis
    po, pi = s[out].split(p, factor=nr)
    ko, ki = s[out].split(k, factor=mr)
    # a column panel of X (in_channels x nr) stays in L1 while all rows of K go by
    s[out].reorder(n, po, ko, ki, pi)
    outer = s[out].fuse(n, po)
    s[out].parallel(outer)
    s[out].vectorize(pi)
    s[cc].compute_at(s[out], ko)
    s[panel].compute_at(s[out], outer)
    s[panel].vectorize(s[panel].op.axis[2])
    (c_rc,) = s[cc].op.reduce_axis
    _, c_k, c_p = s[cc].op.axis
    rco, rci = s[cc].split(c_rc, factor=4)
    s[cc].reorder(rco, rci, c_k, c_p)
    s[cc].unroll(rci)
    s[cc].unroll(c_k)
    s[cc].vectorize(c_p)
    return s, [data, kernel, out]


def depthwise_conv2d_nchw(batch: int, channels: int, height: int, width: int,
                          kernel_size: int = 3, padding: int = 1, dtype: str = "float32",
                          vector_lanes: int = 8):
    """Depthwise (one filter per channel, stride 1) ``conv2d`` on NCHW data, kernel
    ``[C, 1, R, S]``.

    Per channel (parallel), the zero-padded plane is built in a small local buffer, then each
    output row is accumulated in a local register row (output columns vectorized and unrolled)
    over the ``R x S`` taps. Returns ``(schedule, [data, kernel, out])``.

    Example::

        s, args = depthwise_conv2d_nchw(1, 144, 56, 56, vector_lanes=8)
    """
    R = S = kernel_size
    ph, pw = height + 2 * padding, width + 2 * padding
    oh, ow = ph - R + 1, pw - S + 1
    data = _t.placeholder((batch, channels, height, width), dtype, name="data")
    kernel = _t.placeholder((channels, 1, R, S), dtype, name="kernel")

    def pad(n, c, h, w):
        inside = _all_of(h >= padding, h < height + padding, w >= padding, w < width + padding)
        return if_then_else(inside, data[n, c, h - padding, w - padding], 0.0)

    padded = _t.compute((batch, channels, ph, pw), pad, name="data_pad")
    rr = _t.reduce_axis((0, R), name="rr")
    rs = _t.reduce_axis((0, S), name="rs")
    out = _t.compute((batch, channels, oh, ow),
                     lambda n, c, y, x: _sum(padded[n, c, y + rr, x + rs] * kernel[c, 0, rr, rs],
                                             axis=[rr, rs]), name="depthwise")
    s = create_schedule(out)
    cc = s.cache_write(out, "local")
    n, c, y, x = s[out].op.axis
    nc = s[out].fuse(n, c)
    s[out].parallel(nc)
    xo, xi = s[out].split(x, factor=vector_lanes)
    s[out].vectorize(xi)
    s[cc].compute_at(s[out], y)
    _, _, _, cx = s[cc].op.axis
    c_r, c_s = s[cc].op.reduce_axis
    cxo, cxi = s[cc].split(cx, factor=vector_lanes)
    s[cc].reorder(c_r, c_s, cxo, cxi)
    s[cc].unroll(c_s)
    s[cc].unroll(cxo)
    s[cc].vectorize(cxi)
    s[padded].compute_at(s[out], nc)
    return s, [data, kernel, out]


# -- row-wise reductions: softmax, layer norm -----------------------------------------------
#
# Each row is reduced into ``width = 4 * vector_lanes`` partial lanes (four independent vector
# accumulators; the reduction axis is outer, the lanes are vectorized), and the lanes are then
# combined by an explicit expression in the reader, which LLVM hoists out of the reader's
# inner loop. Every stage hangs directly off the output's row loop: a stage read both there and
# from a stage nested one level deeper gets a wrong bound (see the report of issue 3).

def _fast_max():
    """A max reducer of one compare-and-select (one ``vmaxps``) instead of NumPy's
    NaN-propagating max. Softmax may use it: a NaN it drops from the max still reaches every
    output of its row through ``exp(x - max)`` and the sum."""
    from ..expr import const
    from ..math import select
    from ..reduction import comm_reducer
    return comm_reducer(lambda a, b: select(a > b, a, b),
                        lambda dtype: const(float("-inf"), dtype), name="max_fast")


def _row_partials(rows, cols, fvalue, kind, width, name):
    """``P[i, l] = max/sum over o of fvalue(i, o * width + l)`` (``kind`` "max_fast": see
    :func:`_fast_max`)."""
    from ..reduction import max as _max
    ro = _t.reduce_axis((0, cols // width), name=f"{name}_o")
    reduce = {"max": _max, "max_fast": _fast_max(), "sum": _sum}[kind]
    return _t.compute((rows, width), lambda i, l: reduce(fvalue(i, ro * width + l), axis=ro),
                      name=name)


def _combine_lanes(partials, i, width, kind):
    """The lanes of one row combined pairwise (a tree, not a chain)."""
    from ..reduction import max as _max2
    # max_fast partials combine with the NaN-keeping max: it runs once per row, and a
    # select tree would repeat each operand at every level
    combine = {"max": _max2, "max_fast": _max2, "sum": lambda a, b: a + b}[kind]
    terms = [partials[i, l] for l in range(width)]
    while len(terms) > 1:
        terms = [combine(a, b)
                 for a, b in zip(terms[0::2], terms[1::2])] + terms[len(terms) // 2 * 2:]
    return terms[0]


def _schedule_partials(s, partials, attach_stage, attach_axis, vector_lanes):
    s[partials].compute_at(s[attach_stage], attach_axis)
    _, lane = s[partials].op.axis
    (o,) = s[partials].op.reduce_axis
    lo, li = s[partials].split(lane, factor=vector_lanes)
    s[partials].reorder(o, lo, li)
    s[partials].unroll(lo)
    s[partials].vectorize(li)
    return lo


def _schedule_rows_output(s, out, vector_lanes, streaming=False):
    i, j = s[out].op.axis
    s[out].parallel(i)
    jo, ji = s[out].split(j, factor=vector_lanes)
    jo, ju = s[out].split(jo, factor=4)
    s[out].unroll(ju)
    s[out].vectorize(ji)
    if streaming:  # an output larger than the caches: stores bypass them
        s[out].pragma(jo, "nontemporal", True)
    return i


def _streaming(nbytes: int) -> bool:
    """Whether an output is large enough (64 MB) that caching it only evicts the inputs."""
    return nbytes >= 64 << 20


def softmax_rows(rows: int, cols: int, dtype: str = "float32", vector_lanes: int = 8):
    """Softmax over the last axis of a ``rows x cols`` matrix, one row per task.

    Per row: the max goes into ``4 * vector_lanes`` partial lanes, ``exp(x - max)`` is
    stored once in a row buffer that stays in cache, its sum goes into partial lanes, and the
    output is the buffer times the reciprocal of the sum. ``cols`` must be a multiple of
    ``4 * vector_lanes``. Returns ``(schedule, [X, Y])``.

    Example::

        s, args = softmax_rows(4096, 4096, vector_lanes=8)
    """
    from .. import math as _m
    width = 4 * vector_lanes
    X = _t.placeholder((rows, cols), dtype, name="X")
    pmax = _row_partials(rows, cols, lambda i, j: X[i, j], "max_fast", width, "max_lanes")
    e = _t.compute((rows, cols),
                   lambda i, j: _m.exp(X[i, j] - _combine_lanes(pmax, i, width, "max_fast")),
                   name="exp")
    psum = _row_partials(rows, cols, lambda i, j: e[i, j], "sum", width, "sum_lanes")
    Y = _t.compute((rows, cols), lambda i, j: e[i, j] * (
        _t.const(1.0, dtype) / _combine_lanes(psum, i, width, "sum")), name="softmax")
    s = create_schedule(Y)
    i = _schedule_rows_output(s, Y, vector_lanes, _streaming(rows * cols * 4))
    s[e].compute_at(s[Y], i)
    ei, j = s[e].op.axis
    jo, ji = s[e].split(j, factor=vector_lanes)
    jo, ju = s[e].split(jo, factor=4)
    s[e].unroll(ju)
    s[e].vectorize(ji)
    # while exp runs on this row (from cache), fetch the next row: one row ahead is
    # cols / vector_lanes vectors, so memory and arithmetic overlap
    s[e].pragma(ju, "prefetch", cols // vector_lanes)
    _schedule_partials(s, pmax, e, ei, vector_lanes)
    _schedule_partials(s, psum, Y, i, vector_lanes)
    return s, [X, Y]


def layer_norm_rows(rows: int, cols: int, epsilon: float = 1e-5, dtype: str = "float32",
                    vector_lanes: int = 8):
    """Layer norm over the last axis with scale and bias:
    ``(x - mean) * rsqrt(var + eps) * gamma + beta``, one row per task.

    The row sum and then (second pass over the cached row) the sum of squared deviations go
    into ``4 * vector_lanes`` partial lanes each. ``cols`` must be a multiple of
    ``4 * vector_lanes``. Returns ``(schedule, [X, gamma, beta, Y])``.

    Example::

        s, args = layer_norm_rows(4096, 1024, vector_lanes=8)
    """
    from .. import math as _m
    width = 4 * vector_lanes
    X = _t.placeholder((rows, cols), dtype, name="X")
    gamma = _t.placeholder((cols,), dtype, name="gamma")
    beta = _t.placeholder((cols,), dtype, name="beta")
    inv_n = _t.const(1.0 / cols, dtype)
    psum = _row_partials(rows, cols, lambda i, j: X[i, j], "sum", width, "sum_lanes")

    def mean(i):
        return _combine_lanes(psum, i, width, "sum") * inv_n

    pvar = _row_partials(rows, cols, lambda i, j: (X[i, j] - mean(i)) * (X[i, j] - mean(i)),
                         "sum", width, "var_lanes")

    def body(i, j):
        rstd = _m.rsqrt(_combine_lanes(pvar, i, width, "sum") * inv_n
                        + _t.const(epsilon, dtype))
        return (X[i, j] - mean(i)) * rstd * gamma[j] + beta[j]

    Y = _t.compute((rows, cols), body, name="layer_norm")
    s = create_schedule(Y)
    i = _schedule_rows_output(s, Y, vector_lanes, _streaming(rows * cols * 4))
    _schedule_partials(s, psum, Y, i, vector_lanes)
    lanes = _schedule_partials(s, pvar, Y, i, vector_lanes)
    # the second pass reads the row from cache: fetch the next row meanwhile
    s[pvar].pragma(lanes, "prefetch", cols // vector_lanes)
    return s, [X, gamma, beta, Y]


def gelu(size: int, dtype: str = "float32", vector_lanes: int = 8):
    """Exact GELU ``x * 0.5 * (1 + erf(x / sqrt(2)))`` over a flat array: parallel chunks of
    64K elements, vectors of ``vector_lanes`` unrolled by 4. Returns ``(schedule, [X, Y])``.

    Example::

        s, args = gelu(1 << 24, vector_lanes=8)
    """
    from .elemwise import gelu as _gelu
    X = _t.placeholder((size,), dtype, name="X")
    Y = _gelu(X, name="gelu")
    s = create_schedule(Y)
    (i,) = s[Y].op.axis
    chunk = 1 << 16 if size >= 1 << 18 else 4 * vector_lanes
    outer, inner = s[Y].split(i, factor=chunk)
    vo, vi = s[Y].split(inner, factor=4 * vector_lanes)
    vu, vv = s[Y].split(vi, factor=vector_lanes)
    s[Y].parallel(outer)
    s[Y].unroll(vu)
    s[Y].vectorize(vv)
    if _streaming(size * 4):
        s[Y].pragma(vo, "nontemporal", True)
    return s, [X, Y]
