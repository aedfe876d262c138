"""The readable text of loop IR."""
from types import SimpleNamespace

from tensorlang import expr as E
from tensorlang.ir.buffer import decl_buffer
from tensorlang.ir.function import PrimFunc
from tensorlang.ir.printer import to_text
from tensorlang.ir.stmt import (Allocate, AssertStmt, AttrStmt, BufferStore, Evaluate, For,
                                IfThenElse, LetStmt, seq)

c = E.const


def loop(var, extent, body, kind="serial", tag="", begin=0):
    return For(var, E.convert(begin), E.convert(extent), kind, body, thread_tag=tag)


def test_matmul_function_reads_like_python():
    n = E.var("n")
    A = decl_buffer((n, 512), "float32", "A")
    B = decl_buffer((512, 256), "float32", "B")
    C = decl_buffer((n, 256), "float32", "C")
    i, j, k = E.var("i"), E.var("j"), E.var("k")
    body = loop(i, n, loop(j, 256, seq(
        BufferStore(C, c(0.0), (i, j)),
        loop(k, 512, BufferStore(C, C[i, j] + A[i, k] * B[k, j], (i, j))))), "parallel")
    text = to_text(PrimFunc("matmul", (A, B, C), body))
    assert text == "\n".join([
        "def matmul(A: Buffer(float32, [n, 512]), B: Buffer(float32, [512, 256]), "
        "C: Buffer(float32, [n, 256])):",
        "    for i in parallel(0, n):",
        "        for j in range(0, 256):",
        "            C[i, j] = 0.0",
        "            for k in range(0, 512):",
        "                C[i, j] = C[i, j] + A[i, k] * B[k, j]",
    ])
    assert str(PrimFunc("matmul", (A, B, C), body)) == text


def test_loop_kinds_and_ranges():
    i, tx = E.var("i"), E.var("tx")
    A = decl_buffer((64,), "float32", "A")
    body = seq(loop(i, 8, Evaluate(c(0)), "vectorized"),
               loop(i, 4, Evaluate(c(0)), "unrolled", begin=2),
               loop(tx, 32, BufferStore(A, c(1.0), (tx,)), "thread_binding", "threadIdx.x"))
    text = to_text(body)
    assert "for i in vectorized(0, 8):" in text
    assert "for i in unrolled(2, 6):" in text  # begin, end, like range
    assert 'for tx in thread_binding(0, 32, "threadIdx.x"):' in text
    assert "    pass" in text


def test_different_variables_with_one_name_get_suffixes():
    A = decl_buffer((16,), "float32", "A")
    i1, i2 = E.var("i"), E.var("i")
    body = seq(loop(i1, 16, BufferStore(A, c(0.0), (i1,))),
               loop(i2, 16, BufferStore(A, A[i2] + 1.0, (i2,))))
    text = to_text(PrimFunc("f", (A,), body))
    assert "for i in range(0, 16):\n        A[i] = 0.0" in text
    assert "for i_1 in range(0, 16):\n        A[i_1] = A[i_1] + 1.0" in text
    # Deterministic: printing again gives the same text.
    assert to_text(PrimFunc("f", (A,), body)) == text


def test_one_variable_reused_keeps_its_name():
    A = decl_buffer((16,), "float32", "A")
    i = E.var("i")
    body = seq(loop(i, 16, BufferStore(A, c(0.0), (i,))), loop(i, 16, Evaluate(c(0))))
    assert "i_1" not in to_text(body)


def test_buffers_with_one_name_are_told_apart():
    A1 = decl_buffer((4,), "float32", "A")
    A2 = decl_buffer((4,), "float32", "A")
    i = E.var("i")
    text = to_text(PrimFunc("f", (A1, A2), loop(i, 4, BufferStore(A2, A1[i], (i,)))))
    assert "def f(A: Buffer(float32, [4]), A_1: Buffer(float32, [4])):" in text
    assert "A_1[i] = A[i]" in text


def test_precedence_prints_minimal_parentheses():
    x, y, z = E.var("x"), E.var("y"), E.var("z")
    assert to_text((x + 1) * 2) == "(x + 1) * 2"
    assert to_text(x + 1 * y) == "x + 1 * y"
    assert to_text(x - (y - z)) == "x - (y - z)"
    assert to_text((x - y) - z) == "x - y - z"
    assert to_text(x * (y // z)) == "x * (y // z)"
    assert to_text(x // y % z) == "x // y % z"
    assert to_text(-(x * y)) == "-(x * y)"
    assert to_text(-x * y) == "-x * y"
    assert to_text((x < y) & (y <= z) | (x == z)) == "x < y and y <= z or x == z"
    assert to_text((x < y) | (y < z) & (x != z)) == "x < y or y < z and x != z"
    assert to_text(((x < y) | (y < z)) & (x > z)) == "(x < y or y < z) and x > z"
    assert to_text(~(x < y)) == "not x < y"
    b = E.Var("b", "bool")
    assert to_text(E.EQ(E.LT(x, y, "bool"), b, "bool")) == "(x < y) == b"


def test_division_flavours():
    x, y = E.var("x"), E.var("y")
    f = E.Var("f", "float32")
    assert to_text(x // y) == "x // y"
    assert to_text(x % y) == "x % y"
    assert to_text(E.Div(x, y, "int32")) == "truncdiv(x, y)"
    assert to_text(E.Mod(x, y, "int32")) == "truncmod(x, y)"
    assert to_text(f / 2.0) == "f / 2.0"
    assert to_text(E.Div(E.Mul(f, f, "float32"), f, "float32")) == "f * f / f"
    assert to_text(E.Mul(f, E.Div(f, f, "float32"), "float32")) == "f * (f / f)"


def test_constants_casts_and_calls():
    x = E.var("x")
    assert to_text(c(3)) == "3"
    assert to_text(c(-3)) == "-3"
    assert to_text(x - c(-3)) == "x - -3"
    assert to_text(c(1.0)) == "1.0"
    assert to_text(c(0.1)) == "0.1"
    assert to_text(c(3, "int64")) == "int64(3)"
    assert to_text(c(0.5, "float16")) == "float16(0.5)"
    assert to_text(c(1.0, "float64")) == "float64(1.0)"
    assert to_text(c(True)) == "True"
    assert to_text(c(float("inf"))) == "inf"
    assert to_text(E.cast(x, "float32")) == "float32(x)"
    assert to_text(E.Min(x, c(4), "int32")) == "min(x, 4)"
    assert to_text(E.Max(x, c(0), "int32")) == "max(x, 0)"
    assert to_text(E.Select(x < 3, x, c(3), "int32")) == "select(x < 3, x, 3)"
    assert to_text(E.Call("if_then_else", (x < 3, x, c(0)), "int32")) == \
        "if_then_else(x < 3, x, 0)"
    assert to_text(E.call_intrin("exp", E.cast(x, "float32"))) == "exp(float32(x))"
    assert to_text(E.Call("sgemm", (x, E.StringImm("N")), "int32", extern=True)) == \
        'call_extern("sgemm", x, "N", dtype="int32")'
    assert to_text(E.Let(E.var("t"), x + 1, x * 2, "int32") + 1) == "(let t = x + 1 in x * 2) + 1"


def test_vectors():
    i = E.var("i")
    A = decl_buffer((64,), "float32", "A")
    ramp = E.Ramp(i * 8, c(1), 8, "int32x8")
    store = BufferStore(A, A.vload((ramp,), "float32x8") * E.Broadcast(c(2.0), 8, "float32x8"),
                        (ramp,))
    assert to_text(store) == "A[ramp(i * 8, 1, 8)] = A[ramp(i * 8, 1, 8)] * broadcast(2.0, 8)"


def test_scoped_statements():
    n = E.var("n")
    A = decl_buffer((n, 16), "float32", "A")
    local = decl_buffer((4, 16), "float32", "C_local", scope="local")
    i, t = E.var("i"), E.var("t")
    body = AssertStmt(n > 0, "n must be positive", Allocate(local, LetStmt(t, i * 2, seq(
        BufferStore(local, c(0.0), (c(0), t)),
        IfThenElse(t < 8, BufferStore(A, local[0, t], (i, t)),
                   IfThenElse(t < 12, Evaluate(c(0)), BufferStore(A, c(1.0), (i, t))))))))
    text = to_text(loop(i, 4, body))
    assert text == "\n".join([
        "for i in range(0, 4):",
        '    assert n > 0, "n must be positive"',
        "    allocate C_local: float32[4, 16] in local",
        "    let t = i * 2",
        "    C_local[0, t] = 0.0",
        "    if t < 8:",
        "        A[i, t] = C_local[0, t]",
        "    elif t < 12:",
        "        pass",
        "    else:",
        "        A[i, t] = 1.0",
    ])


def test_scoped_statement_followed_by_siblings_prints_as_block():
    A = decl_buffer((4,), "float32", "A")
    tmp = decl_buffer((4,), "float32", "tmp", scope="local")
    body = seq(Allocate(tmp, BufferStore(tmp, c(0.0), (c(0),))), BufferStore(A, c(1.0), (c(0),)))
    assert to_text(body) == "\n".join([
        "allocate tmp: float32[4] in local:",
        "    tmp[0] = 0.0",
        "A[0] = 1.0",
    ])


def test_attr_and_annotations():
    i = E.var("i")
    A = decl_buffer((4,), "float32", "A")
    body = AttrStmt(A, "storage_alignment", 64,
                    For(i, c(0), c(4), "serial", Evaluate(c(0)),
                        annotations=(("pragma_unroll", 4),)))
    text = to_text(body)
    assert 'attr(A, "storage_alignment", 64)' in text
    assert "for i in range(0, 4):  # pragma_unroll=4" in text


def test_buffer_and_dsl_nodes():
    n = E.var("n")
    shared = decl_buffer((n, 32), "float16", "S", scope="shared")
    assert to_text(shared) == 'S: Buffer(float16, [n, 32], scope="shared")'
    i, j = E.var("i"), E.var("j")
    producer = SimpleNamespace(name="A")
    k = E.IterVar(E.Range(c(0), c(16)), E.var("k"), E.REDUCE)
    load = E.ProducerLoad(producer, (i, k.var), "float32")
    other = E.ProducerLoad(SimpleNamespace(name="B"), (k.var, j), "float32")
    red = E.Reduce(SimpleNamespace(name="sum"), (load * other,), (k,), c(True), 0, (), "float32")
    assert to_text(red) == "sum(A[i, k] * B[k, j], axis=[k])"
    assert to_text(E.Range(c(2), c(5))) == "range(2, 7)"


def test_scalar_params_and_attrs_in_header():
    A = decl_buffer((4,), "float32", "A")
    alpha = E.Var("alpha", "float32")
    f = PrimFunc("scale", (A, alpha), Evaluate(c(0)), (("target", "llvm"),))
    text = to_text(f)
    assert text.splitlines()[0] == '# attrs: {"target": "llvm"}'
    assert "def scale(A: Buffer(float32, [4]), alpha: float32):" in text
