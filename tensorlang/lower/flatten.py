"""Storage flattening: multi-dimensional buffer accesses become one element offset."""
from __future__ import annotations

from ..expr import Add, BufferLoad, IntImm, Mul, binary
from ..ir.function import PrimFunc
from ..ir.functor import Mutator
from ..ir.stmt import BufferStore


def buffer_strides(buf) -> tuple:
    """Element strides of ``buf``: its own, or compact row-major from its shape."""
    if buf.strides:
        return buf.strides
    strides = []
    stride = IntImm(1, "int32")
    for extent in reversed(buf.shape):
        strides.append(stride)
        stride = binary(Mul, stride, extent)
    return tuple(reversed(strides))


def flat_index(buf, indices):
    if len(indices) == 1 and (len(buf.shape) <= 1):
        return indices
    if not indices:
        return (IntImm(0, "int32"),)
    offset = None
    for index, stride in zip(indices, buffer_strides(buf)):
        term = index if isinstance(stride, IntImm) and stride.value == 1 \
            else binary(Mul, index, stride)
        offset = term if offset is None else binary(Add, offset, term)
    return (offset,)


class _Flatten(Mutator):
    def visit_BufferLoad(self, e):
        e = self.generic_visit(e)
        if len(e.indices) == 1 and len(e.buffer.shape) <= 1:
            return e
        return BufferLoad(e.buffer, flat_index(e.buffer, e.indices), e.dtype)

    def visit_BufferStore(self, s):
        s = self.generic_visit(s)
        if len(s.indices) == 1 and len(s.buffer.shape) <= 1:
            return s
        return BufferStore(s.buffer, s.value, flat_index(s.buffer, s.indices))


def flatten_storage(func: PrimFunc) -> PrimFunc:
    """Rewrite every access to a single element offset (``A[i, j]`` -> ``A[i * n + j]``)."""
    return func.with_body(_Flatten().visit(func.body))
