"""float32 vector math (codegen/llvm/vector_math.py) against float64 NumPy / SciPy, in ULP."""
from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import special

import tensorlang as tl
from codegen.llvm import host_target

OPS = {"exp": tl.exp, "log": tl.log, "tanh": tl.tanh, "sigmoid": tl.sigmoid, "erf": tl.erf}
REFERENCE = {"exp": np.exp, "log": np.log, "tanh": np.tanh, "sigmoid": special.expit,
             "erf": special.erf}
# Max ULP error: measured (see vector_math's docstring) plus a little room for other CPUs.
BOUND = {"exp": 2.0, "log": 2.0, "tanh": 2.5, "sigmoid": 3.0, "erf": 2.0}
FAST_BOUND = {"exp": 150, "log": 60, "tanh": 150, "sigmoid": 150, "erf": 400}
SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-40, 1.2e-38, 1e-30, 0.5, -0.5,
           1.0, -1.0, 2.0, 3.9, 4.0, -4.0, 10.0, -10.0, 20.0, -20.0, 88.7, 88.72, 88.73, 89.0,
           -87.3, -100.0, 100.0, -103.0, -103.9, -104.0, -105.0, -150.0, 3e38, -3e38]


def _inputs() -> np.ndarray:
    rng = np.random.default_rng(0)
    magnitude = 10.0 ** rng.uniform(-30, 30, 500_000)
    parts = [magnitude, -magnitude, rng.uniform(-1, 1, 100_000), rng.uniform(-10, 10, 100_000),
             rng.uniform(80, 95, 50_000), rng.uniform(-110, -80, 50_000),
             rng.uniform(-4.5, 4.5, 50_000), np.array(SPECIAL)]
    return np.concatenate(parts).astype(np.float32)


X = _inputs()


def _kernel(op: str, lanes: int, n: int = X.size):
    A = tl.placeholder((n,), "float32", name="A")
    B = tl.compute((n,), lambda i: OPS[op](A[i]), name="B")
    s = tl.create_schedule(B)
    if lanes > 1:
        _, inner = s[B].split(B.op.axis[0], factor=lanes)
        s[B].vectorize(inner)
    return tl.build(s, [A, B], target="llvm", name=f"{op}_x{lanes}")


def _run(f, x: np.ndarray) -> np.ndarray:
    y = np.empty_like(x)
    f(x, y)
    return y


def ulp_error(got: np.ndarray, x: np.ndarray, op: str) -> np.ndarray:
    """|got - exact| in float32 ULPs of the exact (float64) value; 0 where got is the
    float32-rounded exact value (including inf and nan), inf for a wrong inf / nan."""
    with np.errstate(all="ignore"):
        exact = REFERENCE[op](x.astype(np.float64))
        rounded = exact.astype(np.float32)
        same = (got == rounded) | (np.isnan(got) & np.isnan(rounded))
        ulp = np.ldexp(1.0, np.maximum(np.frexp(exact)[1] - 24, -149))
        err = np.abs(got.astype(np.float64) - exact) / ulp
    return np.where(same, 0.0, np.where(np.isfinite(err), err, np.inf))


def _check_bound(got, op, bound):
    err = ulp_error(got, X, op)
    worst = int(np.argmax(err))
    assert err[worst] <= bound, (f"{op}: {err[worst]:.2f} ULP at x={X[worst]!r}: "
                                 f"got {got[worst]!r}")


@pytest.mark.parametrize("op", sorted(OPS))
def test_vectorized_and_scalar_accuracy(op):
    vector = _run(_kernel(op, 8), X)
    _check_bound(vector, op, BOUND[op])
    scalar = _run(_kernel(op, 1), X)
    _check_bound(scalar, op, BOUND[op])


def test_special_values():
    x = np.array(SPECIAL, np.float32)
    got = {op: _run(_kernel(op, 8, x.size), x) for op in OPS}
    with np.errstate(all="ignore"):
        for op in OPS:
            expected = REFERENCE[op](x.astype(np.float64)).astype(np.float32)
            np.testing.assert_array_equal(np.isnan(got[op]), np.isnan(expected), err_msg=op)
            np.testing.assert_array_equal(np.isinf(got[op]), np.isinf(expected), err_msg=op)
            # a NaN's sign is unspecified (x86's default NaN is negative, AVX-512's log gives
            # a positive one): compare signs of numbers only
            number = ~np.isnan(expected)
            np.testing.assert_array_equal(np.signbit(got[op][number]),
                                          np.signbit(expected[number]), err_msg=op)
    index = {float(v): k for k, v in enumerate(x) if not np.isnan(v)}

    def at(value):
        return index[float(np.float32(value))]

    assert got["exp"][at(89.0)] == np.inf and got["exp"][at(-104.0)] == 0.0
    assert got["exp"][at(-100.0)] == np.float32(np.exp(-100.0))  # denormal, rounded once
    assert got["log"][at(0.0)] == -np.inf and np.isnan(got["log"][at(-1.0)])
    assert got["log"][at(1e-45)] == np.float32(np.log(np.float64(np.float32(1e-45))))
    assert got["tanh"][at(20.0)] == 1.0 and got["tanh"][at(-20.0)] == -1.0
    assert got["erf"][at(4.0)] == 1.0 and got["erf"][at(-4.0)] == -1.0
    assert got["sigmoid"][at(100.0)] == 1.0
    assert 0.0 < got["sigmoid"][at(-100.0)] < 1e-43  # exp(-100): tiny, not flushed to 0


def test_vectorized_kernel_has_no_libm_call():
    for op in OPS:
        asm = _kernel(op, 8, 1024).get_source("asm")
        callees = set(re.findall(r"call[lq]?\s+\*?([\w.@]+)", asm))
        assert callees <= {f"{op}_x8@PLT", f"{op}_x8"}, f"{op} calls {callees}"
        if host_target().vector_bits >= 256:
            assert re.search(r"[yz]mm", asm), f"{op}: no 256/512-bit registers"


def test_fast_math_is_less_accurate_but_keeps_special_values():
    accurate_first = _run(_kernel("exp", 8), X)  # cached: fast_math must not reuse it
    with tl.config(fast_math=True):
        fast = {op: _run(_kernel(op, 8), X) for op in OPS}
    for op in OPS:
        _check_bound(fast[op], op, FAST_BOUND[op])
    accurate = _run(_kernel("exp", 8), X)
    assert not np.array_equal(fast["exp"], accurate)
    np.testing.assert_array_equal(accurate, accurate_first)


def _pow_kernel(lanes: int, n: int):
    X = tl.placeholder((n,), "float32", name="X")
    Y = tl.placeholder((n,), "float32", name="Y")
    Z = tl.compute((n,), lambda i: tl.power(X[i], Y[i]), name="Z")
    s = tl.create_schedule(Z)
    if lanes > 1:
        _, inner = s[Z].split(Z.op.axis[0], factor=lanes)
        s[Z].vectorize(inner)
    return tl.build(s, [X, Y, Z], target="llvm", name=f"pow_x{lanes}")


def test_pow_accuracy_and_special_cases():
    rng = np.random.default_rng(1)
    n = 200_000
    edge = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 2.5, -2.5, np.inf, -np.inf,
            np.nan, 1e-45, 1e30, -1e30, 127.0, 128.0, -149.0, 0.1]
    grid = np.array([(a, b) for a in edge for b in edge], np.float32)
    x = np.concatenate([10 ** rng.uniform(-30, 30, n), rng.uniform(0, 4, n),
                        -np.round(rng.uniform(0, 30, n)), grid[:, 0]]).astype(np.float32)
    y = np.concatenate([rng.uniform(-3, 3, n), rng.uniform(-60, 60, n),
                        np.round(rng.uniform(-30, 30, n)), grid[:, 1]]).astype(np.float32)
    with np.errstate(all="ignore"):
        exact = np.power(x.astype(np.float64), y.astype(np.float64))
        rounded = exact.astype(np.float32)
        ulp = np.ldexp(1.0, np.maximum(np.frexp(exact)[1] - 24, -149))
    for lanes in (8, 1):
        z = np.empty_like(x)
        _pow_kernel(lanes, x.size)(x, y, z)
        same = (z == rounded) | (np.isnan(z) & np.isnan(rounded))
        np.testing.assert_array_equal(np.signbit(z[~np.isnan(z)]),
                                      np.signbit(rounded[~np.isnan(z)]))
        with np.errstate(all="ignore"):
            err = np.where(same, 0.0, np.abs(z - exact) / ulp)
        assert np.all(np.isfinite(err)) and err.max() <= 1.0, err.max()
    asm = _pow_kernel(8, 1024).get_source("asm")
    assert set(re.findall(r"call[lq]?\s+\*?([\w.@]+)", asm)) <= {"pow_x8@PLT", "pow_x8"}
