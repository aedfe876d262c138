"""CUDA C to a cubin with NVRTC (cuda-python's ``cuda.bindings.nvrtc``), cached.

Always machine code (``--gpu-architecture=sm_XX`` and ``nvrtcGetCUBIN``), never PTX: PTX from a
newer NVRTC may not load on an older driver. Results are cached in memory and on disk under
``$TENSORLANG_CACHE_DIR`` (default ``$XDG_CACHE_HOME/tensorlang`` or ``~/.cache/tensorlang``),
``cuda/<sha256>.cubin``, keyed by the source, the architecture, the options and the NVRTC
version. ``TENSORLANG_CACHE_DIR=""`` (empty) turns the disk cache off.

Example:
    >>> cubin = compile_cuda(source, arch="sm_90")  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading

from tensorlang.errors import TensorlangError, UnsupportedOpError, UserError

__all__ = ["CompileError", "compile_cuda", "nvrtc_version", "cache_dir", "clear_cache"]

DEFAULT_OPTIONS = ("-default-device", "--std=c++17")
_memory: dict = {}
_lock = threading.Lock()


class CompileError(TensorlangError, RuntimeError):
    """NVRTC refused the generated CUDA C; the message has its log and the offending lines."""


def _nvrtc():
    try:
        try:
            from cuda.bindings import nvrtc
        except ImportError:  # cuda-python before 12.6
            from cuda import nvrtc
    except ImportError as exc:
        raise UnsupportedOpError(
            "compiling CUDA needs NVRTC through cuda-python: pip install 'tensorlang[cuda]' "
            f"(cuda-python and nvidia-cuda-nvrtc); import failed: {exc}") from None
    return nvrtc


def nvrtc_version() -> tuple:
    """(major, minor) of the NVRTC library in use."""
    nvrtc = _nvrtc()
    try:
        result = nvrtc.nvrtcVersion()
    except Exception as exc:  # the library itself is missing (cuda-python without NVRTC)
        raise UnsupportedOpError(
            "NVRTC is not installed (pip install nvidia-cuda-nvrtc, or the 'cuda' extra): "
            f"{exc}") from None
    _check(nvrtc, result[0], "nvrtcVersion")
    return (int(result[1]), int(result[2]))


def _check(nvrtc, err, call: str) -> None:
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        try:
            text = nvrtc.nvrtcGetErrorString(err)[1].decode()
        except Exception:
            text = str(err)
        raise CompileError(f"{call} failed: {text}")


def cache_dir() -> str | None:
    """The on-disk cache directory for cubins, or None when disabled."""
    root = os.environ.get("TENSORLANG_CACHE_DIR")
    if root == "":
        return None
    if root is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "tensorlang")
    return os.path.join(root, "cuda")


def clear_cache() -> None:
    """Forget the in-memory cache (the disk cache stays)."""
    with _lock:
        _memory.clear()


def _normalize_arch(arch: str) -> str:
    arch = arch.strip()
    if re.fullmatch(r"\d+", arch):
        arch = f"sm_{arch}"
    if arch.startswith("compute_"):
        raise UserError(f"arch {arch!r} asks for PTX; tensorlang compiles to machine code "
                        "(use sm_XX)")
    if not re.fullmatch(r"sm_\d+[a-z]?", arch):
        raise UserError(f"unknown CUDA architecture {arch!r}; expected e.g. 'sm_90' or 'sm_80'")
    return arch


def compile_cuda(source: str, arch: str = "sm_90", options=(), *, name: str = "kernel.cu",
                 lineinfo: bool = False) -> bytes:
    """Compile CUDA C ``source`` for ``arch`` into a cubin (bytes).

    Args:
        source: the CUDA C text (kernels ``extern "C"``).
        arch: ``"sm_90"``, ``"sm_80"``, ``"sm_90a"``, ...
        options: extra NVRTC options (strings).
        name: the file name NVRTC reports errors against.
        lineinfo: add ``-lineinfo`` (source lines for profilers).

    Raises:
        CompileError: NVRTC rejected the source (log and offending lines in the message).
        UnsupportedOpError: cuda-python or NVRTC is not installed.
    """
    arch = _normalize_arch(arch)
    opts = [f"--gpu-architecture={arch}", *DEFAULT_OPTIONS, *options]
    if lineinfo:
        opts.append("-lineinfo")
    version = nvrtc_version()
    key = hashlib.sha256("\0".join([source, arch, *opts, repr(version)]).encode()).hexdigest()
    with _lock:
        cached = _memory.get(key)
    if cached is not None:
        return cached
    cubin = _read_disk(key)
    if cubin is None:
        cubin = _compile(source, opts, name)
        _write_disk(key, cubin)
    with _lock:
        _memory[key] = cubin
    return cubin


def _read_disk(key: str) -> bytes | None:
    root = cache_dir()
    if root is None:
        return None
    try:
        with open(os.path.join(root, key + ".cubin"), "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data if data[:4] == b"\x7fELF" else None


def _write_disk(key: str, cubin: bytes) -> None:
    root = cache_dir()
    if root is None:
        return
    try:
        os.makedirs(root, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(cubin)
        os.replace(tmp, os.path.join(root, key + ".cubin"))  # atomic: readers see all or none
    except OSError:
        pass  # a read-only home: the memory cache still works


def _compile(source: str, opts: list, name: str) -> bytes:
    nvrtc = _nvrtc()
    err, prog = nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], [])
    _check(nvrtc, err, "nvrtcCreateProgram")
    try:
        encoded = [o.encode() for o in opts]
        (result,) = nvrtc.nvrtcCompileProgram(prog, len(encoded), encoded)
        if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            log = _log(nvrtc, prog)
            raise CompileError(f"NVRTC failed to compile the generated CUDA C ({' '.join(opts)}):"
                               f"\n{log}\n{_offending_lines(source, log, name)}")
        err, size = nvrtc.nvrtcGetCUBINSize(prog)
        _check(nvrtc, err, "nvrtcGetCUBINSize")
        if size == 0:
            raise CompileError("NVRTC produced no cubin (was a virtual architecture given?)")
        buf = b" " * size
        (err,) = nvrtc.nvrtcGetCUBIN(prog, buf)
        _check(nvrtc, err, "nvrtcGetCUBIN")
        return bytes(buf)
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def _log(nvrtc, prog) -> str:
    err, size = nvrtc.nvrtcGetProgramLogSize(prog)
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS or size <= 1:
        return "(no log)"
    buf = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, buf)
    return buf.rstrip(b"\0 ").decode(errors="replace")


def _offending_lines(source: str, log: str, name: str) -> str:
    lines = source.splitlines()
    numbers = sorted({int(m) for m in re.findall(re.escape(name) + r"\((\d+)\)", log)})
    out = []
    for n in numbers[:8]:
        lo, hi = max(1, n - 1), min(len(lines), n + 1)
        for k in range(lo, hi + 1):
            mark = ">>" if k == n else "  "
            out.append(f"{mark} {k:5d} | {lines[k - 1]}")
        out.append("")
    return "\n".join(out)
