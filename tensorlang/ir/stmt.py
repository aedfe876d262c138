"""Loop IR statements. Frozen dataclasses, structural equality (variables by identity)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..expr import Node, PrimExpr, Var

_stmt = dataclass(frozen=True, slots=True, eq=False, repr=False)


class Stmt(Node):
    __slots__ = ()

    def __eq__(self, other):
        from .structural import structural_equal
        return isinstance(other, Stmt) and structural_equal(self, other)

    def __hash__(self):
        from .structural import structural_hash
        return structural_hash(self)


# For-loop kinds
SERIAL, PARALLEL, VECTORIZED, UNROLLED, THREAD_BINDING = (
    "serial", "parallel", "vectorized", "unrolled", "thread_binding")


@_stmt
class For(Stmt):
    """``for loop_var in range(min, min + extent)``; ``kind`` says how the loop runs.

    ``thread_tag`` names the GPU axis (``"blockIdx.x"``) for thread-bound loops;
    ``annotations`` carries pragmas as a tuple of (key, value) pairs.
    """

    loop_var: Var
    min: PrimExpr
    extent: PrimExpr
    kind: str
    body: Stmt
    thread_tag: str = ""
    annotations: tuple = ()


@_stmt
class SeqStmt(Stmt):
    seq: tuple


@_stmt
class BufferStore(Stmt):
    buffer: Any  # Buffer
    value: PrimExpr
    indices: tuple


@_stmt
class IfThenElse(Stmt):
    condition: PrimExpr
    then_case: Stmt
    else_case: Stmt | None = None


@_stmt
class LetStmt(Stmt):
    var: Var
    value: PrimExpr
    body: Stmt


@_stmt
class Allocate(Stmt):
    """Memory for ``buffer`` (its ``data`` var), live inside ``body``."""

    buffer: Any  # Buffer
    body: Stmt


@_stmt
class Evaluate(Stmt):
    value: PrimExpr


@_stmt
class AssertStmt(Stmt):
    condition: PrimExpr
    message: str
    body: Stmt


@_stmt
class AttrStmt(Stmt):
    """A key/value fact about ``node`` that holds inside ``body`` (pragmas, storage hints)."""

    node: Any
    key: str
    value: Any
    body: Stmt


def seq(*stmts) -> Stmt:
    """A SeqStmt of the given statements, flattened; one statement is returned as is."""
    flat = []
    for s in stmts:
        if s is None:
            continue
        if isinstance(s, SeqStmt):
            flat.extend(s.seq)
        elif isinstance(s, (list, tuple)):
            inner = seq(*s)
            if inner is not None:
                flat.extend(inner.seq if isinstance(inner, SeqStmt) else [inner])
        else:
            flat.append(s)
    if not flat:
        return Evaluate(_zero())
    return flat[0] if len(flat) == 1 else SeqStmt(tuple(flat))


def _zero():
    from ..expr import IntImm
    return IntImm(0, "int32")
