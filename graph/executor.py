"""Run a built model: the static plan of kernel calls and the memory they use.

The plan is fixed at build time. Every intermediate value gets a view of a storage slot; slots
are reused once the values in them are dead (best fit by size), so ``planned_bytes`` is usually
far below ``naive_bytes`` (one buffer per intermediate). Model outputs are new arrays on every
run. Because intermediates live in the library's own buffers, one Library runs one call at a
time (build another for concurrent use).

Example::

    lib = graph.build(mod)
    lib.input_names, lib.output_names
    (y,) = lib.run(x)                 # or lib.run(input=x)
    lib.profile(x)                    # [(group name, seconds), ...] slowest first
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from tensorlang.errors import DTypeError, ShapeError, UserError

from .ir import Constant, Module, TupleGetItem, Var


@dataclass
class Step:
    """One kernel call: the compiled kernel, the nodes it reads, the nodes it computes (one,
    or a TupleGetItem per result of a multi-output call)."""
    name: str
    kernel: object
    inputs: list
    outputs: list


def value_key(node):
    """The key of a value in the run environment: output ``k`` of a multi-output call is the
    same value whichever TupleGetItem node names it."""
    if isinstance(node, TupleGetItem):
        return (id(node.tuple_value), node.index)
    return id(node)


class Library:
    """A compiled model. Attributes: ``input_names`` and ``output_names`` (model order),
    ``num_kernels`` (kernel calls per run, one per fused group), ``num_compiled`` (distinct
    kernels compiled), ``planned_bytes`` / ``naive_bytes`` (intermediate memory with and
    without reuse), ``groups`` (the group names in run order).

    Example:
        >>> lib = graph.build(graph.from_onnx("model.onnx"))   # doctest: +SKIP
        >>> (probs,) = lib.run(image)                           # doctest: +SKIP
    """

    def __init__(self, mod: Module, steps: list, num_compiled: int, device: str = "cpu"):
        self.module = mod
        self.device = device
        self.input_names = tuple(mod.input_names)
        self.output_names = tuple(mod.output_names)
        self._params = list(mod.function.params)
        self._outputs = list(mod.function.outputs)
        self._steps = steps
        self.num_kernels = len(steps)
        self.num_compiled = num_compiled
        self.groups = [s.name for s in steps]
        self.specializations = None  # per-size libraries of a model with symbolic dims
        self.target, self.database = None, None  # set by graph.build
        self._device_runner = None
        if device == "cuda":  # device slots, allocated at the first run (graph/gpu.py)
            from .gpu import DeviceRunner
            self._device_runner = DeviceRunner(self)
            self.planned_bytes = self._device_runner.planned_bytes
            self.naive_bytes = self._device_runner.naive_bytes
        else:
            self._plan_memory()
        self._calls = None  # the kernel calls with their arguments converted (_run_steps)

    def sources(self, fmt: str | None = None) -> dict:
        """``{group name: kernel source}``: CUDA C for a ``cuda`` build (``fmt="cubin"``: the
        machine code), LLVM IR for ``llvm``; groups with nothing to compute are left out."""
        if fmt is None:
            fmt = "cuda" if self.device == "cuda" else "ll"
        return {s.name: s.kernel.get_source(fmt) for s in self._steps
                if hasattr(s.kernel, "get_source")}

    # -- memory plan --------------------------------------------------------------------------
    def _plan_memory(self) -> None:
        from .memory_plan import plan_slots
        outputs = {value_key(o) for o in self._outputs}
        # 8-byte granules: every dtype's views of a slot stay aligned
        sizes, slot_of, self.naive_bytes = plan_slots(self._steps, outputs, keep_outputs=False,
                                                      granule=8)
        slots = [np.empty(size // 8, np.float64).view(np.uint8) for size in sizes]
        self._views: dict = {}
        for step in self._steps:
            for out in step.outputs:
                key = value_key(out)
                if key in slot_of and key not in self._views:
                    need = out.type.nbytes
                    self._views[key] = slots[slot_of[key]][:need].view(out.type.dtype) \
                        .reshape(out.type.shape)
        self.planned_bytes = sum(s.nbytes for s in slots)

    # -- running ------------------------------------------------------------------------------
    def _given(self, args, kwargs) -> dict:
        return given_inputs(self.input_names, args, kwargs)

    def _missing(self, name: str) -> UserError:
        return UserError(f"input {name!r} is missing; the model's inputs are "
                         f"{list(self.input_names)}")

    def _bind(self, args, kwargs) -> dict:
        given = self._given(args, kwargs)
        env = {}
        for name, param in zip(self.input_names, self._params):
            if name not in given:
                raise self._missing(name)
            value = host_array(given[name], name)
            want = param.type
            if value.dtype != np.dtype(want.dtype):
                raise DTypeError(f"input {name!r} must be {want.dtype}, got {value.dtype}")
            if tuple(value.shape) != want.shape:
                raise ShapeError(f"input {name!r} must have shape {want.shape}, got "
                                 f"{tuple(value.shape)}")
            env[id(param)] = value if value.flags.c_contiguous else np.array(value, order="C")
        return env

    def _value(self, env, node):
        key = value_key(node)
        if key in env:
            return env[key]
        if isinstance(node, Constant):
            return node.value
        raise UserError(f"graph input {getattr(node, 'name', node)!r} has no value")

    def _prepare(self, args, kwargs):
        env = self._bind(args, kwargs)
        env.update(self._views)
        outputs = {value_key(o) for o in self._outputs}
        for step in self._steps:
            for out in step.outputs:
                if value_key(out) in outputs:
                    env[value_key(out)] = np.empty(out.type.shape, out.type.dtype)
        return env

    def _results(self, env) -> list:
        results, seen = [], set()
        for o in self._outputs:
            value = self._value(env, o)
            if isinstance(o, (Var, Constant)) or value_key(o) in seen:
                value = np.array(value, copy=True)
            seen.add(value_key(o))
            results.append(value)
        return results

    def _specialized(self, args, kwargs):
        """The library for these inputs' sizes of the model's symbolic dims, or None when
        this one fits (graph/dynamic.py)."""
        if self.specializations is None:
            return None
        from .dynamic import input_shape
        shapes = {name: input_shape(v) for name, v in self._given(args, kwargs).items()}
        return self.specializations.library_for(
            {k: v for k, v in shapes.items() if v is not None})

    def run(self, *args, **kwargs) -> list:
        """Run the model on NumPy arrays, ``tl.nd`` arrays or CPU tensors of any DLPack
        producer (PyTorch, ...; read in place, zero-copy, when C-contiguous), positional in
        input order or by input name; returns new arrays in output order: torch tensors
        (sharing the result's memory) when an input is a torch tensor, NumPy arrays otherwise.
        A model with symbolic dims (a dynamic batch) runs any size of them: each new size is
        compiled once and cached.

        Raises:
            UserError: an input is missing, unknown, or has the wrong shape or dtype (the
                message names it).
            CudaUnavailableError: a ``cuda`` build run where there is no usable GPU.

        A ``cuda`` build also takes CUDA tensors (PyTorch, CuPy, ``tl.nd`` on "cuda"; used in
        place, zero-copy): it returns torch tensors on the GPU when an input is a torch tensor,
        ``tl.nd`` CUDA arrays for other CUDA inputs, NumPy arrays otherwise.
        """
        other = self._specialized(args, kwargs)
        if other is not None:
            return other.run(*args, **kwargs)
        if self._device_runner is not None:
            return self._device_runner.run(args, kwargs)
        env = self._prepare(args, kwargs)
        self._run_steps(env)
        results = self._results(env)
        if any(_is_torch(v) for v in (*args, *kwargs.values())):
            return [_to_torch(r) for r in results]
        return results

    def _run_steps(self, env) -> None:
        """Call every kernel on ``env``'s arrays. The first run converts each call's arguments
        (the kernel checks every shape and dtype) and keeps them: planned buffers and weights
        stay where they are, so later runs only put the new input and output addresses in and
        call the entry points (about 1 us a call instead of 15: ShuffleNet makes 78)."""
        if self._calls is None:
            self._calls = self._first_run(env)
            return
        for kernel, call, changing in self._calls:
            if call is None:  # not a tensorlang kernel: called the plain way
                kernel(*[self._value(env, n) for n in changing])
                continue
            argv = call.argv
            for position, key in changing:
                argv[position] = env[key].ctypes.data
            code = kernel._entry(argv, call.shape_values)
            if code:
                kernel._raise(code)

    def _first_run(self, env) -> list:
        """Run the steps the checked way; ``[(kernel, converted call, per-run arguments)]``
        for :meth:`_run_steps`: for a tensorlang kernel, the argument positions whose arrays
        change between runs (the model's inputs and outputs) with their keys; for any other
        callable no call and all its argument nodes."""
        per_run = {id(p) for p in self._params} | {value_key(o) for o in self._outputs}
        calls = []
        for step in self._steps:
            nodes = [*step.inputs, *step.outputs]
            arrays = [self._value(env, n) for n in nodes]
            kernel = step.kernel
            if not all(hasattr(kernel, a) for a in ("_prepare", "_run", "_entry", "_raise")):
                kernel(*arrays)
                calls.append((kernel, None, nodes))
                continue
            call = kernel._prepare(arrays)
            kernel._run(call, 1)
            changing = [(i, value_key(n)) for i, n in enumerate(nodes)
                        if value_key(n) in per_run]
            calls.append((kernel, call, changing))
        return calls

    def profile(self, *args, number: int = 5, **kwargs) -> list:
        """``[(group name, seconds per call), ...]``, slowest first: each kernel call timed
        over ``number`` runs of the model after one warm-up run (on ``cuda``: CUDA events
        around each group's launches)."""
        other = self._specialized(args, kwargs)
        if other is not None:
            return other.profile(*args, number=number, **kwargs)
        if self._device_runner is not None:
            return self._device_runner.profile(args, kwargs, number)
        env = self._prepare(args, kwargs)
        calls = [(step, [self._value(env, a) for a in step.inputs] +
                  [env[value_key(o)] for o in step.outputs]) for step in self._steps]
        times = {step.name: 0.0 for step in self._steps}
        for rep in range(number + 1):
            for step, arrays in calls:
                start = time.perf_counter()
                step.kernel(*arrays)
                if rep:
                    times[step.name] += time.perf_counter() - start
        return sorted(((name, t / number) for name, t in times.items()), key=lambda p: -p[1])

    def export_library(self, path, database=None, prefix: str = "model") -> None:
        """Write this CPU-built model as one shared library ``path`` with a plain C API, and
        its header beside it (same stem, ``.h``); BLAS groups become our own kernels there.
        See :func:`graph.export.export_library` for the arguments and errors.

        Example:
            >>> lib.export_library("model.so"); m = graph.load_library("model.so")  # doctest: +SKIP
        """
        from .export import export_library  # graph/export.py imports this module
        export_library(self, path, database=database, prefix=prefix)

    def __repr__(self):
        device = f", device={self.device!r}" if self.device != "cpu" else ""
        return (f"Library(inputs={list(self.input_names)}, outputs={list(self.output_names)}, "
                f"kernels={self.num_kernels}{device})")


def given_inputs(input_names, args, kwargs) -> dict:
    """``{input name: value}`` from positional (in ``input_names`` order) and keyword
    arguments; a UserError for too many, unknown or doubly given inputs."""
    if len(args) > len(input_names):
        raise UserError(f"the model takes {len(input_names)} inputs {list(input_names)}, got "
                        f"{len(args)} positional arguments")
    given = dict(zip(input_names, args))
    for name, value in kwargs.items():
        if name not in input_names:
            raise UserError(f"the model has no input named {name!r}; its inputs are "
                            f"{list(input_names)}")
        if name in given:
            raise UserError(f"input {name!r} is given twice (by position and by name)")
        given[name] = value
    return given


def _torch_int16():
    import torch
    return torch.int16


def _to_torch(array: np.ndarray):
    """A torch tensor sharing ``array``'s memory (bfloat16 through its 16-bit storage)."""
    import torch
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def _is_torch(value) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "__dlpack__")


def host_array(value, name: str) -> np.ndarray:
    """A run-time input as a NumPy array: NumPy as it is; ``tl.nd`` arrays and CPU DLPack
    tensors (torch, ...) zero-copy where they allow it; anything else through np.asarray.

    Raises:
        UserError: a tensor on another device (the message names the input).
    """
    if isinstance(value, np.ndarray):
        return value
    if _is_torch(value):
        if value.device.type != "cpu":
            raise UserError(f"input {name!r} is a torch tensor on {value.device}; this "
                            "library runs on the CPU (move it with .cpu(), or build for cuda)")
        value = value.detach().resolve_conj().resolve_neg()
        if str(value.dtype) == "torch.bfloat16":  # NumPy has no bfloat16: ml_dtypes' one
            import ml_dtypes
            return value.view(_torch_int16()).numpy().view(ml_dtypes.bfloat16)
        try:
            return np.from_dlpack(value)
        except (BufferError, RuntimeError, TypeError) as exc:
            raise UserError(f"input {name!r}: cannot read the torch tensor of "
                            f"{value.dtype} through DLPack ({exc})") from exc
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    if hasattr(value, "__dlpack__"):
        try:
            return np.from_dlpack(value)
        except (BufferError, RuntimeError, TypeError) as exc:
            raise UserError(f"input {name!r}: cannot read it through DLPack ({exc})") from exc
    return np.asarray(value)


__all__ = ["Library", "Step", "value_key", "host_array", "given_inputs"]
