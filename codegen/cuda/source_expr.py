"""Expressions of the CUDA C generator: literals, arithmetic with tensorlang's semantics
(Python floor division, NumPy NaN rules for min/max, fp16/bf16 rounding through PTX), loads
and intrinsic calls. ``ExprGen`` is the half of ``source._KernelGen`` that turns a ``PrimExpr``
into C text; the statement half lives in source.py."""
from __future__ import annotations

import math
import struct

from tensorlang import dtype as dt
from tensorlang import expr as E
from tensorlang.errors import DTypeError, UnsupportedOpError, UserError
from tensorlang.lower.verify_gpu import BARRIER


INDEX_LIMIT = 2 ** 31  # buffers with more elements get 64-bit index arithmetic

_CTYPES = {
    "bool": "bool", "int8": "signed char", "int16": "short", "int32": "int",
    "int64": "long long", "uint8": "unsigned char", "uint16": "unsigned short",
    "uint32": "unsigned int", "uint64": "unsigned long long", "float32": "float",
    "float64": "double", "float16": "float", "bfloat16": "float",
}
_STORAGE = dict(_CTYPES, float16="unsigned short", bfloat16="unsigned short")
_VECTOR_TYPES = {("float32", 2): "float2", ("float32", 4): "float4", ("int32", 2): "int2",
                 ("int32", 4): "int4", ("uint32", 2): "uint2", ("uint32", 4): "uint4"}
_LANE_FIELDS = "xyzw"
_BINARY = {E.Add: "+", E.Sub: "-", E.Mul: "*"}
_COMPARE = {E.LT: "<", E.LE: "<=", E.GT: ">", E.GE: ">=", E.EQ: "==", E.NE: "!="}
_UNARY_MATH = {
    "exp": "exp", "exp2": "exp2", "log": "log", "log2": "log2", "log10": "log10",
    "sqrt": "sqrt", "rsqrt": "rsqrt", "tanh": "tanh", "erf": "erf", "fabs": "fabs",
    "floor": "floor", "ceil": "ceil", "round": "rint", "trunc": "trunc", "sin": "sin",
    "cos": "cos",
}
_C_KEYWORDS = frozenset("""
auto break case char const continue default do double else enum extern float for goto if
inline int long register restrict return short signed sizeof static struct switch typedef union
unsigned void volatile while bool true false class new delete this template typename namespace
operator private public protected virtual friend using threadIdx blockIdx blockDim gridDim
warpSize half float2 float4 int2 int4 uint2 uint4 min max abs
""".split())



def ctype(dtype: str) -> str:
    """The C type an expression of ``dtype`` computes in (float for 16-bit floats)."""
    name = dt.element_of(dtype)
    if name not in _CTYPES:
        raise DTypeError(f"dtype {dtype} is not supported by the CUDA backend (supported: "
                         f"{', '.join(sorted(_CTYPES))})")
    return _CTYPES[name]


def param_type(dtype: str) -> str:
    """The C type a scalar kernel parameter of ``dtype`` is passed as (32 or 64 bits)."""
    element = dt.element_of(dtype)
    ctype(dtype)
    if element in ("float32", "float16", "bfloat16"):
        return "float"
    if element == "float64":
        return "double"
    if element in ("int64", "uint32", "uint64"):
        return "long long"
    return "int"


def storage_type(dtype: str) -> str:
    ctype(dtype)
    return _STORAGE[dt.element_of(dtype)]


def float_literal(value: float, dtype: str) -> str:
    single = dt.element_of(dtype) != "float64"
    if math.isnan(value):
        return "__int_as_float(0x7fc00000)" if single else \
            "__longlong_as_double(0x7ff8000000000000LL)"
    if math.isinf(value):
        sign = "-" if value < 0 else ""
        body = "__int_as_float(0x7f800000)" if single else \
            "__longlong_as_double(0x7ff0000000000000LL)"
        return f"({sign}{body})"
    if single:
        value = struct.unpack("f", struct.pack("f", value))[0]
        import numpy as np
        text = str(np.float32(value))  # the shortest text that reads back as this float32
        if struct.unpack("f", struct.pack("f", float(text)))[0] != value:
            text = float.hex(value)
        if "e" not in text and "." not in text and "x" not in text:
            text += ".0"
        return text + "f"
    text = repr(float(value))
    return text if ("." in text or "e" in text) else text + ".0"


def int_literal(value: int, dtype: str) -> str:
    name = dt.element_of(dtype)
    if name == "bool":
        return "true" if value else "false"
    if dt.is_uint(name):
        return f"{value}ull" if dt.bits(name) == 64 else f"{value}u"
    if dt.bits(name) == 64:
        if value == -2 ** 63:
            return "(-9223372036854775807LL - 1)"
        return f"{value}LL"
    if value == -2 ** 31:
        return "(-2147483647 - 1)"
    text = str(value)
    if dt.bits(name) < 32:
        return f"(({_CTYPES[name]}){text})"
    return text


class ExprGen:
    """Mixin: ``expr(e)`` and what it needs (the kernel generator supplies ``line``,
    ``var``, ``buf``, ``temp``, ``wide``, ``hoisted`` and the buffer tables)."""

    # -- expressions -----------------------------------------------------------------------
    def expr(self, e, lane: int | None = None) -> str:
        if dt.lanes_of(e.dtype) > 1 and lane is None:
            raise UnsupportedOpError(f"vector expression of dtype {e.dtype} outside a vector "
                                     f"store: `{e}`")
        method = getattr(self, "_e_" + type(e).__name__, None)
        if method is None:
            if isinstance(e, (E.ProducerLoad, E.Reduce)):
                raise UserError(f"{type(e).__name__} reached code generation: lower it first "
                                "(tl.lower)")
            raise UnsupportedOpError(f"the CUDA backend cannot emit {type(e).__name__}: `{e}`")
        return method(e, lane)

    def _e_IntImm(self, e, lane):
        if self.wide and e.dtype == "int32":
            return f"{e.value}LL"
        return int_literal(e.value, e.dtype)

    def _e_FloatImm(self, e, lane):
        return float_literal(e.value, e.dtype)

    def _e_StringImm(self, e, lane):
        raise UnsupportedOpError(f"string {e.value!r} in GPU code")

    def _e_Var(self, e, lane):
        if e.dtype == "handle":
            raise UnsupportedOpError(f"raw handle {e.name!r} in GPU code")
        name = self.var(e)
        if dt.lanes_of(e.dtype) > 1:
            return f"{name}_l{lane}"
        if self.wide and e.dtype == "int32":
            return f"(long long){name}"
        return name

    def _round(self, dtype: str, text: str) -> str:
        element = dt.element_of(dtype)
        if element == "float16":
            return f"tl_rh({text})"
        if element == "bfloat16":
            return f"tl_rbf({text})"
        if element in ("int8", "int16", "uint8", "uint16"):
            return f"(({_CTYPES[element]})({text}))"
        return f"({text})"

    def _e_Add(self, e, lane):
        return self._binary(e, lane)

    _e_Sub = _e_Mul = _e_Add

    def _binary(self, e, lane):
        a, b = self.expr(e.a, lane), self.expr(e.b, lane)
        # C's precedence and left associativity make these parentheses redundant
        if isinstance(e, (E.Add, E.Sub)):
            if isinstance(e.a, (E.Add, E.Sub, E.Mul)):
                a = _bare(a)
            if isinstance(e.b, E.Mul):
                b = _bare(b)
        elif isinstance(e, E.Mul) and isinstance(e.a, E.Mul):
            a = _bare(a)
        return self._round(e.dtype, f"{a} {_BINARY[type(e)]} {b}")

    def _e_Div(self, e, lane):
        if dt.is_float(e.dtype):
            return self._round(e.dtype, f"{self.expr(e.a, lane)} / {self.expr(e.b, lane)}")
        return self._int_division(e, "div", lane)

    def _e_Mod(self, e, lane):
        if dt.is_float(e.dtype):
            return self.expr(E.Call("fmod", (e.a, e.b), e.dtype), lane)
        return self._int_division(e, "mod", lane)

    def _e_FloorDiv(self, e, lane):
        if dt.is_float(e.dtype):
            return self.expr(E.Call("floor", (E.Div(e.a, e.b, e.dtype),), e.dtype), lane)
        return self._int_division(e, "floordiv", lane)

    def _e_FloorMod(self, e, lane):
        if dt.is_float(e.dtype):
            q = E.Call("floor", (E.Div(e.a, e.b, e.dtype),), e.dtype)
            return self.expr(E.Sub(e.a, E.Mul(e.b, q, e.dtype), e.dtype), lane)
        return self._int_division(e, "floormod", lane)

    def _int_division(self, e, kind: str, lane) -> str:
        element = dt.element_of(e.dtype)
        divisor = _int_const(e.b)
        a, b = self.expr(e.a, lane), self.expr(e.b, lane)
        if divisor == 0:
            return int_literal(0, element)
        unsigned = dt.is_uint(element) or dt.is_bool(element)
        if divisor is not None and divisor > 0 and (
                unsigned or kind in ("div", "mod") or self.non_negative(e.a)):
            op = "/" if kind in ("div", "floordiv") else "%"
            return self._round(e.dtype, f"{a} {op} {b}")
        helper = {"div": "tl_div", "mod": "tl_mod", "floordiv": "tl_floordiv",
                  "floormod": "tl_floormod"}[kind]
        return self._helper_call(helper, e.dtype, a, b)

    def _helper_type(self, dtype: str) -> str:
        element = dt.element_of(dtype)
        if element in ("uint32",):
            return "unsigned int"
        if element == "uint64":
            return "unsigned long long"
        if element == "int64" or self.wide:
            return "long long"
        return "int"

    def _helper_call(self, helper: str, dtype: str, a: str, b: str) -> str:
        t = self._helper_type(dtype)
        element = dt.element_of(dtype)
        exact = _CTYPES[element] == t and not self.wide
        call = f"{helper}({a}, {b})" if exact else f"{helper}(({t})({a}), ({t})({b}))"
        if dt.bits(element) < 32 or element == "bool":
            return f"(({_CTYPES[element]}){call})"
        return call

    def _e_Min(self, e, lane):
        return self._min_max(e, lane, "min")

    def _e_Max(self, e, lane):
        return self._min_max(e, lane, "max")

    def _min_max(self, e, lane, which):
        a, b = self.expr(e.a, lane), self.expr(e.b, lane)
        if dt.is_float(e.dtype):
            return f"tl_f{which}({a}, {b})"
        return self._helper_call(f"tl_{which}", e.dtype, a, b)

    def _compare(self, e, lane):
        a, b = self.expr(e.a, lane), self.expr(e.b, lane)
        return f"({a} {_COMPARE[type(e)]} {b})"

    _e_LT = _e_LE = _e_GT = _e_GE = _e_EQ = _e_NE = _compare

    def _e_And(self, e, lane):
        return f"({self.expr(e.a, lane)} && {self.expr(e.b, lane)})"

    def _e_Or(self, e, lane):
        return f"({self.expr(e.a, lane)} || {self.expr(e.b, lane)})"

    def _e_Not(self, e, lane):
        return f"(!{self.expr(e.a, lane)})"

    def _e_Select(self, e, lane):
        return (f"({self.expr(e.condition, lane)} ? {self.expr(e.true_value, lane)} : "
                f"{self.expr(e.false_value, lane)})")

    def _e_Cast(self, e, lane):
        src, dst = dt.element_of(e.value.dtype), dt.element_of(e.dtype)
        value = self.expr(e.value, lane if dt.lanes_of(e.value.dtype) > 1 else None)
        if src == dst:
            return value
        if dst == "bool":
            return f"({value} != 0)"
        if dst in ("float16", "bfloat16"):
            if dst == "float16" and src == "float64":
                return f"tl_h2f(tl_d2h({value}))"
            rounder = "tl_rh" if dst == "float16" else "tl_rbf"
            if src in ("float16", "bfloat16"):
                return f"{rounder}({value})"
            return f"{rounder}((float)({value}))"
        if self.wide and dst == "int32":
            return f"((long long)({value}))"
        return f"(({_CTYPES[dst]})({value}))"

    def _e_Broadcast(self, e, lane):
        return self.expr(e.value)

    def _e_Ramp(self, e, lane):
        base = self.expr(e.base)
        if lane == 0:
            return base
        stride = _int_const(e.stride)
        if stride is not None:
            offset = stride * lane
            return f"({base} + {self.expr(E.IntImm(offset, e.base.dtype))})"
        return f"({base} + {self.expr(e.stride)} * {lane})"

    def _e_Let(self, e, lane):
        t = ctype(e.var.dtype)
        vector = dt.lanes_of(e.value.dtype) > 1
        value = self.expr(e.value, lane if vector else None)
        name = f"{self.var(e.var)}_l{lane}" if vector else self.var(e.var)
        return (f"([&]() {{ const {t} {name} = {value}; "
                f"return {self.expr(e.body, lane)}; }})()")

    def _e_BufferLoad(self, e, lane):
        if self.tc is not None:
            reg = self.tc.load(self, e)
            if reg is not None:
                return reg
        key = self.hoisted.get(id(e))
        if key is not None:
            return f"{key}.{_LANE_FIELDS[lane]}"
        (index,) = _flat(e.buffer, e.indices)
        if dt.lanes_of(e.dtype) > 1:
            index = _lane_index(index, lane)
        text = f"{self.buf(e.buffer)}[{self.index(e.buffer, index)}]"
        element = dt.element_of(e.buffer.dtype)
        if element == "float16":
            return f"tl_h2f({text})"
        if element == "bfloat16":
            return f"tl_bf2f({text})"
        return text

    def index(self, buf, index) -> str:
        if buf.uid in self.large and index.dtype == "int32":
            outer, self.wide = self.wide, True
            try:
                return _bare(self.expr(index))
            finally:
                self.wide = outer
        return _bare(self.expr(index))

    def _e_Call(self, e, lane):
        if e.extern:
            raise UnsupportedOpError(f"extern function {e.op!r} cannot be called from a CUDA "
                                     "kernel")
        op = e.op
        if op == BARRIER:
            return "(__syncthreads(), 0)"
        if op == "if_then_else":
            c, t, f = e.args
            return (f"({self.expr(c, lane if dt.lanes_of(c.dtype) > 1 else None)} ? "
                    f"{self.expr(t, lane)} : {self.expr(f, lane)})")
        if op == "likely":
            return self.expr(e.args[0], lane)
        args = [self.expr(a, lane if dt.lanes_of(a.dtype) > 1 else None) for a in e.args]
        arg_dtype = dt.element_of(e.args[0].dtype) if e.args else "float32"
        if op in ("isnan", "isinf", "isfinite"):
            if not dt.is_float(arg_dtype):
                return "true" if op == "isfinite" else "false"
            return f"{op}({_math_arg(args[0], arg_dtype)})"
        if op == "abs" and not dt.is_float(arg_dtype):
            if dt.is_uint(arg_dtype) or arg_dtype == "bool":
                return args[0]
            if arg_dtype == "int64":
                return f"llabs({args[0]})"
            return self._round(e.dtype, f"abs((int)({args[0]}))")
        if op == "abs":
            op = "fabs"
        if not dt.is_float(arg_dtype):
            raise DTypeError(f"intrinsic {op} needs floating-point arguments, got {arg_dtype}")
        double = arg_dtype == "float64"
        suffix = "" if double else "f"
        one = "1.0" if double else "1.0f"
        if op == "sigmoid":
            text = f"{one} / ({one} + exp{suffix}(-({args[0]})))"
        elif op in ("pow", "fmod"):
            text = f"{op}{suffix}({args[0]}, {args[1]})"
        elif op in _UNARY_MATH:
            text = f"{_UNARY_MATH[op]}{suffix}({args[0]})"
        else:
            known = set(_UNARY_MATH) | {"sigmoid", "pow", "fmod", "abs", "isnan", "isinf",
                                        "isfinite", "if_then_else", "likely"}
            raise UnsupportedOpError(f"intrinsic {op!r} is not supported by the CUDA backend; "
                                     f"supported: {', '.join(sorted(known))}")
        return self._round(e.dtype, text) if dt.element_of(e.dtype) in (
            "float16", "bfloat16") else text

    # -- facts -----------------------------------------------------------------------------
    def non_negative(self, e) -> bool:
        if isinstance(e, E.IntImm):
            return e.value >= 0
        if isinstance(e, E.Var):
            return e.uid in self.nonneg
        if isinstance(e, (E.Add, E.Mul, E.FloorDiv, E.Div, E.Min)):
            return self.non_negative(e.a) and self.non_negative(e.b)
        if isinstance(e, E.Max):
            return self.non_negative(e.a) or self.non_negative(e.b)
        if isinstance(e, E.FloorMod):
            return self.non_negative(e.b)
        if isinstance(e, E.Mod):
            return self.non_negative(e.a) and self.non_negative(e.b)
        if isinstance(e, E.Cast):
            return dt.is_int(e.value.dtype) and self.non_negative(e.value) and \
                dt.bits(e.dtype) >= dt.bits(e.value.dtype)
        return False


def _math_arg(text: str, dtype: str) -> str:
    return text


def _bare(text: str) -> str:
    """``text`` without one pair of enclosing parentheses, when they enclose all of it."""
    if not (text.startswith("(") and text.endswith(")")):
        return text
    depth = 0
    for k, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and k < len(text) - 1:
            return text  # "(a) + (b)": the first ")" closes before the end
    return text[1:-1]


def _flat(buf, indices):
    if len(indices) != 1:
        raise UserError(f"access to buffer {buf.name!r} has {len(indices)} indices: code "
                        "generation expects flattened IR; lower it with tl.lower first")
    return indices


def _lane_index(index, lane: int):
    if dt.lanes_of(index.dtype) == 1:
        return index if lane == 0 else E.Add(index, E.IntImm(lane, index.dtype), index.dtype)
    if isinstance(index, E.Ramp):
        if lane == 0:
            return index.base
        stride = _int_const(index.stride)
        offset = E.IntImm(stride * lane, index.base.dtype) if stride is not None else \
            E.Mul(index.stride, E.IntImm(lane, index.stride.dtype), index.stride.dtype)
        return E.Add(index.base, offset, index.base.dtype)
    from codegen.llvm.lanes import lane_of
    return lane_of(index, lane)


def _int_const(e):
    if isinstance(e, E.IntImm):
        return e.value
    if isinstance(e, E.Broadcast):
        return _int_const(e.value)
    return None


def _is_zero(e) -> bool:
    return isinstance(e, E.IntImm) and e.value == 0


def _element_count(buf):
    count = 1
    for extent in buf.allocation_extents():
        if not isinstance(extent, E.IntImm):
            return None
        count *= extent.value
    return count * dt.lanes_of(buf.dtype)


def _expr_children(e) -> list:
    out = []
    for name in getattr(type(e), "__dataclass_fields__", {}):
        value = getattr(e, name)
        if isinstance(value, E.PrimExpr):
            out.append(value)
        elif isinstance(value, tuple):
            out.extend(v for v in value if isinstance(v, E.PrimExpr))
    return out
