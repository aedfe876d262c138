"""GPU sketches: the search space of a computation for CUDA targets.

The rules walk the stage DAG like :mod:`autotune.sketch` (same :class:`~autotune.sketch.Sketch`
machinery: named knobs, JSON-able decisions, ``apply`` replays on a fresh build, records) and
give each stage a GPU plan:

- ``inline``: an elementwise stage that is not an output is inlined into its readers (one that
  feeds a tiled reduction -- a padding stage -- is inlined after the reduction's shared stages
  are made, so it lands in the cooperative loads).
- ``gpu_tile``: a reduction whose inputs are reused across its spatial axes (matmul, batch
  matmul, conv, dense): multi-level tiling. Each spatial axis is split in five levels
  ``[blockIdx, vthread, threadIdx, inner-outer, inner]`` and each reduction axis in three.
  The block loops are fused onto ``blockIdx.x``; the thread loops are bound to
  ``threadIdx.z/y/x`` (the last spatial axis on ``x``; leading axes fused onto ``z``). The
  result accumulates in a ``cache_write(out, "local")`` register tile computed at the
  innermost thread loop, with the loops ``r0, r1, inner-outer, r2, inner``. Every input is
  staged by ``cache_read(..., "shared")`` at the outermost reduction level and loaded
  cooperatively: its axes fused, split by the threads of the block and bound to them (an
  inner vectorize-by-4 knob where the innermost extent allows). A single elementwise consumer
  (bias, relu) carries the tiled loops (the tiled stage is inlined into it).
  The vthread level is kept in the decisions but fixed to 1: the core lowers ``vthread`` as a
  serial loop around the thread loops, so shared stages would be reloaded per virtual thread.
- ``gpu_rfactor``: a reduction without reuse and a long reduction (softmax / layer-norm rows):
  cross-thread reduction. The reduction is split by ``threads`` (a knob) and rfactored into a
  shared ``[rows, threads]`` partials buffer (consecutive threads on consecutive elements, so
  the reads coalesce), which every thread of the row combines from shared memory
  (``rows`` rows per block, a knob, on ``threadIdx.y``). Both levels accumulate in registers.
- ``gpu_reduce``: the plain variant: one thread per output point, the reduction serial in a
  register (pooling, short reductions).
- ``gpu_simple``: injective stages: all axes fused (the innermost split by 4 and vectorized
  when a knob says so and the extent allows), split into blocks x ``threads`` and bound.

Device limits (threads per block, static shared memory per block) come from ``limits``
(:func:`gpu_limits`: the current device's properties when a GPU is present, H100/H200 values
otherwise). Sampling and mutation only propose decisions that respect them (a rejection loop
over cheap arithmetic estimates); :meth:`GpuSketch.check_lowered` checks the lowered function
exactly and raises :class:`~tensorlang.errors.ScheduleError` (the search drops the candidate).

Example::

    sketches = generate_gpu_sketches([C], gpu_limits())
    s = sketches[0].apply([C], sketches[0].default_decisions())
    f = tl.build(s, [A, B, C], target="cuda")
"""
from __future__ import annotations

import dataclasses
import random

import tensorlang as tl
from tensorlang.errors import ScheduleError, UserError
from tensorlang.expr import Add, IntImm, Mul, ProducerLoad, Sub, Var
from tensorlang.tensor import ComputeOp, PlaceholderOp, visit_body

from .sketch import (Sketch, _divisors, _Knob, _largest_divisor, _normalize,
                     expand_variants, factorizations, variant_plans)
from .stage_analysis import _extent, _fusible_consumer, _has_reuse, _is_elementwise, _points

__all__ = ["GpuLimits", "GpuSketch", "gpu_limits", "generate_gpu_sketches",
           "default_gpu_schedule"]

MAX_LOCAL = 128            # register tile (accumulators per thread) bound
THREAD_OPTIONS = (32, 64, 128, 256, 512, 1024)
UNROLL_OPTIONS = (0, 16, 64, 512)
_SAMPLE_TRIES = 256


@dataclasses.dataclass(frozen=True)
class GpuLimits:
    """What GPU sketches must respect (defaults: an H100 / H200 without opt-in shared memory)."""

    max_threads_per_block: int = 1024
    max_shared_per_block: int = 48 * 1024
    warp_size: int = 32
    multiprocessors: int = 132

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def gpu_limits(probe: bool = True) -> GpuLimits:
    """The limits of the current GPU (``tensorlang.runtime.cuda.device_properties()``) when one
    is usable and ``probe`` is true, else H100 / H200 defaults."""
    if probe:
        try:
            from tensorlang.runtime import cuda
            if cuda.available():
                p = cuda.device_properties()
                return GpuLimits(p.max_threads_per_block, min(p.max_shared_per_block, 48 * 1024),
                                 p.warp_size, p.multiprocessors)
        except Exception:  # noqa: BLE001 -- no usable GPU: the defaults
            pass
    return GpuLimits()


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


# -- footprints of inputs in shared memory ------------------------------------------------------

def _affine_span(e, spans: dict):
    """Span (number of distinct values, as max - min + 1) of an index expression when each
    variable ``v`` ranges over ``spans[v]`` values; ``None`` when not affine."""
    def walk(x):
        # returns (coefficient map, constant) or None
        if isinstance(x, Var):
            return {x: 1}, 0
        if isinstance(x, IntImm):
            return {}, x.value
        if isinstance(x, (Add, Sub)):
            a, b = walk(x.a), walk(x.b)
            if a is None or b is None:
                return None
            sign = 1 if isinstance(x, Add) else -1
            coef = dict(a[0])
            for v, c in b[0].items():
                coef[v] = coef.get(v, 0) + sign * c
            return coef, a[1] + sign * b[1]
        if isinstance(x, Mul):
            a, b = walk(x.a), walk(x.b)
            if a is None or b is None:
                return None
            if not a[0]:
                a, b = b, a
            if b[0]:
                return None
            return {v: c * b[1] for v, c in a[0].items()}, a[1] * b[1]
        return None
    found = walk(e)
    if found is None:
        return None
    return 1 + sum(abs(c) * (spans.get(v, 1) - 1) for v, c in found[0].items())


def _input_loads(op):
    """``{input tensor: [index tuples]}`` of the loads in ``op``'s body."""
    loads: dict = {}

    def visit(n):
        if isinstance(n, ProducerLoad):
            loads.setdefault(n.producer, []).append(tuple(n.indices))
    visit_body(op.body, visit)
    return loads


def _shared_estimate(op, loads, tile_spans: dict) -> tuple[int, dict]:
    """Bytes of shared memory for the staged inputs and the innermost span of each."""
    total, inner = 0, {}
    for t, index_list in loads.items():
        shape = [_as_int(d) for d in t.shape]
        bytes_per = max(1, _dtype_bytes(t.dtype))
        best = None
        for idx in index_list:
            dims = []
            for d, e in enumerate(idx):
                span = _affine_span(e, tile_spans)
                full = shape[d] if shape[d] is not None else 1 << 20
                dims.append(full if span is None else min(span, full))
            size = _prod(dims)
            if best is None or size > best[0]:
                best = (size, dims)
        total += best[0] * bytes_per
        inner[t] = best[1][-1] if best[1] else 1
    return total, inner


def _as_int(e):
    return e.value if isinstance(e, IntImm) else None


def _dtype_bytes(dtype: str) -> int:
    from tensorlang import dtype as dt
    return max(1, dt.bits(dtype) // 8)


# -- the GPU sketch --------------------------------------------------------------------------

class GpuSketch(Sketch):
    """A :class:`~autotune.sketch.Sketch` with GPU plans; ``limits`` bound the decisions.

    ``sample`` and ``mutate`` retry until :meth:`fits` accepts the decisions (cheap estimates
    of threads per block, accumulators per thread and shared memory); ``check_lowered``
    verifies a lowered function exactly.
    """

    def __init__(self, outputs, plans, limits: GpuLimits):
        self.limits = limits
        self._constraints: list = []  # callables(decisions) -> str | None (why illegal)
        super().__init__(outputs, plans, vector_lanes=4)

    def _build(self, sch, decisions=None, knobs_only=False):
        ctx = _GpuContext(self, sch, decisions, knobs_only)
        if knobs_only:
            self._constraints = []
        first = [p for p in self.plans if p[1] == "inline"]
        late = [p for p in self.plans if p[1] == "inline_late"]
        rest = [p for p in self.plans if p[1] not in ("inline", "inline_late")]
        for index, kind, options in first + rest + late:
            getattr(ctx, "plan_" + kind)(index, ctx.stages[index], options)

    # -- legality ----------------------------------------------------------------------------
    def why_illegal(self, decisions: dict) -> str | None:
        for rule in self._constraints:
            why = rule(decisions)
            if why:
                return why
        return None

    def fits(self, decisions: dict) -> bool:
        return self.why_illegal(decisions) is None

    def sample(self, rng: random.Random) -> dict:
        decisions = None
        for _ in range(_SAMPLE_TRIES):
            decisions = super().sample(rng)
            if self.fits(decisions):
                return decisions
        # a tight space: start from the defaults and mutate within the limits
        decisions = self.default_decisions()
        for _ in range(8):
            decisions = self.mutate(decisions, rng)
        return decisions

    def mutate(self, decisions: dict, rng: random.Random) -> dict:
        for _ in range(_SAMPLE_TRIES):
            new = super().mutate(decisions, rng)
            if self.fits(new):
                return new
        return dict(decisions)

    def apply(self, tensors, decisions: dict) -> tl.Schedule:
        self.check(decisions)
        why = self.why_illegal(decisions)
        if why:
            raise ScheduleError(f"GPU sketch {self.name}: {why}")
        return super().apply(tensors, decisions)

    def check_lowered(self, func) -> None:
        """Raise ScheduleError when the lowered ``func`` breaks the device limits."""
        from tensorlang.ops.gpu_schedules import gpu_launch_stats
        stats = gpu_launch_stats(func)
        threads, shared = stats["threads"], stats["shared_bytes"]
        if threads is None or threads > self.limits.max_threads_per_block:
            raise ScheduleError(f"GPU sketch {self.name}: {threads} threads per block "
                                f"(limit {self.limits.max_threads_per_block})")
        if shared is None or shared > self.limits.max_shared_per_block:
            raise ScheduleError(f"GPU sketch {self.name}: {shared} bytes of shared memory "
                                f"per block (limit {self.limits.max_shared_per_block})")


class _GpuContext:
    """Applies the GPU plans of one sketch to one schedule (declares knobs when building the
    sketch, reads decisions when replaying)."""

    def __init__(self, sketch, sch, decisions, knobs_only):
        self.sketch, self.sch, self.decisions = sketch, sch, decisions
        self.knobs_only = knobs_only
        self.limits = sketch.limits
        self.stages = list(sch.stages)

    def decide(self, name, kind="choice", **kw):
        if self.knobs_only:
            self.sketch.knobs[name] = _Knob(name, kind, **kw)
            return self.sketch.knobs[name].default
        return self.decisions[name]

    def constraint(self, rule):
        if self.knobs_only:
            self.sketch._constraints.append(rule)

    # -- trivial plans -----------------------------------------------------------------------
    def plan_skip(self, index, stage, options):
        pass

    def plan_fused(self, index, stage, options):
        pass

    def plan_inline(self, index, stage, options):
        stage.compute_inline()

    plan_inline_late = plan_inline

    # -- injective ---------------------------------------------------------------------------
    def plan_gpu_simple(self, index, stage, options):
        axes = list(stage.op.axis)
        if not axes:
            raise UserError(f"GPU sketch: stage {stage.name} has no axes to bind to threads")
        total = _points(axes)
        threads_opts = [t for t in THREAD_OPTIONS if t <= self.limits.max_threads_per_block]
        default_threads = next((t for t in (256, 128, 64, 32) if t in threads_opts), 32)
        threads = self.decide(f"{index}.threads", options=threads_opts, default=default_threads)
        last = _extent(axes[-1])
        vec_ok = last % 4 == 0
        vec = self.decide(f"{index}.vector", options=[4, 1] if vec_ok else [1],
                          default=4 if vec_ok else 1)
        if vec > 1:
            lo, v = stage.split(axes[-1], factor=vec)
            axes[-1] = lo
            stage.vectorize(v)
        flat = stage.fuse(*axes) if len(axes) > 1 else axes[0]
        # never more threads than points: a block of guards does nothing useful
        threads = min(threads, max(1, total // max(vec, 1)))
        bx, tx = stage.split(flat, factor=threads)
        stage.bind(bx, tl.thread_axis("blockIdx.x"))
        stage.bind(tx, tl.thread_axis("threadIdx.x"))

    # -- plain reduction: a thread per output ------------------------------------------------
    def plan_gpu_reduce(self, index, stage, options):
        axes = list(stage.op.axis)
        if not axes:
            raise UserError(f"GPU sketch: reduction {stage.name} has no spatial axes")
        tensor = stage.op.output(0)
        threads_opts = [t for t in THREAD_OPTIONS if t <= min(self.limits.max_threads_per_block,
                                                              512)]
        threads = self.decide(f"{index}.threads", options=threads_opts,
                              default=128 if 128 in threads_opts else threads_opts[0])
        unroll = self.decide(f"{index}.unroll", options=list(UNROLL_OPTIONS), default=16)
        local = self.sch.cache_write(tensor, "local")
        lstage = self.sch[local]
        flat = stage.fuse(*axes) if len(axes) > 1 else axes[0]
        threads = min(threads, _points(axes))
        bx, tx = stage.split(flat, factor=threads)
        stage.bind(bx, tl.thread_axis("blockIdx.x"))
        stage.bind(tx, tl.thread_axis("threadIdx.x"))
        lstage.compute_at(stage, tx)
        red = list(lstage.op.reduce_axis)
        if unroll and red and _extent(red[-1]) <= unroll:
            lstage.unroll(red[-1])

    # -- cross-thread reduction through shared partials ----------------------------------------
    def plan_gpu_rfactor(self, index, stage, options):
        axes, red = list(stage.op.axis), list(stage.op.reduce_axis)
        if not axes:
            raise UserError(f"GPU sketch: reduction {stage.name} has no spatial axes")
        rows = _points(axes)
        total = _points(red)
        tx_opts = [t for t in (16, 32, 64, 128, 256, 512) if t <= total
                   and total % t == 0 and t <= self.limits.max_threads_per_block] or \
            [_largest_divisor(total, (16, 8, 4, 2))]
        tx_default = next((t for t in (64, 32, 128) if t in tx_opts), tx_opts[0])
        threads_x = self.decide(f"{index}.threads_x", options=tx_opts, default=tx_default)
        single = len(axes) == 1
        rpb_opts = [r for r in (1, 2, 4, 8) if rows % r == 0] if single else [1]
        rows_per_block = self.decide(f"{index}.rows_per_block", options=rpb_opts,
                                     default=1)
        lim = self.limits.max_threads_per_block
        self.constraint(lambda d, i=index: None if d[f"{i}.threads_x"] *
                        d[f"{i}.rows_per_block"] <= lim else
                        f"threads_x x rows_per_block exceed {lim} threads per block")
        tensor = stage.op.output(0)
        fused_red = stage.fuse(*red) if len(red) > 1 else red[0]
        _, ki = stage.split(fused_red, factor=threads_x)
        part = self.sch.rfactor(tensor, ki, factor_axis=len(axes))
        red_local = self.sch.cache_write(tensor, "local")
        part_local = self.sch.cache_write(part, "local")
        row = stage.fuse(*axes) if len(axes) > 1 else axes[0]
        bo, ry = stage.split(row, factor=rows_per_block)
        stage.bind(bo, tl.thread_axis("blockIdx.x"))
        if rows_per_block > 1:
            stage.bind(ry, tl.thread_axis("threadIdx.y"))
        self.sch[red_local].compute_at(stage, ry)
        ps = self.sch[part]
        ps.set_scope("shared")
        ps.compute_at(stage, bo)
        paxes = list(ps.op.axis)
        prow = ps.fuse(*paxes[:-1]) if len(paxes) > 2 else paxes[0]
        if rows_per_block > 1:
            ps.bind(prow, tl.thread_axis("threadIdx.y"))
        ps.bind(paxes[-1], tl.thread_axis("threadIdx.x"))
        self.sch[part_local].compute_at(ps, paxes[-1])

    # -- multi-level tiling ------------------------------------------------------------------
    def plan_gpu_tile(self, index, stage, options):
        fuse = options.get("fuse")
        tensor = stage.op.output(0)
        op = stage.op
        spatial, red = list(op.axis), list(op.reduce_axis)
        ext = [_extent(iv) for iv in spatial]
        rext = [_extent(iv) for iv in red]
        lim = self.limits
        loads = _input_loads(op)
        inputs = list(loads)
        defaults_s, defaults_r = _tile_defaults(op, ext, rext, loads, lim)
        tiles = []
        for d, e in enumerate(ext):
            opts = [list(f) for f in factorizations(e, 5) if f[1] == 1
                    and f[3] * f[4] <= MAX_LOCAL and f[2] <= lim.max_threads_per_block]
            tiles.append(self.decide(f"{index}.tile.{d}", options=opts,
                                     default=defaults_s[d]))
        rtiles = []
        for d, e in enumerate(rext):
            opts = [list(f) for f in factorizations(e, 3) if f[1] * f[2] <= 64]
            rtiles.append(self.decide(f"{index}.rtile.{d}", options=opts,
                                      default=defaults_r[d]))
        vec_knobs = {}
        for n, t in enumerate(inputs):
            vec_knobs[t] = self.decide(f"{index}.vector.{n}", options=[4, 1], default=4)
        unroll = self.decide(f"{index}.unroll", options=list(UNROLL_OPTIONS), default=512)
        out_vec = self.decide(f"{index}.out_vector", options=[True, False], default=True)
        names = [f"{index}.tile.{d}" for d in range(len(ext))]
        rnames = [f"{index}.rtile.{d}" for d in range(len(rext))]
        svars = [iv.var for iv in spatial]
        rvars = [iv.var for iv in red]

        points = _prod(ext)
        floor = {"on": False}  # lower bounds for large outputs (set below when the defaults pass)

        def why(d):
            ts = [d[n] for n in names]
            rs = [d[n] for n in rnames]
            threads = _prod(t[2] for t in ts)
            if threads > lim.max_threads_per_block:
                return f"{threads} threads per block exceed {lim.max_threads_per_block}"
            if floor["on"]:
                # a large output: at least two warps per block and a block per multiprocessor
                # (smaller launches waste most of the GPU and slow the tuning down)
                if threads < 2 * lim.warp_size:
                    return f"{threads} threads per block (fewer than {2 * lim.warp_size})"
                blocks = _prod(t[0] for t in ts)
                if blocks < lim.multiprocessors:
                    return f"{blocks} blocks (fewer than {lim.multiprocessors} multiprocessors)"
            if _prod(t[3] * t[4] for t in ts) > MAX_LOCAL:
                return f"more than {MAX_LOCAL} accumulators per thread"
            spans = {v: t[1] * t[2] * t[3] * t[4] for v, t in zip(svars, ts)}
            spans.update({v: r[1] * r[2] for v, r in zip(rvars, rs)})
            shared, _ = _shared_estimate(op, loads, spans)
            if shared > lim.max_shared_per_block:
                return f"about {shared} bytes of shared memory exceed " \
                       f"{lim.max_shared_per_block}"
            return None
        self.constraint(why)
        if self.knobs_only:
            # the defaults must be legal: shrink the reduction tile until they are
            d = self.sketch.default_decisions()
            if points >= 1 << 16:
                floor["on"] = True
                if why(d) is not None:
                    floor["on"] = False
            if why(d) is not None:
                raise UserError(f"GPU sketch for {stage.name}: no legal default tiling "
                                f"({why(d)})")
            return
        # -- the schedule ---------------------------------------------------------------
        cached = self.sch.cache_write(tensor, "local")
        cstage = self.sch[cached]
        outer = stage
        if fuse is not None:
            stage.compute_inline()
            outer = self.stages[fuse]
        levels = [[], [], [], [], []]
        for iv, t in zip(list(outer.op.axis), tiles):
            a0, rest = outer.split(iv, factor=t[1] * t[2] * t[3] * t[4])
            a1, rest = outer.split(rest, factor=t[2] * t[3] * t[4])
            a2, rest = outer.split(rest, factor=t[3] * t[4])
            a3, a4 = outer.split(rest, factor=t[4])
            for lvl, ax in enumerate((a0, a1, a2, a3, a4)):
                levels[lvl].append(ax)
        outer.reorder(*[ax for lvl in levels for ax in lvl])
        block = outer.fuse(*levels[0]) if len(levels[0]) > 1 else levels[0][0]
        outer.bind(block, tl.thread_axis("blockIdx.x"))
        # vthread level: extent 1 (see the module docstring); left as plain loops
        thread_axes = levels[2]
        tags = ["threadIdx.x", "threadIdx.y", "threadIdx.z"]
        bound = []  # (extent, tag), outermost first
        n_thr = len(thread_axes)
        if n_thr > 3:
            z = outer.fuse(*thread_axes[:n_thr - 2])
            thread_axes = [z] + thread_axes[n_thr - 2:]
            textents = [_prod(t[2] for t in tiles[:n_thr - 2])] + [t[2] for t in tiles[n_thr - 2:]]
        else:
            textents = [t[2] for t in tiles]
        for ax, e, tag in zip(thread_axes, textents, reversed(tags[:len(thread_axes)])):
            outer.bind(ax, tl.thread_axis(tag))
            bound.append((e, tag))
        inner_last = levels[4][-1]
        if out_vec and tiles[-1][4] % 4 == 0 and ext[-1] % 4 == 0:  # aligned 128-bit stores
            _, v = outer.split(inner_last, factor=4)
            outer.vectorize(v)
            inner_rest = [ax for ax in levels[3] + levels[4] if ax is not inner_last]
        else:
            inner_rest = levels[3] + levels[4]
        steps = _prod(t[3] * t[4] for t in tiles)
        if unroll and steps <= max(unroll, 64):
            for ax, e in zip(levels[3] + levels[4], [t[3] for t in tiles] + [t[4] for t in tiles]):
                if ax in inner_rest and e > 1:
                    outer.unroll(ax)
        cstage.compute_at(outer, thread_axes[-1])
        # local stage: r0, r1, inner-outer, r2, inner
        mids, inners = [], []
        for iv, t in zip(list(cstage.op.axis), tiles):
            mid, inner = cstage.split(iv, factor=t[4])
            mids.append((mid, t[3]))
            inners.append((inner, t[4]))
        r0s, r1s, r2s = [], [], []
        for iv, t in zip(list(cstage.op.reduce_axis), rtiles):
            r0, rest = cstage.split(iv, factor=t[1] * t[2])
            r1, r2 = cstage.split(rest, factor=t[2])
            r0s.append((r0, t[0]))
            r1s.append((r1, t[1]))
            r2s.append((r2, t[2]))
        order = r0s + r1s + mids + r2s + inners
        cstage.reorder(*[ax for ax, _ in order])
        for ax, _ in r0s:
            # the shared stages' guards (uneven cooperative loads) must not peel the steps:
            # a peeled copy would declare the shared buffers twice in one kernel
            cstage.pragma(ax, "keep_guard", True)
        if unroll:
            steps = 1
            for ax, e in reversed(r1s + mids + r2s + inners):
                steps *= e
                if steps > unroll:
                    break
                if e > 1:
                    cstage.unroll(ax)
        attach = r0s[-1][0] if r0s else None
        # shared stages of the inputs, loaded cooperatively by the whole block
        spans = {v: t[1] * t[2] * t[3] * t[4] for v, t in zip(svars, tiles)}
        spans.update({v: r[1] * r[2] for v, r in zip(rvars, rtiles)})
        _, inner_spans = _shared_estimate(op, loads, spans)
        for t in inputs:
            readers = [cached]
            sh = self.sch.cache_read(t, "shared", readers)
            sst = self.sch[sh]
            if attach is not None:
                sst.compute_at(cstage, attach)
            else:
                sst.compute_at(outer, thread_axes[-1])
            vec = 4 if (vec_knobs[t] == 4 and _vector_ok(t, loads[t], inner_spans[t])) else 1
            _cooperative_load(sst, bound, vec)


def _vector_ok(t, index_list, inner_span) -> bool:
    """A 4-lane cooperative load is safe: the innermost index of every read of ``t`` is a plain
    variable, the input's last extent and the tile's innermost span are multiples of 4."""
    last = _as_int(t.shape[-1]) if t.shape else None
    if last is None or last % 4 or inner_span % 4:
        return False
    return all(idx and isinstance(idx[-1], Var) for idx in index_list)


def _cooperative_load(st, threads, vector: int):
    """All threads of the block copy the (bound-inferred) tile of the shared stage ``st``."""
    axes = list(st.op.axis)
    fused = st.fuse(*axes) if len(axes) > 1 else axes[0]
    if vector > 1:
        fused, vec = st.split(fused, factor=vector)
        st.vectorize(vec)
    total = _prod(e for e, _ in threads)
    outer, inner = st.split(fused, factor=total)
    st.unroll(outer)
    for extent, tag in threads[:-1]:
        total //= extent
        o, inner = st.split(inner, factor=total)
        st.bind(o, tl.thread_axis(tag))
    st.bind(inner, tl.thread_axis(threads[-1][1]))


def _tile_defaults(op, ext, rext, loads, lim: GpuLimits):
    """Default tiles after ``matmul_cuda``: from the last spatial axis backwards, an inner
    (register) factor of up to 8 and up to 16 threads per axis within 256 threads and 64
    accumulators; the last reduction axis stepped by 16 (then 8, 4, ...), the others whole
    inside a step when small; shrunk until the shared-memory estimate fits; then thread
    and register factors are moved to the block level while there are fewer blocks than
    two per multiprocessor."""
    svars = [iv.var for iv in op.axis]
    rvars = [iv.var for iv in op.reduce_axis]
    for r_pref in ((16, 8, 4, 2), (8, 4, 2), (4, 2), (2,), ()):
        for budget in ((256, 64), (128, 32), (64, 16), (32, 8)):
            tiles = _spatial_defaults(ext, *budget)
            rtiles = []
            main = max(range(len(rext)), key=lambda d: (rext[d], d)) if rext else -1
            for d, e in enumerate(rext):
                if d == main:
                    r1 = _largest_divisor(e, r_pref) if r_pref else 1
                    rtiles.append([e // r1, r1, 1])
                elif e <= 7 and r_pref:
                    rtiles.append([1, e, 1])
                else:
                    rtiles.append([e, 1, 1])
            _more_blocks(tiles, lim.multiprocessors * 2)
            spans = {v: t[1] * t[2] * t[3] * t[4] for v, t in zip(svars, tiles)}
            spans.update({v: r[1] * r[2] for v, r in zip(rvars, rtiles)})
            shared, _ = _shared_estimate(op, loads, spans)
            if shared <= lim.max_shared_per_block:
                return tiles, rtiles
    return [[e, 1, 1, 1, 1] for e in ext], [[e, 1, 1] for e in rext]


def _spatial_defaults(ext, max_threads, max_local):
    tiles = [None] * len(ext)
    threads, local = 1, 1
    for d in range(len(ext) - 1, -1, -1):
        e = ext[d]
        inner = 1
        for p in (8, 4, 2):
            if p * local <= max_local and e % p == 0:
                inner = p
                break
        rest = e // inner
        cap = min(16, max_threads // threads)
        t = max([x for x in _divisors(rest) if x <= cap] or [1])
        tiles[d] = [rest // t, 1, t, 1, inner]
        threads *= t
        local *= inner
    return tiles


def _more_blocks(tiles, want: int) -> None:
    """Move factors of 2 from the inner, then the thread levels to the block level (outermost
    axes first) while the grid has fewer than ``want`` blocks and threads stay >= 64."""
    def blocks():
        return _prod(t[0] for t in tiles)
    for _ in range(16):
        if blocks() >= want:
            return
        moved = False
        for t in tiles:  # registers first: keep the threads
            if t[4] % 2 == 0 and t[4] > 2:
                t[4] //= 2
                t[0] *= 2
                moved = True
                break
        if not moved:
            for t in tiles:
                if t[2] % 2 == 0 and _prod(x[2] for x in tiles) > 64:
                    t[2] //= 2
                    t[0] *= 2
                    moved = True
                    break
        if not moved:
            return


# -- rules --------------------------------------------------------------------------------------

def generate_gpu_sketches(outputs, limits: GpuLimits | None = None) -> list[GpuSketch]:
    """The GPU sketches of a computation, best first (the first with its default decisions is
    :func:`default_gpu_schedule`).

    Example:
        >>> sketches = generate_gpu_sketches([C], GpuLimits())   # doctest: +SKIP
        >>> [sk.name for sk in sketches]                          # doctest: +SKIP
    """
    limits = limits or GpuLimits()
    outputs = _normalize(outputs)
    if not outputs:
        raise UserError("generate_gpu_sketches needs at least one computed tensor")
    sch = tl.create_schedule(outputs)
    stages = sch.stages
    index = {st: i for i, st in enumerate(stages)}
    inlined = {st for st in stages if _is_elementwise(st.op) and not st.is_output
               and sch.consumers_of(st)}
    base: dict[int, tuple] = {}
    alternatives: dict[int, list] = {}
    for i, st in enumerate(stages):
        op = st.op
        if not isinstance(op, ComputeOp):
            if not isinstance(op, PlaceholderOp):
                raise UserError(f"GPU sketches cannot schedule stage {st.name} "
                                f"({type(op).__name__}); only compute stages run on the GPU")
            base[i] = ("skip", {})
        elif st in inlined:
            late = any(c.op.reduce_axis and _has_reuse(c.op) for c in sch.consumers_of(st))
            base[i] = ("inline_late" if late else "inline", {})
        elif op.reduce_axis:
            if op.num_outputs > 1 or not op.axis:
                raise UserError(f"GPU sketches cannot schedule reduction {st.name} "
                                "(several outputs or no spatial axis)")
            if _has_reuse(op):
                consumer = _fusible_consumer(sch, st, inlined)
                fuse = index[consumer] if consumer is not None else None
                choices = [("gpu_tile", {"fuse": fuse})]
                if fuse is not None:
                    choices.append(("gpu_tile", {"fuse": None}))
                base[i] = choices[0]
                alternatives[i] = choices[1:]
            else:
                long = _points(op.reduce_axis) >= 64
                choices = [("gpu_rfactor", {}), ("gpu_reduce", {})]
                if not long:
                    choices.reverse()
                base[i] = choices[0]
                alternatives[i] = choices[1:]
        else:
            base[i] = ("gpu_simple", {})
    variants = expand_variants(base, alternatives)
    return [GpuSketch(outputs, variant_plans(v, len(stages), "gpu_simple", "gpu_tile"), limits)
            for v in variants[:16]]


def default_gpu_schedule(outputs, limits: GpuLimits | None = None) -> tl.Schedule:
    """The first GPU sketch with its default decisions."""
    sketch = generate_gpu_sketches(outputs, limits)[0]
    return sketch.apply(outputs, sketch.default_decisions())
