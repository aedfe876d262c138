"""The runtime Module of LLVM builds: argument checks, timing, cache, export and load."""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import codegen
from codegen.llvm.build_module import clear_cache
from tensorlang import expr as E
from tensorlang.errors import DTypeError, ShapeError, UnsupportedOpError, UserError
from tensorlang.ir import stmt as S
from tensorlang.ir.buffer import decl_buffer
from tensorlang.ir.function import PrimFunc
from tensorlang.runtime import ndarray as nd
from tensorlang.runtime.module import Module, load_module

RNG = np.random.default_rng(2)


def add_func(name="vadd", kind="serial"):
    """C[i, j] = A[i, j] + B[j] with A: (n, 4), B: (4,), C: (n, 4)."""
    n = E.Var("n")
    A, B = decl_buffer((n, 4), "float32", "A"), decl_buffer((4,), "float32", "B")
    C = decl_buffer((n, 4), "float32", "C")
    i = E.Var("i")
    value = E.Add(A.vload((i,)), B.vload((E.FloorMod(i, E.IntImm(4), "int32"),)), "float32")
    body = S.For(i, E.IntImm(0), E.Mul(n, E.IntImm(4), "int32"), kind,
                 S.BufferStore(C, value, (i,)))
    return PrimFunc(name, (A, B, C), body)


@pytest.fixture(scope="module")
def f() -> Module:
    return codegen.build(add_func())


def arrays(n=3):
    return (RNG.random((n, 4), np.float32), RNG.random(4, np.float32),
            np.zeros((n, 4), np.float32))


def test_call_and_repr(f):
    a, b, c = arrays()
    assert f(a, b, c) is None
    np.testing.assert_allclose(c, a + b)
    assert f.entry_name == "vadd"
    assert "A: float32[n, 4]" in repr(f) and "C: float32[n, 4]" in repr(f)


def test_tl_nd_arrays_and_dlpack_tensors(f):
    a, b, _ = arrays(5)
    c = nd.empty((5, 4), "float32")
    f(nd.array(a), b, c)
    np.testing.assert_allclose(c.numpy(), a + b)

    class Foreign:  # any object speaking DLPack
        def __init__(self, array):
            self.array = array

        def __dlpack__(self, **kwargs):
            return self.array.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self.array.__dlpack_device__()

    out = np.zeros((5, 4), np.float32)
    f(Foreign(a), Foreign(b), Foreign(out))
    np.testing.assert_allclose(out, a + b)


def test_wrong_number_of_arguments(f):
    a, b, _ = arrays()
    with pytest.raises(UserError, match=r"takes 3 arguments.*got 2"):
        f(a, b)


def test_wrong_rank_names_the_argument(f):
    a, b, c = arrays()
    with pytest.raises(ShapeError, match=r"'A' \(#0\) must be 2-d"):
        f(a.ravel(), b, c)


def test_wrong_dtype_names_the_argument(f):
    a, b, c = arrays()
    with pytest.raises(DTypeError, match=r"'B' \(#1\) must have dtype float32.*float64"):
        f(a, b.astype(np.float64), c)
    with pytest.raises(DTypeError, match=r"'B' \(#1\)"):
        f(a, b.astype(np.complex64), c)


def test_wrong_constant_dim(f):
    a, _, c = arrays()
    with pytest.raises(ShapeError, match=r"'B' \(#1\).*axis 0 is 5, not 4"):
        f(a, np.zeros(5, np.float32), c)


def test_symbolic_extent_bound_twice(f):
    a, b, _ = arrays(3)
    with pytest.raises(ShapeError, match=r"n is 3 from A.shape\[0\] but 2 from C.shape\[0\]"):
        f(a, b, np.zeros((2, 4), np.float32))


def test_non_contiguous_array(f):
    a, b, c = arrays(6)
    with pytest.raises(UserError, match=r"'A' \(#0\) is not contiguous"):
        f(a[::2], b, c[:3])


def test_read_only_output(f):
    a, b, c = arrays()
    c.flags.writeable = False
    with pytest.raises(UserError, match=r"'C' \(#2\) is an output.*read-only"):
        f(a, b, c)


def test_output_overlapping_an_input(f):
    a, b, _ = arrays()
    with pytest.raises(UserError, match=r"'C' \(#2\).*shares memory with argument 'A' \(#0\)"):
        f(a, b, a)


def test_non_array_argument(f):
    a, b, _ = arrays()
    with pytest.raises(UserError, match=r"'C' \(#2\) must be a NumPy array"):
        f(a, b, [[0.0] * 4] * 3)


def test_non_cpu_dlpack_device(f):
    a, b, c = arrays()

    class OnGpu:
        def __dlpack__(self, **kwargs):
            raise AssertionError("must not be imported")

        def __dlpack_device__(self):
            return (2, 0)  # kDLCUDA

    with pytest.raises(UserError, match=r"'B' \(#1\).*not the CPU"):
        f(a, OnGpu(), c)


def test_time_evaluator_returns_sane_numbers(f):
    a, b, c = arrays(1000)
    result = f.time_evaluator(number=5, repeat=3)(a, b, c)
    assert len(result.results) == 3
    assert all(0 < t < 1 for t in result.results)
    assert result.min <= result.median <= max(result.results)
    assert result.std >= 0 and result.mean > 0
    np.testing.assert_allclose(c, a + b)
    slow = f.time_evaluator(number=1, repeat=2, min_repeat_ms=5)(a, b, c)
    assert slow.number > 1 and len(slow.results) == 2


def test_compile_cache_returns_the_same_module():
    clear_cache()
    first = codegen.build(add_func("cached"))
    second = codegen.build(add_func("cached"))  # fresh Vars and Buffers, same program
    assert second is first
    assert codegen.build(add_func("cached"), "llvm -num-threads=3") is not first
    assert codegen.build(add_func("other_name")) is not first


def test_sources(f):
    assert "i32 @vadd(" in f.get_source("ll")
    assert "vadd:" in f.get_source("asm")
    with pytest.raises(UserError, match="unknown source format"):
        f.get_source("ptx")


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")
@pytest.mark.parametrize("kind", ["serial", "parallel"])
def test_export_library_and_load_module_round_trip(tmp_path, kind):
    f = codegen.build(add_func(f"exported_{kind}", kind), "llvm -num-threads=2")
    path = tmp_path / "kernel.so"
    f.export_library(path)
    g = load_module(path)
    assert g.entry_name == f.entry_name
    assert repr(g) == repr(f)
    for n in (1, 9, 1000):
        a, b, c = arrays(n)
        g(a, b, c)
        np.testing.assert_allclose(c, a + b)
    with pytest.raises(ShapeError, match="n is"):
        g(a, b, np.zeros((2, 4), np.float32))
    assert g.time_evaluator(number=2, repeat=2)(a, b, c).mean > 0
    with pytest.raises(UnsupportedOpError):
        g.get_source()
    copy = tmp_path / "copy.so"
    g.export_library(copy)
    load_module(copy)(a, b, c)
    if kind == "parallel":  # loaded next to the pool, parallel loops launch on it
        from codegen.llvm.threadpool import get_pool
        pointer = ctypes.c_void_p.in_dll(g._keepalive, f"{g.entry_name}__parallel_launch")
        assert pointer.value == get_pool().launch_address


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")
def test_exported_library_runs_without_the_code_generator(tmp_path):
    f = codegen.build(add_func("standalone", "parallel"), "llvm -num-threads=2")
    f.export_library(tmp_path / "standalone.so")
    script = (
        "import sys, numpy as np\n"
        "from tensorlang.runtime.module import load_module\n"
        f"g = load_module({str(tmp_path / 'standalone.so')!r})\n"
        "a, b = np.ones((50, 4), np.float32), np.arange(4, dtype=np.float32)\n"
        "c = np.zeros((50, 4), np.float32)\n"
        "g(a, b, c)\n"
        "assert (c == a + b).all()\n"
        "assert 'codegen' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr


def test_load_module_of_a_non_library(tmp_path):
    path = tmp_path / "junk.so"
    path.write_bytes(b"not a library")
    with pytest.raises(UserError, match="cannot load"):
        load_module(path)


def test_tl_build_convenience_accepts_a_primfunc():
    import tensorlang as tl
    f = tl.build(add_func("via_tl"))
    a, b, c = arrays()
    f(a, b, c)
    np.testing.assert_allclose(c, a + b)
