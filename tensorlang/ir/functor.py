"""Generic traversal of IR: a visitor, a mutator that keeps unchanged nodes, and helpers.

Both dispatch on the node's class name (``visit_For``, ``visit_Add``, ...) and fall back to a
generic walk over the dataclass fields, so a pass only writes the cases it cares about.
"""
from __future__ import annotations

import dataclasses

from ..expr import Node, PrimExpr, Var


_FIELD_NAMES: dict[type, tuple] = {}   # node class -> its compared dataclass fields


def _children(node):
    names = _FIELD_NAMES.get(type(node))
    if names is None:  # dataclasses.fields is slow, and every walk of every node asks
        names = tuple(f.name for f in dataclasses.fields(node) if f.compare)
        _FIELD_NAMES[type(node)] = names
    return [(name, getattr(node, name)) for name in names]


# Declarations are not walked into: a buffer's shape or an axis's range is not part of the
# statement that uses it.
_DECLARATIONS = ("Buffer", "IterVar", "Range")


class Visitor:
    """Walks every expression and statement; override ``visit_<Class>`` for the nodes you need."""

    def visit(self, node):
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is not None:
            return method(node)
        return self.generic_visit(node)

    def generic_visit(self, node):
        for _, value in _children(node):
            self._visit_value(value)

    def _visit_value(self, value):
        if isinstance(value, Node):
            if type(value).__name__ not in _DECLARATIONS:
                self.visit(value)
        elif isinstance(value, (tuple, list)):
            for v in value:
                self._visit_value(v)


class Mutator:
    """Rebuilds the IR bottom-up; hands back the very same node when nothing below changed."""

    def visit(self, node):
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is not None:
            return method(node)
        return self.generic_visit(node)

    def generic_visit(self, node):
        changes = {}
        for name, value in _children(node):
            if name in ("buffer", "producer", "combiner", "node", "axis", "loop_var", "var"):
                continue
            new = self._mutate_value(value)
            if new is not value:
                changes[name] = new
        if not changes:
            return node
        return dataclasses.replace(node, **changes)

    def _mutate_value(self, value):
        if isinstance(value, Node):
            if isinstance(value, Var):
                return self.visit(value)
            if type(value).__name__ in _DECLARATIONS:
                return value
            return self.visit(value)
        if isinstance(value, tuple):
            new = tuple(self._mutate_value(v) for v in value)
            return value if all(a is b for a, b in zip(new, value)) else new
        return value

    def visit_Var(self, node):
        return node


def post_order_visit(node, fn) -> None:
    """Call ``fn`` on every node below ``node`` (children first)."""

    class _V(Visitor):
        def visit(self, n):
            method = getattr(self, "visit_" + type(n).__name__, None)
            if method is not None:
                method(n)
            else:
                self.generic_visit(n)
            fn(n)

    _V().visit(node)


class _Substituter(Mutator):
    def __init__(self, by_uid: dict):
        self.by_uid = by_uid

    def visit_Var(self, v):
        return self.by_uid.get(v.uid, v)


def substitute(node, mapping: dict):
    """Replace variables (keys: Var) by expressions everywhere in ``node``."""
    if not mapping:
        return node
    return _Substituter({k.uid: v for k, v in mapping.items()}).visit(node)


def substitute_uids(node, by_uid: dict):
    """``substitute`` with the mapping keyed by ``Var.uid``."""
    return _Substituter(by_uid).visit(node) if by_uid else node


def free_vars(node) -> list[Var]:
    """Variables used in ``node`` and not bound inside it (loop variables, lets), in order."""
    used: dict[int, Var] = {}
    bound: set[int] = set()

    class _F(Visitor):
        def visit_Var(self, v):
            used.setdefault(v.uid, v)

        def visit_For(self, s):
            bound.add(s.loop_var.uid)
            self.generic_visit(s)

        def visit_LetStmt(self, s):
            bound.add(s.var.uid)
            self.generic_visit(s)

        def visit_Let(self, e):
            bound.add(e.var.uid)
            self.generic_visit(e)

        def visit_BufferLoad(self, e):
            used.setdefault(e.buffer.data.uid, e.buffer.data)
            self.generic_visit(e)

        def visit_BufferStore(self, s):
            used.setdefault(s.buffer.data.uid, s.buffer.data)
            self.generic_visit(s)

        def visit_Allocate(self, s):
            bound.add(s.buffer.data.uid)
            for extent in s.buffer.shape:  # sizes are computed where the allocation runs
                self.visit(extent)
            self.generic_visit(s)

    _F().visit(node)
    return [v for uid, v in used.items() if uid not in bound]
