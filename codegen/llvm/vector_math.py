"""float32 exp, log, tanh, sigmoid, erf and pow as inline LLVM IR, for vectors and scalars alike.

Each op is a branch-free sequence of vector instructions (no libm call), so a vectorized loop
stays vectorized. Techniques: range reduction with the exponent taken apart through bitcasts,
Cody-Waite splitting of ln 2, and polynomials fitted here (:func:`_fit`, a weighted
least-squares fit refined towards minimax by Lawson reweighting) rather than copied from a table.

Accuracy, measured against float64 NumPy / SciPy over +-[1e-30, 1e30] log-uniform, linear ranges
around 0, and the overflow / underflow edges (``tests/codegen/test_vector_math.py``):

=========  ====================  ==========================
op         default (max ULP)     ``fast_math=True`` (max ULP)
=========  ====================  ==========================
exp        1.0 (denormals too)   70 (relative error ~4e-6)
log        0.9                   22
tanh       1.3                   51
sigmoid    2.3                   71
erf        1.3                   172 (relative error ~1e-5)
pow        0.5                   0.5 (same code)
=========  ====================  ==========================

``pow`` (:func:`pow_float32`) computes ``exp(y * log|x|)`` in float64 lanes and rounds once:
half an ULP plus ~2^-35 (measured max 0.50002 ULP). It follows C99 ``powf`` for negative bases
(NaN for a non-integer exponent, the sign of an odd integer one), zeros, infinities,
``pow(1, nan) = 1`` and ``pow(nan, 0) = 1``.

Special values follow NumPy: ``exp(89) = inf``, ``exp(-104) = 0`` (denormal results are
produced, rounded once), ``log(0) = -inf``, ``log(x < 0) = nan``, ``tanh`` and ``erf`` of a large
magnitude are +-1, ``sigmoid(-100)`` is the denormal ``exp(-100)`` and ``sigmoid(100) = 1``; NaN
in gives NaN out. float64 returns None: it keeps the LLVM-intrinsic / libm path. ``fast_math``
(``tl.config(fast_math=True)`` at build time) only shortens the polynomials; special values are
handled the same way.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np
from llvmlite import ir

from tensorlang.config import current as current_config

from .types import intrinsic

__all__ = ["IMPLEMENTATIONS", "coefficients", "pow_float32"]

_LN2 = math.log(2.0)
_LN2_HI = float(np.ldexp(np.round(np.ldexp(_LN2, 16)), -16))  # 16 bits: n * hi is exact
_LN2_LO = float(np.float32(_LN2 - _LN2_HI))
_ROUND_MAGIC = 12582912.0  # 1.5 * 2**23: adding it rounds a float32 to an integer, ties to even
_SQRT_HALF_BITS = 0x3F3504F3  # float32 bits of sqrt(0.5), rounded down
_TANH_SMALL = 0.625  # below: odd polynomial; above: 1 - 2 / (exp(2|x|) + 1)
_ERF_SMALL = 0.875  # below: odd polynomial; above: 1 - exp(-x*x) * G(x)
_ERF_ONE = 3.93  # erf(x) rounds to 1 in float32 beyond this


# -- polynomial fits ------------------------------------------------------------------------------
def _fit(target, lo: float, hi: float, degree: int, variable, weight, points: int = 3000,
         dtype=np.float32):
    """``dtype`` coefficients c_k (lowest first) of sum c_k variable(x)**k ~ target(x) on [lo, hi].

    ``weight`` turns the residual into the error that matters (relative or absolute error of
    the final result); Lawson iterations push the weighted least-squares fit towards minimax.
    """
    t = np.cos(np.pi * (np.arange(points) + 0.5) / points)
    x = (lo + hi) / 2 + (hi - lo) / 2 * t
    basis = np.stack([variable(x) ** k for k in range(degree + 1)], axis=1)
    w, lawson = weight(x), np.ones(points)
    for _ in range(40):
        scale = (w * lawson)[:, None]
        c = np.linalg.lstsq(basis * scale, target(x) * scale[:, 0], rcond=None)[0]
        err = np.abs((basis @ c - target(x)) * w) + 1e-300
        lawson = np.sqrt(lawson * lawson * err / err.mean())
    return tuple(float(v) for v in c.astype(dtype))


@functools.cache
def coefficients(name: str, fast: bool) -> tuple:
    """The fitted polynomial of one op (see the module docstring); cached per process."""
    from scipy import special  # only when a kernel first needs it

    half_ln2 = _LN2 / 2
    if name == "exp":  # exp(r) = 1 + r + r^2 q(r), |r| <= ln2/2
        return _fit(lambda r: (np.expm1(r) - r) / (r * r), -half_ln2, half_ln2, 2 if fast else 4,
                    lambda r: r, lambda r: r * r / np.exp(r))
    if name == "log":  # log1p(f) = f + f^2 q(f), f in [sqrt(1/2) - 1, sqrt(2) - 1]
        lo, hi = math.sqrt(0.5) - 1, math.sqrt(2.0) - 1
        return _fit(lambda f: (np.log1p(f) - f) / (f * f), lo, hi, 5 if fast else 8,
                    lambda f: f, lambda f: f * f / np.abs(np.log1p(f)))
    if name == "tanh":  # tanh(x) = x + x^3 q(x^2), |x| < _TANH_SMALL
        return _fit(lambda x: (np.tanh(x) - x) / x ** 3, 1e-4, _TANH_SMALL, 2 if fast else 5,
                    lambda x: x * x, lambda x: x ** 3 / np.tanh(x))
    if name == "erf_small":  # erf(x) = x + x q(x^2), |x| < _ERF_SMALL
        return _fit(lambda x: (special.erf(x) - x) / x, 1e-4, _ERF_SMALL, 3 if fast else 5,
                    lambda x: x * x, lambda x: x / special.erf(x))
    if name == "erf_large":  # erfc(x) = exp(-x^2) q(x), _ERF_SMALL <= x <= _ERF_ONE
        return _fit(lambda x: special.erfcx(x), _ERF_SMALL, _ERF_ONE, 5 if fast else 9,
                    lambda x: x, lambda x: np.exp(-x * x) / special.erf(x))
    if name == "pow_exp":  # float64 exp(r) = 1 + r + r^2 q(r), relative error ~2^-39
        return _fit(lambda r: (np.expm1(r) - r) / (r * r), -half_ln2, half_ln2, 6,
                    lambda r: r, lambda r: r * r / np.exp(r), dtype=np.float64)
    if name == "pow_log":  # float64 atanh(s) = s + s^3 q(s^2), |s| <= 3 - 2 sqrt(2); ~2^-45
        top = 3 - 2 * math.sqrt(2.0)
        return _fit(lambda s: (np.arctanh(s) - s) / s ** 3, 1e-3, top, 4, lambda s: s * s,
                    lambda s: s ** 3 / np.arctanh(s), dtype=np.float64)
    raise KeyError(name)


# -- an IR emitter for one float32 shape (scalar or vector) ------------------------------------
class _Emitter:
    """Builds float / int values of one shape (``float`` or ``<n x float>``; double for pow)."""

    def __init__(self, b: ir.IRBuilder, module: ir.Module, ty: ir.Type):
        self.b, self.module, self.ty = b, module, ty
        self.lanes = ty.count if isinstance(ty, ir.VectorType) else 0
        element = ty.element if self.lanes else ty
        self.round = np.float32 if isinstance(element, ir.FloatType) else np.float64
        width = 32 if self.round is np.float32 else 64
        self.ity = ir.VectorType(ir.IntType(width), self.lanes) if self.lanes else ir.IntType(width)

    def f(self, value: float) -> ir.Constant:
        element = self.ty.element if self.lanes else self.ty
        scalar = ir.Constant(element, float(self.round(value)))
        return ir.Constant(self.ty, [scalar] * self.lanes) if self.lanes else scalar

    def i(self, value: int) -> ir.Constant:
        element = self.ity.element if self.lanes else self.ity
        scalar = ir.Constant(element, value)
        return ir.Constant(self.ity, [scalar] * self.lanes) if self.lanes else scalar

    def like(self, element: ir.Type) -> "_Emitter":
        """An emitter for the same lanes of another element type."""
        ty = ir.VectorType(element, self.lanes) if self.lanes else element
        return _Emitter(self.b, self.module, ty)

    def call(self, name: str, *args) -> ir.Value:
        return self.b.call(intrinsic(self.module, name, self.ty, len(args)), list(args))

    def fma(self, a, b, c) -> ir.Value:
        """a * b + c, fused where the CPU has FMA (the algorithms are exact without it too)."""
        return self.call("llvm.fmuladd", a, b, c)

    def poly(self, x, coeffs) -> ir.Value:
        acc = self.f(coeffs[-1])
        for c in reversed(coeffs[:-1]):
            acc = self.fma(acc, x, self.f(c))
        return acc

    def select(self, cond, a, b) -> ir.Value:
        return self.b.select(cond, a, b)

    def lt(self, a, b) -> ir.Value:  # ordered: false for NaN
        return self.b.fcmp_ordered("<", a, b)

    def eq(self, a, b) -> ir.Value:
        return self.b.fcmp_ordered("==", a, b)

    def is_nan(self, x) -> ir.Value:
        return self.b.fcmp_unordered("uno", x, x)

    def to_int(self, x) -> ir.Value:
        return self.b.bitcast(x, self.ity)

    def to_float(self, x) -> ir.Value:
        return self.b.bitcast(x, self.ty)


def _exp(m: _Emitter, x: ir.Value, fast: bool) -> ir.Value:
    b = m.b
    # Clamp so the integer part n stays in [-152, 130]; NaN passes through (both compares are
    # false) and stays NaN to the end: its garbage exponent bits are only ever multiplied by it.
    xc = m.select(m.lt(x, m.f(-105.0)), m.f(-105.0), x)
    xc = m.select(b.fcmp_ordered(">", xc, m.f(90.0)), m.f(90.0), xc)
    shifted = m.fma(xc, m.f(1 / _LN2), m.f(_ROUND_MAGIC))
    n = b.fsub(shifted, m.f(_ROUND_MAGIC))
    n_int = b.sub(m.to_int(shifted), m.i(int(np.float32(_ROUND_MAGIC).view(np.int32))))
    r = m.fma(n, m.f(-_LN2_HI), xc)
    r = m.fma(n, m.f(-_LN2_LO), r)
    # exp(r) = 1 + r (1 + r q(r)): Horner all the way, six FMAs and no separate square
    p = m.fma(m.fma(m.poly(r, coefficients("exp", fast)), r, m.f(1.0)), r, m.f(1.0))
    # 2^n in two steps 2^(n/2) 2^(n - n/2): the first goes into p's exponent field by an integer
    # add (exact, p 2^(n/2) stays a normal float), the second is a multiply that rounds once,
    # also into the denormal range, and overflows to inf past 2^128.
    half = b.ashr(n_int, m.i(1))
    rest = b.sub(n_int, half)
    p = m.to_float(b.add(m.to_int(p), b.shl(half, m.i(23))))
    return b.fmul(p, m.to_float(b.shl(b.add(rest, m.i(127)), m.i(23))))


def _log(m: _Emitter, x: ir.Value, fast: bool) -> ir.Value:
    b = m.b
    denormal = m.lt(x, m.f(2.0 ** -126))
    xs = m.select(denormal, b.fmul(x, m.f(2.0 ** 23)), x)
    bits = b.sub(m.to_int(xs), m.i(_SQRT_HALF_BITS))
    exponent = b.add(b.ashr(bits, m.i(23)), m.select(denormal, m.i(-23), m.i(0)))
    mantissa = m.to_float(b.add(b.and_(bits, m.i(0x7FFFFF)), m.i(_SQRT_HALF_BITS)))
    f = b.fsub(mantissa, m.f(1.0))  # exact: mantissa in [sqrt(1/2), sqrt(2))
    y = m.fma(b.fmul(f, f), m.poly(f, coefficients("log", fast)), f)
    e = b.sitofp(exponent, m.ty)
    result = m.fma(e, m.f(_LN2_HI), m.fma(e, m.f(_LN2_LO), y))
    result = m.select(b.fcmp_ordered("==", x, m.f(math.inf)), x, result)
    result = m.select(b.fcmp_ordered("==", x, m.f(0.0)), m.f(-math.inf), result)
    return m.select(b.fcmp_unordered("<", x, m.f(0.0)), m.f(math.nan), result)


def _tanh(m: _Emitter, x: ir.Value, fast: bool) -> ir.Value:
    b = m.b
    a = m.call("llvm.fabs", x)
    u = b.fmul(x, x)
    small = m.fma(b.fmul(x, u), m.poly(u, coefficients("tanh", fast)), x)
    e = _exp(m, b.fadd(a, a), fast)  # inf for large |x|: 2 / inf = 0, tanh = 1
    large = b.fsub(m.f(1.0), b.fdiv(m.f(2.0), b.fadd(e, m.f(1.0))))
    result = m.select(m.lt(a, m.f(_TANH_SMALL)), small, large)  # NaN takes `large`: NaN
    return m.call("llvm.copysign", result, x)  # odd, and tanh(-0) = -0


def _sigmoid(m: _Emitter, x: ir.Value, fast: bool) -> ir.Value:
    b = m.b
    e = _exp(m, b.fneg(m.call("llvm.fabs", x)), fast)  # in (0, 1]: never overflows
    # x >= 0: 1 / (1 + e);  x < 0: e / (1 + e), so sigmoid(-100) is exp(-100), not 0.
    numerator = m.select(b.fcmp_ordered(">=", x, m.f(0.0)), m.f(1.0), e)
    return b.fdiv(numerator, b.fadd(m.f(1.0), e))


def _erf(m: _Emitter, x: ir.Value, fast: bool) -> ir.Value:
    b = m.b
    a = m.call("llvm.fabs", x)
    small = m.fma(x, m.poly(b.fmul(x, x), coefficients("erf_small", fast)), x)
    ac = m.select(m.lt(a, m.f(_ERF_ONE)), a, m.f(_ERF_ONE))
    square = b.fmul(ac, ac)
    square_lo = m.fma(ac, ac, b.fneg(square))  # the rounding error of ac*ac where FMA exists
    e = _exp(m, b.fneg(square), fast)
    e = m.fma(e, b.fneg(square_lo), e)  # exp(-s - lo) ~ exp(-s) (1 - lo)
    large = b.fsub(m.f(1.0), b.fmul(e, m.poly(ac, coefficients("erf_large", fast))))
    result = m.select(m.lt(a, m.f(_ERF_SMALL)), small, large)
    result = m.call("llvm.copysign", result, x)  # odd, and erf(-0) = -0
    return m.select(m.is_nan(x), x, result)


def _pow_magnitude(d: _Emitter, ax: ir.Value, y: ir.Value) -> ir.Value:
    """|x|^y = exp(y log|x|) in float64 (error ~2^-35, far below float32's half ULP)."""
    b = d.b
    sqrt_half = int(np.float64(math.sqrt(0.5)).view(np.int64))
    bits = b.sub(d.to_int(ax), d.i(sqrt_half))  # ax: a normal double, 0, inf or nan
    k = b.sitofp(b.ashr(bits, d.i(52)), d.ty)
    mantissa = d.to_float(b.add(b.and_(bits, d.i((1 << 52) - 1)), d.i(sqrt_half)))
    f = b.fsub(mantissa, d.f(1.0))
    s = b.fdiv(f, b.fadd(f, d.f(2.0)))  # log1p(f) = 2 atanh(s)
    s2 = b.fmul(s, s)
    atanh = d.fma(b.fmul(s, s2), d.poly(s2, coefficients("pow_log", False)), s)
    log_ax = d.fma(k, d.f(_LN2), b.fadd(atanh, atanh))
    log_ax = d.select(d.eq(ax, d.f(0.0)), d.f(-math.inf), log_ax)
    log_ax = d.select(b.fcmp_unordered("==", ax, d.f(math.inf)), ax, log_ax)  # inf, nan
    z = b.fmul(y, log_ax)
    z = d.select(d.lt(z, d.f(-160.0)), d.f(-160.0), z)  # NaN passes through both
    z = d.select(b.fcmp_ordered(">", z, d.f(140.0)), d.f(140.0), z)
    magic = 6755399441055744.0  # 1.5 * 2**52
    shifted = d.fma(z, d.f(1 / _LN2), d.f(magic))
    n = b.fsub(shifted, d.f(magic))
    n_int = b.sub(d.to_int(shifted), d.i(int(np.float64(magic).view(np.int64))))
    ln2_hi = float(np.ldexp(np.round(np.ldexp(_LN2, 40)), -40))
    r = d.fma(n, d.f(-ln2_hi), z)
    r = d.fma(n, d.f(-(_LN2 - ln2_hi)), r)
    p = b.fadd(d.fma(b.fmul(r, r), d.poly(r, coefficients("pow_exp", False)), r), d.f(1.0))
    return b.fmul(p, d.to_float(b.shl(b.add(n_int, d.i(1023)), d.i(52))))


def pow_float32(b: ir.IRBuilder, module: ir.Module, x: ir.Value, y: ir.Value):
    """float32 ``x ** y`` (C99 / NumPy special cases) for scalars or vectors; None otherwise."""
    element = x.type.element if isinstance(x.type, ir.VectorType) else x.type
    if not isinstance(element, ir.FloatType):
        return None
    m = _Emitter(b, module, x.type)
    d = m.like(ir.DoubleType())
    xd, yd = b.fpext(x, d.ty), b.fpext(y, d.ty)
    magnitude = b.fptrunc(_pow_magnitude(d, d.call("llvm.fabs", xd), yd), m.ty)  # rounds once
    y_int = d.eq(d.call("llvm.trunc", yd), yd)  # +-inf count as (even) integers
    small_y = d.select(d.lt(d.call("llvm.fabs", yd), d.f(2.0 ** 30)), yd, d.f(0.0))
    bool_ty = ir.VectorType(ir.IntType(1), m.lanes) if m.lanes else ir.IntType(1)
    y_odd = b.and_(y_int, b.trunc(b.fptosi(small_y, m.ity), bool_ty))  # lowest bit
    negative_sign = b.icmp_signed("<", m.to_int(x), m.i(0))  # -0 too: (-0) ** -1 = -inf
    result = m.select(b.and_(negative_sign, y_odd), b.fneg(magnitude), magnitude)
    finite_negative = b.and_(m.lt(x, m.f(0.0)), b.fcmp_ordered(">", x, m.f(-math.inf)))
    result = m.select(b.and_(finite_negative, b.not_(y_int)), m.f(math.nan), result)
    unit_x = m.eq(m.call("llvm.fabs", x), m.f(1.0))
    result = m.select(b.and_(unit_x, m.eq(m.call("llvm.fabs", y), m.f(math.inf))), m.f(1.0),
                      result)
    return m.select(b.or_(m.eq(x, m.f(1.0)), m.eq(y, m.f(0.0))), m.f(1.0), result)


def _implementation(body) -> Callable:
    def emit(b: ir.IRBuilder, module: ir.Module, x: ir.Value) -> "ir.Value | None":
        element = x.type.element if isinstance(x.type, ir.VectorType) else x.type
        if not isinstance(element, ir.FloatType):  # float64 keeps the libm path
            return None
        return body(_Emitter(b, module, x.type), x, current_config().fast_math)
    emit.__name__ = body.__name__.lstrip("_")
    emit.__doc__ = f"float32 {emit.__name__} of a scalar or vector; None for other types."
    return emit


#: op name -> emitter(builder, module, value) -> value, or None where the op keeps libm.
IMPLEMENTATIONS: dict[str, Callable] = {
    "exp": _implementation(_exp), "log": _implementation(_log),
    "tanh": _implementation(_tanh), "sigmoid": _implementation(_sigmoid),
    "erf": _implementation(_erf),
}
