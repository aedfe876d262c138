"""Load a model library written by ``Library.export_library`` and run it through its C API.

Nothing is compiled: the library is opened with ctypes and ``<prefix>_run`` is called on
DLTensors that point at NumPy arrays. The object has the run API of a built
:class:`graph.Library` (``input_names``, ``output_names``, ``run``) plus the thread count.

Example::

    lib.export_library("model.so")
    model = graph.load_library("model.so")
    (y,) = model.run(x)                     # or model.run(input=x)
    model.set_num_threads(1)
"""
from __future__ import annotations

import ctypes
import json
import os
import threading

import numpy as np

from tensorlang.errors import DTypeError, ShapeError, UserError
from tensorlang.runtime.dlpack import DL_CPU, DLDataType, DLTensor
from tensorlang.runtime.dtypes import dlpack_dtype, dtype_from_dlpack, dtype_name, np_dtype

INFO_SYMBOL = "tensorlang_model_info"
_ERRORS = {3: DTypeError, 4: ShapeError}  # the C API's return codes for dtype and shape


class LoadedLibrary:
    """An exported model loaded from its shared library. Attributes: ``path``,
    ``input_names`` / ``output_names`` (model order), ``input_shapes`` / ``output_shapes``,
    ``input_dtypes`` / ``output_dtypes`` (dtype names), ``groups`` (the kernel calls' group
    names in run order), ``workspace_bytes``.

    Example:
        >>> model = graph.load_library("model.so")   # doctest: +SKIP
        >>> (probs,) = model.run(image)               # doctest: +SKIP
    """

    def __init__(self, path: "str | os.PathLike"):
        self.path = os.path.abspath(os.fspath(path))
        try:
            self._library = ctypes.CDLL(self.path)
        except OSError as err:
            raise UserError(f"cannot load {self.path}: {err}") from None
        try:
            info = ctypes.c_char.in_dll(self._library, INFO_SYMBOL)
        except ValueError:
            raise UserError(f"{self.path} is not a model exported by tensorlang (no "
                            f"{INFO_SYMBOL}); kernels load with tl.runtime.load_module") from None
        info = json.loads(ctypes.string_at(ctypes.addressof(info)).decode("utf-8"))
        if info.get("format") != 1:
            raise UserError(f"{self.path}: unsupported model library format "
                            f"{info.get('format')!r}")
        self.groups = list(info.get("groups", []))
        api = self._api = _Api(self._library, info["prefix"])
        self.input_names, self.input_shapes, self.input_dtypes = _describe(api, "input")
        self.output_names, self.output_shapes, self.output_dtypes = _describe(api, "output")
        self.workspace_bytes = int(api.workspace_bytes())
        # DLTensors of the model's exact shapes, compact (strides NULL): ``run`` fills in the
        # data pointers only (building them per call costs more than a small model's run)
        self._lock = threading.Lock()
        self._inputs = _templates(self.input_shapes, self.input_dtypes)
        self._outputs = _templates(self.output_shapes, self.output_dtypes)

    # -- threads ---------------------------------------------------------------------------
    @property
    def num_threads(self) -> int:
        """Threads that run the library's parallel loops, the calling one included."""
        return int(self._api.get_num_threads())

    def set_num_threads(self, n: int) -> None:
        """Run parallel loops on ``n`` threads (the calling one included)."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise UserError(f"set_num_threads needs a positive integer, got {n!r}")
        if self._api.set_num_threads(n) != 0:
            raise UserError(f"{self.path}: {self._api.last_error().decode()}")

    # -- running ---------------------------------------------------------------------------
    def _given(self, args, kwargs) -> dict:
        from .executor import given_inputs
        return given_inputs(self.input_names, args, kwargs)

    def _arrays(self, args, kwargs) -> list:
        given = self._given(args, kwargs)
        arrays = []
        for name, shape, dtype in zip(self.input_names, self.input_shapes, self.input_dtypes):
            if name not in given:
                raise UserError(f"input {name!r} is missing; the model's inputs are "
                                f"{list(self.input_names)}")
            value = given[name]
            if not isinstance(value, np.ndarray) and hasattr(value, "numpy"):
                value = value.numpy()
            value = np.asarray(value)
            if value.dtype != np_dtype(dtype):
                raise DTypeError(f"input {name!r} must be {dtype}, got {value.dtype}")
            if tuple(value.shape) != shape:
                raise ShapeError(f"input {name!r} must have shape {shape}, got "
                                 f"{tuple(value.shape)}")
            arrays.append(np.ascontiguousarray(value))
        return arrays

    def run(self, *args, **kwargs) -> list:
        """Run the model on NumPy arrays (or objects with ``.numpy()``), positional in input
        order or by input name; returns new NumPy arrays in output order.

        Raises:
            UserError: an input is missing or unknown; ShapeError / DTypeError (UserErrors):
                an input has the wrong shape or dtype (the message names it); UserError: the
                library reported an error.
        """
        inputs = self._arrays(args, kwargs)
        outputs = [np.empty(s, np_dtype(d)) for s, d in zip(self.output_shapes,
                                                               self.output_dtypes)]
        with self._lock:
            for tensor, array in zip(self._inputs[0], inputs):
                tensor.data = array.__array_interface__["data"][0]
            for tensor, array in zip(self._outputs[0], outputs):
                tensor.data = array.__array_interface__["data"][0]
            self._call(self._inputs[0], self._outputs[0])
        return outputs

    def run_into(self, inputs: list, outputs: list) -> None:
        """Call ``<prefix>_run`` on ``inputs`` and ``outputs`` (NumPy arrays, outputs written
        in place) with no checks here: the library's own checks report a wrong tensor."""
        keep = []
        ins = (DLTensor * max(len(inputs), 1))(*[_dl_tensor(a, keep) for a in inputs])
        outs = (DLTensor * max(len(outputs), 1))(*[_dl_tensor(a, keep) for a in outputs])
        self._call(ins, outs)

    def _call(self, ins, outs) -> None:
        code = self._api.run(ins, outs)
        if code != 0:
            message = self._api.last_error().decode("utf-8", "replace")
            raise _ERRORS.get(code, UserError)(f"{os.path.basename(self.path)}: {message}")

    def __repr__(self):
        return (f"LoadedLibrary({self.path!r}, inputs={list(self.input_names)}, "
                f"outputs={list(self.output_names)})")


class _Api:
    """The C functions of one library, typed."""

    def __init__(self, library, prefix: str):
        def fn(name, restype, *argtypes):
            try:
                f = getattr(library, f"{prefix}_{name}")
            except AttributeError:
                raise UserError(f"the model library has no {prefix}_{name}") from None
            f.restype, f.argtypes = restype, list(argtypes)
            return f

        tensors = ctypes.POINTER(DLTensor)
        i64p = ctypes.POINTER(ctypes.c_int64)
        self.run = fn("run", ctypes.c_int, tensors, tensors)
        self.last_error = fn("last_error", ctypes.c_char_p)
        self.workspace_bytes = fn("workspace_bytes", ctypes.c_int64)
        self.set_num_threads = fn("set_num_threads", ctypes.c_int, ctypes.c_int)
        self.get_num_threads = fn("get_num_threads", ctypes.c_int)
        for kind in ("input", "output"):
            setattr(self, f"num_{kind}s", fn(f"num_{kind}s", ctypes.c_int))
            setattr(self, f"{kind}_name", fn(f"{kind}_name", ctypes.c_char_p, ctypes.c_int))
            setattr(self, f"{kind}_ndim", fn(f"{kind}_ndim", ctypes.c_int, ctypes.c_int))
            setattr(self, f"{kind}_shape", fn(f"{kind}_shape", i64p, ctypes.c_int))
            setattr(self, f"{kind}_dtype", fn(f"{kind}_dtype", DLDataType, ctypes.c_int))


def _describe(api: _Api, kind: str) -> tuple:
    names, shapes, dtypes = [], [], []
    for i in range(getattr(api, f"num_{kind}s")()):
        names.append(getattr(api, f"{kind}_name")(i).decode("utf-8"))
        ndim = getattr(api, f"{kind}_ndim")(i)
        shape = getattr(api, f"{kind}_shape")(i)
        shapes.append(tuple(int(shape[k]) for k in range(ndim)))
        dtype = getattr(api, f"{kind}_dtype")(i)
        dtypes.append(dtype_from_dlpack(dtype.code, dtype.bits, dtype.lanes))
    return tuple(names), tuple(shapes), tuple(dtypes)


def _templates(shapes: tuple, dtypes: tuple) -> tuple:
    """``(DLTensor array, what it points at)`` for tensors of these shapes and dtypes."""
    tensors = (DLTensor * max(len(shapes), 1))()
    keep = []
    for tensor, shape, dtype in zip(tensors, shapes, dtypes):
        dims = (ctypes.c_int64 * max(len(shape), 1))(*shape)
        keep.append(dims)
        tensor.device.device_type, tensor.device.device_id = DL_CPU, 0
        tensor.ndim = len(shape)
        tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes = dlpack_dtype(dtype)
        tensor.shape, tensor.strides = dims, None
    return tensors, keep


def _dl_tensor(array: np.ndarray, keep: list) -> DLTensor:
    shape = (ctypes.c_int64 * max(array.ndim, 1))(*array.shape)
    strides = (ctypes.c_int64 * max(array.ndim, 1))(*[s // max(array.itemsize, 1)
                                                      for s in array.strides])
    keep += [shape, strides, array]
    t = DLTensor()
    t.data = array.ctypes.data
    t.device.device_type, t.device.device_id = DL_CPU, 0
    t.ndim = array.ndim
    t.dtype.code, t.dtype.bits, t.dtype.lanes = dlpack_dtype(dtype_name(array.dtype))
    t.shape, t.strides = shape, strides
    t.byte_offset = 0
    return t


def load_library(path: "str | os.PathLike") -> LoadedLibrary:
    """Load a model written by ``Library.export_library`` (no compiling, no rebuilding).

    Raises:
        UserError: the file is missing, or is not a model library exported by tensorlang.

    Example:
        >>> model = graph.load_library("model.so")   # doctest: +SKIP
        >>> model.input_names, model.output_names     # doctest: +SKIP
    """
    return LoadedLibrary(path)


__all__ = ["LoadedLibrary", "load_library"]
