"""PrimFunc: a lowered function whose parameters are buffers (and scalar variables)."""
from __future__ import annotations

from dataclasses import dataclass

from ..expr import Node, Var
from .stmt import Stmt


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class PrimFunc(Node):
    """A function of loop IR: ``params`` are Buffers or scalar Vars, in call order.

    Symbolic extents (``tl.var``) that appear in buffer shapes are bound from the arrays at the
    call; ``attrs`` holds facts such as the target or the global symbol.
    """

    name: str
    params: tuple
    body: Stmt
    attrs: tuple = ()

    # Parameters (and everything the body binds) are definitions: two lowerings of the same
    # schedule make fresh buffers and variables but are the same function.
    def __eq__(self, other):
        from .structural import structural_equal
        return isinstance(other, PrimFunc) and structural_equal(self, other, map_free_vars=True)

    def __hash__(self):
        from .structural import structural_hash
        return structural_hash(self, map_free_vars=True)

    def with_body(self, body: Stmt) -> "PrimFunc":
        return PrimFunc(self.name, self.params, body, self.attrs)

    def attr(self, key, default=None):
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    def script(self) -> str:
        from .printer import to_text
        return to_text(self)
