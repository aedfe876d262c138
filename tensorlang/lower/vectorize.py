"""Vectorize legalization: turn ``vectorized`` loops into SIMD expressions.

The loop variable becomes ``ramp(0, 1, lanes)``; loads and stores with ramp indices become
vector accesses, scalars meeting vectors are broadcast. Inner serial loops run in lock-step
across the lanes (iterations of a vectorized loop are independent by the user's request). When
a body cannot be expressed that way (a store whose lanes could collide, a per-lane condition
guarding memory accesses, an allocation inside), the loop stays a ``vectorized`` loop and the
code generator emits it as a scalar loop with a vectorization hint: slower, never wrong.
"""
from __future__ import annotations

from .. import dtype as dt
from ..expr import (Add, BinaryOp, Broadcast, BufferLoad, Call, Cast, CmpOp, IntImm, FloatImm,
                    Let, Mul, Not, PrimExpr, Ramp, Select, Sub, Var, StringImm)
from ..ir.function import PrimFunc
from ..ir.functor import Mutator, post_order_visit, substitute
from ..ir.stmt import (AssertStmt, AttrStmt, BufferStore, Evaluate, For, IfThenElse, LetStmt,
                       SeqStmt)


class _CannotVectorize(Exception):
    pass


def _lanes(e) -> int:
    return dt.lanes_of(e.dtype)


def _broadcast(e, lanes):
    if _lanes(e) == lanes:
        return e
    if _lanes(e) != 1:
        raise _CannotVectorize("mixed vector widths")
    return Broadcast(e, lanes, dt.with_lanes(e.dtype, lanes))


def _has_loads(e) -> bool:
    found = []
    post_order_visit(e, lambda n: found.append(1) if isinstance(n, BufferLoad) else None)
    return bool(found)


class _Vectorizer:
    def __init__(self, var: Var, lanes: int):
        self.var, self.lanes = var, lanes
        self.let_vars: dict = {}

    # -- expressions -----------------------------------------------------------------------
    def expr(self, e):
        method = getattr(self, "e_" + type(e).__name__, None)
        if method is not None:
            return method(e)
        if isinstance(e, BinaryOp):
            return self.binary(e)
        raise _CannotVectorize(type(e).__name__)

    def e_Var(self, e):
        if e.uid == self.var.uid:
            return Ramp(IntImm(0, e.dtype), IntImm(1, e.dtype), self.lanes,
                        dt.with_lanes(e.dtype, self.lanes))
        return self.let_vars.get(e.uid, e)

    def e_IntImm(self, e): return e
    def e_FloatImm(self, e): return e
    def e_StringImm(self, e): return e

    def binary(self, e):
        a, b = self.expr(e.a), self.expr(e.b)
        la, lb = _lanes(a), _lanes(b)
        if la == 1 and lb == 1:
            return e if a is e.a and b is e.b else type(e)(a, b, e.dtype)
        lanes = self.lanes
        # keep index arithmetic as ramps so accesses stay recognisably contiguous
        if isinstance(e, (Add, Sub)) and (isinstance(a, Ramp) or isinstance(b, Ramp)):
            if isinstance(a, Ramp) and lb == 1:
                return Ramp(type(e)(a.base, b, b.dtype), a.stride, lanes, a.dtype)
            if isinstance(b, Ramp) and la == 1 and isinstance(e, Add):
                return Ramp(Add(a, b.base, a.dtype), b.stride, lanes, b.dtype)
            if isinstance(a, Ramp) and isinstance(b, Ramp):
                return Ramp(type(e)(a.base, b.base, a.base.dtype),
                            type(e)(a.stride, b.stride, a.base.dtype), lanes, a.dtype)
        if isinstance(e, Mul):
            if isinstance(a, Ramp) and lb == 1:
                return Ramp(Mul(a.base, b, b.dtype), Mul(a.stride, b, b.dtype), lanes, a.dtype)
            if isinstance(b, Ramp) and la == 1:
                return Ramp(Mul(a, b.base, a.dtype), Mul(a, b.stride, a.dtype), lanes, b.dtype)
        a, b = _broadcast(a, lanes), _broadcast(b, lanes)
        return type(e)(a, b, dt.with_lanes(e.dtype, lanes))

    def e_Not(self, e):
        a = self.expr(e.a)
        return Not(a, dt.with_lanes("bool", _lanes(a)))

    def e_Cast(self, e):
        v = self.expr(e.value)
        return Cast(v, dt.with_lanes(e.dtype, _lanes(v))) if v is not e.value else e

    def e_Select(self, e):
        c, t, f = self.expr(e.condition), self.expr(e.true_value), self.expr(e.false_value)
        lanes = max(_lanes(c), _lanes(t), _lanes(f))
        if lanes == 1:
            return Select(c, t, f, e.dtype)
        return Select(_broadcast(c, lanes) if _lanes(c) > 1 else c, _broadcast(t, lanes),
                      _broadcast(f, lanes), dt.with_lanes(e.dtype, lanes))

    def e_Call(self, e):
        if e.extern:
            args = [self.expr(a) for a in e.args]
            if any(_lanes(a) > 1 for a in args):
                raise _CannotVectorize(f"extern call {e.op}")
            return e
        if e.op == "if_then_else":
            c = self.expr(e.args[0])
            t, f = self.expr(e.args[1]), self.expr(e.args[2])
            lanes = max(_lanes(c), _lanes(t), _lanes(f))
            if lanes == 1:
                return e
            if _lanes(c) > 1:
                if _has_loads(t) or _has_loads(f):
                    raise _CannotVectorize("per-lane if_then_else guarding loads")
                return Select(c, _broadcast(t, lanes), _broadcast(f, lanes),
                              dt.with_lanes(e.dtype, lanes))
            return Call(e.op, (c, _broadcast(t, lanes), _broadcast(f, lanes)),
                        dt.with_lanes(e.dtype, lanes))
        args = [self.expr(a) for a in e.args]
        lanes = max(_lanes(a) for a in args) if args else 1
        if lanes == 1:
            return e
        args = [_broadcast(a, lanes) for a in args]
        return Call(e.op, tuple(args), dt.with_lanes(e.dtype, lanes))

    def e_BufferLoad(self, e):
        idx = [self.expr(i) for i in e.indices]
        if len(idx) != 1:
            raise _CannotVectorize("load before flattening")
        if _lanes(idx[0]) == 1:
            return e
        return BufferLoad(e.buffer, (idx[0],), dt.with_lanes(e.dtype, _lanes(idx[0])))

    def e_Let(self, e):
        v = self.expr(e.value)
        if _lanes(v) == 1:
            return Let(e.var, v, self.expr(e.body), e.dtype)
        new = Var(e.var.name, v.dtype)
        self.let_vars[e.var.uid] = new
        body = self.expr(e.body)
        return Let(new, v, body, body.dtype)

    # -- statements --------------------------------------------------------------------------
    def stmt(self, s):
        if isinstance(s, BufferStore):
            idx = [self.expr(i) for i in s.indices]
            value = self.expr(s.value)
            if len(idx) != 1:
                raise _CannotVectorize("store before flattening")
            index = idx[0]
            if _lanes(index) == 1:
                if _lanes(value) > 1:
                    raise _CannotVectorize("vector value stored to one element (a reduction)")
                return s
            if not (isinstance(index, Ramp) and isinstance(index.stride, IntImm)
                    and index.stride.value != 0):
                raise _CannotVectorize("store lanes may collide")
            return BufferStore(s.buffer, _broadcast(value, _lanes(index)), (index,))
        if isinstance(s, SeqStmt):
            return SeqStmt(tuple(self.stmt(x) for x in s.seq))
        if isinstance(s, LetStmt):
            v = self.expr(s.value)
            if _lanes(v) == 1:
                return LetStmt(s.var, v, self.stmt(s.body))
            new = Var(s.var.name, v.dtype)
            self.let_vars[s.var.uid] = new
            return LetStmt(new, v, self.stmt(s.body))
        if isinstance(s, IfThenElse):
            c = self.expr(s.condition)
            if _lanes(c) > 1:
                raise _CannotVectorize("per-lane condition around statements")
            return IfThenElse(c, self.stmt(s.then_case),
                              self.stmt(s.else_case) if s.else_case is not None else None)
        if isinstance(s, For):
            for e in (s.min, s.extent):
                if _lanes(self.expr(e)) > 1:
                    raise _CannotVectorize("inner loop bounds vary across lanes")
            return For(s.loop_var, s.min, s.extent, s.kind if s.kind != "parallel" else "serial",
                       self.stmt(s.body), s.thread_tag, s.annotations)
        if isinstance(s, Evaluate):
            if _lanes(self.expr(s.value)) > 1:
                raise _CannotVectorize("evaluate")
            return s
        if isinstance(s, AttrStmt):
            return AttrStmt(s.node, s.key, s.value, self.stmt(s.body))
        raise _CannotVectorize(type(s).__name__)


class _VectorizeLoops(Mutator):
    def visit_For(self, s):
        s = self.generic_visit(s)
        if s.kind != "vectorized":
            return s
        from ..arith import simplify
        extent = simplify(s.extent)
        if not isinstance(extent, IntImm):
            return s
        if extent.value == 1:
            return substitute(s.body, {s.loop_var: s.min})
        body = s.body
        if not (isinstance(s.min, IntImm) and s.min.value == 0):
            body = substitute(body, {s.loop_var: Add(s.loop_var, s.min, s.loop_var.dtype)})
        try:
            return _Vectorizer(s.loop_var, extent.value).stmt(body)
        except _CannotVectorize:
            return s


def vectorize_loops(func: PrimFunc) -> PrimFunc:
    """Replace ``vectorized`` loops by vector code where the body allows it."""
    return func.with_body(_VectorizeLoops().visit(func.body))
