"""ATen converters of the PyTorch frontend: elementwise math with PyTorch's type promotion,
views and layout, indexing, reductions and tensor creation. Each converter gets the FX node's
arguments with tensors already converted (graph nodes) and sizes evaluated (ints)."""
from __future__ import annotations

import math

import numpy as np

from tensorlang.errors import UnsupportedOpError, UserError

from ..ir import Constant, Expr, TupleGetItem
from .torch import converter, numpy_dtype

# -- helpers ------------------------------------------------------------------------------------


def cast(ctx, x, dtype: str):
    """``x`` in ``dtype``: a graph node cast when needed, a Python number as a 0-d Constant."""
    if isinstance(x, Expr):
        return x if x.type.dtype == dtype else ctx.call("cast", (x,), dtype=dtype)
    if isinstance(x, bool) and dtype != "bool":
        x = int(x)
    return ctx.scalar(x, dtype)


def out_dtype(ctx, index=None) -> str:
    return ctx.out_type(index).dtype


def promoted(ctx, *operands) -> str:
    """PyTorch's result dtype of ``operands`` (graph nodes and Python numbers)."""
    import torch
    samples = []
    for x in operands:
        if isinstance(x, Expr):
            samples.append(torch.zeros([1] * x.type.ndim if x.type.ndim else [],
                                       dtype=getattr(torch, x.type.dtype)))
        else:
            samples.append(x)
    dtype = samples[0] if not isinstance(samples[0], torch.Tensor) else samples[0].dtype
    result = torch.result_type(samples[0], samples[1]) if len(samples) > 1 else dtype
    for s in samples[2:]:
        result = torch.result_type(torch.zeros([], dtype=result), s)
    return numpy_dtype(result)


def axis(dim: int, ndim: int) -> int:
    ndim = max(ndim, 1)
    if not -ndim <= dim < ndim:
        raise UserError(f"dim {dim} is out of range for rank {ndim}")
    return dim % ndim


def axes(dims, ndim: int):
    """Normalised reduction axes; None (all) for None or an empty list."""
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return None
    dims = [dims] if isinstance(dims, int) else dims
    return tuple(sorted({axis(d, ndim) for d in dims}))


def reshape(ctx, x, shape):
    shape = tuple(int(d) for d in shape)
    if -1 in shape:
        known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
        shape = tuple(x.type.size // max(known, 1) if d == -1 else d for d in shape)
    return x if shape == x.type.shape else ctx.call("reshape", (x,), newshape=shape)


def is_float(dtype: str) -> bool:
    return dtype in ("float16", "float32", "float64", "bfloat16")


# -- elementwise: binary ------------------------------------------------------------------------

def _scaled(ctx, x, alpha, dtype):
    return x if alpha == 1 else ctx.call("multiply", (cast(ctx, x, dtype), cast(ctx, alpha,
                                                                                   dtype)))


def _arith(op):
    def convert(ctx, a, b, alpha=1):
        dtype = out_dtype(ctx)
        a, b = cast(ctx, a, dtype), _scaled(ctx, cast(ctx, b, dtype), alpha, dtype)
        return ctx.call(op, (a, b))
    return convert


converter("aten.add.Tensor", "aten.add.Scalar")(_arith("add"))
converter("aten.sub.Tensor", "aten.sub.Scalar")(_arith("subtract"))
converter("aten.mul.Tensor", "aten.mul.Scalar")(_arith("multiply"))
converter("aten.maximum.default")(_arith("maximum"))
converter("aten.minimum.default")(_arith("minimum"))


@converter("aten.rsub.Tensor", "aten.rsub.Scalar")
def _rsub(ctx, a, b, alpha=1):
    return _arith("subtract")(ctx, b, a, alpha)


def _floor_divide(ctx, a, b, dtype):
    if is_float(dtype):
        return ctx.call("floor", (ctx.call("divide", (a, b)),))
    # exact division of a - (a mod b), the floored remainder, is the floored quotient
    return ctx.call("divide", (ctx.call("subtract", (a, ctx.call("mod", (a, b)))), b))


def _trunc(ctx, x):
    zero = ctx.scalar(0, x.type.dtype)
    return ctx.call("where", (ctx.call("less", (x, zero)), ctx.call("ceil", (x,)),
                              ctx.call("floor", (x,))))


@converter("aten.div.Tensor", "aten.div.Scalar", "aten.div.Tensor_mode", "aten.div.Scalar_mode",
           "aten.floor_divide.default", "aten.true_divide.Tensor")
def _div(ctx, a, b, rounding_mode=None):
    if ctx.op_name == "aten.floor_divide.default":
        rounding_mode = "floor"
    dtype = out_dtype(ctx)
    a, b = cast(ctx, a, dtype), cast(ctx, b, dtype)
    if rounding_mode == "floor":
        return _floor_divide(ctx, a, b, dtype)
    if rounding_mode == "trunc" and is_float(dtype):
        return _trunc(ctx, ctx.call("divide", (a, b)))
    if rounding_mode not in (None, "trunc"):
        raise UserError(f"unknown rounding_mode {rounding_mode!r}")
    return ctx.call("divide", (a, b))  # integer division truncates


@converter("aten.remainder.Tensor", "aten.remainder.Scalar", "aten.remainder.Scalar_Tensor",
           "aten.fmod.Tensor", "aten.fmod.Scalar")
def _remainder(ctx, a, b):
    dtype = out_dtype(ctx)
    fmod = int(ctx.op_name.startswith("aten.fmod"))
    return ctx.call("mod", (cast(ctx, a, dtype), cast(ctx, b, dtype)), fmod=fmod)


@converter("aten.pow.Tensor_Tensor", "aten.pow.Tensor_Scalar", "aten.pow.Scalar")
def _pow(ctx, a, b):
    dtype = out_dtype(ctx)
    if not isinstance(b, Expr) and float(b) == int(b) and 1 <= int(b) <= 4:
        a = cast(ctx, a, dtype)
        out = a
        for _ in range(int(b) - 1):
            out = ctx.call("multiply", (out, a))
        return out
    if not isinstance(b, Expr) and float(b) == 0.5 and is_float(dtype):
        return ctx.call("sqrt", (cast(ctx, a, dtype),))
    work = dtype if is_float(dtype) else "float64"
    out = ctx.call("pow", (cast(ctx, a, work), cast(ctx, b, work)))
    return out if work == dtype else ctx.call("round", (out,))


_COMPARE = {"eq": "equal", "lt": "less", "le": "less_equal", "gt": "greater",
            "ge": "greater_equal", "ne": "equal"}


def _compare(name):
    def convert(ctx, a, b):
        dtype = promoted(ctx, a, b)
        out = ctx.call(_COMPARE[name], (cast(ctx, a, dtype), cast(ctx, b, dtype)))
        return ctx.call("logical_not", (out,)) if name == "ne" else out
    return convert


for _name in _COMPARE:
    converter(f"aten.{_name}.Tensor", f"aten.{_name}.Scalar")(_compare(_name))


def _logical(op):
    def convert(ctx, a, b):
        return ctx.call(op, (_truth(ctx, a), _truth(ctx, b)))
    return convert


def _truth(ctx, x):
    if isinstance(x, Expr) and x.type.dtype == "bool":
        return x
    if not isinstance(x, Expr):
        return ctx.scalar(bool(x), "bool")
    return ctx.call("logical_not", (ctx.call("equal", (x, ctx.scalar(0, x.type.dtype))),))


for _name in ("and", "or", "xor"):
    converter(f"aten.logical_{_name}.default")(_logical(f"logical_{_name}"))


def _bitwise(name):
    def convert(ctx, a, b):
        dtype = out_dtype(ctx)
        op = f"logical_{name}" if dtype == "bool" else f"bitwise_{name}"
        return ctx.call(op, (cast(ctx, a, dtype), cast(ctx, b, dtype)))
    return convert


for _name in ("and", "or", "xor"):
    converter(f"aten.bitwise_{_name}.Tensor", f"aten.bitwise_{_name}.Scalar")(_bitwise(_name))


@converter("aten.where.self", "aten.where.ScalarSelf", "aten.where.ScalarOther",
           "aten.where.Scalar")
def _where(ctx, cond, a, b):
    dtype = out_dtype(ctx)
    return ctx.call("where", (_truth(ctx, cond), cast(ctx, a, dtype), cast(ctx, b, dtype)))


# -- elementwise: unary -------------------------------------------------------------------------

# aten name -> graph op, for ops computed in the result's dtype
_UNARY = {"abs": "abs", "neg": "neg", "exp": "exp", "log": "log", "sqrt": "sqrt",
          "reciprocal": "reciprocal", "sigmoid": "sigmoid", "tanh": "tanh", "erf": "erf",
          "sin": "sin", "cos": "cos", "tan": "tan", "asin": "asin", "acos": "acos",
          "atan": "atan", "sinh": "sinh", "cosh": "cosh", "asinh": "asinh", "acosh": "acosh",
          "atanh": "atanh", "floor": "floor", "ceil": "ceil", "round": "round", "sign": "sign",
          "relu": "relu"}


def _unary(op):
    def convert(ctx, x):
        return ctx.call(op, (cast(ctx, x, out_dtype(ctx)),))
    return convert


for _name, _op in _UNARY.items():
    converter(f"aten.{_name}.default")(_unary(_op))


@converter("aten.rsqrt.default")
def _rsqrt(ctx, x):
    return ctx.call("reciprocal", (ctx.call("sqrt", (cast(ctx, x, out_dtype(ctx)),)),))


@converter("aten.trunc.default")
def _trunc_op(ctx, x):
    return _trunc(ctx, x) if is_float(x.type.dtype) else x


@converter("aten.log1p.default", "aten.expm1.default", "aten.exp2.default", "aten.log2.default",
           "aten.log10.default", "aten.square.default")
def _math(ctx, x):
    dtype = out_dtype(ctx)
    x = cast(ctx, x, dtype)
    kind = ctx.op_name.split(".")[1]
    one = ctx.scalar(1, dtype)
    if kind == "log1p":
        return ctx.call("log", (ctx.call("add", (x, one)),))
    if kind == "expm1":
        return ctx.call("subtract", (ctx.call("exp", (x,)), one))
    if kind == "exp2":
        return ctx.call("pow", (ctx.scalar(2, dtype), x))
    if kind == "square":
        return ctx.call("multiply", (x, x))
    base = {"log2": math.log(2.0), "log10": math.log(10.0)}[kind]
    return ctx.call("divide", (ctx.call("log", (x,)), ctx.scalar(base, dtype)))


@converter("aten.logical_not.default", "aten.bitwise_not.default")
def _not(ctx, x):
    if ctx.op_name == "aten.bitwise_not.default" and x.type.dtype != "bool":
        return ctx.call("bitwise_not", (x,))
    return ctx.call("logical_not", (_truth(ctx, x),))


@converter("aten.isnan.default", "aten.isinf.default")
def _predicate(ctx, x):
    if not is_float(x.type.dtype):
        return Constant(f"{ctx.name}_false", np.zeros(x.type.shape, bool))
    return ctx.call(ctx.op_name.split(".")[1], (x,))


@converter("aten.clamp.default", "aten.clamp_min.default", "aten.clamp_max.default",
           "aten.clamp.Tensor", "aten.clamp_min.Tensor", "aten.clamp_max.Tensor")
def _clamp(ctx, x, low=None, high=None):
    kind = ctx.op_name.split(".")[1]
    if kind == "clamp_max":
        low, high = None, low
    dtype = out_dtype(ctx)
    x = cast(ctx, x, dtype)
    if isinstance(low, Expr) or isinstance(high, Expr):
        if low is not None:
            x = ctx.call("maximum", (x, cast(ctx, low, dtype)))
        if high is not None:
            x = ctx.call("minimum", (x, cast(ctx, high, dtype)))
        return x
    return ctx.call("clip", (x,), min=low, max=high)


# -- views and layout ---------------------------------------------------------------------------

@converter("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default",
           "aten.view_copy.default")
def _view(ctx, x, shape):
    return reshape(ctx, x, shape)


@converter("aten.permute.default", "aten.permute_copy.default")
def _permute(ctx, x, dims):
    perm = tuple(axis(d, x.type.ndim) for d in dims)
    return x if perm == tuple(range(x.type.ndim)) else ctx.call("transpose", (x,), axes=perm)


@converter("aten.transpose.int", "aten.t.default", "aten.numpy_T.default")
def _transpose(ctx, x, dim0=0, dim1=1):
    perm = list(range(x.type.ndim))
    if ctx.op_name == "aten.numpy_T.default":
        return _permute(ctx, x, perm[::-1])
    if x.type.ndim < 2:  # t() of a vector
        return x
    a, b = axis(dim0, x.type.ndim), axis(dim1, x.type.ndim)
    perm[a], perm[b] = perm[b], perm[a]
    return _permute(ctx, x, perm)


@converter("aten.expand.default", "aten.expand_copy.default")
def _expand(ctx, x, sizes, implicit=False):
    lead = len(sizes) - x.type.ndim
    shape = tuple(x.type.shape[i - lead] if s == -1 else int(s) for i, s in enumerate(sizes))
    return x if shape == x.type.shape else ctx.call("broadcast_to", (x,), shape=shape)


@converter("aten.unsqueeze.default", "aten.unsqueeze_copy.default")
def _unsqueeze(ctx, x, dim):
    return ctx.call("unsqueeze", (x,), axes=(axis(dim, x.type.ndim + 1),))


@converter("aten.squeeze.default", "aten.squeeze.dim", "aten.squeeze.dims",
           "aten.squeeze_copy.dims", "aten.squeeze_copy.dim")
def _squeeze(ctx, x, dims=None):
    shape = x.type.shape
    dims = range(len(shape)) if dims is None else [dims] if isinstance(dims, int) else dims
    picked = {axis(d, len(shape)) for d in dims} if shape else set()
    new = tuple(d for i, d in enumerate(shape) if not (i in picked and d == 1))
    return reshape(ctx, x, new)


@converter("aten.clone.default", "aten.alias.default", "aten.detach.default",
           "aten.lift_fresh_copy.default", "aten.contiguous.default", "aten._to_copy.default",
           "aten.to.dtype", "aten.copy.default", "aten._to_dim_order_copy.default",
           "aten.dropout.default", "aten.alias_copy.default")
def _identity(ctx, x, *args, **kwargs):
    if ctx.op_name == "aten.copy.default":  # copy(dst, src): src in dst's shape and dtype
        src = args[0]
        if src.type.shape != x.type.shape:
            src = ctx.call("broadcast_to", (src,), shape=x.type.shape)
        return cast(ctx, src, x.type.dtype)
    return cast(ctx, x, out_dtype(ctx))


@converter("aten.cat.default", "aten.concat.default")
def _cat(ctx, tensors, dim=0):
    dtype = out_dtype(ctx)
    # PyTorch still accepts 1-d empty tensors next to tensors of any rank
    parts = [cast(ctx, t, dtype) for t in tensors if t.type.shape != (0,)]
    if len(parts) == 1:
        return parts[0]
    return ctx.call("concat", parts, axis=axis(dim, parts[0].type.ndim))


def split(ctx, x, sizes, dim):
    dim = axis(dim, x.type.ndim)
    if len(sizes) == 1:
        return [x]
    node = ctx.call("split", (x,), axis=dim, sizes=tuple(int(s) for s in sizes))
    return [TupleGetItem(node, i) for i in range(len(sizes))]


@converter("aten.split_with_sizes.default", "aten.split_with_sizes_copy.default")
def _split_with_sizes(ctx, x, sizes, dim=0):
    return split(ctx, x, sizes, dim)


@converter("aten.split.Tensor", "aten.split_copy.Tensor")
def _split(ctx, x, size, dim=0):
    n = x.type.shape[axis(dim, x.type.ndim)]
    sizes = [min(size, n - s) for s in range(0, n, size)] or [0]
    return split(ctx, x, sizes, dim)


@converter("aten.chunk.default")
def _chunk(ctx, x, chunks, dim=0):
    n = x.type.shape[axis(dim, x.type.ndim)]
    return _split(ctx, x, -(-n // chunks), dim)


@converter("aten.unbind.int", "aten.unbind_copy.int")
def _unbind(ctx, x, dim=0):
    dim = axis(dim, x.type.ndim)
    parts = split(ctx, x, [1] * x.type.shape[dim], dim)
    shape = x.type.shape[:dim] + x.type.shape[dim + 1:]
    return [reshape(ctx, p, shape) for p in parts]


def slice_axis(ctx, x, dim, start, end, step=1):
    """``x[..., start:end:step, ...]`` along ``dim`` (Python's slice rules)."""
    shape = list(x.type.shape)
    start, end, step = slice(start, end, step).indices(shape[dim])
    n = len(range(start, end, step))
    if step == 1 and start == 0 and n == shape[dim]:
        return x
    begins, steps = [0] * len(shape), [1] * len(shape)
    begins[dim], steps[dim], shape[dim] = (start if n else 0), step, n
    return ctx.call("slice", (x,), begins=tuple(begins), steps=tuple(steps), shape=tuple(shape))


@converter("aten.slice.Tensor", "aten.slice_copy.Tensor")
def _slice(ctx, x, dim=0, start=None, end=None, step=1):
    return slice_axis(ctx, x, axis(dim, x.type.ndim), start, end, step)


@converter("aten.select.int", "aten.select_copy.int")
def _select(ctx, x, dim, index):
    dim = axis(dim, x.type.ndim)
    n = x.type.shape[dim]
    if not -n <= index < n:
        raise UserError(f"index {index} is out of range for dim {dim} of size {n}")
    index %= n
    part = slice_axis(ctx, x, dim, index, index + 1)
    return reshape(ctx, part, x.type.shape[:dim] + x.type.shape[dim + 1:])


@converter("aten.flip.default")
def _flip(ctx, x, dims):
    for d in dims:
        x = slice_axis(ctx, x, axis(d, x.type.ndim), None, None, -1)
    return x


@converter("aten.index_select.default")
def _index_select(ctx, x, dim, index):
    if not x.type.ndim:
        return x
    return ctx.call("gather", (x, reshape(ctx, index, (-1,))), axis=axis(dim, x.type.ndim))


@converter("aten.embedding.default")
def _embedding(ctx, weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    return ctx.call("gather", (weight, indices), axis=0)


@converter("aten.index.Tensor")
def _index(ctx, x, indices):
    picked = [(i, t) for i, t in enumerate(indices) if t is not None]
    if len(picked) != 1 or picked[0][1].type.dtype == "bool":
        raise UnsupportedOpError("indexing with more than one index tensor, or a boolean "
                                 "mask, is not supported")
    dim, index = picked[0]
    return ctx.call("gather", (x, index), axis=dim)


@converter("aten.gather.default")
def _gather(ctx, x, dim, index, sparse_grad=False):
    return ctx.call("gather_elements", (x, index), axis=axis(dim, x.type.ndim))


@converter("aten.constant_pad_nd.default")
def _pad(ctx, x, pad, value=0):
    ndim = x.type.ndim
    begins, ends = [0] * ndim, [0] * ndim
    for k in range(len(pad) // 2):
        begins[ndim - 1 - k], ends[ndim - 1 - k] = int(pad[2 * k]), int(pad[2 * k + 1])
    return ctx.call("pad", (x,), pads=tuple(begins + ends), value=value)


@converter("aten.repeat.default")
def _repeat(ctx, x, repeats):
    x = reshape(ctx, x, (1,) * (len(repeats) - x.type.ndim) + x.type.shape)
    return ctx.call("tile", (x,), repeats=tuple(int(r) for r in repeats))


@converter("aten.tril.default", "aten.triu.default")
def _tri(ctx, x, diagonal=0):
    return ctx.call("trilu", (x,), k=int(diagonal), upper=int(ctx.op_name == "aten.triu.default"))


@converter("aten.cumsum.default")
def _cumsum(ctx, x, dim, dtype=None):
    return ctx.call("cumsum", (cast(ctx, x, out_dtype(ctx)),), axis=axis(dim, x.type.ndim))


# -- reductions ---------------------------------------------------------------------------------

def _reduce(op):
    def convert(ctx, x, dim=None, keepdim=False, dtype=None):
        if ctx.op_name.endswith(".default") and not isinstance(dim, (list, tuple, int)):
            dim = None
        x = cast(ctx, x, out_dtype(ctx))
        return ctx.call(op, (x,), axes=axes(dim, x.type.ndim), keepdims=bool(keepdim))
    return convert


converter("aten.sum.dim_IntList", "aten.sum.default")(_reduce("reduce_sum"))
converter("aten.mean.dim", "aten.mean.default")(_reduce("reduce_mean"))
converter("aten.amax.default", "aten.max.default")(_reduce("reduce_max"))
converter("aten.amin.default", "aten.min.default")(_reduce("reduce_min"))
converter("aten.prod.dim_int", "aten.prod.default")(_reduce("reduce_prod"))


@converter("aten.max.dim", "aten.min.dim")
def _max_dim(ctx, x, dim, keepdim=False):
    kind = ctx.op_name.split(".")[1]
    dim = axis(dim, x.type.ndim)
    value = ctx.call(f"reduce_{kind}", (x,), axes=(dim,), keepdims=bool(keepdim))
    index = ctx.call(f"arg{kind}", (x,), axis=dim, keepdims=int(bool(keepdim)))
    return [value, index]


@converter("aten.argmax.default", "aten.argmin.default")
def _argmax(ctx, x, dim=None, keepdim=False):
    op = ctx.op_name.split(".")[1]
    if dim is None:
        out = ctx.call(op, (reshape(ctx, x, (-1,)),), axis=0, keepdims=0)
        return reshape(ctx, out, (1,) * x.type.ndim) if keepdim else out
    return ctx.call(op, (x,), axis=axis(dim, x.type.ndim), keepdims=int(bool(keepdim)))


@converter("aten.any.dim", "aten.any.dims", "aten.any.default", "aten.all.dim",
           "aten.all.dims", "aten.all.default")
def _any(ctx, x, dim=None, keepdim=False):
    as_int = ctx.call("cast", (_truth(ctx, x),), dtype="int32")
    op = "reduce_max" if ctx.op_name.startswith("aten.any") else "reduce_min"
    out = ctx.call(op, (as_int,), axes=axes(dim, x.type.ndim), keepdims=bool(keepdim))
    return ctx.call("cast", (out,), dtype="bool")


@converter("aten.var.correction", "aten.var.dim", "aten.std.correction", "aten.std.dim",
           "aten.var_mean.correction")
def _var(ctx, x, dim=None, unbiased=None, keepdim=False, correction=None):
    if ctx.op_name.endswith(".dim"):
        correction = 1 if unbiased is None or unbiased else 0
    correction = 1 if correction is None else correction
    dtype = x.type.dtype
    reduced = axes(dim, x.type.ndim)
    count = int(np.prod([x.type.shape[a] for a in (reduced or range(x.type.ndim))]))
    mean = ctx.call("reduce_mean", (x,), axes=reduced, keepdims=True)
    dev = ctx.call("subtract", (x, mean))
    total = ctx.call("reduce_sum", (ctx.call("multiply", (dev, dev)),), axes=reduced,
                     keepdims=bool(keepdim))
    var = ctx.call("divide", (total, ctx.scalar(max(count - correction, 0), dtype)))
    if ctx.op_name.startswith("aten.std"):
        return ctx.call("sqrt", (var,))
    if ctx.op_name.startswith("aten.var_mean"):
        return [var, mean if keepdim else reshape(ctx, mean, var.type.shape)]
    return var


# -- creation (left in the graph when a size is symbolic or the tensor is big) -------------------

def _filled(ctx, value):
    ty = ctx.out_type()
    scalar = cast(ctx, value, ty.dtype) if not isinstance(value, Expr) else \
        reshape(ctx, cast(ctx, value, ty.dtype), ())
    if ty.size <= 1 << 12:
        if isinstance(scalar, Constant):
            return Constant(ctx.name, np.broadcast_to(scalar.value, ty.shape))
    return ctx.call("broadcast_to", (scalar,), shape=ty.shape)


@converter("aten.full.default", "aten.full_like.default", "aten.zeros.default",
           "aten.ones.default", "aten.zeros_like.default", "aten.ones_like.default",
           "aten.empty.memory_format", "aten.empty_like.default", "aten.new_full.default",
           "aten.new_zeros.default", "aten.new_ones.default", "aten.empty_strided.default",
           "aten.new_empty.default", "aten.scalar_tensor.default", "aten.fill.Scalar")
def _full(ctx, *args, **kwargs):
    kind = ctx.op_name.split(".")[1]
    if kind in ("full", "full_like", "new_full", "fill"):
        value = args[1]
    elif kind == "scalar_tensor":
        value = args[0]
    else:
        value = 1 if "ones" in kind else 0
    return _filled(ctx, value)


@converter("aten.arange.start_step", "aten.arange.default", "aten.arange.start")
def _arange(ctx, *args, **kwargs):
    import torch
    with torch.no_grad():
        value = ctx.node.target(*args, **{k: v for k, v in kwargs.items()})
    from .torch import to_numpy
    return Constant(ctx.name, to_numpy(value))
