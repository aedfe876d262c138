"""The thread-count setting that compiled CPU code uses.

The pool itself lives in the code generator (``codegen.llvm.threadpool``); this lower layer only
holds the number and tells whoever registered (the pool) when it changes, so user code can call
``tl.runtime.set_num_threads(n)`` without importing codegen.
"""
from __future__ import annotations

import os
from typing import Callable

from ..errors import UserError

_listeners: list[Callable[[int], None]] = []
_num_threads: list[int] = []


def _default() -> int:
    env = os.environ.get("TENSORLANG_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise UserError(f"TENSORLANG_NUM_THREADS={env!r} is not an integer") from None
        if n < 1:
            raise UserError(f"TENSORLANG_NUM_THREADS={env!r} must be at least 1")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """Threads used by parallel loops (the calling thread included)."""
    if not _num_threads:
        _num_threads.append(_default())
    return _num_threads[0]


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for parallel loops from now on (``TENSORLANG_NUM_THREADS`` sets the
    default)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise UserError(f"set_num_threads needs a positive integer, got {n!r}")
    get_num_threads()
    _num_threads[0] = n
    for listener in list(_listeners):
        listener(n)


def on_change(listener: Callable[[int], None]) -> None:
    """Register ``listener(n)`` to hear about thread-count changes (used by the pool)."""
    _listeners.append(listener)
