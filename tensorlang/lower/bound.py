"""Bound inference: the range of each stage's root axes that its consumers need.

A stage at the root computes its whole domain. A stage attached with ``compute_at(T, ax)``
computes only the region that the code inside loop ``ax`` of ``T`` reads, for one iteration of
the loops at and outside ``ax``: those loop variables stay symbolic, the loops inside are
relaxed over their ranges.

On a GPU a stage's storage scope decides which thread-bound loops around it are relaxed as well
(its buffer is shared by those threads, so it must hold what all of them read): a ``"shared"``
stage covers every ``threadIdx`` / ``vthread`` of its block, a ``"global"`` stage attached inside
a kernel covers every block too, and a ``"local"`` stage belongs to one thread.
"""
from __future__ import annotations

from ..errors import ScheduleError
from ..expr import IntImm, Range, Max, Min, binary, Add, Sub
from ..ir.functor import substitute
from ..ir.structural import structural_equal, structural_hash
from ..tensor import ComputeOp, ExternOp, PlaceholderOp
from .inline import reads_of
from .relations import pass_down_domain, pass_up_value


def full_ranges(stage) -> dict:
    return {iv: iv.dom for iv in stage.root_iter_vars}


def infer_bounds(sch, bodies) -> dict:
    """Map each stored stage to ``{root IterVar: Range}``."""
    ranges: dict = {}
    stored = [s for s in sch.stages
              if s.attach_type != "inline" and not isinstance(s.op, PlaceholderOp)]
    for stage in reversed(stored):
        if stage.attach_type == "scope":
            ranges[stage] = _attached_ranges(sch, stage, bodies, ranges, stored)
        else:
            ranges[stage] = full_ranges(stage)
    return ranges


def _attached_ranges(sch, stage, bodies, ranges, stored) -> dict:
    from ..arith import const_int_bound, simplify
    if isinstance(stage.op, ExternOp):
        return full_ranges(stage)
    target, ax = stage.attach_stage, stage.attach_ivar
    ndim = len(stage.op.axis)
    lows: list = [[] for _ in range(ndim)]
    highs: list = [[] for _ in range(ndim)]
    unknown = [False] * ndim
    consumers = [c for c in stored if c is not stage and c in ranges
                 and _reads(c, stage, bodies, sch)]
    shared_relax = _thread_relaxed(stage, target, ranges)
    for consumer in consumers:
        chain = _chain_to(consumer, target, ax)
        if chain is None:
            raise ScheduleError(
                f"stage {stage.name} is computed at {target.name}.{ax.var.name}, but its "
                f"consumer {consumer.name} runs outside that loop; compute {stage.name} at a "
                f"loop that encloses all of its consumers")
        if isinstance(consumer.op, ExternOp):
            return full_ranges(stage)
        dom = pass_down_domain(consumer, ranges[consumer])
        value = pass_up_value(consumer, dom)
        subst = {iv.var: value[iv] for iv in consumer.root_iter_vars if iv in value}
        relaxed = _relaxed_leaves(consumer, dom, target, ax)
        for idx in _distinct(reads_of(bodies[consumer], stage, sch)):
            for d, e in enumerate(idx):
                e = substitute(e, subst)
                lo, hi = _bound(e, e, relaxed)
                for link in chain[1:]:
                    if lo is None:
                        break
                    # the region of `consumer` is already written in the leaf loop variables of
                    # the stage it is attached to (values, not root axes): relax them directly
                    link_dom = pass_down_domain(link, ranges[link])
                    lo, hi = _bound(lo, hi, _relaxed_leaves(link, link_dom, target, ax))
                if lo is not None and shared_relax:
                    lo, hi = _bound(lo, hi, shared_relax)
                if lo is None:
                    unknown[d] = True
                else:
                    lows[d].append(lo)
                    highs[d].append(hi)
    result = {}
    for d, iv in enumerate(stage.op.axis):
        if unknown[d] or not lows[d]:
            result[iv] = iv.dom
            continue
        lo = simplify(_tree(Min, _distinct(lows[d])))
        hi = _tree(Max, _distinct(highs[d]))
        extent = simplify(binary(Add, binary(Sub, hi, lo), 1))
        if not isinstance(extent, IntImm):
            # a region that shrinks near a tail: cover its largest size instead, so the
            # loops keep a constant extent (vectorizable); points past the tensor's end are
            # skipped by the stage's domain guard
            _, most = const_int_bound(extent, {})
            if most is not None:
                extent = IntImm(max(int(most), 1), extent.dtype)
        result[iv] = Range(lo, extent)
    for iv in stage.op.reduce_axis:
        result[iv] = iv.dom
    return result


def _distinct(items) -> list:
    """``items`` (expressions or tuples of them) without structural repeats, in order: a body
    that reads one element many times (a select tree) adds one bound, not thousands."""
    buckets: dict = {}
    out = []
    for item in items:
        key = tuple(item) if isinstance(item, (tuple, list)) else (item,)
        h = hash(tuple(structural_hash(e) for e in key))
        same = buckets.setdefault(h, [])
        if any(len(o) == len(key) and all(structural_equal(a, b) for a, b in zip(o, key))
               for o in same):
            continue
        same.append(key)
        out.append(item)
    return out


def _tree(op, items):
    """``op`` over ``items`` as a balanced tree (depth log n, not n)."""
    while len(items) > 1:
        items = [binary(op, a, b) for a, b in zip(items[0::2], items[1::2])] \
            + items[len(items) // 2 * 2:]
    return items[0]


def _reads(consumer, producer, bodies, sch) -> bool:
    if isinstance(consumer.op, ExternOp):
        return any(sch.stage_map.get(t.op) is producer for t in consumer.op.inputs)
    return bool(reads_of(bodies[consumer], producer, sch))


def _chain_to(consumer, target, ax):
    """Stages from ``consumer`` up its attachments to ``target``, or None if ``consumer`` does
    not run inside loop ``ax`` of ``target`` (attached to ``target`` at a loop outside it)."""
    chain = [consumer]
    walker = consumer
    while walker is not target:
        if walker.attach_type != "scope":
            return None
        if walker.attach_stage is target:
            leaves = list(target.leaf_iter_vars)
            if walker.attach_ivar in leaves and ax in leaves and \
                    leaves.index(walker.attach_ivar) < leaves.index(ax):
                return None
        walker = walker.attach_stage
        chain.append(walker)
    return chain


def _relaxed_leaves(stage, dom, target, ax) -> dict:
    """Leaf variables of ``stage`` that vary inside loop ``ax`` of ``target``."""
    leaves = stage.leaf_iter_vars
    if stage is target:
        leaves = leaves[leaves.index(ax) + 1:]
    # leaf loops run from 0: a root axis's minimum is already part of its value
    return {iv.var: Range(IntImm(0, iv.var.dtype), dom[iv].extent) for iv in leaves}


# the thread tags whose loops a buffer of each scope spans
_SCOPE_SPANS = {"shared": ("threadIdx.", "vthread"),
                "global": ("threadIdx.", "vthread", "blockIdx.")}


def _thread_relaxed(stage, target, ranges) -> dict:
    """Thread-bound loop variables of ``target`` and the stages it is attached in that a
    buffer in ``stage``'s scope spans: ``{var: Range(0, extent)}``."""
    spans = _SCOPE_SPANS.get(stage.scope, ())
    relaxed: dict = {}
    walker = target
    while spans and walker is not None:
        if walker in ranges:
            dom = None
            for iv in walker.leaf_iter_vars:
                attr = walker.iter_attrs.get(iv)
                tag = attr.thread.thread_tag if attr is not None and attr.thread is not None \
                    else ""
                if tag and tag.startswith(spans):
                    dom = dom or pass_down_domain(walker, ranges[walker])
                    relaxed[iv.var] = Range(IntImm(0, iv.var.dtype), dom[iv].extent)
        walker = walker.attach_stage if walker.attach_type == "scope" else None
    return relaxed


def _bound(lo_expr, hi_expr, relaxed):
    from ..arith import bound_of
    if not relaxed:
        return lo_expr, hi_expr
    lo_r = bound_of(lo_expr, relaxed)
    hi_r = bound_of(hi_expr, relaxed)
    if lo_r is None or hi_r is None:
        return None, None
    lo = lo_r.min
    hi = binary(Sub, binary(Add, hi_r.min, hi_r.extent), 1)
    return lo, hi
