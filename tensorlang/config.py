"""One config object for lowering and building: optimisation level, disabled passes, checks.

Example::

    with tl.config(verify=True, dump_ir=True, disabled_passes=["vectorize"]):
        f = tl.build(s, [A, B, C])
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Config:
    """``opt_level`` 0-3 goes to LLVM; ``disabled_passes`` names lowering passes to skip;
    ``verify`` checks the IR after every pass; ``dump_ir`` prints it after every pass.
    ``fast_math`` (off by default) builds exp, log, tanh, sigmoid and erf with shorter
    polynomials: faster, accurate to about 1e-5 relative instead of a few ULP (the table in
    ``codegen/llvm/vector_math.py``); special values (inf, nan, 0) keep their meaning."""

    opt_level: int = 3
    disabled_passes: tuple = ()
    verify: bool = False
    dump_ir: bool = False
    fast_math: bool = False
    extra: dict = field(default_factory=dict)


_current = [Config()]


def current() -> Config:
    return _current[-1]


@contextlib.contextmanager
def config(**changes):
    """Use a changed config inside a ``with`` block."""
    if "disabled_passes" in changes:
        changes["disabled_passes"] = tuple(changes["disabled_passes"])
    new = dataclasses.replace(current(), **changes)
    _current.append(new)
    try:
        yield new
    finally:
        _current.pop()
