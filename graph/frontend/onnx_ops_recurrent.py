"""ONNX converters for the recurrent layers RNN, GRU and LSTM (forward, reverse or
bidirectional; default activations), unrolled over the time steps into dense / elementwise
calls, so each step fuses like any other layer.
"""
from __future__ import annotations

import numpy as np

from .onnx import converter
from .onnx_ops_more import _const, _opt, _unsupported


# -- recurrent layers (forward or reverse, one direction), unrolled over time -----------------

def _take(node, t, axis, start, size):
    begins = [0] * t.type.ndim
    begins[axis] = start
    shape = list(t.type.shape)
    shape[axis] = size
    return node.call("slice", (t,), begins=tuple(begins), steps=(1,) * t.type.ndim,
                     shape=tuple(shape))


def _gate_weights(node, w, count, hidden):
    """[1, count * hidden, k] -> ``count`` tensors [hidden, k]."""
    k = w.type.shape[2]
    return [node.call("reshape", (_take(node, w, 1, g * hidden, hidden),), newshape=(hidden, k))
            for g in range(count)]


def _vec(node, b, start, hidden):
    return node.call("reshape", (_take(node, b, 1, start, hidden),), newshape=(1, hidden))


@converter("RNN", "GRU", "LSTM")
def _recurrent(node, inputs, attrs):
    x = inputs[0]
    h0, c0 = _opt(inputs, 5), _opt(inputs, 6)
    direction = attrs.get("direction", "forward")
    if "activations" in attrs or "clip" in attrs or attrs.get("input_forget", 0):
        raise _unsupported(node, "custom activations, clip and input_forget are not supported")
    layout = int(attrs.get("layout", 0))
    if layout:
        x = node.call("transpose", (x,), axes=(1, 0, 2))
        h0 = node.call("transpose", (h0,), axes=(1, 0, 2)) if h0 is not None else None
        c0 = node.call("transpose", (c0,), axes=(1, 0, 2)) if c0 is not None else None
    dirs = ["forward", "reverse"] if direction == "bidirectional" else [direction]
    results = []
    for d, way in enumerate(dirs):
        def part(t):
            return _take(node, t, 0, d, 1) if t is not None else None
        results.append(_one_direction(node, x, part(inputs[1]), part(inputs[2]),
                                      part(_opt(inputs, 3)), part(h0), part(c0),
                                      part(_opt(inputs, 7)), way == "reverse", attrs))
    outs = [node.call("concat", [r[k] for r in results], axis=1 if k == 0 else 0)
            if len(results) > 1 else results[0][k] for k in range(len(results[0]))]
    if layout:
        outs = [node.call("transpose", (outs[0],), axes=(2, 0, 1, 3))] + \
            [node.call("transpose", (o,), axes=(1, 0, 2)) for o in outs[1:]]
    return outs if node.op_type == "LSTM" else outs[:2]


def _one_direction(node, x, w, r, b, h0, c0, peep, reverse, attrs):
    op = node.op_type
    count = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    hidden = int(attrs["hidden_size"])
    seq, batch, _ = x.type.shape
    dt = x.type.dtype
    ws, rs = _gate_weights(node, w, count, hidden), _gate_weights(node, r, count, hidden)
    zero = _const(node, np.zeros((1, hidden)), dt)
    wb = [_vec(node, b, g * hidden, hidden) if b is not None else zero for g in range(count)]
    rb = [_vec(node, b, (count + g) * hidden, hidden) if b is not None else zero
          for g in range(count)]
    ps = [_vec(node, peep, g * hidden, hidden) for g in range(3)] if peep is not None else None

    def flat(t):
        return node.call("reshape", (t,), newshape=(batch, hidden)) if t is not None else \
            _const(node, np.zeros((batch, hidden)), dt)
    h, c = flat(h0), flat(c0)
    one = _const(node, 1, dt)

    def lin(xt, g, state):
        return node.call("add", (node.call("add", (node.call("dense", (xt, ws[g])), wb[g])),
                                 node.call("add", (node.call("dense", (state, rs[g])), rb[g]))))
    steps = range(seq - 1, -1, -1) if reverse else range(seq)
    ys = {}
    for t in steps:
        xt = node.call("reshape", (_take(node, x, 0, t, 1),), newshape=(batch, x.type.shape[2]))
        if op == "RNN":
            h = node.call("tanh", (lin(xt, 0, h),))
        elif op == "GRU":
            z = node.call("sigmoid", (lin(xt, 0, h),))
            rt = node.call("sigmoid", (lin(xt, 1, h),))
            xh = node.call("add", (node.call("dense", (xt, ws[2])), wb[2]))
            if attrs.get("linear_before_reset", 0):
                hh = node.call("add", (node.call("dense", (h, rs[2])), rb[2]))
                pre = node.call("add", (xh, node.call("multiply", (rt, hh))))
            else:
                hh = node.call("add", (node.call("dense", (node.call("multiply", (rt, h)),
                                                           rs[2])), rb[2]))
                pre = node.call("add", (xh, hh))
            cand = node.call("tanh", (pre,))
            keep = node.call("multiply", (z, h))
            h = node.call("add", (node.call("multiply", (node.call("subtract", (one, z)), cand)),
                                  keep))
        else:  # LSTM gates i, o, f, c; peepholes i, o, f
            def gate(g, peep_index, state_c):
                pre = lin(xt, g, h)
                if ps is not None:
                    pre = node.call("add", (pre, node.call("multiply", (ps[peep_index],
                                                                        state_c))))
                return pre
            i_t = node.call("sigmoid", (gate(0, 0, c),))
            f_t = node.call("sigmoid", (gate(2, 2, c),))
            cand = node.call("tanh", (lin(xt, 3, h),))
            c = node.call("add", (node.call("multiply", (f_t, c)),
                                  node.call("multiply", (i_t, cand))))
            o_t = node.call("sigmoid", (gate(1, 1, c),))
            h = node.call("multiply", (o_t, node.call("tanh", (c,))))
        ys[t] = h
    y = node.call("concat", [node.call("reshape", (ys[t],), newshape=(1, 1, batch, hidden))
                             for t in range(seq)], axis=0)
    y_h = node.call("reshape", (h,), newshape=(1, batch, hidden))
    y_c = node.call("reshape", (c,), newshape=(1, batch, hidden))
    return [y, y_h, y_c]
