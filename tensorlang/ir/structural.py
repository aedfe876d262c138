"""Structural equality and hashing of IR nodes.

Variables and buffers are identities. ``map_free_vars=True`` compares up to a consistent renaming
of every variable and buffer, which is what a compile cache wants (two lowerings of the same
program make fresh variables but the same code).
"""
from __future__ import annotations

import dataclasses

from ..expr import Node, Var


def _is_identity(node) -> bool:
    return isinstance(node, Var) or type(node).__name__ in ("Buffer", "IterVar")


def _node_fields(node):
    return [getattr(node, f.name) for f in dataclasses.fields(node) if f.compare]


def structural_equal(a, b, map_free_vars: bool = False) -> bool:
    return _Equal(map_free_vars).eq(a, b)


class _Equal:
    def __init__(self, map_free_vars: bool):
        self.map_free_vars = map_free_vars
        self.forward: dict[int, object] = {}
        self.backward: dict[int, object] = {}

    def eq(self, a, b) -> bool:
        if a is b:
            return True
        if isinstance(a, Node):
            if type(a) is not type(b):
                return False
            if _is_identity(a):
                if not self.map_free_vars:
                    return False
                mapped = self.forward.get(id(a))
                if mapped is None:
                    if id(b) in self.backward:
                        return False
                    self.forward[id(a)] = b
                    self.backward[id(b)] = a
                    return all(self.eq(x, y) for x, y in zip(_node_fields(a), _node_fields(b)))
                return mapped is b
            return all(self.eq(x, y) for x, y in zip(_node_fields(a), _node_fields(b)))
        if isinstance(a, (tuple, list)):
            return (isinstance(b, (tuple, list)) and len(a) == len(b)
                    and all(self.eq(x, y) for x, y in zip(a, b)))
        if isinstance(a, (int, float, str, bool)) or a is None:
            return type(a) is type(b) and a == b
        return a is b


def structural_hash(node, map_free_vars: bool = False) -> int:
    return _Hasher(map_free_vars).hash(node)


class _Hasher:
    def __init__(self, map_free_vars: bool):
        self.map_free_vars = map_free_vars
        self.seen: dict[int, int] = {}

    def hash(self, x) -> int:
        if isinstance(x, Node):
            if _is_identity(x):
                if not self.map_free_vars:
                    return hash((type(x).__name__, id(x) if not hasattr(x, "uid") else x.uid))
                if id(x) in self.seen:
                    return hash(("ref", self.seen[id(x)]))
                self.seen[id(x)] = len(self.seen)
                return hash((type(x).__name__, tuple(self.hash(f) for f in _node_fields(x)
                                                     if not isinstance(f, str) or True)))
            return hash((type(x).__name__, tuple(self.hash(f) for f in _node_fields(x))))
        if isinstance(x, (tuple, list)):
            return hash(tuple(self.hash(y) for y in x))
        if isinstance(x, (int, float, str, bool)) or x is None:
            return hash((type(x).__name__, x))
        return hash(("obj", id(x)))
