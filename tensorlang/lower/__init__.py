"""From a schedule to loop IR: the lowering pipeline.

``lower`` builds the loop nest of a schedule and runs the passes below, in order. With
``tl.config(verify=True)`` the IR is checked after every pass; with ``dump_ir=True`` it is
printed after every pass.
"""
from __future__ import annotations

from ..config import current
from ..errors import ScheduleError, UserError
from ..expr import Var
from ..ir.buffer import decl_buffer
from ..ir.function import PrimFunc
from ..tensor import Tensor
from .bound import infer_bounds
from .check_bounds import check_reads_in_bounds
from .flatten import flatten_storage
from .loop_partition import partition_loops
from .inline import effective_bodies
from .schedule_ops import LoopNestBuilder
from .vectorize import vectorize_loops


def _simplify(func):
    from ..arith import simplify_stmt
    return simplify_stmt(func)


# The pipeline after the loop nest is built: (name, pass) in order.
PASSES = [
    ("simplify", _simplify),
    ("loop_partition", partition_loops),
    ("simplify_after_partition", _simplify),
    ("flatten_storage", flatten_storage),
    # flat indices of a fused, split loop ((f // 28) * 28 + f % 28) fold to f here, so the
    # vectorizer sees a ramp instead of lanes it cannot prove distinct
    ("simplify_after_flatten", _simplify),
    ("vectorize", vectorize_loops),
    ("simplify_after_vectorize", _simplify),
]


def lower(sch, args, name: str = "main", **_ignored) -> PrimFunc:
    """Lower a schedule to a ``PrimFunc`` whose parameters are ``args`` (tensors, in order).

    Example: ``print(tl.lower(s, [A, B, C]))`` shows the loops.
    """
    from ..schedule import Schedule
    if not isinstance(sch, Schedule):
        raise UserError(f"lower expects a Schedule (tl.create_schedule), got "
                        f"{type(sch).__name__}")
    args = list(args) if isinstance(args, (list, tuple)) else [args]
    params, arg_buffers, outputs = [], {}, []
    for pos, a in enumerate(args):
        if isinstance(a, Var):
            params.append(a)
            continue
        if not isinstance(a, Tensor):
            raise UserError(f"argument {pos} of {name} is a {type(a).__name__}; arguments are "
                            "the tensors (placeholders and outputs) in call order")
        stage = sch.stage_map.get(a.op)
        if stage is None:
            raise UserError(f"argument {pos} ({a.name}) is not part of this schedule")
        if (stage, a.value_index) in arg_buffers:
            raise UserError(f"argument {pos} ({a.name}) is listed twice")
        buf = decl_buffer(a.shape, a.dtype, a.name)
        arg_buffers[(stage, a.value_index)] = buf
        params.append(buf)
        if stage.op.__class__.__name__ != "PlaceholderOp":
            outputs.append(len(params) - 1)
    for stage in sch.stages:
        # a multi-output stage (argmax) needs one of its outputs among the arguments; the
        # others are computed into temporary buffers
        if stage.is_output and not any((stage, i) in arg_buffers
                                       for i in range(stage.op.num_outputs)):
            raise UserError(f"output {stage.op.output(0).name} of the schedule is missing "
                            f"from the arguments of {name}")
        if stage.attach_type == "scope" and \
                stage.attach_ivar not in stage.attach_stage.leaf_iter_vars:
            raise ScheduleError(
                f"stage {stage.name} is computed at axis {stage.attach_ivar.var.name} of "
                f"{stage.attach_stage.name}, but that axis was split or fused afterwards; "
                f"compute_at one of the current axes of {stage.attach_stage.name}")
    _check_inputs(sch, arg_buffers)
    bodies = effective_bodies(sch)
    check_reads_in_bounds(sch, bodies)
    ranges = infer_bounds(sch, bodies)
    body = LoopNestBuilder(sch, bodies, ranges, arg_buffers).build()
    func = PrimFunc(name, tuple(params), body, (("output_indices", tuple(outputs)),))
    return run_passes(func)


def _check_inputs(sch, arg_buffers):
    from ..tensor import PlaceholderOp
    for stage in sch.stages:
        if isinstance(stage.op, PlaceholderOp) and (stage, 0) not in arg_buffers:
            raise UserError(f"input tensor {stage.op.name} is used but missing from the "
                            "arguments")


def run_passes(func: PrimFunc) -> PrimFunc:
    cfg = current()
    _after(func, "loop_nest", cfg)
    for name, fn in PASSES:
        if name in cfg.disabled_passes:
            continue
        func = fn(func)
        _after(func, name, cfg)
    return func


def _after(func, name, cfg):
    if cfg.dump_ir:
        print(f"# after {name}\n{func}\n")
    if cfg.verify:
        from ..ir.verify import verify_well_formed
        verify_well_formed(func)
