"""Graph passes: functions from a Module to a new Module (nodes are immutable).

- :func:`eliminate_common_subexpressions`: structurally equal calls become one node (and so one
  kernel call).
- :func:`fold_batch_norm`: an inference batch norm with constant statistics after a convolution
  (with or without a bias add) is folded into the convolution's weights and bias; any other
  such batch norm becomes a multiply-add with constant scale and shift.
- :func:`optimize`: the passes ``graph.build`` runs, in order.

Dead code needs no pass: a Module is defined by its outputs, and every walk starts from them.

Example::

    mod = graph.passes.optimize(graph.from_onnx("model.onnx"))
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..ir import Call, Constant, Expr, Function, Module, TupleGetItem, post_order

__all__ = ["rewrite", "eliminate_common_subexpressions", "fold_batch_norm", "optimize",
           "count_users"]


def rewrite(mod: Module, visit: Callable[[Expr, Expr], Expr]) -> Module:
    """Rebuild ``mod`` inputs first. ``visit(old, rebuilt)`` gets each node and its copy with
    rewritten arguments and returns the node to use in its place."""
    new: dict[int, Expr] = {}
    for node in post_order(mod.function.outputs):
        if isinstance(node, Call):
            args = tuple(new[id(a)] for a in node.args)
            rebuilt = node if all(a is b for a, b in zip(args, node.args)) else \
                Call(node.op, args, node.attrs, name=node.name)
        elif isinstance(node, TupleGetItem):
            value = new[id(node.tuple_value)]
            rebuilt = node if value is node.tuple_value else TupleGetItem(value, node.index)
        else:
            rebuilt = node
        new[id(node)] = visit(node, rebuilt)
    outputs = tuple(new[id(o)] for o in mod.function.outputs)
    return Module(Function(mod.function.params, outputs), mod.input_names, mod.output_names)


def count_users(mod: Module) -> dict[int, int]:
    """``id(node) -> number of calls (and outputs) that read it``."""
    users: dict[int, int] = {}
    for node in post_order(mod.function.outputs):
        children = node.args if isinstance(node, Call) else \
            (node.tuple_value,) if isinstance(node, TupleGetItem) else ()
        for child in children:
            users[id(child)] = users.get(id(child), 0) + 1
    for out in mod.function.outputs:
        users[id(out)] = users.get(id(out), 0) + 1
    return users


def eliminate_common_subexpressions(mod: Module) -> Module:
    """One node per structurally equal expression (nodes compare by structure)."""
    canonical: dict[Expr, Expr] = {}
    return rewrite(mod, lambda old, node: canonical.setdefault(node, node))


def _bn_params(bn: Call):
    """``(scale, shift)`` of a batch norm whose statistics are constants, else None."""
    if bn.op != "batch_norm" or len(bn.args) != 5:
        return None
    if not all(isinstance(a, Constant) for a in bn.args[1:]):
        return None
    gamma, beta, mean, var = (a.value.astype(np.float64) for a in bn.args[1:])
    scale = gamma / np.sqrt(var + float(bn.attr("epsilon", 1e-5)))
    return scale, beta - mean * scale


def fold_batch_norm(mod: Module) -> Module:
    """Fold constant-statistics batch norms into the convolution before them (when nothing
    else reads the convolution), else rewrite them as ``x * scale + shift``."""
    users = count_users(mod)

    def visit(old, node):
        params = _bn_params(node) if isinstance(node, Call) else None
        if params is None:
            return node
        scale, shift = params
        x = node.args[0]
        dtype = node.type.dtype
        channels = x.type.shape[1]
        bias = None
        conv = x
        if isinstance(x, Call) and x.op == "add" and isinstance(x.args[1], Constant) \
                and x.args[1].type.shape == (1, channels, 1, 1) and users.get(id(old.args[0])) == 1:
            conv, bias = x.args[0], x.args[1].value.reshape(channels).astype(np.float64)
        old_conv = old.args[0].args[0] if bias is not None else old.args[0]
        if isinstance(conv, Call) and conv.op == "conv2d" and isinstance(conv.args[1], Constant) \
                and users.get(id(old_conv)) == 1 and conv.type.dtype == dtype:
            w = conv.args[1].value.astype(np.float64) * scale.reshape(-1, 1, 1, 1)
            b = shift + (bias * scale if bias is not None else 0.0)
            new_conv = Call("conv2d", (conv.args[0], Constant(conv.args[1].name + "_bn",
                                                              w.astype(dtype))),
                            conv.attrs, name=conv.name)
            return Call("add", (new_conv, Constant(node.name + "_bias",
                                                   b.reshape(1, channels, 1, 1).astype(dtype))),
                        name=node.name)
        shape = (1, channels) + (1,) * (x.type.ndim - 2)
        scaled = Call("multiply", (x, Constant(node.name + "_scale",
                                               scale.reshape(shape).astype(dtype))),
                      name=node.name)
        return Call("add", (scaled, Constant(node.name + "_shift",
                                             shift.reshape(shape).astype(dtype))), name=node.name)

    return rewrite(mod, visit)


def optimize(mod: Module) -> Module:
    """The passes ``graph.build`` runs: batch-norm folding, then common subexpressions."""
    return eliminate_common_subexpressions(fold_batch_norm(mod))
