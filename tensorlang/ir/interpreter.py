"""A slow, exact reference interpreter of loop IR on NumPy arrays.

It lets lowering tests (GPU schedules included: thread-bound loops simply run one after the
other) compare against NumPy without a code generator. The IR is first turned into a tree of
Python closures, then run. Values are NumPy scalars of the node's dtype (vectors: 1-D arrays of
``lanes`` elements), so float32 arithmetic happens in float32 and integers wrap like the dtype.
Every buffer lives as a flat 1-D array: multi-dimensional indices (before storage flattening)
go through the buffer's shape and strides, a single index (after) is the element offset.

Example::

    >>> f = tl.lower(s, [A, B, C])
    >>> interpreter.run(f, a, b, c)        # c is written in place
"""
from __future__ import annotations

import math
import operator
from typing import Callable

import numpy as np

from .. import dtype as dt
from .. import expr as E
from ..errors import DTypeError, InternalError, ShapeError, UnsupportedOpError, UserError
from . import stmt as S

_externs: dict[str, Callable] = {}
_NUMPY_NATIVE = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                  "uint64", "float16", "float32", "float64")
_MASK = "_mask"  # env key: the lanes that are live inside a vector if_then_else branch


def register_extern(name: str, fn: Callable | None) -> Callable | None:
    """Give the extern C function ``name`` a Python implementation for the interpreter.

    ``fn`` receives the call's arguments: NumPy scalars, and for buffer data pointers (handle
    variables) the buffer's flat 1-D array, which it may write. ``None`` removes a registration.

    Example::

        >>> register_extern("my_copy", lambda dst, src, n: dst.__setitem__(slice(0, n), src[:n]))
    """
    if fn is None:
        _externs.pop(name, None)
    else:
        _externs[name] = fn
    return fn


def run(func, *arrays, **scalar_vars) -> None:
    """Run ``func`` (a PrimFunc) on NumPy arrays given in parameter order; outputs change in place.

    Scalar Var parameters may be given in place or by name; symbolic shape variables are bound
    from the arrays' shapes (a value passed by name must agree). Uninitialised allocations read
    as NaN (floats) or the dtype's extreme value (integers), so reads before writes show up.
    """
    env = _bind(func, arrays, scalar_vars)
    body = _Compiler(_is_flattened(func)).stmt(func.body)
    with np.errstate(all="ignore"):
        body(env)
    for work, original in env.pop("_copy_back", ()):
        original[...] = work


# -- binding the arguments ----------------------------------------------------------------------

def np_dtype(dtype: str) -> np.dtype:
    """The NumPy dtype of an IR dtype's element (bfloat16 / float8 through ml_dtypes)."""
    name = dt.element_of(dtype)
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes
        return np.dtype(getattr(ml_dtypes, name))


def _scalar(value, dtype: str):
    """``value`` as a NumPy scalar of ``dtype``, wrapping integers like the machine does."""
    if dt.is_int(dtype):
        bits = dt.bits(dtype)
        value = int(value) & ((1 << bits) - 1)
        if not dt.is_uint(dtype) and value >= 1 << (bits - 1):
            value -= 1 << bits
        return np_dtype(dtype).type(value)
    if dt.is_bool(dtype):
        return np.bool_(bool(value))
    return np_dtype(dtype).type(value)


def _bind(func, arrays, scalar_vars) -> dict:
    from .buffer import Buffer
    params = func.params
    env: dict = {"_copy_back": []}
    by_name = dict(scalar_vars)
    if len(arrays) > len(params):
        raise UserError(f"{func.name} takes {len(params)} arguments "
                        f"({', '.join(p.name for p in params)}), got {len(arrays)}")
    deferred = []
    for k, p in enumerate(params):
        if isinstance(p, E.Var):
            if k < len(arrays):
                value = arrays[k]
            elif p.name in by_name:
                value = by_name.pop(p.name)
            else:
                raise UserError(f"{func.name}: no value for the scalar parameter '{p.name}'")
            env[p.uid] = _scalar(value, p.dtype)
            continue
        if not isinstance(p, Buffer):
            raise InternalError(f"{func.name}: parameter {p!r} is neither a Buffer nor a Var")
        if k >= len(arrays):
            raise UserError(f"{func.name}: no array for the buffer parameter '{p.name}'")
        deferred.append(_bind_array(func.name, p, arrays[k], env, by_name))
    for check in deferred:
        check()
    if by_name:  # names matching neither a scalar parameter nor a shape variable
        raise UserError(f"{func.name} has no scalar parameter or shape variable named "
                        f"{', '.join(repr(n) for n in by_name)}")
    return env


def _bind_array(fname, buf, arr, env, by_name):
    if not isinstance(arr, np.ndarray):
        raise UserError(f"{fname}: argument '{buf.name}' must be a NumPy array, "
                        f"got {type(arr).__name__}")
    if dt.normalize(arr.dtype) != buf.dtype:
        raise DTypeError(f"{fname}: argument '{buf.name}' has dtype {arr.dtype}, "
                         f"expected {buf.dtype}")
    if arr.ndim != buf.ndim:
        raise ShapeError(f"{fname}: argument '{buf.name}' has {arr.ndim} dimensions, expected "
                         f"{buf.ndim} (shape {list(buf.shape)})")
    later = []

    def bind(expr, actual, what):
        if isinstance(expr, E.Var):
            given = by_name.pop(expr.name, None)
            if given is not None:
                env[expr.uid] = _scalar(given, expr.dtype)
            if expr.uid in env and int(env[expr.uid]) != actual:
                raise ShapeError(f"{fname}: {what} of '{buf.name}' is {actual}, but "
                                 f"{expr.name} = {int(env[expr.uid])}")
            env[expr.uid] = _scalar(actual, expr.dtype)
        else:
            later.append((expr, actual, what))

    for d, (expr, actual) in enumerate(zip(buf.shape, arr.shape)):
        bind(expr, actual, f"dimension {d}")
    item = arr.itemsize
    if buf.strides:
        if any(s % item or s <= 0 for s in arr.strides):
            raise ShapeError(f"{fname}: argument '{buf.name}' has strides {arr.strides} (bytes); "
                             f"the interpreter needs positive whole-element strides")
        for d, (expr, actual) in enumerate(zip(buf.strides, arr.strides)):
            bind(expr, actual // item, f"stride {d}")
        span = 1 + sum((n - 1) * s // item for n, s in zip(arr.shape, arr.strides)) \
            if arr.size else 0
        flat = np.lib.stride_tricks.as_strided(arr, shape=(span,), strides=(item,))
    else:
        work = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
        if work is not arr:
            env["_copy_back"].append((work, arr))
        flat = work.reshape(-1)
    if not (isinstance(buf.elem_offset, E.IntImm) and buf.elem_offset.value == 0):
        raise UnsupportedOpError(f"{fname}: the interpreter does not take parameter buffers "
                                 f"with an element offset ('{buf.name}')")
    env[buf.data.uid] = flat

    def check():
        for expr, actual, what in later:
            value = _Compiler(False).expr(expr)(env)
            if int(value) != actual:
                raise ShapeError(f"{fname}: {what} of '{buf.name}' is {actual}, expected "
                                 f"{expr} = {int(value)}")
    return check


def _is_flattened(func) -> bool:
    """Whether accesses carry one flat offset (after storage flattening).

    A single index on a buffer of rank other than one can only be flat; a function with any
    such access is flattened throughout (for rank-1 buffers the two readings coincide unless the
    buffer has strides or an element offset).
    """
    if func.attr("flattened"):
        return True
    from .functor import post_order_visit
    found = []

    def note(n):
        if isinstance(n, (E.BufferLoad, S.BufferStore)) and len(n.indices) == 1 \
                and n.buffer.ndim != 1:
            found.append(n)

    post_order_visit(func.body, note)
    return bool(found)


# -- compiling IR to closures ---------------------------------------------------------------------

def _truncdiv(a, b):
    return np.floor_divide(a - np.fmod(a, b), b)


def _nonzero_divisor(fn, e):
    def checked(a, b):
        if np.any(b == 0):
            raise UserError(f"integer division by zero in `{e}`")
        return fn(a, b)
    return checked


_INT_BINARY = {
    E.Add: np.add, E.Sub: np.subtract, E.Mul: np.multiply, E.Min: np.minimum, E.Max: np.maximum,
    E.Div: _truncdiv, E.Mod: np.fmod, E.FloorDiv: np.floor_divide, E.FloorMod: np.remainder,
    E.EQ: np.equal, E.NE: np.not_equal, E.LT: np.less, E.LE: np.less_equal,
    E.GT: np.greater, E.GE: np.greater_equal, E.And: np.logical_and, E.Or: np.logical_or,
}
_FLOAT_BINARY = {**_INT_BINARY, E.Div: np.true_divide, E.Mod: np.fmod}
# On two NumPy scalars of one dtype these give that dtype (wrapping integers), and are much
# cheaper than the ufunc calls.
_SCALAR_FAST = {
    E.Add: operator.add, E.Sub: operator.sub, E.Mul: operator.mul, E.EQ: operator.eq,
    E.NE: operator.ne, E.LT: operator.lt, E.LE: operator.le, E.GT: operator.gt,
    E.GE: operator.ge,
}


def _erf(x):
    try:
        from scipy.special import erf
    except ImportError:  # pragma: no cover - scipy is a dependency
        erf = np.vectorize(math.erf)
    return erf(x)


_INTRINSICS = {
    "exp": np.exp, "exp2": np.exp2, "log": np.log, "log2": np.log2, "log10": np.log10,
    "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x), "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "erf": _erf, "pow": np.power, "fabs": np.abs,
    "abs": np.abs, "floor": np.floor, "ceil": np.ceil, "round": np.round, "trunc": np.trunc,
    "fmod": np.fmod, "sin": np.sin, "cos": np.cos, "isnan": np.isnan, "isinf": np.isinf,
    "isfinite": np.isfinite, "likely": lambda x: x,
    # a GPU barrier: threads run one after the other here, so there is nothing to wait for
    "tl.syncthreads": lambda: 0,
}


def _converter(dtype: str):
    """A function giving a value (scalar or lanes-array) the element type of ``dtype``."""
    target = np_dtype(dtype)
    lanes = dt.lanes_of(dtype)

    def convert(v):
        if lanes > 1:
            v = np.asarray(v)
            if v.ndim == 0:
                v = np.full(lanes, v)
            return v if v.dtype == target else v.astype(target)
        if isinstance(v, np.ndarray):
            v = v[()] if v.ndim == 0 else v
        if isinstance(v, np.generic) and v.dtype == target:
            return v
        return np.asarray(v).astype(target)[()]
    return convert


class _Compiler:
    def __init__(self, flattened: bool):
        self.flattened = flattened
        self.layouts: dict[int, Callable] = {}

    # -- expressions -------------------------------------------------------------------------
    def expr(self, e) -> Callable:
        method = getattr(self, "e_" + type(e).__name__, None)
        if method is None:
            if isinstance(e, E.CmpOp) or isinstance(e, E.BinaryOp):
                return self.e_binary(e)
            raise UnsupportedOpError(f"the interpreter cannot evaluate {type(e).__name__}: `{e}`")
        return method(e)

    def e_IntImm(self, e):
        value = _scalar(e.value, e.dtype)
        return lambda env: value

    def e_FloatImm(self, e):
        value = _scalar(e.value, e.dtype)
        return lambda env: value

    def e_StringImm(self, e):
        value = e.value
        return lambda env: value

    def e_Var(self, e):
        uid, name = e.uid, e.name

        def load(env):
            try:
                return env[uid]
            except KeyError:
                raise InternalError(f"variable '{name}' has no value here (is it defined?)") \
                    from None
        return load

    def e_binary(self, e):
        a, b = self.expr(e.a), self.expr(e.b)
        table = _FLOAT_BINARY if dt.is_float(e.a.dtype) else _INT_BINARY
        fn = table[type(e)]
        if not dt.is_float(e.a.dtype) and isinstance(e, (E.Div, E.Mod, E.FloorDiv, E.FloorMod)):
            fn = _nonzero_divisor(fn, e)
        scalar = dt.lanes_of(e.dtype) == 1 and e.a.dtype == e.b.dtype
        if scalar and type(e) in _SCALAR_FAST and dt.element_of(e.a.dtype) in _NUMPY_NATIVE:
            fast = _SCALAR_FAST[type(e)]
            return lambda env: fast(a(env), b(env))
        convert = _converter(e.dtype)
        return lambda env: convert(fn(a(env), b(env)))

    def e_Not(self, e):
        a = self.expr(e.a)
        return lambda env: np.logical_not(a(env))

    def e_Select(self, e):
        c, t, f = self.expr(e.condition), self.expr(e.true_value), self.expr(e.false_value)
        convert = _converter(e.dtype)
        return lambda env: convert(np.where(c(env), t(env), f(env)))

    def e_Cast(self, e):
        value = self.expr(e.value)
        convert = _converter(e.dtype)
        return lambda env: convert(value(env))

    def e_Call(self, e):
        args = [self.expr(a) for a in e.args]
        if e.extern:
            return self.extern_call(e, args)
        if e.op == "if_then_else":
            c, t, f = args
            lanes = dt.lanes_of(e.dtype)
            convert = _converter(e.dtype)

            def if_then_else(env):
                cond = c(env)
                if np.ndim(cond) == 0:  # only the branch taken is evaluated
                    return convert(t(env) if cond else f(env))
                # Per lane: each branch runs with the lanes it does not own masked off, so
                # their loads may be out of bounds (what a masked vector load allows).
                outer = env.get(_MASK)
                cond = np.broadcast_to(cond, (lanes,))
                env[_MASK] = cond if outer is None else cond & outer
                try:
                    when_true = t(env)
                    env[_MASK] = ~cond if outer is None else ~cond & outer
                    when_false = f(env)
                finally:
                    if outer is None:
                        del env[_MASK]
                    else:
                        env[_MASK] = outer
                return convert(np.where(cond, when_true, when_false))
            return if_then_else
        fn = _INTRINSICS.get(e.op)
        if fn is None:
            raise UnsupportedOpError(f"the interpreter does not know the intrinsic '{e.op}' "
                                     f"(in `{e}`)")
        convert = _converter(e.dtype)
        if len(args) == 1:
            (a,) = args
            return lambda env: convert(fn(a(env)))
        return lambda env: convert(fn(*(a(env) for a in args)))

    def extern_call(self, e, args):
        name = e.op
        convert = None if e.dtype == "void" else _converter(e.dtype)

        def call(env):
            fn = _externs.get(name)
            if fn is None:
                raise UnsupportedOpError(f"the interpreter has no implementation of the extern "
                                         f"function '{name}'; register one with "
                                         f"interpreter.register_extern('{name}', fn)")
            result = fn(*(a(env) for a in args))
            return result if convert is None else convert(result)
        return call

    def e_Let(self, e):
        uid, value, body = e.var.uid, self.expr(e.value), self.expr(e.body)

        def let(env):
            env[uid] = value(env)
            try:
                return body(env)
            finally:
                del env[uid]
        return let

    def e_Ramp(self, e):
        base, stride = self.expr(e.base), self.expr(e.stride)
        steps = np.arange(e.lanes, dtype=np_dtype(e.dtype))
        convert = _converter(e.dtype)
        return lambda env: convert(base(env) + stride(env) * steps)

    def e_Broadcast(self, e):
        value, lanes, target = self.expr(e.value), e.lanes, np_dtype(e.dtype)
        return lambda env: np.full(lanes, value(env), dtype=target)

    def e_BufferLoad(self, e):
        locate = self.access(e.buffer, e.indices)
        convert = _converter(e.dtype)

        def load(env):
            storage, offset = locate(env)
            return convert(storage[offset])
        return load

    # -- buffer accesses -------------------------------------------------------------------------
    def access(self, buffer, indices) -> Callable:
        """A function of env giving (flat storage, bounds-checked offset or lane offsets)."""
        if dt.lanes_of(buffer.dtype) != 1:
            raise UnsupportedOpError(f"the interpreter does not support buffers of vector "
                                     f"dtype ('{buffer.name}': {buffer.dtype})")
        uid, name = buffer.data.uid, buffer.name
        index_fns = [self.expr(i) for i in indices]
        flat = len(indices) == 1 and (buffer.ndim != 1 or self.flattened)
        if len(indices) != buffer.ndim and not flat:
            raise InternalError(f"access to '{name}' with {len(indices)} indices; the buffer has "
                                f"{buffer.ndim} dimensions")
        layout = None if flat else self.layout(buffer)

        def storage_of(env):
            try:
                return env[uid]
            except KeyError:
                raise InternalError(f"buffer '{name}' is accessed where it is not allocated") \
                    from None

        def outside(values, shape, d):
            shown = ", ".join(_show(x) for x in values)
            return InternalError(f"out-of-bounds access to '{name}': index [{shown}] is outside "
                                 f"the shape {list(shape)} (dimension {d})")

        def outside_flat(offset, size):
            return InternalError(f"out-of-bounds access to '{name}': element offset "
                                 f"{_show(offset)} is outside [0, {size})")

        if all(dt.lanes_of(i.dtype) == 1 for i in indices):
            # Scalar access: plain Python integers, checked per dimension and as a whole.
            def locate(env):
                storage = storage_of(env)
                if flat:
                    offset = int(index_fns[0](env))
                else:
                    shape, strides, offset = layout(env)
                    values = [int(f(env)) for f in index_fns]
                    for d, v in enumerate(values):
                        if not 0 <= v < shape[d]:
                            raise outside(values, shape, d)
                        offset += v * strides[d]
                if not 0 <= offset < storage.shape[0]:
                    raise outside_flat(offset, storage.shape[0])
                return storage, offset
            return locate

        def locate_vector(env):
            storage = storage_of(env)
            values = [_as_offset(f(env)) for f in index_fns]
            mask = env.get(_MASK)
            if flat:
                offset = values[0]
            else:
                shape, strides, offset = layout(env)
                for d, v in enumerate(values):
                    if not _within(v, shape[d], mask):
                        raise outside(values, shape, d)
                    offset = offset + v * strides[d]
            if not _within(offset, storage.shape[0], mask):
                raise outside_flat(offset, storage.shape[0])
            if mask is not None and np.ndim(offset) == 1 and offset.shape == mask.shape:
                offset = np.where(mask, offset, 0)  # masked-off lanes read element 0
            return storage, offset
        return locate_vector

    def layout(self, buffer) -> Callable:
        """A function of env giving (shape, strides, element offset) of ``buffer`` as ints."""
        cached = self.layouts.get(buffer.uid)
        if cached is not None:
            return cached
        parts = list(buffer.shape) + list(buffer.strides) + [buffer.elem_offset]
        if all(isinstance(p, E.IntImm) for p in parts):
            fixed = _layout([p.value for p in parts], buffer)
            fn = lambda env: fixed  # noqa: E731
        else:
            fns = [self.expr(p) for p in parts]
            fn = lambda env: _layout([int(f(env)) for f in fns], buffer)  # noqa: E731
        self.layouts[buffer.uid] = fn
        return fn

    # -- statements ----------------------------------------------------------------------------
    def stmt(self, s) -> Callable:
        method = getattr(self, "s_" + type(s).__name__, None)
        if method is None:
            raise UnsupportedOpError(f"the interpreter cannot run {type(s).__name__}")
        return method(s)

    def s_For(self, s):
        uid, make = s.loop_var.uid, np_dtype(s.loop_var.dtype).type
        begin, extent, body = self.expr(s.min), self.expr(s.extent), self.stmt(s.body)

        def loop(env):
            start = int(begin(env))
            for v in range(start, start + int(extent(env))):
                env[uid] = make(v)
                body(env)
            env.pop(uid, None)
        return loop

    def s_SeqStmt(self, s):
        parts = [self.stmt(c) for c in s.seq]

        def sequence(env):
            for part in parts:
                part(env)
        return sequence

    def s_BufferStore(self, s):
        locate = self.access(s.buffer, s.indices)
        value = self.expr(s.value)

        def store(env):
            v = value(env)
            storage, offset = locate(env)
            storage[offset] = v
        return store

    def s_IfThenElse(self, s):
        cond, then = self.expr(s.condition), self.stmt(s.then_case)
        other = self.stmt(s.else_case) if s.else_case is not None else None

        def branch(env):
            if cond(env):
                then(env)
            elif other is not None:
                other(env)
        return branch

    def s_LetStmt(self, s):
        uid, value, body = s.var.uid, self.expr(s.value), self.stmt(s.body)

        def let(env):
            env[uid] = value(env)
            body(env)
            del env[uid]
        return let

    def s_Allocate(self, s):
        b = s.buffer
        uid, target, body = b.data.uid, np_dtype(b.dtype), self.stmt(s.body)
        extents = [self.expr(x) for x in b.allocation_extents()]
        fill = _uninitialised(b.dtype)

        def allocate(env):
            size = math.prod(int(x(env)) for x in extents)
            env[uid] = np.full(size, fill, dtype=target)
            body(env)
            del env[uid]
        return allocate

    def s_Evaluate(self, s):
        value = self.expr(s.value)

        def evaluate(env):
            value(env)
        return evaluate

    def s_AssertStmt(self, s):
        cond, message, body = self.expr(s.condition), s.message, self.stmt(s.body)

        def check(env):
            if not cond(env):
                raise UserError(message)
            body(env)
        return check

    def s_AttrStmt(self, s):
        return self.stmt(s.body)


def _within(v, n: int, mask) -> bool:
    """Whether offset(s) ``v`` lie in ``[0, n)``, looking only at live lanes."""
    if np.ndim(v) == 0:
        return 0 <= v < n
    if mask is not None and v.shape == mask.shape:
        v = v[mask]
    return v.size == 0 or (v.min() >= 0 and v.max() < n)


def _as_offset(v):
    if isinstance(v, np.ndarray):
        return v.astype(np.int64)
    return int(v)


def _show(v) -> str:
    return str(v.tolist()) if isinstance(v, np.ndarray) else str(v)


def _layout(values, buffer):
    ndim = buffer.ndim
    shape = values[:ndim]
    strides = values[ndim:ndim + len(buffer.strides)]
    if not strides:
        strides, step = [0] * ndim, 1
        for d in reversed(range(ndim)):
            strides[d] = step
            step *= shape[d]
    return shape, strides, values[-1]


def _uninitialised(dtype: str):
    if dt.is_float(dtype):
        return np.nan
    if dt.is_bool(dtype):
        return True
    info = np.iinfo(np_dtype(dtype))
    return info.max if dt.is_uint(dtype) else info.min
