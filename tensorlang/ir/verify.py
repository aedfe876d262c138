"""Well-formedness of loop IR: scoping and dtypes, checked in one walk.

Cheap enough to run after every lowering pass (the pipeline's ``verify`` switch). A failure is a
bug in whatever pass produced the IR, so it raises ``InternalError``, naming the rule broken,
the offending node's text and the loops around it.
"""
from __future__ import annotations

from .. import dtype as dt
from .. import expr as E
from ..errors import InternalError
from . import stmt as S

_FOR_KINDS = (S.SERIAL, S.PARALLEL, S.VECTORIZED, S.UNROLLED, S.THREAD_BINDING)


def verify_well_formed(node) -> None:
    """Raise ``InternalError`` unless ``node`` (a PrimFunc or a statement) is well formed.

    Checked: every variable is used inside the scope that defines it (loop variables, lets,
    allocated buffers; a PrimFunc's parameters, their buffers and the variables in their shapes
    are in scope everywhere; for a bare statement, variables it never defines are taken as
    defined by its context); no variable is defined again inside its own scope; operands of a
    binary operation share one dtype that fits the node's; stored values have the buffer's element
    dtype; vector lanes agree between indices and values; loop bounds are integers and branch
    conditions bool.

    Example::

        >>> verify_well_formed(tl.lower(s, [A, B, C]))   # silent when the IR is fine
    """
    from .function import PrimFunc
    if isinstance(node, PrimFunc):
        checker = _Checker(node.name, external=None, root=node.body)
        for p in node.params:
            if isinstance(p, E.Var):
                checker.define_global(p)
            else:
                checker.define_global(p.data)
                for part in (p.shape, p.strides, (p.elem_offset,)):
                    for e in part:
                        for v in _vars_in(e):
                            checker.define_global(v)
        checker.stmt(node.body)
    elif isinstance(node, S.Stmt):
        checker = _Checker(None, external=_bound_vars(node), root=node)
        checker.stmt(node)
    elif isinstance(node, E.PrimExpr):
        _Checker(None, external=_bound_vars(node), root=node).expr(node)
    else:
        raise InternalError(f"verify_well_formed expects a PrimFunc or a statement, "
                            f"got {type(node).__name__}")


def _vars_in(e) -> list:
    from .functor import post_order_visit
    found = []
    post_order_visit(e, lambda n: found.append(n) if isinstance(n, E.Var) else None)
    return found


def _bound_vars(node) -> set[int]:
    """uids of the variables that ``node`` itself defines somewhere."""
    from .functor import post_order_visit
    bound: set[int] = set()

    def note(n):
        if isinstance(n, (S.For,)):
            bound.add(n.loop_var.uid)
        elif isinstance(n, (S.LetStmt, E.Let)):
            bound.add(n.var.uid)
        elif isinstance(n, S.Allocate):
            bound.add(n.buffer.data.uid)

    post_order_visit(node, note)
    return bound


def _short(node, limit: int = 160) -> str:
    from .printer import to_text
    text = to_text(node) if not isinstance(node, S.Stmt) else to_text(node).split("\n")[0]
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _Checker:
    def __init__(self, func_name, external, root):
        self.func_name = func_name
        self.root = root
        # For a bare statement: the uids of variables it defines itself; any other variable
        # comes from the context. For a PrimFunc (None): every variable must be defined.
        self.external = external
        self.scope: dict[int, str] = {}      # uid -> what defines it
        self.globals: set[int] = set()
        self.left: dict[int, str] = {}       # uid -> definer, once its scope has closed
        self.loops: list[str] = []
        self.expr_methods = {
            E.IntImm: None, E.FloatImm: None, E.StringImm: None,
            E.Var: self.e_var, E.Not: self.e_not, E.Select: self.e_select, E.Cast: self.e_cast,
            E.Call: self.e_call, E.Let: self.e_let, E.Ramp: self.e_ramp,
            E.Broadcast: self.e_broadcast, E.BufferLoad: self.e_load,
        }
        self.stmt_methods = {
            S.For: self.s_for, S.SeqStmt: self.s_seq, S.BufferStore: self.s_store,
            S.IfThenElse: self.s_if, S.LetStmt: self.s_let, S.Allocate: self.s_allocate,
            S.Evaluate: self.s_evaluate, S.AssertStmt: self.s_assert, S.AttrStmt: self.s_attr,
        }

    # -- reporting ---------------------------------------------------------------------------
    def fail(self, message: str, node=None):
        where = f" in function '{self.func_name}'" if self.func_name else ""
        if self.loops:
            where += " inside " + " > ".join(self.loops)
        shown = f": `{_short(node)}`" if node is not None else ""
        raise InternalError(f"ill-formed IR{where}: {message}{shown}")

    # -- scopes ----------------------------------------------------------------------------------
    def define_global(self, v):
        self.globals.add(v.uid)
        self.scope[v.uid] = "a parameter"

    def enter(self, v, definer: str, node):
        if not isinstance(v, E.Var):
            self.fail(f"{definer} binds {type(v).__name__}, not a Var", node)
        if v.uid in self.scope:
            self.fail(f"variable '{v.name}' is defined twice in nested scopes ({definer} "
                      f"shadows {self.scope[v.uid]})", node)
        self.scope[v.uid] = definer

    def leave(self, v):
        self.left[v.uid] = self.scope.pop(v.uid)

    def use(self, v, node, what: str = "variable"):
        if v.uid in self.scope:
            return
        if self.external is not None and v.uid not in self.external:
            return
        definer = self.left.get(v.uid)
        bound = self.external if self.external is not None else _bound_vars(self.root)
        if definer is not None or v.uid in bound:
            definer = definer or "a statement that does not enclose this use"
            self.fail(f"{what} '{v.name}' is used outside the scope that defines it "
                      f"({definer})", node)
        self.fail(f"{what} '{v.name}' is not defined (neither a parameter, a shape variable "
                  f"of a parameter, a loop variable, a let nor an allocation)", node)

    # -- dtype helpers ---------------------------------------------------------------------------
    def want_int(self, e, what: str, node):
        if not dt.is_int(e.dtype) or dt.lanes_of(e.dtype) != 1:
            self.fail(f"{what} must be a scalar integer, got {e.dtype}", node)

    def want_bool(self, e, what: str, node, lanes: int | None = 1):
        if not dt.is_bool(e.dtype) or (lanes is not None and dt.lanes_of(e.dtype) != lanes):
            kind = "bool" if lanes in (None, 1) else f"bool with {lanes} lanes"
            self.fail(f"{what} must be {kind}, got {e.dtype}", node)

    def index_lanes(self, indices, node, what: str) -> int:
        lanes = 1
        for index in indices:
            self.expr(index)
            if not dt.is_int(index.dtype):
                self.fail(f"{what} index {_short(index)} must be an integer, got {index.dtype}",
                          node)
            n = dt.lanes_of(index.dtype)
            if n > 1:
                if lanes > 1 and n != lanes:
                    self.fail(f"{what} indices have different vector lanes ({lanes} vs {n})",
                              node)
                lanes = n
        return lanes

    def check_access(self, buffer, indices, node, what: str, value_dtype: str, role: str):
        self.use(buffer.data, node, "buffer")
        if len(indices) not in (buffer.ndim, 1) and not (buffer.ndim == 0 and not indices):
            self.fail(f"{what} of '{buffer.name}' has {len(indices)} indices but the buffer has "
                      f"{buffer.ndim} dimensions (or 1 index after flattening)", node)
        lanes = self.index_lanes(indices, node, what)
        if dt.element_of(value_dtype) != dt.element_of(buffer.dtype):
            self.fail(f"{role} dtype {value_dtype} does not match the element dtype "
                      f"{buffer.dtype} of buffer '{buffer.name}'", node)
        expected = lanes * dt.lanes_of(buffer.dtype)
        if dt.lanes_of(value_dtype) != expected:
            self.fail(f"vector lanes differ between index ({lanes}) and {role} "
                      f"({value_dtype}) of '{buffer.name}'", node)

    # -- expressions -------------------------------------------------------------------------
    def expr(self, e):
        if not isinstance(e, E.PrimExpr):
            self.fail(f"expected an expression, found {type(e).__name__}", None)
        cls = type(e)
        method = self.expr_methods.get(cls, False)
        if method is None:
            return
        if method is not False:
            return method(e)
        if isinstance(e, E.BinaryOp):
            return self.e_binary(e)
        if isinstance(e, E.Var):
            return self.e_var(e)
        if isinstance(e, (E.ProducerLoad, E.Reduce)):
            self.fail(f"{cls.__name__} is tensor-DSL only and must not remain in loop IR", e)
        self.fail(f"unknown expression node {cls.__name__}", e)

    def e_var(self, e):
        self.use(e, e)

    def e_binary(self, e):
        self.expr(e.a)
        self.expr(e.b)
        name = type(e).__name__
        if e.a.dtype != e.b.dtype:
            self.fail(f"operands of {name} have different dtypes ({e.a.dtype} vs {e.b.dtype})", e)
        if isinstance(e, E.CmpOp):
            expected = dt.with_lanes("bool", dt.lanes_of(e.a.dtype))
        else:
            expected = e.a.dtype
            if isinstance(e, (E.And, E.Or)) and not dt.is_bool(e.a.dtype):
                self.fail(f"operands of {name} must be bool, got {e.a.dtype}", e)
        if e.dtype != expected:
            self.fail(f"{name} of {e.a.dtype} operands has dtype {e.dtype}, expected {expected}", e)

    def e_not(self, e):
        self.expr(e.a)
        self.want_bool(e.a, "operand of Not", e, lanes=None)
        if e.dtype != e.a.dtype:
            self.fail(f"Not of {e.a.dtype} has dtype {e.dtype}", e)

    def e_select(self, e):
        for x in (e.condition, e.true_value, e.false_value):
            self.expr(x)
        lanes = dt.lanes_of(e.dtype)
        if not dt.is_bool(e.condition.dtype) or dt.lanes_of(e.condition.dtype) not in (1, lanes):
            self.fail(f"condition of Select must be bool (or bool with {lanes} lanes), "
                      f"got {e.condition.dtype}", e)
        self.same_dtype(e, (e.true_value, e.false_value), "branches of Select")

    def same_dtype(self, e, values, what: str):
        for v in values:
            if v.dtype != e.dtype:
                self.fail(f"{what} have dtype {v.dtype}, the node has {e.dtype}", e)

    def e_cast(self, e):
        self.expr(e.value)
        if dt.lanes_of(e.value.dtype) != dt.lanes_of(e.dtype):
            self.fail(f"Cast changes the vector lanes ({e.value.dtype} to {e.dtype})", e)

    def e_call(self, e):
        if e.op == "if_then_else" and not e.extern:
            if len(e.args) != 3:
                self.fail(f"if_then_else takes 3 arguments, got {len(e.args)}", e)
            cond, a, b = e.args
            self.expr(cond)
            lanes = dt.lanes_of(e.dtype)
            if not dt.is_bool(cond.dtype) or dt.lanes_of(cond.dtype) not in (1, lanes):
                self.fail(f"condition of if_then_else must be bool (or bool with {lanes} "
                          f"lanes), got {cond.dtype}", e)
            self.expr(a)
            self.expr(b)
            self.same_dtype(e, (a, b), "branches of if_then_else")
            return
        for a in e.args:
            self.expr(a)
        if e.op == "likely" and not e.extern and e.args:
            self.want_bool(e.args[0], "argument of likely", e, lanes=None)

    def e_let(self, e):
        self.expr(e.value)
        if e.var.dtype != e.value.dtype:
            self.fail(f"let binds {e.var.dtype} variable '{e.var.name}' to a {e.value.dtype} "
                      f"value", e)
        self.enter(e.var, f"the let of '{e.var.name}'", e)
        self.expr(e.body)
        self.leave(e.var)
        if e.dtype != e.body.dtype:
            self.fail(f"Let has dtype {e.dtype} but its body {e.body.dtype}", e)

    def e_ramp(self, e):
        self.expr(e.base)
        self.expr(e.stride)
        if dt.lanes_of(e.base.dtype) != 1 or e.base.dtype != e.stride.dtype:
            self.fail(f"Ramp base and stride must be scalars of one dtype, got {e.base.dtype} "
                      f"and {e.stride.dtype}", e)
        if e.dtype != dt.with_lanes(e.base.dtype, e.lanes):
            self.fail(f"Ramp of {e.lanes} lanes over {e.base.dtype} has dtype {e.dtype}", e)

    def e_broadcast(self, e):
        self.expr(e.value)
        if dt.lanes_of(e.value.dtype) != 1 or e.dtype != dt.with_lanes(e.value.dtype, e.lanes):
            self.fail(f"Broadcast of {e.value.dtype} to {e.lanes} lanes has dtype {e.dtype}", e)

    def e_load(self, e):
        self.check_access(e.buffer, e.indices, e, "load", e.dtype, "loaded")

    # -- statements ----------------------------------------------------------------------------
    def stmt(self, s):
        method = self.stmt_methods.get(type(s))
        if method is None:
            self.fail(f"unknown statement node {type(s).__name__}", None)
        method(s)

    def s_for(self, s):
        self.expr(s.min)
        self.expr(s.extent)
        self.want_int(s.min, "For min", s)
        self.want_int(s.extent, "For extent", s)
        if not isinstance(s.loop_var, E.Var) or not dt.is_int(s.loop_var.dtype):
            self.fail("the loop variable must be an integer Var", s)
        if s.kind not in _FOR_KINDS:
            self.fail(f"unknown loop kind {s.kind!r} (expected one of {', '.join(_FOR_KINDS)})", s)
        if s.kind == S.THREAD_BINDING and not s.thread_tag:
            self.fail("a thread_binding loop needs a thread_tag", s)
        self.enter(s.loop_var, f"the loop 'for {s.loop_var.name}'", s)
        self.loops.append(f"for {s.loop_var.name}")
        self.stmt(s.body)
        self.loops.pop()
        self.leave(s.loop_var)

    def s_seq(self, s):
        for child in s.seq:
            self.stmt(child)

    def s_store(self, s):
        self.expr(s.value)
        self.check_access(s.buffer, s.indices, s, "store", s.value.dtype, "stored value")

    def s_if(self, s):
        self.expr(s.condition)
        self.want_bool(s.condition, "condition of If", s)
        self.stmt(s.then_case)
        if s.else_case is not None:
            self.stmt(s.else_case)

    def s_let(self, s):
        self.expr(s.value)
        if s.var.dtype != s.value.dtype:
            self.fail(f"let binds {s.var.dtype} variable '{s.var.name}' to a {s.value.dtype} "
                      f"value", s)
        self.enter(s.var, f"the let of '{s.var.name}'", s)
        self.stmt(s.body)
        self.leave(s.var)

    def s_allocate(self, s):
        b = s.buffer
        for extent in b.shape:
            self.expr(extent)
            self.want_int(extent, f"extent of allocated buffer '{b.name}'", s)
        if b.data.dtype != "handle":
            self.fail(f"the data of buffer '{b.name}' must be a handle Var, got {b.data.dtype}", s)
        self.enter(b.data, f"the allocation of '{b.name}'", s)
        self.stmt(s.body)
        self.leave(b.data)

    def s_evaluate(self, s):
        self.expr(s.value)

    def s_assert(self, s):
        self.expr(s.condition)
        self.want_bool(s.condition, "condition of assert", s)
        self.stmt(s.body)

    def s_attr(self, s):
        if isinstance(s.value, E.PrimExpr):
            self.expr(s.value)
        self.stmt(s.body)
