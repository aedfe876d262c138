"""Insert the barriers (``__syncthreads()``) that shared memory needs.

Threads of a block communicate through ``shared`` buffers: a value one thread stores is seen by
another only after a barrier. The pass walks each kernel in execution order, tracking the
shared buffers written and read since the last barrier, and puts a barrier

* before a statement that reads a shared buffer written since the last barrier (read after
  write: the cooperative load of a tile, then the compute), or that writes a shared buffer read
  since the last barrier (write after read);
* at the end of a loop body when the next iteration would overwrite a shared buffer that this
  iteration read after its last barrier (the k-loop of a tiled matmul).

Barriers are only placed where every thread of the block reaches them: code under a condition,
loop bounds or a guarded thread loop that depends on ``threadIdx`` is treated as one unit (a
barrier goes before it), and such a unit that itself needs a barrier inside is refused.
Kernels that touch no shared memory get no barrier.

Example::

    func = insert_barriers(tl.lower(s, [A, B, C]))
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import expr as E
from ..errors import ScheduleError
from ..ir import stmt as S
from ..ir.function import PrimFunc
from ..ir.functor import post_order_visit
from .verify_gpu import (THREAD_TAGS, barrier, host_var_ids, is_barrier, is_launch_loop,
                         launch_info, stage_of)


@dataclass
class _Pending:
    reads: set = field(default_factory=set)   # uids of shared buffers read since the barrier
    writes: set = field(default_factory=set)  # ... written since the last barrier

    def copy(self) -> "_Pending":
        return _Pending(set(self.reads), set(self.writes))

    def conflicts(self, acc: "_Pending") -> bool:
        return bool(self.writes & acc.reads) or bool(self.reads & acc.writes)

    def add(self, acc: "_Pending") -> None:
        self.reads |= acc.reads
        self.writes |= acc.writes

    def __bool__(self) -> bool:
        return bool(self.reads or self.writes)


def _accesses(s) -> _Pending:
    acc = _Pending()

    def visit(node):
        if isinstance(node, E.BufferLoad) and node.buffer.scope == "shared":
            acc.reads.add(node.buffer.uid)
        elif isinstance(node, S.BufferStore) and node.buffer.scope == "shared":
            acc.writes.add(node.buffer.uid)
    post_order_visit(s, visit)
    return acc


def _vars_of(e) -> set:
    out = set()
    post_order_visit(e, lambda n: out.add(n.uid) if isinstance(n, E.Var) else None)
    return out


def insert_barriers(func: PrimFunc) -> PrimFunc:
    """``func`` with the barriers its kernels' shared buffers need (see the module docstring).

    Host code (outside the kernels' outermost bound loops) is left as it is.
    """
    host = host_var_ids(func)

    def host_rewrite(s):
        if isinstance(s, S.SeqStmt):
            items = tuple(host_rewrite(x) for x in s.seq)
            return s if all(a is b for a, b in zip(items, s.seq)) else S.SeqStmt(items)
        if isinstance(s, S.Allocate):
            body = host_rewrite(s.body)
            return s if body is s.body else S.Allocate(s.buffer, body)
        if isinstance(s, S.AttrStmt):
            body = host_rewrite(s.body)
            return s if body is s.body else S.AttrStmt(s.node, s.key, s.value, body)
        if is_launch_loop(s):
            if not _accesses(s):
                return s
            info = launch_info(s, host)
            new, _ = _Sync(info).stmt(s, _Pending(), set())
            return new
        return s  # unbound host code: the verifier names it

    body = host_rewrite(func.body)
    return func if body is func.body else func.with_body(body)


class _Sync:
    def __init__(self, info):
        self.info = info

    def _divergence(self, s, thread_vars: set):
        """Why ``s`` may run on some threads of the block only, or None."""
        if isinstance(s, S.For):
            if (_vars_of(s.min) | _vars_of(s.extent)) & thread_vars:
                return f"loop {s.loop_var.name} has bounds that depend on threadIdx"
            if is_launch_loop(s) and id(s) in self.info.guarded:
                return (f"loop {s.loop_var.name} bound to {s.thread_tag} runs on some threads "
                        "only")
        if isinstance(s, S.IfThenElse) and _vars_of(s.condition) & thread_vars:
            return f"condition `{s.condition}` depends on threadIdx"
        return None

    def stmt(self, s, pending: _Pending, thread_vars: set):
        """(new statement, pending accesses after it)."""
        why = self._divergence(s, thread_vars)
        if why is not None:
            return self._unit(s, pending, thread_vars, why)
        if isinstance(s, S.SeqStmt):
            out = []
            for item in s.seq:
                new, pending = self.stmt(item, pending, thread_vars)
                out.append(new)
            return S.seq(*out), pending
        if isinstance(s, S.Allocate):
            body, pending = self.stmt(s.body, pending, thread_vars)
            return S.Allocate(s.buffer, body), pending
        if isinstance(s, S.AttrStmt):
            body, pending = self.stmt(s.body, pending, thread_vars)
            return S.AttrStmt(s.node, s.key, s.value, body), pending
        if isinstance(s, S.AssertStmt):
            body, pending = self.stmt(s.body, pending, thread_vars)
            return S.AssertStmt(s.condition, s.message, body), pending
        if isinstance(s, S.LetStmt):
            inner = thread_vars | {s.var.uid} if _vars_of(s.value) & thread_vars else thread_vars
            body, pending = self.stmt(s.body, pending, inner)
            return S.LetStmt(s.var, s.value, body), pending
        if isinstance(s, S.IfThenElse):  # a uniform condition: barriers may go inside
            then, after_then = self.stmt(s.then_case, pending.copy(), thread_vars)
            other, after = None, pending.copy()
            if s.else_case is not None:
                other, after = self.stmt(s.else_case, pending.copy(), thread_vars)
            after.add(after_then)
            return S.IfThenElse(s.condition, then, other), after
        if isinstance(s, S.For):
            return self._loop(s, pending, thread_vars)
        if is_barrier(s):
            return s, _Pending()
        acc = _accesses(s)
        if pending.conflicts(acc):
            pending = _Pending()
            s = S.seq(barrier(), s)
        pending = pending.copy()
        pending.add(acc)
        return s, pending

    def _loop(self, s, pending: _Pending, thread_vars: set):
        acc = _accesses(s.body)
        prefix = None
        if pending.conflicts(acc):
            prefix, pending = barrier(), _Pending()
        inner = set(thread_vars)
        if is_launch_loop(s) and s.thread_tag in THREAD_TAGS:
            inner.add(s.loop_var.uid)
            # one iteration per thread: nothing is carried from iteration to iteration
            body, after = self.stmt(s.body, pending, inner)
        else:
            body, end = self.stmt(s.body, pending, inner)
            once = isinstance(s.extent, E.IntImm) and s.extent.value <= 1
            if not once and end.conflicts(acc) and not is_launch_loop(s):
                body, after = S.seq(body, barrier()), _Pending()
            else:
                after = end
        loop = S.For(s.loop_var, s.min, s.extent, s.kind, body, s.thread_tag, s.annotations)
        return (S.seq(prefix, loop) if prefix is not None else loop), after

    def _unit(self, s, pending: _Pending, thread_vars: set, why: str):
        """Divergent code: one unit, never a barrier inside."""
        acc = _accesses(s)
        if acc.reads & acc.writes:
            # would the code need a barrier of its own? Run the analysis as if it were uniform.
            probe = _Sync(self.info)
            probe._divergence = lambda *_: None
            inner_vars = set(thread_vars)
            if isinstance(s, S.For):
                inner_vars.add(s.loop_var.uid)
            new, _ = probe.stmt(s, _Pending(), inner_vars)
            if _count_barriers(new) > _count_barriers(s):
                raise ScheduleError(
                    f"stage {stage_of(s)}: shared memory is written and read by different "
                    f"threads inside divergent control flow ({why}), which would need a barrier "
                    "(__syncthreads) that not every thread reaches; compute the shared stage "
                    "outside that loop or condition")
        if pending.conflicts(acc):
            s, pending = S.seq(barrier(), s), _Pending()
        pending = pending.copy()
        pending.add(acc)
        return s, pending


def _count_barriers(s) -> int:
    count = [0]

    def visit(node):
        if is_barrier(node):
            count[0] += 1
    post_order_visit(s, visit)
    return count[0]


# -- cross-thread reduction ------------------------------------------------------------------------

def lower_cross_thread_reductions(func: PrimFunc) -> PrimFunc:
    """Reductions whose reduce axis is bound to ``threadIdx.*``: a block all-reduce.

    The pattern (inside a kernel, i.e. under another bound loop)::

        for t in thread_binding(0, n, "threadIdx.x"):   # t does not index the element
            ... R[idx] = R[idx] + v ...                 # (or *, max, min), R global/shared

    becomes: each thread accumulates its share into a register, the partial results meet in a
    ``shared`` array and are combined by a tree (log2(n) steps, barriers between them), and
    thread 0 folds the total into ``R[idx]``. ``n`` must be a constant. Trigger it by binding a
    reduce axis (for example the inner part of ``split(k, factor=n)``) to ``threadIdx.x`` with
    the block's other thread axes on data axes; every thread of the block must reach the
    reduction (it is refused under a condition on threadIdx). Other reductions bound to
    threads are refused by the verifier.
    """
    from ..ir.functor import Mutator

    class _Rewrite(Mutator):
        depth = 0

        def visit_For(self, s):
            launch = is_launch_loop(s)
            self.depth += launch
            try:
                s = self.generic_visit(s)
            finally:
                self.depth -= launch
            if launch and s.thread_tag in THREAD_TAGS and self.depth > 0:
                new = _all_reduce(s)
                if new is not None:
                    return new
            return s

    body = _Rewrite().visit(func.body)
    return func if body is func.body else func.with_body(body)


_COMBINERS = (E.Add, E.Mul, E.Max, E.Min)


def _identity(op, dtype):
    from .. import dtype as dt
    if op is E.Add:
        return E.const(0, dtype)
    if op is E.Mul:
        return E.const(1, dtype)
    if dt.is_float(dtype):
        return E.FloatImm(float("-inf") if op is E.Max else float("inf"), dtype)
    import numpy as np
    from ..ir.interpreter import np_dtype
    info = np.iinfo(np_dtype(dtype))
    return E.IntImm(int(info.min if op is E.Max else info.max), dtype)


def _all_reduce(loop):
    from ..ir.buffer import decl_buffer
    from ..ir.functor import Mutator
    from ..ir.structural import structural_equal
    if not (isinstance(loop.extent, E.IntImm) and isinstance(loop.min, E.IntImm)
            and loop.min.value == 0 and loop.extent.value > 1):
        return None
    stores = []
    inner_vars = set()

    def visit(node):
        if isinstance(node, S.BufferStore):
            stores.append(node)
        elif isinstance(node, S.For):
            inner_vars.add(node.loop_var.uid)
            if is_launch_loop(node):
                inner_vars.add(-1)  # nested thread loops: not this pattern
        elif isinstance(node, (S.LetStmt, E.Let)):
            inner_vars.add(node.var.uid)
        elif isinstance(node, S.Allocate):
            inner_vars.add(-1)
    post_order_visit(loop.body, visit)
    if not stores or -1 in inner_vars:
        return None
    buf = stores[0].buffer
    if buf.scope not in ("global", "shared") or any(st.buffer is not buf for st in stores):
        return None
    index = stores[0].indices
    used = set()
    for i in index:
        used |= _vars_of(i)
    if loop.loop_var.uid in used or used & inner_vars:
        return None
    op = None
    for st in stores:
        if len(st.indices) != len(index) or not all(
                structural_equal(a, b) for a, b in zip(st.indices, index)):
            return None
        value = st.value
        if type(value) not in _COMBINERS or (op is not None and type(value) is not op):
            return None
        op = type(value)
        old = E.BufferLoad(buf, tuple(index), buf.dtype)
        if structural_equal(value.a, old):
            other = value.b
        elif structural_equal(value.b, old):
            other = value.a
        else:
            return None
        loads = []
        post_order_visit(other, lambda n: loads.append(n) if isinstance(n, E.BufferLoad)
                         and n.buffer is buf else None)
        if loads:
            return None
    dtype = buf.dtype
    n = loop.extent.value
    acc = decl_buffer((1,), dtype, f"{buf.name}.red_local", scope="local")
    red = decl_buffer((n,), dtype, f"{buf.name}.red_shared", scope="shared")
    zero = (E.IntImm(0, "int32"),)

    class _ToAcc(Mutator):
        def visit_BufferStore(self, st):
            v = st.value
            other = v.b if structural_equal(v.a, E.BufferLoad(buf, tuple(index), dtype)) else v.a
            return S.BufferStore(acc, op(E.BufferLoad(acc, zero, dtype), other, dtype), zero)

    tag, t = loop.thread_tag, loop.loop_var
    partial = S.For(t, loop.min, loop.extent, S.THREAD_BINDING, S.Allocate(acc, S.seq(
        S.BufferStore(acc, _identity(op, dtype), zero),
        _ToAcc().visit(loop.body),
        S.BufferStore(red, E.BufferLoad(acc, zero, dtype), (t,)))), tag, loop.annotations)
    steps = []
    half = 1
    while half * 2 < n:
        half *= 2
    while half >= 1:
        v = E.Var(f"{t.name}.red{half}", t.dtype)
        cond = E.LT(v, E.IntImm(half, v.dtype), "bool")
        if half * 2 > n:
            cond = E.And(cond, E.LT(E.Add(v, E.IntImm(half, v.dtype), v.dtype),
                                    E.IntImm(n, v.dtype), "bool"), "bool")
        combine = S.BufferStore(red, op(E.BufferLoad(red, (v,), dtype), E.BufferLoad(
            red, (E.Add(v, E.IntImm(half, v.dtype), v.dtype),), dtype), dtype), (v,))
        steps.append(S.For(v, E.IntImm(0, v.dtype), loop.extent, S.THREAD_BINDING,
                           S.IfThenElse(cond, combine), tag))
        half //= 2
    last = E.Var(f"{t.name}.red_out", t.dtype)
    old = E.BufferLoad(buf, tuple(index), dtype)
    final = S.For(last, E.IntImm(0, last.dtype), loop.extent, S.THREAD_BINDING, S.IfThenElse(
        E.EQ(last, E.IntImm(0, last.dtype), "bool"),
        S.BufferStore(buf, op(old, E.BufferLoad(red, zero, dtype), dtype), tuple(index))), tag)
    tail = [barrier()] if buf.scope == "global" else []  # the total, seen by every thread
    return S.Allocate(red, S.seq(partial, *steps, final, *tail))
