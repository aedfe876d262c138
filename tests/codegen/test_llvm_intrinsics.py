"""Math intrinsics of the LLVM backend against NumPy, for scalars and vectors."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import special

import codegen
from tensorlang import expr as E
from tensorlang.ir import stmt as S
from tensorlang.ir.buffer import decl_buffer
from tensorlang.ir.function import PrimFunc

N = 64
RNG = np.random.default_rng(1)

UNARY = {
    "exp": (np.exp, (-10, 10)), "exp2": (np.exp2, (-10, 10)), "log": (np.log, (0.01, 100)),
    "log2": (np.log2, (0.01, 100)), "log10": (np.log10, (0.01, 100)),
    "sqrt": (np.sqrt, (0, 100)), "rsqrt": (lambda x: 1 / np.sqrt(x), (0.01, 100)),
    "tanh": (np.tanh, (-5, 5)), "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), (-20, 20)),
    "erf": (special.erf, (-3, 3)), "fabs": (np.abs, (-5, 5)), "floor": (np.floor, (-5, 5)),
    "ceil": (np.ceil, (-5, 5)), "round": (np.round, (-5, 5)), "trunc": (np.trunc, (-5, 5)),
    "sin": (np.sin, (-6, 6)), "cos": (np.cos, (-6, 6)),
}
TOLERANCE = {"float32": 2e-6, "float64": 1e-13, "float16": 2e-3}


def unary_func(op: str, dtype: str, lanes: int) -> PrimFunc:
    X, Y = decl_buffer((N,), dtype, "X"), decl_buffer((N,), dtype, "Y")
    i = E.Var("i")
    if lanes == 1:
        index, vtype = i, dtype
        extent = E.IntImm(N)
    else:
        index = E.Ramp(E.Mul(i, E.IntImm(lanes), "int32"), E.IntImm(1), lanes, f"int32x{lanes}")
        vtype, extent = f"{dtype}x{lanes}", E.IntImm(N // lanes)
    value = E.Call(op, (X.vload((index,), vtype),), vtype)
    return PrimFunc(f"{op}_{dtype}_{lanes}", (X, Y),
                    S.For(i, E.IntImm(0), extent, "serial", S.BufferStore(Y, value, (index,))))


def sample(low: float, high: float, dtype: str) -> np.ndarray:
    x = RNG.uniform(low, high, N)
    x[:4] = [low, high, (low + high) / 2, 0.5 if low < 0.5 < high else low]
    if low < 0 < high:
        x[4:8] = [-2.5, -0.5, 0.5, 2.5]  # halves: round is half to even
    return x.astype(dtype)


@pytest.mark.parametrize("lanes", [1, 8])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_intrinsic_matches_numpy(op, dtype, lanes):
    reference, (low, high) = UNARY[op]
    f = codegen.build(unary_func(op, dtype, lanes))
    x = sample(low, high, dtype)
    y = np.empty_like(x)
    f(x, y)
    expected = reference(x.astype(np.float64)).astype(dtype)
    np.testing.assert_allclose(y, expected, rtol=TOLERANCE[dtype] * 4, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("op", ["exp", "tanh", "sqrt", "round", "sigmoid"])
def test_float16_intrinsic(op):
    reference, (low, high) = UNARY[op]
    f = codegen.build(unary_func(op, "float16", 1))
    x = sample(max(low, -8), min(high, 8), "float16")
    y = np.empty_like(x)
    f(x, y)
    expected = reference(x.astype(np.float32)).astype(np.float16)
    np.testing.assert_allclose(y.astype(np.float32), expected.astype(np.float32), rtol=2e-3,
                               atol=2e-3)


def test_special_values():
    f = codegen.build(unary_func("exp", "float32", 8))
    x = np.full(N, np.nan, np.float32)
    x[:4] = [np.inf, -np.inf, 100.0, -100.0]
    y = np.empty_like(x)
    f(x, y)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(y, np.exp(x))


@pytest.mark.parametrize("lanes", [1, 4])
@pytest.mark.parametrize("op,reference", [("pow", np.power), ("fmod", np.fmod)])
def test_binary_intrinsics(op, reference, lanes):
    X, Y, Z = (decl_buffer((N,), "float32", name) for name in "XYZ")
    i = E.Var("i")
    vtype = "float32" if lanes == 1 else f"float32x{lanes}"
    index = i if lanes == 1 else E.Ramp(E.Mul(i, E.IntImm(lanes), "int32"), E.IntImm(1), lanes,
                                        f"int32x{lanes}")
    value = E.Call(op, (X.vload((index,), vtype), Y.vload((index,), vtype)), vtype)
    f = codegen.build(PrimFunc(f"{op}_{lanes}", (X, Y, Z), S.For(
        i, E.IntImm(0), E.IntImm(N // lanes), "serial", S.BufferStore(Z, value, (index,)))))
    x = RNG.uniform(0.1, 5, N).astype(np.float32) * RNG.choice([-1, 1], N).astype(np.float32)
    y = RNG.uniform(0.5, 3, N).astype(np.float32)
    if op == "pow":
        x = np.abs(x)
    z = np.empty_like(x)
    f(x, y, z)
    np.testing.assert_allclose(z, reference(x, y), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lanes", [1, 8])
def test_predicates(lanes):
    X = decl_buffer((N,), "float32", "X")
    outs = [decl_buffer((N,), "bool", name) for name in ("NAN", "INF", "FIN")]
    i = E.Var("i")
    index = i if lanes == 1 else E.Ramp(E.Mul(i, E.IntImm(lanes), "int32"), E.IntImm(1), lanes,
                                        f"int32x{lanes}")
    vtype = "float32" if lanes == 1 else f"float32x{lanes}"
    btype = "bool" if lanes == 1 else f"boolx{lanes}"
    stores = [S.BufferStore(out, E.Call(op, (X.vload((index,), vtype),), btype), (index,))
              for out, op in zip(outs, ("isnan", "isinf", "isfinite"))]
    f = codegen.build(PrimFunc(f"predicates_{lanes}", (X, *outs),
                               S.For(i, E.IntImm(0), E.IntImm(N // lanes), "serial",
                                     S.seq(*stores)), attrs=(("output_indices", (1, 2, 3)),)))
    x = RNG.random(N).astype(np.float32)
    x[:3] = [np.nan, np.inf, -np.inf]
    results = [np.empty(N, bool) for _ in outs]
    f(x, *results)
    for result, reference in zip(results, (np.isnan, np.isinf, np.isfinite)):
        np.testing.assert_array_equal(result, reference(x))


@pytest.mark.parametrize("dtype", ["int32", "int8", "int64"])
def test_integer_abs(dtype):
    X, Y = decl_buffer((N,), dtype, "X"), decl_buffer((N,), dtype, "Y")
    i = E.Var("i")
    f = codegen.build(PrimFunc(f"iabs_{dtype}", (X, Y), S.For(
        i, E.IntImm(0), E.IntImm(N), "serial",
        S.BufferStore(Y, E.Call("abs", (X.vload((i,)),), dtype), (i,)))))
    x = RNG.integers(-100, 100, N).astype(dtype)
    y = np.empty_like(x)
    f(x, y)
    np.testing.assert_array_equal(y, np.abs(x))
