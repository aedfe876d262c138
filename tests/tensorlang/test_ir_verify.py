"""verify_well_formed: each kind of ill-formed loop IR, caught with a message that names it."""
import pytest

from tensorlang import expr as E
from tensorlang.errors import InternalError
from tensorlang.ir.buffer import decl_buffer
from tensorlang.ir.function import PrimFunc
from tensorlang.ir.stmt import (Allocate, BufferStore, Evaluate, For, IfThenElse, LetStmt, seq)
from tensorlang.ir.verify import verify_well_formed

c = E.const


def loop(var, extent, body, kind="serial"):
    return For(var, c(0), E.convert(extent), kind, body)


def make(body_of):
    """A PrimFunc over A[n, 8] (float32) whose body ``body_of(A, n)`` builds."""
    n = E.var("n")
    A = decl_buffer((n, 8), "float32", "A")
    return PrimFunc("f", (A,), body_of(A, n))


def fails(func_or_stmt, pattern):
    with pytest.raises(InternalError, match=pattern):
        verify_well_formed(func_or_stmt)


def test_well_formed_function_passes():
    i, j, t = E.var("i"), E.var("j"), E.var("t")
    tmp = decl_buffer((8,), "float32", "tmp", scope="local")
    alpha = E.Var("alpha", "float32")
    n = E.var("n")
    A = decl_buffer((n, 8), "float32", "A")
    body = loop(i, n, Allocate(tmp, seq(
        loop(j, 8, LetStmt(t, j * 2, BufferStore(tmp, A[i, j] * alpha, (j,)))),
        loop(j, 8, BufferStore(A, tmp[j], (i, j))))))  # one Var reused in sibling loops: fine
    verify_well_formed(PrimFunc("f", (A, alpha), body))


def test_loop_variable_used_after_its_loop():
    i = E.var("i")
    fails(make(lambda A, n: seq(loop(i, n, Evaluate(c(0))), BufferStore(A, c(0.0), (i, c(0))))),
          r"variable 'i' is used outside the scope that defines it \(the loop 'for i'\)")


def test_variable_that_is_never_defined():
    x = E.var("x")
    fails(make(lambda A, n: BufferStore(A, c(0.0), (x, c(0)))),
          r"in function 'f': variable 'x' is not defined")


def test_let_variable_used_outside_its_let():
    t = E.var("t")
    fails(make(lambda A, n: seq(LetStmt(t, c(1), Evaluate(c(0))),
                                BufferStore(A, c(0.0), (t, c(0))))),
          r"variable 't' is used outside the scope that defines it \(the let of 't'\)")


def test_let_expression_scope():
    t = E.var("t")
    i = E.var("i")
    inner = E.Let(t, i, t + 1, "int32")
    fails(make(lambda A, n: loop(i, n, BufferStore(A, c(0.0), (i, inner + t)))),
          r"variable 't' is used outside")


def test_allocated_buffer_used_outside_its_allocation():
    tmp = decl_buffer((8,), "float32", "tmp", scope="local")
    fails(make(lambda A, n: seq(Allocate(tmp, BufferStore(tmp, c(0.0), (c(0),))),
                                BufferStore(A, tmp[0], (c(0), c(0))))),
          r"buffer 'tmp' is used outside the scope that defines it \(the allocation of 'tmp'\)")


def test_unknown_buffer():
    B = decl_buffer((8,), "float32", "B")
    fails(make(lambda A, n: BufferStore(B, c(0.0), (c(0),))), r"buffer 'B' is not defined")


def test_shadowing_in_nested_scopes():
    i = E.var("i")
    fails(make(lambda A, n: loop(i, n, loop(i, 8, BufferStore(A, c(0.0), (i, i))))),
          r"variable 'i' is defined twice in nested scopes \(the loop 'for i' shadows the "
          r"loop 'for i'\)")
    fails(make(lambda A, n: loop(n, 4, Evaluate(c(0)))),
          r"variable 'n' is defined twice .* shadows a parameter")


def test_binary_operands_with_different_dtypes():
    i = E.var("i")
    bad = E.Add(i, c(1, "int64"), "int32")
    fails(make(lambda A, n: loop(i, n, BufferStore(A, c(0.0), (bad, c(0))))),
          r"inside for i: operands of Add have different dtypes \(int32 vs int64\): "
          r"`i \+ int64\(1\)`")


def test_binary_node_dtype_differs_from_operands():
    i = E.var("i")
    fails(make(lambda A, n: loop(i, n, BufferStore(A, c(0.0), (E.Mul(i, i, "int64"), c(0))))),
          r"Mul of int32 operands has dtype int64, expected int32")
    fails(make(lambda A, n: loop(i, n, IfThenElse(E.LT(i, n, "int32"), Evaluate(c(0))))),
          r"LT of int32 operands has dtype int32, expected bool")


def test_stored_value_dtype_differs_from_buffer():
    i = E.var("i")
    fails(make(lambda A, n: loop(i, n, BufferStore(A, c(0.0, "float64"), (i, c(0))))),
          r"stored value dtype float64 does not match the element dtype float32 of buffer 'A'")


def test_loaded_dtype_differs_from_buffer():
    i = E.var("i")
    fails(make(lambda A, n: loop(i, n, BufferStore(A, A.vload((i, c(0)), "int32"), (i, c(0))))),
          r"loaded dtype int32 does not match the element dtype float32")


def test_loop_extent_must_be_an_integer():
    i = E.var("i")
    bad = For(i, c(0), c(4.0), "serial", Evaluate(c(0)))
    fails(make(lambda A, n: bad), r"For extent must be a scalar integer, got float32")


def test_conditions_must_be_bool():
    i = E.var("i")
    fails(make(lambda A, n: loop(i, n, IfThenElse(i, Evaluate(c(0))))),
          r"condition of If must be bool, got int32")
    sel = E.Select(i, c(1.0), c(2.0), "float32")
    fails(make(lambda A, n: loop(i, n, BufferStore(A, sel, (i, c(0))))),
          r"condition of Select must be bool")


def test_vector_lanes_mismatch_between_index_and_value():
    i = E.var("i")
    ramp = E.Ramp(i * 4, c(1), 4, "int32x4")
    value = E.Broadcast(c(1.0), 8, "float32x8")
    fails(make(lambda A, n: loop(i, 2, BufferStore(A, value, (c(0), ramp)))),
          r"vector lanes differ between index \(4\) and stored value \(float32x8\) of 'A'")
    fails(make(lambda A, n: loop(i, 2, BufferStore(A, c(1.0), (c(0), ramp)))),
          r"vector lanes differ between index \(4\) and stored value \(float32\)")


def test_flattened_single_index_is_accepted():
    i = E.var("i")
    verify_well_formed(make(lambda A, n: loop(i, n * 8, BufferStore(A, A[i] + 1.0, (i,)))))
    fails(make(lambda A, n: loop(i, n, BufferStore(A, c(0.0), (i, i, i)))),
          r"store of 'A' has 3 indices but the buffer has 2 dimensions")


def test_bare_statement_takes_undefined_variables_from_its_context():
    i, j = E.var("i"), E.var("j")
    A = decl_buffer((8,), "float32", "A")
    verify_well_formed(loop(i, 8, BufferStore(A, A[j], (i,))))  # j, A come from outside
    fails(seq(loop(i, 8, Evaluate(c(0))), BufferStore(A, c(0.0), (i,))),
          r"variable 'i' is used outside the scope")


def test_if_then_else_condition_and_branches():
    i = E.var("i")
    bad_cond = E.Call("if_then_else", (i, c(1.0), c(0.0)), "float32")
    fails(make(lambda A, n: loop(i, n, BufferStore(A, bad_cond, (i, c(0))))),
          r"condition of if_then_else must be bool")
    bad_branch = E.Call("if_then_else", (i < 3, c(1.0), c(0.0, "float64")), "float32")
    fails(make(lambda A, n: loop(i, n, BufferStore(A, bad_branch, (i, c(0))))),
          r"branches of if_then_else have dtype float64, the node has float32")


def test_dsl_nodes_must_not_remain():
    from types import SimpleNamespace
    i = E.var("i")
    load = E.ProducerLoad(SimpleNamespace(name="T"), (i,), "float32")
    fails(make(lambda A, n: loop(i, n, BufferStore(A, load, (i, c(0))))),
          r"ProducerLoad is tensor-DSL only")
