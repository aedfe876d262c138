"""Winograd (Toom-Cook) convolution ``F(m x m, r x r)`` in the channel-blocked layout.

A stride-1 ``r x r`` convolution computes each ``m x m`` output tile from an ``a x a`` input tile
(``a = m + r - 1``) as ``Y = AT [sum_c (G g G^T) * (BT d B)] A``: the products are
elementwise, so over all channels they become ``a * a`` independent matrix products
``M[e] = V[e] @ U[e]`` (``V[e]``: tiles x input channels, ``U[e]``: input x output channels).
For ``F(4x4, 3x3)`` that is 36 multiply-adds per tile and channel pair where the direct
convolution needs 144: 4x fewer, paid for with the input and output transforms (a few adds per
element) and a weight 4x the size of the 3x3 one (fine for 56 x 56 and 28 x 28 layers, a loss
on 7 x 7 ones).

Stages (``conv2d_winograd_nchwc``):

- ``winograd_pad``: the blocked input ``[N, C/cb, H, W, cb]`` zero-padded to whole tiles;
- ``winograd_rows`` then ``winograd_input``: ``V [a, a, N*tiles_h, tiles_w, C/cb, cb]`` (in
  memory ``[a*a][P][C]``, ``P`` tiles), ``BT`` applied down the tile's columns and then along
  its rows, each element a short sum with the nonzero coefficients only, chosen by a select
  on the unrolled tile axis (:func:`schedule_winograd` unrolls them; code generation folds
  the select away); the first half lives in a per-tile local buffer;
- the product ``M [a*a, P, K]``, by default a DSL reduction; the graph layer passes a grouped
  BLAS call instead (one ``sgemm`` per ``e``);
- ``winograd_half`` then ``winograd_output``: ``[N, K/kb, OH, OW, kb]``, ``AT`` applied along
  the product tile's rows and then down its columns, with the coefficients of the pixel's
  place in its tile (selects on ``x % m`` and ``y % m``, folded the same way once the output
  rows and columns are split by ``m`` and unrolled).

The weight is transformed once, outside the kernel (:func:`winograd_weight`).

Example::

    U = winograd_weight(w, tile=4)                        # w: NumPy [K, C, 3, 3]
    X = tl.placeholder((1, 4, 56, 56, 16), name="X")      # C = 64 in blocks of 16
    Wt = tl.placeholder(U.shape, name="U")
    Y = conv2d_winograd_nchwc(X, Wt, tile=4, padding=1, out_block=16)
    s = tl.create_schedule(Y)
    schedule_winograd(s, s[Y])
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from .. import dtype as dt
from .. import math as tm
from .. import reduction as red
from ..errors import ShapeError
from ..tensor import Tensor, compute, reduce_axis
from ._util import (check_ndim, check_non_negative, check_tensor, const_int, padding_4,
                    shape_str)

# interpolation points, in the order the standard constructions take them (small magnitudes
# first keep the transforms' rounding error low)
_POINTS = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2), 3, -3, Fraction(1, 3),
           Fraction(-1, 3))
TILES = (2, 4, 6)


def _poly_mul(p: list, q: list) -> list:
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] += a * b
    return out


def winograd_matrices(tile: int, kernel: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(AT [m, a], G [a, r], BT [a, a])`` of ``F(m, r)`` for correlation (``y[i] = sum_j
    g[j] d[i + j]`` is ``AT @ ((G @ g) * (BT @ d))``), from ``a - 1`` finite points and the
    point at infinity, exactly (fractions) and returned as float64."""
    m, r = int(tile), int(kernel)
    alpha = m + r - 1
    if m < 1 or r < 1 or alpha - 1 > len(_POINTS):
        raise ShapeError(f"winograd: F({m}, {r}) needs {alpha - 1} interpolation points; "
                         f"at most {len(_POINTS)} are known")
    points = [Fraction(p) for p in _POINTS[:alpha - 1]]
    at = [[Fraction(0)] * alpha for _ in range(m)]
    g = [[Fraction(0)] * r for _ in range(alpha)]
    bt = [[Fraction(0)] * alpha for _ in range(alpha)]
    everything = [Fraction(1)]
    for p in points:
        everything = _poly_mul(everything, [-p, Fraction(1)])
    for k, p in enumerate(points):
        others, scale = [Fraction(1)], Fraction(1)
        for q in points[:k] + points[k + 1:]:
            others = _poly_mul(others, [-q, Fraction(1)])
            scale *= p - q
        bt[k] = others + [Fraction(0)] * (alpha - len(others))
        g[k] = [p ** j / scale for j in range(r)]
        for i in range(m):
            at[i][k] = p ** i
    bt[alpha - 1] = everything
    g[alpha - 1][r - 1] = Fraction(1)
    at[m - 1][alpha - 1] = Fraction(1)
    as_array = lambda rows: np.array([[float(v) for v in row] for row in rows])  # noqa: E731
    return as_array(at), as_array(g), as_array(bt)


def winograd_weight(weight: np.ndarray, tile: int) -> np.ndarray:
    """An OIHW weight ``[K, C, r, r]`` transformed for ``F(tile, r)``: ``U [a*a, C, K]``
    (float32, C-contiguous), ``U[eh * a + ew, c, k] = (G w[k, c] G^T)[eh, ew]``."""
    weight = np.asarray(weight)
    if weight.ndim != 4 or weight.shape[2] != weight.shape[3]:
        raise ShapeError(f"winograd_weight: needs a square OIHW kernel, got shape "
                         f"{weight.shape}")
    k, c, r, _ = weight.shape
    _, g, _ = winograd_matrices(tile, r)
    u = np.einsum("ea,kcab,fb->efck", g, weight.astype(np.float64), g)
    alpha = tile + r - 1
    return np.ascontiguousarray(u.reshape(alpha * alpha, c, k).astype(np.float32))


def _sum(terms: list):
    """A balanced sum (independent adds for the out-of-order core); ``terms`` not empty."""
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


def _combination(coefficients: np.ndarray, values) -> object:
    """``sum(c * v)`` over the nonzero coefficients; ``values(i)`` gives term ``i``."""
    terms = []
    for i, c in enumerate(coefficients):
        if c == 0:
            continue
        v = values(i)
        terms.append(v if c == 1 else -v if c == -1 else v * float(c))
    if not terms:
        return values(0) * 0.0
    return _sum(terms)


def _pick(index, options: list):
    """``options[index]`` as a select chain (folded away where ``index`` is a constant)."""
    out = options[-1]
    for k in range(len(options) - 2, -1, -1):
        out = tm.select(index == k, options[k], out)
    return out


def _default_product(v: Tensor, u: Tensor, tiles: tuple, name: str) -> Tensor:
    """``M[e, p, k] = sum_c V[e, p, c] U[e, c, k]`` as a DSL reduction (any target)."""
    alpha, _, rows, tiles_w, c_outer, cb = (const_int(d) for d in v.shape)
    channels, outputs = const_int(u.shape[1]), const_int(u.shape[2])
    c = reduce_axis((0, channels), name="c")
    return compute((alpha * alpha, rows * tiles_w, outputs),
                   lambda e, p, k: red.sum(
                       v[e // alpha, e % alpha, p // tiles_w, p % tiles_w, c.var // cb,
                         c.var % cb] * u[e, c.var, k], axis=c),
                   name=name, tag="winograd_product")


def conv2d_winograd_nchwc(data: Tensor, weight: Tensor, tile: int = 4, padding=0,
                          out_block: int | None = None, kernel_size: int = 3,
                          product=None) -> Tensor:
    """Stride-1 ``kernel_size``-square convolution of blocked ``data`` ``[N, C/cb, H, W, cb]``
    with a transformed weight ``[a*a, C, K]`` (:func:`winograd_weight`), giving ``[N, K/kb, OH,
    OW, kb]`` (``kb = out_block``, default ``cb``). ``product(V, U)``, when given, returns
    ``M [a*a, P, K]`` (``V``'s memory is ``[a*a][P][C]``); see the module docstring."""
    op = "conv2d_winograd_nchwc"
    check_tensor(op, "data", data)
    check_tensor(op, "weight", weight)
    check_ndim(op, "data", data, 5, "NCHWc")
    check_ndim(op, "weight", weight, 3, "[a*a, C, K]")
    m, r = int(tile), int(kernel_size)
    if m not in TILES:
        raise ShapeError(f"{op}: tile must be one of {list(TILES)}, got {tile}")
    alpha = m + r - 1
    dims = [const_int(d) for d in tuple(data.shape) + tuple(weight.shape)]
    if any(d is None for d in dims):
        raise ShapeError(f"{op}: needs constant shapes, got data {shape_str(data.shape)} and "
                         f"weight {shape_str(weight.shape)}")
    n, c_outer, h, w, cb, ee, channels, outputs = dims
    if ee != alpha * alpha or channels != c_outer * cb:
        raise ShapeError(f"{op}: weight {weight.name} {shape_str(weight.shape)} does not fit "
                         f"F({m}x{m}, {r}x{r}) (needs [{alpha * alpha}, {c_outer * cb}, K]) "
                         f"on data {data.name} {shape_str(data.shape)}")
    kb = cb if out_block is None else int(out_block)
    if kb < 1 or outputs % kb:
        raise ShapeError(f"{op}: out_block {kb} must divide the {outputs} output channels")
    pads = tuple(const_int(p) for p in padding_4(op, padding))
    check_non_negative(op, "padding", pads)
    top, left, bottom, right = pads
    out_h, out_w = h + top + bottom - r + 1, w + left + right - r + 1
    if out_h < 1 or out_w < 1:
        raise ShapeError(f"{op}: the {r}x{r} window is larger than the padded input "
                         f"({h + top + bottom}x{w + left + right})")
    tiles_h, tiles_w = -(-out_h // m), -(-out_w // m)
    at, _, bt = winograd_matrices(m, r)
    zero = 0.0 if dt.is_float(data.dtype) else 0

    def pad_body(b, co, y, x, ci):
        inside = (y >= top) & (y < h + top) & (x >= left) & (x < w + left)
        return tm.if_then_else(inside, data[b, co, y - top, x - left, ci], zero)

    padded = compute((n, c_outer, tiles_h * m + r - 1, tiles_w * m + r - 1, cb), pad_body,
                     name="winograd_pad", tag="winograd_pad")

    def rows_body(eh, j, t, tw, co, ci):  # BT applied down each tile column
        b, th = (t // tiles_h, t % tiles_h) if n > 1 else (0, t)
        return _pick(eh, [_combination(bt[row],
                                       lambda i: padded[b, co, th * m + i, tw * m + j, ci])
                          for row in range(alpha)])

    rows = compute((alpha, alpha, n * tiles_h, tiles_w, c_outer, cb), rows_body,
                   name="winograd_rows", tag="winograd_rows")

    def input_body(eh, ew, t, tw, co, ci):  # and along each row: BT d B
        return _pick(ew, [_combination(bt[col], lambda j: rows[eh, j, t, tw, co, ci])
                          for col in range(alpha)])

    v = compute((alpha, alpha, n * tiles_h, tiles_w, c_outer, cb), input_body,
                name="winograd_input", tag="winograd_input")
    mprod = (product or (lambda a, u: _default_product(a, u, (tiles_h, tiles_w),
                                                        "winograd_product")))(v, weight)

    def half_body(eh, wr, t, tw, ko, ki):  # AT applied along each row of the product tile
        return _pick(wr, [_combination(at[col], lambda ew: mprod[eh * alpha + ew,
                                                                  t * tiles_w + tw, ko * kb + ki])
                          for col in range(m)])

    half = compute((alpha, m, n * tiles_h, tiles_w, outputs // kb, kb), half_body,
                   name="winograd_half", tag="winograd_half")

    def output_body(b, ko, y, x, ki):  # and down each column: AT M A
        t, tw = b * tiles_h + y // m, x // m
        return _pick(y % m, [_combination(at[row], lambda eh: half[eh, x % m, t, tw, ko, ki])
                             for row in range(m)])

    return compute((n, outputs // kb, out_h, out_w, kb), output_body, name="winograd_output",
                   tag="winograd_output")


def schedule_winograd(sch, out_stage, tile: int | None = None) -> None:
    """Schedule the stages of :func:`conv2d_winograd_nchwc` in ``sch``: the pad stage parallel
    over rows and vectorized over the channel block; the input transform parallel over tiles,
    its ``(eh, ew)`` axes unrolled (their selects fold away) and the block vectorized; the
    output ``out_stage`` (the ``winograd_output`` stage, or the elementwise stage it was
    inlined into, with the same axes) with rows and columns split by the tile, the tile
    unrolled and the block vectorized, parallel over blocks and tile rows. A DSL product
    stage (not an extern) is left with its default loops (the auto-scheduler tiles it: its
    sketches schedule the other stages with the three functions this one calls)."""
    stages = _tagged(sch)
    pad, v = stages.get("winograd_pad"), stages.get("winograd_input")
    if pad is None or v is None:
        raise ShapeError("schedule_winograd: the schedule has no winograd_pad / winograd_input "
                         "stage (build it with conv2d_winograd_nchwc)")
    schedule_winograd_pad(sch, pad)
    schedule_winograd_input(sch, v)
    out = sch[out_stage] if not hasattr(out_stage, "leaf_iter_vars") else out_stage
    schedule_winograd_output(sch, out, tile or const_int(v.op.axis[0].dom.extent) - 2)


def _tagged(sch) -> dict:
    return {st.op.tag: st for st in sch.stages if getattr(st.op, "tag", "")}


def schedule_winograd_pad(sch, pad) -> None:
    """The ``winograd_pad`` stage: parallel over its rows, vectorized over the channel
    block."""
    b, co, y, x, ci = pad.op.axis
    pad.parallel(pad.fuse(b, co, y))
    pad.vectorize(ci)


def schedule_winograd_input(sch, v) -> None:
    """The ``winograd_input`` stage ``v`` (with ``winograd_rows`` computed per tile inside
    it): parallel over tiles, the ``(eh, ew)`` axes unrolled, the channel block vectorized."""
    eh, ew, t, tw, co, ci = v.op.axis
    v.reorder(t, tw, co, eh, ew, ci)
    v.parallel(v.fuse(t, tw))
    v.unroll(eh)
    v.unroll(ew)
    v.vectorize(ci)
    _tile_stage(sch, _tagged(sch).get("winograd_rows"), v, co)


def schedule_winograd_output(sch, out, tile: int) -> None:
    """The output stage ``out`` (``winograd_output``, or the elementwise stage with its axes
    that it was inlined into), with ``winograd_half`` computed per tile inside it: rows and
    columns split by ``tile`` and unrolled, the block vectorized, parallel over blocks and
    tile rows."""
    m = int(tile)
    b, ko, y, x, ki = out.op.axis
    th, hr = out.split(y, factor=m)
    tw, wr = out.split(x, factor=m)
    out.reorder(b, ko, th, tw, hr, wr, ki)
    out.parallel(out.fuse(b, ko, th))
    out.unroll(hr)
    out.unroll(wr)
    out.vectorize(ki)
    _tile_stage(sch, _tagged(sch).get("winograd_half"), out, tw)


def _tile_stage(sch, stage, parent, axis) -> None:
    """A half-transform stage computed per tile inside ``parent`` at ``axis``, in a local
    buffer: its two tile axes unrolled, the channel block vectorized."""
    if stage is None:
        return
    sch[stage].compute_at(parent, axis)
    sch[stage].set_scope("local")
    first, second, t, tw, co, ci = stage.op.axis
    sch[stage].reorder(t, tw, co, first, second, ci)
    sch[stage].unroll(first)
    sch[stage].unroll(second)
    sch[stage].vectorize(ci)


__all__ = ["TILES", "winograd_matrices", "winograd_weight", "conv2d_winograd_nchwc",
           "schedule_winograd", "schedule_winograd_pad", "schedule_winograd_input",
           "schedule_winograd_output"]
