"""The LLVM CPU backend: loop IR to native code through llvmlite.

Example:
    >>> from codegen.llvm import build, parse_target
    >>> f = build(func, parse_target("llvm"))  # doctest: +SKIP
"""
from .build_module import build, clear_cache
from .target import Target, host_target, parse_target

__all__ = ["build", "clear_cache", "Target", "host_target", "parse_target"]
