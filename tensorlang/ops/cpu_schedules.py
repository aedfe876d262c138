"""Hand-written CPU schedules for common operators (a starting point before tuning).

The vector width is the caller's to give (``codegen.llvm.host_target().vector_bits // 32`` for
float32): this layer does not know the target.
"""
from __future__ import annotations

from .. import tensor as _t
from ..reduction import sum as _sum
from ..math import if_then_else
from ..schedule import create_schedule


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
