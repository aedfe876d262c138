"""What the code generator knows inside one LLVM function while it emits it."""
from __future__ import annotations

from dataclasses import dataclass, field

from llvmlite import ir

from tensorlang.errors import InternalError
from tensorlang.expr import Var

from .types import I8_PTR


@dataclass
class DataPointer:
    """A buffer's base address (``i8*``) and the byte alignment known for it."""

    value: ir.Value
    align: int


@dataclass
class FunctionScope:
    """Bindings of one function: SSA values of variables, buffer bases, live heap blocks.

    ``multiples`` and ``non_negative`` are facts about integer variables (a Let-bound ``i * 8`` is
    a multiple of 8; loop counters from 0 and extents are non-negative) that give aligned vector
    accesses and cheaper floor division. ``in_parallel`` marks a parallel loop's body, where
    nested parallel loops run serially.
    """

    function: ir.Function
    in_parallel: bool = False
    values: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    multiples: dict = field(default_factory=dict)
    non_negative: set = field(default_factory=set)
    heap: list = field(default_factory=list)

    def __post_init__(self) -> None:
        # The entry block holds only allocas (and a branch on): two builders in one block
        # would trip over each other's insertion points.
        self.entry = self.function.append_basic_block("entry")
        start = self.function.append_basic_block("start")
        self._allocas = ir.IRBuilder(self.entry)
        self._entry_branch = self._allocas.branch(start)
        self.builder = ir.IRBuilder(start)

    def alloca(self, ty: ir.Type, align: int, name: str = "") -> ir.Value:
        """Stack memory in the entry block, where SROA / mem2reg can promote it."""
        self._allocas.position_before(self._entry_branch)
        slot = self._allocas.alloca(ty, name=name)
        slot.align = align
        return slot

    def bind(self, var: Var, value: ir.Value):
        """Bind ``var``; returns what it shadowed, for :meth:`unbind`."""
        table = self.data if value.type == I8_PTR and var.dtype == "handle" else self.values
        previous = table.get(var.uid)
        table[var.uid] = value if table is self.values else DataPointer(value, 1)
        return previous

    def unbind(self, var: Var, previous) -> None:
        table = self.data if var.dtype == "handle" else self.values
        if previous is None:
            table.pop(var.uid, None)
        else:
            table[var.uid] = previous
        self.multiples.pop(var.uid, None)
        self.non_negative.discard(var.uid)

    def value_of(self, var: Var) -> ir.Value:
        if var.dtype == "handle":
            if var.uid in self.data:
                return self.data[var.uid].value
        elif var.uid in self.values:
            return self.values[var.uid]
        raise InternalError(f"variable {var.name!r} (uid {var.uid}) is used where it is not "
                            "bound: not a parameter, loop variable, let or allocation")

    def pointer(self, var: Var) -> DataPointer:
        pointer = self.data.get(var.uid)
        if pointer is None:
            raise InternalError(f"buffer data {var.name!r} is used where it is not bound: not a "
                                "parameter or allocation")
        return pointer
