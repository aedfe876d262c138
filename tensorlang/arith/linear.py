"""Canonical linear form of signed integer expressions: ``sum(coeff * monomial) + const``.

A monomial is a product of *atoms*: variables and every sub-expression that is not ``+``, ``-``
or ``*`` (``x // 4``, ``min(a, b)``, loads, casts, ...). Coefficients are Python ints reduced
modulo ``2**bits`` (signed), so the form is exact ring arithmetic of the dtype: folding, cancelling
and distributing never change a value, with or without overflow.

Terms are ordered by a deterministic key (variables by creation order, then other atoms by
kind and content), so two expressions that are equal as polynomials rebuild to the same tree.
"""
from __future__ import annotations

import dataclasses

from ..expr import Add, IntImm, Mul, Node, PrimExpr, Sub, Var
from .constant_fold import make_int, wrap_int

# Distributing a product of two sums makes len(a) * len(b) terms: allow it while that stays small.
DISTRIBUTE_LIMIT = 8


_FIELDS: dict[type, tuple] = {}
_RECURSION_BUDGET = 200  # deeper expressions switch to an explicit stack


def _compare_fields(cls) -> tuple:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls) if f.compare)
    return names


class KeyMaker:
    """Deterministic, hashable and totally ordered keys of expressions (memoised by identity)."""

    def __init__(self):
        self._memo: dict[int, tuple] = {}
        self._depth = 0

    def key(self, e) -> tuple:
        hit = self._memo.get(id(e))
        if hit is not None and hit[0] is e:
            return hit[1]
        if self._depth < _RECURSION_BUDGET:
            self._depth += 1
            try:
                k = self._make(e)
            finally:
                self._depth -= 1
            self._memo[id(e)] = (e, k)
            return k
        return self._key_deep(e)

    def _key_deep(self, e) -> tuple:
        """Children first with an explicit stack: expressions may be thousands of levels deep."""
        saved, self._depth = self._depth, _RECURSION_BUDGET  # keep _make from recursing
        memo = self._memo
        stack = [(e, False)]
        try:
            while stack:
                node, ready = stack.pop()
                hit = memo.get(id(node))
                if hit is not None and hit[0] is node:
                    continue
                if ready:
                    memo[id(node)] = (node, self._make(node))
                    continue
                stack.append((node, True))
                stack.extend((c, False) for c in self._children(node))
        finally:
            self._depth = saved
        return memo[id(e)][1]

    @staticmethod
    def _children(e):
        if isinstance(e, Var) or not isinstance(e, Node) or getattr(e, "uid", None) is not None:
            return []
        out = []
        todo = [getattr(e, name) for name in _compare_fields(type(e))]
        while todo:
            v = todo.pop()
            if isinstance(v, Node):
                out.append(v)
            elif isinstance(v, (tuple, list)):
                todo.extend(v)
        return out

    def _make(self, e) -> tuple:
        if isinstance(e, Var):
            return ("Var", e.uid)
        if isinstance(e, IntImm):
            return ("IntImm", e.dtype, e.value)
        if isinstance(e, Node):
            uid = getattr(e, "uid", None)
            if uid is not None:  # other identities: buffers, iteration variables
                return (type(e).__name__, uid)
            return (type(e).__name__,) + tuple(self._field(getattr(e, name))
                                               for name in _compare_fields(type(e)))
        return self._field(e)

    def _field(self, v) -> tuple:
        if isinstance(v, Node):
            return self.key(v)
        if isinstance(v, str):
            return ("s", v)
        if isinstance(v, (tuple, list)):
            return ("()",) + tuple(self._field(x) for x in v)
        if isinstance(v, bool):
            return ("b", int(v))
        if isinstance(v, int):
            return ("i", v)
        if isinstance(v, float):
            return ("f", repr(v))
        if v is None:
            return ("None",)
        return ("obj", type(v).__name__, getattr(v, "uid", id(v)))


class Linear:
    """``sum(coeff * prod(factors)) + const`` in one signed integer dtype.

    ``terms`` maps a monomial key (the sorted keys of its factors) to ``[coeff, factors]``.
    """

    __slots__ = ("terms", "const", "dtype")

    def __init__(self, dtype: str, const: int = 0, terms: dict | None = None):
        self.dtype = dtype
        self.const = const
        self.terms = terms if terms is not None else {}

    # -- construction ------------------------------------------------------------------------
    @staticmethod
    def atom(e: PrimExpr, keys: KeyMaker, coeff: int = 1) -> "Linear":
        return Linear(e.dtype, 0, {(keys.key(e),): [coeff, (e,)]})

    def copy(self) -> "Linear":
        return Linear(self.dtype, self.const, {k: [c, f] for k, (c, f) in self.terms.items()})

    def add(self, other: "Linear", scale: int = 1) -> "Linear":
        """In place: ``self += scale * other``."""
        self.const += scale * other.const
        for k, (c, f) in other.terms.items():
            slot = self.terms.get(k)
            if slot is None:
                self.terms[k] = [scale * c, f]
            else:
                slot[0] += scale * c
        return self

    def scaled(self, factor: int) -> "Linear":
        return Linear(self.dtype, self.const * factor,
                      {k: [c * factor, f] for k, (c, f) in self.terms.items()})

    def normalize(self) -> "Linear":
        """In place: wrap coefficients to the dtype and drop zero terms."""
        self.const = wrap_int(self.const, self.dtype)
        dead = []
        for k, slot in self.terms.items():
            slot[0] = wrap_int(slot[0], self.dtype)
            if slot[0] == 0:
                dead.append(k)
        for k in dead:
            del self.terms[k]
        return self

    # -- questions ---------------------------------------------------------------------------
    @property
    def is_const(self) -> bool:
        return not self.terms

    def size(self) -> int:
        return len(self.terms) + (1 if self.const else 0)

    def single_atom(self):
        """The atom when this is exactly ``1 * atom``, else None."""
        if self.const or len(self.terms) != 1:
            return None
        (c, factors), = self.terms.values()
        return factors[0] if c == 1 and len(factors) == 1 else None

    def content_gcd(self) -> int:
        from math import gcd
        g = abs(self.const)
        for c, _ in self.terms.values():
            g = gcd(g, c)
        return g


def multiply(a: Linear, b: Linear, keys: KeyMaker) -> Linear | None:
    """``a * b`` distributed, or None when that would make too many terms."""
    if b.is_const:
        return a.scaled(b.const)
    if a.is_const:
        return b.scaled(a.const)
    if a.size() * b.size() > DISTRIBUTE_LIMIT:
        return None
    out = Linear(a.dtype, a.const * b.const)
    for part, scale in ((a, b.const), (b, a.const)):
        if scale:
            out.add(Linear(a.dtype, 0, dict(part.terms)), scale)
    for ka, (ca, fa) in a.terms.items():
        for kb, (cb, fb) in b.terms.items():
            pairs = sorted(zip(ka + kb, fa + fb), key=lambda p: p[0])
            k = tuple(p[0] for p in pairs)
            slot = out.terms.get(k)
            if slot is None:
                out.terms[k] = [ca * cb, tuple(p[1] for p in pairs)]
            else:
                slot[0] += ca * cb
    return out


def _monomial_order(item):
    key, (_, factors) = item
    return (0 if all(isinstance(f, Var) for f in factors) else 1, len(factors), key)


def _product(factors, dtype: str) -> PrimExpr:
    out = factors[0]
    for f in factors[1:]:
        out = Mul(out, f, dtype)
    return out


def _scaled_term(factors, coeff: int, dtype: str) -> PrimExpr:
    term = _product(factors, dtype)
    return term if coeff == 1 else Mul(term, make_int(coeff, dtype), dtype)


def to_expr(lin: Linear) -> PrimExpr:
    """Rebuild an expression: positive terms first, then subtracted ones, constant last."""
    dtype = lin.dtype
    items = sorted(lin.terms.items(), key=_monomial_order)
    pos = [(c, f) for _, (c, f) in items if c > 0]
    neg = [(-c, f) for _, (c, f) in items if c < 0]
    const = lin.const
    if not pos and not neg:
        return IntImm(const, dtype)
    if pos:
        out = _scaled_term(pos[0][1], pos[0][0], dtype)
        for c, f in pos[1:]:
            out = Add(out, _scaled_term(f, c, dtype), dtype)
    elif const != 0:
        out, const = IntImm(const, dtype), 0
    else:
        c, f = neg.pop(0)
        # -t: prefer t * -c; a negative constant is still exact ring arithmetic
        out = _scaled_term(f, -c, dtype) if c != 1 else Sub(IntImm(0, dtype), _product(f, dtype),
                                                             dtype)
    for c, f in neg:
        out = Sub(out, _scaled_term(f, c, dtype), dtype)
    if const > 0:
        out = Add(out, make_int(const, dtype), dtype)
    elif const < 0:
        out = Sub(out, make_int(-const, dtype), dtype)
    return out
