"""Scalar expressions: the nodes shared by the tensor DSL and the loop IR.

Every node is a frozen, slotted dataclass that compares and hashes structurally, except ``Var``
(and the declarations built on it), which is an identity: two variables both named ``i`` are two
variables. As in TVM, ``a == b`` on expressions builds an ``EQ`` node; ``bool()`` of an ``EQ`` or
``NE`` node answers the structural question, so dictionaries and ``in`` keep working.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any

from . import dtype as dt
from .errors import DTypeError, UserError

_node = dataclass(frozen=True, slots=True, eq=False, repr=False)


class Node:
    """Base of all IR nodes: generic structural equality, hashing and field access."""

    __slots__ = ()

    def fields(self):
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.compare]

    def same_as(self, other) -> bool:
        return self is other

    def structural_equal(self, other) -> bool:
        from .ir.structural import structural_equal
        return structural_equal(self, other)

    def __str__(self):
        from .ir.printer import to_text
        return to_text(self)

    __repr__ = __str__


class PrimExpr(Node):
    """A scalar (or vector) value with a ``dtype`` string."""

    __slots__ = ()
    dtype: str

    # -- arithmetic ------------------------------------------------------------------------
    def __add__(self, other): return binary(Add, self, other)
    def __radd__(self, other): return binary(Add, other, self)
    def __sub__(self, other): return binary(Sub, self, other)
    def __rsub__(self, other): return binary(Sub, other, self)
    def __mul__(self, other): return binary(Mul, self, other)
    def __rmul__(self, other): return binary(Mul, other, self)
    def __truediv__(self, other): return binary(Div, self, other)
    def __rtruediv__(self, other): return binary(Div, other, self)
    def __floordiv__(self, other): return binary(FloorDiv, self, other)
    def __rfloordiv__(self, other): return binary(FloorDiv, other, self)
    def __mod__(self, other): return binary(FloorMod, self, other)
    def __rmod__(self, other): return binary(FloorMod, other, self)
    def __neg__(self): return binary(Sub, const(0, self.dtype), self)
    def __pos__(self): return self
    def __abs__(self): return call_intrin("fabs" if dt.is_float(self.dtype) else "abs", self)

    def __pow__(self, other):
        from .math import power
        return power(self, other)

    def __lt__(self, other): return binary(LT, self, other)
    def __le__(self, other): return binary(LE, self, other)
    def __gt__(self, other): return binary(GT, self, other)
    def __ge__(self, other): return binary(GE, self, other)
    def __eq__(self, other): return binary(EQ, self, other)
    def __ne__(self, other): return binary(NE, self, other)

    def __and__(self, other): return logical(And, self, other)
    def __rand__(self, other): return logical(And, other, self)
    def __or__(self, other): return logical(Or, self, other)
    def __ror__(self, other): return logical(Or, other, self)
    def __invert__(self): return Not(as_bool(self))

    def __hash__(self):
        from .ir.structural import structural_hash
        return structural_hash(self)

    def __bool__(self):
        raise UserError(
            f"cannot use the symbolic expression {self} as a Python bool; "
            "use tl.if_then_else / tl.select (or tl.all / tl.any) to branch on it")

    def astype(self, dtype: str) -> "PrimExpr":
        return cast(self, dtype)

    __array_priority__ = 100  # NumPy scalars on the left defer to our operators


# -- leaves ----------------------------------------------------------------------------------

@_node
class IntImm(PrimExpr):
    value: int
    dtype: str = "int32"

    def __bool__(self):
        return bool(self.value)

    def __int__(self):
        return int(self.value)

    def __index__(self):
        return int(self.value)


@_node
class FloatImm(PrimExpr):
    value: float
    dtype: str = "float32"

    def __float__(self):
        return float(self.value)


@_node
class StringImm(PrimExpr):
    value: str
    dtype: str = "handle"


_var_ids = itertools.count()


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Var(PrimExpr):
    """A named scalar variable; an identity, not a value (``tl.var("n")``)."""

    name: str
    dtype: str = "int32"
    uid: int = field(default_factory=lambda: next(_var_ids), compare=False)

    def __hash__(self):
        return hash(("Var", self.uid))


# -- operators -------------------------------------------------------------------------------

@_node
class BinaryOp(PrimExpr):
    a: PrimExpr
    b: PrimExpr
    dtype: str


class Add(BinaryOp): __slots__ = ()
class Sub(BinaryOp): __slots__ = ()
class Mul(BinaryOp): __slots__ = ()
class Div(BinaryOp):
    """True division for floats; C (truncating) division for integers, as in TVM."""
    __slots__ = ()
class Mod(BinaryOp):
    """Truncating remainder (C ``%``)."""
    __slots__ = ()
class FloorDiv(BinaryOp): __slots__ = ()
class FloorMod(BinaryOp): __slots__ = ()
class Min(BinaryOp): __slots__ = ()
class Max(BinaryOp): __slots__ = ()


class CmpOp(BinaryOp):
    __slots__ = ()


class EQ(CmpOp):
    __slots__ = ()

    def __bool__(self):
        return self.a.same_as(self.b) or self.a.structural_equal(self.b)


class NE(CmpOp):
    __slots__ = ()

    def __bool__(self):
        return not (self.a.same_as(self.b) or self.a.structural_equal(self.b))


class LT(CmpOp): __slots__ = ()
class LE(CmpOp): __slots__ = ()
class GT(CmpOp): __slots__ = ()
class GE(CmpOp): __slots__ = ()
class And(BinaryOp): __slots__ = ()
class Or(BinaryOp): __slots__ = ()


@_node
class Not(PrimExpr):
    a: PrimExpr
    dtype: str = "bool"


@_node
class Select(PrimExpr):
    """``condition ? true_value : false_value``; both sides may be evaluated."""

    condition: PrimExpr
    true_value: PrimExpr
    false_value: PrimExpr
    dtype: str


@_node
class Cast(PrimExpr):
    value: PrimExpr
    dtype: str


@_node
class Call(PrimExpr):
    """An intrinsic (``exp``, ``if_then_else``, ...) or an external function by name."""

    op: str
    args: tuple
    dtype: str
    extern: bool = False


@_node
class Let(PrimExpr):
    var: Var
    value: PrimExpr
    body: PrimExpr
    dtype: str


@_node
class Ramp(PrimExpr):
    """The vector ``base, base+stride, ..., base+(lanes-1)*stride``."""

    base: PrimExpr
    stride: PrimExpr
    lanes: int
    dtype: str


@_node
class Broadcast(PrimExpr):
    value: PrimExpr
    lanes: int
    dtype: str


@_node
class BufferLoad(PrimExpr):
    """Read of a loop-IR buffer; ``indices`` are one per dimension until storage flattening."""

    buffer: Any
    indices: tuple
    dtype: str


@_node
class ProducerLoad(PrimExpr):
    """Read of a DSL tensor, ``A[i, j]``: what ``compute`` bodies are made of."""

    producer: Any  # tensor.Tensor
    indices: tuple
    dtype: str


@_node
class Reduce(PrimExpr):
    """A reduction over ``axis``, combining ``source`` values with ``combiner``."""

    combiner: Any  # tensor.CommReducer
    source: tuple
    axis: tuple
    condition: PrimExpr
    value_index: int
    init: tuple
    dtype: str


@_node
class Range(Node):
    """The half-open integer range ``[min, min + extent)``."""

    min: PrimExpr
    extent: PrimExpr

    @staticmethod
    def make(begin, end) -> "Range":
        begin, end = convert(begin), convert(end)
        return Range(begin, simplify_lite(end - begin))


DATA_PAR, REDUCE, THREAD, OPAQUE = "data_par", "reduce", "thread", "opaque"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class IterVar(Node):
    """An iteration variable: a ``Var`` with its range and kind (data-parallel, reduce, thread).

    An identity, like ``Var``: splitting an axis makes new ones.
    """

    dom: Range | None
    var: Var
    kind: str = DATA_PAR
    thread_tag: str = ""

    def __hash__(self):
        return hash(("IterVar", self.var.uid))

    # An IterVar used inside an expression means its variable.
    def _as_expr(self):
        return self.var


def _forward(op):
    def method(self, *args):
        return getattr(self.var, op)(*args)
    method.__name__ = op
    return method


for _op in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
            "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__neg__",
            "__lt__", "__le__", "__gt__", "__ge__", "__and__", "__or__", "astype"):
    setattr(IterVar, _op, _forward(_op))
IterVar.__eq__ = lambda self, other: (self is other) if isinstance(other, IterVar) \
    else self.var.__eq__(other)
IterVar.__ne__ = lambda self, other: (self is not other) if isinstance(other, IterVar) \
    else self.var.__ne__(other)
IterVar.name = property(lambda self: self.var.name)
IterVar.dtype = property(lambda self: self.var.dtype)


# -- construction helpers ------------------------------------------------------------------------

def const(value, dtype: str | None = None) -> PrimExpr:
    """A constant: ``tl.const(3)`` is int32, ``tl.const(3.0)`` float32, ``tl.const(True)`` bool."""
    if isinstance(value, PrimExpr):
        return value if dtype is None else cast(value, dtype)
    if dtype is None:
        if isinstance(value, bool):
            dtype = "bool"
        elif isinstance(value, int):
            dtype = "int32" if -2**31 <= value < 2**31 else "int64"
        elif isinstance(value, float):
            dtype = "float32"
        else:
            import numpy as np
            if isinstance(value, np.generic):
                return const(value.item(), dt.normalize(value.dtype))
            raise DTypeError(f"cannot make a constant from {value!r} ({type(value).__name__})")
    dtype = dt.normalize(dtype)
    if dt.lanes_of(dtype) > 1:
        return Broadcast(const(value, dt.element_of(dtype)), dt.lanes_of(dtype), dtype)
    if dt.is_float(dtype):
        return FloatImm(float(value), dtype)
    if dt.is_bool(dtype):
        return IntImm(int(bool(value)), "bool")
    if isinstance(value, float) and not value.is_integer():
        raise DTypeError(f"constant {value} is not an integer but the dtype is {dtype}")
    return IntImm(int(value), dtype)


def convert(value) -> PrimExpr:
    """Turn a Python number, IterVar or expression into a ``PrimExpr``."""
    if isinstance(value, PrimExpr):
        return value
    if isinstance(value, IterVar):
        return value.var
    if isinstance(value, (bool, int, float)):
        return const(value)
    to_expr = getattr(value, "_as_expr", None)
    if to_expr is not None:
        return to_expr()
    import numpy as np
    if isinstance(value, np.generic):
        return const(value)
    raise DTypeError(f"expected an expression or a number, got {value!r} ({type(value).__name__})")


def _literal_to(value, other_dtype: str) -> PrimExpr:
    """A Python literal meeting an expression takes the expression's dtype where it fits."""
    if isinstance(value, bool):
        return const(value, other_dtype if dt.is_bool(other_dtype) else "bool")
    if isinstance(value, int):
        return const(value, other_dtype) if not dt.is_bool(other_dtype) else const(value)
    if isinstance(value, float):
        if dt.is_float(other_dtype):
            return const(value, other_dtype)
        return const(value, "float32")
    return convert(value)


def _operands(a, b):
    a_lit = isinstance(a, (bool, int, float))
    b_lit = isinstance(b, (bool, int, float))
    if a_lit and not b_lit:
        b = convert(b)
        a = _literal_to(a, dt.element_of(b.dtype))
    elif b_lit and not a_lit:
        a = convert(a)
        b = _literal_to(b, dt.element_of(a.dtype))
    else:
        a, b = convert(a), convert(b)
    return a, b


def match_dtypes(a: PrimExpr, b: PrimExpr, what: str) -> tuple[PrimExpr, PrimExpr]:
    target = dt.promote(a.dtype, b.dtype, what)
    la = dt.lanes_of(a.dtype)
    lb = dt.lanes_of(b.dtype)
    if a.dtype != target:
        a = cast(a, dt.with_lanes(target, la)) if dt.element_of(a.dtype) != dt.element_of(target) else a
        if la == 1 and dt.lanes_of(target) > 1:
            a = Broadcast(a, dt.lanes_of(target), target)
    if b.dtype != target:
        b = cast(b, dt.with_lanes(target, lb)) if dt.element_of(b.dtype) != dt.element_of(target) else b
        if lb == 1 and dt.lanes_of(target) > 1:
            b = Broadcast(b, dt.lanes_of(target), target)
    return a, b


_OP_SYMBOL = {}


def binary(cls, a, b) -> PrimExpr:
    """Build ``cls(a, b)`` after converting literals and promoting the dtypes."""
    a, b = _operands(a, b)
    what = f"operands of {cls.__name__} ({a.dtype} and {b.dtype})"
    if cls in (FloorDiv, FloorMod, Mod) and (dt.is_float(a.dtype) or dt.is_float(b.dtype)):
        if cls is FloorDiv:
            a, b = match_dtypes(a, b, what)
            return call_intrin("floor", Div(a, b, a.dtype))
        if cls is FloorMod:
            a, b = match_dtypes(a, b, what)
            return Sub(a, Mul(b, call_intrin("floor", Div(a, b, a.dtype)), a.dtype), a.dtype)
        raise DTypeError(f"truncmod needs integer operands, got {a.dtype} and {b.dtype}; "
                         "use tl.fmod for floats")
    if dt.is_bool(a.dtype) and dt.is_bool(b.dtype) and cls in (Add, Sub, Mul, Div):
        a, b = cast(a, "int32"), cast(b, "int32")
    a, b = match_dtypes(a, b, what)
    if issubclass(cls, CmpOp):
        return cls(a, b, dt.with_lanes("bool", dt.lanes_of(a.dtype)))
    return cls(a, b, a.dtype)


def as_bool(x) -> PrimExpr:
    x = convert(x)
    if dt.is_bool(x.dtype):
        return x
    return NE(x, const(0, x.dtype), dt.with_lanes("bool", dt.lanes_of(x.dtype)))


def logical(cls, a, b) -> PrimExpr:
    a, b = _operands(a, b)
    if not dt.is_bool(a.dtype) or not dt.is_bool(b.dtype):
        raise DTypeError(
            f"'{'&' if cls is And else '|'}' combines boolean conditions; got {a.dtype} and "
            f"{b.dtype} (bitwise integer operations are not supported)")
    a, b = match_dtypes(a, b, "logical operands")
    return cls(a, b, a.dtype)


def cast(value, dtype: str) -> PrimExpr:
    dtype = dt.normalize(dtype)
    value = convert(value)
    if dt.lanes_of(value.dtype) > 1 and dt.lanes_of(dtype) == 1:
        dtype = dt.with_lanes(dtype, dt.lanes_of(value.dtype))
    if value.dtype == dtype:
        return value
    if isinstance(value, IntImm) and not dt.is_float(dtype) and dt.lanes_of(dtype) == 1:
        return IntImm(int(bool(value.value)) if dt.is_bool(dtype) else value.value, dtype)
    if isinstance(value, (IntImm, FloatImm)) and dt.is_float(dtype) and dt.lanes_of(dtype) == 1:
        return FloatImm(float(value.value), dtype)
    return Cast(value, dtype)


def call_intrin(op: str, *args, dtype: str | None = None) -> PrimExpr:
    args = tuple(convert(a) for a in args)
    return Call(op, args, dtype or args[0].dtype)


def simplify_lite(e: PrimExpr) -> PrimExpr:
    """Fold constant integer arithmetic (the full simplifier lives in ``tensorlang.arith``)."""
    if isinstance(e, BinaryOp) and isinstance(e.a, IntImm) and isinstance(e.b, IntImm):
        x, y = e.a.value, e.b.value
        if isinstance(e, Add):
            return IntImm(x + y, e.dtype)
        if isinstance(e, Sub):
            return IntImm(x - y, e.dtype)
        if isinstance(e, Mul):
            return IntImm(x * y, e.dtype)
    if isinstance(e, Sub) and isinstance(e.b, IntImm) and e.b.value == 0:
        return e.a
    return e


def var(name: str = "v", dtype: str = "int32") -> Var:
    """A symbolic scalar, for example an extent: ``n = tl.var("n")``."""
    return Var(name, dt.normalize(dtype))


def is_const_int(e, value: int | None = None) -> bool:
    return isinstance(e, IntImm) and (value is None or e.value == value)
