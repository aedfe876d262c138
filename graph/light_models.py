"""The light models that the ``onnx`` package ships (``onnx/backend/test/data/light``), for tests
and benchmarks, and a rewrite that gives them random weights.

The shipped files keep their weights small by building every weight with ``ConstantOfShape``
(one value, 0.02, everywhere); such weights make every channel alike and let activations grow
without bound, so they test little. :func:`randomize_weights` replaces each ``ConstantOfShape``
weight producer with a random initializer of the same shape, scaled so activations stay O(1).

Example::

    import onnx
    model = onnx.load(light_model_path("resnet50"))
    model = randomize_weights(model, seed=0)
    mod = graph.from_onnx(model)
"""
from __future__ import annotations

import os

import numpy as np

from tensorlang.errors import UserError

LIGHT_MODELS = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
                "shufflenet", "squeezenet", "vgg19", "zfnet512")

# ops that pass a weight through unchanged in meaning (the consumer that matters is further on)
_PASS_THROUGH = {"Unsqueeze", "Reshape", "Identity", "Cast", "Squeeze", "Flatten"}


def light_model_dir() -> str:
    """The folder of the light models inside the installed ``onnx`` package."""
    import onnx
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def light_model_path(name: str) -> str:
    """The ``.onnx`` path of light model ``name`` (one of :data:`LIGHT_MODELS`)."""
    if name not in LIGHT_MODELS:
        raise UserError(f"no light model named {name!r}; they are {list(LIGHT_MODELS)}")
    return os.path.join(light_model_dir(), f"light_{name}.onnx")


def _role(model, name: str) -> tuple:
    """``(op_type, input position, node)`` of the first real consumer of value ``name``."""
    by_input: dict[str, list] = {}
    for node in model.graph.node:
        for pos, i in enumerate(node.input):
            by_input.setdefault(i, []).append((node, pos))
    seen = set()
    while name not in seen:
        seen.add(name)
        users = by_input.get(name, [])
        if not users:
            return ("", 0, None)
        node, pos = users[0]
        if node.op_type in _PASS_THROUGH and pos == 0:
            name = node.output[0]
            continue
        return (node.op_type, pos, node)
    return ("", 0, None)


def _random_weight(rng, shape, role, residual: bool) -> np.ndarray:
    op, pos, node = role
    shape = tuple(int(d) for d in shape)
    if len(shape) >= 2:  # a Conv (OIHW) or Gemm / MatMul weight: He normal over the fan-in
        fan_in = int(np.prod(shape[1:]))
        if op == "Gemm" and pos == 1 and node is not None:
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            fan_in = shape[1] if trans_b else shape[0]
        elif op == "MatMul":
            fan_in = shape[0]
        weight = rng.standard_normal(shape, dtype=np.float32)
        weight *= np.float32(np.sqrt(2.0 / max(fan_in, 1)))
        return weight
    # per-channel vectors: scales and variances near one, biases and means near zero
    if (op == "BatchNormalization" and pos in (1, 4)) or op in ("Mul", "Div"):
        scale = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        if pos == 1 and residual:  # a residual branch's last scale: small, so sums stay O(1)
            scale *= np.float32(0.2)
        return scale
    return rng.normal(0.0, 0.1, shape).astype(np.float32)


def randomize_weights(model, seed: int = 0):
    """A copy of ``model`` whose ``ConstantOfShape`` nodes with a constant shape input become
    random float initializers of the same shape: He-normal for weights of rank >= 2 (fan-in
    from the Conv / Gemm layout), uniform [0.5, 1.5) for scales and variances (scales 5x
    smaller where the normalisation ends a residual branch, so residual sums stay O(1)),
    N(0, 0.1) for biases and means.

    Example:
        >>> model = randomize_weights(onnx.load(light_model_path("vgg19")))  # doctest: +SKIP
    """
    import onnx
    from onnx import numpy_helper
    rng = np.random.default_rng(seed)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {i.name: i for i in model.graph.initializer}
    kept, used_shapes = [], set()
    for node in model.graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in inits:
            kept.append(node)
            continue
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        dtype = numpy_helper.to_array(value).dtype if value is not None else np.float32
        if dtype != np.float32:
            kept.append(node)
            continue
        shape = numpy_helper.to_array(inits[node.input[0]])
        role = _role(model, node.output[0])
        residual = role[2] is not None and role[0] == "BatchNormalization" and \
            _role(model, role[2].output[0])[0] in ("Sum", "Add")
        weight = _random_weight(rng, shape, role, residual)
        tensor = model.graph.initializer.add()  # filled in place: no copy of a big weight
        tensor.name, tensor.data_type = node.output[0], onnx.TensorProto.FLOAT
        tensor.dims.extend(weight.shape)
        tensor.raw_data = weight.tobytes()
        used_shapes.add(node.input[0])
    del model.graph.node[:]
    model.graph.node.extend(kept)
    still_used = {i for n in kept for i in n.input}
    unused = [i for i in model.graph.initializer if i.name in used_shapes and
              i.name not in still_used]
    for init in unused:
        model.graph.initializer.remove(init)
    gone = {i.name for i in unused}
    for inp in [i for i in model.graph.input if i.name in gone]:  # old files list weights too
        model.graph.input.remove(inp)
    return model


__all__ = ["LIGHT_MODELS", "light_model_dir", "light_model_path", "randomize_weights"]
