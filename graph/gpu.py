"""Whole models on NVIDIA GPUs: what ``graph.build(mod, target="cuda")`` does differently.

Compilation (see :func:`graph.compile.compile_kernels`): each fused group is one CUDA module
(``Task(spec, target="cuda").apply_best(database)``: a tuned record, or the GPU sketch's default
schedule). The CPU path sends convolutions and dense layers to the CPU BLAS through extern
stages; a CUDA group spec (``"device": "cuda"``) rebuilds them as plain DSL reductions instead
(:func:`gpu_compute`), so every group has a GPU schedule. When PyTorch with CUDA is importable in
the building process, convolutions and large dense / matmul layers are run by the vendor
libraries instead (cuDNN / cuBLAS through ``torch.nn.functional``, on zero-copy DLPack views of
our device buffers, TF32 off so results are float32-exact like ours); the group's elementwise
consumers (bias, relu, residual add) then form a CUDA kernel of their own, the *epilogue*, which
reads the vendor result (:class:`VendorKernel`).

Execution (:class:`DeviceRunner`, used by :class:`graph.executor.Library` on ``cuda``): one
static memory plan of device slots (reused by liveness; model outputs get slots of their own),
weights copied to the device once (first run), NumPy inputs copied into device input buffers
once per run, CUDA DLPack inputs (PyTorch, CuPy, ``tl.nd``) used in place. Launch arguments are
checked once per step and reused while the addresses stay the same. Results: NumPy arrays for
NumPy inputs, torch tensors for torch inputs, ``tl.nd`` CUDA arrays for other CUDA inputs (new
copies in every case). Nothing here touches the GPU before the first run, so a model compiles
on a machine without one.

Example::

    lib = graph.build(graph.from_onnx("resnet50.onnx"), target="cuda")
    (probs,) = lib.run(image)                       # NumPy in, NumPy out
    (probs,) = lib.run(torch_image.cuda())          # torch CUDA in, torch CUDA out
    print(lib.sources()["fused_softmax_70"])        # CUDA C of a group
"""
from __future__ import annotations

import contextlib
import json
import math
import warnings
from dataclasses import dataclass

import numpy as np

from tensorlang.errors import DTypeError, ShapeError, UserError

__all__ = ["is_cuda_target", "gpu_compute", "VendorPlan", "vendor_plan", "VendorKernel",
           "torch_cuda_usable", "DeviceRunner", "VENDOR_MIN_MACS"]

VENDOR_OPS = ("conv2d", "dense", "matmul")
VENDOR_MIN_MACS = 1 << 20   # dense / matmul layers below this stay in our kernels


def is_cuda_target(target) -> bool:
    """Whether ``target`` names an NVIDIA GPU (``"cuda"``, ``"cuda -arch=sm_90"``)."""
    words = str(target).split()
    return bool(words) and words[0] in ("cuda", "nvptx")


# -- computations without CPU BLAS externs ----------------------------------------------------
def _conv2d_gpu(xs, attrs):
    """``conv2d`` as a DSL reduction (the CPU op's im2col + sgemm extern cannot run on a GPU)."""
    from .ops.nn import conv2d_compute
    return conv2d_compute(xs, attrs, allow_blas=False)


def _dense_gpu(xs, attrs):
    from tensorlang import ops as T
    return T.nn.dense(xs[0], xs[1])


_GPU_COMPUTE = {"conv2d": _conv2d_gpu, "dense": _dense_gpu}


def gpu_compute(op_name: str):
    """The compute function of graph op ``op_name`` for CUDA groups."""
    from .ops import get_op
    return _GPU_COMPUTE.get(op_name) or get_op(op_name).compute


# -- vendor libraries (PyTorch) -----------------------------------------------------------------
def torch_cuda_usable() -> bool:
    """Whether PyTorch with a usable CUDA device is importable here (builds call it in the
    main process only: it initialises CUDA)."""
    try:
        import torch
    except Exception:  # noqa: BLE001 -- not installed, or a broken install: our kernels
        return False
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001
        return False


def _thaw(value):
    return tuple(_thaw(v) for v in value) if isinstance(value, list) else value


@dataclass
class VendorPlan:
    """A group whose first op runs in a vendor library: ``op`` and its ``attrs``, the group
    inputs it reads (``operands``, indices), its result ``shape``, and the ``epilogue`` (the
    rest of the group as a spec whose inputs are the group inputs ``epilogue_inputs`` then the
    vendor result; None when the group is the op alone)."""
    op: str
    attrs: dict
    operands: list
    shape: tuple
    epilogue: str | None
    epilogue_inputs: list


def _op_shape(op: str, attrs: dict, in_types: list) -> tuple:
    from tensorlang.ops._util import const_int
    from .ir import TensorType
    from .ops import placeholders
    ins = placeholders([TensorType(tuple(s), d) for s, d in in_types])
    out = gpu_compute(op)(ins, attrs)
    return tuple(const_int(d) for d in out.shape)


def vendor_plan(spec: str) -> VendorPlan | None:
    """How a CUDA group ``spec`` runs with the vendor libraries, or None when it does not:
    float32 convolutions that are not depthwise, dense / matmul layers of at least
    :data:`VENDOR_MIN_MACS` multiply-adds."""
    data = json.loads(spec)
    op, raw_attrs, refs = data["ops"][0]
    if op not in VENDOR_OPS or any(kind != "i" for kind, _ in refs) or len(refs) != 2:
        return None
    attrs = {key: _thaw(v) for key, v in raw_attrs}
    in_types = [data["inputs"][k] for _, k in refs]
    if any(dtype != "float32" for _, dtype in in_types):
        return None
    (a_shape, _), (b_shape, _) = in_types
    if op == "conv2d":
        groups = attrs.get("groups", 1)
        if len(a_shape) != 4 or len(b_shape) != 4 or groups < 1 or \
                b_shape[1] * groups != a_shape[1] or b_shape[0] % groups:
            return None
        if groups > 1 and groups == a_shape[1] and b_shape[1] == 1:
            return None  # depthwise: our kernel
    elif op == "dense":
        if len(a_shape) != 2 or len(b_shape) != 2 or a_shape[1] != b_shape[1] or \
                a_shape[0] * a_shape[1] * b_shape[0] < VENDOR_MIN_MACS:
            return None
    else:  # matmul
        if len(a_shape) < 2 or len(b_shape) < 2:
            return None
        if len(a_shape) > 2 or len(b_shape) > 2:
            if attrs.get("transpose_a") or attrs.get("transpose_b"):
                return None
    try:
        shape = _op_shape(op, attrs, in_types)
    except UserError:
        return None  # malformed: our compute reports it when the group is compiled
    if op == "matmul":
        k = a_shape[-2] if attrs.get("transpose_a") else a_shape[-1]
        if math.prod(shape) * k < VENDOR_MIN_MACS:
            return None
    rest = data["ops"][1:]
    epilogue, used = None, []
    if rest:
        for _, _, rr in rest:
            for kind, k in rr:
                if kind == "i" and k not in used:
                    used.append(k)
        new = {k: j for j, k in enumerate(used)}
        result = len(used)
        ops = []
        for name, a, rr in rest:
            ops.append([name, a, [["i", new[k]] if kind == "i" else
                                  (["i", result] if k == 0 else ["o", k - 1])
                                  for kind, k in rr]])
        inputs = [data["inputs"][k] for k in used] + [[list(shape), "float32"]]
        epilogue = json.dumps({"inputs": inputs, "ops": ops, "device": "cuda"},
                              separators=(",", ":"))
    return VendorPlan(op, attrs, [k for _, k in refs], shape, epilogue, used)


_fp32_depth: list = []


@contextlib.contextmanager
def torch_fp32():
    """Inside the block PyTorch computes convolutions and matmuls in full float32 (no TF32)
    and queues its work on the legacy default stream, where our kernels run."""
    if _fp32_depth:  # already inside (the executor's run): nothing to set again
        yield
        return
    import torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    _fp32_depth.append(True)
    try:
        with torch.cuda.stream(torch.cuda.default_stream()):
            yield
    finally:
        _fp32_depth.pop()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _address(obj) -> int:
    if hasattr(obj, "data_ptr"):
        ptr = obj.data_ptr
        return int(ptr() if callable(ptr) else ptr)
    return id(obj)


class CachedLaunch:
    """A CudaModule called with its argument checks done once per distinct set of addresses
    (the shapes of a step never change; only the addresses of inputs can). The launches hold
    addresses only, so they serve any arrays at those addresses; the caller keeps the arrays
    alive while the launches run (stream order: the default stream, which PyTorch's caching
    allocator also orders frees on)."""

    def __init__(self, module):
        self.module = module
        self._key = None
        self._launches = None

    def __call__(self, *arrays) -> None:
        key = tuple(_address(a) for a in arrays)
        if key != self._key:
            launches, _imports = self.module._prepare(arrays)
            self._launches, self._key = launches, key
        self.module._launch((self._launches, arrays))

    def get_source(self, fmt: str = "cuda"):
        return self.module.get_source(fmt)


class VendorKernel:
    """A group run by a vendor library (PyTorch: cuDNN / cuBLAS) and then, when the group has
    elementwise consumers, its CUDA epilogue kernel. Called like a CudaModule: the group's
    inputs, then its output, as CUDA arrays."""

    def __init__(self, name: str, plan: VendorPlan, epilogue=None):
        self.name = name
        self.plan = plan
        self.epilogue = epilogue
        self._launch_epilogue = CachedLaunch(epilogue) if epilogue is not None else None
        self._views: dict = {}

    def __repr__(self):
        return f"<VendorKernel {self.name}: torch {self.plan.op} + " \
               f"{'epilogue' if self.epilogue is not None else 'copy'}>"

    def get_source(self, fmt: str = "cuda"):
        """A comment naming the vendor call, then the epilogue's CUDA C (if any)."""
        head = (f"// {self.name}: {self.plan.op} {self.plan.attrs} by PyTorch "
                f"(cuDNN / cuBLAS) -> float32{list(self.plan.shape)}\n")
        if self.epilogue is None:
            return head if fmt in ("cuda", "cu", "c", "source", "") else b""
        body = self.epilogue.get_source(fmt)
        return head + body if isinstance(body, str) else body

    def _torch(self, array):
        """A zero-copy torch view of a CUDA array (cached by address and shape: the view keeps
        the memory alive, so an address in the cache is never reused for other data)."""
        key = (_address(array), tuple(array.shape), str(array.dtype))
        view = self._views.get(key)
        if view is None:
            import torch
            view = array if isinstance(array, torch.Tensor) else torch.from_dlpack(array)
            if len(self._views) > 32:
                self._views.clear()
            self._views[key] = view
        return view

    def _vendor(self, a, b):
        import torch
        import torch.nn.functional as F
        p = self.plan
        if p.op == "conv2d":
            top, left, bottom, right = p.attrs.get("pads", (0, 0, 0, 0))
            if (top, left) != (bottom, right):
                a = F.pad(a, (left, right, top, bottom))
                top = left = 0
            return F.conv2d(a, b, None, tuple(p.attrs.get("strides", (1, 1))), (top, left),
                            tuple(p.attrs.get("dilations", (1, 1))), p.attrs.get("groups", 1))
        if p.op == "dense":
            return F.linear(a, b)
        if p.attrs.get("transpose_a"):
            a = a.t()
        if p.attrs.get("transpose_b"):
            b = b.t()
        return torch.matmul(a, b)

    def __call__(self, *arrays) -> None:
        p = self.plan
        ins, out = arrays[:-1], arrays[-1]
        a, b = (self._torch(ins[k]) for k in p.operands)
        with torch_fp32():
            result = self._vendor(a, b)
        if self._launch_epilogue is None:
            self._torch(out).copy_(result.reshape(tuple(out.shape)))
        else:
            self._launch_epilogue(*[ins[k] for k in p.epilogue_inputs],
                                  result.contiguous(), out)


# -- running --------------------------------------------------------------------------------------
def plan_slots(steps, outputs) -> tuple:
    """The static device memory plan: ``(slot sizes in bytes, {value key: slot index},
    naive bytes)`` (graph/memory_plan.py); model outputs keep their slots (they are copied out
    after the run), slots are 256-byte multiples."""
    from .executor import value_key
    from .memory_plan import plan_slots as plan
    return plan(steps, {value_key(o) for o in outputs}, keep_outputs=True, granule=256)


def _is_torch(obj) -> bool:
    return type(obj).__module__.split(".")[0] == "torch"


def _cuda_dlpack(obj) -> bool:
    try:
        return hasattr(obj, "__dlpack__") and int(obj.__dlpack_device__()[0]) == 2
    except Exception:  # noqa: BLE001
        return False


class DeviceRunner:
    """Runs a Library's steps on the GPU (see the module docstring)."""

    def __init__(self, lib):
        self.lib = lib
        self.sizes, self.where, self.naive_bytes = plan_slots(lib._steps, lib._outputs)
        self.planned_bytes = sum(self.sizes)
        self.ready = False
        self._steps = [(step, CachedLaunch(step.kernel) if _is_cuda_module(step.kernel)
                        else step.kernel) for step in lib._steps]
        self._vendor = any(isinstance(k, VendorKernel) for _, k in self._steps)

    def _ensure(self) -> None:
        from tensorlang.runtime import cuda
        cuda.require("Models built for target 'cuda' (graph.build(..., target='cuda'))")
        if self.ready:
            return
        import tensorlang as tl
        from .executor import value_key
        from .ir import Constant
        slots = [tl.nd.empty((n,), "uint8", device="cuda") for n in self.sizes]
        views = {}
        for step in self.lib._steps:
            for out in step.outputs:
                key = value_key(out)
                views[key] = _view(slots[self.where[key]], out.type.shape, out.type.dtype)
        consts = {}
        for step in self.lib._steps:
            for a in step.inputs:
                if isinstance(a, Constant) and id(a) not in consts:
                    consts[id(a)] = _device_copy(a.value)
        for o in self.lib._outputs:
            if isinstance(o, Constant) and id(o) not in consts:
                consts[id(o)] = _device_copy(o.value)
        self._slots, self._views, self._consts = slots, views, consts
        self._inputs: dict = {}
        self.ready = True

    def _bind(self, args, kwargs):
        lib = self.lib
        given = lib._given(args, kwargs)
        env, mode = {}, "numpy"
        for name, param in zip(lib.input_names, lib._params):
            if name not in given:
                raise lib._missing(name)
            value, want = given[name], param.type
            if _cuda_dlpack(value):
                import tensorlang as tl
                if _is_torch(value):
                    mode = "torch"
                elif mode == "numpy":
                    mode = "tl"
                array = value if isinstance(value, tl.nd.NDArray) else tl.nd.from_dlpack(value)
                if array.dtype != want.dtype:
                    raise DTypeError(f"input {name!r} must be {want.dtype}, got {array.dtype}")
                if tuple(array.shape) != want.shape:
                    raise ShapeError(f"input {name!r} must have shape {want.shape}, got "
                                     f"{tuple(array.shape)}")
                if array.strides is not None:
                    array = tl.nd.array(array, device="cuda")  # a compact copy
                env[id(param)] = array
                continue
            if not isinstance(value, np.ndarray) and hasattr(value, "numpy"):
                value = value.numpy()
            value = np.asarray(value)
            if value.dtype != np.dtype(want.dtype):
                raise DTypeError(f"input {name!r} must be {want.dtype}, got {value.dtype}")
            if tuple(value.shape) != want.shape:
                raise ShapeError(f"input {name!r} must have shape {want.shape}, got "
                                 f"{tuple(value.shape)}")
            buf = self._inputs.get(id(param))
            if buf is None:
                import tensorlang as tl
                buf = self._inputs[id(param)] = tl.nd.empty(want.shape, want.dtype,
                                                            device="cuda")
            if value.size:
                buf.copyfrom(np.ascontiguousarray(value))
            env[id(param)] = buf
        env.update(self._views)
        return env, mode

    def _value(self, env, node):
        from .executor import value_key
        key = value_key(node)
        if key in env:
            return env[key]
        if id(node) in self._consts:
            return self._consts[id(node)]
        raise UserError(f"graph input {getattr(node, 'name', node)!r} has no value")

    def _calls(self, env):
        from .executor import value_key
        return [(step, kernel, [self._value(env, a) for a in step.inputs] +
                 [env[value_key(o)] for o in step.outputs]) for step, kernel in self._steps]

    def run(self, args, kwargs) -> list:
        self._ensure()
        env, mode = self._bind(args, kwargs)
        calls = self._calls(env)
        with torch_fp32() if self._vendor else contextlib.nullcontext():
            for _, kernel, arrays in calls:
                kernel(*arrays)
        return [self._result(self._value(env, o), mode) for o in self.lib._outputs]

    @staticmethod
    def _result(value, mode):
        import tensorlang as tl
        if mode == "numpy":
            return value.numpy()
        if mode == "torch":
            import torch
            return torch.from_dlpack(value).clone()
        return tl.nd.array(value, device="cuda")

    def profile(self, args, kwargs, number: int) -> list:
        from tensorlang.runtime import cuda
        self._ensure()
        env, _ = self._bind(args, kwargs)
        calls = self._calls(env)
        events = [(cuda.Event(), cuda.Event()) for _ in calls]
        times = {step.name: 0.0 for step, _, _ in calls}
        with torch_fp32() if self._vendor else contextlib.nullcontext():
            for rep in range(number + 1):
                for (step, kernel, arrays), (start, end) in zip(calls, events):
                    start.record()
                    kernel(*arrays)
                    end.record()
                cuda.synchronize()
                if rep:
                    for (step, _, _), (start, end) in zip(calls, events):
                        times[step.name] += cuda.Event.elapsed_ms(start, end) * 1e-3
        return sorted(((name, t / number) for name, t in times.items()), key=lambda p: -p[1])


def _is_cuda_module(kernel) -> bool:
    from codegen.cuda.module import CudaModule
    return isinstance(kernel, CudaModule)


def _view(slot, shape, dtype):
    """An NDArray of ``shape`` / ``dtype`` over the start of device slot ``slot``."""
    from tensorlang.runtime.ndarray import NDArray
    return NDArray._wrap(slot.data_ptr, tuple(shape), str(dtype), None, slot, False,
                         slot.__dlpack_device__())


def _device_copy(value):
    import tensorlang as tl
    value = np.ascontiguousarray(value)
    if value.size == 0:
        return tl.nd.empty(value.shape, str(value.dtype), device="cuda")
    return tl.nd.array(value, device="cuda")
