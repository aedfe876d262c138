"""Rules of tensorlang.arith, one by one: folding, canonical sums, division, bounds, proofs."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tensorlang.arith import (Analyzer, IntBound, bound_of, can_prove_equal, const_int_bound,
                              interval_of, prove, simplify)
from tensorlang.expr import (Add, And, Broadcast, Call, Cast, Div, EQ, FloatImm, FloorDiv,
                             FloorMod, IntImm, LT, Let, Max, Min, Mod, Mul, Not, Or, Ramp, Range,
                             Select, Sub, const, var)
from tensorlang.ir.buffer import decl_buffer
from tensorlang.ir.structural import structural_equal


def _show(e) -> str:
    try:
        return str(e)
    except Exception:  # the printer is optional for these tests
        return object.__repr__(e)


def same(actual, expected) -> bool:
    """Structural equality with a readable failure message."""
    ok = structural_equal(actual, expected)
    if not ok:
        print("actual:  ", _show(actual))
        print("expected:", _show(expected))
    return ok


def R(lo, extent):
    return Range(const(lo) if isinstance(lo, int) else lo,
                 const(extent) if isinstance(extent, int) else extent)


def imm(value, dtype="int32"):
    return IntImm(value, dtype)


def T():
    return IntImm(1, "bool")


def F():
    return IntImm(0, "bool")


@pytest.fixture
def xyz():
    return var("x"), var("y"), var("z")


# -- constant folding --------------------------------------------------------------------------

@pytest.mark.parametrize("cls, a, b, expected", [
    (Add, 7, -3, 4), (Sub, 7, 10, -3), (Mul, -4, 6, -24),
    (FloorDiv, -7, 2, -4), (FloorMod, -7, 2, 1), (FloorDiv, 7, -2, -4), (FloorMod, 7, -2, -1),
    (Div, -7, 2, -3), (Mod, -7, 2, -1), (Div, 7, -2, -3), (Mod, 7, -2, 1),
    (Min, 3, -5, -5), (Max, 3, -5, 3),
])
def test_fold_int(cls, a, b, expected):
    out = simplify(cls(imm(a), imm(b), "int32"))
    assert same(out, imm(expected))


def test_fold_int_wraps_to_dtype():
    assert same(simplify(Add(imm(2**31 - 1), imm(1), "int32")), imm(-2**31))
    assert same(simplify(Mul(imm(100, "int8"), imm(3, "int8"), "int8")), imm(44, "int8"))
    assert same(simplify(Sub(imm(1, "uint8"), imm(2, "uint8"), "uint8")), imm(255, "uint8"))
    big = simplify(Mul(imm(2**40, "int64"), imm(4, "int64"), "int64"))
    assert same(big, imm(2**42, "int64"))


def test_division_by_zero_is_not_folded():
    e = FloorDiv(imm(4), imm(0), "int32")
    assert same(simplify(e), e)
    e = Mod(imm(4), imm(0), "int32")
    assert same(simplify(e), e)


def test_fold_float_in_its_own_precision():
    out = simplify(Add(FloatImm(0.1, "float32"), FloatImm(0.2, "float32"), "float32"))
    assert out.dtype == "float32"
    assert out.value == float(np.float32(0.1) + np.float32(0.2))
    out = simplify(Div(FloatImm(1.0, "float16"), FloatImm(3.0, "float16"), "float16"))
    assert out.value == float(np.float16(1.0) / np.float16(3.0))
    out = simplify(Div(FloatImm(1.0, "float64"), FloatImm(0.0, "float64"), "float64"))
    assert out.value == math.inf
    nan = simplify(Min(FloatImm(math.nan, "float32"), FloatImm(1.0, "float32"), "float32"))
    assert math.isnan(nan.value)


def test_fold_float_comparisons_with_nan():
    nan, one = FloatImm(math.nan, "float32"), FloatImm(1.0, "float32")
    assert same(simplify(LT(nan, one, "bool")), F())
    assert same(simplify(EQ(nan, nan, "bool")), F())
    x = var("a", "float32")
    e = EQ(x, x, "bool")  # NaN != NaN: never folded for floats
    assert same(simplify(e), e)


def test_fold_cast():
    assert same(simplify(Cast(imm(300), "int8")), imm(44, "int8"))
    assert same(simplify(Cast(imm(-1), "uint16")), imm(65535, "uint16"))
    assert same(simplify(Cast(FloatImm(-2.7, "float32"), "int32")), imm(-2))
    assert same(simplify(Cast(imm(2**24 + 1), "float32")), FloatImm(float(2**24), "float32"))
    assert same(simplify(Cast(imm(5), "bool")), T())
    assert same(simplify(Cast(FloatImm(0.5, "float32"), "float16")), FloatImm(0.5, "float16"))
    # undefined conversions stay for run time
    e = Cast(FloatImm(math.nan, "float32"), "int32")
    assert same(simplify(e), e)
    e = Cast(FloatImm(1e20, "float32"), "int32")
    assert same(simplify(e), e)


def test_cast_round_trip_through_a_wider_type():
    x = var("x")
    assert same(simplify(Cast(Cast(x, "int64"), "int32")), x)
    narrowing = Cast(Cast(x, "int8"), "int32")
    assert same(simplify(narrowing), narrowing)


def test_fold_exact_intrinsics_only():
    assert same(simplify(Call("floor", (FloatImm(-1.5, "float32"),), "float32")),
                FloatImm(-2.0, "float32"))
    assert same(simplify(Call("round", (FloatImm(2.5, "float32"),), "float32")),
                FloatImm(2.0, "float32"))
    assert same(simplify(Call("abs", (imm(-3),), "int32")), imm(3))
    e = Call("exp", (FloatImm(1.0, "float32"),), "float32")
    assert same(simplify(e), e)


# -- canonical linear form ---------------------------------------------------------------------

def test_like_terms_cancel():
    o = var("o")
    assert same(simplify((o * 4 + 3) - (o * 4) + 1), imm(4))
    x = var("x")
    assert same(simplify(x * 2 + x), x * 3)
    assert same(simplify(x - x), imm(0))
    assert same(simplify(x + 0), x)
    assert same(simplify(x * 1), x)
    assert same(simplify(x * 0), imm(0))


def test_products_commute_and_distribute(xyz):
    x, y, n = xyz
    assert same(simplify(x * y - y * x), imm(0))
    assert same(simplify((x + 1) * n - x * n), n)
    assert same(simplify(((x * 8 + y) * 4 + 2) - x * 32), y * 4 + 2)


def test_order_is_deterministic(xyz):
    x, y, z = xyz
    a = simplify(z + x * 2 + y)
    b = simplify(y + z + x + x)
    assert same(a, b)
    assert same(a, x * 2 + y + z)  # variables in creation order
    assert same(simplify(y - x), y - x)  # subtraction stays subtraction
    assert same(simplify(3 - x * 2), 3 - x * 2)


def test_int64_stays_int64():
    i = var("i", "int64")
    out = simplify(i * 2 + i + Cast(imm(5), "int64") - 5)
    assert out.dtype == "int64"
    assert same(out, Mul(i, imm(3, "int64"), "int64"))


def test_unsigned_only_folds_and_identities():
    u = var("u", "uint32")
    e = Sub(Add(u, imm(3, "uint32"), "uint32"), imm(3, "uint32"), "uint32")
    out = simplify(e)
    assert out.dtype == "uint32"
    assert same(simplify(Add(u, imm(0, "uint32"), "uint32")), u)
    assert same(simplify(Sub(u, u, "uint32")), imm(0, "uint32"))


# -- floor division and remainder ----------------------------------------------------------------

def test_floordiv_splits_off_multiples(xyz):
    x, y, _ = xyz
    assert same(simplify((x * 8 + y) // 8), x + y // 8)
    assert same(simplify((x * 8 + y) // 8, {y: R(0, 8)}), x)
    assert same(simplify((x * 8 + y) % 8), y % 8)
    assert same(simplify((x * 8 + y) % 8, {y: R(0, 8)}), y)
    assert same(simplify((x * 8 + y) // 8, {y: R(8, 8)}), x + 1)
    assert same(simplify((x * 8 + y) % 8, {y: R(8, 8)}), y - 8)


def test_floordiv_trivial_divisors_and_ranges(xyz):
    x, _, _ = xyz
    assert same(simplify(x // 1), x)
    assert same(simplify(x % 1), imm(0))
    assert same(simplify(x // 16, {x: R(0, 16)}), imm(0))
    assert same(simplify(x % 16, {x: R(0, 16)}), x)
    assert same(simplify(x // 16, {x: R(-16, 16)}), imm(-1))  # floor, not truncation
    e = x // 16
    assert same(simplify(e, {x: R(-1, 16)}), e)


def test_floordiv_nested(xyz):
    x, _, _ = xyz
    assert same(simplify((x // 4) // 8), x // 32)
    e = (x % 32) // 4
    assert same(simplify(e), e)
    assert same(simplify((x % 32) // 4, {x: R(0, 4)}), imm(0))
    assert same(simplify((x % 16) % 8), x % 8)
    assert same(simplify((x % 8) % 16), x % 8)


def test_floordiv_negative_numbers_keep_floor_semantics(xyz):
    x, _, _ = xyz
    # -1 // 8 == -1 and -1 % 8 == 7: nothing may be dropped without ranges
    e = (x * 8 - 1) // 8
    out = simplify(e)
    assert same(out, x + (-1) // imm(8)) or same(out, x - 1)
    assert same(simplify((x * 8 - 1) % 8), imm(7))


def test_div_mod_merge(xyz):
    x, _, _ = xyz
    assert same(simplify((x // 4) * 4 + x % 4), x)
    assert same(simplify(x - (x // 4) * 4), x % 4)


def test_fused_then_split_indices():
    fo, fi = var("fo"), var("fi")
    ranges = {fi: R(0, 4)}
    assert same(simplify((fo * 4 + fi) // 4, ranges), fo)
    assert same(simplify((fo * 4 + fi) % 4, ranges), fi)
    i, ii, di = var("i"), var("ii"), var("di")
    assert same(simplify(((i * 8 + ii) * 4 + di) // 4, {di: R(0, 4)}), i * 8 + ii)
    assert same(simplify(((i * 8 + ii) * 4 + di) % 32, {di: R(0, 4), ii: R(0, 8)}),
                ii * 4 + di)


def test_gcd_of_divisor_and_terms(xyz):
    x, _, _ = xyz
    assert same(simplify((x * 4 + 2) // 8), x // 2)  # == (x*2 + 1) // 4 == x // 2
    assert same(simplify((x * 16 + 15) // 32), x // 2)
    assert same(simplify((x * 4) % 8), (x % 2) * 4)
    assert same(simplify((x * 4 + 6) % 8), ((x + 1) % 2) * 4 + 2)


def test_peel_a_term_whose_coefficient_divides_the_divisor(xyz):
    f, fi, _ = xyz
    r = {fi: R(0, 16)}
    assert same(simplify((f * 16 + fi) // 32, r), f // 2)
    assert same(simplify((f * 16 + fi) % 32, r), fi + (f % 2) * 16)  # variables first
    assert same(simplify((f * 16 + fi) // 32 * 32 + (f * 16 + fi) % 32, r), f * 16 + fi)
    e = (f * 16 + fi) // 32
    assert same(simplify(e, {fi: R(0, 17)}), e)


def test_truncating_division_needs_non_negative_operands(xyz):
    x, y, _ = xyz
    e = Div(x * 8 + y, imm(8), "int32")
    assert same(simplify(e, {x: R(0, 10), y: R(0, 8)}), x)
    assert same(simplify(e, {y: R(0, 8)}), e)  # x may be negative
    m = Mod(x * 8 + y, imm(8), "int32")
    assert same(simplify(m, {x: R(0, 10), y: R(0, 8)}), y)
    assert same(simplify(m, {y: R(0, 8)}), m)
    assert same(simplify(Div(x, imm(1), "int32")), x)
    assert same(simplify(Mod(x, imm(1), "int32")), imm(0))


# -- min / max -----------------------------------------------------------------------------------

def test_min_max(xyz):
    x, y, _ = xyz
    assert same(simplify(Min(x + 1, x + 3, "int32")), x + 1)
    assert same(simplify(Max(x + 1, x + 3, "int32")), x + 3)
    assert same(simplify(Min(x, y, "int32"), {x: R(0, 4), y: R(4, 4)}), x)
    assert same(simplify(Max(x, imm(0), "int32"), {x: R(0, 16)}), x)
    assert same(simplify(Min(x, imm(16), "int32"), {x: R(0, 16)}), x)
    e = Min(x, y, "int32")
    assert same(simplify(e), e)
    assert same(simplify(Min(Min(x, imm(8), "int32"), imm(4), "int32")),
                Min(x, imm(4), "int32"))
    assert same(simplify(Min(imm(4), x, "int32")), Min(x, imm(4), "int32"))


def test_float_min_is_not_reordered():
    a = var("a", "float32")
    e = Min(FloatImm(1.0, "float32"), a, "float32")
    assert same(simplify(e), e)


# -- comparisons and logic ------------------------------------------------------------------------

def test_comparisons_from_ranges():
    i, o, ii = var("i"), var("o"), var("ii")
    assert same(simplify(i < 16, {i: R(0, 16)}), T())
    assert same(simplify(i >= 16, {i: R(0, 16)}), F())
    assert same(simplify(i >= 0, {i: R(0, 16)}), T())
    guard = o * 4 + ii < 10
    assert same(simplify(guard, {o: R(0, 3), ii: R(0, 4)}), guard)
    assert same(simplify(o * 4 + ii < 12, {o: R(0, 3), ii: R(0, 4)}), T())


def test_comparisons_cancel_and_normalise(xyz):
    x, y, n = xyz
    assert same(simplify(x + 1 < n + 1), x < n)
    assert same(simplify(x * 4 < 8), x < 2)
    assert same(simplify(x * 4 <= 9), x <= 2)
    assert same(simplify(x * 4 + 2 == 7), F())
    assert same(simplify(x + y == y + x), T())
    assert same(simplify(x - 3 < 0), x < 3)


def test_logic_folding(xyz):
    x, y, _ = xyz
    c = x < y
    assert same(simplify(And(c, T(), "bool")), c)
    assert same(simplify(And(c, F(), "bool")), F())
    assert same(simplify(Or(c, T(), "bool")), T())
    assert same(simplify(Or(F(), c, "bool")), c)
    assert same(simplify(Not(T(), "bool")), F())
    assert same(simplify(Not(Not(c, "bool"), "bool")), c)
    assert same(simplify(Not(x < 5, "bool")), x >= 5)
    assert same(simplify(And(c, Not(c, "bool"), "bool")), F())
    assert same(simplify(And(x < 5, x >= 0, "bool"), {x: R(0, 5)}), T())


def test_select_and_if_then_else(xyz):
    x, y, _ = xyz
    assert same(simplify(Select(T(), x, y, "int32")), x)
    assert same(simplify(Select(x < 0, x, y, "int32"), {x: R(0, 4)}), y)
    assert same(simplify(Select(x < y, x + 1, 1 + x, "int32")), x + 1)
    load = decl_buffer((4,), "float32", "A")[x]
    ite = Call("if_then_else", (x < 4, load, FloatImm(0.0, "float32")), "float32")
    assert same(simplify(ite, {x: R(0, 4)}), load)
    assert same(simplify(Call("likely", (x < 4,), "bool"), {x: R(0, 4)}), T())


def test_let(xyz):
    x, y, v = xyz
    assert same(simplify(Let(v, imm(3), v * 2 + x, "int32")), x + 6)
    e = Let(v, x * y, v + v, "int32")
    out = simplify(e)
    assert isinstance(out, Let)
    assert same(out.body, v * 2)
    assert same(simplify(Let(v, x, v + 1, "int32")), x + 1)


# -- floats ---------------------------------------------------------------------------------------

def test_float_identities_only():
    a, b = var("a", "float32"), var("b", "float32")
    assert same(simplify(a * 1.0), a)
    assert same(simplify(1.0 * a), a)
    assert same(simplify(a / 1.0), a)
    assert same(simplify(a - 0.0), a)
    e = a + 0.0  # -0.0 + 0.0 is +0.0: not an identity
    assert same(simplify(e), e)
    e = (a + b) - b  # no reassociation
    assert same(simplify(e), e)
    e = a * 0.0  # NaN and infinities
    assert same(simplify(e), e)


# -- vectors --------------------------------------------------------------------------------------

def test_ramp_arithmetic():
    io = var("io")
    v8 = "int32x8"
    ramp = Ramp(imm(0), imm(1), 8, v8)
    out = simplify(Add(Broadcast(io * 8, 8, v8), ramp, v8))
    assert same(out, Ramp(io * 8, imm(1), 8, v8))
    out = simplify(Mul(out, Broadcast(imm(2), 8, v8), v8))
    assert same(out, Ramp(io * 16, imm(2), 8, v8))
    assert same(simplify(Ramp(io, imm(0), 8, v8)), Broadcast(io, 8, v8))


def test_ramp_division_within_one_block():
    io = var("io")
    v8 = "int32x8"
    ramp = Ramp(io * 8, imm(1), 8, v8)
    eight = Broadcast(imm(8), 8, v8)
    assert same(simplify(FloorDiv(ramp, eight, v8)), Broadcast(io, 8, v8))
    assert same(simplify(FloorMod(ramp, eight, v8)), Ramp(imm(0), imm(1), 8, v8))
    e = FloorDiv(ramp, Broadcast(imm(4), 8, v8), v8)  # spans two blocks
    assert same(simplify(e), e)


# -- const_int_bound ------------------------------------------------------------------------------

def test_const_int_bound_interval_arithmetic(xyz):
    x, y, _ = xyz
    r = {x: R(0, 4), y: R(-2, 5)}
    assert const_int_bound(x * 4 + y, r) == IntBound(-2, 14)
    assert const_int_bound(x - y, r) == IntBound(-2, 5)
    assert const_int_bound(x * y, r) == IntBound(-6, 6)
    assert const_int_bound(y // 2, r) == IntBound(-1, 1)
    assert const_int_bound(y % 3, r) == IntBound(0, 2)
    assert const_int_bound(Div(y, imm(2), "int32"), r) == IntBound(-1, 1)
    assert const_int_bound(Mod(y, imm(3), "int32"), r) == IntBound(-2, 2)
    assert const_int_bound(Min(x, y, "int32"), r) == IntBound(-2, 2)
    assert const_int_bound(Max(x, y, "int32"), r) == IntBound(0, 3)
    assert const_int_bound(Select(x < 2, x, y + 10, "int32"), r) == IntBound(0, 12)
    assert const_int_bound(Cast(x, "int64"), r) == IntBound(0, 3)


def test_const_int_bound_unknowns(xyz):
    n, _, _ = xyz
    assert const_int_bound(n) == IntBound(None, None)
    assert const_int_bound(n // 2) == IntBound(None, None)
    assert const_int_bound(n % 4) == IntBound(0, 3)
    assert const_int_bound(Min(n, imm(16), "int32")) == IntBound(None, 16)
    assert const_int_bound(var("c", "int8")) == IntBound(-128, 127)
    assert const_int_bound(var("u", "uint32")) == IntBound(0, None)
    assert const_int_bound(var("a", "float32")) == IntBound(None, None)
    load = decl_buffer((4,), "int8", "A")[imm(0)]
    assert const_int_bound(Cast(load, "int32")) == IntBound(-128, 127)


def test_const_int_bound_symbolic_ranges():
    i, o, n = var("i"), var("o"), var("n")
    r = {o: R(0, 3), i: R(o * 4, 4)}
    assert const_int_bound(i, r) == IntBound(0, 11)
    assert const_int_bound(i, {n: R(0, 10), i: R(n, n)}) == IntBound(0, 17)
    assert const_int_bound(i, {n: R(0, 10), i: R(10 - n, n)}) == IntBound(1, 9)


def test_const_int_bound_uses_linear_form():
    x = var("x")
    assert const_int_bound((x + 1) - x) == IntBound(1, 1)


# -- prove / can_prove_equal ----------------------------------------------------------------------

def test_prove(xyz):
    x, y, _ = xyz
    assert prove(x < 16, {x: R(0, 16)})
    assert not prove(x < 15, {x: R(0, 16)})
    assert not prove(x < 16)  # unknown is not proven
    assert prove(x * 2 + 1 != y * 2)  # odd vs even
    assert prove(And(x >= 0, x < 16, "bool"), {x: R(0, 16)})


def test_can_prove_equal(xyz):
    x, y, _ = xyz
    assert can_prove_equal((x + y) * 2, x * 2 + y * 2)
    assert can_prove_equal(x // 4, imm(0), {x: R(0, 4)})
    assert not can_prove_equal(x, y)
    a = var("a", "float32")
    assert can_prove_equal(a * 1.0, a)


# -- bound_of -------------------------------------------------------------------------------------

def test_bound_of_symbolic_tile():
    i, di, o, f = var("i"), var("di"), var("o"), var("f")
    r = bound_of(i + di, {i: R(o * f, f), di: R(0, 3)})
    assert same(r.min, o * f) or same(r.min, f * o)
    assert same(r.extent, f + 2)
    r = bound_of(i + di, {i: R(o * 4, 4), di: R(0, 3)})
    assert same(r.min, o * 4)
    assert same(r.extent, imm(6))


def test_bound_of_negative_coefficients_and_constants():
    i, j, n = var("i"), var("j"), var("n")
    r = bound_of(n - i, {i: R(0, 4)})
    assert same(r.min, n - 3) and same(r.extent, imm(4))
    r = bound_of(i * 16 - j * 2, {i: R(0, 4), j: R(0, 8)})
    assert same(r.min, imm(-14)) and same(r.extent, imm(63))


def test_bound_of_division_and_remainder():
    io, ii = var("io"), var("ii")
    r = bound_of((io * 4 + ii) // 2, {ii: R(0, 4)})
    assert same(r.min, io * 2) and same(r.extent, imm(2))
    r = bound_of((io * 4 + ii) % 4, {ii: R(0, 4)})
    assert same(r.min, imm(0)) and same(r.extent, imm(4))
    r = bound_of(ii % 8, {ii: R(0, 4)})
    assert same(r.min, imm(0)) and same(r.extent, imm(4))
    r = bound_of((io * 4 + ii) % 8, {ii: R(0, 4)})  # inside one period for every io
    assert same(r.min, (io % 2) * 4) and same(r.extent, imm(4))
    r = bound_of((io * 4 + ii) % 8, {ii: R(0, 5)})  # may wrap around a period
    assert same(r.min, imm(0)) and same(r.extent, imm(8))


def test_bound_of_min_max_select():
    i, j, n = var("i"), var("j"), var("n")
    r = bound_of(Min(i, n, "int32"), {i: R(0, 4)})
    assert same(r.min, Min(n, imm(0), "int32"))
    r = bound_of(Select(i < 2, i, j, "int32"), {i: R(0, 4), j: R(0, 16)})
    assert same(r.min, imm(0)) and same(r.extent, imm(16))
    r = bound_of(Max(i * 2, j, "int32"), {i: R(0, 4), j: R(0, 3)})
    assert same(r.min, imm(0)) and same(r.extent, imm(7))


def test_bound_of_nested_ranges_and_context():
    i, j = var("i"), var("j")
    r = bound_of(i, {i: R(j * 2, 2), j: R(0, 8)})
    assert same(r.min, imm(0)) and same(r.extent, imm(16))
    lo_hi = interval_of(i + 1, {i: R(0, 4)})
    assert same(lo_hi[0], imm(1)) and same(lo_hi[1], imm(4))


def test_bound_of_gives_up_on_unbounded_terms():
    i = var("i")
    idx = decl_buffer((16,), "int32", "Idx")
    assert bound_of(idx[i], {i: R(0, 4)}) is None
    narrow = Cast(decl_buffer((16,), "int8", "Small")[i], "int32")
    r = bound_of(narrow, {i: R(0, 4)})
    assert same(r.min, imm(-128)) and same(r.extent, imm(256))
    n = var("n")
    assert bound_of(i * n, {i: R(0, 4)}) is None  # the sign of n is unknown
    r = bound_of(i * n, {i: R(0, 4)}, context={n: R(0, 100)})
    assert same(r.min, imm(0)) and same(r.extent, n * 3 + 1)


def test_bound_of_vector_index():
    io = var("io")
    r = bound_of(Ramp(io * 8, imm(1), 8, "int32x8"), {io: R(0, 4)})
    assert same(r.min, imm(0)) and same(r.extent, imm(32))


# -- Analyzer -------------------------------------------------------------------------------------

def test_analyzer_bind_scopes():
    i, n = var("i"), var("n")
    ana = Analyzer()
    assert not ana.prove(i < 16)
    with ana.bind(i, Range(imm(0), imm(16))):
        assert ana.prove(i < 16)
        assert same(ana.simplify(i // 16), imm(0))
    assert not ana.prove(i < 16)
    with ana.bind(n, imm(7)):
        assert ana.prove(n == 7)
    with ana.assuming(i < n):
        assert ana.prove(i < n)
        assert same(ana.simplify(i >= n), F())


def test_simplify_keeps_dtype_of_every_node():
    i = var("i", "int64")
    e = Select(i < 4, i * 2, i + 1, "int64")
    out = simplify(e, {i: Range(IntImm(0, "int64"), IntImm(4, "int64"))})
    assert out.dtype == "int64"
    assert same(out, Mul(i, IntImm(2, "int64"), "int64"))


def test_simplify_is_idempotent(xyz):
    x, y, z = xyz
    e = ((x * 8 + y) // 4 + z * 3 - x) % 16 + Min(x + 2, y, "int32") * 2
    once = simplify(e)
    assert same(simplify(once), once)


def test_deep_sums_do_not_recurse_per_term():
    x = var("x")
    e = x
    for k in range(3000):
        e = Add(e, imm(1), "int32")
    assert same(simplify(e), x + 3000)
