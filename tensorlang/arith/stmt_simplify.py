"""Simplify loop IR: every expression under the ranges of its enclosing loops.

Also removes what the simplified conditions and extents make dead: branches decided by the
loop ranges, loops of extent 0 (or with nothing left in their body), serial loops of extent 1
(the variable becomes the loop's min), satisfied asserts and nested sequences.
"""
from __future__ import annotations

from .. import dtype as dt
from ..expr import Call, FloatImm, IntImm, Not, PrimExpr, Range, Var, cast
from ..ir.function import PrimFunc
from ..ir.functor import Mutator, post_order_visit, substitute_uids
from ..ir.stmt import (SERIAL, AssertStmt, AttrStmt, Evaluate, For, IfThenElse, LetStmt,
                       SeqStmt, Stmt)
from .analyzer import Analyzer


def _noop() -> Evaluate:
    return Evaluate(IntImm(0, "int32"))


def is_noop(s) -> bool:
    """A statement that does nothing: ``Evaluate`` of a constant."""
    return s is None or isinstance(s, Evaluate) and isinstance(s.value, (IntImm, FloatImm))


def _pure(e) -> bool:
    found = []
    post_order_visit(e, lambda n: found.append(n) if isinstance(n, Call) and n.extern else None)
    return not found


def _const_bool(e):
    return bool(e.value) if isinstance(e, IntImm) else None


class StmtSimplifier(Mutator):
    """Walks statements, binding loop variables and lets in an ``Analyzer`` on the way down."""

    def __init__(self, analyzer: Analyzer):
        self.ana = analyzer
        # variables of removed unit loops and constant lets -> their values: replaced in each
        # expression as it is visited (one walk of the body, not one per removed loop)
        self._values: dict[int, PrimExpr] = {}

    def visit(self, node):
        if isinstance(node, PrimExpr):
            return self._expr(node)
        return super().visit(node)

    def _expr(self, e: PrimExpr) -> PrimExpr:
        return self.ana.simplify(substitute_uids(e, self._values))

    def _visit_with_value(self, var: Var, value: PrimExpr, body):
        """``body`` visited with ``var`` replaced by ``value`` (already simplified)."""
        previous = self._values.get(var.uid)
        self._values[var.uid] = value
        try:
            return self.visit(body)
        finally:
            if previous is None:
                del self._values[var.uid]
            else:
                self._values[var.uid] = previous

    def visit_For(self, s: For):
        mn, ext = self._expr(s.min), self._expr(s.extent)
        bound = self.ana.int_bound(ext)
        if bound.max is not None and bound.max <= 0:
            return _noop()
        plain = s.kind == SERIAL and not s.thread_tag and not s.annotations
        if plain and isinstance(ext, IntImm) and ext.value == 1:
            value = mn if mn.dtype == s.loop_var.dtype else cast(mn, s.loop_var.dtype)
            return self._visit_with_value(s.loop_var, value, s.body)
        with self.ana.bind(s.loop_var, Range(mn, ext)):
            body = self.visit(s.body)
        if is_noop(body):
            return _noop()
        if mn is s.min and ext is s.extent and body is s.body:
            return s
        return For(s.loop_var, mn, ext, s.kind, body, s.thread_tag, s.annotations)

    def visit_IfThenElse(self, s: IfThenElse):
        cond = self._expr(s.condition)
        c = _const_bool(cond)
        if c is True:
            return self.visit(s.then_case)
        if c is False:
            return self.visit(s.else_case) if s.else_case is not None else _noop()
        if dt.lanes_of(cond.dtype) == 1:
            with self.ana.assuming(cond, True):
                then = self.visit(s.then_case)
            other = None
            if s.else_case is not None:
                with self.ana.assuming(cond, False):
                    other = self.visit(s.else_case)
        else:
            then = self.visit(s.then_case)
            other = self.visit(s.else_case) if s.else_case is not None else None
        if is_noop(other):
            other = None
        if is_noop(then):
            if other is None and _pure(cond):
                return _noop()
            if other is not None:
                return IfThenElse(self.ana.simplify(Not(cond, cond.dtype)), other, None)
        if cond is s.condition and then is s.then_case and other is s.else_case:
            return s
        return IfThenElse(cond, then, other)

    def visit_LetStmt(self, s: LetStmt):
        value = self._expr(s.value)
        if isinstance(value, (IntImm, FloatImm)):
            return self._visit_with_value(s.var, value, s.body)
        with self.ana.bind(s.var, value):
            body = self.visit(s.body)
        if value is s.value and body is s.body:
            return s
        return LetStmt(s.var, value, body)

    def visit_AssertStmt(self, s: AssertStmt):
        cond = self._expr(s.condition)
        if _const_bool(cond) is True:
            return self.visit(s.body)
        with self.ana.assuming(cond, True):
            body = self.visit(s.body)
        if cond is s.condition and body is s.body:
            return s
        return AssertStmt(cond, s.message, body)

    def visit_AttrStmt(self, s: AttrStmt):
        value = self._expr(s.value) if isinstance(s.value, PrimExpr) else s.value
        body = self.visit(s.body)
        if value is s.value and body is s.body:
            return s
        return AttrStmt(s.node, s.key, value, body)

    def visit_SeqStmt(self, s: SeqStmt):
        flat = []
        for child in s.seq:
            new = self.visit(child)
            if isinstance(new, SeqStmt):
                flat.extend(new.seq)
            elif not is_noop(new):
                flat.append(new)
        if not flat:
            return _noop()
        if len(flat) == 1:
            return flat[0]
        if len(flat) == len(s.seq) and all(a is b for a, b in zip(flat, s.seq)):
            return s
        return SeqStmt(tuple(flat))

    def visit_Allocate(self, s):
        body = self.visit(s.body)
        if is_noop(body):
            return _noop()
        return s if body is s.body else type(s)(s.buffer, body)


def _shape_ranges(func: PrimFunc) -> dict:
    """Symbolic extents in the parameters' shapes come from array shapes: never negative."""
    ranges = {}
    for p in func.params:
        for extent in getattr(p, "shape", ()):
            if isinstance(extent, Var) and dt.is_int(extent.dtype):
                top = IntImm((1 << (dt.bits(extent.dtype) - 1)) - 1, extent.dtype)
                ranges[extent] = Range(IntImm(0, extent.dtype), top)
    return ranges


def simplify_stmt(node, analyzer: Analyzer | None = None):
    """Simplify a statement or a PrimFunc (returns the same kind).

    Example::

        body = For(i, 0, 16, "serial", IfThenElse(i < 16, store))
        simplify_stmt(body)   # For(i, 0, 16, "serial", store)
    """
    if isinstance(node, PrimFunc):
        ana = analyzer or Analyzer(_shape_ranges(node))
        body = StmtSimplifier(ana).visit(node.body)
        return node if body is node.body else node.with_body(body)
    if isinstance(node, Stmt):
        return StmtSimplifier(analyzer or Analyzer()).visit(node)
    if isinstance(node, PrimExpr):
        return (analyzer or Analyzer()).simplify(node)
    raise TypeError(f"simplify_stmt expects a Stmt or a PrimFunc, got {type(node).__name__}")
