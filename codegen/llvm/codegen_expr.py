"""Expressions of the loop IR to LLVM values (scalars and vectors).

Semantics follow the IR contract: integer ``Div``/``Mod`` truncate like C, ``FloorDiv`` /
``FloorMod`` round like Python, float ``Min``/``Max`` propagate NaN like ``np.minimum``, float
``!=`` is true for NaN, and integer division by zero gives 0 (as NumPy does) rather than a crash.
Float ``+ - *`` carry the ``reassoc contract`` fast-math flags only: reductions may be
reassociated and fused into FMAs, but NaN and infinity keep their meaning.
"""
from __future__ import annotations

import math
import operator

import llvmlite.binding as llvm
from llvmlite import ir

from tensorlang import dtype as dt
from tensorlang import expr as E
from tensorlang.errors import InternalError, UnsupportedOpError, UserError

from . import blas
from .intrinsics import INTRINSIC_NAMES, emit_math
from .lanes import lane_of
from .scope import DataPointer, FunctionScope
from .types import I32, I64, I8_PTR, VOID, constant, declare, element_bytes, intrinsic, \
    llvm_type, memory_type, splat

FAST = ("reassoc", "contract")
_FLOAT_CMP = {E.LT: "<", E.LE: "<=", E.GT: ">", E.GE: ">=", E.EQ: "=="}
_INT_CMP = {E.LT: "<", E.LE: "<=", E.GT: ">", E.GE: ">=", E.EQ: "==", E.NE: "!="}


def _int_const(e) -> int | None:
    if isinstance(e, E.IntImm):
        return e.value
    if isinstance(e, E.Broadcast):
        return _int_const(e.value)
    return None


class ExprCodegen:
    """Emits expressions into ``self.scope``; subclasses add statements and functions."""

    module: ir.Module
    scope: FunctionScope
    check_symbols: bool

    @property
    def b(self) -> ir.IRBuilder:
        return self.scope.builder

    def expr(self, e) -> ir.Value:
        method = getattr(self, "_e_" + type(e).__name__, None)
        if method is None:
            if isinstance(e, (E.ProducerLoad, E.Reduce)):
                raise UserError(f"{type(e).__name__} reached code generation: it belongs to the "
                                "DSL and must be lowered first (tl.lower)")
            raise InternalError(f"no LLVM code generation for {type(e).__name__}")
        return method(e)

    # -- leaves ---------------------------------------------------------------------------------
    def _e_IntImm(self, e):
        return constant(e.dtype, e.value)

    def _e_FloatImm(self, e):
        return constant(e.dtype, e.value)

    def _e_StringImm(self, e):
        return self.cstring(e.value)

    def _e_Var(self, e):
        return self.scope.value_of(e)

    def cstring(self, text: str) -> ir.Value:
        """An ``i8*`` to a private, NUL-terminated copy of ``text``."""
        data = bytearray(text.encode("utf-8") + b"\0")
        ty = ir.ArrayType(ir.IntType(8), len(data))
        gv = ir.GlobalVariable(self.module, ty, self.module.get_unique_name("str"))
        gv.linkage, gv.global_constant, gv.initializer = "private", True, ir.Constant(ty, data)
        gv.unnamed_addr = True
        return gv.bitcast(I8_PTR)

    # -- arithmetic -----------------------------------------------------------------------------
    def _e_Add(self, e):
        return self._arith(e, "fadd", "add")

    def _e_Sub(self, e):
        return self._arith(e, "fsub", "sub")

    def _e_Mul(self, e):
        return self._arith(e, "fmul", "mul")

    def _arith(self, e, float_op, int_op):
        a, b = self.expr(e.a), self.expr(e.b)
        if dt.is_float(e.dtype):
            return getattr(self.b, float_op)(a, b, flags=FAST)
        # Index arithmetic (int32/int64) does not wrap, as in TVM: `nsw` lets LLVM widen loop
        # counters and prove accesses consecutive. Narrow integers wrap like NumPy.
        signed = dt.is_int(e.dtype) and not dt.is_uint(e.dtype) and dt.bits(e.dtype) >= 32
        return getattr(self.b, int_op)(a, b, flags=["nsw"] if signed else [])

    def _e_Div(self, e):
        if dt.is_float(e.dtype):
            return self.b.fdiv(self.expr(e.a), self.expr(e.b))
        return self._int_division(e, "div")

    def _e_Mod(self, e):
        if dt.is_float(e.dtype):
            return self.b.frem(self.expr(e.a), self.expr(e.b))
        return self._int_division(e, "mod")

    def _e_FloorDiv(self, e):
        if dt.is_float(e.dtype):
            return self.expr(E.Call("floor", (E.Div(e.a, e.b, e.dtype),), e.dtype))
        return self._int_division(e, "floordiv")

    def _e_FloorMod(self, e):
        if dt.is_float(e.dtype):
            quotient = E.Call("floor", (E.Div(e.a, e.b, e.dtype),), e.dtype)
            return self.expr(E.Sub(e.a, E.Mul(e.b, quotient, e.dtype), e.dtype))
        return self._int_division(e, "floormod")

    def _int_division(self, e, kind: str) -> ir.Value:
        b = self.b
        signed = not (dt.is_uint(e.dtype) or dt.is_bool(e.dtype))
        a, d = self.expr(e.a), self.expr(e.b)
        zero, one = constant(e.dtype, 0), constant(e.dtype, 1)
        divisor = _int_const(e.b)
        if divisor == 0:
            return zero  # NumPy's answer, and no SIGFPE
        if divisor is not None and divisor > 0 and (
                not signed or self.known_non_negative(e.a) or kind in ("div", "mod")):
            if not signed or self.known_non_negative(e.a):
                op = "udiv" if kind in ("div", "floordiv") else "urem"
            else:
                op = "sdiv" if kind == "div" else "srem"
            return getattr(b, op)(a, d)
        if not signed:
            safe = b.select(b.icmp_unsigned("==", d, zero), one, d)
            result = (b.udiv if kind in ("div", "floordiv") else b.urem)(a, safe)
            return b.select(b.icmp_unsigned("==", d, zero), zero, result)
        is_zero = b.icmp_signed("==", d, zero)
        minus_one = b.icmp_signed("==", d, constant(e.dtype, -1))
        safe = b.select(b.or_(is_zero, minus_one), one, d)  # INT_MIN / -1 traps too
        if kind in ("div", "floordiv"):
            q = b.sdiv(a, safe)
            if kind == "floordiv":
                r = b.srem(a, safe)
                q = b.select(self._needs_floor_fix(r, safe, e.dtype), b.sub(q, one), q)
            result = b.select(minus_one, b.sub(zero, a), q)
        else:
            r = b.srem(a, safe)
            if kind == "floormod":
                r = b.select(self._needs_floor_fix(r, safe, e.dtype), b.add(r, safe), r)
            result = b.select(minus_one, zero, r)
        return b.select(is_zero, zero, result)

    def _needs_floor_fix(self, r, d, dtype):
        b = self.b
        zero = constant(dtype, 0)
        signs_differ = b.xor(b.icmp_signed("<", r, zero), b.icmp_signed("<", d, zero))
        return b.and_(b.icmp_signed("!=", r, zero), signs_differ)

    def _e_Min(self, e):
        return self._min_max(e, "llvm.minimum", "<")

    def _e_Max(self, e):
        return self._min_max(e, "llvm.maximum", ">")

    def _min_max(self, e, float_intrinsic, op):
        a, b = self.expr(e.a), self.expr(e.b)
        if dt.is_float(e.dtype):
            # NumPy's rule: NaN if either is NaN, else (a > b ? a : b) for max, which also keeps
            # its choice between -0.0 and +0.0. "a > b ? a : b" is exactly x86 maxps/minps, so
            # this costs one compare-and-blend more than the plain instruction (llvm.maximum
            # orders signed zeros too and costs two more).
            picked = self.b.select(self.b.fcmp_ordered(op, a, b), a, b)
            return self.b.select(self.b.fcmp_unordered("uno", a, a), a, picked)
        cmp = (self.b.icmp_unsigned if dt.is_uint(e.dtype) or dt.is_bool(e.dtype)
               else self.b.icmp_signed)(op, a, b)
        return self.b.select(cmp, a, b)

    # -- comparisons and logic ------------------------------------------------------------------
    def _compare(self, e):
        a, b = self.expr(e.a), self.expr(e.b)
        operand = e.a.dtype
        folded = _fold_int_compare(e, a, b)
        if folded is not None:
            return folded
        if dt.is_float(operand):
            if isinstance(e, E.NE):
                return self.b.fcmp_unordered("!=", a, b)  # NaN != x holds, like NumPy
            return self.b.fcmp_ordered(_FLOAT_CMP[type(e)], a, b)
        if dt.is_uint(operand) or dt.is_bool(operand):
            return self.b.icmp_unsigned(_INT_CMP[type(e)], a, b)
        return self.b.icmp_signed(_INT_CMP[type(e)], a, b)

    _e_LT = _e_LE = _e_GT = _e_GE = _e_EQ = _e_NE = _compare

    def _e_And(self, e):
        return self.b.and_(self.expr(e.a), self.expr(e.b))

    def _e_Or(self, e):
        return self.b.or_(self.expr(e.a), self.expr(e.b))

    def _e_Not(self, e):
        return self.b.xor(self.expr(e.a), constant(e.dtype, 1))

    def _e_Select(self, e):
        condition = self.expr(e.condition)
        if isinstance(condition, ir.Constant) and condition.type == ir.IntType(1) and \
                isinstance(condition.constant, (bool, int)):
            # a condition known here (an unrolled loop's index compared with a constant):
            # only the chosen side is emitted, so select chains over unrolled axes cost nothing
            return self.expr(e.true_value if condition.constant else e.false_value)
        return self.b.select(condition, self.expr(e.true_value), self.expr(e.false_value))

    # -- conversions and vectors ----------------------------------------------------------------
    def _e_Cast(self, e):
        value = self.expr(e.value)
        src, dst = e.value.dtype, e.dtype
        if dt.lanes_of(src) == 1 and dt.lanes_of(dst) > 1:
            value = self.convert(value, src, dt.element_of(dst))
            return splat(self.b, value, dt.lanes_of(dst))
        return self.convert(value, src, dst)

    def _double_to_half(self, value: ir.Value, to: ir.Type) -> ir.Value:
        """float64 -> float16 through float32 rounded to odd (toward zero, then the last bit
        set when inexact), so the final rounding to half is the correctly rounded one. A
        direct ``fptrunc double -> half`` becomes a call to a compiler-rt helper that the JIT
        does not provide."""
        b = self.b
        lanes = to.count if isinstance(to, ir.VectorType) else 0
        f32 = ir.VectorType(ir.FloatType(), lanes) if lanes else ir.FloatType()
        i32 = ir.VectorType(ir.IntType(32), lanes) if lanes else ir.IntType(32)

        def splat_int(v):
            one = ir.Constant(ir.IntType(32), v)
            return ir.Constant(i32, [one] * lanes) if lanes else one

        nearest = b.fptrunc(value, f32)
        back = b.fpext(nearest, value.type)
        fabs = intrinsic(self.module, "llvm.fabs", value.type, 1)
        away = b.fcmp_ordered(">", b.call(fabs, [back]), b.call(fabs, [value]))
        bits = b.bitcast(nearest, i32)
        bits = b.select(away, b.sub(bits, splat_int(1)), bits)  # toward zero
        inexact = b.fcmp_unordered("!=", back, value)
        bits = b.select(inexact, b.or_(bits, splat_int(1)), bits)
        return b.fptrunc(b.bitcast(bits, f32), to)

    def convert(self, value: ir.Value, src: str, dst: str) -> ir.Value:
        """``value`` of dtype ``src`` as dtype ``dst`` (same lanes)."""
        b = self.b
        to = llvm_type(dst)
        if value.type == to and dt.is_bool(src) == dt.is_bool(dst):
            return value
        if dt.is_bool(dst):
            zero = constant(dt.with_lanes(dt.element_of(src), dt.lanes_of(dst)), 0)
            if dt.is_float(src):
                return b.fcmp_unordered("!=", value, zero)  # NaN is truthy, as in NumPy
            return b.icmp_unsigned("!=", value, zero)
        if dt.is_float(src) and dt.is_float(dst):
            if dt.element_of(src) == "float64" and dt.element_of(dst) == "float16":
                return self._double_to_half(value, to)
            return (b.fpext if dt.bits(dst) > dt.bits(src) else b.fptrunc)(value, to)
        if dt.is_float(src):
            return (b.fptoui if dt.is_uint(dst) else b.fptosi)(value, to)
        unsigned_src = dt.is_uint(src) or dt.is_bool(src)
        if dt.is_float(dst):
            return (b.uitofp if unsigned_src else b.sitofp)(value, to)
        if dt.bits(dst) < dt.bits(src):
            return b.trunc(value, to)
        if dt.bits(dst) == dt.bits(src) and not dt.is_bool(src):
            return value
        return (b.zext if unsigned_src else b.sext)(value, to)

    def _e_Broadcast(self, e):
        return splat(self.b, self.expr(e.value), e.lanes)

    def _e_Ramp(self, e):
        base = self.expr(e.base)
        offsets_dtype = dt.with_lanes(e.base.dtype, e.lanes)
        stride = _int_const(e.stride)
        if stride is not None:
            offsets = ir.Constant(llvm_type(offsets_dtype),
                                  [constant(e.base.dtype, stride * k) for k in range(e.lanes)])
        else:
            steps = ir.Constant(llvm_type(offsets_dtype),
                                [constant(e.base.dtype, k) for k in range(e.lanes)])
            offsets = self.b.mul(splat(self.b, self.expr(e.stride), e.lanes), steps)
        return self.b.add(splat(self.b, base, e.lanes), offsets)

    def _e_Let(self, e):
        value = self.expr(e.value)
        previous = self.scope.bind(e.var, value)
        self.note_facts(e.var, e.value)
        try:
            return self.expr(e.body)
        finally:
            self.scope.unbind(e.var, previous)

    def note_facts(self, var, value_expr) -> None:
        """Remember what is known of an integer variable's value (alignment, sign)."""
        if dt.is_int(var.dtype):
            self.scope.multiples[var.uid] = self.known_multiple(value_expr)
            if self.known_non_negative(value_expr):
                self.scope.non_negative.add(var.uid)

    # -- memory ---------------------------------------------------------------------------------
    def _e_BufferLoad(self, e):
        index = self._flat_index(e.buffer, e.indices)
        pointer = self.scope.pointer(e.buffer.data)
        lanes, element = dt.lanes_of(e.dtype), dt.element_of(e.dtype)
        b = self.b
        if lanes == 1:
            address = self._element_address(pointer, element, self.expr(index))
            return self.from_memory(b.load(address, align=element_bytes(element)), e.dtype)
        kind = vector_access_kind(index)
        if kind == "contiguous":
            base = index.base if isinstance(index, E.Ramp) else index
            address = b.bitcast(self._element_address(pointer, element, self.expr(base)),
                                memory_type(e.dtype).as_pointer())
            loaded = b.load(address, align=self._access_align(pointer, base, element))
            return self.from_memory(loaded, e.dtype)
        if kind == "uniform":
            base = index.base if isinstance(index, E.Ramp) else index.value
            address = self._element_address(pointer, element, self.expr(base))
            scalar = self.from_memory(b.load(address, align=element_bytes(element)), element)
            return splat(b, scalar, lanes)
        indices = self.expr(index)  # a gather, one lane at a time
        out = ir.Constant(llvm_type(e.dtype), ir.Undefined)
        for lane in range(lanes):
            position = ir.Constant(I32, lane)
            address = self._element_address(pointer, element, b.extract_element(indices, position))
            scalar = self.from_memory(b.load(address, align=element_bytes(element)), element)
            out = b.insert_element(out, scalar, position)
        return out

    def _flat_index(self, buffer, indices):
        if len(indices) != 1:
            raise UserError(f"access to buffer {buffer.name!r} has {len(indices)} indices: code "
                            "generation expects flattened IR (one element offset per access); "
                            "lower it with tl.lower first")
        return indices[0]

    def _element_address(self, pointer: DataPointer, element: str, index: ir.Value) -> ir.Value:
        typed = self.b.bitcast(pointer.value, memory_type(element).as_pointer())
        if index.type != I64:
            index = (self.b.sext if index.type.width < 64 else self.b.trunc)(index, I64)
        return self.b.gep(typed, [index])

    def _access_align(self, pointer: DataPointer, base_expr, element: str) -> int:
        size = element_bytes(element)
        multiple = self.known_multiple(base_expr) * size
        provable = multiple & -multiple if multiple else pointer.align
        return max(size, min(pointer.align, provable))

    def from_memory(self, value: ir.Value, dtype: str) -> ir.Value:
        if dt.is_bool(dtype):
            return self.b.icmp_unsigned("!=", value, ir.Constant(value.type, None))
        return value

    def to_memory(self, value: ir.Value, dtype: str) -> ir.Value:
        if dt.is_bool(dtype):
            return self.b.zext(value, memory_type(dtype))
        return value

    # -- calls ----------------------------------------------------------------------------------
    def _e_Call(self, e):
        if e.extern:
            return self._extern_call(e)
        if e.op == "if_then_else":
            return self._if_then_else(e)
        if e.op == "likely":
            return self.expr(e.args[0])
        if e.op not in INTRINSIC_NAMES:
            raise UnsupportedOpError(f"intrinsic {e.op!r} is not supported by the LLVM CPU "
                                     f"backend; supported: {', '.join(sorted(INTRINSIC_NAMES))}")
        args = [self.expr(a) for a in e.args]
        return emit_math(self.b, self.module, e.op, args, e.args[0].dtype)

    def _if_then_else(self, e):
        cond, then_expr, else_expr = e.args
        known = _int_const(cond)
        if known is not None:
            return self.expr(then_expr if known else else_expr)
        if dt.lanes_of(cond.dtype) > 1:  # only the taken branch may run: go lane by lane
            out = ir.Constant(llvm_type(e.dtype), ir.Undefined)
            for lane in range(dt.lanes_of(e.dtype)):
                scalar = self.expr(lane_of(e, lane))
                out = self.b.insert_element(out, scalar, ir.Constant(I32, lane))
            return out
        fn = self.scope.function
        then_bb, else_bb = fn.append_basic_block("if.true"), fn.append_basic_block("if.false")
        merge_bb = fn.append_basic_block("if.end")
        self.b.cbranch(self.expr(cond), then_bb, else_bb)
        self.b.position_at_end(then_bb)
        then_value, then_end = self.expr(then_expr), self.b.block
        self.b.branch(merge_bb)
        self.b.position_at_end(else_bb)
        else_value, else_end = self.expr(else_expr), self.b.block
        self.b.branch(merge_bb)
        self.b.position_at_end(merge_bb)
        phi = self.b.phi(then_value.type)
        phi.add_incoming(then_value, then_end)
        phi.add_incoming(else_value, else_end)
        return phi

    def _extern_call(self, e):
        blas.ensure_symbol(e.op, self.scope.in_parallel)  # registers the BLAS shims lazily
        if self.check_symbols and not llvm.address_of_symbol(e.op):
            raise UnsupportedOpError(f"extern function {e.op!r} is not found in this process; "
                                     "load the library that defines it first (e.g. "
                                     "ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL))")
        args = [self.scope.pointer(a).value if isinstance(a, E.Var) and a.dtype == "handle"
                else self.expr(a) for a in e.args]
        ret = VOID if e.dtype == "void" else llvm_type(e.dtype)
        fn = declare(self.module, e.op, ret, [a.type for a in args])
        self.extern_symbols.add(e.op)
        result = self.b.call(fn, args)
        return constant("int32", 0) if e.dtype == "void" else result

    # -- facts ----------------------------------------------------------------------------------
    def known_multiple(self, e) -> int:
        """The largest k provably dividing integer ``e`` (0 means e is 0: any k)."""
        if isinstance(e, E.IntImm):
            return abs(e.value)
        if isinstance(e, E.Var):
            return self.scope.multiples.get(e.uid, 1)
        if isinstance(e, E.Mul):
            return self.known_multiple(e.a) * self.known_multiple(e.b)
        if isinstance(e, (E.Add, E.Sub)):
            return math.gcd(self.known_multiple(e.a), self.known_multiple(e.b))
        if isinstance(e, E.Cast) and dt.is_int(e.value.dtype):
            return self.known_multiple(e.value)
        return 1

    def known_non_negative(self, e) -> bool:
        if isinstance(e, E.IntImm):
            return e.value >= 0
        if isinstance(e, E.Var):
            return e.uid in self.scope.non_negative
        if isinstance(e, (E.Add, E.Mul, E.FloorDiv, E.Div, E.Min, E.Max)):
            return self.known_non_negative(e.a) and self.known_non_negative(e.b)
        if isinstance(e, (E.FloorMod, E.Mod)):
            return self.known_non_negative(e.b) and (isinstance(e, E.FloorMod)
                                                     or self.known_non_negative(e.a))
        if isinstance(e, E.Cast):
            return dt.is_int(e.value.dtype) and self.known_non_negative(e.value) and \
                dt.bits(e.dtype) >= dt.bits(e.value.dtype)
        return False


_PY_CMP = {E.LT: operator.lt, E.LE: operator.le, E.GT: operator.gt, E.GE: operator.ge,
           E.EQ: operator.eq, E.NE: operator.ne}


def _fold_int_compare(e, a: ir.Value, b: ir.Value) -> ir.Constant | None:
    """A scalar signed-integer comparison of two LLVM constants, as an ``i1`` constant (None
    otherwise). llvmlite's builder does not fold constants itself."""
    if not (isinstance(a, ir.Constant) and isinstance(b, ir.Constant)) or \
            not dt.is_int(e.a.dtype) or dt.lanes_of(e.a.dtype) != 1 or \
            dt.is_uint(e.a.dtype) or dt.is_bool(e.a.dtype):
        return None
    x, y = a.constant, b.constant
    if not (isinstance(x, int) and isinstance(y, int)):
        return None
    return ir.Constant(ir.IntType(1), int(_PY_CMP[type(e)](x, y)))


def vector_access_kind(index) -> str:
    """How a vector access reads memory: contiguous, uniform (one address) or gather."""
    if dt.lanes_of(index.dtype) == 1:
        return "contiguous"  # a scalar start with a vector dtype
    if isinstance(index, E.Ramp):
        stride = _int_const(index.stride)
        if stride == 1:
            return "contiguous"
        if stride == 0:
            return "uniform"
    if isinstance(index, E.Broadcast):
        return "uniform"
    return "gather"

