"""Build the loop nest of a schedule: one nest per stored stage, attached stages inside loops.

Tensors become buffers here: the function's arguments are parameters; every other stored stage
gets an ``Allocate`` around its producer and consumers (a whole tensor at the root, only the
needed region when attached with ``compute_at``). Reads of tensors become buffer loads offset by
the region's start.
"""
from __future__ import annotations

from ..errors import ScheduleError, UserError
from ..expr import (GE, LT, REDUCE, And, Mul, IntImm, ProducerLoad, Range, Sub, Var, BufferLoad,
                    binary, const)
from ..ir.buffer import Buffer, decl_buffer
from ..ir.functor import Mutator, substitute
from ..ir.stmt import (Allocate, BufferStore, For, IfThenElse, LetStmt, seq)
from ..tensor import ComputeOp, ExternOp, PlaceholderOp, Tensor
from .relations import pass_down_domain, pass_up_value, split_conditions


class LoopNestBuilder:
    """Turns a schedule (with bodies inlined and bounds inferred) into one statement."""

    def __init__(self, sch, bodies, ranges, arg_buffers: dict):
        self.sch = sch
        self.bodies = bodies
        self.ranges = ranges
        self.buffers: dict = {}         # stage -> tuple of Buffers (one per output)
        self.offsets: dict = {}         # stage -> tuple of region minimums per dimension
        self.arg_buffers = arg_buffers  # (stage, value_index) -> Buffer
        self.stored = [s for s in sch.stages
                       if s.attach_type != "inline" and not isinstance(s.op, PlaceholderOp)]
        for stage in sch.stages:
            if isinstance(stage.op, PlaceholderOp):
                key = (stage, 0)
                if key in arg_buffers:
                    self.buffers[stage] = (arg_buffers[key],)
                    self.offsets[stage] = None
        for stage in self.stored:
            self._make_buffers(stage)

    # -- buffers -----------------------------------------------------------------------------
    def _make_buffers(self, stage):
        op = stage.op
        n = op.num_outputs
        if all((stage, i) in self.arg_buffers for i in range(n)):
            self.buffers[stage] = tuple(self.arg_buffers[(stage, i)] for i in range(n))
            self.offsets[stage] = None
            return
        if any((stage, i) in self.arg_buffers for i in range(n)):
            # some outputs are arguments: the rest get whole-tensor temporaries
            bufs = []
            for i in range(n):
                t = op.output(i)
                bufs.append(self.arg_buffers.get((stage, i))
                            or decl_buffer(t.shape, t.dtype, t.name, scope="global"))
            self.buffers[stage] = tuple(bufs)
            self.offsets[stage] = None
            return
        if stage.attach_type == "scope":
            rng = self.ranges[stage]
            axes = op.axis if isinstance(op, ComputeOp) else ()
            if not axes:
                shape = op.output(0).shape
                offsets = None
            else:
                shape = tuple(self._static_extent(stage, rng[iv]) for iv in axes)
                offsets = tuple(rng[iv].min for iv in axes)
            scope = stage.scope if stage.scope != "global" else "local"
        else:
            shape = op.output(0).shape
            offsets = None
            scope = stage.scope
        strides = _aligned_strides(shape, stage.storage_aligns)
        bufs = []
        for i in range(n):
            t = op.output(i)
            buf = decl_buffer(shape, t.dtype, t.name, scope=scope, strides=strides)
            bufs.append(buf)
        self.buffers[stage] = tuple(bufs)
        self.offsets[stage] = offsets

    def _static_extent(self, stage, rng: Range):
        from ..arith import const_int_bound, simplify
        extent = simplify(rng.extent)
        if isinstance(extent, IntImm):
            return extent
        lo, hi = const_int_bound(extent, {})
        if hi is None:
            # symbolic but loop-invariant extents (shape variables) are fine for heap buffers
            return extent
        return IntImm(int(hi), extent.dtype)

    def buffer_of(self, tensor: Tensor) -> Buffer:
        stage = self.sch.stage_map.get(tensor.op)
        if stage is None or stage not in self.buffers:
            raise UserError(f"tensor {tensor.name} is read but is neither an argument of the "
                            "function nor computed by the schedule; add it to the arguments")
        return self.buffers[stage][tensor.value_index]

    def _local_index(self, stage, indices):
        offsets = self.offsets.get(stage)
        if not offsets:
            return tuple(indices)
        return tuple(binary(Sub, i, o) for i, o in zip(indices, offsets))

    def rewrite_reads(self, expr):
        builder = self

        class _Reads(Mutator):
            def visit_ProducerLoad(self, e):
                e = self.generic_visit(e)
                stage = builder.sch.stage_map.get(e.producer.op)
                buf = builder.buffer_of(e.producer)
                return BufferLoad(buf, builder._local_index(stage, e.indices), e.dtype)

        return _Reads().visit(expr)

    # -- statements --------------------------------------------------------------------------
    def build(self) -> "Stmt":
        roots = [s for s in self.stored if s.attach_type == "root"]
        body = None
        for stage in reversed(roots):
            stmt = self.stage_stmt(stage)
            body = seq(stmt, body) if body is not None else stmt
            if self._is_allocated(stage):
                body = self._allocate(stage, body)
        return body if body is not None else seq()

    def _is_allocated(self, stage) -> bool:
        return not all((stage, i) in self.arg_buffers for i in range(stage.op.num_outputs))

    def _allocate(self, stage, body):
        params = {id(b) for b in self.arg_buffers.values()}
        for buf in reversed(self.buffers[stage]):
            if id(buf) not in params:
                body = Allocate(buf, body)
        return body

    def _attached(self, stage, leaf) -> list:
        return [s for s in self.stored if s.attach_type == "scope" and s.attach_stage is stage
                and s.attach_ivar is leaf]

    def stage_stmt(self, stage):
        if isinstance(stage.op, ExternOp):
            return self._extern_stmt(stage)
        op = stage.op
        dom = pass_down_domain(stage, self.ranges[stage])
        value = pass_up_value(stage, dom)
        leaves = stage.leaf_iter_vars
        for leaf in leaves:
            attr = stage.iter_attrs.get(leaf)
            if attr is not None and attr.kind == "vectorized":
                from ..arith import simplify
                if not isinstance(simplify(dom[leaf].extent), IntImm):
                    raise ScheduleError(
                        f"stage {stage.name}: cannot vectorize axis {leaf.var.name}: its "
                        f"extent {dom[leaf].extent} is not a compile-time constant")
        reduce_pos = next((p for p, iv in enumerate(leaves) if iv.kind == REDUCE), None)
        conds = split_conditions(stage, dom, value)
        domain_conds = self._domain_conditions(stage, value)
        update = self._provide(stage, value)
        guard = [c for c, _ in conds] + domain_conds
        update = _guard(update, guard)
        body = update
        for pos in range(len(leaves) - 1, -1, -1):
            leaf = leaves[pos]
            body = self._wrap_attached(stage, leaf, body)
            body = self._loop(stage, leaf, dom[leaf], body)
            if pos == reduce_pos:
                init = self._init_nest(stage, dom, leaves[pos + 1:], conds, domain_conds)
                body = seq(init, body)
        if isinstance(op, ComputeOp) and op.reduce_axis and reduce_pos is None:
            raise ScheduleError(f"stage {stage.name}: reduction axes missing from loops")
        return body

    def _wrap_attached(self, stage, leaf, body):
        for child in reversed(self._attached(stage, leaf)):
            body = seq(self.stage_stmt(child), body)
            body = self._allocate(child, body) if self._is_allocated(child) else body
        return body

    def _loop(self, stage, leaf, rng, body, var=None):
        attr = stage.iter_attrs.get(leaf)
        kind, tag, annotations = "serial", "", ()
        if attr is not None:
            kind = attr.kind
            if attr.thread is not None:
                tag = attr.thread.thread_tag
            annotations = tuple((k, v) for k, v in attr.pragmas)
        return For(var if var is not None else leaf.var, IntImm(0, leaf.var.dtype), rng.extent, kind, body, tag,
                   annotations)

    def _domain_conditions(self, stage, value) -> list:
        """``0 <= v < extent`` for root axes whose region may run past the tensor's domain."""
        if stage.attach_type != "scope":
            return []
        conds = []
        for iv in stage.op.axis:
            v = value[iv]
            conds.append(binary(GE, v, iv.dom.min))
            conds.append(binary(LT, v, binary(Sub, iv.dom.extent, binary(Sub, 0, iv.dom.min))))
        return conds

    def _store_indices(self, stage, value):
        return self._local_index(stage, [value[iv] for iv in stage.op.axis])

    def _provide(self, stage, value):
        op = stage.op
        bodies = self.bodies[stage]
        subst = {iv.var: value[iv] for iv in stage.root_iter_vars}
        idx = self._store_indices(stage, value)
        bufs = self.buffers[stage]
        first = bodies[0]
        if not op.reduce_axis:
            stores = [BufferStore(buf, self.rewrite_reads(substitute(b, subst)), idx)
                      for buf, b in zip(bufs, bodies)]
            return seq(*stores)
        sources = tuple(self.rewrite_reads(substitute(s, subst)) for s in first.source)
        cond = self.rewrite_reads(substitute(first.condition, subst))
        olds = tuple(BufferLoad(buf, idx, buf.dtype) for buf in bufs)
        results = first.combiner.combine(olds, sources)
        if len(bufs) == 1:
            update = BufferStore(bufs[0], results[0], idx)
        else:
            temps = [Var(f"{buf.name}_v", buf.dtype) for buf in bufs]
            update = seq(*[BufferStore(buf, t, idx) for buf, t in zip(bufs, temps)])
            for t, r in reversed(list(zip(temps, results))):
                update = LetStmt(t, r, update)
        if not (isinstance(cond, IntImm) and cond.value == 1):
            update = IfThenElse(cond, update)
        return update

    def _init_nest(self, stage, dom, inner_leaves, conds, domain_conds):
        """Initialise the accumulators, with fresh loops for the data axes inside the first
        reduction loop."""
        first = self.bodies[stage][0]
        data_leaves = [iv for iv in inner_leaves if iv.kind != REDUCE]
        fresh = {iv: Var(iv.var.name + ".init", iv.var.dtype) for iv in data_leaves}
        value = pass_up_value(stage, dom, leaf_values=fresh)
        idx = self._store_indices(stage, value)
        if first.init:
            inits = [self.rewrite_reads(substitute(v, {iv.var: value[iv]
                                                       for iv in stage.op.axis}))
                     for v in first.init]
        else:
            inits = list(first.combiner.identity)
        body = seq(*[BufferStore(buf, v, idx) for buf, v in zip(self.buffers[stage], inits)])
        rename = {iv.var: fresh[iv] for iv in data_leaves}
        data_conds = [substitute(c, rename) for c, is_reduce in conds if not is_reduce]
        data_conds += [substitute(c, rename) for c in domain_conds]
        body = _guard(body, data_conds)
        for leaf in reversed(data_leaves):
            body = self._loop(stage, leaf, dom[leaf], body, var=fresh[leaf])
        return body

    def _extern_stmt(self, stage):
        op = stage.op
        buf_map = {}
        for placeholder_buf, t in zip(op.input_buffers, op.inputs):
            buf_map[placeholder_buf] = self.buffer_of(t)
        for placeholder_buf, buf in zip(op.output_buffers, self.buffers[stage]):
            buf_map[placeholder_buf] = buf
        return rebind_buffers(op.body, buf_map)


def rebind_buffers(stmt, buf_map: dict):
    """Replace buffers (and their data pointers) in ``stmt`` by the ones in ``buf_map``."""
    data_map = {old.data: new.data for old, new in buf_map.items()}
    by_uid = {old.uid: new for old, new in buf_map.items()}

    class _Rebind(Mutator):
        def visit_BufferLoad(self, e):
            e = self.generic_visit(e)
            new = by_uid.get(e.buffer.uid)
            return e if new is None else BufferLoad(new, e.indices, e.dtype)

        def visit_BufferStore(self, s):
            s = self.generic_visit(s)
            new = by_uid.get(s.buffer.uid)
            return s if new is None else BufferStore(new, s.value, s.indices)

    return substitute(_Rebind().visit(stmt), data_map)


def _guard(stmt, conds):
    from ..arith import simplify
    cond = None
    for c in conds:
        c = simplify(c)
        if isinstance(c, IntImm) and c.value:
            continue
        cond = c if cond is None else And(cond, c, "bool")
    return stmt if cond is None else IfThenElse(cond, stmt)


def _aligned_strides(shape, aligns: dict):
    if not aligns:
        return ()
    strides = [None] * len(shape)
    stride = const(1, "int32")
    for d in range(len(shape) - 1, -1, -1):
        if d in aligns:
            factor, offset = aligns[d]
            from ..arith import simplify
            s = simplify(stride)
            if isinstance(s, IntImm):
                v = s.value
                v = v + ((offset - v) % factor)
                stride = IntImm(v, "int32")
        strides[d] = stride
        stride = binary(Mul, stride, shape[d])
    return tuple(strides)
