"""Readable, Python-like text of IR nodes: what ``print(tl.lower(...))`` shows.

The text is for people (and for golden tests); it is not parsed back. Conventions:

- loops: ``for i in range(0, n):``, ``parallel(0, 64)``, ``vectorized(...)``, ``unrolled(...)``,
  ``thread_binding(0, 32, "threadIdx.x")``; the arguments are ``begin, end``, as in ``range``;
- constants: ``int32`` and ``float32`` print bare (``3``, ``1.0``), bools as ``True`` /
  ``False``, every other dtype as a constructor: ``int64(3)``, ``float16(0.5)``;
- ``x // y`` and ``x % y`` are floor division and modulo (Python's), ``truncdiv(x, y)`` and
  ``truncmod(x, y)`` the C ones; ``x / y`` is true division (floats);
- casts look like constructors too: ``float32(i)``; vectors: ``ramp(base, stride, lanes)``,
  ``broadcast(v, lanes)``;
- ``let x = v``, ``allocate C_local: float32[4, 16] in local``, ``assert c, "msg"`` and
  ``attr(node, "key", value)`` scope over the statements that follow them; where something else
  follows their body at the same depth they print as a block (a trailing ``:`` and an indent);
- two different variables (or buffers) with one name get suffixes, ``i`` and ``i_1``, numbered in
  the order the printer meets them.
"""
from __future__ import annotations

import json

from .. import dtype as dt
from .. import expr as E
from . import stmt as S

INDENT = "    "

# Python precedences; higher binds tighter.
_LET, _OR, _AND, _NOT, _CMP, _ADD, _MUL, _UNARY, _ATOM = range(9)

_INFIX = {
    E.Add: ("+", _ADD), E.Sub: ("-", _ADD), E.Mul: ("*", _MUL),
    E.FloorDiv: ("//", _MUL), E.FloorMod: ("%", _MUL),
    E.EQ: ("==", _CMP), E.NE: ("!=", _CMP), E.LT: ("<", _CMP), E.LE: ("<=", _CMP),
    E.GT: (">", _CMP), E.GE: (">=", _CMP), E.And: ("and", _AND), E.Or: ("or", _OR),
}
_FOR_KIND = {S.SERIAL: "range", S.PARALLEL: "parallel", S.VECTORIZED: "vectorized",
             S.UNROLLED: "unrolled", S.THREAD_BINDING: "thread_binding"}
_SCOPED = (S.LetStmt, S.Allocate, S.AssertStmt, S.AttrStmt)


def to_text(node) -> str:
    """The readable text of an expression, statement, Buffer or PrimFunc.

    Example::

        >>> i = tl.var("i"); print(to_text((i + 1) * 2 // 3))
        (i + 1) * 2 // 3
    """
    try:
        return _Printer().text(node)
    except RecursionError:
        return f"<{type(node).__name__}: too deep to print>"


class _Names:
    """Printed names: one per variable / buffer, suffixed where two share a name."""

    def __init__(self):
        self.by_key: dict = {}
        self.used: set[str] = set()

    def _get(self, key, base: str) -> str:
        name = self.by_key.get(key)
        if name is None:
            base = base or "v"
            name, n = base, 0
            while name in self.used:
                n += 1
                name = f"{base}_{n}"
            self.used.add(name)
            self.by_key[key] = name
        return name

    def var(self, v) -> str:
        return self._get(("var", v.uid), v.name)

    def buffer(self, b) -> str:
        # A buffer and its data pointer (same name, as decl_buffer makes them) are one entity:
        # every buffer over that memory with that name prints the same.
        data = getattr(b, "data", None)
        if isinstance(data, E.Var) and data.name == b.name:
            return self.var(data)
        return self._get(("buf", b.name, data.uid if isinstance(data, E.Var) else b.uid), b.name)


class _Printer:
    def __init__(self):
        self.names = _Names()

    # -- entry -------------------------------------------------------------------------------
    def text(self, node) -> str:
        from .function import PrimFunc
        from .buffer import Buffer
        if isinstance(node, PrimFunc):
            return "\n".join(self.func(node))
        if isinstance(node, S.Stmt):
            return "\n".join(self.stmt(node, 0, True))
        if isinstance(node, Buffer):
            return self.buffer_decl(node)
        if isinstance(node, E.PrimExpr):
            return self.expr(node)
        return self.value(node)

    def func(self, f) -> list[str]:
        from .buffer import Buffer
        params = []
        for p in f.params:
            if isinstance(p, Buffer):
                params.append(self.buffer_decl(p))
            elif isinstance(p, E.Var):
                params.append(f"{self.names.var(p)}: {p.dtype}")
            else:
                params.append(self.value(p))
        lines = []
        if f.attrs:
            attrs = ", ".join(f"{self.value(k)}: {self.value(v)}" for k, v in f.attrs)
            lines.append(f"# attrs: {{{attrs}}}")
        lines.append(f"def {f.name}({', '.join(params)}):")
        lines.extend(self.stmt(f.body, 1, True))
        return lines

    def buffer_decl(self, b) -> str:
        extra = ""
        if b.strides:
            extra += f", strides=[{self.exprs(b.strides)}]"
        if not (isinstance(b.elem_offset, E.IntImm) and b.elem_offset.value == 0):
            extra += f", elem_offset={self.expr(b.elem_offset)}"
        if b.scope != "global":
            extra += f", scope={json.dumps(b.scope)}"
        return f"{self.names.buffer(b)}: Buffer({b.dtype}, [{self.exprs(b.shape)}]{extra})"

    # -- statements ----------------------------------------------------------------------------
    def stmt(self, s, depth: int, tail: bool) -> list[str]:
        """Lines of ``s`` at ``depth``; ``tail``: nothing follows it at this depth."""
        pad = INDENT * depth
        if isinstance(s, S.SeqStmt):
            lines = []
            for k, child in enumerate(s.seq):
                lines.extend(self.stmt(child, depth, tail and k == len(s.seq) - 1))
            return lines
        if isinstance(s, S.For):
            return [pad + self.for_header(s)] + self.stmt(s.body, depth + 1, True)
        if isinstance(s, S.BufferStore):
            target = f"{self.names.buffer(s.buffer)}[{self.exprs(s.indices)}]"
            return [f"{pad}{target} = {self.expr(s.value)}"]
        if isinstance(s, S.IfThenElse):
            return self.if_lines(s, depth, "if")
        if isinstance(s, _SCOPED):
            head = pad + self.scoped_header(s)
            if tail:
                return [head] + self.stmt(s.body, depth, True)
            return [head + ":"] + self.stmt(s.body, depth + 1, True)
        if isinstance(s, S.Evaluate):
            if isinstance(s.value, E.IntImm) and s.value.value == 0:
                return [pad + "pass"]
            return [pad + self.expr(s.value)]
        return [pad + self.value(s)]

    def for_header(self, s) -> str:
        args = self.range_args(s.min, s.extent)
        if s.kind == S.THREAD_BINDING or s.thread_tag:
            args += f", {json.dumps(s.thread_tag)}"
        kind = _FOR_KIND.get(s.kind, s.kind)
        line = f"for {self.names.var(s.loop_var)} in {kind}({args}):"
        if s.annotations:
            line += "  # " + ", ".join(f"{k}={self.value(v)}" for k, v in s.annotations)
        return line

    def range_args(self, begin, extent) -> str:
        """``begin, end`` of the half-open range ``[begin, begin + extent)``."""
        first = self.expr(begin)
        if isinstance(begin, E.IntImm) and begin.value == 0:
            end = self.expr(extent)
        elif isinstance(begin, E.IntImm) and isinstance(extent, E.IntImm):
            end = self.expr(E.IntImm(begin.value + extent.value, extent.dtype))
        else:
            end = self.infix("+", _ADD, begin, extent)
        return f"{first}, {end}"

    def if_lines(self, s, depth: int, keyword: str) -> list[str]:
        pad = INDENT * depth
        lines = [f"{pad}{keyword} {self.expr(s.condition)}:"]
        lines += self.stmt(s.then_case, depth + 1, True)
        other = s.else_case
        if isinstance(other, S.IfThenElse):
            lines += self.if_lines(other, depth, "elif")
        elif other is not None:
            lines += [pad + "else:"] + self.stmt(other, depth + 1, True)
        return lines

    def scoped_header(self, s) -> str:
        if isinstance(s, S.LetStmt):
            return f"let {self.names.var(s.var)} = {self.expr(s.value)}"
        if isinstance(s, S.Allocate):
            b = s.buffer
            return f"allocate {self.names.buffer(b)}: {b.dtype}[{self.exprs(b.shape)}] in {b.scope}"
        if isinstance(s, S.AssertStmt):
            return f"assert {self.expr(s.condition)}, {json.dumps(s.message)}"
        return f"attr({self.value(s.node)}, {json.dumps(s.key)}, {self.value(s.value)})"

    # -- expressions ---------------------------------------------------------------------------
    def exprs(self, items) -> str:
        return ", ".join(self.value(x) for x in items)

    def expr(self, e) -> str:
        return self.prec(e)[0]

    def operand(self, e, min_prec: int) -> str:
        text, p = self.prec(e)
        return text if p >= min_prec else f"({text})"

    def infix(self, op: str, p: int, a, b) -> str:
        # Left-associative: the right operand needs strictly tighter binding; comparisons do
        # not chain, so both of their operands do.
        left = self.operand(a, p + 1 if p == _CMP else p)
        return f"{left} {op} {self.operand(b, p + 1)}"

    def call(self, fn: str, *args) -> str:
        return f"{fn}({', '.join(self.value(a) for a in args)})"

    def prec(self, e) -> tuple[str, int]:  # noqa: C901 - one flat dispatch over node kinds
        cls = type(e)
        if isinstance(e, E.Var):
            return self.names.var(e), _ATOM
        if cls is E.IntImm:
            return self.int_const(e)
        if cls is E.FloatImm:
            return self.float_const(e)
        if cls is E.StringImm:
            return json.dumps(e.value), _ATOM
        if cls is E.Sub and _is_zero(e.a):
            return "-" + self.operand(e.b, _UNARY + 1), _UNARY
        if cls in _INFIX:
            op, p = _INFIX[cls]
            return self.infix(op, p, e.a, e.b), p
        if cls is E.Div:
            if dt.is_float(e.dtype):
                return self.infix("/", _MUL, e.a, e.b), _MUL
            return self.call("truncdiv", e.a, e.b), _ATOM
        if cls is E.Mod:
            return self.call("truncmod", e.a, e.b), _ATOM
        if cls is E.Min:
            return self.call("min", e.a, e.b), _ATOM
        if cls is E.Max:
            return self.call("max", e.a, e.b), _ATOM
        if cls is E.Not:
            return "not " + self.operand(e.a, _NOT), _NOT
        if cls is E.Select:
            return self.call("select", e.condition, e.true_value, e.false_value), _ATOM
        if cls is E.Cast:
            return self.call(e.dtype, e.value), _ATOM
        if cls is E.Call:
            if e.extern:
                args = ", ".join([json.dumps(e.op)] + [self.value(a) for a in e.args])
                return f"call_extern({args}, dtype={json.dumps(e.dtype)})", _ATOM
            return self.call(e.op, *e.args), _ATOM
        if cls is E.Let:
            name, value = self.names.var(e.var), self.operand(e.value, _OR)
            return f"let {name} = {value} in {self.expr(e.body)}", _LET
        if cls is E.Ramp:
            return self.call("ramp", e.base, e.stride, e.lanes), _ATOM
        if cls is E.Broadcast:
            return self.call("broadcast", e.value, e.lanes), _ATOM
        if cls is E.BufferLoad:
            return f"{self.names.buffer(e.buffer)}[{self.exprs(e.indices)}]", _ATOM
        if cls is E.ProducerLoad:
            return f"{getattr(e.producer, 'name', '?')}[{self.exprs(e.indices)}]", _ATOM
        if cls is E.Reduce:
            return self.reduce(e), _ATOM
        return self.value(e), _ATOM

    def int_const(self, e) -> tuple[str, int]:
        if e.dtype == "bool":
            return ("True" if e.value else "False"), _ATOM
        if e.dtype == "int32":
            return str(e.value), (_UNARY if e.value < 0 else _ATOM)
        return f"{e.dtype}({e.value})", _ATOM

    def float_const(self, e) -> tuple[str, int]:
        text = _float_text(e.value, e.dtype)
        if e.dtype == "float32":
            return text, (_UNARY if text.startswith("-") else _ATOM)
        return f"{e.dtype}({text})", _ATOM

    def reduce(self, e) -> str:
        name = getattr(e.combiner, "name", "reduce")
        sources = [self.expr(s) for s in e.source]
        source = sources[0] if len(sources) == 1 else f"({', '.join(sources)})"
        axes = ", ".join(self.value(getattr(a, "var", a)) for a in e.axis)
        text = f"{name}({source}, axis=[{axes}]"
        cond = e.condition
        if cond is not None and not (isinstance(cond, E.IntImm) and cond.value == 1):
            text += f", where={self.expr(cond)}"
        if e.init:
            text += f", init=[{self.exprs(e.init)}]"
        text += ")"
        return text if len(e.source) == 1 else f"{text}[{e.value_index}]"

    # -- anything else: declarations, Python values ----------------------------------------------
    def value(self, x) -> str:
        from .buffer import Buffer
        if isinstance(x, E.PrimExpr):
            return self.expr(x)
        if isinstance(x, Buffer):
            return self.names.buffer(x)
        if isinstance(x, E.IterVar):
            return self.names.var(x.var)
        if isinstance(x, E.Range):
            return f"range({self.range_args(x.min, x.extent)})"
        if isinstance(x, S.Stmt):
            return "\n".join(self.stmt(x, 0, True))
        if isinstance(x, str):
            return json.dumps(x)
        if isinstance(x, (tuple, list)):
            return f"[{', '.join(self.value(v) for v in x)}]"
        if isinstance(x, E.Node):
            import dataclasses
            fields = ", ".join(f"{f.name}={self.value(getattr(x, f.name))}"
                               for f in dataclasses.fields(x) if f.compare)
            return f"{type(x).__name__}({fields})"
        name = getattr(x, "name", None)
        if isinstance(name, str) and not isinstance(x, (int, float, bool)):
            return name
        return repr(x)


def _is_zero(e) -> bool:
    return isinstance(e, (E.IntImm, E.FloatImm)) and e.value == 0 and e.dtype != "bool"


def _float_text(value: float, dtype: str) -> str:
    value = float(value)
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if dtype in ("float32", "float16"):
        import numpy as np
        text = str(np.dtype(dtype).type(value))
    else:
        text = repr(value)
    if "." not in text and "e" not in text and "n" not in text:
        text += ".0"
    return text
