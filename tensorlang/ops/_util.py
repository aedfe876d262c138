"""Helpers shared by the operator modules: constant extents, axis normalisation, broadcasting,
argument checks with messages that name the operator and the tensor."""
from __future__ import annotations

from typing import Sequence

from .. import dtype as dt
from ..errors import DTypeError, ShapeError, UserError
from ..expr import IntImm, PrimExpr, convert
from ..tensor import Tensor


def const_int(e) -> int | None:
    """The Python int of a constant extent, or None when it is symbolic."""
    if isinstance(e, int) and not isinstance(e, bool):
        return e
    if isinstance(e, IntImm):
        return e.value
    return None


def shape_str(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_tensor(op: str, name: str, t) -> Tensor:
    if not isinstance(t, Tensor):
        raise UserError(f"{op}: {name} must be a tensor (tl.placeholder / tl.compute), got "
                        f"{type(t).__name__}")
    return t


def check_ndim(op: str, name: str, t: Tensor, ndim: int, layout: str = "") -> None:
    if t.ndim != ndim:
        what = f" ({layout})" if layout else ""
        raise ShapeError(f"{op}: {name} {t.name} must have {ndim} dimensions{what}, got "
                         f"{t.ndim} with shape {shape_str(t.shape)}")


def check_float(op: str, name: str, t: Tensor) -> None:
    if not dt.is_float(t.dtype):
        raise DTypeError(f"{op}: {name} {t.name} has dtype {t.dtype}, but {op} needs a "
                         f"floating-point tensor; cast it first (ops.elemwise.cast)")


def check_same_dtype(op: str, tensors: Sequence[Tensor]) -> str:
    first = tensors[0]
    for t in tensors[1:]:
        if t.dtype != first.dtype:
            raise DTypeError(f"{op}: tensors {first.name} ({first.dtype}) and {t.name} "
                             f"({t.dtype}) must have the same dtype")
    return first.dtype


def dims_differ(a, b) -> bool:
    """Whether two extents are known to differ (symbolic extents are trusted to agree)."""
    ca, cb = const_int(a), const_int(b)
    return ca is not None and cb is not None and ca != cb


def normalize_axis(op: str, axis: int, ndim: int, name: str = "") -> int:
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise UserError(f"{op}: axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        who = f" of {name}" if name else ""
        raise ShapeError(f"{op}: axis {axis} is out of range for the {ndim} dimensions{who}")
    return axis + ndim if axis < 0 else axis


def normalize_axes(op: str, axis, ndim: int, name: str = "") -> list[int]:
    """``None`` -> every axis; an int or a sequence -> sorted, distinct, non-negative axes."""
    if axis is None:
        return list(range(ndim))
    axes = [axis] if isinstance(axis, int) else list(axis)
    out = [normalize_axis(op, a, ndim, name) for a in axes]
    if len(set(out)) != len(out):
        raise ShapeError(f"{op}: axis {tuple(axes)} repeats an axis")
    return sorted(out)


def broadcast_shape(op: str, shapes: Sequence[tuple], names: Sequence[str]) -> tuple:
    """NumPy broadcasting of several shapes (a constant 1 stretches; symbolic extents must
    agree with each other)."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for d in range(ndim):
        chosen = None
        for shape, name in zip(shapes, names):
            pos = d - (ndim - len(shape))
            if pos < 0:
                continue
            e = convert(shape[pos])
            if const_int(e) == 1:
                if chosen is None:
                    chosen = e
                continue
            if chosen is None or const_int(chosen) == 1:
                chosen = e
            elif dims_differ(chosen, e):
                pretty = ", ".join(f"{n} {shape_str(s)}" for s, n in zip(shapes, names))
                raise ShapeError(f"{op}: shapes cannot be broadcast together: {pretty} "
                                 f"(dimension {d} of the result)")
        out.append(chosen)
    return tuple(out)


def broadcast_index(t: Tensor, out_ndim: int, indices) -> PrimExpr:
    """Read ``t`` at the output index, with NumPy broadcasting (stretched dims read 0)."""
    lead = out_ndim - t.ndim
    idx = []
    for d, extent in enumerate(t.shape):
        idx.append(0 if const_int(extent) == 1 else indices[lead + d])
    return t(*idx)


def to_pair(op: str, name: str, value, n: int = 2) -> tuple:
    """``3`` -> ``(3, 3)``; a tuple of ``n`` is checked and kept."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise UserError(f"{op}: {name} must be an int or {n} ints, got {tuple(value)}")
        return tuple(value)
    return (value,) * n


def padding_4(op: str, padding) -> tuple:
    """``p``, ``(ph, pw)`` or ``(top, left, bottom, right)`` -> ``(top, left, bottom, right)``."""
    if isinstance(padding, (list, tuple)):
        if len(padding) == 2:
            return (padding[0], padding[1], padding[0], padding[1])
        if len(padding) == 4:
            return tuple(padding)
        raise UserError(f"{op}: padding must be an int, (pad_h, pad_w) or "
                        f"(top, left, bottom, right), got {tuple(padding)}")
    return (padding,) * 4


def check_positive(op: str, name: str, values) -> None:
    for v in values:
        c = const_int(v)
        if c is not None and c <= 0:
            raise UserError(f"{op}: {name} must be positive, got {tuple(values)}")


def check_non_negative(op: str, name: str, values) -> None:
    for v in values:
        c = const_int(v)
        if c is not None and c < 0:
            raise UserError(f"{op}: {name} must not be negative, got {tuple(values)}")


def fold_add(a, b) -> PrimExpr:
    """``a + b`` for extents, folded to a constant when both are constants."""
    ca, cb = const_int(a), const_int(b)
    if ca is not None and cb is not None:
        return convert(ca + cb)
    if ca == 0:
        return convert(b)
    if cb == 0:
        return convert(a)
    return convert(a) + b


def fold_mul(a, b) -> PrimExpr:
    """``a * b`` for extents, folded to a constant when both are constants."""
    ca, cb = const_int(a), const_int(b)
    if ca is not None and cb is not None:
        return convert(ca * cb)
    if ca == 1:
        return convert(b)
    if cb == 1:
        return convert(a)
    return convert(a) * b


def product(shape) -> PrimExpr:
    """The number of elements of ``shape`` (a constant when the extents are)."""
    total = convert(1)
    for s in shape:
        total = fold_mul(total, s)
    return total
