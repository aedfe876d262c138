"""An ``onnx.backend`` backend on top of ``from_onnx`` + ``graph.build`` (CPU, LLVM).

``prepare(model)`` checks the model once; ``rep.run(inputs)`` imports and builds it for the
given inputs. Inputs that decide shapes (Reshape's shape, Slice's starts, Pad's pads, ...) are
read at run time: their values are baked into the model as initializers, and each distinct set
of values (and input shapes, which fix symbolic dimensions) compiles once and is cached.

Example::

    from graph.frontend.onnx_backend import prepare
    rep = prepare(onnx.load("model.onnx"))
    (y,) = rep.run([x])
"""
from __future__ import annotations

import numpy as np

from tensorlang.errors import UserError

from .onnx_dtypes import narrow, widen

# ONNX op type -> input positions whose values decide output shapes (or attributes).
SHAPE_INPUTS = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,),
    "Slice": (1, 2, 3, 4), "Pad": (1, 2, 3), "Squeeze": (1,), "Unsqueeze": (1,),
    "ReduceSum": (1,), "ReduceMean": (1,), "ReduceMax": (1,), "ReduceMin": (1,),
    "ReduceProd": (1,), "ReduceL1": (1,), "ReduceL2": (1,), "ReduceLogSum": (1,),
    "ReduceLogSumExp": (1,), "ReduceSumSquare": (1,), "Resize": (1, 2, 3), "Upsample": (1,),
    "Split": (1,), "TopK": (1,), "OneHot": (1,), "Range": (0, 1, 2), "CumSum": (1,),
    "CumProd": (1,), "Trilu": (1,), "CenterCropPad": (1,), "MaxUnpool": (2,), "Compress": (1,),
    "Col2Im": (1, 2), "AffineGrid": (1,), "DFT": (1, 2), "STFT": (1, 2, 3),
    "BlackmanWindow": (0,), "HannWindow": (0,), "HammingWindow": (0,), "EyeLike": (),
    "Clip": (1, 2), "Dropout": (1, 2), "ReverseSequence": (), "MelWeightMatrix": (0, 1, 2, 3, 4),
    "If": (0,), "Loop": (0, 1),
}


def shape_inputs(model) -> set:
    """The names of the graph inputs whose values decide a shape-deciding input of some node,
    directly or through the nodes computing it (``Shape`` and ``Size`` read shapes only)."""
    graph = model.graph
    names = {i.name for i in graph.input} - {i.name for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    todo = [node.input[pos] for node in graph.node
            for pos in SHAPE_INPUTS.get(node.op_type, ()) if pos < len(node.input)]
    found, seen = set(), set()
    while todo:
        name = todo.pop()
        if name in seen or not name:
            continue
        seen.add(name)
        if name in names:
            found.add(name)
        elif name in producer and producer[name].op_type not in ("Shape", "Size"):
            todo.extend(_reads(producer[name]))
    return found


def _reads(node) -> list:
    """The values ``node`` reads: its inputs, and those its subgraphs (If, Loop, Scan) name."""
    from onnx import AttributeProto
    names = list(node.input)
    for a in node.attribute:
        graphs = [a.g] if a.type == AttributeProto.GRAPH else \
            list(a.graphs) if a.type == AttributeProto.GRAPHS else []
        for g in graphs:
            for inner in g.node:
                names.extend(_reads(inner))
    return names


class BackendRep:
    """A prepared model: ``run(inputs)`` returns the outputs as a list of NumPy arrays."""

    def __init__(self, model, target: str = "llvm"):
        self.model = model
        self.target = target
        init = {i.name for i in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in init]
        self.output_names = [o.name for o in model.graph.output]
        self._baked = shape_inputs(model)
        self._cache: dict = {}

    def _library(self, named: dict):
        import onnx
        from onnx import numpy_helper
        from ..build import build
        from .onnx import from_onnx
        key = tuple((n, v.shape, str(v.dtype), v.tobytes() if n in self._baked else None)
                    for n, v in named.items())
        if key not in self._cache:
            model = onnx.ModelProto()
            model.CopyFrom(self.model)
            for n in self._baked:
                model.graph.initializer.append(numpy_helper.from_array(named[n], n))
            shape = {n: v.shape for n, v in named.items() if n not in self._baked}
            self._cache[key] = build(from_onnx(model, shape=shape), target=self.target)
        return self._cache[key]

    def run(self, inputs, **kwargs) -> list:
        if isinstance(inputs, dict):
            named = dict(inputs)
        else:
            inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
            if len(inputs) > len(self.input_names):
                raise UserError(f"the model takes {len(self.input_names)} inputs, got "
                                f"{len(inputs)}")
            named = dict(zip(self.input_names, inputs))
        named = {n: np.asarray(v) for n, v in named.items()}
        lib = self._library(named)
        # bfloat16, float8, int4, ... travel in their storage dtypes (onnx_dtypes)
        feeds = {n: widen(v) for n, v in named.items() if n not in self._baked}
        types = [o.type.tensor_type.elem_type for o in self.model.graph.output]
        return [narrow(y, t) if t else y for y, t in zip(lib.run(**feeds), types)]


def _onnx_backend_base():
    from onnx.backend.base import Backend
    return Backend


class TensorlangBackend:
    """The ``onnx.backend.base.Backend`` interface (class methods)."""

    @classmethod
    def is_compatible(cls, model, device: str = "CPU", **kwargs) -> bool:
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs) -> BackendRep:
        import onnx
        if not cls.supports_device(device):
            raise UserError(f"the tensorlang ONNX backend runs on CPU, not {device!r}")
        if isinstance(model, (bytes, bytearray)):
            model = onnx.load_from_string(bytes(model))
        onnx.checker.check_model(model)
        return BackendRep(model)

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs) -> list:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs):
        raise UserError("run_node is not supported; wrap the node in a model")

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return str(device).upper().startswith("CPU")


def _register_base() -> None:
    """Make TensorlangBackend a real subclass of onnx's Backend when onnx is installed."""
    global TensorlangBackend
    try:
        base = _onnx_backend_base()
    except ImportError:  # pragma: no cover - the `onnx` extra
        return
    TensorlangBackend = type("TensorlangBackend", (TensorlangBackend, base),
                             {"__doc__": TensorlangBackend.__doc__})


_register_base()
prepare = TensorlangBackend.prepare
run_model = TensorlangBackend.run_model
supports_device = TensorlangBackend.supports_device

__all__ = ["TensorlangBackend", "BackendRep", "prepare", "run_model", "supports_device",
           "shape_inputs", "SHAPE_INPUTS"]
