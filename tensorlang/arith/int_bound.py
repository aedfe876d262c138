"""Constant integer bounds by interval arithmetic: ``const_int_bound(i * 4 + j) -> (0, 63)``.

A value nothing is known about (a variable without a range, a load) is unbounded when its dtype
has 32 bits or more, and spans its dtype when narrower (an ``int8`` load is in [-128, 127]).
Unboundedness is carried as +-``INF``, a huge integer, so that ``n // 2`` stays unbounded while
``n % 4`` is [0, 3] and ``min(n, 16)`` is at most 16; the public answer turns it into ``None``.
Finite signed results are clamped to the dtype (signed overflow is undefined in the C semantics
the IR follows, so it is assumed not to happen); an unsigned or cast result that may wrap becomes
unknown.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

from .. import dtype as dt
from ..expr import (Add, And, Broadcast, Call, Cast, CmpOp, Div, EQ, FloorDiv, FloorMod, GE, GT,
                    IntImm, LE, LT, Let, Max, Min, Mod, Mul, Not, Or, Ramp, Select, Sub,
                    Var)
from .constant_fold import int_limits, truncdiv


class IntBound(NamedTuple):
    """Inclusive bounds; ``None`` means unbounded on that side."""

    min: int | None
    max: int | None


UNBOUNDED = IntBound(None, None)  # non-integer expressions
INF = 1 << 256
_FAR = 1 << 200  # anything this large came from INF


def is_integral(dtype: str) -> bool:
    return dt.is_int(dtype) or dt.is_bool(dtype)


@functools.lru_cache(maxsize=None)
def full_bound(dtype: str) -> IntBound:
    """What is known of an arbitrary value of ``dtype`` (INF for unknown wide integers)."""
    if not is_integral(dtype):
        return UNBOUNDED
    lo, hi = int_limits(dtype)
    if dt.bits(dtype) >= 32:
        return IntBound(lo if dt.is_uint(dtype) else -INF, INF)
    return IntBound(lo, hi)


def public_bound(b: IntBound) -> IntBound:
    """INF sides become None."""
    if b.min is None:
        return b
    return IntBound(None if b.min <= -_FAR else b.min, None if b.max >= _FAR else b.max)


def _finish(lo: int, hi: int, dtype: str) -> IntBound:
    lo = -INF if lo <= -_FAR else lo
    hi = INF if hi >= _FAR else hi
    dlo, dhi = int_limits(dtype)
    if lo >= dlo and hi <= dhi:
        return IntBound(lo, hi)
    unknown = full_bound(dtype)
    if dt.is_uint(dtype):
        return unknown  # wraps: anything is possible
    wide = unknown.max == INF
    lo = lo if lo == -INF and wide else max(lo, dlo)
    hi = hi if hi == INF and wide else min(hi, dhi)
    return IntBound(lo, hi)


def _corners(op, a: IntBound, b: IntBound) -> tuple[int, int]:
    values = [op(x, y) for x in (a.min, a.max) for y in (b.min, b.max)]
    return min(values), max(values)


def _divide(op, a: IntBound, b: IntBound) -> tuple[int, int] | None:
    """Interval of a monotone division; the divisor's interval is split around zero."""
    parts = []
    if b.max >= 1:
        parts.append(_corners(op, a, IntBound(max(b.min, 1), b.max)))
    if b.min <= -1:
        parts.append(_corners(op, a, IntBound(b.min, min(b.max, -1))))
    if not parts:
        return None  # division by zero only
    return min(p[0] for p in parts), max(p[1] for p in parts)


def _floordiv(a, b):
    return _divide(lambda x, y: x // y, a, b)


def _floormod(a: IntBound, b: IntBound):
    if b.min > 0:
        c = b.min
        if b.min == b.max and a.min // c == a.max // c:
            return a.min % c, a.max % c
        if a.min >= 0:
            return 0, min(a.max, b.max - 1)
        return 0, b.max - 1
    if b.max < 0:
        return b.min + 1, 0
    return min(0, b.min + 1), max(0, b.max - 1)


def _truncdiv(a, b):
    return _divide(truncdiv, a, b)


def _truncmod(a: IntBound, b: IntBound):
    m = max(abs(b.min), abs(b.max)) - 1
    if a.min >= 0:
        if b.min == b.max and b.min != 0:
            c = abs(b.min)
            if a.min // c == a.max // c:
                return a.min % c, a.max % c
        return 0, min(a.max, m)
    if a.max <= 0:
        return max(a.min, -m), 0
    return max(a.min, -m), min(a.max, m)


def compare_bounds(cls, a: IntBound, b: IntBound) -> tuple[int, int]:
    """``(1, 1)``: always true, ``(0, 0)``: always false, ``(0, 1)``: unknown."""
    if cls is LT:
        true, false = a.max < b.min, a.min >= b.max
    elif cls is LE:
        true, false = a.max <= b.min, a.min > b.max
    elif cls is GT:
        true, false = a.min > b.max, a.max <= b.min
    elif cls is GE:
        true, false = a.min >= b.max, a.max < b.min
    elif cls is EQ:
        true = a.min == a.max == b.min == b.max
        false = a.max < b.min or b.max < a.min
    else:  # NE
        true = a.max < b.min or b.max < a.min
        false = a.min == a.max == b.min == b.max
    return (1, 1) if true else (0, 0) if false else (0, 1)


_ARITH = {
    Add: lambda a, b: (a.min + b.min, a.max + b.max),
    Sub: lambda a, b: (a.min - b.max, a.max - b.min),
    Mul: lambda a, b: _corners(lambda x, y: x * y, a, b),
    FloorDiv: _floordiv,
    FloorMod: _floormod,
    Div: _truncdiv,
    Mod: _truncmod,
    Min: lambda a, b: (min(a.min, b.min), min(a.max, b.max)),
    Max: lambda a, b: (max(a.min, b.min), max(a.max, b.max)),
}


class IntBoundAnalyzer:
    """Bounds of integer expressions under the variable ranges an ``Analyzer`` holds."""

    def __init__(self, parent):
        self.parent = parent  # the Analyzer: var_range(), var_value(), range_max_expr()
        self.memo: dict[int, tuple] = {}
        self._active: set[int] = set()
        self._let_bounds: dict[int, IntBound] = {}

    def clear(self):
        self.memo.clear()

    def bound(self, e) -> IntBound:
        hit = self.memo.get(id(e))
        if hit is not None and hit[0] is e:
            return hit[1]
        if not is_integral(e.dtype):
            result = UNBOUNDED
        else:
            result = self._compute(e)
        self.memo[id(e)] = (e, result)
        return result

    # -- node kinds --------------------------------------------------------------------------
    def _compute(self, e) -> IntBound:
        t = type(e)
        if t is IntImm:
            return IntBound(e.value, e.value)
        if t is Var:
            return self._var(e)
        op = _ARITH.get(t)
        if op is not None:
            a, b = self.bound(e.a), self.bound(e.b)
            if a.min is None or b.min is None:
                return full_bound(e.dtype)
            r = op(a, b)
            return full_bound(e.dtype) if r is None else _finish(r[0], r[1], e.dtype)
        if isinstance(e, CmpOp):
            a, b = self.bound(e.a), self.bound(e.b)
            if a.min is None or b.min is None:
                return IntBound(0, 1)
            return IntBound(*compare_bounds(t, a, b))
        if t in (And, Or):
            a, b = self.bound(e.a), self.bound(e.b)
            if t is And:
                return IntBound(min(a.min, b.min), min(a.max, b.max))
            return IntBound(max(a.min, b.min), max(a.max, b.max))
        if t is Not:
            a = self.bound(e.a)
            return IntBound(1 - a.max, 1 - a.min)
        if t is Select:
            return self._union(e.true_value, e.false_value, e.dtype)
        if t is Cast:
            return self._cast(e)
        if t is Broadcast:
            return self.bound(e.value)
        if t is Ramp:
            return self._ramp(e)
        if t is Let:
            return self._let(e)
        if t is Call:
            return self._call(e)
        return full_bound(e.dtype)

    def _var(self, v: Var) -> IntBound:
        b = self._var_unrefined(v)
        refined = self.parent.var_refinement(v)
        if refined is None or b.min is None:
            return b
        lo = b.min if refined[0] is None else max(b.min, refined[0])
        hi = b.max if refined[1] is None else min(b.max, refined[1])
        return IntBound(lo, max(lo, hi))

    def _var_unrefined(self, v: Var) -> IntBound:
        limits = full_bound(v.dtype)
        value = self.parent.var_value(v)
        if value is not None:
            b = self.bound(value)
            return IntBound(max(b.min, limits.min), min(b.max, limits.max))
        let = self._let_bounds.get(v.uid)
        if let is not None:
            return let
        rng = self.parent.var_range(v)
        if rng is None or v.uid in self._active:
            return limits
        self._active.add(v.uid)
        try:
            lo_b = self.bound(rng.min)
            ext_b = self.bound(rng.extent)
            if lo_b.min is None or ext_b.max is None:
                return limits
            hi = lo_b.max + ext_b.max - 1
            if not isinstance(rng.min, IntImm) and not isinstance(rng.extent, IntImm):
                tight = self.bound(self.parent.range_max_expr(v))
                if tight.max is not None:
                    hi = min(hi, tight.max)
        finally:
            self._active.discard(v.uid)
        lo = max(lo_b.min, limits.min)
        hi = max(min(hi, limits.max), lo)  # an empty range: any value is vacuous
        return _finish(lo, hi, v.dtype)

    def _union(self, x, y, dtype) -> IntBound:
        a, b = self.bound(x), self.bound(y)
        if a.min is None or b.min is None:
            return full_bound(dtype)
        return IntBound(min(a.min, b.min), max(a.max, b.max))

    def _cast(self, e: Cast) -> IntBound:
        src = e.value.dtype
        if not is_integral(src):
            return full_bound(e.dtype)
        a = self.bound(e.value)
        if dt.is_bool(e.dtype):
            return IntBound(0 if a.min <= 0 <= a.max else 1, 0 if a.max == a.min == 0 else 1)
        lo, hi = int_limits(e.dtype)
        if lo <= a.min and a.max <= hi:
            return a
        return full_bound(e.dtype)  # may wrap

    def _ramp(self, e: Ramp) -> IntBound:
        base, stride = self.bound(e.base), self.bound(e.stride)
        n = e.lanes - 1
        lo = base.min + min(0, stride.min * n)
        hi = base.max + max(0, stride.max * n)
        return _finish(lo, hi, e.dtype)

    def _let(self, e: Let) -> IntBound:
        uid = e.var.uid
        old = self._let_bounds.get(uid)
        self._let_bounds[uid] = self.bound(e.value) if is_integral(e.value.dtype) \
            else full_bound(e.var.dtype)
        try:
            return self.bound(e.body)
        finally:
            if old is None:
                del self._let_bounds[uid]
            else:
                self._let_bounds[uid] = old

    def _call(self, e: Call) -> IntBound:
        if not e.extern:
            if e.op == "if_then_else" and len(e.args) == 3:
                return self._union(e.args[1], e.args[2], e.dtype)
            if e.op == "likely" and len(e.args) == 1:
                return self.bound(e.args[0])
            if e.op == "abs" and len(e.args) == 1:
                a = self.bound(e.args[0])
                if a.min is not None:
                    lo = 0 if a.min <= 0 <= a.max else min(abs(a.min), abs(a.max))
                    return _finish(lo, max(abs(a.min), abs(a.max)), e.dtype)
        return full_bound(e.dtype)
