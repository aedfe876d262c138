"""Tensors and the operations that make them: placeholder, compute, extern, reductions."""
from __future__ import annotations

import inspect
import itertools
from typing import Callable, Sequence

from . import dtype as dt
from .errors import DTypeError, ShapeError, UserError
from .expr import (DATA_PAR, REDUCE, IntImm, IterVar, PrimExpr, ProducerLoad, Range, Reduce,
                   Var, as_bool, const, convert)

_op_ids = itertools.count()


class Operation:
    """What produces one or more tensors; an identity (compared by ``is``)."""

    name: str
    tag: str = ""
    attrs: dict

    def __init__(self, name: str, tag: str = "", attrs: dict | None = None):
        self.name = name
        self.tag = tag
        self.attrs = dict(attrs or {})
        self.uid = next(_op_ids)

    @property
    def num_outputs(self) -> int:
        return 1

    def output(self, index: int = 0) -> "Tensor":
        return self._outputs[index]

    @property
    def input_tensors(self) -> list["Tensor"]:
        return []

    def __repr__(self):
        return f"{type(self).__name__}({self.name})"


class PlaceholderOp(Operation):
    def __init__(self, name, shape, dtype):
        super().__init__(name)
        self.shape, self.dtype = shape, dtype
        self._outputs = (Tensor(self, 0, shape, dtype),)


class ComputeOp(Operation):
    """``axis`` are the output's iteration variables; ``body`` one expression per output."""

    def __init__(self, name, tag, attrs, axis, body, shape=None):
        super().__init__(name, tag, attrs)
        self.axis = tuple(axis)
        self.body = tuple(body)
        first = self.body[0]
        self.reduce_axis = tuple(first.axis) if isinstance(first, Reduce) else ()
        shape = tuple(shape) if shape is not None else tuple(iv.dom.extent for iv in self.axis)
        self._outputs = tuple(Tensor(self, i, shape, b.dtype) for i, b in enumerate(self.body))

    @property
    def num_outputs(self):
        return len(self.body)

    @property
    def input_tensors(self):
        return collect_tensor_reads(self.body)


class ExternOp(Operation):
    """A stage whose body is a statement written against buffers (``tl.extern``)."""

    def __init__(self, name, tag, attrs, inputs, input_buffers, output_buffers, body):
        super().__init__(name, tag, attrs)
        self.inputs = tuple(inputs)
        self.input_buffers = tuple(input_buffers)
        self.output_buffers = tuple(output_buffers)
        self.body = body
        self.axis = ()
        self.reduce_axis = ()
        self._outputs = tuple(Tensor(self, i, b.shape, b.dtype)
                              for i, b in enumerate(self.output_buffers))

    @property
    def num_outputs(self):
        return len(self.output_buffers)

    @property
    def input_tensors(self):
        return list(self.inputs)


class Tensor:
    """The result of an operation; index it (``A[i, j]``) to read an element in an expression."""

    __slots__ = ("op", "value_index", "shape", "dtype")

    def __init__(self, op, value_index, shape, dtype):
        self.op = op
        self.value_index = value_index
        self.shape = tuple(shape)
        self.dtype = dtype

    @property
    def name(self) -> str:
        return self.op.name if self.op.num_outputs == 1 else f"{self.op.name}.v{self.value_index}"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __hash__(self):
        return hash((self.op.uid, self.value_index))

    def __eq__(self, other):
        return isinstance(other, Tensor) and self.op is other.op \
            and self.value_index == other.value_index

    def __getitem__(self, indices):
        if not isinstance(indices, tuple):
            indices = (indices,)
        if len(indices) < self.ndim:
            return _TensorSlice(self, indices)
        return self(*indices)

    def __call__(self, *indices) -> PrimExpr:
        if len(indices) != self.ndim:
            raise ShapeError(f"tensor {self.name} has {self.ndim} dimensions but was indexed "
                             f"with {len(indices)} indices")
        converted = []
        for pos, index in enumerate(indices):
            if isinstance(index, slice):
                raise ShapeError(f"tensor {self.name}: slices are not supported in expressions "
                                 f"(index {pos}); index with one expression per dimension")
            e = convert(index)
            if not (dt.is_int(e.dtype) or dt.is_bool(e.dtype)):
                raise DTypeError(f"tensor {self.name}: index {pos} is {e.dtype}, not an integer; "
                                 "cast it with tl.cast(x, 'int32')")
            converted.append(e)
        return ProducerLoad(self, tuple(converted), self.dtype)

    def __repr__(self):
        shape = ", ".join(str(s) for s in self.shape)
        return f"Tensor(name={self.name}, shape=({shape}), dtype={self.dtype})"

    def __bool__(self):
        return True

    # Arithmetic on whole tensors is not part of the DSL: say so instead of failing oddly.
    def _no_arith(self, *_):
        raise UserError(f"tensor {self.name} is not an expression; index it (e.g. "
                        f"{self.name}[i, j]) inside tl.compute to use its elements")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = _no_arith


class _TensorSlice:
    """``A[i]`` of a 2-d tensor: index it again (``A[i][j]``) to get the element."""

    def __init__(self, tensor, indices):
        self.tensor, self.indices = tensor, indices

    def __getitem__(self, more):
        if not isinstance(more, tuple):
            more = (more,)
        return self.tensor[self.indices + more]


def _shape(shape, what: str) -> tuple:
    if isinstance(shape, (int, PrimExpr)):
        shape = (shape,)
    out = []
    for pos, s in enumerate(shape):
        e = convert(s)
        if not dt.is_int(e.dtype):
            raise DTypeError(f"{what}: dimension {pos} has dtype {e.dtype}, not an integer")
        if isinstance(e, IntImm) and e.value < 0:
            raise ShapeError(f"{what}: dimension {pos} is negative ({e.value})")
        out.append(e)
    return tuple(out)


def placeholder(shape, dtype: str = "float32", name: str = "placeholder") -> Tensor:
    """An input tensor of the given shape: ``A = tl.placeholder((n, 512), "float32", name="A")``."""
    return PlaceholderOp(name, _shape(shape, f"placeholder {name}"), dt.normalize(dtype)).output(0)


def reduce_axis(dom, name: str = "rv") -> IterVar:
    """A reduction variable over ``[begin, end)``: ``k = tl.reduce_axis((0, 512), name="k")``."""
    if isinstance(dom, Range):
        rng = dom
    else:
        begin, end = dom
        rng = Range.make(begin, end)
    return IterVar(rng, Var(name, "int32"), REDUCE)


def thread_axis(tag: str = "", name: str = "") -> IterVar:
    """A GPU thread axis to ``bind`` a loop to: ``tl.thread_axis("threadIdx.x")``."""
    from .expr import THREAD
    valid = {f"{a}.{c}" for a in ("blockIdx", "threadIdx", "vthread") for c in "xyz"} | {"vthread"}
    if tag not in valid:
        raise UserError(f"unknown thread axis {tag!r}; expected one of {sorted(valid)}")
    return IterVar(None, Var(name or tag, "int32"), THREAD, tag)


def _arg_names(fcompute: Callable, ndim: int) -> list[str]:
    try:
        params = list(inspect.signature(fcompute).parameters.values())
    except (TypeError, ValueError):
        params = []
    if params and params[0].kind == inspect.Parameter.VAR_POSITIONAL:
        return [f"i{d}" for d in range(ndim)]
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(names) != ndim:
        raise ShapeError(f"compute: the shape has {ndim} dimensions but fcompute takes "
                         f"{len(names)} index arguments ({', '.join(names) or 'none'})")
    return names


def compute(shape, fcompute: Callable, name: str = "compute", tag: str = "",
            attrs: dict | None = None):
    """A tensor whose element at each index is ``fcompute(*index)``.

    Example: ``C = tl.compute((m, n), lambda i, j: A[i, j] * 2, name="C")``. When fcompute returns
    several values (a tuple-valued ``comm_reducer``), a list of tensors is returned.
    """
    shape = _shape(shape, f"compute {name}")
    names = _arg_names(fcompute, len(shape))
    axis = [IterVar(Range(IntImm(0, s.dtype), s), Var(n, s.dtype), DATA_PAR)
            for n, s in zip(names, shape)]
    result = fcompute(*[iv.var for iv in axis])
    body = list(result) if isinstance(result, (list, tuple)) else [result]
    body = [convert(b) for b in body]
    _check_reductions(body, name)
    op = ComputeOp(name, tag, attrs, axis, body, shape)
    return op.output(0) if op.num_outputs == 1 else [op.output(i) for i in range(op.num_outputs)]


def _check_reductions(body, name):
    from .ir.functor import post_order_visit
    top = [b for b in body if isinstance(b, Reduce)]
    if top and len(top) != len(body):
        raise UserError(f"compute {name}: either every output or none is a reduction")
    if len(top) > 1 and any(b.combiner is not top[0].combiner or b.source is not top[0].source
                            for b in top):
        raise UserError(f"compute {name}: several reductions in one compute must come from one "
                        "tuple-valued comm_reducer")

    nested = []

    def check(node):
        if isinstance(node, Reduce):
            nested.append(node)

    for b in body:
        if isinstance(b, Reduce):
            for s in b.source:
                post_order_visit(s, check)
            post_order_visit(b.condition, check)
        else:
            post_order_visit(b, check)
    if nested:
        raise UserError(
            f"compute {name}: a reduction must be the whole body of a compute, not part of a "
            "larger expression; compute the reduction in one stage and use it in a second")


def visit_body(exprs, fn) -> None:
    """Call ``fn`` on every node of compute bodies, looking inside reductions' sources and
    conditions (not their axes or combiners)."""
    from .ir.functor import post_order_visit
    for e in exprs:
        if isinstance(e, Reduce):
            for s in e.source:
                post_order_visit(s, fn)
            post_order_visit(e.condition, fn)
        else:
            post_order_visit(e, fn)


def collect_tensor_reads(exprs) -> list[Tensor]:
    """Tensors read by the expressions, in first-use order, each once."""
    seen: dict = {}

    def visit(node):
        if isinstance(node, ProducerLoad):
            seen.setdefault(node.producer, None)

    visit_body(exprs, visit)
    return list(seen)


def extern(shape, inputs: Sequence[Tensor], fcompute: Callable, name: str = "extern",
           dtype="float32", tag: str = "", attrs: dict | None = None):
    """A stage computed by a statement over buffers, e.g. a call to an external function.

    ``fcompute(ins, outs)`` receives one Buffer per input and per output and returns a loop-IR
    statement (often ``tl.call_extern`` inside ``tl.ir.Evaluate``). ``shape`` may be a list of
    shapes for several outputs; ``dtype`` then a list of dtypes.
    """
    from .ir.buffer import decl_buffer
    from .ir.stmt import Evaluate, Stmt
    multi = isinstance(shape, list) and shape and isinstance(shape[0], (list, tuple))
    shapes = shape if multi else [shape]
    dtypes = dtype if isinstance(dtype, (list, tuple)) else [dtype] * len(shapes)
    in_bufs = [decl_buffer(t.shape, t.dtype, t.name) for t in inputs]
    out_bufs = [decl_buffer(_shape(s, f"extern {name}"), dt.normalize(d), f"{name}_out{i}"
                            if len(shapes) > 1 else name)
                for i, (s, d) in enumerate(zip(shapes, dtypes))]
    body = fcompute(in_bufs, out_bufs if multi else out_bufs)
    if isinstance(body, PrimExpr):
        body = Evaluate(body)
    if not isinstance(body, Stmt):
        raise UserError(f"extern {name}: fcompute must return a statement or an expression, "
                        f"got {type(body).__name__}")
    op = ExternOp(name, tag, attrs, inputs, in_bufs, out_bufs, body)
    return op.output(0) if op.num_outputs == 1 else [op.output(i) for i in range(op.num_outputs)]


def as_condition(cond) -> PrimExpr:
    return as_bool(convert(cond))


__all__ = ["Tensor", "Operation", "PlaceholderOp", "ComputeOp", "ExternOp", "placeholder",
           "compute", "reduce_axis", "thread_axis", "extern", "const"]
