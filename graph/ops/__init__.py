"""The graph's operator registry: per operator, a type rule, a DSL compute and a pattern kind.

``compute(input tl.Tensors, attrs dict) -> tl.Tensor`` builds the operator in the tensor DSL
(mostly through ``tensorlang.ops``); ``infer(input TensorTypes, attrs dict) -> TensorType`` gives
its result type without building anything (``None`` derives it by running ``compute`` on
placeholders, which raises the operator library's own shape / dtype errors). The pattern kind
drives fusion:

- ``elementwise``: same shape in and out, one output element per input element;
- ``broadcast``: elementwise after NumPy broadcasting of its inputs;
- ``injective``: each output element reads one input element (reshape, transpose, concat);
- ``reduction``: reduces some axes (sums, softmax, pooling, normalisation);
- ``out_fusable``: a heavy reduction (conv2d, dense, matmul) whose elementwise consumers fuse
  into its output loops;
- ``opaque``: never fused.

Example::

    from graph.ops import register, get_op
    register("my_relu", infer=lambda types, attrs: types[0],
             compute=lambda xs, attrs: tl.ops.elemwise.relu(xs[0]), pattern="elementwise")
    get_op("my_relu").infer([TensorType((2, 3), "float32")], {})
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import tensorlang as tl
from tensorlang.errors import UnsupportedOpError, UserError

from ..ir import TensorType

PATTERNS = ("elementwise", "broadcast", "injective", "reduction", "out_fusable", "opaque")
FUSABLE_CONSUMERS = ("elementwise", "broadcast")


@dataclass(frozen=True)
class OpDef:
    """A registered operator."""
    name: str
    infer: Callable
    compute: Callable
    pattern: str


_OPS: dict[str, OpDef] = {}


def placeholders(types, prefix: str = "in") -> list:
    """One ``tl.placeholder`` per TensorType."""
    return [tl.placeholder(t.shape, t.dtype, name=f"{prefix}{i}") for i, t in enumerate(types)]


def tensor_type(t) -> TensorType:
    """The TensorType of a ``tl.Tensor`` with constant extents."""
    from tensorlang.ops._util import const_int
    dims = [const_int(d) for d in t.shape]
    if any(d is None for d in dims):
        raise UserError(f"the graph layer needs static shapes; {t.name} has {t.shape}")
    return TensorType(tuple(dims), t.dtype)


def _infer_by_compute(compute: Callable) -> Callable:
    def infer(types, attrs):
        out = compute(placeholders(types), attrs)
        return [tensor_type(t) for t in out] if isinstance(out, (list, tuple)) else \
            tensor_type(out)
    return infer


def register(name: str, infer: Callable | None, compute: Callable, pattern: str) -> OpDef:
    """Register operator ``name``; ``infer=None`` derives types by running ``compute``."""
    if pattern not in PATTERNS:
        raise UserError(f"register {name}: pattern must be one of {PATTERNS}, got {pattern!r}")
    if name in _OPS:
        raise UserError(f"operator {name!r} is already registered")
    op = OpDef(name, infer or _infer_by_compute(compute), compute, pattern)
    _OPS[name] = op
    return op


def get_op(name: str) -> OpDef:
    """The registered operator ``name``; an UnsupportedOpError if there is none."""
    try:
        return _OPS[name]
    except KeyError:
        raise UnsupportedOpError(f"no graph operator named {name!r} is registered") from None


def registered_ops() -> list[str]:
    """The names of every registered operator, sorted."""
    return sorted(_OPS)


from . import elementwise, nn, transform, reduce  # noqa: E402,F401  (they register the ops)
from . import scalar, layout, nn_extra, formats, nchwc  # noqa: E402,F401

__all__ = ["OpDef", "PATTERNS", "FUSABLE_CONSUMERS", "register", "get_op", "registered_ops",
           "placeholders", "tensor_type"]
