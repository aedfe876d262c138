"""Which convolutions of a CPU build run in the blocked (NCHWc) layout.

``graph.build(mod, layout=...)``:

- ``"NCHW"``: none; convolutions run as im2col + BLAS sgemm (or the direct kernel);
- ``"NCHWc"``: every eligible one (``graph.passes.layout``), tuned records applied where the
  database has them, default schedules elsewhere;
- ``"auto"`` (the default): each eligible convolution's blocked group (with its tuning record
  where the database has one, ``graph.tune`` tunes convolutions in this form, else its default
  schedule; untuned ones only from 4 MFLOP up) is compiled, timed here against its NCHW group
  (im2col + BLAS) on the same random inputs (best of 3 x 3 calls each), and left in NCHW only
  where that is 1.25x faster. A 3x3 stride-1 convolution with outputs of at least 8 x 8 is also
  timed as Winograd ``F(4x4, 3x3)`` (``conv2d_winograd_nchwc``, blocked too), its products as a
  grouped BLAS call and as a DSL reduction (tuned where the database has its record), and runs
  so where one of them beats its direct blocked kernel. A group with a tuning record is timed
  against its default schedule too, and built without the record where the default is faster
  here. On the nine light models (RESULTS.md), neither layout wins everywhere: blocked is 1.9x
  faster on VGG-19 and DenseNet-121, im2col + BLAS 1.5x faster on SqueezeNet, whose 13 x 13
  outputs leave the blocked kernel a register tile of one row.

Example::

    mod = choose_conv_layout(optimize(mod), "llvm", "tuning.db", "auto")
"""
from __future__ import annotations

from tensorlang.errors import UserError

from .ir import Module
from .passes.layout import WINOGRAD_PRODUCTS, convert_conv_layout

LAYOUTS = ("auto", "NCHW", "NCHWc")
# "auto" leaves a convolution in NCHW only where that is this much faster: one left among
# blocked neighbours costs two layout transforms that its own timing does not see, and the
# blocked layout also serves the pooling, concatenation and elementwise ops around it
PLAIN_MARGIN = 1.25
# an untuned convolution below this many flops (about 50 us here) stays in NCHW untimed: its
# timings cannot tell the layouts apart, and two transforms would cost as much as it does
MIN_UNTUNED_FLOPS = 4_000_000

__all__ = ["LAYOUTS", "choose_conv_layout", "check_layout"]


def check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise UserError(f"graph.build: layout must be one of {list(LAYOUTS)}, got {layout!r}")


def choose_conv_layout(mod: Module, target: str, database, layout: str,
                       untuned: set | None = None) -> Module:
    """``mod`` (already optimised) with the convolutions that ``layout`` picks made blocked.
    With ``"auto"``, ``untuned`` (when given) receives the group specs whose tuned kernel
    timed slower here than the same group's default schedule (a record measured alone, with
    its weights in cache, can lose inside the model): build compiles those without records."""
    check_layout(layout)
    from .gpu import is_cuda_target
    if layout == "NCHW" or is_cuda_target(target):
        return mod
    if layout == "NCHWc":
        return convert_conv_layout(mod)
    faster, winograd = _faster_blocked_convs(mod, target, database,
                                             set() if untuned is None else untuned)
    if not faster:
        return mod
    return convert_conv_layout(mod, select=lambda conv: id(conv) in faster,
                               winograd=lambda conv: winograd.get(id(conv), False))


def _faster_blocked_convs(mod: Module, target: str, database, untuned: set) -> tuple[set, dict]:
    """``id`` of each original conv whose blocked group (tuned where ``database`` has its
    record, else with its default schedule; or as Winograd, where ``winograd_conv`` allows
    and that times faster: its products as one grouped BLAS call or as a DSL reduction)
    times faster than its NCHW group, and ``{id: "blas" or "dsl"}`` for those of them that
    run as Winograd. Every form with a tuning record is also timed with its default schedule;
    the specs where that was faster are added to ``untuned`` (built without the record)."""
    from autotune.task import Task
    from .build import group_spec, group_workload, partition
    from .compile import compile_kernels, opened_database
    origin: dict = {}
    blocked = convert_conv_layout(mod, origin=origin)
    plain_groups = {id(g.calls[0]): g for g in partition(mod)}
    found = []  # (original conv, blocked group spec, NCHW group spec)
    for group in partition(blocked):
        conv = origin.get(id(group.calls[0]))
        if conv is not None and id(conv) in plain_groups:
            found.append((conv, group_spec(group, target),
                          group_spec(plain_groups[id(conv)], target)))
    if not found:
        return set(), {}
    winograd_specs = {product: _winograd_specs(mod, target, {id(c) for c, _, _ in found},
                                               product)
                      for product in WINOGRAD_PRODUCTS}

    def forms(conv, blocked_spec):  # (spec, Winograd product or None) of each way to run it
        return [(blocked_spec, None)] + [(specs[id(conv)], product) for product, specs
                                         in winograd_specs.items() if id(conv) in specs]
    with opened_database(database) as db:
        def has_record(spec):
            task = Task(group_workload, args=(spec,), target=target)
            return db is not None and bool(db.best(task.key, task.target_key, k=1))
        tuned = {spec for conv, b, _ in found for spec, _ in forms(conv, b) if has_record(spec)}
    # a conv with a record for any of its forms is timed whatever its size
    pairs = [(conv, b, p) for conv, b, p in found
             if _flops(conv) >= MIN_UNTUNED_FLOPS or any(s in tuned for s, _ in forms(conv, b))]
    if not pairs:
        return set(), {}
    timed = [spec for conv, b, _ in pairs for spec, _ in forms(conv, b)]
    jobs = [(f"form_{i}", spec) for i, spec in enumerate(timed)] + \
           [(f"plain_{i}", p) for i, (_, _, p) in enumerate(pairs)]
    kernels = compile_kernels(jobs, target, database)
    defaults = [spec for spec in timed if spec in tuned]
    defaults = compile_kernels([(f"default_{i}", spec) for i, spec in enumerate(defaults)],
                               target, None) if defaults else {}

    def seconds(spec):  # a tuned kernel against its default schedule: the faster one is built
        best = _seconds(kernels[spec], spec, target)
        if spec in defaults:
            default = _seconds(defaults[spec], spec, target)
            if default < best:
                best = default
                untuned.add(spec)
        return best
    faster, winograd = set(), {}
    for conv, blocked_spec, plain_spec in pairs:
        best, product = min(((seconds(spec), product) for spec, product
                             in forms(conv, blocked_spec)), key=lambda p: p[0])
        if best < PLAIN_MARGIN * _seconds(kernels[plain_spec], plain_spec, target):
            faster.add(id(conv))
            if product is not None:
                winograd[id(conv)] = product
    return faster, winograd


def _winograd_specs(mod: Module, target: str, candidates: set, product: str) -> dict:
    """``{id(original conv): spec of its Winograd group}`` for the ``candidates`` that
    ``winograd_conv`` allows, with its products computed as ``product`` says."""
    from .build import group_spec, partition
    from .passes.layout import winograd_conv
    if not any(winograd_conv(c) for c in _calls(mod) if id(c) in candidates):
        return {}
    origin: dict = {}
    converted = convert_conv_layout(mod, origin=origin, winograd=lambda conv: product)
    specs = {}
    for group in partition(converted):
        first = group.calls[0]
        conv = origin.get(id(first))
        if conv is not None and first.op == "conv2d_winograd_nchwc" and id(conv) in candidates:
            specs[id(conv)] = group_spec(group, target)
    return specs


def _calls(mod: Module) -> list:
    from .ir import Call, post_order
    return [n for n in post_order(mod.function.outputs) if isinstance(n, Call)]


def _flops(conv) -> int:
    """Multiply-adds x 2 of a conv2d call: output elements x (C / groups) x KH x KW."""
    out = 1
    for d in conv.type.shape:
        out *= int(d)
    weight = [int(d) for d in conv.args[1].type.shape]
    return 2 * out * weight[1] * weight[2] * weight[3]


def _seconds(kernel, spec: str, target: str) -> float:
    from autotune.task import Task
    from .build import group_workload
    arrays = Task(group_workload, args=(spec,), target=target).random_inputs(seed=0)
    kernel(*arrays)  # warm-up: first touch of the output, code in cache
    return kernel.time_evaluator(number=3, repeat=3)(*arrays).min
