"""More neural-network operators of the graph layer, for any number of spatial dimensions:
convolution (groups, dilations), transposed convolution, max / average / Lp pooling (max
pooling can also give the argmax indices), product and arg reductions, top-k and resize.
Padding is explicit ``pads = [begin..., end...]`` (the importer resolves ``auto_pad``)."""
from __future__ import annotations

import math

import tensorlang as tl
from tensorlang import ops as T
from tensorlang.expr import const
from tensorlang.tensor import compute, reduce_axis

from ..ir import TensorType
from . import register


def _dims(t) -> tuple:
    return tuple(int(d) for d in t.shape)


def _inside(idx, n):
    return tl.all(idx >= 0, idx < n)


def _clamp(i, n):
    return tl.max(tl.min(i, n - 1), 0)


def _all(conds):
    return tl.all(*conds) if conds else const(True, "bool")


# -- convolution ------------------------------------------------------------------------------

def conv_out(size, k, s, d, before, after, ceil=False):
    span = (k - 1) * d + 1
    num = size + before + after - span
    return (-(-num // s) if ceil else num // s) + 1


def _conv(xs, a):
    x, w = xs[0], xs[1]
    (n, _, *sp), (oc, icg, *ks) = _dims(x), _dims(w)
    nd = len(sp)
    strides, dil = a["strides"], a["dilations"]
    pads, groups = a["pads"], a.get("groups", 1)
    out_sp = [conv_out(sp[i], ks[i], strides[i], dil[i], pads[i], pads[nd + i])
              for i in range(nd)]
    rc = reduce_axis((0, icg), name="rc")
    rk = [reduce_axis((0, k), name=f"rk{i}") for i, k in enumerate(ks)]
    ocg = oc // groups

    def body(*i):
        b, o, p = i[0], i[1], i[2:]
        ch = tl.floordiv(o, ocg) * icg + rc.var
        pos = [p[i] * strides[i] + rk[i].var * dil[i] - pads[i] for i in range(nd)]
        ok = _all([_inside(pos[i], sp[i]) for i in range(nd) if pads[i] or pads[nd + i]])
        v = x(b, ch, *[_clamp(q, sp[i]) for i, q in enumerate(pos)])
        v = tl.select(ok, v, const(0, x.dtype))
        return tl.sum(v * w(o, rc.var, *[r.var for r in rk]), axis=[rc, *rk])
    return compute((n, oc, *out_sp), body, name="T_conv", tag="conv")


register("conv", None, _conv, "out_fusable")


def _conv_transpose(xs, a):
    x, w = xs[0], xs[1]
    (n, c, *sp), (_, ocg, *ks) = _dims(x), _dims(w)
    nd = len(sp)
    strides, dil, pads = a["strides"], a["dilations"], a["pads"]
    groups, out_sp = a.get("groups", 1), a["out_shape"]
    icg = c // groups
    rc = reduce_axis((0, icg), name="rc")
    rk = [reduce_axis((0, k), name=f"rk{i}") for i, k in enumerate(ks)]

    def body(*i):
        b, o, p = i[0], i[1], i[2:]
        g = tl.floordiv(o, ocg)
        ch = g * icg + rc.var
        num = [p[i] + pads[i] - rk[i].var * dil[i] for i in range(nd)]
        pos = [tl.floordiv(q, strides[i]) for i, q in enumerate(num)]
        ok = _all([tl.all(tl.floormod(num[i], strides[i]) == 0, _inside(pos[i], sp[i]))
                   if strides[i] > 1 else _inside(pos[i], sp[i]) for i in range(nd)])
        v = x(b, ch, *[_clamp(q, sp[i]) for i, q in enumerate(pos)])
        v = tl.select(ok, v, const(0, x.dtype))
        return tl.sum(v * w(ch, tl.floormod(o, ocg), *[r.var for r in rk]), axis=[rc, *rk])
    return compute((n, ocg * groups, *out_sp), body, name="T_conv_transpose", tag="conv")


register("conv_transpose", None, _conv_transpose, "out_fusable")


# -- pooling ----------------------------------------------------------------------------------

def pool_out_shape(sp, a):
    nd = len(sp)
    k, s, d, pads = a["kernel"], a["strides"], a["dilations"], a["pads"]
    out = []
    for i in range(nd):
        o = conv_out(sp[i], k[i], s[i], d[i], pads[i], pads[nd + i], a.get("ceil_mode", 0))
        if a.get("ceil_mode", 0) and (o - 1) * s[i] >= sp[i] + pads[i]:
            o -= 1  # the last window must start inside the input or the begin padding
        out.append(o)
    return out


def _pool_parts(x, a):
    n, c, *sp = _dims(x)
    nd = len(sp)
    k, s, d, pads = a["kernel"], a["strides"], a["dilations"], a["pads"]
    rk = [reduce_axis((0, kk), name=f"rk{i}") for i, kk in enumerate(k)]

    def where(p):
        pos = [p[i] * s[i] + rk[i].var * d[i] - pads[i] for i in range(nd)]
        return pos, _all([_inside(pos[i], sp[i]) for i in range(nd)])
    return (n, c, *pool_out_shape(sp, a)), sp, rk, where


def _max_pool(xs, a):
    x = xs[0]
    shape, sp, rk, where = _pool_parts(x, a)

    def body(*i):
        b, ch, p = i[0], i[1], i[2:]
        pos, ok = where(p)
        v = x(b, ch, *[_clamp(q, sp[i]) for i, q in enumerate(pos)])
        return tl.max(tl.select(ok, v, tl.min_value(x.dtype)), axis=rk)
    out = compute(shape, body, name="T_max_pool", tag="pool")
    if not a.get("with_indices", 0):
        return out
    strides_flat = [int(math.prod(sp[i + 1:])) for i in range(len(sp))]
    if a.get("storage_order", 0):  # column-major spatial indices
        strides_flat = [int(math.prod(sp[:i])) for i in range(len(sp))]
    c = _dims(x)[1]

    def index_body(*i):
        b, ch, p = i[0], i[1], i[2:]
        pos, ok = where(p)
        v = x(b, ch, *[_clamp(q, sp[i]) for i, q in enumerate(pos)])
        flat = tl.cast((b * c + ch) * int(math.prod(sp)), "int64")
        for q, st in zip(pos, strides_flat):
            flat = flat + tl.cast(q * st, "int64")
        hit = tl.all(ok, v == out(b, ch, *p))
        return tl.min(tl.select(hit, flat, tl.max_value("int64")), axis=rk)
    rk2 = [reduce_axis((0, kk), name=f"rj{i}") for i, kk in enumerate(a["kernel"])]
    rk[:] = rk2  # the index reduction needs its own axes
    return [out, compute(shape, index_body, name="T_max_pool_index", tag="pool")]


def _avg_pool(xs, a):
    x = xs[0]
    shape, sp, rk, where = _pool_parts(x, a)
    nd = len(sp)
    k, s, d, pads = a["kernel"], a["strides"], a["dilations"], a["pads"]
    p_norm = a.get("p", 0)

    def body(*i):
        b, ch, p = i[0], i[1], i[2:]
        pos, ok = where(p)
        v = x(b, ch, *[_clamp(q, sp[i]) for i, q in enumerate(pos)])
        if p_norm:
            v = abs(v) if p_norm == 1 else tl.power(abs(v), const(float(p_norm), x.dtype))
        return tl.sum(tl.select(ok, v, const(0, x.dtype)), axis=rk)
    total = compute(shape, body, name="T_pool_sum", tag="pool")
    if p_norm:
        if p_norm == 1:
            return total
        inv = const(1.0 / p_norm, x.dtype)
        return compute(shape, lambda *i: tl.power(total(*i), inv), name="T_lp_pool",
                       tag="elemwise")

    def count(p):
        # the window's size, clipped to the padded input (count_include_pad) or the input
        cnt = None
        for i in range(nd):
            start = p[i] * s[i] - pads[i]
            lo, hi = (-pads[i], sp[i] + pads[nd + i]) if a.get("count_include_pad", 0) \
                else (0, sp[i])
            first = tl.max(start, lo)
            last = tl.min(start + (k[i] - 1) * d[i], hi - 1)
            # taps of stride d from the first tap at or after ``first``
            skip = tl.floordiv(first - start + d[i] - 1, d[i])
            num = tl.max(tl.floordiv(last - start, d[i]) - skip + 1, 0)
            cnt = num if cnt is None else cnt * num
        return cnt

    return compute(shape, lambda *i: total(*i) / tl.cast(
        tl.max(count(i[2:]), 1), x.dtype), name="T_avg_pool", tag="elemwise")


register("max_pool", None, _max_pool, "reduction")
register("avg_pool", None, _avg_pool, "reduction")


# -- reductions -------------------------------------------------------------------------------

register("reduce_prod", None,
         lambda xs, a: T.reduce.prod(xs[0], axis=None if a.get("axes") is None
                                     else tuple(a["axes"]), keepdims=bool(a.get("keepdims", 0))),
         "reduction")


def _arg(is_max):
    fn = T.reduce.argmax if is_max else T.reduce.argmin

    def fcompute(xs, a):
        x, axis = xs[0], a["axis"]
        n = _dims(x)[axis]
        if a.get("select_last_index", 0):
            x = T.transform.flip(x, axis=axis)
        idx = fn(x, axis=axis, keepdims=bool(a.get("keepdims", 1)), dtype="int64")
        if a.get("select_last_index", 0):
            idx = compute(idx.shape, lambda *i: const(n - 1, "int64") - idx(*i),
                          name="T_arg_last", tag="elemwise")
        return idx
    return fcompute


register("argmax", None, _arg(True), "reduction")
register("argmin", None, _arg(False), "reduction")


def _hardmax(xs, a):
    x, axis = xs[0], a["axis"]
    idx = T.reduce.argmax(x, axis=axis, keepdims=True, dtype="int64")
    return compute(x.shape, lambda *i: tl.select(
        idx(*i[:axis], 0, *i[axis + 1:]) == tl.cast(i[axis], "int64"), const(1, x.dtype),
        const(0, x.dtype)), name="T_hardmax", tag="injective")


register("hardmax", None, _hardmax, "reduction")


# -- top-k: rank every element of the row, then pick the ranks 0..k-1 ----------------------

def _topk(xs, a):
    x, k, axis = xs[0], a["k"], a["axis"]
    largest = a.get("largest", 1)
    dims = _dims(x)
    n = dims[axis]
    r = reduce_axis((0, n), name="r")

    def at(i, j):
        return x(*i[:axis], j, *i[axis + 1:])

    def rank_body(*i):
        me, other = at(i, i[axis]), at(i, r.var)
        ahead = (other > me) if largest else (other < me)
        tie = tl.all(other == me, r.var < i[axis])
        return tl.sum(tl.select(tl.any(ahead, tie), const(1, "int64"), const(0, "int64")),
                      axis=r)
    rank = compute(dims, rank_body, name="T_topk_rank", tag="topk")
    shape = dims[:axis] + (k,) + dims[axis + 1:]
    q = reduce_axis((0, n), name="q")

    def index_body(*i):
        hit = rank(*i[:axis], q.var, *i[axis + 1:]) == tl.cast(i[axis], "int64")
        return tl.sum(tl.select(hit, tl.cast(q.var, "int64"), const(0, "int64")), axis=q)
    indices = compute(shape, index_body, name="T_topk_indices", tag="topk")
    values = compute(shape, lambda *i: at(i, indices(*i)), name="T_topk_values",
                     tag="injective")
    return [values, indices]


register("topk", None, _topk, "opaque")


# -- resize -----------------------------------------------------------------------------------

def _source(o, size_in, size_out, scale, mode):
    """The input coordinate (a float expression) of output coordinate ``o`` on one axis."""
    of = tl.cast(o, "float32")
    if mode == "asymmetric":
        return of / scale
    if mode == "align_corners":
        resized = size_in * scale  # ONNX uses the unrounded output length here
        return of * ((size_in - 1) / (resized - 1)) if resized != 1 else of * 0.0
    if mode == "pytorch_half_pixel":
        return (of + 0.5) / scale - 0.5 if size_out > 1 else of * 0.0
    if mode == "half_pixel_symmetric":
        adj = size_out / (scale * size_in)
        center = size_in / 2.0
        offset = center * (1 - adj)
        return offset + (of + 0.5) / scale - 0.5
    return (of + 0.5) / scale - 0.5  # half_pixel


def _nearest(src, n, rule):
    if rule == "floor":
        i = tl.floor(src)
    elif rule == "ceil":
        i = tl.ceil(src)
    elif rule == "round_prefer_ceil":
        i = tl.floor(src + 0.5)
    else:  # round_prefer_floor
        i = tl.ceil(src - 0.5)
    return _clamp(tl.cast(i, "int32"), n)


def _resize(xs, a):
    x = xs[0]
    dims, out = _dims(x), tuple(a["shape"])
    scales, mode = a["scales"], a.get("mode", "nearest")
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    rule = a.get("nearest_mode", "round_prefer_floor")
    active = [d for d in range(len(dims)) if dims[d] != out[d] or scales[d] != 1.0]

    if mode == "nearest":
        def body(*i):
            idx = list(i)
            for d in active:
                idx[d] = _nearest(_source(i[d], dims[d], out[d], scales[d], ctm), dims[d], rule)
            return x(*idx)
        return compute(out, body, name="T_resize_nearest", tag="injective")

    if mode == "cubic":
        return _resize_cubic(x, dims, out, scales, ctm, a)

    def body(*i):  # (multi)linear: a weighted sum over the 2^d corners
        lows, fracs = {}, {}
        for d in active:
            src = _source(i[d], dims[d], out[d], scales[d], ctm)
            src = tl.max(src, const(0.0, "float32"))
            lo = tl.floor(src)
            fracs[d] = tl.min(src - lo, const(1.0, "float32"))
            lows[d] = tl.cast(lo, "int32")
        total = None
        for corner in range(2 ** len(active)):
            idx, weight = list(i), None
            for bit, d in enumerate(active):
                up = (corner >> bit) & 1
                idx[d] = _clamp(lows[d] + up, dims[d])
                wd = fracs[d] if up else const(1.0, "float32") - fracs[d]
                weight = wd if weight is None else weight * wd
            term = tl.cast(x(*idx), "float32") * weight
            total = term if total is None else total + term
        return tl.cast(total, x.dtype)
    return compute(out, body, name="T_resize_linear", tag="injective")


register("resize", lambda types, a: TensorType(tuple(a["shape"]), types[0].dtype), _resize,
         "injective")


def _cubic_weights(t, coeff):
    """The four cubic-convolution weights of taps -1, 0, 1, 2 at fraction ``t``."""
    A = coeff

    def far(d):  # 1 < |d| < 2
        return ((d * A - 5 * A) * d + 8 * A) * d - 4 * A

    def near(d):  # |d| <= 1
        return ((A + 2) * d - (A + 3)) * d * d + 1
    return [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]


def _resize_cubic(x, dims, out, scales, ctm, a):
    active = [d for d in range(len(dims)) if dims[d] != out[d] or scales[d] != 1.0]
    coeff, exclude = a.get("cubic_coeff_a", -0.75), a.get("exclude_outside", 0)

    def body(*i):
        taps = {}
        for d in active:
            src = _source(i[d], dims[d], out[d], scales[d], ctm)
            lo = tl.floor(src)
            ws = _cubic_weights(src - lo, coeff)
            base = tl.cast(lo, "int32")
            idx = [base + (k - 1) for k in range(4)]
            if exclude:
                ws = [tl.select(tl.all(j >= 0, j < dims[d]), w, const(0.0, "float32"))
                      for j, w in zip(idx, ws)]
                norm = ws[0] + ws[1] + ws[2] + ws[3]
                ws = [w / norm for w in ws]
            taps[d] = [(_clamp(j, dims[d]), w) for j, w in zip(idx, ws)]
        total = None
        for corner in range(4 ** len(active)):
            idx, weight = list(i), None
            for pos, d in enumerate(active):
                j, w = taps[d][(corner // 4 ** pos) % 4]
                idx[d] = j
                weight = w if weight is None else weight * w
            term = tl.cast(x(*idx), "float32") * weight
            total = term if total is None else total + term
        return tl.cast(total, x.dtype)
    return compute(out, body, name="T_resize_cubic", tag="injective")


# -- grid sample ------------------------------------------------------------------------------

def _reflect(x, lo, hi):
    """``x`` reflected into ``[lo, hi]`` (a float expression), as often as needed."""
    rng = hi - lo
    if rng <= 0:
        return x * 0.0 + lo
    below, above = lo - x, x - hi
    out = x
    for d, inside_lo in ((below, True), (above, False)):
        n = tl.floor(d / rng)
        r = d - n * rng
        even = tl.floormod(tl.cast(n, "int32"), 2) == 0
        if inside_lo:
            moved = tl.select(even, lo + r, hi - r)
            out = tl.select(x < lo, moved, out)
        else:
            moved = tl.select(even, hi - r, lo + r)
            out = tl.select(x > hi, moved, out)
    return out


def _grid_sample(xs, a):
    x, grid = xs
    n, c, *sp = _dims(x)
    out_sp = _dims(grid)[1:-1]
    nd = len(sp)
    mode, pad = a.get("mode", "linear"), a.get("padding_mode", "zeros")
    align = a.get("align_corners", 0)
    f32 = "float32"

    def coord(b, p, axis):  # the input coordinate along spatial axis ``axis``
        g = tl.cast(grid(b, *p, nd - 1 - axis), f32)
        size = sp[axis]
        v = (g + 1.0) / 2.0 * (size - 1) if align else ((g + 1.0) * size - 1.0) / 2.0
        if pad == "border":
            v = tl.min(tl.max(v, const(0.0, f32)), const(float(size - 1), f32))
        elif pad == "reflection":
            v = _reflect(v, 0.0, float(size - 1)) if align else _reflect(v, -0.5, size - 0.5)
        return v

    def body(*i):
        b, ch, p = i[0], i[1], i[2:]
        cs = [coord(b, p, k) for k in range(nd)]
        if mode == "nearest":
            idx = [tl.cast(tl.round(v), "int32") for v in cs]
            ok = _all([_inside(j, sp[k]) for k, j in enumerate(idx)])
            v = x(b, ch, *[_clamp(j, sp[k]) for k, j in enumerate(idx)])
            return tl.select(ok, v, const(0, x.dtype))
        taps = []
        for k, v in enumerate(cs):
            lo = tl.floor(v)
            t = v - lo
            base = tl.cast(lo, "int32")
            if mode == "cubic":
                ws = _cubic_weights(t, -0.75)
                taps.append([(base + (m - 1), w) for m, w in enumerate(ws)])
            else:
                taps.append([(base, 1.0 - t), (base + 1, t)])
        total = None
        width = len(taps[0])
        for corner in range(width ** nd):
            idx, weight, conds = [], None, []
            for k in range(nd):
                j, w = taps[k][(corner // width ** k) % width]
                conds.append(_inside(j, sp[k]))
                idx.append(_clamp(j, sp[k]))
                weight = w if weight is None else weight * w
            v = tl.cast(x(b, ch, *idx), f32)
            if pad == "zeros":
                v = tl.select(_all(conds), v, const(0.0, f32))
            term = v * weight
            total = term if total is None else total + term
        return tl.cast(total, x.dtype)
    return compute((n, c, *out_sp), body, name="T_grid_sample", tag="injective")


register("grid_sample", None, _grid_sample, "injective")
