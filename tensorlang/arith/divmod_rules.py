"""Division and remainder by positive constants, the rules index arithmetic needs most.

``c * q + r`` splitting (``(x*8 + y) // 8 -> x + y // 8``), one-block ranges
(``-> x`` when ``0 <= y < 8``), common factors (``(x*4 + 2) // 8 -> x // 2``), peeling a term whose
coefficient divides the divisor (``(x*16 + y) // 32 -> x // 2`` for ``0 <= y < 16``), nesting
(``x // 4 // 8 -> x // 32``) and ramps that stay in one block. Floor semantics make the
splits exact for every sign; truncating ``Div`` / ``Mod`` only get them when the operands are
provably non-negative.
"""
from __future__ import annotations

import math

from .. import dtype as dt
from ..expr import Broadcast, Div, FloorDiv, FloorMod, IntImm, Mod, PrimExpr, Ramp
from .constant_fold import (const_value, fold_binary, int_limits, is_index_type, make_int,
                            splat)
from .linear import Linear


class DivModRules:
    """Mixin of the ``Simplifier``: ``visit_FloorDiv`` and friends."""

    def visit_FloorDiv(self, node):
        return self._divmod(node, FloorDiv)

    def visit_FloorMod(self, node):
        return self._divmod(node, FloorMod)

    def visit_Div(self, node):
        return self._divmod(node, Div)

    def visit_Mod(self, node):
        return self._divmod(node, Mod)

    def _divmod(self, node, cls):
        a, b = self.visit(node.a), self.visit(node.b)
        dtype = node.dtype
        folded = fold_binary(cls, a, b, dtype)
        if folded is not None:
            return folded
        if dt.is_float(dtype):
            if cls is Div and const_value(b) == 1.0:
                return a
            return self._rebuild(node, a, b)
        is_div = cls in (Div, FloorDiv)
        c = const_value(b)
        if c == 1:
            return a if is_div else splat(0, dtype)
        if dt.lanes_of(dtype) > 1:
            if isinstance(a, Broadcast) and isinstance(b, Broadcast):
                return Broadcast(self.visit(cls(a.value, b.value, dt.element_of(dtype))),
                                 a.lanes, dtype)
            if isinstance(a, Ramp) and isinstance(b, Broadcast) and isinstance(c, int) and c > 0 \
                    and cls in (FloorDiv, FloorMod) and is_index_type(dt.element_of(dtype)):
                out = self._ramp_divmod(a, c, is_div)
                if out is not None:
                    return out
            return self._rebuild(node, a, b)
        if isinstance(c, int) and c > 0:
            if is_index_type(dtype):
                out = self._div_const(a, c, cls) if is_div else self._mod_const(a, c, cls)
                if out is not None:
                    return out
            elif dt.is_int(dtype):  # unsigned: only what the bounds decide
                ba = self.ana.int_bound(a)
                if ba.min // c == ba.max // c:
                    k = ba.min // c
                    return make_int(k, dtype) if is_div else \
                        (a if k == 0 else self._rebuild(node, a, b))
        return self._rebuild(node, a, b)

    def _split(self, lin: Linear, c: int, floor_const: bool = True):
        """``lin = c * q + r``: q gets the terms c divides and part of the constant.

        Any integer split is exact for floor division; ``floor_const=False`` keeps the sign of
        the constant in ``r`` (``(x - 1) // 8`` stays), ``True`` makes it ``0 <= r.const < c``
        (what truncating division needs to see a non-negative rest).
        """
        q, r = Linear(lin.dtype), Linear(lin.dtype)
        for k, (coeff, f) in lin.terms.items():
            if coeff % c == 0:
                q.terms[k] = [coeff // c, f]
            else:
                r.terms[k] = [coeff, f]
        if floor_const or lin.const >= 0:
            q.const, r.const = divmod(lin.const, c)
        else:
            q.const = -((-lin.const) // c)
            r.const = lin.const - q.const * c
        return q, r

    def _nonneg(self, a: PrimExpr, r: Linear) -> bool:
        """Truncating rules need the numerator and the leftover part to be non-negative."""
        b = self.bound_linear(r)
        return self.ana.int_bound(a).min >= 0 and b is not None and b[0] >= 0

    def _div_const(self, a: PrimExpr, c: int, cls) -> PrimExpr | None:
        """``a // c`` (or truncating ``a / c``) for a constant ``c > 0``; None: nothing to do."""
        dtype = a.dtype
        lin = self.linear(a)
        q, r = self._split(lin, c, floor_const=cls is Div)
        if cls is Div and not self._nonneg(a, r):
            return None
        changed = bool(q.terms) or q.const != 0
        b = self.bound_linear(r)
        if b is None or b[0] // c != b[1] // c:
            # (g*m + k) // (g*c') == (m + k // g) // c' when g divides c and every coefficient
            g = terms_gcd(r, c)
            if g > 1:
                r, c, changed = divide_terms(r, g), c // g, True
                b = self.bound_linear(r)
        if c == 1:
            return self._from_linear(q.add(r).normalize())
        if b is not None and b[0] // c == b[1] // c:
            q.const += b[0] // c
            return self._from_linear(q.normalize())
        peeled = self._peel(r, c)
        if peeled is not None:
            quotient, _, k = peeled
            q.add(quotient)
            q.const += k
            return self._from_linear(q.normalize())
        inner = r.single_atom()
        if type(inner) is cls and isinstance(inner.b, IntImm) and inner.b.value > 0 \
                and inner.b.value * c <= int_limits(dtype)[1]:
            c2 = inner.b.value * c
            term = self._div_const(inner.a, c2, cls)
            if term is None:
                term = cls(inner.a, IntImm(c2, dtype), dtype)
        elif not changed:
            return None
        else:
            term = cls(self._from_linear(r), IntImm(c, dtype), dtype)
        if q.is_const and q.const == 0:
            return term
        return self._from_linear(q.add(self.linear(term)).normalize())

    def _mod_const(self, a: PrimExpr, c: int, cls) -> PrimExpr | None:
        """``a % c`` (or truncating ``Mod``) for a constant ``c > 0``; None: nothing to do."""
        dtype = a.dtype
        if c == 1:
            return IntImm(0, dtype)
        lin = self.linear(a)
        _, r = self._split(lin, c, floor_const=cls is Mod)
        if cls is Mod and not self._nonneg(a, r):
            return None
        changed = len(r.terms) != len(lin.terms) or r.const != lin.const
        b = self.bound_linear(r)
        if b is not None and b[0] // c == b[1] // c:
            r.const -= (b[0] // c) * c
            return self._from_linear(r.normalize())
        peeled = self._peel(r, c)
        if peeled is not None:
            _, rest, k = peeled
            rest.const -= k * c
            return self._from_linear(rest.normalize())
        inner = r.single_atom()
        if type(inner) is cls and isinstance(inner.b, IntImm) and inner.b.value > 0 \
                and inner.b.value % c == 0:
            out = self._mod_const(inner.a, c, cls)
            return cls(inner.a, IntImm(c, dtype), dtype) if out is None else out
        # (g*m + k) % (g*c') == g * ((m + k // g) % c') + k % g
        g = terms_gcd(r, c)
        if g > 1:
            rest = r.const % g
            reduced = self._from_linear(divide_terms(r, g))
            term = self._mod_const(reduced, c // g, cls)
            if term is None:
                term = cls(reduced, IntImm(c // g, dtype), dtype)
            out = self.linear(term).scaled(g)
            out.const += rest
            return self._from_linear(out.normalize())
        if not changed:
            return None
        return cls(self._from_linear(r), IntImm(c, dtype), dtype)

    def _peel(self, r: Linear, c: int):
        """Split a term ``a*x`` with ``a`` dividing ``c`` into ``c*(x // m) + a*(x % m)``.

        Worth it when the rest then falls in one block of ``c``:
        ``(x*16 + y) // 32 -> x // 2`` for ``0 <= y < 16``. Returns ``(quotient, rest, k)``
        with ``r == c * (quotient + k) + (rest - k * c)`` and ``k*c <= rest < (k+1)*c``.
        """
        candidates = sorted(((abs(cf), key) for key, (cf, f) in r.terms.items()
                             if len(f) == 1 and 1 < abs(cf) < c and c % cf == 0), reverse=True)
        for _, key in candidates:
            coeff, (x,) = r.terms[key]
            m = IntImm(c // abs(coeff), r.dtype)
            rest = r.copy()
            del rest.terms[key]
            rest.add(self.linear(self.visit(FloorMod(x, m, r.dtype))), coeff)
            b = self.bound_linear(rest)
            if b is not None and b[0] // c == b[1] // c:
                quotient = self.linear(self.visit(FloorDiv(x, m, r.dtype)))
                return quotient.scaled(1 if coeff > 0 else -1), rest, b[0] // c
        return None

    def _ramp_divmod(self, ramp: Ramp, c: int, is_div: bool):
        """A ramp whose lanes all fall in one block of ``c``: a broadcast quotient / ramp rest."""
        if not isinstance(ramp.stride, IntImm) or not is_index_type(ramp.base.dtype):
            return None
        s, n = ramp.stride.value, ramp.lanes
        q, r = self._split(self.linear(ramp.base), c)
        b = self.bound_linear(r)
        if b is None:
            return None
        lo, hi = b[0] + min(0, s * (n - 1)), b[1] + max(0, s * (n - 1))
        if lo // c != hi // c:
            return None
        k = lo // c
        if is_div:
            q.const += k
            return Broadcast(self._from_linear(q.normalize()), n, ramp.dtype)
        r.const -= k * c
        return Ramp(self._from_linear(r.normalize()), ramp.stride, n, ramp.dtype)


def terms_gcd(lin: Linear, c: int) -> int:
    g = c
    for coeff, _ in lin.terms.values():
        g = math.gcd(g, coeff)
    return g


def divide_terms(lin: Linear, g: int) -> Linear:
    """``lin // g`` where g divides every coefficient (floor of the constant: exact for //)."""
    return Linear(lin.dtype, lin.const // g, {k: [cf // g, f] for k, (cf, f) in lin.terms.items()})
