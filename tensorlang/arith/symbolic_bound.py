"""Symbolic intervals: the range an index covers while some loop variables sweep their ranges.

Bound inference asks: when ``i`` sweeps ``[o*f, o*f + f)`` and ``di`` sweeps ``[0, 3)``, which
elements does ``A[i + di]`` touch? Answer ``Range(o*f, f + 2)``. Expressions are put in linear
form first (so a variable's own uses cancel), then each term is bounded by the rules of its
kind: monotone for ``//`` by a positive divisor, one period or ``[0, c - 1]`` for ``%``,
elementwise for min / max, the union of both arms for select. Anything else gets constant bounds
when they are narrower than its dtype, or no answer (None): the caller then falls back to the
whole domain.
"""
from __future__ import annotations

import dataclasses

from ..expr import (Add, Broadcast, Call, Cast, Div, FloatImm, FloorDiv, FloorMod, GE, IntImm, LE,
                    Max, Min, Mod, Mul, PrimExpr, Ramp, Range, Select, StringImm, Sub, Var)
from .constant_fold import holds, int_limits, is_index_type

_MAX_DEPTH = 32  # nested variable ranges; deeper means a cycle


class _Intervals:
    def __init__(self, analyzer, relax: dict):
        self.ana = analyzer
        self.simp = analyzer._simplifier_instance()
        self.relax = {v.uid: (v, r) for v, r in relax.items()}
        self.memo: dict[int, tuple] = {}
        self.free_memo: dict[int, tuple] = {}
        self.depth = 0

    def has_relax(self, e) -> bool:
        hit = self.free_memo.get(id(e))
        if hit is not None and hit[0] is e:
            return hit[1]
        if isinstance(e, Var):
            out = e.uid in self.relax
        elif isinstance(e, (IntImm, FloatImm, StringImm)):
            out = False
        else:
            out = any(self.has_relax(x) for x in _operands(e))
        self.free_memo[id(e)] = (e, out)
        return out

    def interval(self, e: PrimExpr):
        """``(lo, hi)`` expressions free of relaxed variables, or None."""
        if not self.has_relax(e):
            return e, e
        hit = self.memo.get(id(e))
        if hit is not None and hit[0] is e:
            return hit[1]
        self.depth += 1
        try:
            result = None if self.depth > _MAX_DEPTH else self._compute(e)
        finally:
            self.depth -= 1
        self.memo[id(e)] = (e, result)
        return result

    def _compute(self, e):
        if isinstance(e, Ramp):
            base, stride = self.interval(e.base), self.interval(e.stride)
            if base is None or stride is None or not isinstance(stride[0], IntImm) \
                    or stride[0] is not stride[1]:
                return None
            span = stride[0].value * (e.lanes - 1)
            return (self._simple(_plus(base[0], min(span, 0))),
                    self._simple(_plus(base[1], max(span, 0))))
        if isinstance(e, Broadcast):
            return self.interval(e.value)
        if not is_index_type(e.dtype):
            return None
        e = self.ana.simplify(e)
        if not self.has_relax(e):
            return e, e
        lin = self.simp.linear(e)
        dtype = e.dtype
        lo, hi = [IntImm(lin.const, dtype)], [IntImm(lin.const, dtype)]
        for coeff, factors in lin.terms.values():
            m = self._monomial(factors, dtype)
            if m is None:
                return None
            m_lo, m_hi = m if coeff > 0 else (m[1], m[0])
            lo.append(_times(m_lo, coeff))
            hi.append(_times(m_hi, coeff))
        return self._simple(_sum(lo)), self._simple(_sum(hi))

    def _simple(self, e):
        return self.ana.simplify(e)

    def _monomial(self, factors, dtype):
        if len(factors) == 1:
            return self._atom(factors[0])
        fixed = [f for f in factors if not self.has_relax(f)]
        moving = [f for f in factors if self.has_relax(f)]
        if len(moving) == 1 and fixed:
            scale = _product(fixed, dtype)
            m = self._atom(moving[0])
            if m is None:
                return self._constant(_product(factors, dtype))
            if self.ana.prove(GE(scale, IntImm(0, dtype), "bool")):
                return self._simple(Mul(scale, m[0], dtype)), self._simple(Mul(scale, m[1], dtype))
            if self.ana.prove(LE(scale, IntImm(0, dtype), "bool")):
                return self._simple(Mul(scale, m[1], dtype)), self._simple(Mul(scale, m[0], dtype))
        else:
            parts = [self._atom(f) for f in factors]
            zero = IntImm(0, dtype)
            if all(p is not None and self.ana.prove(GE(p[0], zero, "bool")) for p in parts):
                return (self._simple(_product([p[0] for p in parts], dtype)),
                        self._simple(_product([p[1] for p in parts], dtype)))
        return self._constant(_product(factors, dtype))

    def _atom(self, t):
        if not self.has_relax(t):
            return t, t
        if isinstance(t, Var):
            return self._var(t)
        kind = type(t)
        if kind in (FloorDiv, Div, FloorMod, Mod):
            return self._divmod(t)
        if kind in (Min, Max):
            a, b = self.interval(t.a), self.interval(t.b)
            if a is None or b is None:
                return self._constant(t)
            return (self._simple(kind(a[0], b[0], t.dtype)),
                    self._simple(kind(a[1], b[1], t.dtype)))
        if kind is Select or (kind is Call and t.op == "if_then_else" and len(t.args) == 3):
            x, y = (t.true_value, t.false_value) if kind is Select else t.args[1:]
            a, b = self.interval(x), self.interval(y)
            if a is None or b is None:
                return self._constant(t)
            return (self._simple(Min(a[0], b[0], t.dtype)),
                    self._simple(Max(a[1], b[1], t.dtype)))
        if kind is Cast and is_index_type(t.value.dtype) and holds(t.dtype, t.value.dtype):
            a = self.interval(t.value)
            if a is None:
                return self._constant(t)
            return self._simple(Cast(a[0], t.dtype)), self._simple(Cast(a[1], t.dtype))
        return self._constant(t)

    def _var(self, v: Var):
        _, rng = self.relax[v.uid]
        one = IntImm(1, rng.extent.dtype)
        last = self._simple(Sub(Add(rng.min, rng.extent, rng.extent.dtype), one, rng.extent.dtype)
                            if rng.min.dtype == rng.extent.dtype else rng.min + rng.extent - 1)
        lo, hi = self.interval(rng.min), self.interval(last)
        if lo is None or hi is None:
            return None
        if lo[0].dtype != v.dtype:
            return Cast(lo[0], v.dtype), Cast(hi[1], v.dtype)
        return lo[0], hi[1]

    def _divmod(self, t):
        kind, dtype = type(t), t.dtype
        divisor = t.b
        if self.has_relax(divisor):
            return self._constant(t)
        zero = IntImm(0, dtype)
        positive = isinstance(divisor, IntImm) and divisor.value > 0 or \
            self.ana.prove(divisor > zero)
        if not positive:
            return self._constant(t)
        if kind in (Div, Mod) and self.ana.int_bound(t.a).min < 0:
            return self._constant(t)
        a = self.interval(t.a)
        if kind in (FloorDiv, Div):
            if a is None:
                return self._constant(t)
            return (self._simple(FloorDiv(a[0], divisor, dtype)),
                    self._simple(FloorDiv(a[1], divisor, dtype)))
        period = (zero, self._simple(Sub(divisor, IntImm(1, dtype), dtype)))
        if a is None:
            return period
        k_lo = self._simple(FloorDiv(a[0], divisor, dtype))
        k_hi = self._simple(FloorDiv(a[1], divisor, dtype))
        if self.ana.can_prove_equal(k_lo, k_hi):
            base = Mul(k_lo, divisor, dtype)
            return self._simple(Sub(a[0], base, dtype)), self._simple(Sub(a[1], base, dtype))
        return period

    def _constant(self, t):
        b = self.ana.const_int_bound(t)
        if b.min is None or b.max is None:
            return None
        limits = int_limits(t.dtype)
        if b.min <= limits[0] or b.max >= limits[1]:
            return None  # nothing narrower than the dtype: let the caller use the domain
        return IntImm(b.min, t.dtype), IntImm(b.max, t.dtype)


def _operands(e):
    """The expressions directly below ``e`` (declarations such as buffers are not walked)."""
    for f in dataclasses.fields(e):
        if not f.compare:
            continue
        v = getattr(e, f.name)
        if isinstance(v, PrimExpr):
            yield v
        elif isinstance(v, tuple):
            yield from (x for x in v if isinstance(x, PrimExpr))


def _plus(e: PrimExpr, k: int) -> PrimExpr:
    return e if k == 0 else Add(e, IntImm(k, e.dtype), e.dtype)


def _times(e: PrimExpr, k: int) -> PrimExpr:
    return e if k == 1 else Mul(e, IntImm(k, e.dtype), e.dtype)


def _sum(parts):
    out = parts[0]
    for p in parts[1:]:
        out = Add(out, p, out.dtype)
    return out


def _product(parts, dtype):
    out = parts[0]
    for p in parts[1:]:
        out = Mul(out, p, dtype)
    return out


def symbolic_interval(analyzer, expr: PrimExpr, relax: dict):
    """``(min_expr, max_expr)`` (inclusive) of ``expr`` over the ranges in ``relax``, or None."""
    from .analyzer import Analyzer
    inner = Analyzer()
    inner._ranges.update(analyzer._ranges)
    inner._values.update(analyzer._values)
    for v, r in relax.items():
        inner._ranges[v.uid] = (v, r)
    return _Intervals(inner, relax).interval(expr)


def symbolic_range(analyzer, expr: PrimExpr, relax: dict) -> Range | None:
    """``Range(min, extent)`` of ``expr`` over the ranges in ``relax``, or None."""
    iv = symbolic_interval(analyzer, expr, relax)
    if iv is None:
        return None
    lo, hi = iv
    if not is_index_type(lo.dtype):
        return None
    extent = analyzer.simplify(Add(Sub(hi, lo, lo.dtype), IntImm(1, lo.dtype), lo.dtype))
    return Range(analyzer.simplify(lo), extent)
