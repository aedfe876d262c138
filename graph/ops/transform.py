"""Layout operators of the graph layer (pattern ``injective``): reshape, flatten, transpose,
concat, squeeze, unsqueeze. Shapes in attributes are fully resolved (no 0 or -1 left)."""
from __future__ import annotations

import numpy as np

from tensorlang import ops as T
from tensorlang.errors import ShapeError

from ..ir import TensorType
from . import register


def _infer_reshape(types, attrs):
    shape = tuple(attrs["newshape"])
    if int(np.prod(shape, dtype=np.int64)) != types[0].size or any(d < 0 for d in shape):
        raise ShapeError(f"cannot reshape {types[0].shape} into {shape}")
    return TensorType(shape, types[0].dtype)


register("reshape", _infer_reshape,
         lambda xs, a: T.transform.reshape(xs[0], tuple(a["newshape"])), "injective")


def _flatten_shape(shape, axis):
    axis = axis + len(shape) if axis < 0 else axis
    if not 0 <= axis <= len(shape):
        raise ShapeError(f"flatten axis {axis} is out of range for rank {len(shape)}")
    return (int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64)))


register("flatten",
         lambda types, a: TensorType(_flatten_shape(types[0].shape, a.get("axis", 1)),
                                     types[0].dtype),
         lambda xs, a: T.transform.reshape(
             xs[0], _flatten_shape(tuple(int(d) for d in xs[0].shape), a.get("axis", 1))),
         "injective")


def _perm(ndim, attrs):
    axes = attrs.get("axes")
    axes = tuple(reversed(range(ndim))) if axes is None else tuple(axes)
    if sorted(a % ndim if ndim else a for a in axes) != list(range(ndim)):
        raise ShapeError(f"axes {axes} are not a permutation of {ndim} dimensions")
    return tuple(a % ndim for a in axes)


register("transpose",
         lambda types, a: TensorType(tuple(types[0].shape[d] for d in _perm(types[0].ndim, a)),
                                     types[0].dtype),
         lambda xs, a: T.transform.transpose(xs[0], _perm(xs[0].ndim, a)), "injective")
register("concat", None,
         lambda xs, a: T.transform.concatenate(list(xs), axis=a.get("axis", 0)), "injective")


def _squeeze_shape(shape, attrs):
    axes = attrs.get("axes")
    if axes is None:
        return tuple(d for d in shape if d != 1)
    axes = {a + len(shape) if a < 0 else a for a in axes}
    for a in axes:
        if not 0 <= a < len(shape) or shape[a] != 1:
            raise ShapeError(f"cannot squeeze axis {a} of shape {shape}")
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _unsqueeze_shape(shape, attrs):
    rank = len(shape) + len(attrs["axes"])
    axes = sorted(a + rank if a < 0 else a for a in attrs["axes"])
    if len(set(axes)) != len(axes) or not all(0 <= a < rank for a in axes):
        raise ShapeError(f"bad unsqueeze axes {tuple(attrs['axes'])} for shape {shape}")
    out, rest = [], iter(shape)
    for i in range(rank):
        out.append(1 if i in axes else next(rest))
    return tuple(out)


for _name, _rule in (("squeeze", _squeeze_shape), ("unsqueeze", _unsqueeze_shape)):
    register(_name,
             lambda types, a, rule=_rule: TensorType(rule(types[0].shape, a), types[0].dtype),
             lambda xs, a, rule=_rule: T.transform.reshape(
                 xs[0], rule(tuple(int(d) for d in xs[0].shape), a)),
             "injective")
