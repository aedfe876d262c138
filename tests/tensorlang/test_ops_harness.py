"""Shared helpers of the operator tests (``test_ops_*.py``): random data, building a schedule
with the LLVM backend (or, where it is missing, the reference interpreter), running it on NumPy
arrays and comparing with NumPy. Also a few cross-checks of the two back ends.

Set ``TENSORLANG_OPS_BACKEND=interpreter`` to run every operator test on the interpreter.
"""
from __future__ import annotations

import functools
import math
import os
import zlib

import numpy as np
import pytest

import tensorlang as tl
import tensorlang.ops  # noqa: F401
from tensorlang.tensor import PlaceholderOp


def gelu_ref(x):
    """GELU in the erf form, in float64, returned as float32."""
    erf = np.vectorize(math.erf)
    return (0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))).astype("float32")


def rand(shape, dtype="float32", low=-1.0, high=1.0, seed=None):
    """Random data, never zeros: uniform in [low, high) for floats, integers in [low, high)."""
    if seed is None:
        seed = zlib.crc32(repr((shape, str(dtype), low, high)).encode())
    rng = np.random.default_rng(seed)
    if np.issubdtype(np.dtype(dtype), np.floating):
        return rng.uniform(low, high, size=shape).astype(dtype)
    if dtype == "bool":
        return rng.random(size=shape) < 0.5
    return rng.integers(int(low), int(high), size=shape).astype(dtype)


@functools.lru_cache(maxsize=None)
def llvm_available() -> bool:
    """Whether ``codegen.llvm`` imports and builds a trivial kernel."""
    try:
        import codegen.llvm  # noqa: F401
        A = tl.placeholder((4,), name="A")
        B = tl.compute((4,), lambda i: A[i] + 1.0, name="B")
        f = tl.build(tl.create_schedule(B), [A, B], target="llvm")
        b = np.zeros(4, "float32")
        f(np.ones(4, "float32"), b)
        return bool(np.all(b == 2.0))
    except Exception:  # noqa: BLE001 - any failure means: use the interpreter instead
        return False


def default_backend() -> str:
    wanted = os.environ.get("TENSORLANG_OPS_BACKEND")
    if wanted:
        return wanted
    return "llvm" if llvm_available() else "interpreter"


def _bind_shape_vars(args, inputs) -> dict:
    """Values of the symbolic extents, read from the input arrays' shapes."""
    binding = {}
    it = iter(inputs)
    for a in args:
        if isinstance(a, tl.Tensor) and isinstance(a.op, PlaceholderOp):
            arr = next(it)
            for extent, size in zip(a.shape, np.shape(arr)):
                if isinstance(extent, tl.Var):
                    binding[extent] = size
    return binding


def _concrete_shape(shape, binding) -> tuple:
    from tensorlang.arith import simplify
    from tensorlang.ir.functor import substitute
    out = []
    for extent in shape:
        e = simplify(substitute(extent, {v: tl.const(x, v.dtype) for v, x in binding.items()}))
        out.append(int(e))
    return tuple(out)


def _empty(shape, dtype):
    from tensorlang.ir.interpreter import np_dtype
    arr = np.empty(shape, dtype=np_dtype(dtype))
    if arr.dtype.kind in "iu":
        arr.fill(np.iinfo(arr.dtype).max - 3)  # an unlikely value marks unwritten outputs
    elif arr.dtype != np.bool_:
        arr.fill(np.nan)  # unwritten float outputs (bfloat16 / float8 too) show up as NaN
    return arr


def build_kernel(s, args, backend: str | None = None):
    """A callable ``f(*arrays)`` running ``s`` over ``args`` (outputs written in place)."""
    backend = backend or default_backend()
    if backend == "llvm":
        return tl.build(s, args, target="llvm")
    if backend == "interpreter":
        from tensorlang.ir import interpreter
        func = tl.lower(s, args)
        return lambda *arrays: interpreter.run(func, *arrays)
    raise ValueError(f"unknown backend {backend!r}")


def run(s, args, inputs, backend: str | None = None, func=None):
    """Build ``s`` over ``args`` (placeholders in ``inputs`` order, then outputs), run it on
    ``inputs`` and return the output arrays (in ``args`` order).

    ``func``: a callable from ``build_kernel`` to reuse (symbolic shapes, several sizes)."""
    binding = _bind_shape_vars(args, inputs)
    arrays, outputs, it = [], [], iter(inputs)
    for a in args:
        if isinstance(a.op, PlaceholderOp):
            arrays.append(next(it))
        else:
            out = _empty(_concrete_shape(a.shape, binding), a.dtype)
            arrays.append(out)
            outputs.append(out)
    f = func if func is not None else build_kernel(s, args, backend)
    f(*arrays)
    return outputs


def check(s, args, inputs, expected, rtol=1e-4, atol=1e-5, backend=None, func=None):
    """``run`` and compare every output with the matching array of ``expected``."""
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    got = run(s, args, inputs, backend, func)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        e = np.asarray(e)
        assert g.shape == e.shape, (g.shape, e.shape)
        if np.issubdtype(g.dtype, np.floating):
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)
        else:
            np.testing.assert_array_equal(g, e)
    return got


def split_fuse_vectorize(s, T, factor=8, parallel=True):
    """A generic schedule of an elementwise / injective stage: all axes fused, split by a
    ``factor`` that usually does not divide the extent, outer parallel, inner vectorized."""
    fused = s[T].fuse(*s[T].op.axis)
    outer, inner = s[T].split(fused, factor=factor)
    if parallel:
        s[T].parallel(outer)
    s[T].vectorize(inner)
    return outer, inner


# -- cross-checks of the two back ends --------------------------------------------------------

needs_llvm = pytest.mark.skipif(not llvm_available(), reason="codegen.llvm not available")


@needs_llvm
def test_interpreter_and_llvm_agree_on_tiled_matmul():
    A = tl.placeholder((13, 9), name="A")
    B = tl.placeholder((9, 11), name="B")
    C = tl.ops.nn.matmul(A, B)
    s = tl.create_schedule(C)
    i, j = s[C].op.axis
    io, jo, ii, ji = s[C].tile(i, j, 4, 4)
    ko, ki = s[C].split(s[C].op.reduce_axis[0], factor=4)
    s[C].reorder(io, jo, ko, ii, ki, ji)
    s[C].vectorize(ji)
    s[C].parallel(io)
    a, b = rand((13, 9)), rand((9, 11))
    (interp,) = run(s, [A, B, C], [a, b], backend="interpreter")
    (native,) = run(s, [A, B, C], [a, b], backend="llvm")
    np.testing.assert_allclose(interp, a @ b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(native, interp, rtol=1e-5, atol=1e-5)


@needs_llvm
def test_interpreter_and_llvm_agree_on_padded_conv():
    X = tl.placeholder((1, 3, 7, 7), name="X")
    W = tl.placeholder((2, 3, 3, 3), name="W")
    Y = tl.ops.nn.conv2d_nchw(X, W, stride=2, padding=1)
    s = tl.create_schedule(Y)
    pad = Y.op.input_tensors[0]
    s[pad].compute_at(s[Y], s[Y].op.axis[2])
    x, w = rand((1, 3, 7, 7)), rand((2, 3, 3, 3))
    (interp,) = run(s, [X, W, Y], [x, w], backend="interpreter")
    (native,) = run(s, [X, W, Y], [x, w], backend="llvm")
    np.testing.assert_allclose(native, interp, rtol=1e-5, atol=1e-5)


@needs_llvm
def test_interpreter_and_llvm_agree_on_argmax():
    A = tl.placeholder((5, 17), name="A")
    idx = tl.ops.reduce.argmax(A, axis=1)
    s = tl.create_schedule(idx)
    ko, ki = s[idx].split(s[idx].op.reduce_axis[0], factor=4)
    a = np.round(rand((5, 17)) * 3).astype("float32")  # many ties
    args = [A, idx, idx.op.output(1)]
    interp = run(s, args, [a], backend="interpreter")
    native = run(s, args, [a], backend="llvm")
    np.testing.assert_array_equal(interp[0], np.argmax(a, axis=1))
    np.testing.assert_array_equal(native[0], interp[0])
    np.testing.assert_array_equal(native[1], interp[1])
