"""CudaModule: a compiled GPU function you can call on CUDA arrays.

Holds the CUDA C source, cubins per architecture (compiled on first need: the device's own
architecture when it runs, the target's ``-arch`` or sm_90 for ``get_source("cubin")`` without
a GPU), and per kernel its launch extents and parameters. Calls take ``tl.nd`` arrays on
``"cuda"`` and DLPack CUDA tensors (PyTorch, CuPy; zero-copy), check them like the CPU module
(count, rank, dtype, shape, symbolic extents, contiguity, non-overlapping outputs; errors name
the argument) and launch the kernels in order on the default stream.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from tensorlang import dtype as dt
from tensorlang import expr as E
from tensorlang.errors import DTypeError, ShapeError, UnsupportedOpError, UserError
from tensorlang.ir.buffer import Buffer
from tensorlang.runtime.module import Module, TimingResult, _Array, _culprit

from .nvrtc import compile_cuda
from .source import INDEX_LIMIT, CudaSource, KernelSpec

_LAUNCH_ORDER = (("blockIdx.x", "blockIdx.y", "blockIdx.z"),
                 ("threadIdx.x", "threadIdx.y", "threadIdx.z"))


def param_kind(dtype: str) -> str:
    """How a scalar parameter of ``dtype`` is passed to a kernel (see source.param_type)."""
    element = dt.element_of(dtype)
    if element in ("float32", "float16", "bfloat16"):
        return "float32"
    if element == "float64":
        return "float64"
    if element in ("int64", "uint32", "uint64"):
        return "int64"
    return "int32"


def _eval(e, env: dict) -> int:
    """The integer value of a host expression (constants, shape variables, parameters)."""
    if isinstance(e, E.IntImm):
        return int(e.value)
    if isinstance(e, E.Var):
        return int(env[e.uid])
    if isinstance(e, E.Cast):
        return _eval(e.value, env)
    a, b = _eval(e.a, env), _eval(e.b, env)
    if isinstance(e, E.Add):
        return a + b
    if isinstance(e, E.Sub):
        return a - b
    if isinstance(e, E.Mul):
        return a * b
    if isinstance(e, E.FloorDiv):
        return a // b if b else 0
    if isinstance(e, E.FloorMod):
        return a % b if b else 0
    if isinstance(e, E.Div):
        return int(a / b) if b else 0
    if isinstance(e, E.Mod):
        return int(math.fmod(a, b)) if b else 0
    if isinstance(e, E.Min):
        return min(a, b)
    if isinstance(e, E.Max):
        return max(a, b)
    raise UnsupportedOpError(f"launch extent `{e}` cannot be evaluated on the host")


class CudaModule(Module):
    """A GPU function: ``f(*arrays)`` launches its kernels on the current device.

    Example:
        >>> f = tl.build(s, [A, B, C], target="cuda")  # doctest: +SKIP
        >>> print(f.get_source())                      # CUDA C  # doctest: +SKIP
        >>> f(a, b, c)  # tl.nd CUDA arrays or torch tensors  # doctest: +SKIP
    """

    def __init__(self, func, source: CudaSource, signature, arch: str | None,
                 target: str) -> None:
        super().__init__(signature, None, not_runnable="")
        self.func = func
        self._source = source
        self.kernels: list[KernelSpec] = source.kernels
        self._target_arch = arch
        self._target = target
        self._cubins: dict[str, bytes] = {}
        self._loaded: dict[str, Any] = {}
        self._scratch: dict = {}
        self._param_index = {p.uid: i for i, p in enumerate(func.params)
                             if isinstance(p, Buffer)}
        self._scalar_index = {p.uid: i for i, p in enumerate(func.params)
                              if isinstance(p, E.Var)}
        from .source import _shape_vars
        self._shape_var_uids = [v.uid for v in _shape_vars(func)]

    def __repr__(self) -> str:
        params = ", ".join(p.describe(self._var_names) for p in self.signature.params)
        return f"<tensorlang.CudaModule {self.entry_name}({params}) target={self._target!r}>"

    @property
    def runnable(self) -> bool:
        from tensorlang.runtime import cuda
        return cuda.available()

    # -- source --------------------------------------------------------------------------
    def get_source(self, fmt: str = "cuda"):
        """The CUDA C (``"cuda"``, ``"cu"``) or a cubin (``"cubin"``, bytes) for the device's
        architecture, or the target's ``-arch`` (sm_90 by default) without a GPU."""
        if fmt in ("cuda", "cu", "c", "source", ""):
            return self._source.text
        if fmt == "cubin":
            return self.cubin(self._default_arch())
        raise UserError(f"unknown source format {fmt!r}; use 'cuda' or 'cubin'")

    def _default_arch(self) -> str:
        if self._target_arch:
            return self._target_arch
        from tensorlang.runtime import cuda
        if cuda.available():
            return cuda.device_properties().arch
        return "sm_90"

    def cubin(self, arch: str) -> bytes:
        """The cubin of this module for ``arch`` (compiled once, then cached)."""
        if arch not in self._cubins:
            self._cubins[arch] = compile_cuda(self._source.text, arch)
        return self._cubins[arch]

    def export_library(self, path) -> None:
        raise UnsupportedOpError("export_library of CUDA modules is not supported yet; "
                                 "get_source('cubin') gives the machine code")

    # -- calling -------------------------------------------------------------------------
    def __call__(self, *args: Any) -> None:
        """Launch the kernels on ``args`` (in parameter order); outputs are written in place."""
        self._launch(self._prepare(args))

    def _functions(self) -> list:
        from tensorlang.runtime import cuda
        arch = cuda.device_properties().arch
        if arch not in self._loaded:
            module = cuda.load_module(self.cubin(arch))
            self._loaded[arch] = [module.function(k.name) for k in self.kernels]
        return self._loaded[arch]

    def _prepare(self, args: Sequence[Any]):
        from tensorlang.runtime import cuda
        cuda.require(f"running the CUDA kernel {self.entry_name}")
        params = self.signature.params
        if len(args) != len(params):
            listing = ", ".join(p.describe(self._var_names) for p in params)
            raise UserError(f"{self.entry_name} takes {len(params)} arguments ({listing}), "
                            f"got {len(args)}")
        values: dict = {}
        origins: dict = {}
        arrays: list = []
        scalars: dict = {}
        for position, (obj, spec) in enumerate(zip(args, params)):
            if spec.kind == "scalar":
                scalars[position] = self._scalar_value(obj, spec, position)
                arrays.append(None)
                continue
            array = _as_cuda_array(obj, spec, position)
            self._check_array(array, spec, position, values, origins)
            arrays.append(array)
        self._check_derived_dims(arrays, values)
        self._check_outputs(arrays)
        env = {}
        for j, uid in enumerate(self._shape_var_uids):
            env[uid] = values[j]
        for uid, position in self._scalar_index.items():
            env[uid] = scalars[position]
        for position, array in enumerate(arrays):
            if array is not None and math.prod(array.shape) >= INDEX_LIMIT and \
                    not all(isinstance(d, int) for d in params[position].shape):
                raise ShapeError(f"{_culprit(params[position], position)} has "
                                 f"{math.prod(array.shape)} elements; this kernel indexes with "
                                 "32 bits (at most 2**31 - 1 elements)")
        launches = []
        for spec in self.kernels:
            grid = tuple(self._extent(spec, tag, env) for tag in _LAUNCH_ORDER[0])
            block = tuple(self._extent(spec, tag, env) for tag in _LAUNCH_ORDER[1])
            kargs = []
            for p in spec.params:
                if isinstance(p, Buffer):
                    address = self._address(p, arrays, env)
                    need = spec.align.get(p.uid, 1)
                    if address % need:
                        position = self._param_index.get(p.uid)
                        who = (_culprit(params[position], position) if position is not None
                               else f"scratch buffer {p.name}")
                        raise UserError(f"{who} must be {need}-byte aligned for the vector "
                                        f"accesses of kernel {spec.name} (address {address:#x});"
                                        " pass a contiguous copy")
                    kargs.append((address, "ptr"))
                else:
                    value = env[p.uid]
                    kargs.append((value, param_kind(p.dtype)))
            if 0 in grid:
                continue  # nothing to do (an empty extent)
            launches.append((spec, grid, block, kargs))
        return launches, arrays  # arrays keep DLPack imports alive during the launch

    def _extent(self, spec: KernelSpec, tag: str, env: dict) -> int:
        extents = spec.launch.extents.get(tag)
        if not extents:
            return 1
        return max(0, max(_eval(e, env) for e in extents))

    def _address(self, buf: Buffer, arrays: list, env: dict) -> int:
        position = self._param_index.get(buf.uid)
        if position is not None:
            return arrays[position].address
        count = 1
        for extent in buf.allocation_extents():
            count *= _eval(extent, env)
        count *= dt.lanes_of(buf.dtype)
        key = (buf.uid, count)
        scratch = self._scratch.get(key)
        if scratch is None:
            from tensorlang.runtime import ndarray
            scratch = ndarray.empty((max(count, 1),), _scratch_dtype(buf.dtype), device="cuda")
            self._scratch = {k: v for k, v in self._scratch.items() if k[0] != buf.uid}
            self._scratch[key] = scratch
        return scratch.data_ptr

    def _scalar_value(self, obj: Any, spec, position: int):
        if isinstance(obj, np.ndarray) and obj.ndim == 0:
            obj = obj.item()
        if isinstance(obj, np.generic):
            obj = obj.item()
        if not isinstance(obj, (bool, int, float)):
            raise DTypeError(f"{_culprit(spec, position)} must be a {spec.dtype} number, got "
                             f"{type(obj).__name__}")
        if isinstance(obj, float) and not dt.is_float(spec.dtype):
            raise DTypeError(f"{_culprit(spec, position)} must be an integer ({spec.dtype}), "
                             f"got {obj!r}")
        return obj

    def _launch(self, prepared) -> None:
        launches, _keep = prepared
        functions = self._functions()
        by_name = {k.name: f for k, f in zip(self.kernels, functions)}
        for spec, grid, block, kargs in launches:
            by_name[spec.name].launch(grid, block, kargs)

    # -- timing --------------------------------------------------------------------------
    def time_evaluator(self, number: int = 10, repeat: int = 3,
                       min_repeat_ms: float = 0) -> Callable[..., TimingResult]:
        """A function timing this module on given arguments with CUDA events.

        Each repeat launches ``number`` times between two events on the default stream
        (``number`` grows until a repeat takes ``min_repeat_ms``); results are seconds per call.
        """
        if number < 1 or repeat < 1:
            raise UserError(f"time_evaluator needs number >= 1 and repeat >= 1, got "
                            f"number={number}, repeat={repeat}")

        def evaluate(*args: Any) -> TimingResult:
            from tensorlang.runtime import cuda
            prepared = self._prepare(args)
            self._launch(prepared)  # warm up: load the module, touch the data
            cuda.synchronize()
            start, end = cuda.Event(), cuda.Event()
            count, results = number, []
            while len(results) < repeat:
                start.record()
                for _ in range(count):
                    self._launch(prepared)
                end.record()
                end.synchronize()
                ms = cuda.Event.elapsed_ms(start, end)
                if ms < min_repeat_ms:
                    scale = min_repeat_ms / max(ms, 1e-3)
                    count = max(count + 1, int(count * min(scale * 1.1, 1000)))
                    continue
                results.append(ms * 1e-3 / count)
            return TimingResult(tuple(results), count)

        return evaluate


def _scratch_dtype(dtype: str) -> str:
    element = dt.element_of(dtype)
    return "uint16" if element in ("float16", "bfloat16") else element


def _as_cuda_array(obj: Any, spec, position: int) -> _Array:
    from tensorlang.runtime.ndarray import NDArray, from_dlpack
    if isinstance(obj, np.ndarray):
        raise UserError(f"{_culprit(spec, position)} is a NumPy array in host memory; this "
                        "module runs on the GPU: pass tl.nd.array(x, device='cuda') (or a "
                        "CUDA tensor from PyTorch / CuPy)")
    if not isinstance(obj, NDArray) and hasattr(obj, "__dlpack__"):
        device = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else (1, 0)
        if int(device[0]) != 2:  # kDLCUDA
            raise UserError(f"{_culprit(spec, position)} lives on DLPack device "
                            f"{tuple(device)}, not a CUDA GPU; copy it to the GPU first")
        obj = from_dlpack(obj)
    if isinstance(obj, NDArray):
        if not str(obj.device).startswith("cuda"):
            raise UserError(f"{_culprit(spec, position)} is on {obj.device}, not the GPU; use "
                            "tl.nd.array(x, device='cuda')")
        return _Array(obj.data_ptr, tuple(obj.shape), obj.dtype, obj.strides,
                      not getattr(obj, "readonly", False), obj)
    raise UserError(f"{_culprit(spec, position)} must be a tl.nd CUDA array or a DLPack CUDA "
                    f"tensor, got {type(obj).__name__}")
