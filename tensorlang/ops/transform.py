"""Layout and indexing operators: transpose, reshape, concatenate, split, strided_slice, pad,
take, expand_dims, squeeze, broadcast_to, flip.

Each is a ``tl.compute`` whose body only re-indexes its input, so a consumer can inline it
(``s[T].compute_inline()``) or compute it at one of its loops.

Example::

    import tensorlang as tl
    from tensorlang import ops
    A = tl.placeholder((2, 3, 4), name="A")
    B = ops.transform.transpose(A, (2, 0, 1))                # shape (4, 2, 3)
    C = ops.transform.pad(A, (0, 1, 1), (0, 1, 1), 0.0)       # shape (2, 5, 6)
"""
from __future__ import annotations

from typing import Sequence

from .. import dtype as dt
from .. import math as tm
from ..errors import DTypeError, ShapeError, UserError
from ..expr import Max, Min, PrimExpr, binary, const, convert
from ..tensor import Tensor, compute
from ._util import (broadcast_shape, check_non_negative, check_same_dtype, check_tensor,
                    const_int, dims_differ, fold_add, normalize_axes, normalize_axis, product,
                    shape_str)


def transpose(a: Tensor, axes: Sequence[int] | None = None, name: str = "T_transpose") -> Tensor:
    """Permute the dimensions: output dimension ``d`` is input dimension ``axes[d]``
    (reversed when ``axes`` is None), like ``np.transpose``.

    Example: ``B = ops.transform.transpose(A, (1, 0))``."""
    check_tensor("transpose", "a", a)
    if axes is None:
        axes = list(range(a.ndim))[::-1]
    axes = [normalize_axis("transpose", x, a.ndim, a.name) for x in axes]
    if sorted(axes) != list(range(a.ndim)):
        raise ShapeError(f"transpose: axes {tuple(axes)} are not a permutation of the "
                         f"{a.ndim} dimensions of {a.name}")
    shape = [a.shape[x] for x in axes]

    def body(*i):
        idx = [None] * a.ndim
        for out_dim, in_dim in enumerate(axes):
            idx[in_dim] = i[out_dim]
        return a(*idx)

    return compute(shape, body, name=name, tag="injective")


def _num_elements(shape) -> int | None:
    total = 1
    for s in shape:
        c = const_int(s)
        if c is None:
            return None
        total *= c
    return total


def reshape(a: Tensor, newshape: Sequence, name: str = "T_reshape") -> Tensor:
    """The same elements in row-major order with a new shape; one entry may be -1.

    Example: ``B = ops.transform.reshape(A, (4, -1))``."""
    check_tensor("reshape", "a", a)
    newshape = [newshape] if isinstance(newshape, (int, PrimExpr)) else list(newshape)
    unknown = [d for d, s in enumerate(newshape) if const_int(s) == -1]
    if len(unknown) > 1:
        raise ShapeError(f"reshape: newshape {shape_str(newshape)} has more than one -1")
    total_in = _num_elements(a.shape)
    if unknown:
        known = [s for d, s in enumerate(newshape) if d != unknown[0]]
        known_total = _num_elements(known)
        if total_in is not None and known_total is not None:
            if known_total == 0 or total_in % known_total:
                raise ShapeError(f"reshape: cannot reshape {a.name} of shape "
                                 f"{shape_str(a.shape)} ({total_in} elements) into "
                                 f"{shape_str(newshape)}")
            newshape[unknown[0]] = total_in // known_total
        else:
            newshape[unknown[0]] = tm.floordiv(product(a.shape), product(known))
    for s in newshape:
        c = const_int(s)
        if c is not None and c < 0:
            raise ShapeError(f"reshape: newshape {shape_str(newshape)} has a negative extent")
    total_out = _num_elements(newshape)
    if total_in is not None and total_out is not None and total_in != total_out:
        raise ShapeError(f"reshape: cannot reshape {a.name} of shape {shape_str(a.shape)} "
                         f"({total_in} elements) into {shape_str(newshape)} "
                         f"({total_out} elements)")

    def body(*i):
        return a(*unravel(ravel(i, newshape), a.shape))

    return compute(newshape, body, name=name, tag="injective")


def ravel(indices, shape) -> PrimExpr:
    """Row-major flat offset of ``indices`` in ``shape``."""
    if not indices:
        return convert(0)
    flat = convert(indices[0])
    for idx, extent in zip(indices[1:], shape[1:]):
        flat = flat * extent + idx
    return flat


def unravel(flat, shape) -> list:
    """Row-major indices of the flat offset ``flat`` in ``shape`` (floordiv / floormod)."""
    idx = []
    for extent in reversed(shape[1:]):
        idx.append(tm.floormod(flat, extent) if const_int(extent) != 1 else convert(0))
        flat = tm.floordiv(flat, extent) if const_int(extent) != 1 else flat
    if shape:
        idx.append(flat)
    return idx[::-1]


def concatenate(tensors: Sequence[Tensor], axis: int = 0,
                name: str = "T_concat") -> Tensor:
    """Join tensors along ``axis`` (their other extents must agree), like ``np.concatenate``.

    Example: ``C = ops.transform.concatenate([A, B], axis=1)``."""
    tensors = list(tensors)
    if not tensors:
        raise UserError("concatenate: needs at least one tensor")
    for pos, t in enumerate(tensors):
        check_tensor("concatenate", f"tensors[{pos}]", t)
    first = tensors[0]
    axis = normalize_axis("concatenate", axis, first.ndim, first.name)
    check_same_dtype("concatenate", tensors)
    for t in tensors[1:]:
        if t.ndim != first.ndim or any(dims_differ(x, y) for d, (x, y) in
                                       enumerate(zip(t.shape, first.shape)) if d != axis):
            raise ShapeError(f"concatenate: {t.name} {shape_str(t.shape)} does not fit "
                             f"{first.name} {shape_str(first.shape)} (only dimension {axis} "
                             "may differ)")
    offsets = [convert(0)]
    for t in tensors:
        offsets.append(fold_add(offsets[-1], t.shape[axis]))
    shape = list(first.shape)
    shape[axis] = offsets[-1]

    def read(t, off, i):
        idx = list(i)
        idx[axis] = i[axis] - off if const_int(off) != 0 else i[axis]
        return t(*idx)

    def body(*i):
        value = read(tensors[-1], offsets[-2], i)
        for t, off, end in reversed(list(zip(tensors[:-1], offsets[:-2], offsets[1:-1]))):
            value = tm.if_then_else(i[axis] < end, read(t, off, i), value)
        return value

    return compute(shape, body, name=name, tag="injective")


def _slice_dim(op, a, d, begin, end, step):
    """(start, extent) of a NumPy slice of dimension ``d``."""
    n = a.shape[d]
    if step == 0:
        raise ShapeError(f"{op}: stride of dimension {d} is 0")
    c = const_int(n)
    if c is not None:
        start, stop, step = slice(begin, end, step).indices(c)
        return convert(start), convert(len(range(start, stop, step)))
    if step < 0:
        raise UserError(f"{op}: a negative stride on the symbolic dimension {d} ({n}) of "
                        f"{a.name} is not supported")
    n = convert(n)

    def clamp(v, default):
        if v is None:
            return default
        v = int(v)
        if v >= 0:
            return binary(Min, convert(v), n)
        return binary(Max, n + v, convert(0))

    start, stop = clamp(begin, convert(0)), clamp(end, n)
    extent = binary(Max, tm.floordiv(stop - start + (step - 1), step), convert(0))
    return start, extent


def strided_slice(a: Tensor, begin: Sequence, end: Sequence, strides: Sequence | None = None,
                  axes: Sequence[int] | None = None, name: str = "T_strided_slice") -> Tensor:
    """``a[begin:end:strides]`` per dimension with NumPy rules (negative indices count from
    the end, out-of-range bounds clamp, negative strides walk backwards; ``None`` is open).
    ``axes`` names the dimensions ``begin``/``end``/``strides`` refer to (default: the first).

    Example: ``B = ops.transform.strided_slice(A, [1, 0], [None, 8], [1, 2])``."""
    check_tensor("strided_slice", "a", a)
    begin, end = list(begin), list(end)
    strides = [1] * len(begin) if strides is None else list(strides)
    if not len(begin) == len(end) == len(strides):
        raise UserError(f"strided_slice: begin, end and strides must have the same length, "
                        f"got {len(begin)}, {len(end)} and {len(strides)}")
    axes = list(range(len(begin))) if axes is None else \
        [normalize_axis("strided_slice", x, a.ndim, a.name) for x in axes]
    if len(axes) != len(begin) or len(axes) > a.ndim:
        raise ShapeError(f"strided_slice: {len(begin)} slice bounds for {a.name} with "
                         f"{a.ndim} dimensions (axes {tuple(axes)})")
    starts = [convert(0)] * a.ndim
    steps = [1] * a.ndim
    shape = list(a.shape)
    for d, b, e, s in zip(axes, begin, end, strides):
        starts[d], shape[d] = _slice_dim("strided_slice", a, d, b, e, int(s))
        steps[d] = int(s)

    def body(*i):
        idx = []
        for x, start, step in zip(i, starts, steps):
            v = x * step if step != 1 else x
            idx.append(v + start if const_int(start) != 0 else v)
        return a(*idx)

    return compute(shape, body, name=name, tag="injective")


def split(a: Tensor, indices_or_sections, axis: int = 0, name: str = "T_split") -> list:
    """Split ``a`` along ``axis`` into equal sections (an int that divides the extent) or at
    the given indices, like ``np.split``; returns a list of tensors.

    Example: ``B, C, D = ops.transform.split(A, 3, axis=1)``."""
    check_tensor("split", "a", a)
    axis = normalize_axis("split", axis, a.ndim, a.name)
    n = const_int(a.shape[axis])
    if isinstance(indices_or_sections, int):
        sections = indices_or_sections
        if sections <= 0:
            raise UserError(f"split: the number of sections must be positive, got {sections}")
        if n is None:
            raise UserError(f"split: {a.name} has the symbolic extent {a.shape[axis]} along "
                            f"axis {axis}; give split indices instead of a section count")
        if n % sections:
            raise ShapeError(f"split: dimension {axis} of {a.name} ({n}) does not divide into "
                             f"{sections} equal sections")
        bounds = [k * (n // sections) for k in range(sections + 1)]
    else:
        points = [int(p) for p in indices_or_sections]
        if n is None:
            raise UserError(f"split: {a.name} has the symbolic extent {a.shape[axis]} along "
                            f"axis {axis}, which split does not support")
        bounds = [0] + [min(max(p, 0), n) for p in points] + [n]
    outs = []
    for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        outs.append(strided_slice(a, [lo], [max(hi, lo)], [1], axes=[axis],
                                  name=f"{name}_{k}"))
    return outs


def pad(a: Tensor, pad_before: Sequence, pad_after: Sequence | None = None,
        pad_value=0.0, name: str = "PadInput") -> Tensor:
    """Pad each dimension with ``pad_before[d]`` elements in front and ``pad_after[d]``
    behind (``pad_after`` defaults to ``pad_before``), filled with ``pad_value``. The input is
    read only inside ``tl.if_then_else``, so no out-of-range element is ever loaded.

    Example: ``P = ops.transform.pad(A, (0, 0, 1, 1), (0, 0, 1, 1), 0.0)``."""
    check_tensor("pad", "a", a)
    pad_before = list(pad_before)
    pad_after = list(pad_before if pad_after is None else pad_after)
    if len(pad_before) != a.ndim or len(pad_after) != a.ndim:
        raise ShapeError(f"pad: {a.name} has {a.ndim} dimensions but pad_before has "
                         f"{len(pad_before)} and pad_after {len(pad_after)} entries")
    check_non_negative("pad", "pad_before", pad_before)
    check_non_negative("pad", "pad_after", pad_after)
    try:
        fill = const(pad_value, a.dtype)
    except DTypeError as err:
        raise DTypeError(f"pad: pad_value {pad_value!r} does not fit the dtype {a.dtype} of "
                         f"{a.name}") from err
    shape = []
    for n, b, e in zip(a.shape, pad_before, pad_after):
        shape.append(fold_add(fold_add(n, b), e))

    def body(*i):
        conds, idx = [], []
        for x, n, b, e in zip(i, a.shape, pad_before, pad_after):
            if const_int(b) != 0:
                conds.append(x >= b)
                idx.append(x - b)
            else:
                idx.append(x)
            if const_int(e) != 0:
                conds.append(x < fold_add(n, b))
        if not conds:
            return a(*idx)
        return tm.if_then_else(tm.all(*conds), a(*idx), fill)

    return compute(shape, body, name=name, tag="injective,pad")


def take(a: Tensor, indices: Tensor, axis: int | None = None, mode: str = "clip",
         name: str = "T_take") -> Tensor:
    """Gather ``a`` along ``axis`` at ``indices`` (an integer tensor), like ``np.take``;
    ``axis=None`` reads the flattened ``a``. Out-of-range indices are clamped (``mode="clip"``)
    or wrapped (``mode="wrap"``); ``mode="fast"`` trusts them. The output shape is
    ``a.shape[:axis] + indices.shape + a.shape[axis+1:]``.

    Example: ``E = ops.transform.take(Table, Ids, axis=0)``  (an embedding lookup)."""
    check_tensor("take", "a", a)
    check_tensor("take", "indices", indices)
    if not dt.is_int(indices.dtype):
        raise DTypeError(f"take: indices {indices.name} has dtype {indices.dtype}; it must be "
                         "an integer tensor (int32 or int64)")
    if mode not in ("clip", "wrap", "fast"):
        raise UserError(f"take: mode must be 'clip', 'wrap' or 'fast', got {mode!r}")
    flat = axis is None
    extent = product(a.shape) if flat else None
    if not flat:
        axis = normalize_axis("take", axis, a.ndim, a.name)
        extent = convert(a.shape[axis])
    k = indices.ndim

    def fix(raw):
        index_dtype = extent.dtype
        if mode == "clip":
            raw = binary(Min, binary(Max, raw, const(0, raw.dtype)), extent - 1)
        elif mode == "wrap":
            raw = tm.floormod(raw, extent)
        return raw.astype(index_dtype) if raw.dtype != index_dtype else raw

    if flat:
        def body(*i):
            return a(*unravel(fix(indices(*i)), a.shape))
        shape = list(indices.shape)
    else:
        def body(*i):
            pos = fix(indices(*i[axis:axis + k]))
            return a(*i[:axis], pos, *i[axis + k:])
        shape = list(a.shape[:axis]) + list(indices.shape) + list(a.shape[axis + 1:])
    return compute(shape, body, name=name, tag="injective")


def expand_dims(a: Tensor, axis: int, num_newaxis: int = 1,
                name: str = "T_expand_dims") -> Tensor:
    """Insert ``num_newaxis`` dimensions of extent 1 at ``axis`` (which may be ``a.ndim`` or
    negative, counted in the result). Example: ``ops.transform.expand_dims(A, 0)``."""
    check_tensor("expand_dims", "a", a)
    if num_newaxis < 0:
        raise UserError(f"expand_dims: num_newaxis must not be negative, got {num_newaxis}")
    if not -a.ndim - 1 <= axis <= a.ndim:
        raise ShapeError(f"expand_dims: axis {axis} is out of range for {a.name} with "
                         f"{a.ndim} dimensions")
    axis = axis + a.ndim + 1 if axis < 0 else axis
    shape = list(a.shape[:axis]) + [1] * num_newaxis + list(a.shape[axis:])
    return compute(shape, lambda *i: a(*i[:axis], *i[axis + num_newaxis:]), name=name,
                   tag="injective")


def squeeze(a: Tensor, axis=None, name: str = "T_squeeze") -> Tensor:
    """Remove dimensions of extent 1 (all of them, or those named by ``axis``).

    Example: ``ops.transform.squeeze(A, axis=(0, 2))``."""
    check_tensor("squeeze", "a", a)
    if axis is None:
        axes = [d for d, s in enumerate(a.shape) if const_int(s) == 1]
    else:
        axes = normalize_axes("squeeze", axis, a.ndim, a.name)
        for d in axes:
            if const_int(a.shape[d]) != 1:
                raise ShapeError(f"squeeze: dimension {d} of {a.name} has extent "
                                 f"{a.shape[d]}, not 1")
    keep = [d for d in range(a.ndim) if d not in axes]
    shape = [a.shape[d] for d in keep]

    def body(*i):
        idx = [convert(0)] * a.ndim
        for pos, d in enumerate(keep):
            idx[d] = i[pos]
        return a(*idx)

    return compute(shape, body, name=name, tag="injective")


def broadcast_to(a: Tensor, shape: Sequence, name: str = "T_broadcast_to") -> Tensor:
    """``a`` stretched to ``shape`` under NumPy broadcasting.

    Example: ``ops.transform.broadcast_to(Bias, (8, 16))``."""
    check_tensor("broadcast_to", "a", a)
    shape = [convert(s) for s in shape]
    if len(shape) < a.ndim:
        raise ShapeError(f"broadcast_to: cannot broadcast {a.name} {shape_str(a.shape)} to "
                         f"fewer dimensions {shape_str(shape)}")
    lead = len(shape) - a.ndim
    for d, n in enumerate(a.shape):
        if const_int(n) != 1 and dims_differ(n, shape[lead + d]):
            raise ShapeError(f"broadcast_to: cannot broadcast {a.name} {shape_str(a.shape)} to "
                             f"{shape_str(shape)} (dimension {d})")
    broadcast_shape("broadcast_to", [a.shape, shape], [a.name, "shape"])

    def body(*i):
        return a(*[convert(0) if const_int(n) == 1 and const_int(shape[lead + d]) != 1
                   else i[lead + d] for d, n in enumerate(a.shape)])

    return compute(shape, body, name=name, tag="broadcast")


def flip(a: Tensor, axis=0, name: str = "T_flip") -> Tensor:
    """Reverse the order of elements along ``axis`` (an int, a tuple, or None for all).

    Example: ``ops.transform.flip(A, axis=1)``."""
    check_tensor("flip", "a", a)
    axes = normalize_axes("flip", axis, a.ndim, a.name)

    def body(*i):
        return a(*[(a.shape[d] - 1 - x) if d in axes else x for d, x in enumerate(i)])

    return compute(a.shape, body, name=name, tag="injective")


__all__ = ["transpose", "reshape", "concatenate", "split", "strided_slice", "pad", "take",
           "expand_dims", "squeeze", "broadcast_to", "flip", "ravel", "unravel"]
