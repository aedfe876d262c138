"""Schedules: how the loops of each stage run. Recorded as relations, applied by ``tl.lower``.

A ``Schedule`` holds one ``Stage`` per operation. Primitives (split, fuse, reorder, compute_at,
...) check what can be checked at once and record what they did, both as loop relations that
lowering reads and as a replayable trace (``to_json``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ScheduleError
from .expr import (DATA_PAR, REDUCE, THREAD, IntImm, IterVar, PrimExpr, Range, Var, convert)
from .tensor import ComputeOp, ExternOp, Operation, PlaceholderOp, Tensor

# -- loop relations -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Split:
    parent: IterVar
    outer: IterVar
    inner: IterVar
    factor: PrimExpr | None
    nparts: PrimExpr | None


@dataclass(frozen=True, eq=False)
class Fuse:
    outer: IterVar
    inner: IterVar
    fused: IterVar


@dataclass(eq=False)
class IterAttr:
    kind: str = "serial"            # serial / vectorized / parallel / unrolled / thread_binding
    thread: IterVar | None = None
    pragmas: list = field(default_factory=list)


class Stage:
    """The schedule of one operation: its loop axes, their relations and where it is computed."""

    def __init__(self, op: Operation, schedule: "Schedule"):
        self.op = op
        self.origin_op = op
        self.schedule = schedule
        self.relations: list = []
        self.iter_attrs: dict[IterVar, IterAttr] = {}
        self.attach_type = "root"      # root / inline / scope
        self.attach_stage: Stage | None = None
        self.attach_ivar: IterVar | None = None
        self.scope = "global"
        self.storage_aligns: dict[int, tuple[int, int]] = {}
        self.is_output = False
        self.sid = schedule._new_sid()
        self._init_axes()

    def _init_axes(self):
        op = self.op
        self.root_iter_vars = list(getattr(op, "axis", ())) + list(getattr(op, "reduce_axis", ()))
        self.all_iter_vars = list(self.root_iter_vars)
        self.leaf_iter_vars = list(self.root_iter_vars)

    @property
    def name(self) -> str:
        return self.op.name

    def __repr__(self):
        return f"Stage({self.name})"

    # -- checks ----------------------------------------------------------------------------
    def _check_leaf(self, ax, what: str) -> IterVar:
        if not isinstance(ax, IterVar):
            raise ScheduleError(f"stage {self.name}: {what} expects an axis (IterVar), "
                                f"got {type(ax).__name__} {ax!r}")
        if ax in self.leaf_iter_vars:
            return ax
        if ax in self.all_iter_vars:
            raise ScheduleError(f"stage {self.name}: axis {ax.var.name} was already split or "
                                f"fused away; {what} needs one of the current loop axes "
                                f"({', '.join(v.var.name for v in self.leaf_iter_vars)})")
        owner = self.schedule.stage_of_axis(ax)
        where = f"it belongs to stage {owner.name}" if owner else "it belongs to no stage here"
        raise ScheduleError(f"stage {self.name}: {what} was given axis {ax.var.name}, but "
                            f"{where}")

    def _record(self, name, *args, **kwargs):
        from .schedule_trace import encode
        self.schedule._trace.append(encode(name, self, args, kwargs))

    def _attr(self, ax) -> IterAttr:
        return self.iter_attrs.setdefault(ax, IterAttr())

    # -- loop structure ------------------------------------------------------------------------
    def split(self, parent, factor=None, nparts=None):
        """Split ``parent`` into ``(outer, inner)`` with ``inner`` of ``factor`` iterations
        (or ``outer`` of ``nparts``); non-divisible extents get a guarded tail."""
        parent = self._check_leaf(parent, "split")
        if (factor is None) == (nparts is None):
            raise ScheduleError(f"stage {self.name}: split of axis {parent.var.name} needs "
                                "exactly one of factor= and nparts=")
        amount = convert(factor if factor is not None else nparts)
        if isinstance(amount, IntImm) and amount.value <= 0:
            raise ScheduleError(f"stage {self.name}: split of axis {parent.var.name} by "
                                f"{amount.value}: the factor must be positive")
        name = parent.var.name
        outer = IterVar(None, Var(f"{name}.outer", parent.var.dtype), parent.kind)
        inner = IterVar(None, Var(f"{name}.inner", parent.var.dtype), parent.kind)
        self.relations.append(Split(parent, outer, inner,
                                    amount if factor is not None else None,
                                    amount if nparts is not None else None))
        pos = self.leaf_iter_vars.index(parent)
        self.leaf_iter_vars[pos:pos + 1] = [outer, inner]
        self.all_iter_vars += [outer, inner]
        self._record("split", parent, factor=factor, nparts=nparts)
        return outer, inner

    def tile(self, x_parent, y_parent, x_factor, y_factor):
        """Split two axes and order them ``(x.outer, y.outer, x.inner, y.inner)``."""
        xo, xi = self.split(x_parent, factor=x_factor)
        yo, yi = self.split(y_parent, factor=y_factor)
        self.reorder(xo, yo, xi, yi)
        return xo, yo, xi, yi

    def fuse(self, *axes):
        """Fuse adjacent axes (outermost first) into one loop; returns the fused axis."""
        if len(axes) == 1 and isinstance(axes[0], (list, tuple)):
            axes = tuple(axes[0])
        if not axes:
            raise ScheduleError(f"stage {self.name}: fuse needs at least one axis")
        axes = [self._check_leaf(a, "fuse") for a in axes]
        positions = [self.leaf_iter_vars.index(a) for a in axes]
        if positions != list(range(positions[0], positions[0] + len(axes))):
            raise ScheduleError(
                f"stage {self.name}: fuse needs adjacent axes in loop order (outer first); "
                f"the loop order is {', '.join(v.var.name for v in self.leaf_iter_vars)}")
        self._record("fuse", *axes)
        fused = axes[0]
        for inner in axes[1:]:
            if (fused.kind == REDUCE) != (inner.kind == REDUCE):
                raise ScheduleError(f"stage {self.name}: cannot fuse data axis and reduction "
                                    f"axis ({fused.var.name}, {inner.var.name})")
            new = IterVar(None, Var(f"{fused.var.name}.{inner.var.name}.fused",
                                    fused.var.dtype), fused.kind)
            self.relations.append(Fuse(fused, inner, new))
            pos = self.leaf_iter_vars.index(fused)
            self.leaf_iter_vars[pos:pos + 2] = [new]
            self.all_iter_vars.append(new)
            fused = new
        return fused

    def reorder(self, *axes):
        """Put the given axes in this order, in the positions they occupy now."""
        if len(axes) == 1 and isinstance(axes[0], (list, tuple)):
            axes = tuple(axes[0])
        axes = [self._check_leaf(a, "reorder") for a in axes]
        if len(set(axes)) != len(axes):
            raise ScheduleError(f"stage {self.name}: reorder got an axis twice")
        positions = sorted(self.leaf_iter_vars.index(a) for a in axes)
        for pos, ax in zip(positions, axes):
            self.leaf_iter_vars[pos] = ax
        self._record("reorder", *axes)

    # -- loop annotations ----------------------------------------------------------------------
    def vectorize(self, ax):
        """Run ``ax`` as SIMD lanes; its extent must be a compile-time constant."""
        ax = self._check_leaf(ax, "vectorize")
        self._check_constant_extent(ax, "vectorize")
        self._attr(ax).kind = "vectorized"
        self._record("vectorize", ax)

    def parallel(self, ax):
        """Run the iterations of ``ax`` on the thread pool."""
        ax = self._check_leaf(ax, "parallel")
        if ax.kind == REDUCE:
            raise ScheduleError(f"stage {self.name}: cannot parallelize reduction axis "
                                f"{ax.var.name} (threads would race on the sum); rfactor it "
                                "first")
        self._attr(ax).kind = "parallel"
        self._record("parallel", ax)

    def unroll(self, ax):
        """Unroll ``ax`` completely."""
        ax = self._check_leaf(ax, "unroll")
        self._attr(ax).kind = "unrolled"
        self._record("unroll", ax)

    def pragma(self, ax, key: str, value=None):
        """Attach a (key, value) hint to loop ``ax`` (``"unroll_explicit"``, ...)."""
        ax = self._check_leaf(ax, "pragma")
        self._attr(ax).pragmas.append((str(key), value))
        self._record("pragma", ax, key, value)

    def bind(self, ax, thread_ivar: IterVar):
        """Bind loop ``ax`` to a GPU thread axis (``tl.thread_axis("threadIdx.x")``)."""
        ax = self._check_leaf(ax, "bind")
        if not isinstance(thread_ivar, IterVar) or thread_ivar.kind != THREAD:
            raise ScheduleError(f"stage {self.name}: bind of {ax.var.name} needs a thread axis "
                                "made by tl.thread_axis")
        attr = self._attr(ax)
        attr.kind, attr.thread = "thread_binding", thread_ivar
        self._record("bind", ax, thread_ivar.thread_tag)

    def _check_constant_extent(self, ax, what):
        from .lower.relations import static_extent
        extent = static_extent(self, ax)
        if extent is not None and not isinstance(extent, IntImm):
            raise ScheduleError(f"stage {self.name}: cannot {what} axis {ax.var.name}: its "
                                f"extent {extent} is not a compile-time constant; split it by "
                                "a constant factor and vectorize the inner axis")

    # -- attachment ------------------------------------------------------------------------
    def compute_at(self, parent: "Stage", ax):
        """Compute this stage inside loop ``ax`` of ``parent``, only the part that loop needs."""
        if isinstance(parent, Tensor):
            parent = self.schedule[parent]
        if not isinstance(parent, Stage):
            raise ScheduleError(f"stage {self.name}: compute_at needs a stage (s[T]), got "
                                f"{type(parent).__name__}")
        ax = parent._check_leaf(ax, f"compute_at of {self.name}")
        self._check_attachable(f"compute_at to {parent.name}")
        if parent is self:
            raise ScheduleError(f"stage {self.name}: cannot compute_at itself")
        if not self.schedule._consumes(parent, self) and \
                not self.schedule._consumer_inside(self, parent):
            raise ScheduleError(f"stage {self.name}: compute_at to stage {parent.name}, which "
                                f"does not read {self.name}")
        walker = parent
        while walker is not None:
            if walker is self:
                raise ScheduleError(f"stage {self.name}: compute_at to {parent.name} makes a "
                                    f"cycle ({parent.name} is already computed inside "
                                    f"{self.name})")
            walker = walker.attach_stage if walker.attach_type == "scope" else None
        self.attach_type, self.attach_stage, self.attach_ivar = "scope", parent, ax
        self._record("compute_at", parent, ax)

    def compute_inline(self):
        """Substitute this stage's expression into every consumer instead of storing it."""
        self._check_attachable("compute_inline")
        if isinstance(self.op, ComputeOp) and self.op.reduce_axis:
            raise ScheduleError(f"stage {self.name}: cannot inline a reduction")
        if isinstance(self.op, ExternOp):
            raise ScheduleError(f"stage {self.name}: cannot inline an extern stage")
        if self.op.num_outputs > 1:
            raise ScheduleError(f"stage {self.name}: cannot inline a multi-output stage")
        self.attach_type, self.attach_stage, self.attach_ivar = "inline", None, None
        self._record("compute_inline")

    def compute_root(self):
        """Compute the whole tensor at the top level (the default)."""
        self._check_attachable("compute_root")
        self.attach_type, self.attach_stage, self.attach_ivar = "root", None, None
        self._record("compute_root")

    def _check_attachable(self, what):
        if isinstance(self.op, PlaceholderOp):
            raise ScheduleError(f"stage {self.name}: {what} on a placeholder (an input) is "
                                "meaningless")
        if self.is_output and what != "compute_root":
            raise ScheduleError(f"stage {self.name}: {what} on an output of the schedule is "
                                "not allowed (outputs are computed at the root)")

    def storage_align(self, ax, factor: int, offset: int):
        """Pad the stride of the dimension outside ``ax`` so ``stride % factor == offset``."""
        if ax not in self.root_iter_vars[:len(getattr(self.op, "axis", ()))]:
            raise ScheduleError(f"stage {self.name}: storage_align needs one of the original "
                                "data axes of the stage")
        if int(factor) <= 0 or not 0 <= int(offset) < int(factor):
            raise ScheduleError(f"stage {self.name}: storage_align needs factor > 0 and "
                                "0 <= offset < factor")
        self.storage_aligns[self.root_iter_vars.index(ax)] = (int(factor), int(offset))
        self._record("storage_align", ax, factor, offset)

    def set_scope(self, scope: str):
        self.scope = scope
        self._record("set_scope", scope)


class Schedule:
    """Stages of all operations that the outputs need, producers before consumers."""

    def __init__(self, outputs):
        if isinstance(outputs, (Tensor, Operation)):
            outputs = [outputs]
        ops = []
        for o in outputs:
            if isinstance(o, Tensor):
                o = o.op
            if not isinstance(o, Operation):
                raise ScheduleError(f"create_schedule needs tensors, got {type(o).__name__}")
            if o not in ops:
                ops.append(o)
        self.outputs = ops
        self.stages: list[Stage] = []
        self.stage_map: dict[Operation, Stage] = {}
        self._trace: list = []
        self._sid_count = 0
        for op in _post_order(ops):
            stage = Stage(op, self)
            self.stages.append(stage)
            self.stage_map[op] = stage
        for op in ops:
            self.stage_map[op].is_output = True

    def __getitem__(self, t) -> Stage:
        op = t.op if isinstance(t, Tensor) else t
        if isinstance(op, Stage):
            return op
        stage = self.stage_map.get(op)
        if stage is None:
            name = getattr(op, "name", op)
            raise ScheduleError(f"tensor {name} is not part of this schedule (it is not an "
                                "output nor needed by one)")
        return stage

    def _new_sid(self) -> int:
        self._sid_count += 1
        return self._sid_count - 1

    def stage_by_sid(self, sid: int) -> Stage:
        for stage in self.stages:
            if stage.sid == sid:
                return stage
        raise ScheduleError(f"schedule trace names stage #{sid}, which does not exist")

    def stage_of_axis(self, ax) -> Stage | None:
        for stage in self.stages:
            if ax in stage.all_iter_vars:
                return stage
        return None

    def _consumes(self, consumer: Stage, producer: Stage) -> bool:
        """Whether ``consumer`` reads ``producer`` directly or through inlined stages.

        Tensors are matched through their stages, so reads of a tensor whose stage was changed
        by cache_write / cache_read still count.
        """
        frontier = [consumer.op]
        seen = set()
        while frontier:
            op = frontier.pop()
            for t in op.input_tensors:
                stage = self.stage_map.get(t.op)
                if stage is producer:
                    return True
                if stage is not None and stage.attach_type == "inline" and stage not in seen:
                    seen.add(stage)
                    frontier.append(stage.op)
        return False

    def _consumer_inside(self, producer: Stage, parent: Stage) -> bool:
        """Whether a reader of ``producer`` is computed inside ``parent``'s loops (then the
        producer may be attached there too, ahead of that reader)."""
        for reader in self.stages:
            if reader is producer or not self._consumes(reader, producer):
                continue
            walker = reader
            while walker.attach_type == "scope":
                walker = walker.attach_stage
                if walker is parent:
                    return True
        return False

    def consumers_of(self, stage: Stage) -> list[Stage]:
        return [s for s in self.stages
                if any(self.stage_map.get(t.op) is stage for t in s.op.input_tensors)]

    # -- stage-creating primitives live in schedule_cache.py --------------------------------
    def cache_read(self, tensor, scope, readers):
        from .schedule_cache import cache_read
        return cache_read(self, tensor, scope, readers)

    def cache_write(self, tensor, scope):
        from .schedule_cache import cache_write
        return cache_write(self, tensor, scope)

    def rfactor(self, tensor, axis, factor_axis: int = 0):
        from .schedule_cache import rfactor
        return rfactor(self, tensor, axis, factor_axis)

    def to_json(self) -> str:
        from .schedule_trace import to_json
        return to_json(self)


def _post_order(ops):
    order, seen = [], set()

    def visit(op):
        if op in seen:
            return
        seen.add(op)
        for t in op.input_tensors:
            visit(t.op)
        order.append(op)

    for op in ops:
        visit(op)
    return order


def create_schedule(outputs) -> Schedule:
    """A default schedule (every stage at the root, loops in order) of the given tensors."""
    return Schedule(outputs)
