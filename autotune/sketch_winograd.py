"""The sketch rule of a Winograd convolution (``tensorlang.ops.winograd``): its transform
stages keep that module's fixed schedules (tile axes unrolled, vectors along the channel block)
and only its product, a batched matmul, is left to the generic rules of ``autotune.sketch``."""
from __future__ import annotations

from tensorlang.ops.winograd import (schedule_winograd_input, schedule_winograd_output,
                                     schedule_winograd_pad)
from tensorlang.tensor import ComputeOp

from .stage_analysis import _extent, _fusible_consumer

__all__ = ["winograd_plans", "schedule_winograd_part"]


def winograd_plans(sch, inlined: set, padded: set) -> dict:
    """The plans of a Winograd convolution's transform stages (``conv2d_winograd_nchwc``),
    by stage index: the pad, input and output stages get the fixed schedules of
    ``tensorlang.ops.winograd`` (tile axes unrolled so that the coefficient selects fold away;
    generic plans would inline the transforms into each other and evaluate every select),
    the two half transforms are computed per tile inside them. Only the product (a batched
    matmul) is searched. A layout stage the pad reads stays a stage of its own (inlined, the
    pad's channel vectors would gather across planes), and the output is inlined into a
    single elementwise consumer with its shape (bias, relu), which then carries its loops.
    Takes the stages it plans out of ``inlined`` and ``padded``; empty for any other
    computation."""
    stages = list(sch.stages)
    tags = {st.op.tag: st for st in stages if isinstance(st.op, ComputeOp) and st.op.tag}
    if not all(t in tags for t in ("winograd_pad", "winograd_input", "winograd_output")):
        return {}
    index = {st: i for i, st in enumerate(stages)}
    pad, out = tags["winograd_pad"], tags["winograd_output"]
    for st in tags.values():
        if st.op.tag.startswith("winograd_"):
            inlined.discard(st)
            padded.discard(st)
    # the output tile m: the half transform's second axis (a - 2 for a 3x3 kernel otherwise)
    tile = _extent(tags["winograd_half"].op.axis[1]) if "winograd_half" in tags else \
        _extent(tags["winograd_input"].op.axis[0]) - 2
    plans = {index[pad]: ("winograd", {"part": "pad"}),
             index[tags["winograd_input"]]: ("winograd", {"part": "input"})}
    for tag in ("winograd_rows", "winograd_half"):
        if tag in tags:
            plans[index[tags[tag]]] = ("fused", {})
    for t in pad.op.input_tensors:
        st = sch.stage_map.get(t.op)
        if st in inlined:
            inlined.discard(st)
            padded.discard(st)
            plans[index[st]] = ("simple", {})
    carrier = _fusible_consumer(sch, out, inlined)
    if carrier is not None and [_extent(iv) for iv in carrier.op.axis] == \
            [_extent(iv) for iv in out.op.axis]:
        plans[index[out]] = ("inline", {})
        plans[index[carrier]] = ("winograd", {"part": "output", "tile": tile})
    else:
        plans[index[out]] = ("winograd", {"part": "output", "tile": tile})
    return plans


def schedule_winograd_part(sch, stage, options: dict) -> None:
    """Apply the plan ``("winograd", options)`` that :func:`winograd_plans` gave ``stage``."""
    part = options["part"]
    if part == "pad":
        schedule_winograd_pad(sch, stage)
    elif part == "input":
        schedule_winograd_input(sch, stage)
    else:
        schedule_winograd_output(sch, stage, options["tile"])
