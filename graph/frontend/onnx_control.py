"""ONNX control flow (If, Loop, Scan) by inlining the subgraphs (registered on import).

The graph layer has no control flow, so:

- ``If`` with a constant condition becomes the chosen branch; otherwise both branches are
  computed and each output selected with ``where`` (the branches' outputs must then have the
  same shapes and dtypes).
- ``Loop`` is unrolled: its trip count and the condition it computes each iteration must be
  constant (an initializer, computed from them, or a graph input the ONNX backend bakes in).
- ``Scan`` is unrolled over its (static) scan length, opset 8's batched form included.
- ``Range`` (whose ONNX function is a Loop) must have constant inputs, and is folded.

A subgraph sees the values of the graph around it; its nodes are converted like top-level
nodes (constant ones folded), and an unsupported node inside is reported like any other.
"""
from __future__ import annotations

import numpy as np

from tensorlang.errors import UnsupportedOpError

from ..ir import Constant
from .onnx import converter

_MAX_TRIPS = 4096  # a Loop unrolled further than this is refused


def _unsupported(node, what: str) -> UnsupportedOpError:
    return UnsupportedOpError(f"ONNX node {node.name!r} ({node.op_type}): {what}")


def _take(node, x, index: int, axis: int):
    """``x[..., index, ...]`` along ``axis``, the axis removed."""
    if isinstance(x, Constant):
        return Constant(f"{node.name}_take", np.take(np.asarray(x.value), index, axis=axis))
    shape = list(x.type.shape)
    begins = [0] * len(shape)
    begins[axis] = index
    shape[axis] = 1
    part = node.call("slice", (x,), begins=tuple(begins), steps=(1,) * len(shape),
                     shape=tuple(shape))
    del shape[axis]
    return node.call("reshape", (part,), newshape=tuple(shape))


def _stack(node, items, axis: int):
    """The tensors ``items`` stacked along a new ``axis``."""
    if all(isinstance(t, Constant) for t in items):
        return Constant(f"{node.name}_stack", np.stack([t.value for t in items], axis=axis))
    shaped = []
    for t in items:
        shape = list(t.type.shape)
        shape.insert(axis, 1)
        shaped.append(node.call("reshape", (t,), newshape=tuple(shape)))
    return shaped[0] if len(shaped) == 1 else node.call("concat", shaped, axis=axis)


def _norm(axis: int, ndim: int) -> int:
    return axis + ndim if axis < 0 else axis


# -- If ---------------------------------------------------------------------------------------

@converter("If")
def _if(node, inputs, attrs):
    cond = inputs[0]
    if isinstance(cond, Constant):
        branch = attrs["then_branch"] if bool(np.asarray(cond.value).reshape(-1)[0]) else \
            attrs["else_branch"]
        return node.inline(branch, [])
    then = node.inline(attrs["then_branch"], [])
    other = node.inline(attrs["else_branch"], [])
    if cond.type.size != 1:
        raise _unsupported(node, "the condition must hold one value")
    flag = node.call("reshape", (cond,), newshape=())
    out = []
    for k, (a, b) in enumerate(zip(then, other)):
        if a.type != b.type:
            raise _unsupported(node, f"output {k}: the branches give {a.type} and {b.type}; "
                                     "with a condition known only at run time they must match")
        out.append(node.call("where", (flag, a, b)))
    return out


# -- Loop -------------------------------------------------------------------------------------

def _constant_scalar(node, value, what: str):
    if value is None:
        return None
    if not isinstance(value, Constant):
        raise _unsupported(node, f"{what} must be a constant to unroll the loop")
    return np.asarray(value.value).reshape(-1)[0]


@converter("Loop")
def _loop(node, inputs, attrs):
    body = attrs["body"]
    trips = _constant_scalar(node, inputs[0] if inputs else None, "the trip count M")
    cond = _constant_scalar(node, inputs[1] if len(inputs) > 1 else None, "the condition")
    carried = list(inputs[2:])
    n_scan = len(body.output) - 1 - len(carried)
    scans = [[] for _ in range(n_scan)]
    i, go = 0, True if cond is None else bool(cond)
    while go and (trips is None or i < int(trips)):
        if i >= _MAX_TRIPS:
            raise _unsupported(node, f"more than {_MAX_TRIPS} iterations to unroll")
        outs = node.inline(body, [Constant(f"{node.name}_i{i}", np.array(i, np.int64)),
                                  Constant(f"{node.name}_c{i}", np.array(go)), *carried])
        go = bool(_constant_scalar(node, outs[0], "the condition the body computes"))
        carried = outs[1:1 + len(carried)]
        for k, v in enumerate(outs[1 + len(carried):]):
            scans[k].append(v)
        i += 1
    if n_scan and i == 0:
        raise _unsupported(node, "a loop that runs no iteration has scan outputs of unknown "
                                 "shape")
    return carried + [_stack(node, s, 0) for s in scans]


# -- Range: kept whole rather than expanded into its Loop body ------------------------------

@converter("Range")
def _range(node, inputs, attrs):
    # constant inputs fold before any converter runs; the backend bakes graph inputs here
    raise _unsupported(node, "start, limit and delta must be constants")


# -- Scan -------------------------------------------------------------------------------------

def _scan(node, body, states, scans, attrs):
    m = len(scans)
    in_axes = [_norm(a, s.type.ndim) for a, s in
               zip(attrs.get("scan_input_axes", [0] * m), scans)]
    in_dirs = attrs.get("scan_input_directions", attrs.get("directions", [0] * m))
    k = len(body.output) - len(states)
    out_axes = attrs.get("scan_output_axes", [0] * k)
    out_dirs = attrs.get("scan_output_directions", [0] * k)
    lengths = {s.type.shape[a] for s, a in zip(scans, in_axes)}
    if len(lengths) != 1:
        raise _unsupported(node, f"the scan inputs have different lengths {sorted(lengths)}")
    steps = lengths.pop()
    if steps == 0 and k:
        raise _unsupported(node, "an empty scan has outputs of unknown shape")
    outs_per_step = []
    for t in range(steps):
        slices = [_take(node, s, steps - 1 - t if d else t, a)
                  for s, a, d in zip(scans, in_axes, in_dirs)]
        outs = node.inline(body, [*states, *slices])
        states = outs[:len(states)]
        outs_per_step.append(outs[len(states):])
    stacked = []
    for j in range(k):
        items = [o[j] for o in outs_per_step]
        if out_dirs[j] if j < len(out_dirs) else 0:
            items.reverse()
        axis = _norm(out_axes[j] if j < len(out_axes) else 0, items[0].type.ndim + 1)
        stacked.append(_stack(node, items, axis))
    return list(states) + stacked


@converter("Scan")
def _scan_op(node, inputs, attrs):
    body, m = attrs["body"], int(attrs["num_scan_inputs"])
    if node.opset >= 9:
        states, scans = list(inputs[:len(inputs) - m]), list(inputs[len(inputs) - m:])
        return _scan(node, body, states, scans, attrs)
    # opset 8: an optional sequence_lens first, then a batch axis on every input
    lens, rest = inputs[0], list(inputs[1:])
    states, scans = rest[:len(rest) - m], rest[len(rest) - m:]
    steps = scans[0].type.shape[1]
    if lens is not None and not (isinstance(lens, Constant) and
                                 np.all(np.asarray(lens.value) == steps)):
        raise _unsupported(node, "sequence_lens shorter than the scan is not supported")
    per_batch = []
    for b in range(scans[0].type.shape[0]):
        per_batch.append(_scan(node, body, [_take(node, s, b, 0) for s in states],
                               [_take(node, s, b, 0) for s in scans], attrs))
    return [_stack(node, [r[j] for r in per_batch], 0) for j in range(len(per_batch[0]))]


__all__: list = []
