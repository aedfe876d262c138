"""Loop relations of a stage: from root ranges down to leaf loops, and leaf values back up.

Leaf loops always start at 0. Every axis made by split or fuse is 0-based; only root axes carry
a (possibly symbolic) minimum, added back when root values are computed from the leaves.
"""
from __future__ import annotations

from ..expr import IntImm, IterVar, PrimExpr, Range, binary, Add, Mul, FloorDiv, FloorMod, convert
from ..schedule import Fuse, Split


def _ceildiv(a: PrimExpr, b: PrimExpr) -> PrimExpr:
    from ..arith import simplify
    return simplify(binary(FloorDiv, binary(Add, a, binary(Add, b, -1)), b))


def _zero(dtype="int32"):
    return IntImm(0, dtype)


def pass_down_domain(stage, root_ranges: dict) -> dict:
    """Ranges of every axis of ``stage`` given the ranges of its root axes."""
    from ..arith import simplify
    dom = dict(root_ranges)
    for rel in stage.relations:
        if isinstance(rel, Split):
            parent = dom[rel.parent]
            dtype = rel.parent.var.dtype
            if rel.factor is not None:
                factor = rel.factor
                dom[rel.inner] = Range(_zero(dtype), factor)
                dom[rel.outer] = Range(_zero(dtype), _ceildiv(parent.extent, factor))
            else:
                dom[rel.outer] = Range(_zero(dtype), rel.nparts)
                dom[rel.inner] = Range(_zero(dtype), _ceildiv(parent.extent, rel.nparts))
        elif isinstance(rel, Fuse):
            extent = simplify(binary(Mul, dom[rel.outer].extent, dom[rel.inner].extent))
            dom[rel.fused] = Range(_zero(rel.fused.var.dtype), extent)
    return dom


def _relative_values(stage, dom: dict, leaf_values: dict | None = None) -> dict:
    """Value of every axis relative to its own start, in terms of the leaf loop variables."""
    value = {iv: iv.var for iv in stage.leaf_iter_vars}
    if leaf_values:
        value.update(leaf_values)
    for rel in reversed(stage.relations):
        if isinstance(rel, Split):
            factor = rel.factor if rel.factor is not None else dom[rel.inner].extent
            value[rel.parent] = binary(Add, binary(Mul, value[rel.outer], factor),
                                       value[rel.inner])
        elif isinstance(rel, Fuse):
            inner_extent = dom[rel.inner].extent
            value[rel.outer] = binary(FloorDiv, value[rel.fused], inner_extent)
            value[rel.inner] = binary(FloorMod, value[rel.fused], inner_extent)
    return value


def pass_up_value(stage, dom: dict, leaf_values: dict | None = None) -> dict:
    """Value of every axis in terms of the leaf loop variables (root axes include their min).

    ``leaf_values`` may override the value of some leaves (used to rename loops).
    """
    value = _relative_values(stage, dom, leaf_values)
    for root in stage.root_iter_vars:
        rng = dom[root]
        rel_value = value.get(root, root.var)
        if not (isinstance(rng.min, IntImm) and rng.min.value == 0):
            value[root] = binary(Add, rng.min, rel_value)
    return value


def split_conditions(stage, dom: dict, value: dict) -> list:
    """Conditions ``relative parent < parent extent`` for splits that may have a tail.

    Returns (condition, involves_reduce_axis) pairs; the caller drops the provable ones.
    """
    from ..expr import LT, REDUCE
    rel_value = _relative_values(stage, dom)
    conds = []
    for rel in stage.relations:
        if isinstance(rel, Split):
            cond = binary(LT, rel_value[rel.parent], dom[rel.parent].extent)
            conds.append((cond, rel.parent.kind == REDUCE))
    return conds


def static_extent(stage, ax: IterVar):
    """The extent of ``ax`` when the stage covers its whole domain, or None if unknown."""
    from ..arith import simplify
    roots = {}
    for iv in stage.root_iter_vars:
        if iv.dom is None:
            return None
        roots[iv] = iv.dom
    dom = pass_down_domain(stage, roots)
    rng = dom.get(ax)
    return simplify(rng.extent) if rng is not None else None
