"""The CUDA backend: loop IR to CUDA C, NVRTC to a cubin, launch through the driver API.

Example:
    >>> import codegen.cuda
    >>> f = codegen.cuda.build(tl.lower(s, [A, B, C]), "cuda -arch=sm_90")  # doctest: +SKIP
    >>> print(f.get_source())                                                # doctest: +SKIP

Importing this package needs neither cuda-python nor a GPU: NVRTC is loaded when a cubin is
compiled, the driver when a kernel runs.
"""
from __future__ import annotations

import re

from tensorlang.errors import UserError
from tensorlang.ir.function import PrimFunc

from .module import CudaModule
from .nvrtc import CompileError, compile_cuda
from .source import generate

__all__ = ["build", "compile_cuda", "CompileError", "CudaModule", "parse_cuda_target",
           "lower_for_gpu"]


def parse_cuda_target(target: str) -> str | None:
    """The ``-arch`` of a ``"cuda [-arch=sm_80]"`` target string (None when not given)."""
    words = str(target).split()
    if not words or words[0] not in ("cuda", "nvptx"):
        raise UserError(f"not a CUDA target: {target!r}; expected 'cuda' or 'cuda -arch=sm_90'")
    arch = None
    for word in words[1:]:
        m = re.fullmatch(r"-(?:arch|mcpu)=(\S+)", word)
        if m:
            arch = m.group(1)
            if not re.fullmatch(r"sm_\d+[a-z]?", arch):
                raise UserError(f"CUDA target {target!r}: -arch must be sm_XX (machine code), "
                                f"got {arch!r}")
        elif word.startswith("-"):
            continue  # other options (-max_threads_per_block=...) are read elsewhere
        else:
            raise UserError(f"CUDA target {target!r}: unexpected word {word!r}")
    return arch


def _limits():
    from tensorlang.runtime import cuda
    if cuda.available():
        props = cuda.device_properties()
        return props.max_threads_per_block, props.max_shared_per_block
    return None, None


def lower_for_gpu(func: PrimFunc, max_threads: int | None = None,
                  max_shared: int | None = None):
    """Barriers inserted and GPU legality checked: ``(func, host plan)``."""
    from tensorlang.lower.gpu_sync import insert_barriers, lower_cross_thread_reductions
    from tensorlang.lower.verify_gpu import verify_gpu
    func = insert_barriers(lower_cross_thread_reductions(func))
    plan = verify_gpu(func, max_threads, max_shared)
    return func, plan


def symbol_name(func: PrimFunc) -> str:
    name = str(func.attr("global_symbol", func.name) or "main")
    name = re.sub(r"\W", "_", name)
    return "_" + name if name[0].isdigit() else name


def build(func: PrimFunc, target: str = "cuda") -> CudaModule:
    """Compile a lowered PrimFunc for NVIDIA GPUs.

    Args:
        func: the lowered function (``tl.lower`` of a schedule with bound loops).
        target: ``"cuda"`` (the current device's architecture, sm_90 without one) or
            ``"cuda -arch=sm_80"``.

    Returns:
        A :class:`CudaModule`: ``get_source()`` gives the CUDA C, ``get_source("cubin")`` the
        machine code; calling it launches on the GPU.

    Raises:
        ScheduleError: the schedule cannot run on a GPU (unbound loops, too many threads,
            too much shared memory, a divergent barrier), naming the stage and loop.
        UnsupportedOpError: an op, dtype or construct the CUDA backend does not handle.
        CompileError: NVRTC rejected the generated source (a bug: please report it).
    """
    if not isinstance(func, PrimFunc):
        raise UserError(f"build expects a lowered PrimFunc, got {type(func).__name__}; "
                        "use tl.build(schedule, args, target='cuda') for schedules")
    arch = parse_cuda_target(target)
    max_threads, max_shared = _limits()
    gpu_func, plan = lower_for_gpu(func, max_threads, max_shared)
    symbol = symbol_name(func)
    source = generate(gpu_func, plan, symbol)
    from codegen.llvm.abi import signature_of
    from .source import _shape_vars
    signature = signature_of(gpu_func, symbol, list(func.params), _shape_vars(func), [],
                             str(target))
    module = CudaModule(gpu_func, source, signature, arch, str(target))
    if arch is not None:
        module.cubin(arch)  # compile now: NVRTC errors surface at build time
    return module
