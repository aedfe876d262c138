"""simplify_stmt: loop IR simplified under the ranges of its loops (before / expected pairs)."""
from __future__ import annotations

from tensorlang.arith import simplify_stmt
from tensorlang.expr import Call, FloatImm, IntImm, Range, var
from tensorlang.ir.buffer import decl_buffer
from tensorlang.ir.function import PrimFunc
from tensorlang.ir.stmt import (AssertStmt, Evaluate, For, IfThenElse, LetStmt, SeqStmt,
                                BufferStore)
from tensorlang.ir.structural import structural_equal


def _show(node) -> str:
    try:
        return str(node)
    except Exception:  # the printer is optional for these tests
        return object.__repr__(node)


def same(actual, expected) -> bool:
    ok = structural_equal(actual, expected)
    if not ok:
        print("actual:\n", _show(actual))
        print("expected:\n", _show(expected))
    return ok


def imm(v):
    return IntImm(v, "int32")


def store(buf, index, value=1.0):
    return BufferStore(buf, FloatImm(value, "float32"), (index,))


def loop(v, extent, body, kind="serial", lo=0, **kw):
    return For(v, imm(lo) if isinstance(lo, int) else lo,
               imm(extent) if isinstance(extent, int) else extent, kind, body, **kw)


A = decl_buffer((64,), "float32", "A")


def test_provably_true_guard_is_removed():
    i = var("i")
    before = loop(i, 16, IfThenElse(i < 16, store(A, i)))
    assert same(simplify_stmt(before), loop(i, 16, store(A, i)))


def test_provably_false_guard_keeps_else_or_drops():
    i = var("i")
    before = loop(i, 16, IfThenElse(i >= 16, store(A, i), store(A, i, 2.0)))
    assert same(simplify_stmt(before), loop(i, 16, store(A, i, 2.0)))
    before = loop(i, 16, SeqStmt((IfThenElse(i >= 16, store(A, i)), store(A, i, 3.0))))
    assert same(simplify_stmt(before), loop(i, 16, store(A, i, 3.0)))
    before = loop(i, 16, IfThenElse(i >= 16, store(A, i)))
    assert same(simplify_stmt(before), Evaluate(imm(0)))


def test_guard_of_a_non_divisible_split_stays():
    o, ii = var("o"), var("ii")
    body = IfThenElse(o * 4 + ii < 10, store(A, o * 4 + ii))
    before = loop(o, 3, loop(ii, 4, body))
    assert same(simplify_stmt(before), before)
    assert simplify_stmt(before) is before  # nothing changed: same node back


def test_indices_are_simplified_under_loop_ranges():
    o, ii = var("o"), var("ii")
    before = loop(o, 4, loop(ii, 4, store(A, (o * 4 + ii) // 4 * 4 + (o * 4 + ii) % 4)))
    expected = loop(o, 4, loop(ii, 4, store(A, o * 4 + ii)))
    assert same(simplify_stmt(before), expected)
    before = loop(o, 4, loop(ii, 4, store(A, (o * 4 + ii) // 4)))
    assert same(simplify_stmt(before), loop(o, 4, loop(ii, 4, store(A, o))))


def test_loops_of_extent_zero_and_one():
    i, j = var("i"), var("j")
    assert same(simplify_stmt(loop(i, 0, store(A, i))), Evaluate(imm(0)))
    assert same(simplify_stmt(loop(i, 1, store(A, i * 4 + 1), lo=3)), store(A, imm(13)))
    nest = loop(i, 2, loop(j, 1, store(A, i * 8 + j)))
    assert same(simplify_stmt(nest), loop(i, 2, store(A, i * 8)))


def test_annotated_and_bound_loops_of_extent_one_are_kept():
    i = var("i")
    for before in (loop(i, 1, store(A, i), kind="parallel"),
                   loop(i, 1, store(A, i), kind="thread_binding", thread_tag="threadIdx.x"),
                   loop(i, 1, store(A, i), annotations=(("pragma_unroll", 1),))):
        assert same(simplify_stmt(before), before)


def test_nested_sequences_are_flattened():
    i = var("i")
    a, b, c = store(A, imm(0)), store(A, imm(1)), store(A, imm(2))
    before = SeqStmt((SeqStmt((a, Evaluate(imm(0)))), SeqStmt((b, SeqStmt((c,)))),
                      loop(i, 0, store(A, i))))
    assert same(simplify_stmt(before), SeqStmt((a, b, c)))


def test_branch_conditions_are_known_inside_branches():
    i = var("i")
    inner = IfThenElse(i >= 5, store(A, i, 2.0))
    before = loop(i, 10, IfThenElse(i < 5, store(A, i), inner))
    expected = loop(i, 10, IfThenElse(i < 5, store(A, i), store(A, i, 2.0)))
    assert same(simplify_stmt(before), expected)


def test_let_values_bound_their_variable():
    i, j = var("i"), var("j")
    before = loop(i, 8, LetStmt(j, i * 2, IfThenElse(j < 16, store(A, j))))
    expected = loop(i, 8, LetStmt(j, i * 2, store(A, j)))
    assert same(simplify_stmt(before), expected)
    before = LetStmt(j, imm(3), store(A, j + 1))
    assert same(simplify_stmt(before), store(A, imm(4)))


def test_true_asserts_disappear():
    i = var("i")
    before = loop(i, 4, AssertStmt(i < 4, "in range", store(A, i)))
    assert same(simplify_stmt(before), loop(i, 4, store(A, i)))


def test_primfunc_in_primfunc_out_with_non_negative_shapes():
    n, i = var("n"), var("i")
    B = decl_buffer((n,), "float32", "B")
    body = loop(i, n, IfThenElse(i >= 0, store(B, i), store(B, i, 2.0)))
    func = PrimFunc("f", (B,), body)
    out = simplify_stmt(func)
    assert isinstance(out, PrimFunc)
    assert same(out.body, loop(i, n, store(B, i)))
    assert out.params == func.params


def test_symbolic_tail_guard_stays():
    n, o, ii = var("n"), var("o"), var("ii")
    B = decl_buffer((n,), "float32", "B")
    guard = IfThenElse(o * 4 + ii < n, store(B, o * 4 + ii))
    body = loop(o, (n + 3) // 4, loop(ii, 4, guard))
    out = simplify_stmt(PrimFunc("f", (B,), body))
    assert same(out.body, body)


def test_if_then_else_expression_inside_store():
    i = var("i")
    padded = Call("if_then_else", (i < 16, A[i], FloatImm(0.0, "float32")), "float32")
    before = loop(i, 16, BufferStore(A, padded, (i,)))
    assert same(simplify_stmt(before), loop(i, 16, BufferStore(A, A[i], (i,))))


def test_loop_with_symbolic_min_and_extent():
    o, i = var("o"), var("i")
    body = loop(o, 3, loop(i, 4, IfThenElse(i < 12, store(A, i)), lo=o * 4))
    assert same(simplify_stmt(body), loop(o, 3, loop(i, 4, store(A, i), lo=o * 4)))


def test_ranges_do_not_leak_out_of_their_loop():
    i = var("i")
    guard = IfThenElse(i < 16, store(A, i))
    before = SeqStmt((loop(i, 16, store(A, i)), guard))
    out = simplify_stmt(before)
    assert same(out, before)


def test_range_of_the_argument_kept():
    # Range objects are accepted by simplify too
    i = var("i")
    from tensorlang.arith import simplify
    assert same(simplify(i < 4, {i: Range(imm(0), imm(4))}), IntImm(1, "bool"))


# -- random loop nests: the interpreter gives the same answer before and after -------------------

def _random_index(rng, loop_vars, depth=2):
    from tensorlang.expr import FloorDiv, FloorMod, Max, Min
    if depth == 0 or rng.random() < 0.3:
        if loop_vars and rng.random() < 0.8:
            return rng.choice(loop_vars)
        return imm(rng.randint(-5, 9))
    a = _random_index(rng, loop_vars, depth - 1)
    b = _random_index(rng, loop_vars, depth - 1)
    kind = rng.randrange(7)
    if kind == 0:
        return a + b
    if kind == 1:
        return a - b
    if kind == 2:
        return a * rng.choice([2, 3, 4, 8])
    if kind == 3:
        return FloorDiv(a, imm(rng.choice([2, 4, 8])), "int32")
    if kind == 4:
        return FloorMod(a, imm(rng.choice([2, 4, 8])), "int32")
    return (Min if kind == 5 else Max)(a, b, "int32")


def _random_body(rng, out, loop_vars, depth):
    from tensorlang.expr import FloorMod
    roll = rng.random()
    if depth > 0 and roll < 0.35:
        v = var(f"i{depth}")
        lo = rng.choice([imm(0), imm(rng.randint(-3, 3))] +
                        ([loop_vars[-1] * rng.choice([2, 4])] if loop_vars else []))
        extent = imm(rng.choice([0, 1, 1, 2, 3, 4, 5]))
        kind = rng.choice(["serial", "serial", "serial", "parallel"])
        return For(v, lo, extent, kind, _random_body(rng, out, loop_vars + [v], depth - 1))
    if depth > 0 and roll < 0.55:
        if loop_vars and rng.random() < 0.4:  # a bound on one variable, as padding makes
            v, c = rng.choice(loop_vars), imm(rng.randint(-2, 6))
            cond = rng.choice([v < c, v >= c, v <= c, v > c, v == c, c < v])
        else:
            cond = _random_index(rng, loop_vars) < _random_index(rng, loop_vars)
        other = _random_body(rng, out, loop_vars, depth - 1) if rng.random() < 0.5 else None
        return IfThenElse(cond, _random_body(rng, out, loop_vars, depth - 1), other)
    if depth > 0 and roll < 0.7:
        return SeqStmt(tuple(_random_body(rng, out, loop_vars, depth - 1) for _ in range(2)))
    if depth > 0 and roll < 0.8:
        v = var(f"t{depth}")
        return LetStmt(v, _random_index(rng, loop_vars),
                       _random_body(rng, out, loop_vars + [v], depth - 1))
    index = FloorMod(_random_index(rng, loop_vars) + 1000, imm(out.shape[0].value), "int32")
    value = _random_index(rng, loop_vars)
    return BufferStore(out, out[index] + value, (index,))


def test_random_loop_nests_keep_their_results():
    import random

    import numpy as np

    from tensorlang.ir import interpreter

    out = decl_buffer((16,), "int32", "Out")
    changed = 0
    for seed in range(150):
        rng = random.Random(seed)
        body = _random_body(rng, out, [], 5)
        func = PrimFunc("f", (out,), body)
        simple = simplify_stmt(func)
        changed += simple is not func
        expected = np.zeros(16, "int32")
        actual = np.zeros(16, "int32")
        interpreter.run(func, expected)
        interpreter.run(simple, actual)
        np.testing.assert_array_equal(actual, expected, err_msg=f"seed {seed}")
    assert changed > 50


def test_guard_on_one_variable_narrows_its_range():
    i = var("i")
    inner = IfThenElse(i < 12, store(A, i, 2.0))
    before = loop(i, 16, IfThenElse(i < 8, SeqStmt((store(A, i), inner))))
    expected = loop(i, 16, IfThenElse(i < 8, SeqStmt((store(A, i), store(A, i, 2.0)))))
    assert same(simplify_stmt(before), expected)
    # padding: inside `i >= 1`, i - 1 is a valid index
    before = loop(i, 17, IfThenElse(i >= 1, IfThenElse(i - 1 >= 0, store(A, i - 1))))
    expected = loop(i, 17, IfThenElse(i >= 1, store(A, i - 1)))
    assert same(simplify_stmt(before), expected)
