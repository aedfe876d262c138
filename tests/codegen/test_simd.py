"""Vectorized loops become the target's own vector instructions (checked in the assembly)."""
import re

import numpy as np
import pytest

import tensorlang as tl
from codegen.llvm import host_target


def _axpy(lanes):
    A = tl.placeholder((4096,), name="A")
    B = tl.placeholder((4096,), name="B")
    C = tl.compute((4096,), lambda i: A[i] * B[i] + B[i], name="C")
    s = tl.create_schedule(C)
    o, i = s[C].split(C.op.axis[0], factor=lanes)
    s[C].vectorize(i)
    return s, [A, B, C]


def test_vector_fma_uses_the_widest_registers_of_the_host():
    target = host_target()
    if "+fma" not in target.features:
        pytest.skip("host CPU has no FMA instructions")
    lanes = target.vector_bits // 32
    register = {512: "zmm", 256: "ymm", 128: "xmm"}[target.vector_bits]
    s, args = _axpy(lanes)
    f = tl.build(s, args)
    asm = f.get_source("asm")
    assert re.search(rf"vfmadd\w+\s+[^\n]*%{register}", asm), "no FMA on full-width registers"
    a, b = np.random.rand(4096).astype("float32"), np.random.rand(4096).astype("float32")
    c = np.empty_like(a)
    f(a, b, c)
    np.testing.assert_allclose(c, a * b + b, rtol=1e-6)


def test_avx512_code_for_a_named_cpu_without_running_it():
    # cross-compiling: the assembly for an AVX-512 CPU has 512-bit FMAs whatever the host has
    s, args = _axpy(16)
    func = tl.lower(s, args)
    from codegen.llvm import build
    m = build(func, "llvm -mcpu=skylake-avx512", jit=False)
    assert re.search(r"vfmadd\w+\s+[^\n]*%zmm", m.get_source("asm"))


def test_float_max_min_follow_numpy_for_nan_and_signed_zero():
    A = tl.placeholder((16,), name="A")
    B = tl.placeholder((16,), name="B")
    C = tl.compute((16,), lambda i: tl.max(A[i], B[i]), name="C")
    D = tl.compute((16,), lambda i: tl.min(A[i], B[i]), name="D")
    s = tl.create_schedule([C, D])
    for t in (C, D):
        s[t].vectorize(s[t].split(t.op.axis[0], factor=8)[1])
    f = tl.build(s, [A, B, C, D])
    a = np.array([np.nan, 1, -0.0, 0.0, np.inf, -np.inf, 2, np.nan] + [3.0] * 8, "float32")
    b = np.array([1, np.nan, 0.0, -0.0, 1, 1, np.nan, np.nan] + [-3.0] * 8, "float32")
    c, d = np.empty(16, "float32"), np.empty(16, "float32")
    f(a, b, c, d)
    np.testing.assert_array_equal(c, np.maximum(a, b))
    np.testing.assert_array_equal(d, np.minimum(a, b))
    np.testing.assert_array_equal(np.signbit(c), np.signbit(np.maximum(a, b)))
    np.testing.assert_array_equal(np.signbit(d), np.signbit(np.minimum(a, b)))
