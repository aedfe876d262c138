"""tensorlang: write tensor expressions, schedule their loops, compile them to native code.

Example::

    import tensorlang as tl
    A = tl.placeholder((1024,), "float32", name="A")
    B = tl.compute((1024,), lambda i: A[i] * 2.0, name="B")
    s = tl.create_schedule(B)
    xo, xi = s[B].split(B.op.axis[0], factor=8)
    s[B].vectorize(xi)
    f = tl.build(s, [A, B])
"""
from __future__ import annotations

from . import dtype as _dtype
from .config import Config, config
from .errors import (DTypeError, InternalError, ScheduleError, ShapeError, TensorlangError,
                     UnsupportedOpError, UserError)
from .expr import IterVar, PrimExpr, Range, Var, const, var
from .expr import cast as _cast
from .math import (abs, all, any, call_extern, ceil, cos, erf, exp, exp2, floor, floordiv,
                   floormod, fmod, if_then_else, isfinite, isinf, isnan, log, log2, log10,
                   logical_not, pow, power, round, rsqrt, select, sigmoid, sin, sqrt, tanh,
                   trunc, truncdiv, truncmod)
from .reduction import comm_reducer, max, max_value, min, min_value, prod, sum
from .schedule import Schedule, Stage, create_schedule
from .tensor import Tensor, compute, extern, placeholder, reduce_axis, thread_axis
from .lower import lower
from .runtime import ndarray as nd
from . import ir, runtime


def cast(x, dtype: str) -> PrimExpr:
    """``x`` converted to ``dtype`` (float to int truncates toward zero, like C and NumPy)."""
    return _cast(x, dtype)


def schedule_from_json(text: str, tensors) -> Schedule:
    """Replay a schedule saved with ``Schedule.to_json`` on the same computation."""
    from .schedule_trace import from_json
    return from_json(text, tensors)


def build(sch_or_func, args=None, target: str = "llvm", name: str = "main"):
    """Compile a schedule (with its argument tensors) or a lowered PrimFunc into a callable.

    Example: ``f = tl.build(s, [A, B, C], target="llvm"); f(a, b, c)``.
    """
    from .ir.function import PrimFunc
    if isinstance(sch_or_func, PrimFunc):
        func = sch_or_func
    else:
        if args is None:
            raise UserError("build of a schedule needs the argument tensors: "
                            "tl.build(s, [A, B, C])")
        func = lower(sch_or_func, args, name=name)
    target_name = target if isinstance(target, str) else getattr(target, "kind", "llvm")
    if isinstance(target, str) and target.split() and target.split()[0] == "cuda":
        import codegen.cuda  # lazy, like codegen.llvm below
        return codegen.cuda.build(func, target)
    if isinstance(target, str) and target.split()[0] not in ("llvm", "c"):
        raise UnsupportedOpError(f"target {target!r} is not supported yet; use 'llvm' or 'cuda'")
    import codegen.llvm  # the one documented upward import: tl.build is a convenience
    return codegen.llvm.build(func, target)


__all__ = [n for n in dir() if not n.startswith("_")]
