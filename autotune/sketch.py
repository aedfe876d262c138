"""The search space of a computation: sketches (schedule structures) with named decisions.

Rules walk the stage DAG of ``tl.create_schedule(outputs)`` and give each stage a plan:

- ``inline``: a pure elementwise stage that is not an output is inlined into its readers.
- ``tile``: a reduction whose inputs are reused across its spatial axes (matmul, conv) gets
  multi-level tiling for the CPU: spatial axes in four levels (parallel outer, two middle levels,
  register tile) with the reduction in two levels between them ("SSRSRS"). Variants write
  through a local ``cache_write`` stage (the register tile accumulates locally, the copy-out
  stage carries the outer loops) and fuse a single elementwise consumer (bias + relu) into the
  tiled loops with ``compute_at`` at a chosen level. A consumer that only reads the result back
  in another layout (a channel-blocked conv unpacked to NCHW) carries the tiles too, its blocked
  axes split to line up with the producer's: the register tile is stored straight into the
  final layout and the blocked intermediate is never written.
- ``reduce``: a reduction without reuse (row sums): parallel spatial loops, the reduction split
  in two with an unroll hint; where vectors along the last axis read along rows (pooling), a
  vector of outputs accumulates in a local buffer instead. ``rfactor`` is a variant when the
  reduction dominates (a long reduction over few spatial points): the reduction is factored
  into vector lanes.
- ``simple``: any other stage (elementwise outputs, packs): the fewest outer axes that give 64
  iterations fused and parallel, the innermost axis split by the vector width and vectorized.
  A layout stage (one load, perhaps under a padding guard) whose last axis reads across rows
  defaults to plain loops under fewer fused parallel loops (its vectors would be gathered lane
  by lane, and a fused index divided per element); one that reads a blocked layout back
  (``x[f // c, ..., f % c]``) walks each block while it is in cache (knob ``order``).

- ``winograd``: the transform stages of a Winograd convolution (``tensorlang.ops.winograd``)
  keep the fixed schedules of that module, tile axes unrolled; only its product, a batched
  matmul, gets the ``tile`` plans above (``autotune/sketch_winograd.py``).

A :class:`Sketch` is a deterministic recipe; its *decisions* (tile sizes drawn from the
factorizations of each extent, compute_at level, unroll depth, vectorize, parallel fuse count)
are a JSON-able dict. ``sketch.apply(tensors, decisions)`` builds a fresh schedule and replays the
recipe, so a record (``to_record``) gives the same loops on a freshly built copy of the workload.

Example::

    sketches = generate_sketches([C], vector_lanes=8)
    rng = random.Random(0)
    decisions = sketches[0].sample(rng)
    s = sketches[0].apply([C], decisions)
    f = tl.build(s, [A, B, C])
"""
from __future__ import annotations

import json
import random

import tensorlang as tl
from tensorlang.errors import UserError
from tensorlang.tensor import ComputeOp, ExternOp, PlaceholderOp, Tensor

from .sketch_winograd import schedule_winograd_part, winograd_plans
from .stage_analysis import (_carrier_map, _extent, _fusible_consumer, _has_reuse, _is_elementwise, _is_guarded,
                             _is_reindex, _lanes_along_rows, _packable_input,
                             _panel_in_place, _points, _row_axis, _rows_fuse_contiguously,
                             _strided_last_axis, _unblocked_axes)
# sketch_gpu and the tests import the tile helpers from here too
from .tiles import (_divisors, _largest_divisor, _prod, _split_default,  # noqa: F401
                    _tile_defaults, factorizations)

UNROLL_STEPS = (0, 16, 64, 512)
MAX_INNER_TILE = 64          # register tile / vector width bound for sampled spatial tiles
MAX_INNER_REDUCE = 16        # innermost reduction level bound
PARALLEL_ITERATIONS = 64     # a simple stage's default parallel loop: at least this many
RECORD_VERSION = 5  # 2: packed-panel variants first; 3: layout stages kept, row axis;
#                     4: layout stages ordered by blocks, tiles carried by an unpacking consumer
#                     5: a panel already in place is not copied by default (packed last)


# -- knobs: the decisions of a sketch ----------------------------------------------------------

class _Knob:
    """One named decision: a tile factorization (``tile``) or a choice among options."""

    def __init__(self, name, kind, options=None, extent=None, levels=None, max_inner=None,
                 default=None):
        self.name, self.kind = name, kind
        if kind == "tile":
            options = [list(f) for f in factorizations(extent, levels, max_inner)] or \
                [[1] * (levels - 1) + [extent]]
        self.options = list(options)
        self.default = default if default is not None else self.options[0]

    def sample(self, rng: random.Random):
        return rng.choice(self.options)

    def mutate(self, value, rng: random.Random):
        others = [o for o in self.options if o != value]
        if not others:
            return value
        if self.kind == "tile":  # move one factor between two levels when possible
            near = [o for o in others if sum(a != b for a, b in zip(o, value)) == 2]
            others = near or others
        return rng.choice(others)


# -- stage analysis ------------------------------------------------------------------------------

def _normalize(tensors) -> list[Tensor]:
    tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    return [t for t in tensors if not isinstance(t.op, PlaceholderOp)]


def _enough_outer(extents, minimum: int) -> int:
    """The fewest leading loops whose ``extents`` multiply to at least ``minimum`` (all of them
    when none do)."""
    total = 1
    for count, extent in enumerate(extents, 1):
        total *= extent
        if total >= minimum:
            return count
    return max(1, len(extents))


# -- sketches -----------------------------------------------------------------------------------

class Sketch:
    """A schedule structure for one computation with named decisions.

    Attributes:
        name: a readable summary of the plans (``"C:tile(cache,fuse=D)"``...).
        plans: ``[(stage_index, kind, options)]`` in stage order (indices into
            ``tl.create_schedule(outputs).stages``).
        knobs: the decisions, by name; ``default_decisions()`` gives sensible values.

    Example:
        >>> sk = generate_sketches([C], 8)[0]                      # doctest: +SKIP
        >>> s = sk.apply([C], sk.sample(random.Random(1)))          # doctest: +SKIP
    """

    def __init__(self, outputs, plans, vector_lanes: int):
        self.vector_lanes = vector_lanes
        self.plans = plans
        sch = tl.create_schedule(outputs)
        self.signature = [_stage_signature(s) for s in sch.stages]
        names = [s.name for s in sch.stages]
        self.name = ", ".join(
            names[i] + ":" + kind + "".join(
                f",{k}" if v is True else f",{k}={names[v]}" if k in ("fuse", "pack")
                else f",{k}={v}" for k, v in opts.items() if v not in (None, False))
            for i, kind, opts in plans if kind not in ("skip", "fused"))
        self.knobs: dict[str, _Knob] = {}
        self._build(sch, knobs_only=True)

    def __repr__(self):
        return f"Sketch({self.name})"

    # -- decisions ---------------------------------------------------------------------------
    def default_decisions(self) -> dict:
        return {name: knob.default for name, knob in self.knobs.items()}

    def sample(self, rng: random.Random) -> dict:
        """Random decisions (JSON-able)."""
        return {name: knob.sample(rng) for name, knob in self.knobs.items()}

    def mutate(self, decisions: dict, rng: random.Random) -> dict:
        """A copy of ``decisions`` with one decision changed (a tile factor moved, another unroll
        depth, another compute location, ...)."""
        new = dict(decisions)
        names = [n for n, k in self.knobs.items() if len(k.options) > 1]
        if names:
            name = rng.choice(names)
            new[name] = self.knobs[name].mutate(decisions[name], rng)
        return new

    def check(self, decisions: dict) -> None:
        for name, knob in self.knobs.items():
            if name not in decisions:
                raise UserError(f"sketch {self.name}: decision {name!r} is missing")
            if decisions[name] not in knob.options:
                raise UserError(f"sketch {self.name}: decision {name}={decisions[name]!r} is "
                                "not one of its options")

    # -- schedules ---------------------------------------------------------------------------
    def apply(self, tensors, decisions: dict) -> tl.Schedule:
        """A fresh schedule of ``tensors`` (outputs, or all argument tensors) with this sketch's
        steps replayed using ``decisions``."""
        self.check(decisions)
        sch = tl.create_schedule(_normalize(tensors))
        signature = [_stage_signature(s) for s in sch.stages]
        if signature != self.signature:
            raise UserError(f"sketch {self.name} was made for another computation")
        self._build(sch, decisions=decisions)
        return sch

    def _build(self, sch, decisions=None, knobs_only=False):
        ctx = _Context(self, sch, decisions, knobs_only)
        # inlining first: a fused consumer may read the tiled stage through inlined stages
        for index, kind, options in sorted(self.plans, key=lambda p: p[1] != "inline"):
            getattr(ctx, "plan_" + kind)(index, ctx.stages[index], options)


def _stage_signature(stage) -> str:
    op = stage.op
    if isinstance(op, PlaceholderOp):
        return f"placeholder{tuple(op.shape)}"
    return f"{type(op).__name__}:{[_extent(iv) for iv in getattr(op, 'axis', ())]}" \
           f":{[_extent(iv) for iv in getattr(op, 'reduce_axis', ())]}"


class _Context:
    """Applies the plans of one sketch to one schedule, declaring or reading decisions."""

    def __init__(self, sketch, sch, decisions, knobs_only):
        self.sketch, self.sch, self.decisions = sketch, sch, decisions
        self.knobs_only = knobs_only
        self.lanes = sketch.vector_lanes
        self.stages = list(sch.stages)  # the original stages, by index (before new ones)

    def decide(self, name, kind="choice", **kw):
        if self.knobs_only:
            self.sketch.knobs[name] = _Knob(name, kind, **kw)
            return self.sketch.knobs[name].default
        return self.decisions[name]

    # -- plans -------------------------------------------------------------------------------
    def plan_skip(self, index, stage, options):
        pass

    def plan_inline(self, index, stage, options):
        stage.compute_inline()

    def plan_fused(self, index, stage, options):
        pass  # scheduled by the tile plan of its producer

    def plan_winograd(self, index, stage, options):
        schedule_winograd_part(self.sch, stage, options)

    def plan_simple(self, index, stage, options):
        axes = list(stage.op.axis)
        if not axes:
            return
        last = _extent(axes[-1])
        width = _largest_divisor(last, (self.lanes, 4, 2))
        blocks = _unblocked_axes(stage.op)
        strided = _strided_last_axis(stage.op)
        if len(axes) >= 3 and width < self.lanes and not blocks and not strided and \
                _largest_divisor(last * _extent(axes[-2]), (self.lanes, 4, 2)) > width and \
                _rows_fuse_contiguously(stage.op) and \
                self.decide(f"{index}.fuse_rows", options=[True, False], default=True):
            # short rows (a 14 x 14 or 7 x 7 feature map): the last two axes as one, so the
            # vectors run across rows at full width
            fused_extents = [_extent(iv) for iv in axes[:-2]] + [_extent(axes[-2]) * last]
            axes = axes[:-2] + [stage.fuse(axes[-2], axes[-1])]
            last = fused_extents[-1]
            width = _largest_divisor(last, (self.lanes, 4, 2))
        else:
            fused_extents = [_extent(iv) for iv in axes]
        vec = self.decide(f"{index}.vectorize", options=[True, False],
                          default=not strided) and width > 1
        if len(axes) == 1:
            outer, inner = stage.split(axes[0], factor=width)
            stage.parallel(outer)
        else:
            extents = fused_extents
            if blocks and self.decide(f"{index}.order", options=["blocked", "output"],
                                      default="blocked") == "blocked":
                # an axis the input reads as a // c and a % c (a blocked layout read back to
                # a plain one): its inner c loop goes just above the last axis, so each
                # block of the input is read while it is in cache
                inner_axes = []
                for pos, c in sorted(blocks.items()):
                    axes[pos], a_in = stage.split(axes[pos], factor=c)
                    extents[pos] //= c
                    inner_axes.append(a_in)
                stage.reorder(*axes[:-1], *inner_axes, axes[-1])
            # the fewest fused loops that give the threads enough iterations: each fused
            # loop costs an index division per iteration (per element where the last axis is
            # short, a pad of 16-channel blocks); strided stages need fewer
            p = self.decide(f"{index}.parallel", options=list(range(1, len(axes))),
                            default=_enough_outer(extents[:-1], 16 if strided
                                                  else PARALLEL_ITERATIONS))
            stage.parallel(stage.fuse(*axes[:p]))
            outer, inner = stage.split(axes[-1], factor=width)
        if vec:
            stage.vectorize(inner)

    def plan_reduce(self, index, stage, options):
        axes, red = list(stage.op.axis), list(stage.op.reduce_axis)
        last = red[-1]
        r = self.decide(f"{index}.reduce", "tile", extent=_extent(last), levels=2,
                        max_inner=MAX_INNER_REDUCE,
                        default=_split_default(_extent(last), (4, 2)))
        unroll = self.decide(f"{index}.unroll", options=list(UNROLL_STEPS), default=16)
        lane = _largest_divisor(_extent(axes[-1]), (self.lanes, self.lanes // 2, 4, 2)) \
            if len(axes) >= 2 else 1
        if lane > 1 and _lanes_along_rows(stage.op) and \
                self.decide(f"{index}.vectorize", options=[True, False], default=True):
            self._reduce_in_lanes(index, stage, lane, r, unroll)
            return
        if axes:
            p = self.decide(f"{index}.parallel", options=list(range(1, len(axes) + 1)),
                            default=len(axes))
            stage.parallel(stage.fuse(*axes[:p]))
        _, ri = stage.split(last, factor=r[1])
        if unroll and r[1] <= unroll:
            stage.pragma(ri, "unroll_explicit", unroll)

    def _reduce_in_lanes(self, index, stage, lane, r, unroll):
        """Pooling-like reductions: ``lane`` outputs along the last axis accumulate in a local
        vector (``cache_write``), the reduction loops inside it, parallel over the outer
        axes. (Fused per element, the index of every output was divided apart and each lane
        ran alone.)"""
        axes = list(stage.op.axis)
        extents = [_extent(iv) for iv in axes]
        p = self.decide(f"{index}.parallel", options=list(range(1, len(axes) + 1)),
                        default=_enough_outer(extents[:-1], 16))
        local = self.sch[self.sch.cache_write(stage.op.output(0), "local")]
        outer, inner = stage.split(axes[-1], factor=lane)
        loops = axes[:-1] + [outer]
        par = stage.fuse(*loops[:p]) if p > 1 else loops[0]
        stage.parallel(par)
        stage.vectorize(inner)
        local.compute_at(stage, ([par] + loops[p:])[-1])
        spatial, red = list(local.op.axis), list(local.op.reduce_axis)
        ro, ri = local.split(red[-1], factor=r[1])
        local.reorder(*red[:-1], ro, ri, spatial[-1])
        local.vectorize(spatial[-1])
        if unroll and r[1] <= unroll and r[1] > 1:
            local.pragma(ri, "unroll_explicit", unroll)

    def plan_rfactor(self, index, stage, options):
        axes, red = list(stage.op.axis), list(stage.op.reduce_axis)
        total = _points(red)
        lanes_options = [d for d in _divisors(total) if 2 <= d <= 4 * self.lanes] or [1]
        factor = self.decide(f"{index}.rfactor", options=lanes_options,
                             default=_largest_divisor(total, (self.lanes, 4, 2)))
        attach = self.decide(f"{index}.rf_attach", options=[True, False], default=True) \
            if axes else False
        fused = stage.fuse(*red) if len(red) > 1 else red[0]
        _, ki = stage.split(fused, factor=factor)
        tensor = stage.op.output(0)
        rf = self.sch.rfactor(tensor, ki, factor_axis=len(axes))
        rf_stage = self.sch[rf]
        rf_axes, rf_red = list(rf_stage.op.axis), list(rf_stage.op.reduce_axis)
        rf_stage.reorder(*rf_axes[:-1], *rf_red, rf_axes[-1])
        rf_stage.vectorize(rf_axes[-1])
        if axes:
            p = self.decide(f"{index}.parallel", options=list(range(1, len(axes) + 1)),
                            default=len(axes))
            fused = stage.fuse(*axes[:p])
            stage.parallel(fused)
            if attach:
                rf_stage.compute_at(stage, stage.leaf_iter_vars[len(axes) - p])

    def plan_tile(self, index, stage, options):
        cache, fuse = options.get("cache", False), options.get("fuse")
        tensor = stage.op.output(0)
        spatial = list(stage.op.axis)
        red = list(stage.op.reduce_axis)
        ext = [_extent(iv) for iv in spatial]
        tiles = []
        row = _row_axis(stage.op)
        pack = options.get("pack")
        defaults = _tile_defaults(ext, row, self.lanes, panels=pack is not None)
        for d, e in enumerate(ext):
            tiles.append(self.decide(f"{index}.tile.{d}", "tile", extent=e, levels=4,
                                     max_inner=MAX_INNER_TILE, default=defaults[d]))
        rtiles = []
        for d, iv in enumerate(red):
            e = _extent(iv)
            default = _split_default(e, (4, 3, 2) if d == len(red) - 1 else ())
            rtiles.append(self.decide(f"{index}.rtile.{d}", "tile", extent=e, levels=2,
                                      max_inner=MAX_INNER_REDUCE, default=default))
        unroll = self.decide(f"{index}.unroll", options=list(UNROLL_STEPS), default=64)
        vec = self.decide(f"{index}.vectorize", options=[True, False], default=True)
        npar = self.decide(f"{index}.parallel", options=list(range(1, len(ext) + 1)),
                           default=len(ext))
        outer_stage = None
        inner_stage = stage
        carrier = _carrier_map(self.stages[fuse].op, stage.op) if fuse is not None else None
        if cache:
            cached = self.sch.cache_write(tensor, "local")
            inner_stage = self.sch[cached]
            outer_stage = stage
        if fuse is not None:
            if cache:
                stage.compute_inline()
            outer_stage = self.stages[fuse]
        if outer_stage is None:
            self._tile_single(inner_stage, tiles, rtiles, unroll, vec, npar)
            return
        attach = self.decide(f"{index}.attach", options=[0, 1, 2], default=1)
        # outer stage: four levels of every spatial axis, level-major
        levels = [[], [], [], []]
        for iv, t in zip(_carrier_axes(outer_stage, carrier), tiles):
            for lvl, ax in enumerate(_split_levels(outer_stage, iv, t)):
                levels[lvl].append(ax)
        outer_stage.reorder(*[ax for lvl in levels for ax in lvl])
        par = outer_stage.fuse(*levels[0][:npar])
        outer_stage.parallel(par)
        levels[0] = [par] + levels[0][npar:]
        if vec and tiles[-1][3] > 1:
            outer_stage.vectorize(levels[3][-1])
        inner_stage.compute_at(outer_stage, levels[attach][-1])
        if pack is not None and cache:
            # a contiguous copy of the input's panel, made once per outer tile and read by
            # every register tile below it
            packed = self.sch[self.sch.cache_read(self.stages[pack].op.output(0), "global",
                                                  [inner_stage.op.output(0)])]
            at = self.decide(f"{index}.pack_at", options=[0, 1], default=0)
            # never below the loop its reader is computed at
            packed.compute_at(outer_stage, levels[min(at, attach)][-1])
            _, lane = packed.split(packed.op.axis[-1], factor=self.lanes)
            packed.vectorize(lane)
        # inner stage: (reduce outer, spatial middle, reduce inner, spatial inner)
        mids, inners = [], []
        for iv, t in zip(list(inner_stage.op.axis), tiles):
            if attach < 2:
                mid, inner = inner_stage.split(iv, factor=t[3])
                mids.append((mid, _prod(t[attach + 1:3])))
            else:
                inner = iv
            inners.append((inner, t[3]))
        routers, rinners = [], []
        for iv, t in zip(red, rtiles):
            ro, ri = inner_stage.split(iv, factor=t[1])  # cache_write keeps the reduce axes
            routers.append((ro, t[0]))
            rinners.append((ri, t[1]))
        order = routers + mids + rinners + inners
        inner_stage.reorder(*[ax for ax, _ in order])
        self._annotate_inner(inner_stage, order, inners, vec, unroll)

    def _tile_single(self, stage, tiles, rtiles, unroll, vec, npar):
        levels = [[], [], [], []]
        for iv, t in zip(list(stage.op.axis), tiles):
            for lvl, ax in enumerate(_split_levels(stage, iv, t)):
                levels[lvl].append((ax, t[lvl]))
        routers, rinners = [], []
        for iv, t in zip(list(stage.op.reduce_axis), rtiles):
            ro, ri = stage.split(iv, factor=t[1])
            routers.append((ro, t[0]))
            rinners.append((ri, t[1]))
        order = levels[0] + levels[1] + routers + levels[2] + rinners + levels[3]
        stage.reorder(*[ax for ax, _ in order])
        par = stage.fuse(*[ax for ax, _ in levels[0][:npar]])
        stage.parallel(par)
        order = order[npar:]
        self._annotate_inner(stage, order, levels[3], vec, unroll)

    def _annotate_inner(self, stage, order, inners, vec, unroll):
        """Vectorize the innermost spatial loop; unroll (pragma) the innermost loops whose
        iterations multiply to at most ``unroll``."""
        vectorized = None
        if vec and inners and inners[-1][1] > 1:
            vectorized = inners[-1][0]
            stage.vectorize(vectorized)
        if not unroll:
            return
        steps = 1
        for ax, extent in reversed(order):
            if ax is vectorized:
                continue
            steps *= extent
            if steps > unroll:
                break
            if extent > 1:
                stage.pragma(ax, "unroll_explicit", unroll)


def _split_levels(stage, iv, tile):
    """Split ``iv`` into four loops of extents ``tile`` (outermost first)."""
    a0, rest = stage.split(iv, factor=tile[1] * tile[2] * tile[3])
    a1, rest = stage.split(rest, factor=tile[2] * tile[3])
    a2, a3 = stage.split(rest, factor=tile[3])
    return [a0, a1, a2, a3]


# -- rules --------------------------------------------------------------------------------------

def _carrier_axes(stage, carrier) -> list:
    """The loops of ``stage`` that carry a producer's tiles, in the producer's axis order:
    its own axes, or (a ``_carrier_map``) its blocked axes split into their two parts."""
    axes = list(stage.op.axis)
    if carrier is None:
        return axes
    halves = {}
    for pos, c, part in carrier:
        if part is not None and pos not in halves:
            halves[pos] = stage.split(axes[pos], factor=c)
    return [axes[pos] if part is None else halves[pos][part == "inner"]
            for pos, c, part in carrier]


def generate_sketches(outputs, vector_lanes: int) -> list[Sketch]:
    """The sketches of a computation (its output tensors, or all argument tensors), best first:
    the first one with its default decisions is :func:`default_schedule`.

    Example:
        >>> sketches = generate_sketches([C], vector_lanes=8)   # doctest: +SKIP
        >>> [sk.name for sk in sketches]                        # doctest: +SKIP
    """
    outputs = _normalize(outputs)
    if not outputs:
        raise UserError("generate_sketches needs at least one computed tensor")
    sch = tl.create_schedule(outputs)
    stages = sch.stages
    index = {st: i for i, st in enumerate(stages)}
    # an extern stage (a BLAS call) reads its inputs from memory: what it reads stays a stage
    inlined = {st for st in stages if _is_elementwise(st.op) and not st.is_output
               and sch.consumers_of(st)
               and not any(isinstance(c.op, ExternOp) for c in sch.consumers_of(st))}
    # a padding stage read by a reduction stays a stage of its own in the first sketches
    # (inlined, its guard sits in the innermost loop and blocks vectorization)
    # and so does a layout stage (a pack) read by a tiled reduction: inlined, the reduction
    # would read the original layout with strides and gather its vectors
    padded = {st for st in inlined
              if (_is_guarded(st.op) or _is_reindex(st.op))
              and any(c.op.reduce_axis and _has_reuse(c.op) for c in sch.consumers_of(st))}
    base: dict[int, tuple] = winograd_plans(sch, inlined, padded)
    tile_choices: dict[int, list] = {}
    rfactor_stages = []
    for i, st in enumerate(stages):
        op = st.op
        if i in base:  # a Winograd transform stage
            continue
        if not isinstance(op, ComputeOp):
            base[i] = ("skip", {})
        elif st in padded:
            base[i] = ("simple", {})
        elif st in inlined:
            base[i] = ("inline", {})
        elif op.reduce_axis:
            spatial, reduce = _points(op.axis), _points(op.reduce_axis)
            if op.num_outputs > 1:
                base[i] = ("skip", {})
                continue
            if op.axis and _has_reuse(op):
                consumer = _fusible_consumer(sch, st, inlined)
                fuse = index[consumer] if consumer is not None else None
                variants = [("tile", {"cache": True, "fuse": fuse}),
                            ("tile", {"cache": True, "fuse": None}),
                            ("tile", {"cache": False, "fuse": fuse}),
                            ("tile", {"cache": False, "fuse": None})]
                packable = _packable_input(op, _row_axis(op))
                if packable is not None:
                    pack = index[sch[packable]]
                    packed = [("tile", {"cache": True, "fuse": fuse, "pack": pack}),
                              ("tile", {"cache": True, "fuse": None, "pack": pack})]
                    # a panel already contiguous (a pre-blocked weight) gains little from a
                    # copy: those variants come last, not first (the default)
                    in_place = _panel_in_place(op, packable, 2 * vector_lanes)
                    variants = variants + packed if in_place else packed + variants
                seen, unique = set(), []
                for v in variants:
                    key = json.dumps(v[1], sort_keys=True)
                    if key not in seen:
                        seen.add(key)
                        unique.append(v)
                tile_choices[i] = unique
                base[i] = unique[0]
            else:
                base[i] = ("reduce", {})
            if reduce >= 64 and spatial <= reduce:
                rfactor_stages.append(i)
        else:
            base[i] = ("simple", {})
    variants = expand_variants(base, {i: c[1:] for i, c in tile_choices.items()})
    for i in rfactor_stages:
        w = dict(base)
        w[i] = ("rfactor", {})
        variants.append(w)
    if padded:  # the first sketch with padding inlined
        w = dict(variants[0])
        w.update({index[st]: ("inline", {}) for st in padded})
        variants.append(w)
    return [Sketch(outputs, variant_plans(v, len(stages)), vector_lanes) for v in variants[:16]]


def expand_variants(base: dict, alternatives: dict) -> list:
    """``base`` ({stage index: (plan kind, options)}) and, for every stage in
    ``alternatives``, a copy with each of its alternative plans, crossed with the others."""
    variants = [dict(base)]
    for i, choices in alternatives.items():
        variants += [{**v, i: choice} for v in variants for choice in choices]
    return variants


def variant_plans(variant: dict, count: int, simple: str = "simple", tile: str = "tile") -> list:
    """The plans of one variant in stage order; a ``simple`` stage that a ``tile`` plan fuses
    into its loops becomes ``fused``."""
    plans = []
    for i in range(count):
        kind, opts = variant[i]
        if kind == simple and any(variant[j][0] == tile and variant[j][1].get("fuse") == i
                                  for j in variant):
            kind = "fused"
        plans.append((i, kind, opts))
    return plans


def default_schedule(outputs, vector_lanes: int) -> tl.Schedule:
    """The first sketch with its default decisions: a register tile of about 6 x
    (2 * vector_lanes) accumulated locally, reduction inner 4, parallel over the outer tiles.

    Example:
        >>> s = default_schedule([C], vector_lanes=8); f = tl.build(s, [A, B, C])  # doctest: +SKIP
    """
    sketch = generate_sketches(outputs, vector_lanes)[0]
    return sketch.apply(outputs, sketch.default_decisions())


# -- records ------------------------------------------------------------------------------------

def to_record(sketch_index: int, decisions: dict) -> str:
    """A JSON record of a candidate: which sketch and its decisions."""
    return json.dumps({"version": RECORD_VERSION, "sketch": int(sketch_index),
                       "decisions": decisions}, sort_keys=True)


def from_record(text: str) -> tuple[int, dict]:
    """``(sketch_index, decisions)`` from :func:`to_record`'s text."""
    try:
        data = json.loads(text)
        if data.get("version") != RECORD_VERSION:
            raise UserError(f"sketch record version {data.get('version')!r} is not "
                            f"{RECORD_VERSION}")
        return int(data["sketch"]), dict(data["decisions"])
    except (ValueError, KeyError, TypeError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"malformed sketch record: {e}") from e


def apply_record(sketches: list[Sketch], tensors, text: str) -> tl.Schedule:
    """The schedule a record describes, on ``tensors`` (a fresh build of the workload)."""
    idx, decisions = from_record(text)
    if not 0 <= idx < len(sketches):
        raise UserError(f"sketch record names sketch {idx}; the computation has "
                        f"{len(sketches)}")
    return sketches[idx].apply(tensors, decisions)
