"""Schedule primitives that add stages: ``cache_read``, ``cache_write`` and ``rfactor``."""
from __future__ import annotations

from .errors import ScheduleError
from .expr import (DATA_PAR, REDUCE, LT, And, IntImm, IterVar, ProducerLoad, Range, Reduce, Var,
                   binary, const)
from .ir.functor import Mutator, substitute
from .math import if_then_else
from .schedule import Fuse, Split, Stage
from .schedule_trace import encode
from .tensor import ComputeOp, ExternOp, PlaceholderOp, Tensor, compute


def _fresh_axes(axes, suffix=""):
    return [IterVar(iv.dom, Var(iv.var.name + suffix, iv.var.dtype), iv.kind) for iv in axes]


def _insert_stage(sch, stage, before=None, after=None):
    pos = sch.stages.index(before) if before is not None else sch.stages.index(after) + 1
    sch.stages.insert(pos, stage)
    sch.stage_map[stage.op] = stage


def _replace_reads(expr, old: Tensor, new: Tensor):
    class _R(Mutator):
        def visit_ProducerLoad(self, e):
            e = self.generic_visit(e)
            if e.producer == old:
                return ProducerLoad(new, e.indices, e.dtype)
            return e

        def visit_Reduce(self, e):
            source = tuple(self.visit(s) for s in e.source)
            cond = self.visit(e.condition)
            if all(a is b for a, b in zip(source, e.source)) and cond is e.condition:
                return e
            return Reduce(e.combiner, source, e.axis, cond, e.value_index, e.init, e.dtype)

    return _R().visit(expr)


def _set_op(sch, stage, new_op):
    stage.op = new_op
    sch.stage_map[new_op] = stage


def cache_read(sch, tensor: Tensor, scope: str, readers):
    """A stage that copies ``tensor`` into ``scope`` and that ``readers`` read instead."""
    if not isinstance(tensor, Tensor):
        raise ScheduleError(f"cache_read needs a tensor, got {type(tensor).__name__}")
    readers = list(readers) if isinstance(readers, (list, tuple)) else [readers]
    if not readers:
        raise ScheduleError(f"cache_read of {tensor.name}: give at least one reader")
    src_stage = sch[tensor]
    name = f"{tensor.name}.{scope}"
    cached = compute(tensor.shape, lambda *i: tensor(*i), name=name)
    reader_stages = []
    for r in readers:
        stage = sch[r]
        if not any(t == tensor for t in stage.op.input_tensors):
            raise ScheduleError(f"cache_read of {tensor.name}: stage {stage.name} does not "
                                f"read {tensor.name}")
        reader_stages.append(stage)
    for stage in reader_stages:
        op = stage.op
        if isinstance(op, ExternOp):
            new_op = ExternOp(op.name, op.tag, op.attrs,
                              [cached if t == tensor else t for t in op.inputs],
                              op.input_buffers, op.output_buffers, op.body)
        else:
            body = [_replace_reads(b, tensor, cached) for b in op.body]
            new_op = ComputeOp(op.name, op.tag, op.attrs, op.axis, body,
                               op.output(0).shape)
        _set_op(sch, stage, new_op)
    new_stage = Stage(cached.op, sch)
    new_stage.scope = scope
    after = src_stage
    # after the source, but also after any cache stage already inserted for it
    _insert_stage(sch, new_stage, after=after)
    sch._trace.append(encode("cache_read", src_stage,
                             (tensor.value_index, scope, reader_stages), {}))
    return cached


def cache_write(sch, tensor: Tensor, scope: str):
    """Compute ``tensor`` into a ``scope`` buffer first; the original stage then copies it out.

    Call it before other primitives on that stage. The original axes (``T.op.axis``) keep
    naming the copy-out stage; the new stage has fresh axes (``s[cached].op.axis``) and keeps
    the reduction axes.
    """
    if isinstance(tensor, (list, tuple)):
        raise ScheduleError("cache_write of several outputs at once is not supported")
    stage = sch[tensor]
    op = stage.op
    if not isinstance(op, ComputeOp):
        raise ScheduleError(f"cache_write of {tensor.name}: only compute stages can be cached")
    if op.num_outputs > 1:
        raise ScheduleError(f"cache_write of {tensor.name}: multi-output stages are not "
                            "supported")
    if stage.relations or stage.iter_attrs or stage.attach_type != "root":
        raise ScheduleError(f"cache_write of {tensor.name}: call it before splitting, "
                            "annotating or attaching stage " + stage.name)
    new_axes = _fresh_axes(op.axis, ".c")
    mapping = {old.var: new.var for old, new in zip(op.axis, new_axes)}
    body = [substitute(b, mapping) for b in op.body]
    cache_op = ComputeOp(f"{op.name}.{scope}", op.tag, op.attrs, new_axes, body,
                         op.output(0).shape)
    cached = cache_op.output(0)
    copy_op = ComputeOp(op.name, op.tag, op.attrs, op.axis,
                        [cached(*[iv.var for iv in op.axis])], op.output(0).shape)
    _set_op(sch, stage, copy_op)
    stage._init_axes()
    new_stage = Stage(cache_op, sch)
    new_stage.scope = scope
    _insert_stage(sch, new_stage, before=stage)
    sch._trace.append(encode("cache_write", stage, (scope,), {}))
    return cached


def rfactor(sch, tensor: Tensor, axis: IterVar, factor_axis: int = 0):
    """Factor a reduction: a new stage reduces everything but ``axis``, keeping ``axis`` as a
    data dimension (at position ``factor_axis``); the original stage sums over it.

    Example: ``ko, ki = s[B].split(k, factor=16); BF = s.rfactor(B, ki)``.
    """
    stage = sch[tensor]
    op = stage.op
    if not isinstance(op, ComputeOp) or not op.reduce_axis:
        raise ScheduleError(f"rfactor of {tensor.name}: stage {stage.name} is not a reduction")
    if op.num_outputs > 1:
        raise ScheduleError(f"rfactor of {tensor.name}: multi-output reductions are not "
                            "supported")
    axis = stage._check_leaf(axis, "rfactor")
    record = encode("rfactor", stage, (axis, factor_axis), {})
    if axis.kind != REDUCE:
        raise ScheduleError(f"rfactor of {tensor.name}: axis {axis.var.name} is not a "
                            "reduction axis")
    if not 0 <= factor_axis <= len(op.axis):
        raise ScheduleError(f"rfactor of {tensor.name}: factor_axis {factor_axis} out of range "
                            f"0..{len(op.axis)}")
    from .lower.relations import pass_down_domain
    dom = pass_down_domain(stage, {iv: iv.dom for iv in stage.root_iter_vars})
    reduce_leaves = [iv for iv in stage.leaf_iter_vars if iv.kind == REDUCE]
    # values of the original reduction axes in terms of the reduce leaves, with guards
    value = {iv: iv.var for iv in reduce_leaves}
    conds = []
    for rel in reversed(stage.relations):
        if isinstance(rel, Split) and rel.parent.kind == REDUCE:
            factor = rel.factor if rel.factor is not None else dom[rel.inner].extent
            value[rel.parent] = value[rel.outer] * factor + value[rel.inner]
        elif isinstance(rel, Fuse) and rel.fused.kind == REDUCE:
            value[rel.outer] = value[rel.fused] // dom[rel.inner].extent
            value[rel.inner] = value[rel.fused] % dom[rel.inner].extent
    for rel in stage.relations:
        if isinstance(rel, Split) and rel.parent.kind == REDUCE:
            conds.append(binary(LT, value[rel.parent], dom[rel.parent].extent))
    from .arith import simplify
    # fresh variables for the factored stage
    factor_iv = IterVar(Range(IntImm(0, "int32"), simplify(dom[axis].extent)),
                        Var(axis.var.name + ".v", axis.var.dtype), DATA_PAR)
    data_axes = _fresh_axes(op.axis, ".rf")
    new_reduce = [IterVar(Range(IntImm(0, "int32"), simplify(dom[iv].extent)),
                          Var(iv.var.name, iv.var.dtype), REDUCE)
                  for iv in reduce_leaves if iv is not axis]
    leaf_map = {axis.var: factor_iv.var}
    leaf_map.update({old.var: new.var for old, new in
                     zip([iv for iv in reduce_leaves if iv is not axis], new_reduce)})
    root_map = {iv.var: substitute(value[iv], leaf_map) for iv in op.reduce_axis}
    root_map.update({old.var: new.var for old, new in zip(op.axis, data_axes)})
    first = op.body[0]
    source = tuple(substitute(s, root_map) for s in first.source)
    cond = substitute(first.condition, root_map)
    for c in conds:
        cond = And(cond, substitute(c, leaf_map), "bool")
    rf_axes = list(data_axes)
    rf_axes.insert(factor_axis, factor_iv)
    rf_shape = [iv.dom.extent for iv in rf_axes]
    if new_reduce:
        rf_body = Reduce(first.combiner, source, tuple(new_reduce), simplify(cond), 0, (),
                         first.dtype)
    else:
        identity = first.combiner.identity[0]
        # if_then_else, not Select: a Select reads both arms, and past the end of a split that
        # does not divide the reduction, source[0] reads outside its buffer
        rf_body = source[0] if isinstance(simplify(cond), IntImm) else \
            if_then_else(cond, source[0], identity)
    rf_op = ComputeOp(f"{op.name}.rf", op.tag, op.attrs, rf_axes, [rf_body], rf_shape)
    rf = rf_op.output(0)
    # the original stage now reduces over the factored axis
    k = IterVar(Range(IntImm(0, "int32"), factor_iv.dom.extent),
                Var(axis.var.name + ".v", axis.var.dtype), REDUCE)
    indices = [iv.var for iv in op.axis]
    indices.insert(factor_axis, k.var)
    new_body = Reduce(first.combiner, (rf(*indices),), (k,), const(True), 0, first.init,
                      first.dtype)
    new_op = ComputeOp(op.name, op.tag, op.attrs, op.axis, [new_body], op.output(0).shape)
    old_leaves = [iv for iv in stage.leaf_iter_vars if iv.kind != REDUCE]
    kept_relations = [r for r in stage.relations
                      if not (isinstance(r, Split) and r.parent.kind == REDUCE)
                      and not (isinstance(r, Fuse) and r.fused.kind == REDUCE)]
    _set_op(sch, stage, new_op)
    stage.root_iter_vars = list(op.axis) + [k]
    stage.all_iter_vars = [iv for iv in stage.all_iter_vars if iv.kind != REDUCE] + [k]
    stage.leaf_iter_vars = old_leaves + [k]
    stage.relations = kept_relations
    stage.iter_attrs = {iv: a for iv, a in stage.iter_attrs.items() if iv.kind != REDUCE}
    rf_stage = Stage(rf_op, sch)
    _insert_stage(sch, rf_stage, before=stage)
    sch._trace.append(record)
    return rf
