"""Which convolutions of a CPU build run in the blocked (NCHWc) layout.

``graph.build(mod, layout=...)``:

- ``"NCHW"``: none; convolutions run as im2col + BLAS sgemm (or the direct kernel);
- ``"NCHWc"``: every eligible one (``graph.passes.layout``), tuned records applied where the
  database has them, default schedules elsewhere;
- ``"auto"`` (the default): without a database, none (untuned, BLAS is the faster choice).
  With one, each blocked convolution group that has a tuning record (``graph.tune`` tunes
  convolutions in this form) is compiled, timed here against its NCHW group on the same random
  inputs (best of 3 x 3 calls each), and kept blocked only where it is faster.

Example::

    mod = choose_conv_layout(optimize(mod), "llvm", "tuning.db", "auto")
"""
from __future__ import annotations

from tensorlang.errors import UserError

from .ir import Module
from .passes.layout import convert_conv_layout

LAYOUTS = ("auto", "NCHW", "NCHWc")

__all__ = ["LAYOUTS", "choose_conv_layout", "check_layout"]


def check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise UserError(f"graph.build: layout must be one of {list(LAYOUTS)}, got {layout!r}")


def choose_conv_layout(mod: Module, target: str, database, layout: str) -> Module:
    """``mod`` (already optimised) with the convolutions that ``layout`` picks made blocked."""
    check_layout(layout)
    from .gpu import is_cuda_target
    if layout == "NCHW" or is_cuda_target(target):
        return mod
    if layout == "NCHWc":
        return convert_conv_layout(mod)
    if database is None:
        return mod
    faster = _faster_blocked_convs(mod, target, database)
    if not faster:
        return mod
    return convert_conv_layout(mod, select=lambda conv: id(conv) in faster)


def _faster_blocked_convs(mod: Module, target: str, database) -> set:
    """``id`` of each original conv whose blocked group is tuned and times faster."""
    from autotune.database import Database
    from autotune.task import Task
    from .build import group_spec, group_workload, partition
    from .compile import compile_kernels
    origin: dict = {}
    blocked = convert_conv_layout(mod, origin=origin)
    plain_groups = {id(g.calls[0]): g for g in partition(mod)}
    pairs = []  # (original conv, blocked group spec, NCHW group spec)
    db = database if hasattr(database, "best") else Database(database)
    try:
        for group in partition(blocked):
            conv = origin.get(id(group.calls[0]))
            if conv is None or id(conv) not in plain_groups:
                continue
            spec = group_spec(group, target)
            task = Task(group_workload, args=(spec,), target=target)
            if db.best(task.key, task.target_key, k=1):
                pairs.append((conv, spec, group_spec(plain_groups[id(conv)], target)))
    finally:
        if db is not database:
            db.close()
    if not pairs:
        return set()
    jobs = [(f"blocked_{i}", b) for i, (_, b, _) in enumerate(pairs)] + \
           [(f"plain_{i}", p) for i, (_, _, p) in enumerate(pairs)]
    kernels = compile_kernels(jobs, target, database)
    faster = set()
    for conv, blocked_spec, plain_spec in pairs:
        if _seconds(kernels[blocked_spec], blocked_spec, target) < \
                _seconds(kernels[plain_spec], plain_spec, target):
            faster.add(id(conv))
    return faster


def _seconds(kernel, spec: str, target: str) -> float:
    from autotune.task import Task
    from .build import group_workload
    arrays = Task(group_workload, args=(spec,), target=target).random_inputs(seed=0)
    kernel(*arrays)  # warm-up: first touch of the output, code in cache
    return kernel.time_evaluator(number=3, repeat=3)(*arrays).min
