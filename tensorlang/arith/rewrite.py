"""The expression simplifier: constant folding, canonical linear sums, and bound-driven rules.

Signed integer scalars (index arithmetic) get the full treatment: ``+ - *`` become a canonical
linear form (``linear.py``), divisions and remainders by positive constants split off the part
the divisor divides, and comparisons / min / max are decided from the interval of a difference.
Those rules assume signed index arithmetic does not overflow (it is undefined in C, which the IR
follows). Unsigned and vector integers get folding, identities and ramp rules; floats only
constant folding and the identities that hold for every IEEE value (``x * 1``, ``x - 0.0``).
"""
from __future__ import annotations

import contextlib
import math

from .. import dtype as dt
from ..expr import (Add, And, Broadcast, Call, Cast, CmpOp, Div, EQ, FloatImm, FloorDiv,
                    FloorMod, GE, GT, IntImm, LE, LT, Let, Max, Min, Mul, NE, Not, Or, PrimExpr,
                    Ramp, Select, Sub, Var)
from ..ir.functor import Mutator, free_vars, post_order_visit, substitute
from .constant_fold import (const_bool as _const_bool, const_value as _const_value, fold_binary,
                            fold_call, fold_cast, holds, int_limits, is_index_type,
                            splat as _splat)
from .divmod_rules import DivModRules, divide_terms as _divide_terms
from .int_bound import compare_bounds
from .linear import Linear, multiply, to_expr

_INVERT = {LT: GE, LE: GT, GT: LE, GE: LT, EQ: NE, NE: EQ}
_CMP_TEST = {LT: lambda v: v < 0, LE: lambda v: v <= 0, GT: lambda v: v > 0,
             GE: lambda v: v >= 0, EQ: lambda v: v == 0, NE: lambda v: v != 0}


def _is_int_vector_or_uint(dtype: str) -> bool:
    return (dt.is_int(dtype) or dt.is_bool(dtype)) and not is_index_type(dtype)


class Simplifier(DivModRules, Mutator):
    """Simplifies expressions under an ``Analyzer``'s ranges; results are memoised by identity."""

    def __init__(self, analyzer):
        self.ana = analyzer
        self.keys = analyzer.keys
        self.memo: dict[int, tuple] = {}
        self.lin_memo: dict[int, tuple] = {}  # depends on structure only: survives clear()

    def clear(self):
        self.memo.clear()

    def visit(self, node):
        hit = self.memo.get(id(node))
        if hit is not None and hit[0] is node:
            return hit[1]
        result = super().visit(node)
        self.memo[id(node)] = (node, result)
        if result is not node and id(result) not in self.memo:
            self.memo[id(result)] = (result, result)
        return result

    def _same(self, a, b) -> bool:
        return a is b or self.keys.key(a) == self.keys.key(b)

    @staticmethod
    def _rebuild(node, a, b):
        if a is node.a and b is node.b:
            return node
        return type(node)(a, b, node.dtype)

    # -- linear forms ------------------------------------------------------------------------
    def linear(self, e: PrimExpr) -> Linear:
        """The linear form of an already simplified signed integer scalar expression."""
        hit = self.lin_memo.get(id(e))
        if hit is not None and hit[0] is e:
            return hit[1]
        t = type(e)
        if t is IntImm:
            lin = Linear(e.dtype, e.value)
        elif t is Add:
            lin = self.linear(e.a).copy().add(self.linear(e.b))
        elif t is Sub:
            lin = self.linear(e.a).copy().add(self.linear(e.b), -1)
        elif t is Mul:
            lin = multiply(self.linear(e.a), self.linear(e.b), self.keys)
            if lin is None:
                lin = Linear.atom(e, self.keys)
        else:
            lin = Linear.atom(e, self.keys)
        lin.normalize()
        self.lin_memo[id(e)] = (e, lin)
        return lin

    def _from_linear(self, lin: Linear) -> PrimExpr:
        e = to_expr(lin)
        self.lin_memo[id(e)] = (e, lin)
        return e

    def bound_linear(self, lin: Linear):
        """Exact (unwrapped) interval of a linear form, or None when a term is unbounded."""
        lo = hi = lin.const
        for coeff, factors in lin.terms.values():
            b = self.ana.int_bound(factors[0])
            if b.min is None:
                return None
            blo, bhi = b.min, b.max
            for f in factors[1:]:
                fb = self.ana.int_bound(f)
                if fb.min is None:
                    return None
                corners = [x * y for x in (blo, bhi) for y in (fb.min, fb.max)]
                blo, bhi = min(corners), max(corners)
            if coeff > 0:
                lo, hi = lo + coeff * blo, hi + coeff * bhi
            else:
                lo, hi = lo + coeff * bhi, hi + coeff * blo
        return lo, hi

    # -- + - * -------------------------------------------------------------------------------
    def _arith(self, node):
        if is_index_type(node.dtype) and node.a.dtype == node.b.dtype == node.dtype:
            return self._from_linear(self._merge_div_mod(self._flatten(node)))
        a, b = self.visit(node.a), self.visit(node.b)
        return self._arith_other(node, a, b)

    visit_Add = visit_Sub = visit_Mul = _arith

    def _flatten(self, node) -> Linear:
        dtype = node.dtype
        total = Linear(dtype)
        stack = [(node, 1)]
        while stack:
            e, scale = stack.pop()
            t = type(e)
            if t is Add or t is Sub:
                stack.append((e.a, scale))
                stack.append((e.b, scale if t is Add else -scale))
            elif t is IntImm:
                total.const += scale * e.value
            elif t is Mul:
                total.add(self._product(e), scale)
            else:
                total.add(self.linear(self.visit(e)), scale)
        return total.normalize()

    def _product(self, e: Mul) -> Linear:
        a, b = self.visit(e.a), self.visit(e.b)
        lin = multiply(self.linear(a), self.linear(b), self.keys)
        if lin is None:
            a, b = sorted((a, b), key=self.keys.key)
            lin = self.linear(self._rebuild(e, a, b))
        return lin

    def _merge_div_mod(self, lin: Linear) -> Linear:
        """``(x // c) * c + x % c -> x`` and ``x - (x // c) * c -> x % c`` inside a sum."""
        if len(lin.terms) < 2:
            return lin
        for key, slot in list(lin.terms.items()):
            if key not in lin.terms or len(slot[1]) != 1:
                continue
            coeff, (t,) = slot
            if type(t) not in (FloorDiv, FloorMod) or not isinstance(t.b, IntImm) \
                    or t.b.value <= 0:
                continue
            c = t.b.value
            if type(t) is FloorMod:
                other = (self.keys.key(FloorDiv(t.a, t.b, t.dtype)),)
                hit = lin.terms.get(other)
                if hit is not None and hit[0] == coeff * c:
                    del lin.terms[key], lin.terms[other]
                    lin.add(self.linear(t.a), coeff)
            elif coeff % c == 0 and self.linear(t.a).single_atom() is not None:
                m = -coeff // c
                other = (self.keys.key(t.a),)
                hit = lin.terms.get(other)
                if hit is not None and hit[0] == m:
                    del lin.terms[key], lin.terms[other]
                    lin.add(self.linear(self.visit(FloorMod(t.a, t.b, t.dtype))), m)
        return lin.normalize()

    def _arith_other(self, node, a, b):
        cls, dtype = type(node), node.dtype
        folded = fold_binary(cls, a, b, dtype)
        if folded is not None:
            return folded
        lanes = dt.lanes_of(dtype)
        if lanes > 1:
            vec = self._vector_arith(cls, a, b, dtype)
            if vec is not None:
                return vec
        ca, cb = _const_value(a), _const_value(b)
        if dt.is_float(dtype):
            if cls is Mul and cb == 1.0:
                return a
            if cls is Mul and ca == 1.0:
                return b
            if cls is Sub and cb == 0.0 and math.copysign(1.0, cb) > 0:
                return a  # x - (+0.0) is x, -0.0 included
            if cls is Add and cb == 0.0 and math.copysign(1.0, cb) < 0:
                return a  # x + (-0.0) is x
            if cls is Add and ca == 0.0 and math.copysign(1.0, ca) < 0:
                return b
            if cls is Div and cb == 1.0:
                return a
        elif dt.is_int(dtype):
            if cls is Add and cb == 0:
                return a
            if cls is Add and ca == 0:
                return b
            if cls is Sub and cb == 0:
                return a
            if cls is Sub and self._same(a, b):
                return _splat(0, dtype)
            if cls is Mul and (cb == 1 or ca == 0):
                return a
            if cls is Mul and (ca == 1 or cb == 0):
                return b
        return self._rebuild(node, a, b)

    def _vector_arith(self, cls, a, b, dtype):
        elem = dt.element_of(dtype)
        if isinstance(a, Broadcast) and isinstance(b, Broadcast):
            return Broadcast(self.visit(cls(a.value, b.value, elem)), a.lanes, dtype)
        if not dt.is_int(dtype) or cls not in (Add, Sub, Mul):
            return None
        ra, rb = isinstance(a, Ramp), isinstance(b, Ramp)
        if cls in (Add, Sub) and (ra or rb):
            parts = []
            for x in (a, b):
                if isinstance(x, Ramp):
                    parts.append((x.base, x.stride))
                elif isinstance(x, Broadcast):
                    parts.append((x.value, IntImm(0, elem)))
                else:
                    return None
            (base_a, stride_a), (base_b, stride_b) = parts
            base = self.visit(cls(base_a, base_b, elem))
            stride = self.visit(cls(stride_a, stride_b, elem))
            return self.visit(Ramp(base, stride, dt.lanes_of(dtype), dtype))
        if cls is Mul and ra != rb:
            ramp, other = (a, b) if ra else (b, a)
            if isinstance(other, Broadcast):
                v = other.value
                return self.visit(Ramp(self.visit(Mul(ramp.base, v, elem)),
                                       self.visit(Mul(ramp.stride, v, elem)), ramp.lanes, dtype))
        return None

    # -- min / max ---------------------------------------------------------------------------
    def visit_Min(self, node):
        return self._minmax(node, Min)

    def visit_Max(self, node):
        return self._minmax(node, Max)

    def _minmax(self, node, cls):
        a, b = self.visit(node.a), self.visit(node.b)
        dtype = node.dtype
        folded = fold_binary(cls, a, b, dtype)
        if folded is not None:
            return folded
        if self._same(a, b):
            return a
        if dt.lanes_of(dtype) > 1:
            if isinstance(a, Broadcast) and isinstance(b, Broadcast):
                return Broadcast(self.visit(cls(a.value, b.value, dt.element_of(dtype))),
                                 a.lanes, dtype)
            return self._rebuild(node, a, b)
        if is_index_type(dtype) and a.dtype == b.dtype == dtype:
            diff = self.bound_linear(self.linear(a).copy().add(self.linear(b), -1))
            if diff is not None:
                if diff[1] <= 0:
                    return a if cls is Min else b
                if diff[0] >= 0:
                    return b if cls is Min else a
        elif dt.is_int(dtype):
            ba, bb = self.ana.int_bound(a), self.ana.int_bound(b)
            if ba.max <= bb.min:
                return a if cls is Min else b
            if bb.max <= ba.min:
                return b if cls is Min else a
        if not dt.is_int(dtype):
            return self._rebuild(node, a, b)
        if isinstance(a, IntImm):  # constants on the right
            a, b = b, a
        if type(a) is cls and isinstance(a.b, IntImm) and isinstance(b, IntImm):
            pick = min if cls is Min else max
            return self.visit(cls(a.a, IntImm(pick(a.b.value, b.value), dtype), dtype))
        return self._rebuild(node, a, b)

    # -- comparisons and logic ---------------------------------------------------------------
    def _cmp(self, node):
        a, b = self.visit(node.a), self.visit(node.b)
        result = self._compare(node, a, b)
        if isinstance(result, CmpOp):
            fact = self.ana.known_fact(result)
            if fact is not None:
                return IntImm(int(fact), result.dtype)
        return result

    visit_LT = visit_LE = visit_GT = visit_GE = visit_EQ = visit_NE = _cmp

    def _compare(self, node, a, b):
        cls, dtype = type(node), a.dtype
        folded = fold_binary(cls, a, b, node.dtype)
        if folded is not None:
            return folded
        if is_index_type(dtype) and b.dtype == dtype:
            return self._compare_linear(node, a, b)
        if dt.lanes_of(dtype) > 1 and isinstance(a, Broadcast) and isinstance(b, Broadcast):
            return Broadcast(self.visit(cls(a.value, b.value, "bool")), a.lanes, node.dtype)
        if _is_int_vector_or_uint(dtype):
            if self._same(a, b):
                return _splat(int(cls in (EQ, LE, GE)), node.dtype)
            lo, hi = compare_bounds(cls, self.ana.int_bound(a), self.ana.int_bound(b))
            if lo == hi:
                return _splat(lo, node.dtype)
        return self._rebuild(node, a, b)

    def _compare_linear(self, node, a, b):
        cls = type(node)
        diff = self.linear(a).copy().add(self.linear(b), -1)
        diff.terms = {k: s for k, s in diff.terms.items() if s[0] != 0}
        if not diff.terms:
            return IntImm(int(_CMP_TEST[cls](diff.const)), node.dtype)
        g = 0
        for coeff, _ in diff.terms.values():
            g = math.gcd(g, coeff)
        if cls in (EQ, NE) and diff.const % g != 0:
            return IntImm(int(cls is NE), node.dtype)
        bound = self.bound_linear(diff)
        if bound is not None:
            lo, hi = bound
            test = _CMP_TEST[cls]
            if test(lo) and test(hi) and (cls is not NE or lo > 0 or hi < 0):
                return IntImm(1, node.dtype)
            if not test(lo) and not test(hi) and (cls is not EQ or lo > 0 or hi < 0):
                return IntImm(0, node.dtype)
            if cls is EQ and lo == hi == 0:
                return IntImm(1, node.dtype)
            if cls is NE and lo == hi == 0:
                return IntImm(0, node.dtype)
        # canonical: divide by the gcd of the terms, then positive terms OP negative terms
        k = diff.const
        if g > 1:
            k = -((-k) // g) if cls in (LE, GT) else k // g  # exact for EQ / NE
            diff = _divide_terms(diff, g)
            diff.const = k
        pos = Linear(diff.dtype, 0, {key: s for key, s in diff.terms.items() if s[0] > 0})
        neg = Linear(diff.dtype, 0, {key: [-s[0], s[1]] for key, s in diff.terms.items()
                                     if s[0] < 0})
        if pos.terms and neg.terms:
            if k >= 0:
                pos.const = k
            else:
                neg.const = -k
        elif pos.terms:
            neg.const = -k
        else:
            pos.const = k
        lo_d, hi_d = int_limits(diff.dtype)
        for part in (pos, neg):
            values = [part.const] + [cf for cf, _ in part.terms.values()]
            if any(v < lo_d or v > hi_d for v in values):
                return self._rebuild(node, a, b)
        return cls(self._from_linear(pos), self._from_linear(neg), node.dtype)

    def visit_And(self, node):
        return self._logic(node, And)

    def visit_Or(self, node):
        return self._logic(node, Or)

    def _logic(self, node, cls):
        a, b = self.visit(node.a), self.visit(node.b)
        ca, cb = _const_bool(a), _const_bool(b)
        absorbing = cls is Or  # True absorbs Or, False absorbs And
        if ca is absorbing or cb is absorbing:
            return _splat(int(absorbing), node.dtype)
        if ca is not None:
            return b
        if cb is not None:
            return a
        if self._same(a, b):
            return a
        if self._negates(a, b):
            return _splat(int(cls is Or), node.dtype)
        result = self._rebuild(node, a, b)
        fact = self.ana.known_fact(result)
        return result if fact is None else IntImm(int(fact), result.dtype)

    def _negates(self, a, b) -> bool:
        if isinstance(a, Not) and self._same(a.a, b) or isinstance(b, Not) and self._same(b.a, a):
            return True
        if isinstance(a, CmpOp) and isinstance(b, CmpOp) and _int_compare(a):
            return self._same(self.visit(_INVERT[type(a)](a.a, a.b, a.dtype)), b)
        return False

    def visit_Not(self, node):
        a = self.visit(node.a)
        ca = _const_bool(a)
        if ca is not None:
            return _splat(int(not ca), node.dtype)
        if isinstance(a, Not):
            return a.a
        if isinstance(a, CmpOp) and _int_compare(a):
            return self.visit(_INVERT[type(a)](a.a, a.b, a.dtype))
        result = node if a is node.a else Not(a, node.dtype)
        fact = self.ana.known_fact(result)
        return result if fact is None else IntImm(int(fact), result.dtype)

    # -- everything else ---------------------------------------------------------------------
    def visit_Select(self, node):
        cond = self.visit(node.condition)
        c = _const_bool(cond)
        if c is not None:
            return self.visit(node.true_value if c else node.false_value)
        t, f = self.visit(node.true_value), self.visit(node.false_value)
        if self._same(t, f):
            return t
        if cond is node.condition and t is node.true_value and f is node.false_value:
            return node
        return Select(cond, t, f, node.dtype)

    def visit_Cast(self, node):
        v = self.visit(node.value)
        dtype = node.dtype
        if v.dtype == dtype:
            return v
        folded = fold_cast(v, dtype)
        if folded is not None:
            return folded
        if isinstance(v, Broadcast) and isinstance(v.value, (IntImm, FloatImm)):
            scalar = fold_cast(v.value, dt.element_of(dtype))
            if scalar is not None:
                return Broadcast(scalar, v.lanes, dtype)
        if isinstance(v, Cast) and v.value.dtype == dtype and holds(v.dtype, dtype):
            return v.value  # a widening cast undone
        return node if v is node.value else Cast(v, dtype)

    def visit_Call(self, node):
        if not node.extern and node.op == "if_then_else" and len(node.args) == 3:
            cond = self.visit(node.args[0])
            c = _const_bool(cond)
            if c is not None:
                return self.visit(node.args[1] if c else node.args[2])
            t, f = self.visit(node.args[1]), self.visit(node.args[2])
            if self._same(t, f):
                return t
            args = (cond, t, f)
        else:
            args = tuple(self.visit(x) if isinstance(x, PrimExpr) else x for x in node.args)
            if not node.extern:
                if node.op == "likely" and len(args) == 1 and _const_bool(args[0]) is not None:
                    return args[0]
                folded = fold_call(node.op, args, node.dtype)
                if folded is not None:
                    return folded
        if all(x is y for x, y in zip(args, node.args)):
            return node
        return Call(node.op, args, node.dtype, node.extern)

    def visit_Let(self, node):
        value = self.visit(node.value)
        if isinstance(value, (IntImm, FloatImm, Var)):
            return self.visit(substitute(node.body, {node.var: value}))
        with self.ana.bind(node.var, value):
            body = self.visit(node.body)
        if all(v.uid != node.var.uid for v in free_vars(body)) and not _has_extern(value):
            return body
        if value is node.value and body is node.body:
            return node
        return Let(node.var, value, body, node.dtype)

    def visit_Reduce(self, node):
        """The reduction axes range over their domains inside the reduction."""
        axes = [iv for iv in node.axis if getattr(iv, "dom", None) is not None]
        if not axes:
            return self.generic_visit(node)
        with contextlib.ExitStack() as scope:
            for iv in axes:
                scope.enter_context(self.ana.bind(iv.var, iv.dom))
            return self.generic_visit(node)

    def visit_Ramp(self, node):
        base, stride = self.visit(node.base), self.visit(node.stride)
        if isinstance(stride, IntImm) and stride.value == 0:
            return Broadcast(base, node.lanes, node.dtype)
        if base is node.base and stride is node.stride:
            return node
        return Ramp(base, stride, node.lanes, node.dtype)


def _int_compare(e: CmpOp) -> bool:
    """Comparisons of integers can be negated by flipping the operator (floats: NaN)."""
    return dt.is_int(e.a.dtype) or dt.is_bool(e.a.dtype)


def _has_extern(e) -> bool:
    """Whether ``e`` calls an external function (which may have effects: never dropped)."""
    found = []
    post_order_visit(e, lambda n: found.append(n) if isinstance(n, Call) and n.extern else None)
    return bool(found)
