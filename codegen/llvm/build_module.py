"""Build a PrimFunc into a callable module: codegen, O3 for the target CPU, MCJIT, a cache.

Example:
    >>> f = build(func, "llvm")            # the host CPU, exactly  # doctest: +SKIP
    >>> f(a, b, c)                          # doctest: +SKIP
    >>> build(func, "llvm -mcpu=skylake-avx512", jit=False).get_source("asm")  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
import threading
import warnings
from collections import OrderedDict

import llvmlite.binding as llvm

from tensorlang.errors import UnsupportedOpError, UserError
from tensorlang.ir.function import PrimFunc
from tensorlang.ir.structural import structural_equal, structural_hash
from tensorlang.runtime.module import Module, register_parallel_launch

from . import export
from .codegen import lower_to_llvm
from .target import Target, parse_target, target_machine

__all__ = ["build", "clear_cache"]

CACHE_SIZE = 256
_lock = threading.RLock()  # LLVM's global context is not for concurrent use
_cache: "OrderedDict[tuple, list[tuple[PrimFunc, Module]]]" = OrderedDict()


def build(func: PrimFunc, target: "str | Target" = "llvm", *, jit: bool = True) -> Module:
    """Compile a flattened PrimFunc for a CPU.

    Args:
        func: the lowered function (``tl.lower``), buffers flattened.
        target: ``"llvm"`` for this machine, ``"llvm -mcpu=... -mattr=..."``, or a Target.
        jit: load the code into this process to call it. With ``jit=False`` the module is
            only compiled: ``get_source`` and ``export_library`` work, calling does not (for
            cross-compiling to another CPU).

    Returns:
        A :class:`tensorlang.runtime.module.Module`; an identical earlier build (same IR up to
        variable names' identities, same target) returns the cached module.

    Raises:
        UnsupportedOpError: ``jit=True`` for a target whose CPU features this host lacks
            (naming them), or an op, dtype or loop kind the backend does not support.
        UserError: malformed IR (not flattened, unbound variables, ...).

    Example:
        >>> f = build(func)  # doctest: +SKIP
        >>> f.get_source("ll")  # doctest: +SKIP
    """
    if not isinstance(func, PrimFunc):
        raise UserError(f"build expects a lowered PrimFunc, got {type(func).__name__}; "
                        "use tl.build(schedule, args) for schedules")
    target = parse_target(target)
    if jit:
        target.check_host_support()
    # fast_math changes the code emitted for the same IR, so it is part of the key
    from tensorlang.config import current
    key = (structural_hash(func, map_free_vars=True), target.key(), jit, current().fast_math)
    with _lock:
        for cached_func, module in _cache.get(key, ()):
            if structural_equal(cached_func, func, map_free_vars=True):
                _cache.move_to_end(key)
                return module
        module = _compile(func, target, jit)
        _cache.setdefault(key, []).append((func, module))
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return module


def clear_cache() -> None:
    """Forget every cached build."""
    with _lock:
        _cache.clear()


def _compile(func: PrimFunc, target: Target, jit: bool) -> Module:
    host_arch = llvm.get_process_triple().split("-")[0]
    lowered = lower_to_llvm(func, target, check_symbols=target.arch == host_arch)
    machine = target_machine(target, jit=True)
    lowered.module.data_layout = str(machine.target_data)
    llmod = llvm.parse_assembly(str(lowered.module))
    llmod.verify()
    optimize(llmod, machine)
    ir_text = str(llmod)
    signature = lowered.signature
    options = dict(ir_text=ir_text, assembly=lambda: assembly(ir_text, target),
                   exporter=lambda path: export.export_library(ir_text, lowered, target, path))
    if not jit:
        return Module(signature, None, not_runnable=f"{signature.entry} was built with "
                      f"jit=False for '{target}': it can be inspected and exported, not called",
                      **options)
    pool_address = _pool_launch_address() if lowered.launch_global is not None else None
    engine = llvm.create_mcjit_compiler(llmod, machine)
    engine.finalize_object()
    if pool_address is not None:  # else parallel loops run on the module's serial launcher
        slot = engine.get_global_value_address(lowered.launch_global)
        ctypes.c_void_p.from_address(slot).value = pool_address
    return Module(signature, engine.get_function_address(signature.entry),
                  bench_address=engine.get_function_address(f"{signature.entry}__bench"),
                  keepalive=engine, release_address=engine.get_function_address(
                      f"{signature.entry}__release_workspace"), **options)


def optimize(llmod: llvm.ModuleRef, machine: llvm.TargetMachine) -> None:
    """The O3 pipeline for ``machine``'s CPU, loop and SLP vectorisers on."""
    tuning = llvm.PipelineTuningOptions(speed_level=3)
    tuning.loop_vectorization = True
    tuning.slp_vectorization = True
    tuning.loop_unrolling = True
    passes = llvm.create_pass_builder(machine, tuning)
    with _without_vectorizer_remarks():
        passes.getModulePassManager().run(llmod, passes)


@contextlib.contextmanager
def _without_vectorizer_remarks():
    """Drop LLVM's "loop not vectorized" diagnostics from stderr, keep everything else.

    Loops the tensorlang vectorizer left carry ``llvm.loop.vectorize.enable``; when LLVM cannot
    vectorize one either, it prints a remark and a warning on stderr (fd 2, from C++) per loop,
    which would flood tuning runs. The loop is still correct, only scalar.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if "loop not vectorized" not in line)
            if kept:
                sys.stderr.write(kept)


def assembly(ir_text: str, target: Target) -> str:
    """Assembly of optimised IR for ``target``."""
    with _lock:
        return target_machine(target, jit=False).emit_assembly(llvm.parse_assembly(ir_text))


def _pool_launch_address() -> int | None:
    """Address of the pool's ``tl_parallel_launch``; None (serial, with a warning) without one."""
    from .threadpool import ensure_symbols, get_pool  # imported on first parallel loop
    try:
        ensure_symbols()
        return get_pool().launch_address
    except UnsupportedOpError as err:
        warnings.warn(f"parallel loops will run serially: {err}", RuntimeWarning, stacklevel=3)
        return None


register_parallel_launch(_pool_launch_address)
