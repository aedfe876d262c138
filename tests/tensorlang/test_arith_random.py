"""Randomized property tests of tensorlang.arith: simplification keeps values, bounds contain them.

A tiny reference evaluator runs the original and the simplified expression at random points.
"""
from __future__ import annotations

import functools
import random

import pytest

from tensorlang import dtype as dt
from tensorlang.arith import bound_of, const_int_bound, simplify
from tensorlang.ir.functor import post_order_visit
from tensorlang.expr import (Add, And, Broadcast, Call, Cast, Div, EQ, FloorDiv, FloorMod, GE, GT,
                             IntImm, LE, LT, Let, Max, Min, Mod, Mul, NE, Not, Or, Ramp, Select,
                             Range, Sub, Var, var)


@functools.lru_cache(maxsize=None)
def _limits(dtype: str) -> tuple[int, int]:
    base = dt.element_of(dtype)
    if base == "bool":
        return 0, 1
    bits = dt.bits(base)
    return (0, 1 << bits) if dt.is_uint(base) else (-(1 << (bits - 1)), 1 << bits)


def _wrap(value: int, dtype: str) -> int:
    lo, span = _limits(dtype)
    if span == 1:
        return int(value != 0)
    return (value - lo) % span + lo


def _tdiv(x, y):
    q = abs(x) // abs(y)
    return q if (x >= 0) == (y >= 0) else -q


_BIN = {
    Add: lambda x, y: x + y, Sub: lambda x, y: x - y, Mul: lambda x, y: x * y,
    FloorDiv: lambda x, y: x // y, FloorMod: lambda x, y: x % y,
    Div: _tdiv, Mod: lambda x, y: x - y * _tdiv(x, y),
    Min: min, Max: max,
    LT: lambda x, y: int(x < y), LE: lambda x, y: int(x <= y), GT: lambda x, y: int(x > y),
    GE: lambda x, y: int(x >= y), EQ: lambda x, y: int(x == y), NE: lambda x, y: int(x != y),
    And: lambda x, y: int(bool(x) and bool(y)), Or: lambda x, y: int(bool(x) or bool(y)),
}


def evaluate(e, env: dict):
    """Value of a scalar (or list of lanes for vectors) integer expression; env maps uid -> int."""
    t = type(e)
    if t is IntImm:
        return e.value
    if t is Var:
        return env[e.uid]
    if t in _BIN:
        a, b = evaluate(e.a, env), evaluate(e.b, env)
        if isinstance(a, list) or isinstance(b, list):
            n = len(a) if isinstance(a, list) else len(b)
            a = a if isinstance(a, list) else [a] * n
            b = b if isinstance(b, list) else [b] * n
            return [_wrap(_BIN[t](x, y), e.dtype) for x, y in zip(a, b)]
        return _wrap(_BIN[t](a, b), e.dtype)
    if t is Not:
        a = evaluate(e.a, env)
        return [1 - x for x in a] if isinstance(a, list) else 1 - a
    if t is Select:
        return evaluate(e.true_value if evaluate(e.condition, env) else e.false_value, env)
    if t is Call and e.op == "if_then_else":
        return evaluate(e.args[1] if evaluate(e.args[0], env) else e.args[2], env)
    if t is Cast:
        return _wrap(evaluate(e.value, env), e.dtype)
    if t is Let:
        inner = dict(env)
        inner[e.var.uid] = evaluate(e.value, env)
        return evaluate(e.body, inner)
    if t is Ramp:
        base, stride = evaluate(e.base, env), evaluate(e.stride, env)
        return [_wrap(base + k * stride, e.dtype) for k in range(e.lanes)]
    if t is Broadcast:
        return [evaluate(e.value, env)] * e.lanes
    raise TypeError(f"cannot evaluate {t.__name__}")


# -- random expressions ----------------------------------------------------------------------

_CMPS = (LT, LE, GT, GE, EQ, NE)


class _Gen:
    def __init__(self, rng: random.Random, variables, dtype="int32"):
        self.rng = rng
        self.vars = variables
        self.dtype = dtype

    def const(self, lo=-12, hi=12):
        if dt.is_uint(self.dtype):
            lo = 0
        return IntImm(self.rng.randint(lo, hi), self.dtype)

    def expr(self, depth: int):
        r, d = self.rng, self.dtype
        if depth <= 0 or r.random() < 0.2:
            return r.choice(self.vars) if r.random() < 0.75 else self.const()
        kind = r.choice(["add", "add", "sub", "sub", "mulc", "mulc", "mulp", "mulv", "fdiv",
                         "fmod", "fdiv", "fmod", "div", "mod", "min", "max", "select", "ite"])
        a = self.expr(depth - 1)
        if kind == "add":
            return Add(a, self.expr(depth - 1), d)
        if kind == "sub":
            return Sub(a, self.expr(depth - 1), d)
        if kind == "mulc":
            c = self.const(-6, 6)
            return Mul(a, c, d) if r.random() < 0.5 else Mul(c, a, d)
        if kind == "mulp":  # coefficients that divide the divisors below: index-like splits
            return Mul(a, IntImm(r.choice([2, 4, 8, 16]), d), d)
        if kind == "mulv":
            return Mul(a, self.expr(min(depth - 1, 1)), d)
        if kind in ("fdiv", "fmod", "div", "mod"):
            c = IntImm(r.choice([1, 2, 3, 4, 4, 8, 8, 16, 5, 7]), d)
            cls = {"fdiv": FloorDiv, "fmod": FloorMod, "div": Div, "mod": Mod}[kind]
            return cls(a, c, d)
        if kind in ("min", "max"):
            cls = Min if kind == "min" else Max
            return cls(a, self.expr(depth - 1), d)
        cond = self.cond(depth - 1)
        if kind == "select":
            return Select(cond, a, self.expr(depth - 1), d)
        return Call("if_then_else", (cond, a, self.expr(depth - 1)), d)

    def cond(self, depth: int):
        r = self.rng
        c = r.choice(_CMPS)(self.expr(depth), self.expr(depth), "bool")
        roll = r.random()
        if roll < 0.15:
            return And(c, self.cond(max(depth - 1, 0)), "bool")
        if roll < 0.25:
            return Or(c, self.cond(max(depth - 1, 0)), "bool")
        if roll < 0.3:
            return Not(c, "bool")
        return c


def _random_ranges(rng: random.Random, variables):
    ranges = {}
    for v in variables:
        lo = rng.randint(-10, 10) if rng.random() < 0.5 and not dt.is_uint(v.dtype) else 0
        ranges[v] = Range(IntImm(lo, v.dtype), IntImm(rng.randint(1, 20), v.dtype))
    return ranges


def _check_dtypes(e):
    """Every node keeps operands of its own dtype (no mixing introduced by a rewrite)."""
    def check(n):
        if isinstance(n, (Add, Sub, Mul, Div, Mod, FloorDiv, FloorMod, Min, Max)):
            assert n.a.dtype == n.b.dtype == n.dtype, n
        if isinstance(n, IntImm) and not dt.is_bool(n.dtype):
            bits = dt.bits(n.dtype)
            lo = 0 if dt.is_uint(n.dtype) else -(1 << (bits - 1))
            assert lo <= n.value < lo + (1 << bits), n
    post_order_visit(e, check)


def _within(value, bound) -> bool:
    return (bound.min is None or bound.min <= value) and (bound.max is None or value <= bound.max)


def _samples(rng, ranges, count):
    points = []
    for _ in range(count):
        points.append({v.uid: rng.randint(r.min.value, r.min.value + r.extent.value - 1)
                       for v, r in ranges.items()})
    return points


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint32"])
@pytest.mark.parametrize("seed", range(20))
def test_simplify_preserves_value(seed, dtype):
    rng = random.Random(seed)
    variables = [var("x", dtype), var("y", dtype), var("z", dtype)][: rng.randint(2, 3)]
    gen = _Gen(rng, variables, dtype)
    for _ in range(25):
        ranges = _random_ranges(rng, variables)
        e = gen.expr(rng.randint(1, 5)) if rng.random() < 0.8 else gen.cond(rng.randint(1, 3))
        simple = simplify(e, ranges)
        assert simple.dtype == e.dtype
        _check_dtypes(simple)
        again = simplify(simple, ranges)
        bound = const_int_bound(e, ranges)
        for env in _samples(rng, ranges, 30):
            expected = evaluate(e, env)
            assert evaluate(simple, env) == expected, (seed, env)
            assert evaluate(again, env) == expected, (seed, env)
            assert _within(expected, bound), (seed, env, bound)


@pytest.mark.parametrize("seed", range(25))
def test_simplify_without_ranges_preserves_value(seed):
    """No ranges known: only the unconditional rules may fire."""
    rng = random.Random(1000 + seed)
    variables = [var("x"), var("y"), var("z")]
    gen = _Gen(rng, variables)
    for _ in range(25):
        ranges = _random_ranges(rng, variables)
        e = gen.expr(rng.randint(1, 5))
        simple = simplify(e)
        for env in _samples(rng, ranges, 20):
            assert evaluate(simple, env) == evaluate(e, env), (seed, env)


@pytest.mark.parametrize("seed", range(25))
def test_bound_of_contains_values(seed):
    rng = random.Random(2000 + seed)
    x, y, z = var("x"), var("y"), var("z")
    gen = _Gen(rng, [x, y, z])
    ana_ranges = {z: Range(IntImm(0, "int32"), IntImm(6, "int32"))}
    answered = 0
    for _ in range(25):
        ranges = _random_ranges(rng, [x, y])
        # y's range may depend on z (an outer loop), as after a split
        if rng.random() < 0.5:
            ranges[y] = Range(Mul(z, IntImm(4, "int32"), "int32"), IntImm(4, "int32"))
        e = gen.expr(rng.randint(1, 4))
        rng_xy = bound_of(e, ranges, context=ana_ranges)
        full = {**ranges, **ana_ranges}
        const = const_int_bound(e, full)
        if rng_xy is None:
            continue
        answered += 1
        for zv in range(6):
            lo = evaluate(rng_xy.min, {z.uid: zv})
            ext = evaluate(rng_xy.extent, {z.uid: zv})
            sub = {v: Range(IntImm(evaluate(r.min, {z.uid: zv}), "int32"), r.extent)
                   for v, r in ranges.items()}
            for env in _samples(rng, sub, 15):
                env[z.uid] = zv
                value = evaluate(e, env)
                assert lo <= value < lo + ext, (seed, env, value, lo, ext)
                assert _within(value, const)
    assert answered > 5
