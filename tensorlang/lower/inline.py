"""Inline stages marked ``compute_inline`` into the bodies of the stages that read them."""
from __future__ import annotations

from ..expr import ProducerLoad
from ..ir.functor import Mutator, substitute
from ..tensor import ComputeOp, visit_body


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
    found = []

    def visit(node):
        if isinstance(node, ProducerLoad) and sch.stage_map.get(node.producer.op) is producer_stage:
            found.append(node.indices)

    visit_body(bodies, visit)
    return found
