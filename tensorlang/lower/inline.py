"""Inline stages marked ``compute_inline`` into the bodies of the stages that read them."""
from __future__ import annotations

from ..expr import ProducerLoad, Reduce
from ..ir.functor import Mutator, substitute
from ..tensor import ComputeOp


def effective_bodies(sch) -> dict:
    """For each stored ComputeOp stage, its body with every inlined producer substituted."""
    memo: dict = {}

    class _Inline(Mutator):
        def visit_ProducerLoad(self, e):
            e = self.generic_visit(e)
            stage = sch.stage_map.get(e.producer.op)
            if stage is None or stage.attach_type != "inline":
                return e
            body = bodies_of(stage)[e.producer.value_index]
            mapping = {iv.var: idx for iv, idx in zip(stage.op.axis, e.indices)}
            return substitute(body, mapping)

    def bodies_of(stage):
        if stage not in memo:
            op = stage.op
            if isinstance(op, ComputeOp):
                memo[stage] = tuple(_Inline().visit(b) for b in op.body)
            else:
                memo[stage] = ()
        return memo[stage]

    for stage in sch.stages:
        bodies_of(stage)
    return memo


def reads_of(bodies, producer_stage, sch) -> list[tuple]:
    """The index tuples with which ``bodies`` read any output of ``producer_stage``."""
    from ..ir.functor import post_order_visit
    found = []

    def visit(node):
        if isinstance(node, ProducerLoad) and sch.stage_map.get(node.producer.op) is producer_stage:
            found.append(node.indices)

    for b in bodies:
        if isinstance(b, Reduce):
            for s in b.source:
                post_order_visit(s, visit)
            post_order_visit(b.condition, visit)
        else:
            post_order_visit(b, visit)
    return found
