"""Target strings, the host target, and refusing code the host cannot run."""
from __future__ import annotations

import llvmlite.binding as llvm
import numpy as np
import pytest

import codegen
from codegen.llvm import Target, parse_target
from codegen.llvm.target import host_target
from tensorlang import expr as E
from tensorlang.errors import UnsupportedOpError, UserError
from tensorlang.ir import stmt as S
from tensorlang.ir.buffer import decl_buffer
from tensorlang.ir.function import PrimFunc

HOST_FEATURES = dict(llvm.get_host_cpu_features())


def simple_func(name="copy"):
    n = E.Var("n")
    A, B = decl_buffer((n,), "float32", "A"), decl_buffer((n,), "float32", "B")
    i = E.Var("i")
    return PrimFunc(name, (A, B), S.For(i, E.IntImm(0), n, "serial",
                                        S.BufferStore(B, A.vload((i,)), (i,))))


def test_llvm_is_the_host_exactly():
    t = parse_target("llvm")
    assert t.cpu == llvm.get_host_cpu_name()
    assert t.triple == llvm.get_process_triple()
    assert t.can_run_on_host()
    assert t == host_target(t.num_threads)
    expected = 512 if HOST_FEATURES.get("avx512f") else 256 if HOST_FEATURES.get("avx") else 128
    assert t.vector_bits == expected


def test_mcpu_and_mattr():
    t = parse_target("llvm -mcpu=haswell -mattr=+avx2,+fma")
    assert (t.cpu, t.features, t.vector_bits) == ("haswell", "+avx2,+fma", 256)
    assert parse_target("llvm -mcpu=skylake-avx512").vector_bits == 512
    assert parse_target("llvm -mcpu=x86-64").vector_bits == 128
    assert parse_target("llvm -mattr=+avx2").cpu == "generic"


def test_key_names_cpu_features_and_threads_and_round_trips():
    t = parse_target("llvm -mcpu=haswell -mattr=+fma,+avx2 -num-threads=3")
    assert "haswell" in t.key() and "+avx2,+fma" in t.key() and "3" in t.key()
    assert parse_target(t.key()) == t
    assert parse_target("llvm -mcpu=haswell -mattr=+avx2,+fma -num-threads=3") == t
    assert parse_target("llvm -mcpu=znver3 -num-threads=3").key() != t.key()


def test_mtriple_for_cross_compiling():
    t = parse_target("llvm -mtriple=aarch64-linux-gnu -mcpu=generic")
    assert t.arch == "aarch64" and t.vector_bits == 128
    if llvm.get_process_triple().startswith("aarch64"):
        pytest.skip("host is aarch64")
    assert not t.can_run_on_host()


@pytest.mark.parametrize("text", ["cuda", "llvm -mcpu", "llvm -foo=bar", "llvm -mattr=avx2",
                                  "llvm -num-threads=0", ""])
def test_bad_target_strings(text):
    with pytest.raises(UserError):
        parse_target(text)


def test_unknown_feature_is_refused():
    with pytest.raises(UserError, match="nosuchfeature"):
        parse_target("llvm -mattr=+nosuchfeature")


def test_target_object_is_frozen_and_accepted_by_build():
    t = parse_target("llvm")
    with pytest.raises(AttributeError):
        t.cpu = "other"  # type: ignore[misc]
    assert isinstance(t, Target)
    f = codegen.build(simple_func(), t)
    a, b = np.arange(5, dtype=np.float32), np.zeros(5, np.float32)
    f(a, b)
    np.testing.assert_array_equal(a, b)


def test_missing_feature_is_refused_for_running_but_can_be_emitted():
    if HOST_FEATURES.get("avx512f"):
        pytest.skip("host has AVX-512")
    target = "llvm -mattr=+avx512f"
    assert "+avx512f" in parse_target(target).missing_host_features()
    with pytest.raises(UnsupportedOpError, match=r"\+avx512f"):
        codegen.build(simple_func("avx512_copy"), target)
    f = codegen.build(simple_func("avx512_copy"), target, jit=False)
    assert "avx512_copy" in f.get_source()
    assert "avx512_copy" in f.get_source("asm")
    with pytest.raises(UnsupportedOpError, match="jit=False"):
        f(np.zeros(3, np.float32), np.zeros(3, np.float32))


def test_named_cpu_with_features_the_host_lacks_is_refused():
    if HOST_FEATURES.get("avx512bw"):
        pytest.skip("host has AVX-512")
    with pytest.raises(UnsupportedOpError, match="avx512"):
        codegen.build(simple_func("skx_copy"), "llvm -mcpu=skylake-avx512")


def test_cross_compiled_assembly_uses_the_target_isa():
    f = codegen.build(simple_func("arm_copy"), "llvm -mtriple=aarch64-linux-gnu -mcpu=generic",
                      jit=False)
    asm = f.get_source("asm")
    assert "ret" in asm and "retq" not in asm
