"""Schedules as replayable traces: every primitive call, with stages and axes by reference.

A stage is named by the order in which the schedule created it; an axis by its stage and its
position among the stage's axes. Replaying the calls on the same computation gives the same
loops, so a trace can be stored (tuning records) and applied later.
"""
from __future__ import annotations

import json

from .errors import ScheduleError
from .expr import IterVar


def _ref(stage, x):
    from .schedule import Stage
    if isinstance(x, IterVar):
        owner = stage if x in stage.all_iter_vars else stage.schedule.stage_of_axis(x)
        if owner is None:
            raise ScheduleError(f"axis {x.var.name} belongs to no stage of this schedule")
        return {"axis": [owner.sid, owner.all_iter_vars.index(x)]}
    if isinstance(x, Stage):
        return {"stage": x.sid}
    if isinstance(x, (list, tuple)):
        return {"list": [_ref(stage, y) for y in x]}
    if hasattr(x, "value") and type(x).__name__ in ("IntImm", "FloatImm"):
        return x.value
    if x is None or isinstance(x, (int, float, str, bool)):
        return x
    raise ScheduleError(f"cannot record {x!r} in a schedule trace (use constants)")


def encode(name: str, stage, args, kwargs) -> dict:
    return {"op": name, "stage": stage.sid,
            "args": [_ref(stage, a) for a in args],
            "kwargs": {k: _ref(stage, v) for k, v in kwargs.items()}}


def to_json(sch) -> str:
    outputs = [op.name for op in sch.outputs]
    return json.dumps({"version": 1, "outputs": outputs, "trace": sch._trace})


def _resolve(sch, x):
    if isinstance(x, dict):
        if "axis" in x:
            sid, idx = x["axis"]
            return sch.stage_by_sid(sid).all_iter_vars[idx]
        if "stage" in x:
            return sch.stage_by_sid(x["stage"])
        if "list" in x:
            return [_resolve(sch, y) for y in x["list"]]
    return x


def from_json(text: str, tensors):
    """Replay a trace on the computation that ``tensors`` (its outputs, or all args) belong to."""
    from . import create_schedule, thread_axis
    data = json.loads(text)
    tensors = list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]
    by_name = {t.op.name: t for t in tensors}
    missing = [n for n in data["outputs"] if n not in by_name]
    if missing:
        raise ScheduleError(f"schedule trace needs output tensors {missing}; got "
                            f"{sorted(by_name)}")
    sch = create_schedule([by_name[n] for n in data["outputs"]])
    for entry in data["trace"]:
        stage = sch.stage_by_sid(entry["stage"])
        args = [_resolve(sch, a) for a in entry["args"]]
        kwargs = {k: _resolve(sch, v) for k, v in entry["kwargs"].items()}
        op = entry["op"]
        if op == "cache_read":
            value_index, scope, readers = args
            sch.cache_read(stage.op.output(value_index), scope, [r.op.output(0) for r in readers])
        elif op == "cache_write":
            sch.cache_write(stage.op.output(0), args[0])
        elif op == "rfactor":
            sch.rfactor(stage.op.output(0), args[0], args[1])
        elif op == "bind":
            stage.bind(args[0], thread_axis(args[1]))
        else:
            getattr(stage, op)(*args, **kwargs)
    return sch
