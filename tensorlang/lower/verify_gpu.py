"""What a GPU can run: kernels found in a lowered function, their launch shape, and a verifier.

A lowered function for the GPU is *host code* (sequences, ``global`` scratch allocations)
around *kernels*: each kernel is a loop nest whose outermost loop is bound to ``blockIdx.*`` or
``threadIdx.*``. Several loops of one kernel may bind the same tag (the cooperative load of a
shared tile and the compute both use ``threadIdx.x``): the launch extent of a tag is the largest
of its loops' extents, and a loop with a smaller extent runs under a guard
``if (threadIdx.x < extent)`` (it is *guarded*, hence divergent).

:func:`verify_gpu` refuses what a GPU cannot run, with errors naming the stage (the tensor the
offending code stores) and the loop:

* loops left unbound around a kernel body (host code may only sequence kernels);
* more threads per block than the device allows, or a ``threadIdx``/``blockIdx`` extent over
  the hardware's per-axis limit;
* shared memory over the per-block limit (48 KB of static shared memory);
* a barrier (``tl.syncthreads``) under control flow that depends on ``threadIdx``;
* a loop bound to a thread tag nested inside a loop bound to the same tag with a smaller
  extent (the inner loop's extra threads would never run).

Barriers are ``Evaluate(Call("tl.syncthreads", (), "int32"))``: the interpreter treats them as
no-ops (its sequential run of the threads is already race-free), CUDA code gets
``__syncthreads()``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import dtype as dt
from .. import expr as E
from ..errors import ScheduleError, UnsupportedOpError
from ..ir import stmt as S
from ..ir.functor import post_order_visit

BARRIER = "tl.syncthreads"
BLOCK_TAGS = ("blockIdx.x", "blockIdx.y", "blockIdx.z")
THREAD_TAGS = ("threadIdx.x", "threadIdx.y", "threadIdx.z")
LAUNCH_TAGS = BLOCK_TAGS + THREAD_TAGS
# CUDA's per-axis limits (all current architectures)
AXIS_LIMITS = {"threadIdx.x": 1024, "threadIdx.y": 1024, "threadIdx.z": 64,
               "blockIdx.x": 2 ** 31 - 1, "blockIdx.y": 65535, "blockIdx.z": 65535}
DEFAULT_MAX_THREADS = 1024
DEFAULT_MAX_SHARED = 48 * 1024  # static shared memory per block without an opt-in


def barrier() -> S.Evaluate:
    """The barrier statement (``__syncthreads()`` in CUDA)."""
    return S.Evaluate(E.Call(BARRIER, (), "int32"))


def is_barrier(s) -> bool:
    return isinstance(s, S.Evaluate) and isinstance(s.value, E.Call) and s.value.op == BARRIER


def is_launch_loop(s) -> bool:
    return isinstance(s, S.For) and s.kind == S.THREAD_BINDING and s.thread_tag in LAUNCH_TAGS


# -- naming what went wrong -----------------------------------------------------------------

def stage_of(stmt) -> str:
    """The stage a piece of loop IR belongs to: the tensor (buffer) its first store writes."""
    found = []

    def visit(node):
        if not found and isinstance(node, S.BufferStore):
            found.append(node.buffer.name)
    post_order_visit(stmt, visit)
    return found[0] if found else "?"


def _int(e):
    return e.value if isinstance(e, E.IntImm) else None


def _same(a, b) -> bool:
    if isinstance(a, E.IntImm) and isinstance(b, E.IntImm):
        return a.value == b.value
    return a is b or E.Node.structural_equal(a, b)


def _vars_of(e) -> set:
    out = set()
    post_order_visit(e, lambda n: out.add(n.uid) if isinstance(n, E.Var) else None)
    return out


# -- host code and kernels --------------------------------------------------------------------

@dataclass
class HostPlan:
    """The host side of a GPU function: scratch buffers to allocate and kernels in order."""

    scratch: list = field(default_factory=list)   # Buffers of "global" Allocates at host level
    kernels: list = field(default_factory=list)   # For statements, the kernels' outer loops


def split_host(func) -> HostPlan:
    """The kernels and host allocations of ``func``; refuses unbound loops at host level."""
    plan = HostPlan()
    _host_walk(func.body, plan)
    return plan


def _host_walk(s, plan: HostPlan) -> None:
    if isinstance(s, S.SeqStmt):
        for item in s.seq:
            _host_walk(item, plan)
    elif isinstance(s, S.Allocate):
        if s.buffer.scope != "global":
            raise ScheduleError(
                f"stage {s.buffer.name} is stored in {s.buffer.scope!r} memory outside any "
                f"kernel: on the GPU a {s.buffer.scope} stage must be computed inside the bound "
                f"loops of its consumer (s[{s.buffer.name}].compute_at(...))")
        plan.scratch.append(s.buffer)
        _host_walk(s.body, plan)
    elif isinstance(s, S.AttrStmt):
        _host_walk(s.body, plan)
    elif isinstance(s, S.Evaluate) and isinstance(s.value, (E.IntImm, E.FloatImm)):
        return
    elif is_launch_loop(s):
        plan.kernels.append(s)
    elif isinstance(s, S.For):
        stage = stage_of(s)
        what = f"bound to {s.thread_tag}" if s.thread_tag else f"a {s.kind} loop"
        raise ScheduleError(
            f"stage {stage}: loop {s.loop_var.name} ({what}) is not inside any blockIdx/"
            f"threadIdx binding; on the GPU the outermost loops of every root stage must be "
            f"bound to blockIdx.* with threadIdx.* inside (e.g. "
            f"s[{stage}].bind(axis, tl.thread_axis('blockIdx.x')))")
    else:
        stage = stage_of(s)
        raise ScheduleError(
            f"stage {stage}: a {type(s).__name__} runs outside any blockIdx/threadIdx binding; "
            f"on the GPU every root stage's outermost loops must be bound to blockIdx.* / "
            f"threadIdx.*")


# -- launch shape of one kernel ---------------------------------------------------------------

@dataclass
class LaunchInfo:
    """Launch extents of a kernel: for each tag, the distinct extents of its loops.

    ``host[tag]`` lists expressions the host can evaluate (constants and shape variables);
    the launch extent of the tag is their maximum. A loop whose extent is not that maximum
    for sure is *guarded* (``guarded`` holds the ids of those For nodes).
    """

    extents: dict = field(default_factory=dict)  # tag -> [host-evaluable extent exprs]
    loops: dict = field(default_factory=dict)    # tag -> [For nodes]
    guarded: set = field(default_factory=set)    # id(For) of loops running under a guard

    def const_extent(self, tag: str):
        """The launch extent of ``tag`` if it is a compile-time constant (1 when unused)."""
        values = [_int(e) for e in self.extents.get(tag, ())]
        if not values:
            return 1
        if any(v is None for v in values):
            return None
        return max(values)

    def threads_per_block(self):
        counts = [self.const_extent(t) for t in THREAD_TAGS]
        return None if any(c is None for c in counts) else math.prod(counts)


def launch_info(kernel, host_vars: set) -> LaunchInfo:
    """The launch extents of the kernel rooted at ``kernel``.

    ``host_vars`` are the uids of the variables the host knows at launch (scalar parameters
    and symbolic extents). An extent using kernel variables is replaced by its constant upper
    bound (the loop is then guarded).
    """
    from ..arith import const_int_bound
    info = LaunchInfo()
    ranges = {}

    def walk(s):
        if isinstance(s, S.For):
            if is_launch_loop(s):
                extent = s.extent
                if not _vars_of(extent) <= host_vars:
                    bound = const_int_bound(extent, ranges)
                    hi = bound[1] if isinstance(bound, tuple) else getattr(bound, "max", None)
                    if hi is None or hi >= 2 ** 31:
                        raise ScheduleError(
                            f"stage {stage_of(s)}: loop {s.loop_var.name} bound to "
                            f"{s.thread_tag} has extent {extent}, which depends on other "
                            "loops and has no constant upper bound")
                    extent = E.IntImm(int(hi), "int32")
                    info.guarded.add(id(s))
                known = info.extents.setdefault(s.thread_tag, [])
                if not any(_same(extent, k) for k in known):
                    known.append(extent)
                info.loops.setdefault(s.thread_tag, []).append(s)
            ranges[s.loop_var] = E.Range(s.min, s.extent)
            walk(s.body)
            return
        for child in _stmt_children(s):
            walk(child)

    walk(kernel)
    for tag, loops in info.loops.items():
        known = info.extents[tag]
        if len(known) == 1:
            continue  # every loop of the tag has the launch extent
        top = info.const_extent(tag)
        for loop in loops:
            if top is None or _int(loop.extent) != top:
                info.guarded.add(id(loop))
    return info


def _stmt_children(s) -> list:
    if isinstance(s, S.SeqStmt):
        return list(s.seq)
    if isinstance(s, S.IfThenElse):
        return [s.then_case] + ([s.else_case] if s.else_case is not None else [])
    if isinstance(s, (S.For, S.LetStmt, S.Allocate, S.AssertStmt, S.AttrStmt)):
        return [s.body]
    return []


def host_var_ids(func) -> set:
    """uids of the scalar parameters and symbolic extents of ``func``'s buffers."""
    from ..ir.buffer import Buffer
    out = set()
    for p in func.params:
        if isinstance(p, E.Var):
            out.add(p.uid)
        elif isinstance(p, Buffer):
            for d in tuple(p.shape) + tuple(p.strides):
                out |= _vars_of(d)
    return out


def shared_allocations(kernel) -> list:
    """(Buffer, bytes or None when not constant) of each shared allocation in ``kernel``."""
    out = []

    def visit(node):
        if isinstance(node, S.Allocate) and node.buffer.scope == "shared":
            buf = node.buffer
            count = 1
            for extent in buf.allocation_extents():
                value = _int(extent)
                count = None if value is None or count is None else count * value
            size = dt.bits(dt.element_of(buf.dtype)) // 8 * dt.lanes_of(buf.dtype)
            out.append((buf, None if count is None else count * max(size, 1)))
    post_order_visit(kernel, visit)
    return out


# -- the verifier -----------------------------------------------------------------------------

def verify_gpu(func, max_threads: int | None = None, max_shared: int | None = None) -> HostPlan:
    """Refuse what a GPU cannot run (see the module docstring); returns the host plan.

    Args:
        func: a lowered PrimFunc (barriers already inserted).
        max_threads: threads per block the device allows (default 1024).
        max_shared: bytes of shared memory per block (default 48 KB, the static limit).
    """
    max_threads = max_threads or DEFAULT_MAX_THREADS
    max_shared = max_shared or DEFAULT_MAX_SHARED
    plan = split_host(func)
    host = host_var_ids(func)
    for kernel in plan.kernels:
        info = launch_info(kernel, host)
        _check_threads(kernel, info, max_threads)
        _check_shared(kernel, max_shared)
        _KernelChecker(info).run(kernel)
    return plan


def _thread_loops_text(info: LaunchInfo) -> str:
    parts = []
    for tag in THREAD_TAGS:
        for loop in info.loops.get(tag, ()):
            parts.append(f"{loop.loop_var.name} -> {tag} ({loop.extent})")
    return ", ".join(parts)


def _check_threads(kernel, info: LaunchInfo, max_threads: int) -> None:
    stage = stage_of(kernel)
    for tag in LAUNCH_TAGS:
        extent = info.const_extent(tag)
        if extent is not None and extent > AXIS_LIMITS[tag]:
            loop = max(info.loops[tag], key=lambda f: _int(f.extent) or 0)
            raise ScheduleError(
                f"stage {stage_of(loop)}: loop {loop.loop_var.name} bound to {tag} has extent "
                f"{extent}, over the hardware limit {AXIS_LIMITS[tag]} for {tag}; split it "
                "further")
    threads = info.threads_per_block()
    if threads is not None and threads > max_threads:
        raise ScheduleError(
            f"stage {stage}: {threads} threads per block, more than the device allows "
            f"({max_threads}); thread-bound loops: {_thread_loops_text(info)}. Split the "
            "thread axes with smaller factors")


def _check_shared(kernel, max_shared: int) -> None:
    total, parts = 0, []
    for buf, nbytes in shared_allocations(kernel):
        if nbytes is None:
            raise ScheduleError(
                f"stage {buf.name}: shared memory of non-constant size {list(buf.shape)}; a "
                "shared stage needs a compile-time constant region (split the loop it is "
                "computed at by a constant factor)")
        total += nbytes
        parts.append(f"{buf.name}: {nbytes} B")
    if total > max_shared:
        raise ScheduleError(
            f"stage {stage_of(kernel)}: the kernel needs {total} bytes of shared memory "
            f"({', '.join(parts)}), over the limit of {max_shared} bytes per block; use "
            "smaller tiles for the shared stages")


class _KernelChecker:
    """Nesting of same-tag loops, global allocations inside kernels, divergent barriers."""

    def __init__(self, info: LaunchInfo):
        self.info = info
        self.local_tags: dict = {}  # uid of a local buffer -> thread tags bound at its Allocate
        self.pinned: set = set()  # thread loop vars fixed by an enclosing `if v == c`
        self.parallel_tags = [t for t in THREAD_TAGS
                              if (info.const_extent(t) or 2) > 1 and t in info.extents]

    def run(self, kernel) -> None:
        self.walk(kernel, {}, set(), None)

    def _check_store(self, s, bound: dict) -> None:
        buf = s.buffer
        tags = {t for t in bound if t in THREAD_TAGS}
        if buf.scope == "local" and buf.uid in self.local_tags:
            extra = tags - self.local_tags[buf.uid]
            if extra:
                tag = sorted(extra)[0]
                raise ScheduleError(
                    f"stage {buf.name} is in 'local' memory, private to each thread, but is "
                    f"computed by loop {bound[tag].loop_var.name} bound to {tag} inside its "
                    "allocation: other threads would not see the values; use the 'shared' "
                    f"scope or compute {buf.name} at a loop inside the {tag} binding")
        if buf.scope in ("global", "shared") and _reads_buffer(s.value, buf):
            index_vars = set()
            for i in s.indices:
                index_vars |= _vars_of(i)
            for tag in sorted(tags):
                loop = bound[tag]
                pinned = loop.loop_var.uid in self.pinned
                if loop.loop_var.uid not in index_vars and not pinned and \
                        (_int(loop.extent) is None or _int(loop.extent) > 1):
                    raise ScheduleError(
                        f"stage {buf.name}: loop {loop.loop_var.name} bound to {tag} does not "
                        f"index the element of {buf.name} that it updates, so the threads of "
                        f"{tag} would update it at once (a race): a reduction axis bound to a "
                        "thread axis (cross-thread reduction) is not supported; use "
                        f"s.rfactor on it and reduce the partial results in a 'shared' stage")
            missing = [t for t in self.parallel_tags if t not in tags]
            if missing:
                raise ScheduleError(
                    f"stage {buf.name}: an update of {buf.name} runs outside any loop bound to "
                    f"{missing[0]}, so every thread of the block would apply it at once (a "
                    f"race); bind a loop of {buf.name} to {missing[0]} or compute it in a "
                    "kernel of its own")

    def walk(self, s, bound: dict, thread_vars: set, divergent) -> None:
        """``bound``: tag -> enclosing For; ``thread_vars``: uids of values that differ
        between the threads of a block; ``divergent``: why the code here may run on some
        threads only (None when every thread of the block runs it)."""
        if isinstance(s, S.For):
            depends = (_vars_of(s.min) | _vars_of(s.extent)) & thread_vars
            inner_divergent = divergent
            inner_vars = set(thread_vars)
            inner_bound = bound
            if is_launch_loop(s):
                tag = s.thread_tag
                outer = bound.get(tag)
                if outer is not None:
                    self._check_nesting(outer, s)
                inner_bound = dict(bound)
                inner_bound[tag] = s
                if tag in THREAD_TAGS:
                    inner_vars.add(s.loop_var.uid)
                if id(s) in self.info.guarded and divergent is None:
                    inner_divergent = (f"loop {s.loop_var.name} bound to {tag} with extent "
                                       f"{s.extent} runs on some threads only")
            elif s.kind == S.PARALLEL:
                raise UnsupportedOpError(
                    f"stage {stage_of(s)}: loop {s.loop_var.name} is a parallel (CPU) loop; "
                    "on the GPU bind it to blockIdx/threadIdx instead")
            if depends:
                inner_vars.add(s.loop_var.uid)
                if divergent is None:
                    inner_divergent = (f"loop {s.loop_var.name} has bounds that depend on "
                                       f"threadIdx ({s.min}, extent {s.extent})")
            self.walk(s.body, inner_bound, inner_vars, inner_divergent)
        elif isinstance(s, S.IfThenElse):
            inner = divergent
            if _vars_of(s.condition) & thread_vars and divergent is None:
                inner = f"condition `{s.condition}` depends on threadIdx"
            c = s.condition
            pinned = isinstance(c, E.EQ) and isinstance(c.a, E.Var) and isinstance(c.b, E.IntImm)
            if pinned:
                self.pinned.add(c.a.uid)
            self.walk(s.then_case, bound, thread_vars, inner)
            if pinned:
                self.pinned.discard(c.a.uid)
            if s.else_case is not None:
                self.walk(s.else_case, bound, thread_vars, inner)
        elif isinstance(s, S.LetStmt):
            inner_vars = thread_vars
            if _vars_of(s.value) & thread_vars:
                inner_vars = thread_vars | {s.var.uid}
            self.walk(s.body, bound, inner_vars, divergent)
        elif isinstance(s, S.BufferStore):
            self._check_store(s, bound)
        elif isinstance(s, S.Allocate):
            if s.buffer.scope == "local":
                self.local_tags[s.buffer.uid] = {t for t in bound if t in THREAD_TAGS}
            if s.buffer.scope == "global":
                raise UnsupportedOpError(
                    f"stage {s.buffer.name}: a 'global' scratch buffer inside a kernel is not "
                    "supported yet; compute the stage at root (its own kernel) or in 'local'/"
                    "'shared' scope")
            self.walk(s.body, bound, thread_vars, divergent)
        elif isinstance(s, S.SeqStmt):
            for item in s.seq:
                self.walk(item, bound, thread_vars, divergent)
        elif isinstance(s, (S.AttrStmt, S.AssertStmt)):
            self.walk(s.body, bound, thread_vars, divergent)
        elif is_barrier(s) and divergent is not None:
            raise ScheduleError(
                f"a barrier (__syncthreads) in the kernel of stage {stage_of_kernel(bound)} "
                f"sits under divergent control flow: {divergent}; every thread of the block "
                "must reach it (compute the shared stage outside that loop / condition)")

    def _check_nesting(self, outer, inner) -> None:
        a, b = _int(outer.extent), _int(inner.extent)
        if _same(outer.extent, inner.extent) or (a is not None and b is not None and b <= a):
            return
        raise ScheduleError(
            f"stage {stage_of(inner)}: loop {inner.loop_var.name} bound to {inner.thread_tag} "
            f"(extent {inner.extent}) is nested inside loop {outer.loop_var.name} bound to the "
            f"same {outer.thread_tag} with extent {outer.extent}; an inner loop of a tag may not "
            "be longer than the enclosing one (bind it to another axis or split it so the "
            "extents match)")


def stage_of_kernel(bound: dict) -> str:
    for tag in LAUNCH_TAGS:
        if tag in bound:
            return stage_of(bound[tag])
    return "?"


def _reads_buffer(e, buf) -> bool:
    found = []
    post_order_visit(e, lambda n: found.append(1) if isinstance(n, E.BufferLoad) and
                     n.buffer.uid == buf.uid else None)
    return bool(found)
