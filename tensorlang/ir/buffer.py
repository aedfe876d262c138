"""Buffers: the named, typed memory regions that loop IR reads and writes."""
from __future__ import annotations

from dataclasses import dataclass, field
import itertools

from ..expr import Node, PrimExpr, Var, convert, IntImm

_buffer_ids = itertools.count()

GLOBAL, LOCAL, SHARED = "global", "local", "shared"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Buffer(Node):
    """A multi-dimensional view of memory; an identity, like ``Var``.

    ``strides`` empty means compact row-major. ``scope`` is ``"global"`` (function arguments and
    heap allocations), ``"local"`` (stack / registers) or ``"shared"`` (GPU shared memory).
    ``elem_offset`` is where element ``[0, ..., 0]`` sits inside ``data``.
    """

    name: str
    dtype: str
    shape: tuple
    data: Var
    strides: tuple = ()
    elem_offset: PrimExpr = IntImm(0, "int32")
    scope: str = GLOBAL
    align: int = 64
    uid: int = field(default_factory=lambda: next(_buffer_ids), compare=False)

    def __hash__(self):
        return hash(("Buffer", self.uid))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def allocation_extents(self) -> tuple:
        """Extents whose product is the element count to allocate; padded strides
        (``storage_align``) make it larger than the product of the shape."""
        if not self.strides or not self.shape:
            return self.shape
        first, stride = self.shape[0], self.strides[0]
        if isinstance(first, IntImm) and isinstance(stride, IntImm):
            return (IntImm(first.value * stride.value, first.dtype),)
        from ..expr import Mul, binary
        return (binary(Mul, first, stride),)

    def vload(self, indices, dtype=None):
        from ..expr import BufferLoad
        return BufferLoad(self, tuple(convert(i) for i in indices), dtype or self.dtype)

    def __getitem__(self, indices):
        if not isinstance(indices, tuple):
            indices = (indices,)
        return self.vload(indices)


def decl_buffer(shape, dtype: str = "float32", name: str = "buf", scope: str = GLOBAL,
                strides=(), elem_offset=None) -> Buffer:
    """A new buffer with a fresh data pointer variable."""
    shape = tuple(convert(s) for s in shape)
    data = Var(name, "handle")
    return Buffer(name=name, dtype=dtype, shape=shape, data=data,
                  strides=tuple(convert(s) for s in strides),
                  elem_offset=convert(elem_offset) if elem_offset is not None else IntImm(0, "int32"),
                  scope=scope)
