"""CPU targets: parse ``"llvm -mcpu=... -mattr=..."``, describe the host, make target machines.

A :class:`Target` names everything the generated code depends on: the triple, the CPU, its
features and the thread count parallel loops are split for. Its :meth:`Target.key` is what
compile caches and tuning records are keyed by, so code or records made for another CPU are
never reused here. Code for a CPU or features this host lacks may be emitted (cross-compiling)
but is refused for running, with an error that names what is missing.
"""
from __future__ import annotations

import functools
import shlex
import threading
from dataclasses import dataclass, field

import llvmlite.binding as llvm

from tensorlang.errors import UnsupportedOpError, UserError

__all__ = ["Target", "parse_target", "host_target", "target_machine"]

# Features that decide vector width and which the named CPUs imply. Enough to verify that code
# for a named x86 CPU runs here; a CPU missing from this table can still be compiled for.
_X86_V2 = ("sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "cx16", "sahf")
_X86_V3 = _X86_V2 + ("avx", "avx2", "fma", "f16c", "bmi", "bmi2", "lzcnt", "movbe", "xsave")
_X86_V4 = _X86_V3 + ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
_CPU_FEATURES: dict[str, tuple[str, ...]] = {
    "generic": (), "x86-64": ("sse2",), "x86-64-v2": _X86_V2, "x86-64-v3": _X86_V3,
    "x86-64-v4": _X86_V4, "nehalem": _X86_V2, "sandybridge": _X86_V2 + ("avx",),
    "ivybridge": _X86_V2 + ("avx", "f16c"), "haswell": _X86_V3, "broadwell": _X86_V3,
    "skylake": _X86_V3, "alderlake": _X86_V3, "skylake-avx512": _X86_V4,
    "cascadelake": _X86_V4, "cooperlake": _X86_V4, "icelake-client": _X86_V4,
    "icelake-server": _X86_V4, "tigerlake": _X86_V4, "sapphirerapids": _X86_V4,
    "znver1": _X86_V3, "znver2": _X86_V3, "znver3": _X86_V3, "znver4": _X86_V4,
    "znver5": _X86_V4,
}
_OPTIONS = ("-mcpu", "-mattr", "-mtriple", "-num-threads")


@dataclass(frozen=True)
class Target:
    """An LLVM CPU target: what code is generated for, and the key caches use.

    Attributes:
        triple: the LLVM target triple, e.g. ``"x86_64-unknown-linux-gnu"``.
        cpu: the LLVM CPU name (``"znver3"``, ``"generic"``, ...).
        features: comma-separated LLVM features, ``"+avx2,+fma,-avx512f"``; empty means the
            CPU's own.
        num_threads: how many tasks a parallel loop is split into.
        vector_bits: the widest vector register the features give (512, 256 or 128).

    Example:
        >>> t = parse_target("llvm -mcpu=skylake-avx512")
        >>> t.vector_bits
        512
    """

    triple: str
    cpu: str
    features: str
    num_threads: int = 1
    vector_bits: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", _normalize_features(self.features))
        object.__setattr__(self, "vector_bits", _vector_bits(self))

    @property
    def kind(self) -> str:
        return "llvm"

    @property
    def arch(self) -> str:
        return self.triple.split("-")[0]

    def feature_flags(self) -> dict[str, bool]:
        """Each feature the target sets, on or off: the CPU's own plus the explicit ones."""
        flags = {name: True for name in _CPU_FEATURES.get(self.cpu, ())}
        if self.cpu == llvm.get_host_cpu_name() and self.arch == _host_arch():
            flags.update(_host_features())
        for item in filter(None, self.features.split(",")):
            flags[item[1:]] = item[0] == "+"
        return flags

    def key(self) -> str:
        """The canonical target string: triple, CPU, features and threads (cache/tuning key)."""
        return str(self)

    def missing_host_features(self) -> list[str]:
        """Why code for this target cannot run on this machine; empty when it can."""
        if self.arch != _host_arch():
            return [f"arch {self.arch} (host is {_host_arch()})"]
        host_cpu = llvm.get_host_cpu_name()
        if self.cpu not in _CPU_FEATURES and self.cpu != host_cpu:
            return [f"cpu {self.cpu} (unknown to tensorlang, host is {host_cpu}; "
                    "name features with -mattr and -mcpu=generic instead)"]
        host = _host_features()
        return ["+" + name for name, on in sorted(self.feature_flags().items())
                if on and not host.get(name, False)]

    def can_run_on_host(self) -> bool:
        """True if code built for this target runs on this machine (no SIGILL)."""
        return not self.missing_host_features()

    def check_host_support(self) -> None:
        """Raise ``UnsupportedOpError`` naming what the host lacks, if anything."""
        missing = self.missing_host_features()
        if missing:
            raise UnsupportedOpError(
                f"target '{self}' needs {', '.join(missing)}, which this host "
                f"({llvm.get_host_cpu_name()}) does not have: code for it cannot run here. "
                "Build for the host (target='llvm'), or build with jit=False to only emit "
                "source, assembly or a library for another machine")

    def __str__(self) -> str:
        parts = ["llvm", f"-mtriple={self.triple}", f"-mcpu={self.cpu}"]
        if self.features:
            parts.append(f"-mattr={self.features}")
        parts.append(f"-num-threads={self.num_threads}")
        return " ".join(parts)


def _normalize_features(features: str) -> str:
    signs: dict[str, str] = {}
    for item in (f.strip() for f in features.split(",")):
        if not item:
            continue
        if item[0] not in "+-" or len(item) < 2:
            raise UserError(f"target feature {item!r} must start with '+' or '-' "
                            "(e.g. -mattr=+avx2,+fma)")
        signs[item[1:]] = item[0]  # a later mention wins, as in LLVM
    return ",".join(signs[name] + name for name in sorted(signs))


def _vector_bits(target: Target) -> int:
    if target.arch not in ("x86_64", "i686", "i386"):
        return 128
    flags = target.feature_flags()
    if flags.get("avx512f"):
        return 512
    if flags.get("avx") or flags.get("avx2"):
        return 256
    return 128


@functools.lru_cache(maxsize=None)
def _host_features() -> dict[str, bool]:
    return dict(llvm.get_host_cpu_features())


@functools.lru_cache(maxsize=None)
def _host_arch() -> str:
    return llvm.get_process_triple().split("-")[0]


def _default_num_threads() -> int:
    from .threadpool import get_num_threads
    return get_num_threads()


def host_target(num_threads: int | None = None) -> Target:
    """The machine this process runs on, exactly: its CPU name and every feature it has.

    Example:
        >>> host_target().can_run_on_host()
        True
    """
    initialize()
    return Target(llvm.get_process_triple(), llvm.get_host_cpu_name(),
                  llvm.get_host_cpu_features().flatten(),
                  num_threads or _default_num_threads())


def parse_target(text: "str | Target") -> Target:
    """Parse a target string: ``"llvm"`` (the host), or with ``-mcpu``, ``-mattr``, ``-mtriple``.

    ``-mattr`` without ``-mcpu`` builds for a generic CPU with those features (as TVM does);
    ``-mcpu=native`` is the host; ``-num-threads=N`` overrides the thread-pool size.

    Raises:
        UserError: not an ``llvm`` target, or an unknown option or feature.

    Example:
        >>> parse_target("llvm -mcpu=haswell -mattr=+avx2,+fma").cpu
        'haswell'
    """
    if isinstance(text, Target):
        return text
    if not isinstance(text, str):
        raise UserError(f"target must be a string like 'llvm -mcpu=...' or a Target, "
                        f"got {text!r}")
    words = shlex.split(text)
    if not words or words[0] != "llvm":
        raise UserError(f"not an LLVM CPU target: {text!r} (expected 'llvm ...')")
    options: dict[str, str] = {}
    for word in words[1:]:
        name, eq, value = word.partition("=")
        if name not in _OPTIONS or not eq or not value:
            raise UserError(f"unknown target option {word!r} in {text!r}; "
                            f"known: {', '.join(o + '=...' for o in _OPTIONS)}")
        options[name] = value if name != "-mattr" or name not in options \
            else options[name] + "," + value
    threads = _parse_threads(options.get("-num-threads"), text)
    initialize()
    host_triple = llvm.get_process_triple()
    triple = options.get("-mtriple", host_triple)
    cpu = options.get("-mcpu")
    features = options.get("-mattr", "")
    if cpu == "native" or (cpu is None and not features and triple == host_triple):
        return host_target(threads) if not features else Target(
            triple, llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten() + ","
            + features, threads or _default_num_threads())
    target = Target(triple, cpu or "generic", features, threads or _default_num_threads())
    _check_known_features(target, text)
    return target


def _parse_threads(value: str | None, text: str) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"-num-threads must be a positive integer in {text!r}")
    return int(value)


def _check_known_features(target: Target, text: str) -> None:
    if target.arch != _host_arch():
        return  # only the host's feature names are known here
    known = _host_features()
    unknown = [f for f in target.features.split(",") if f and f[1:] not in known]
    if unknown:
        raise UserError(f"unknown CPU feature(s) {', '.join(unknown)} in target {text!r}")


_init_lock = threading.Lock()
_initialized: set[str] = set()


def initialize(all_targets: bool = False) -> None:
    """Initialise LLVM's native target (and every target, for cross-compiling)."""
    with _init_lock:
        if "native" not in _initialized:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            llvm.initialize_native_asmparser()
            _initialized.add("native")
        if all_targets and "all" not in _initialized:
            llvm.initialize_all_targets()
            llvm.initialize_all_asmprinters()
            _initialized.add("all")


def target_machine(target: Target, jit: bool = True) -> llvm.TargetMachine:
    """A new LLVM TargetMachine at opt level 3 for ``target``: JIT code model or PIC for export.

    New each time: an MCJIT engine takes ownership of (and frees) the machine it is given.
    """
    return _machine(target.triple, target.cpu, target.features, jit)


def _machine(triple: str, cpu: str, features: str, jit: bool) -> llvm.TargetMachine:
    initialize(all_targets=triple.split("-")[0] != _host_arch())
    try:
        llvm_target = llvm.Target.from_triple(triple)
    except RuntimeError as err:
        raise UserError(f"LLVM cannot generate code for triple {triple!r}: {err}") from None
    if jit:
        return llvm_target.create_target_machine(cpu=cpu, features=features, opt=3,
                                                 codemodel="jitdefault", jit=True)
    return llvm_target.create_target_machine(cpu=cpu, features=features, opt=3, reloc="pic",
                                             codemodel="default")
