"""Reductions of the graph layer: reduce_sum / mean / max / min over ``axes`` (None: all)."""
from __future__ import annotations

from tensorlang import ops as T

from . import register

_REDUCERS = {"reduce_sum": T.reduce.sum, "reduce_mean": T.reduce.mean,
             "reduce_max": T.reduce.max, "reduce_min": T.reduce.min}

for _name, _fn in _REDUCERS.items():
    register(_name, None,
             lambda xs, a, fn=_fn: fn(xs[0], axis=None if a.get("axes") is None
                                      else tuple(a["axes"]), keepdims=bool(a.get("keepdims",
                                                                                 False))),
             "reduction")
