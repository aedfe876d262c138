"""Tuning a whole model: extract its tasks (one per distinct fused group worth tuning, weighted
by how often the group occurs) and hand them to ``autotune.tune``.

``graph.build(mod, database=...)`` then applies the records, because a group's task is keyed by
its computation's structure: the same group in another model (or another build) finds them too.

Example::

    mod = graph.from_onnx("resnet50.onnx")
    graph.tune(mod, target="llvm", trials=2000, database="tuning.db")
    lib = graph.build(mod, target="llvm", database="tuning.db")
"""
from __future__ import annotations

import hashlib

from autotune import Task
from autotune import tune as _tune
from tensorlang.errors import UserError

from .build import group_spec, group_workload, partition
from .gpu import is_cuda_target
from .ir import Module
from .passes import optimize
from .passes.layout import convert_conv_layout, winograd_conv

__all__ = ["extract_tasks", "tune"]


def extract_tasks(mod: Module, target: str = "llvm", *, only_reductions: bool = True) -> list:
    """The tuning tasks of ``mod``: one per distinct fused group, ``weight`` = its number of
    occurrences. With ``only_reductions`` (the default) groups without a reduction (elementwise
    and layout kernels, which the default schedule already streams at memory speed) are left
    out. On a CPU, the convolutions are tuned in the channel-blocked layout
    (``graph.passes.layout``): the im2col + BLAS form has nothing to tune, and
    ``graph.build(layout="auto")`` keeps a blocked convolution where it measures faster. A
    convolution that can run as Winograd ``F(4x4, 3x3)`` also gives that form (its products a
    DSL reduction) as a task, in one ``group`` with the direct one: the task scheduler spends
    the trials on the faster algorithm, and the build times both.
    Tasks come heaviest first (weight times estimated operations)."""
    if not isinstance(mod, Module):
        raise UserError(f"graph.extract_tasks takes a graph Module, got {type(mod).__name__}")
    counts: dict[str, int] = {}
    names: dict[str, str] = {}
    groups: dict[str, str] = {}  # spec -> label of its conv's alternatives
    mod = optimize(mod)
    if not is_cuda_target(target):
        origin: dict = {}
        blocked = _specs(convert_conv_layout(mod, origin=origin), origin, target)
        for spec, name, conv in blocked:  # the groups graph.build(layout="NCHWc") compiles
            counts[spec] = counts.get(spec, 0) + 1
            names.setdefault(spec, name)
            if conv is not None and winograd_conv(conv):
                groups[spec] = f"conv:{_short(spec)}"
        if groups:  # the same convolutions as Winograd with DSL products, in their groups
            labels = {id(conv): groups.get(spec) for spec, _, conv in blocked if conv is not None}
            origin = {}
            winograd = convert_conv_layout(mod, origin=origin, winograd=lambda conv: "dsl")
            for spec, name, conv in _specs(winograd, origin, target):
                if conv is not None and labels.get(id(conv)):
                    counts[spec] = counts.get(spec, 0) + 1
                    names.setdefault(spec, name + "_winograd")
                    groups[spec] = labels[id(conv)]
    else:
        for spec, name, _ in _specs(mod, {}, target):
            counts[spec] = counts.get(spec, 0) + 1
            names.setdefault(spec, name)
    tasks = []
    for spec, count in counts.items():
        task = Task(group_workload, args=(spec,), target=target, weight=count,
                    name=names[spec], group=groups.get(spec))
        if only_reductions and not any(getattr(t.op, "reduce_axis", None)
                                       for t in _stages(task.outputs)):
            continue
        tasks.append(task)
    return sorted(tasks, key=lambda t: -(t.weight * (t.flop_count() or 0)))


def _specs(mod: Module, origin: dict, target: str) -> list:
    """``(spec, name, original conv or None)`` of each fused group of ``mod``."""
    return [(group_spec(g, target), g.name, origin.get(id(g.calls[0]))) for g in partition(mod)]


def _short(spec: str) -> str:
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def tune(mod: Module, target: str = "llvm", trials: int = 2000, database="tuning.db",
         **options):
    """Tune the tasks of ``mod`` (see :func:`extract_tasks`) with ``trials`` measurements in
    all; ``options`` go to ``autotune.tune`` (``timeout``, ``repeat``, ``seed``, ``progress``,
    ``curve``, ...). Returns its per-task summaries."""
    tasks = extract_tasks(mod, target)
    if not tasks:
        raise UserError("graph.tune: the model has no kernel with a reduction to tune")
    return _tune(tasks, trials=trials, database=database, **options)


def _stages(outputs) -> list:
    """Every tensor the outputs are computed from (not placeholders)."""
    from tensorlang.tensor import PlaceholderOp
    seen, order, stack = set(), [], list(outputs)
    while stack:
        t = stack.pop()
        if id(t.op) in seen or isinstance(t.op, PlaceholderOp):
            continue
        seen.add(id(t.op))
        order.append(t)
        stack.extend(t.op.input_tensors)
    return order
