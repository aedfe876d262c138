"""Compiled modules: call a kernel on arrays, time it, show its code, save and load it.

A :class:`Module` wraps one native entry point with the C ABI described in
``codegen/llvm/abi.py`` (``int32_t f(void** args, int64_t* shape_values)``) and a
:class:`Signature` saying what each argument must be. Calls take NumPy arrays, ``tl.nd`` arrays
or any DLPack tensor on the CPU, check them (count, rank, dtype, shape, symbolic extents,
contiguity, writable and non-overlapping outputs) with errors that name the argument, and run
the kernel through ctypes, which releases the GIL.

This module sits below ``codegen``: it never imports it. Code generators hand in the addresses,
the source text and callbacks for assembly and export.
"""
from __future__ import annotations

import ctypes
import json
import math
import os
import shutil
import statistics
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import DTypeError, InternalError, ShapeError, UnsupportedOpError, UserError
from .dtypes import dtype_name, itemsize
from .ndarray import NDArray, from_dlpack

__all__ = ["Module", "ParamSpec", "Signature", "TimingResult", "load_module",
           "register_parallel_launch"]

INFO_SYMBOL = "tensorlang_module_info"
_ENTRY = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.POINTER(ctypes.c_void_p),
                          ctypes.POINTER(ctypes.c_int64))
_BENCH = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.POINTER(ctypes.c_void_p),
                          ctypes.POINTER(ctypes.c_int64), ctypes.c_int64)
_SCALAR_CTYPES = {
    "bool": ctypes.c_uint8, "int8": ctypes.c_int8, "int16": ctypes.c_int16,
    "int32": ctypes.c_int32, "int64": ctypes.c_int64, "uint8": ctypes.c_uint8,
    "uint16": ctypes.c_uint16, "uint32": ctypes.c_uint32, "uint64": ctypes.c_uint64,
    "float32": ctypes.c_float, "float64": ctypes.c_double,
}
_DIM_EVAL = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "floordiv": lambda a, b: a // b if b else 0, "floormod": lambda a, b: a % b if b else 0,
    "div": lambda a, b: int(a / b) if b else 0,
    "mod": lambda a, b: int(math.fmod(a, b)) if b else 0,
    "min": min, "max": max,
}


# -- the signature ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ParamSpec:
    """One parameter: a buffer (``shape``/``strides`` dims are ints, ``["var", j]`` for the j-th
    symbolic extent, or ``[op, a, b]``) or a scalar."""

    name: str
    kind: str  # "buffer" | "scalar"
    dtype: str
    shape: tuple = ()
    strides: tuple = ()  # element strides; empty means compact row-major

    def describe(self, var_names: Sequence[str]) -> str:
        if self.kind == "scalar":
            return f"{self.name}: {self.dtype}"
        dims = ", ".join(_dim_text(d, var_names) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


@dataclass(frozen=True)
class Signature:
    """How a kernel is called: parameters, symbolic extents in ABI order, outputs, errors."""

    entry: str
    params: tuple
    shape_vars: tuple = ()  # (name, dtype) pairs, the order of shape_values
    outputs: tuple = ()  # indices of the parameters the kernel writes
    errors: tuple = ()  # (kind, message) for error codes 1, 2, ...
    target: str = ""

    def to_json(self) -> str:
        return json.dumps({"entry": self.entry, "params": [vars(p) for p in self.params],
                           "shape_vars": self.shape_vars, "outputs": self.outputs,
                           "errors": self.errors, "target": self.target})

    @staticmethod
    def from_json(text: str) -> "Signature":
        data = json.loads(text)
        params = tuple(ParamSpec(p["name"], p["kind"], p["dtype"], _tuple(p["shape"]),
                                 _tuple(p["strides"])) for p in data["params"])
        return Signature(data["entry"], params, tuple(tuple(v) for v in data["shape_vars"]),
                         tuple(data["outputs"]), tuple(tuple(e) for e in data["errors"]),
                         data.get("target", ""))


def _tuple(dims) -> tuple:
    return tuple(d if isinstance(d, int) else _tuple(d) if isinstance(d, list) else d
                 for d in dims)


def _dim_text(dim, names: Sequence[str]) -> str:
    if isinstance(dim, int):
        return str(dim)
    if dim[0] == "var":
        return names[dim[1]]
    symbol = {"add": "+", "sub": "-", "mul": "*", "floordiv": "//", "floormod": "%"}
    a, b = _dim_text(dim[1], names), _dim_text(dim[2], names)
    if dim[0] in symbol:
        return f"({a} {symbol[dim[0]]} {b})"
    return f"{dim[0]}({a}, {b})"


def _eval_dim(dim, values: dict) -> int | None:
    if isinstance(dim, int):
        return dim
    if dim[0] == "var":
        return values.get(dim[1])
    a, b = _eval_dim(dim[1], values), _eval_dim(dim[2], values)
    return None if a is None or b is None else _DIM_EVAL[dim[0]](a, b)


# -- arguments -------------------------------------------------------------------------------

@dataclass
class _Array:
    address: int
    shape: tuple
    dtype: str
    strides: tuple | None  # in elements; None when C-contiguous
    writeable: bool
    owner: Any  # keeps converted (DLPack) memory alive during the call

    _nbytes: int = -1

    @property
    def nbytes(self) -> int:
        if self._nbytes < 0:
            self._nbytes = math.prod(self.shape) * itemsize(self.dtype)
        return self._nbytes


def _culprit(spec: ParamSpec, position: int) -> str:
    return f"argument {spec.name!r} (#{position})"


def _as_array(obj: Any, spec: ParamSpec, position: int) -> _Array:
    if isinstance(obj, np.ndarray):
        return _from_numpy(obj, spec, position)
    if not isinstance(obj, NDArray) and hasattr(obj, "__dlpack__"):
        device = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else (1, 0)
        if int(device[0]) not in (1, 3):  # kDLCPU, kDLCUDAHost (pinned host memory)
            raise UserError(f"{_culprit(spec, position)} lives on DLPack device {tuple(device)}, "
                            "not the CPU; this module runs on the CPU (copy it to host first)")
        obj = from_dlpack(obj)
    if isinstance(obj, NDArray):
        if obj.device != "cpu":
            raise UserError(f"{_culprit(spec, position)} is on {obj.device}, not the CPU")
        return _Array(obj.data_ptr, obj.shape, obj.dtype, obj.strides, not obj.readonly, obj)
    raise UserError(f"{_culprit(spec, position)} must be a NumPy array, a tl.nd array or a "
                    f"DLPack tensor, got {type(obj).__name__}")


def _from_numpy(arr: np.ndarray, spec: ParamSpec, position: int) -> _Array:
    try:
        dtype = dtype_name(arr.dtype)
    except DTypeError:
        raise DTypeError(f"{_culprit(spec, position)} has dtype {arr.dtype}, expected "
                         f"{spec.dtype}") from None
    if not arr.flags.aligned:
        raise UserError(f"{_culprit(spec, position)} is not aligned to its element size; "
                        "pass np.ascontiguousarray(x) or a tl.nd array")
    strides = None
    if not arr.flags.c_contiguous:
        strides = tuple(s // arr.itemsize for s in arr.strides)
    return _Array(arr.ctypes.data, arr.shape, dtype, strides, arr.flags.writeable, arr)


class _Call:
    """Arguments converted once: what the native entry point takes, kept alive together."""

    def __init__(self, argv, shape_values, keep) -> None:
        self.argv, self.shape_values, self.keep = argv, shape_values, keep


# -- the module ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TimingResult:
    """Seconds per call, one entry in ``results`` per repeat.

    Example:
        >>> r = f.time_evaluator(number=10, repeat=3)(a, b, c)  # doctest: +SKIP
        >>> print(f"{r.median * 1e6:.1f} us")  # doctest: +SKIP
    """

    results: tuple
    number: int = 1

    @property
    def mean(self) -> float:
        return statistics.fmean(self.results)

    @property
    def median(self) -> float:
        return statistics.median(self.results)

    @property
    def min(self) -> float:
        return min(self.results)

    @property
    def max(self) -> float:
        return max(self.results)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.results) if len(self.results) > 1 else 0.0

    def __repr__(self) -> str:
        return (f"TimingResult(mean={self.mean * 1e6:.2f} us, median={self.median * 1e6:.2f} us,"
                f" min={self.min * 1e6:.2f} us, std={self.std * 1e6:.2f} us, "
                f"repeats={len(self.results)}, number={self.number})")


class Module:
    """A compiled kernel you can call: ``f(*arrays)`` runs it in place and returns None.

    Args:
        signature: how the kernel is called.
        entry_address: address of the native entry point, or None for a module compiled for
            another machine (then calling it raises ``not_runnable``).
        bench_address: address of ``<entry>__bench``, for timing without Python in the loop.
        ir_text: the optimised LLVM IR.
        assembly: a callback giving the assembly text (made lazily).
        exporter: a callback writing a shared library to a path.
        keepalive: whatever owns the native code (an execution engine, a CDLL).
        not_runnable: why a module without an entry point cannot be called.

    Example:
        >>> f = tl.build(s, [A, B, C])  # doctest: +SKIP
        >>> f(a, b, c)  # doctest: +SKIP
        >>> f.get_source("asm")  # doctest: +SKIP
    """

    def __init__(self, signature: Signature, entry_address: int | None, *,
                 bench_address: int | None = None, ir_text: str | None = None,
                 assembly: Callable[[], str] | None = None,
                 exporter: Callable[[str], None] | None = None, keepalive: Any = None,
                 not_runnable: str = "", library_path: str | None = None,
                 release_address: int | None = None) -> None:
        self.signature = signature
        self._entry = _ENTRY(entry_address) if entry_address else None
        self._bench = _BENCH(bench_address) if bench_address else None
        self._ir_text, self._assembly_fn, self._assembly = ir_text, assembly, None
        self._exporter, self._keepalive = exporter, keepalive
        self._not_runnable = not_runnable or "this module has no native code for this machine"
        self._library_path = library_path
        self._var_names = [name for name, _ in signature.shape_vars]
        self._buffers = [(i, p) for i, p in enumerate(signature.params) if p.kind == "buffer"]
        if release_address:  # free the kernel's cached workspaces (codegen.llvm.workspace)
            weakref.finalize(self, _release_workspace, release_address, keepalive)

    @property
    def entry_name(self) -> str:
        """The C symbol of the entry point."""
        return self.signature.entry

    @property
    def runnable(self) -> bool:
        return self._entry is not None

    def __repr__(self) -> str:
        params = ", ".join(p.describe(self._var_names) for p in self.signature.params)
        words = [w if not w.startswith("-mattr=") or len(w) < 60 else "-mattr=..."
                 for w in self.signature.target.split()]
        target = f" target={' '.join(words)!r}" if words else ""
        return f"<tensorlang.Module {self.entry_name}({params}){target}>"

    # -- calling ----------------------------------------------------------------------------
    def __call__(self, *args: Any) -> None:
        """Run the kernel on ``args`` (in parameter order); outputs are written in place."""
        self._run(self._prepare(args), 1)

    def _prepare(self, args: Sequence[Any]) -> _Call:
        if self._entry is None:
            raise UnsupportedOpError(self._not_runnable)
        params = self.signature.params
        if len(args) != len(params):
            listing = ", ".join(p.describe(self._var_names) for p in params)
            raise UserError(f"{self.entry_name} takes {len(params)} arguments ({listing}), "
                            f"got {len(args)}")
        values: dict[int, int] = {}
        origins: dict[int, str] = {}
        arrays: list[_Array | None] = []
        pointers: list[int] = []
        keep: list[Any] = []
        for position, (obj, spec) in enumerate(zip(args, params)):
            if spec.kind == "scalar":
                holder = self._scalar(obj, spec, position)
                keep.append(holder)
                arrays.append(None)
                pointers.append(ctypes.addressof(holder))
                continue
            array = _as_array(obj, spec, position)
            self._check_array(array, spec, position, values, origins)
            arrays.append(array)
            keep.append(array.owner)
            pointers.append(array.address)
        self._check_derived_dims(arrays, values)
        self._check_outputs(arrays)
        shape_values = []
        for j, (name, dtype) in enumerate(self.signature.shape_vars):
            value = values[j]
            if dtype in ("int32", "uint32") and value >= 2 ** 31:
                raise ShapeError(f"{name} = {value} does not fit the kernel's {dtype} extent")
            shape_values.append(value)
        argv = (ctypes.c_void_p * max(len(pointers), 1))(*pointers)
        shapes = (ctypes.c_int64 * max(len(shape_values), 1))(*shape_values)
        return _Call(argv, shapes, keep)

    def _scalar(self, obj: Any, spec: ParamSpec, position: int):
        ctype = _SCALAR_CTYPES.get(spec.dtype)
        if ctype is None:
            raise DTypeError(f"{_culprit(spec, position)}: scalar parameters of dtype "
                             f"{spec.dtype} are not supported")
        if isinstance(obj, np.ndarray) and obj.ndim == 0:
            obj = obj.item()
        if isinstance(obj, np.generic):
            obj = obj.item()
        if not isinstance(obj, (bool, int, float)):
            raise DTypeError(f"{_culprit(spec, position)} must be a {spec.dtype} number, got "
                             f"{type(obj).__name__}")
        if isinstance(obj, float) and not spec.dtype.startswith("float"):
            raise DTypeError(f"{_culprit(spec, position)} must be an integer ({spec.dtype}), "
                             f"got {obj!r}")
        return ctype(obj)

    def _check_array(self, array: _Array, spec: ParamSpec, position: int, values: dict,
                     origins: dict) -> None:
        if len(array.shape) != len(spec.shape):
            raise ShapeError(f"{_culprit(spec, position)} must be {len(spec.shape)}-d "
                             f"({spec.describe(self._var_names)}), got {len(array.shape)}-d "
                             f"with shape {tuple(array.shape)}")
        if array.dtype != spec.dtype:
            raise DTypeError(f"{_culprit(spec, position)} must have dtype {spec.dtype} "
                             f"({spec.describe(self._var_names)}), got {array.dtype}")
        for axis, (dim, got) in enumerate(zip(spec.shape, array.shape)):
            if isinstance(dim, int):
                if dim != got:
                    raise ShapeError(f"{_culprit(spec, position)} must have shape "
                                     f"({spec.describe(self._var_names)}), got "
                                     f"{tuple(array.shape)}: axis {axis} is {got}, not {dim}")
            elif dim[0] == "var":
                self._bind(dim[1], got, f"{spec.name}.shape[{axis}]", values, origins)
        if spec.strides:
            self._check_strides(array, spec, _culprit(spec, position), values, origins)
        elif array.strides is not None and not _compact(array.shape, array.strides):
            raise UserError(f"{_culprit(spec, position)} is not contiguous (strides {array.strides} elements); "
                            "pass np.ascontiguousarray(x)")

    def _check_strides(self, array: _Array, spec: ParamSpec, where: str, values: dict,
                       origins: dict) -> None:
        strides = array.strides or _compact_strides(array.shape)
        for axis, (dim, got) in enumerate(zip(spec.strides, strides)):
            if isinstance(dim, list) or isinstance(dim, tuple):
                if dim[0] == "var":
                    self._bind(dim[1], got, f"{spec.name}.strides[{axis}]", values, origins)
                continue
            if dim != got and array.shape[axis] != 1:
                raise UserError(f"{where} must have element strides {spec.strides}, got "
                                f"{tuple(strides)}")

    def _bind(self, index: int, value: int, origin: str, values: dict, origins: dict) -> None:
        name = self._var_names[index]
        if index in values and values[index] != value:
            raise ShapeError(f"{name} is {values[index]} from {origins[index]} but {value} "
                             f"from {origin}")
        values.setdefault(index, value)
        origins.setdefault(index, origin)

    def _check_derived_dims(self, arrays: list, values: dict) -> None:
        for j, name in enumerate(self._var_names):
            if j not in values:
                raise InternalError(f"symbolic extent {name} is not bound by any argument shape")
        for position, spec in self._buffers:
            array = arrays[position]
            for axis, dim in enumerate(spec.shape):
                if isinstance(dim, int) or dim[0] == "var":
                    continue
                want = _eval_dim(dim, values)
                if want != array.shape[axis]:
                    raise ShapeError(
                        f"{_culprit(spec, position)} axis {axis} must be "
                        f"{_dim_text(dim, self._var_names)} = {want}, got {array.shape[axis]}")

    def _check_outputs(self, arrays: list) -> None:
        params = self.signature.params
        for out in self.signature.outputs:
            array, spec = arrays[out], params[out]
            if array is None:
                continue
            if not array.writeable:
                raise UserError(f"{_culprit(spec, out)} is an output but its memory is "
                                "read-only")
            start, end = array.address, array.address + array.nbytes
            for position, other in enumerate(arrays):
                if other is None or position == out:
                    continue
                if start < other.address + other.nbytes and other.address < end and \
                        other.nbytes and end > start:
                    raise UserError(f"{_culprit(spec, out)} is an output and shares memory "
                                    f"with {_culprit(params[position], position)}; outputs "
                                    "must not overlap other arguments")

    def _run(self, call: _Call, number: int) -> None:
        if number == 1:
            code = self._entry(call.argv, call.shape_values)
        else:
            code = self._bench(call.argv, call.shape_values, number)
        if code != 0:
            self._raise(code)

    def _raise(self, code: int) -> None:
        errors = self.signature.errors
        if not 1 <= code <= len(errors):
            raise InternalError(f"{self.entry_name} returned unknown error code {code}")
        kind, message = errors[code - 1]
        if kind == "oom":
            raise MemoryError(f"{self.entry_name}: {message}")
        raise UserError(f"{self.entry_name}: {message}")

    # -- timing -----------------------------------------------------------------------------
    def time_evaluator(self, number: int = 10, repeat: int = 3,
                       min_repeat_ms: float = 0) -> Callable[..., TimingResult]:
        """A function that times this kernel on given arguments.

        Arguments are checked and converted once; each repeat then runs ``number`` calls in a
        native loop (``number`` grows until a repeat takes ``min_repeat_ms``).

        Example:
            >>> timer = f.time_evaluator(number=100, repeat=5)  # doctest: +SKIP
            >>> timer(a, b, c).median  # seconds per call  # doctest: +SKIP
        """
        if number < 1 or repeat < 1:
            raise UserError(f"time_evaluator needs number >= 1 and repeat >= 1, got "
                            f"number={number}, repeat={repeat}")

        def evaluate(*args: Any) -> TimingResult:
            call = self._prepare(args)
            self._run(call, 1)  # warm up: page in code and data
            count, results = number, []
            while len(results) < repeat:
                seconds = self._timed(call, count)
                if seconds * 1e3 < min_repeat_ms:
                    scale = min_repeat_ms / max(seconds * 1e3, 1e-3)
                    count = max(count + 1, int(count * min(scale * 1.1, 1000)))
                    continue
                results.append(seconds / count)
            return TimingResult(tuple(results), count)

        return evaluate

    def _timed(self, call: _Call, count: int) -> float:
        if self._bench is not None:
            start = time.perf_counter()
            self._run(call, count)
            return time.perf_counter() - start
        entry, argv, shapes = self._entry, call.argv, call.shape_values
        start = time.perf_counter()
        for _ in range(count):
            code = entry(argv, shapes)
            if code:
                self._raise(code)
        return time.perf_counter() - start

    # -- source and export ------------------------------------------------------------------
    def get_source(self, fmt: str = "ll") -> str:
        """The optimised LLVM IR (``"ll"``) or the assembly (``"asm"``)."""
        if fmt in ("ll", "llvm", "ir"):
            if self._ir_text is None:
                raise UnsupportedOpError("this module was loaded from a library: its LLVM IR "
                                         "is not kept")
            return self._ir_text
        if fmt in ("asm", "s"):
            if self._assembly is None:
                if self._assembly_fn is None:
                    raise UnsupportedOpError("this module has no assembly to show")
                self._assembly = self._assembly_fn()
            return self._assembly
        raise UserError(f"unknown source format {fmt!r}; use 'll' or 'asm'")

    def export_library(self, path: str | os.PathLike) -> None:
        """Write the kernel as a shared library that :func:`load_module` loads back."""
        path = os.fspath(path)
        if self._exporter is not None:
            self._exporter(path)
        elif self._library_path is not None:
            shutil.copyfile(self._library_path, path)
        else:
            raise UnsupportedOpError("this module cannot be exported")


def _compact_strides(shape: Sequence[int]) -> tuple:
    strides, step = [], 1
    for extent in reversed(shape):
        strides.append(step)
        step *= max(extent, 1)
    return tuple(reversed(strides))


def _compact(shape: Sequence[int], strides: Sequence[int]) -> bool:
    if 0 in shape:
        return True
    return all(e == 1 or s == c for e, s, c in zip(shape, strides, _compact_strides(shape)))


# -- loading libraries -----------------------------------------------------------------------

_launch_provider: list[Callable[[], int]] = []


def register_parallel_launch(provider: Callable[[], "int | None"]) -> None:
    """Register where loaded libraries' parallel loops launch (``tl_parallel_launch``).

    The CPU code generator registers its thread pool when imported; without one, a loaded
    library runs its parallel loops serially.
    """
    _launch_provider[:] = [provider]


def _release_workspace(address: int, keepalive: Any) -> None:
    """Call a module's ``<entry>__release_workspace`` (``keepalive`` holds its code until
    then)."""
    ctypes.CFUNCTYPE(None)(address)()


def load_module(path: str | os.PathLike, ir_text: str | None = None) -> Module:
    """Load a library written by :meth:`Module.export_library`; ``ir_text``, when the caller
    kept it, is the module's LLVM IR (``get_source()``), which the library itself does not hold.

    Raises:
        UserError: the file is missing or is not a tensorlang library.

    Example:
        >>> f.export_library("k.so"); g = load_module("k.so"); g(a, b, c)  # doctest: +SKIP
    """
    path = os.path.abspath(os.fspath(path))
    try:
        library = ctypes.CDLL(path)
    except OSError as err:
        raise UserError(f"cannot load {path}: {err}") from None
    try:
        info_address = ctypes.addressof(ctypes.c_char.in_dll(library, INFO_SYMBOL))
    except ValueError:
        raise UserError(f"{path} is not a tensorlang library (no {INFO_SYMBOL})") from None
    info = json.loads(ctypes.string_at(info_address).decode("utf-8"))
    if info.get("format") != 1:
        raise UserError(f"{path}: unsupported tensorlang library format {info.get('format')}")
    signature = Signature.from_json(info["signature"])

    def address(name: str) -> int:
        return ctypes.cast(getattr(library, name), ctypes.c_void_p).value

    launch = info.get("parallel_launch")
    pool = _launch_provider[0]() if launch and _launch_provider else None
    if pool:  # else the library's own serial launcher runs parallel loops
        ctypes.c_void_p.in_dll(library, launch).value = pool
    release = getattr(library, f"{signature.entry}__release_workspace", None)
    return Module(signature, address(signature.entry),
                  bench_address=address(info["bench"]) if info.get("bench") else None,
                  keepalive=library, library_path=path, ir_text=ir_text,
                  release_address=ctypes.cast(release, ctypes.c_void_p).value
                  if release is not None else None)
