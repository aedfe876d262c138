"""Tile sizes: the factorizations a sketch's tile knobs draw from, and the default tiles
(register tile, reduction split) that a sketch's default decisions use.

Example::

    factorizations(12, 2)            # ((1, 12), (2, 6), (3, 4), (4, 3), (6, 2), (12, 1))
    _register_tile(16, 7, lanes=8)   # (8, 7): 7 rows of one 8-lane vector
"""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def factorizations(extent: int, levels: int, max_inner: int | None = None) -> tuple:
    """All ordered ways to write ``extent`` as a product of ``levels`` factors (outermost first),
    with the innermost factor at most ``max_inner``."""
    if levels == 1:
        return ((extent,),) if max_inner is None or extent <= max_inner else ()
    out = []
    for d in _divisors(extent):
        for rest in factorizations(extent // d, levels - 1, max_inner):
            out.append((d,) + rest)
    return tuple(out)


@functools.lru_cache(maxsize=None)
def _divisors(n: int) -> tuple:
    return tuple(d for d in range(1, n + 1) if n % d == 0)


def _largest_divisor(n: int, preferred) -> int:
    return next((p for p in preferred if p <= n and n % p == 0), 1)


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


def _split_default(extent: int, preferred) -> list:
    inner = _largest_divisor(extent, preferred) if preferred else 1
    return [extent // inner, inner]


def _register_tile(last: int, rows: int, lanes: int) -> tuple[int, int]:
    """``(columns, rows)`` of the default register tile: columns a whole number of vectors
    (two if they divide ``last``), rows a divisor of ``rows``, with the most accumulator
    vectors that leave room for the operands (12 of the 16 AVX2 registers, 24 of AVX-512's 32),
    wider columns on a tie. A 7-wide row axis thus gets 7 rows of one vector (7 accumulators)
    rather than one row of two (2 accumulators, each FMA waiting on the last)."""
    budget = 24 if lanes >= 16 else 12
    best = None
    for columns in (2 * lanes, lanes, lanes // 2, 4, 2, 1):
        if columns < 1 or last % columns:
            continue
        vectors = max(1, columns // lanes)
        fits = [r for r in _divisors(rows) if r * vectors <= budget] or [1]
        r = max(fits)
        key = (r * vectors, columns)
        if best is None or key > best[0]:
            best = (key, (columns, r))
    return best[1]


def _tile_defaults(ext: list, row: int, lanes: int, panels: bool = False) -> list:
    """Default four-level tiles of every spatial axis: a register tile (``_register_tile``)
    of the last axis in vectors and the row axis in rows; parallel over the row tiles, the
    column tiles in the second level. With ``panels`` (a packed input), parallel over the
    column panels instead, the row tiles in the second level: each packed panel then serves
    all rows."""
    rows = ext[row] if 0 <= row < len(ext) - 1 else 1
    columns, r = _register_tile(ext[-1], rows, lanes) if ext else (1, 1)
    tiles = []
    for d, e in enumerate(ext):
        if d == len(ext) - 1:
            tiles.append([e // columns, 1, 1, columns] if panels
                         else [1, e // columns, 1, columns])
        elif d == row:
            tiles.append([1, e // r, 1, r] if panels else [e // r, 1, 1, r])
        else:
            tiles.append([e, 1, 1, 1])
    return tiles
