"""Code generators: loop IR to native code (``codegen.llvm`` for CPUs).

Example:
    >>> import codegen
    >>> f = codegen.build(func, "llvm")  # doctest: +SKIP
"""
from .llvm import Target, build, parse_target

__all__ = ["build", "Target", "parse_target"]
