"""More layout and indexing operators of the graph layer: slice, pad, tile, broadcast, gather,
split (several outputs), depth/space rearrangement, triangular masks, cumulative sums, one-hot
and resize. Attributes hold fully resolved constants (the importer normalises negative axes,
missing defaults and input-given values)."""
from __future__ import annotations

import numpy as np

import tensorlang as tl
from tensorlang.expr import const
from tensorlang.errors import ShapeError
from tensorlang.tensor import compute, reduce_axis

from ..ir import TensorType
from . import register


def _dims(t) -> tuple:
    return tuple(int(d) for d in t.shape)


def _clamp(i, n):
    return tl.max(tl.min(i, n - 1), 0)


# -- slice: out[i] = x[begin + i * step] per dimension ---------------------------------------

def _slice(xs, a):
    x = xs[0]
    begins, steps, shape = a["begins"], a["steps"], a["shape"]
    return compute(tuple(shape), lambda *i: x(*[b + s * v for b, s, v in zip(begins, steps, i)]),
                   name="T_slice", tag="injective")


register("slice", lambda types, a: TensorType(tuple(a["shape"]), types[0].dtype), _slice,
         "injective")


# -- pad ------------------------------------------------------------------------------------

def _pad_index(i, before, n, mode):
    j = i - before
    if mode == "edge":
        return _clamp(j, n)
    if mode == "wrap":
        return tl.floormod(j, n)
    if mode == "reflect":
        if n == 1:
            return j * 0
        period = 2 * (n - 1)
        m = tl.floormod(j, period)
        return tl.min(m, period - m)
    return _clamp(j, n)


def _pad(xs, a):
    x = xs[0]
    dims = _dims(x)
    pads, mode = a["pads"], a.get("mode", "constant")
    before, after = pads[:len(dims)], pads[len(dims):]
    shape = tuple(d + b + e for d, b, e in zip(dims, before, after))

    def body(*i):
        value = x(*[_pad_index(v, b, n, mode) for v, b, n in zip(i, before, dims)])
        if mode != "constant":
            return value
        inside = [tl.all(v >= b, v < b + n) for v, b, n in zip(i, before, dims)]
        if not inside:
            return value
        fill = xs[1](*([0] * xs[1].ndim)) if len(xs) > 1 else const(a.get("value", 0), x.dtype)
        return tl.select(tl.all(*inside), value, fill)
    return compute(shape, body, name="T_pad", tag="injective")


def _infer_pad(types, a):
    t = types[0]
    pads = a["pads"]
    shape = tuple(d + b + e for d, b, e in zip(t.shape, pads[:t.ndim], pads[t.ndim:]))
    if any(d < 0 for d in shape):
        raise ShapeError(f"pads {pads} crop {t.shape} below zero")
    if a.get("mode", "constant") != "constant" and 0 in t.shape:
        raise ShapeError(f"cannot {a['mode']}-pad an empty tensor")
    return TensorType(shape, t.dtype)


register("pad", _infer_pad, _pad, "injective")


# -- tile / broadcast_to ------------------------------------------------------------------

register("tile", lambda types, a: TensorType(tuple(d * r for d, r in zip(types[0].shape,
                                                                          a["repeats"])),
                                              types[0].dtype),
         lambda xs, a: compute(tuple(d * r for d, r in zip(_dims(xs[0]), a["repeats"])),
                               lambda *i: xs[0](*[tl.floormod(v, d) if d != 1 else v * 0
                                                  for v, d in zip(i, _dims(xs[0]))]),
                               name="T_tile", tag="injective"), "injective")


def _broadcast_shape(types, a):
    try:
        return tuple(np.broadcast_shapes(types[0].shape, tuple(a["shape"])))
    except ValueError:
        raise ShapeError(f"cannot expand {types[0].shape} to {tuple(a['shape'])}") from None


def _broadcast_to(xs, a):
    x = xs[0]
    dims = _dims(x)
    shape = tuple(np.broadcast_shapes(dims, tuple(a["shape"])))
    lead = len(shape) - len(dims)
    return compute(shape, lambda *i: x(*[i[lead + d] if n != 1 else 0
                                         for d, n in enumerate(dims)]),
                   name="T_broadcast_to", tag="broadcast")


register("broadcast_to", lambda types, a: TensorType(_broadcast_shape(types, a),
                                                     types[0].dtype), _broadcast_to,
         "injective")


# -- gather -------------------------------------------------------------------------------

def _norm_index(v, n):
    v = tl.cast(v, "int64")
    return _clamp(tl.select(v < 0, v + n, v), n)


def _gather(xs, a):
    x, ind = xs
    axis = a["axis"]
    dims, idims = _dims(x), _dims(ind)
    shape = dims[:axis] + idims + dims[axis + 1:]
    k = len(idims)

    def body(*i):
        j = _norm_index(ind(*i[axis:axis + k]), dims[axis])
        return x(*i[:axis], j, *i[axis + k:])
    return compute(shape, body, name="T_gather", tag="injective")


register("gather", None, _gather, "injective")


def _gather_elements(xs, a):
    x, ind = xs
    axis, dims = a["axis"], _dims(x)

    def body(*i):
        j = _norm_index(ind(*i), dims[axis])
        return x(*i[:axis], j, *i[axis + 1:])
    return compute(_dims(ind), body, name="T_gather_elements", tag="injective")


register("gather_elements", None, _gather_elements, "injective")


def _gather_nd(xs, a):
    x, ind = xs
    b = a.get("batch_dims", 0)
    dims, idims = _dims(x), _dims(ind)
    depth = idims[-1]
    shape = idims[:-1] + dims[b + depth:]
    nq = len(idims) - 1

    def body(*i):
        q = i[:nq]
        picks = [_norm_index(ind(*q, const(d, "int64")), dims[b + d]) for d in range(depth)]
        return x(*i[:b], *picks, *i[nq:])
    return compute(shape, body, name="T_gather_nd", tag="injective")


register("gather_nd", None, _gather_nd, "injective")


# -- split: several outputs ---------------------------------------------------------------

def _split(xs, a):
    x, axis = xs[0], a["axis"]
    dims = _dims(x)
    outs, start = [], 0
    def part(offset):
        return lambda *i: x(*i[:axis], i[axis] + offset, *i[axis + 1:])
    for k, size in enumerate(a["sizes"]):
        shape = dims[:axis] + (size,) + dims[axis + 1:]
        outs.append(compute(shape, part(start if size else 0), name=f"T_split{k}",
                            tag="injective"))
        start += size
    return outs


def _infer_split(types, a):
    t, axis = types[0], a["axis"]
    if sum(a["sizes"]) != t.shape[axis]:
        raise ShapeError(f"split sizes {a['sizes']} do not add up to {t.shape[axis]}")
    return [TensorType(t.shape[:axis] + (s,) + t.shape[axis + 1:], t.dtype) for s in a["sizes"]]


register("split", _infer_split, _split, "opaque")


# -- depth / space ------------------------------------------------------------------------

def _depth_to_space(xs, a):
    x, bs, mode = xs[0], a["blocksize"], a.get("mode", "DCR")
    n, c, h, w = _dims(x)
    oc = c // (bs * bs)

    def body(b, ch, y, xx):
        by, bx = tl.floormod(y, bs), tl.floormod(xx, bs)
        src = (by * bs + bx) * oc + ch if mode == "DCR" else ch * bs * bs + by * bs + bx
        return x(b, src, tl.floordiv(y, bs), tl.floordiv(xx, bs))
    return compute((n, oc, h * bs, w * bs), body, name="T_depth_to_space", tag="injective")


def _space_to_depth(xs, a):
    x, bs = xs[0], a["blocksize"]
    n, c, h, w = _dims(x)

    def body(b, ch, y, xx):
        blk, src = tl.floordiv(ch, c), tl.floormod(ch, c)
        return x(b, src, y * bs + tl.floordiv(blk, bs), xx * bs + tl.floormod(blk, bs))
    return compute((n, c * bs * bs, h // bs, w // bs), body, name="T_space_to_depth",
                   tag="injective")


register("depth_to_space", None, _depth_to_space, "injective")
register("space_to_depth", None, _space_to_depth, "injective")


# -- trilu / eye / one-hot ----------------------------------------------------------------

def _trilu(xs, a):
    x, k, upper = xs[0], a.get("k", 0), a.get("upper", 1)

    def body(*i):
        r, c = i[-2], i[-1]
        keep = (c - r >= k) if upper else (c - r <= k)
        return tl.select(keep, x(*i), const(0, x.dtype))
    return compute(x.shape, body, name="T_trilu", tag="elemwise")


register("trilu", lambda types, a: types[0], _trilu, "elementwise")
register("eye_like", lambda types, a: TensorType(types[0].shape, a["dtype"]),
         lambda xs, a: compute(xs[0].shape, lambda r, c: tl.select(
             c - r == a.get("k", 0), const(1, a["dtype"]), const(0, a["dtype"])),
             name="T_eye_like", tag="elemwise"), "elementwise")


def _one_hot(xs, a):
    ind, values = xs
    depth, axis = a["depth"], a["axis"]
    dims = _dims(ind)
    axis = axis + len(dims) + 1 if axis < 0 else axis
    shape = dims[:axis] + (depth,) + dims[axis:]

    def body(*i):
        v = tl.cast(ind(*i[:axis], *i[axis + 1:]), "int64")
        v = tl.select(v < 0, v + depth, v)
        return tl.select(v == tl.cast(i[axis], "int64"), values(1), values(0))
    return compute(shape, body, name="T_one_hot", tag="injective")


register("one_hot", None, _one_hot, "injective")


# -- cumulative sum -----------------------------------------------------------------------

def _cumulative(xs, a, product=False):
    x, axis = xs[0], a["axis"]
    n = _dims(x)[axis]
    exclusive, reverse = a.get("exclusive", 0), a.get("reverse", 0)
    r = reduce_axis((0, n), name="r")

    def body(*i):
        j = i[axis]
        if reverse:
            cond = r.var > j if exclusive else r.var >= j
        else:
            cond = r.var < j if exclusive else r.var <= j
        src = x(*i[:axis], r.var, *i[axis + 1:])
        if product:
            return tl.prod(tl.select(cond, src, const(1, x.dtype)), axis=r)
        return tl.sum(tl.select(cond, src, const(0, x.dtype)), axis=r)
    return compute(x.shape, body, name="T_cumprod" if product else "T_cumsum", tag="cumsum")


register("cumsum", lambda types, a: types[0], _cumulative, "reduction")
register("cumprod", lambda types, a: types[0],
         lambda xs, a: _cumulative(xs, a, product=True), "reduction")


# -- einsum (equation normalised: explicit output, no ellipsis) ----------------------------

def _einsum(xs, a):
    ins, out = a["equation"].split("->")
    ins = ins.split(",")
    sizes: dict = {}
    for t, sub in zip(xs, ins):
        for ch, d in zip(sub, _dims(t)):
            sizes[ch] = max(sizes.get(ch, 1), d)
    reduced = [ch for ch in sizes if ch not in out]
    axes = {ch: reduce_axis((0, sizes[ch]), name=f"r_{ch}") for ch in reduced}

    def body(*i):
        env = dict(zip(out, i))
        env.update({ch: rv.var for ch, rv in axes.items()})
        term = None
        for t, sub in zip(xs, ins):
            v = t(*[env[ch] if d != 1 else 0 for ch, d in zip(sub, _dims(t))])
            term = v if term is None else term * v
        return tl.sum(term, axis=list(axes.values())) if axes else term
    return compute(tuple(sizes[ch] for ch in out), body, name="T_einsum", tag="einsum")


register("einsum", None, _einsum, "out_fusable")


# -- scatter --------------------------------------------------------------------------------

def _combine(kind, old, new):
    if kind == "add":
        return old + new
    if kind == "mul":
        return old * new
    if kind == "max":
        return tl.max(old, new)
    if kind == "min":
        return tl.min(old, new)
    return new


def _scatter_elements(xs, a):
    data, ind, upd = xs
    axis, kind = a["axis"], a.get("reduction", "none")
    dims, udims = _dims(data), _dims(upd)
    m = udims[axis]
    r = reduce_axis((0, m), name="r")

    def matches(i, j):
        inside = [i[d] < udims[d] for d in range(len(dims)) if d != axis and udims[d] < dims[d]]
        at = [_clamp(i[d], udims[d]) if d != axis else j for d in range(len(dims))]
        hit = _norm_index(ind(*at), dims[axis]) == tl.cast(i[axis], "int64")
        return tl.all(hit, *inside), at

    def last(*i):
        hit, _ = matches(i, r.var)
        return tl.max(tl.select(hit, tl.cast(r.var, "int64"), const(-1, "int64")), axis=r)
    if kind == "none":
        pick = compute(dims, last, name="T_scatter_last", tag="scatter")

        def body(*i):
            j = pick(*i)
            _, at = matches(i, _clamp(j, m))
            return tl.select(j >= 0, upd(*at), data(*i))
        return compute(dims, body, name="T_scatter_elements", tag="injective")
    r2 = reduce_axis((0, m), name="r2")
    neutral = {"add": 0, "mul": 1}

    def body(*i):
        hit, at = matches(i, r2.var)
        v = upd(*at)
        if kind in neutral:
            fn = tl.sum if kind == "add" else tl.prod
            total = fn(tl.select(hit, v, const(neutral[kind], data.dtype)), axis=r2)
        elif kind == "max":
            total = tl.max(tl.select(hit, v, tl.min_value(data.dtype)), axis=r2)
        else:
            total = tl.min(tl.select(hit, v, tl.max_value(data.dtype)), axis=r2)
        return total
    acc = compute(dims, body, name="T_scatter_acc", tag="scatter")
    return compute(dims, lambda *i: _combine(kind, data(*i), acc(*i)),
                   name="T_scatter_elements", tag="elemwise")


register("scatter_elements", lambda types, a: types[0], _scatter_elements, "opaque")


def _scatter_nd(xs, a):
    data, ind, upd = xs
    kind = a.get("reduction", "none")
    dims, idims = _dims(data), _dims(ind)
    k, qdims = idims[-1], idims[:-1]
    nq = int(np.prod(qdims, dtype=np.int64))
    r = reduce_axis((0, nq), name="r")

    def unflat(flat):
        out, rest = [], flat
        for d in reversed(qdims):
            out.append(tl.floormod(rest, d))
            rest = tl.floordiv(rest, d)
        return list(reversed(out))

    def hit(i, flat):
        q = unflat(flat)
        conds = [_norm_index(ind(*q, const(c, "int64")), dims[c]) == tl.cast(i[c], "int64")
                 for c in range(k)]
        return tl.all(*conds), q

    def last(*i):
        h, _ = hit(i, r.var)
        return tl.max(tl.select(h, tl.cast(r.var, "int64"), const(-1, "int64")), axis=r)
    if kind == "none":
        pick = compute(dims, last, name="T_scatter_last", tag="scatter")

        def body(*i):
            j = pick(*i)
            q = unflat(tl.cast(tl.max(j, const(0, "int64")), "int32"))
            return tl.select(j >= 0, upd(*q, *i[k:]), data(*i))
        return compute(dims, body, name="T_scatter_nd", tag="injective")
    r2 = reduce_axis((0, nq), name="r2")
    neutral = {"add": 0, "mul": 1}

    def body(*i):
        h, q = hit(i, r2.var)
        v = upd(*q, *i[k:])
        if kind in neutral:
            fn = tl.sum if kind == "add" else tl.prod
            return fn(tl.select(h, v, const(neutral[kind], data.dtype)), axis=r2)
        if kind == "max":
            return tl.max(tl.select(h, v, tl.min_value(data.dtype)), axis=r2)
        return tl.min(tl.select(h, v, tl.max_value(data.dtype)), axis=r2)
    acc = compute(dims, body, name="T_scatter_acc", tag="scatter")
    return compute(dims, lambda *i: _combine(kind, data(*i), acc(*i)), name="T_scatter_nd",
                   tag="elemwise")


register("scatter_nd", lambda types, a: types[0], _scatter_nd, "opaque")
