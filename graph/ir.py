"""The graph IR: a dataflow graph of operator calls on typed tensors.

Nodes are immutable, compare and hash structurally (the hash is computed once, when the node is
made, so shared sub-graphs never make hashing exponential) and print as readable text. A
:class:`Call` gets its type from its operator's ``infer`` rule when it is made; a shape or dtype
that does not fit is a ``UserError`` naming the operator and the node.

Example::

    from graph.ir import Call, Constant, Function, Module, TensorType, Var
    x = Var("x", TensorType((1, 8), "float32"))
    w = Constant("w", np.ones((4, 8), "float32"))
    y = Call("relu", (Call("dense", (x, w)),))
    mod = Module(Function((x,), (y,)), ("x",), ("y",))
    print(mod)
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tensorlang.errors import InternalError, UserError


@dataclass(frozen=True, slots=True)
class TensorType:
    """A tensor's static shape (a tuple of ints) and dtype name (``"float32"``, ...)."""
    shape: tuple
    dtype: str

    def __post_init__(self):
        shape = tuple(self.shape)
        if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in shape):
            raise UserError(f"a tensor type needs non-negative int extents, got {shape}")
        object.__setattr__(self, "shape", tuple(int(d) for d in shape))
        object.__setattr__(self, "dtype", str(np.dtype(self.dtype)) if self.dtype != "bfloat16"
                           else "bfloat16")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    def __str__(self):
        return f"Tensor[{', '.join(map(str, self.shape))}; {self.dtype}]"


class Expr:
    """Base of the graph's value nodes. ``type`` is a TensorType (a tuple of them for a
    multi-output call); ``_hash`` is the cached structural hash."""
    __slots__ = ()

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        if self is other:
            return True
        if type(self) is not type(other) or self._hash != other._hash:
            return False
        return self._key() == other._key()


def _freeze(value):
    """Attribute values as hashable data: lists become tuples, NumPy scalars Python ones."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise UserError(f"operator attributes must be numbers, strings, None or tuples of them, "
                    f"got {type(value).__name__}")


@dataclass(frozen=True, slots=True, eq=False)
class Var(Expr):
    """A model input."""
    name: str
    type: TensorType
    _hash: int = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_hash", hash(("Var", self.name, self.type)))

    def _key(self):
        return (self.name, self.type)


@dataclass(frozen=True, slots=True, eq=False)
class Constant(Expr):
    """A weight: a NumPy array kept read-only. Equal values compare equal whatever the name."""
    name: str
    value: np.ndarray
    type: TensorType = field(init=False)
    _digest: str = field(init=False, repr=False)
    _hash: int = field(init=False, repr=False)

    def __post_init__(self):
        value = np.array(self.value, copy=True, order="C")
        value.flags.writeable = False
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "type", TensorType(value.shape, str(value.dtype)))
        digest = hashlib.sha256(value.tobytes()).hexdigest()
        object.__setattr__(self, "_digest", digest)
        object.__setattr__(self, "_hash", hash(("Constant", self.type, digest)))

    def _key(self):
        return (self.type, self._digest)


@dataclass(frozen=True, slots=True, eq=False)
class Call(Expr):
    """``op(*args, **attrs)``. ``attrs`` is given as a dict or pairs and kept as sorted pairs;
    ``type`` comes from the operator's infer rule. ``name`` (the source node's name) is a
    label for messages, left out of equality."""
    op: str
    args: tuple
    attrs: Any = ()
    name: str = field(default="", compare=False)
    type: Any = field(init=False)
    _hash: int = field(init=False, repr=False)

    def __post_init__(self):
        from .ops import get_op  # the registry imports this module for its types
        attrs = self.attrs.items() if isinstance(self.attrs, dict) else self.attrs
        attrs = tuple(sorted((str(k), _freeze(v)) for k, v in attrs))
        object.__setattr__(self, "attrs", attrs)
        object.__setattr__(self, "args", tuple(self.args))
        for pos, a in enumerate(self.args):
            if not isinstance(a, Expr):
                raise InternalError(f"{self.op}: argument {pos} is {type(a).__name__}, "
                                    "not a graph node")
            if isinstance(a.type, tuple):
                raise UserError(f"{self._where()}: argument {pos} is a tuple of "
                                f"{len(a.type)} tensors; pick one with TupleGetItem")
        op = get_op(self.op)
        try:
            ty = op.infer([a.type for a in self.args], dict(attrs))
        except UserError as err:
            raise type(err)(f"{self._where()}: {err}") from err
        ty = tuple(ty) if isinstance(ty, list) else ty
        object.__setattr__(self, "type", ty)
        object.__setattr__(self, "_hash", hash(("Call", self.op, self.args, attrs)))

    def _where(self) -> str:
        return f"op {self.op}" + (f" (node {self.name!r})" if self.name else "")

    def attr(self, key: str, default=None):
        return dict(self.attrs).get(key, default)

    def _key(self):
        return (self.op, self.args, self.attrs)


@dataclass(frozen=True, slots=True, eq=False)
class TupleGetItem(Expr):
    """Output ``index`` of a multi-output call."""
    tuple_value: Expr
    index: int
    type: Any = field(init=False)
    _hash: int = field(init=False, repr=False)

    def __post_init__(self):
        types = self.tuple_value.type
        if not isinstance(types, tuple) or not 0 <= self.index < len(types):
            raise UserError(f"TupleGetItem: index {self.index} is out of range of "
                            f"{self.tuple_value.type}")
        object.__setattr__(self, "type", types[self.index])
        object.__setattr__(self, "_hash", hash(("TupleGetItem", self.tuple_value, self.index)))

    def _key(self):
        return (self.tuple_value, self.index)


@dataclass(frozen=True, slots=True)
class Function:
    """The model's computation: input ``params`` and the ``outputs`` they produce."""
    params: tuple
    outputs: tuple

    def __post_init__(self):
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "outputs", tuple(self.outputs))


@dataclass(frozen=True, slots=True)
class Module:
    """A model: its function and the names of its inputs and outputs, in the model's order.
    ``specializer`` (a :class:`graph.dynamic.Specializer`, or None) rebuilds the module for
    other sizes of its symbolic input dims (a dynamic batch); it takes no part in equality.

    Example:
        >>> mod = graph.from_onnx("model.onnx")          # doctest: +SKIP
        >>> print(mod)                                    # doctest: +SKIP
    """
    function: Function
    input_names: tuple
    output_names: tuple
    specializer: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "input_names", tuple(self.input_names))
        object.__setattr__(self, "output_names", tuple(self.output_names))
        if len(self.input_names) != len(self.function.params) or \
                len(self.output_names) != len(self.function.outputs):
            raise InternalError("Module: input/output names do not match the function")

    def __str__(self):
        return print_module(self)


# -- traversal and printing ---------------------------------------------------------------------

def post_order(outputs) -> list:
    """Every node reachable from ``outputs``, each once, inputs before their users."""
    order, seen = [], set()
    for root in outputs:
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            children = node.args if isinstance(node, Call) else \
                (node.tuple_value,) if isinstance(node, TupleGetItem) else ()
            for child in reversed(children):
                if id(child) not in seen:
                    stack.append((child, False))
    return order


def _attr_text(v) -> str:
    return repr(v) if not isinstance(v, tuple) else "(" + ", ".join(map(_attr_text, v)) + \
        ("," if len(v) == 1 else "") + ")"


def print_module(mod: Module) -> str:
    """The module as Python-like text: one line per call, ``%n = op(args, attrs) : type``."""
    names: dict[int, str] = {}
    params = []
    for name, p in zip(mod.input_names, mod.function.params):
        names[id(p)] = f"%{name}"
        params.append(f"%{name}: {p.type}")
    lines = [f"def main({', '.join(params)}):"]
    count = 0
    for node in post_order(mod.function.outputs):
        if id(node) in names:
            continue
        if isinstance(node, Var):
            names[id(node)] = f"%{node.name}"
        elif isinstance(node, Constant):
            names[id(node)] = f"@{node.name or 'const'}"
            lines.append(f"  {names[id(node)]} = constant : {node.type}")
        elif isinstance(node, Call):
            args = [names[id(a)] for a in node.args]
            args += [f"{k}={_attr_text(v)}" for k, v in node.attrs]
            ty = node.type if not isinstance(node.type, tuple) else \
                "(" + ", ".join(map(str, node.type)) + ")"
            names[id(node)] = f"%{count}"
            lines.append(f"  %{count} = {node.op}({', '.join(args)}) : {ty}")
            count += 1
        elif isinstance(node, TupleGetItem):
            names[id(node)] = f"%{count}"
            lines.append(f"  %{count} = {names[id(node.tuple_value)]}.{node.index} : "
                         f"{node.type}")
            count += 1
    outs = ", ".join(f"{names[id(o)]}" for o in mod.function.outputs)
    lines.append(f"  return ({outs})  # {', '.join(mod.output_names)}")
    return "\n".join(lines)


def structural_hash(node: Expr) -> str:
    """A stable hex digest of ``node``'s structure (ops, attrs, types, constant values), equal
    across processes for equal sub-graphs (Python's ``hash`` of strings is salted)."""
    memo: dict[int, str] = {}
    for n in post_order([node]):
        if isinstance(n, Var):
            text = f"var:{n.name}:{n.type}"
        elif isinstance(n, Constant):
            text = f"const:{n.type}:{n._digest}"
        elif isinstance(n, Call):
            text = f"call:{n.op}:{n.attrs!r}:" + ",".join(memo[id(a)] for a in n.args)
        else:
            text = f"item:{n.index}:{memo[id(n.tuple_value)]}"
        memo[id(n)] = hashlib.sha256(text.encode()).hexdigest()
    return memo[id(node)]


__all__ = ["TensorType", "Expr", "Var", "Constant", "Call", "TupleGetItem", "Function", "Module",
           "post_order", "print_module", "structural_hash"]
