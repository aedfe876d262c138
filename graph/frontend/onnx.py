"""Import an ONNX model into a graph Module.

Initializers become Constants (also those that old files list as graph inputs). A node whose
inputs are all constant (Constant, arithmetic on weights, Shape of a static shape, ...) is
evaluated at import with ONNX's NumPy reference implementation and becomes a Constant. Every
node the importer cannot handle is reported in one ``UserError``. A node with no converter whose
operator ONNX defines as a function (Attention, RMSNormalization, CastLike, ...) is first
replaced by the function's body (``onnx_functions``). If / Loop / Scan are inlined
(``onnx_control``). Tensors of bfloat16, float8, float4 and int4 / int2 travel in a wider
storage dtype, rounded to their format after each node (``onnx_dtypes``): such model inputs
and outputs are storage-typed. Symbolic input dims must be fixed with ``shape=``.

Example::

    mod = from_onnx("model.onnx", shape={"input": (1, 3, 224, 224)})
    print(mod)
"""
from __future__ import annotations

import os

import numpy as np

from tensorlang.errors import UnsupportedOpError, UserError

from ..ir import Call, Constant, Function, Module, TensorType, Var
from ..ops.formats import E8M0, FLOAT_FORMATS, INT_FORMATS
from .onnx_dtypes import format_of, storage, value_formats, widen

# the formats round_to_format rounds into
FORMAT_OPS = set(FLOAT_FORMATS) | set(INT_FORMATS) | {E8M0}

_CONVERTERS: dict = {}
_SUBGRAPH_OPS = {"If", "Loop", "Scan"}  # converted by inlining their subgraphs (onnx_control)
_NEVER_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
               "Multinomial", "Bernoulli"}


def converter(*op_types):
    """Register a converter ``f(ctx, inputs, attrs) -> Expr | list`` for ONNX op types."""
    def deco(f):
        for t in op_types:
            _CONVERTERS[t] = f
        return f
    return deco


def supported_ops() -> list[str]:
    """The ONNX op types the importer converts."""
    return sorted(_CONVERTERS)


class _Node:
    """What a converter sees: the ONNX node, the opset, and helpers to make calls."""

    def __init__(self, proto, opset: int, model=None, scope=None, value_formats=None):
        self.proto = proto
        self.model = model
        self.scope = scope if scope is not None else {}  # the values a subgraph sees
        self.value_formats = value_formats or {}
        # per input: its number format where the graph carries it in a storage dtype, or None
        self.formats = [self.value_formats.get(name) for name in proto.input]
        self.op_type = proto.op_type
        self.name = proto.name or f"{proto.op_type}({', '.join(proto.output)})"
        self.opset = opset

    def call(self, op: str, args, **attrs) -> Call:
        return Call(op, tuple(args), attrs, name=self.name)

    def error(self, message: str) -> UserError:
        return UserError(f"ONNX node {self.name!r} ({self.op_type}): {message}")

    def const_value(self, node, what: str) -> np.ndarray:
        if not isinstance(node, Constant):
            raise UnsupportedOpError(f"ONNX node {self.name!r} ({self.op_type}): {what} must be "
                                     "a constant (an initializer or computed from them)")
        return node.value

    def scalar(self, value, like) -> Constant:
        return Constant(f"{self.name}_scalar", np.array(value, dtype=like.type.dtype))

    def inline(self, graph, inputs) -> list:
        """Convert subgraph ``graph`` (an If branch, a Loop or Scan body) with its inputs
        bound to ``inputs``; it sees the values around this node. Returns its outputs."""
        import onnx
        env = dict(self.scope)
        for init in graph.initializer:
            env[init.name] = Constant(init.name, onnx.numpy_helper.to_array(init))
        if len(inputs) != len(graph.input):
            raise self.error(f"the subgraph takes {len(graph.input)} inputs, got {len(inputs)}")
        for inp, value in zip(graph.input, inputs):
            env[inp.name] = value
        _check_supported(graph, {k for k, v in env.items() if isinstance(v, Constant)})
        for proto in graph.node:
            _convert(self.model, proto, self.opset, env, self.value_formats)
        missing = [o.name for o in graph.output if o.name not in env]
        if missing:
            raise self.error(f"subgraph outputs {missing} are produced by no node")
        return [env[o.name] for o in graph.output]


def _attrs(proto) -> dict:
    import onnx
    from onnx import helper
    out = {}
    for a in proto.attribute:
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode()
        elif a.type == onnx.AttributeProto.TENSOR:
            value = onnx.numpy_helper.to_array(value)
        elif isinstance(value, list):
            value = [v.decode() if isinstance(v, bytes) else v for v in value]
        out[a.name] = value
    return out


def _np_dtype(elem_type: int) -> np.dtype:
    from onnx import helper
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


# -- the importer -------------------------------------------------------------------------------

def from_onnx(model, shape: dict | None = None) -> Module:
    """Import an ONNX model (a path or a ``ModelProto``) as a graph Module.

    Args:
        model: the ``.onnx`` file path or a loaded ``onnx.ModelProto``.
        shape: ``{input name: shape}`` fixing the inputs' symbolic dimensions.

    Raises:
        UserError: unsupported nodes (all of them listed), an input with a symbolic dimension
            left unfixed, a ``shape`` entry naming no input or not fitting it, or a malformed
            model.

    Example:
        >>> mod = from_onnx("resnet.onnx", shape={"data": (1, 3, 224, 224)})  # doctest: +SKIP
    """
    try:
        import onnx
    except ImportError as err:  # pragma: no cover - the `onnx` extra
        raise UserError("from_onnx needs the onnx package: pip install tensorlang[onnx]") \
            from err
    if isinstance(model, (str, os.PathLike)):
        if not os.path.exists(model):
            raise UserError(f"from_onnx: no such file {os.fspath(model)!r}")
        model = onnx.load(os.fspath(model))
    if not isinstance(model, onnx.ModelProto):
        raise UserError(f"from_onnx takes a path or an onnx.ModelProto, got "
                        f"{type(model).__name__}")
    opset = max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")],
                default=1)
    from .onnx_functions import expand_functions
    model, node_opsets = expand_functions(model, set(_CONVERTERS) | {"Shape", "Constant"}, opset)
    graph = model.graph
    env: dict = {}
    for init in graph.initializer:
        env[init.name] = Constant(init.name, onnx.numpy_helper.to_array(init))
    params, input_names = _inputs(graph, env, dict(shape or {}))
    _check_supported(graph, {k for k, v in env.items() if isinstance(v, Constant)})
    formats = value_formats(model)
    for proto in graph.node:
        here = node_opsets.get(proto.output[0], opset) if proto.output else opset
        _convert(model, proto, here, env, formats)
    outputs, output_names = [], []
    for out in graph.output:
        if out.name not in env:
            raise UserError(f"from_onnx: graph output {out.name!r} is produced by no node")
        outputs.append(env[out.name])
        output_names.append(out.name)
    return Module(Function(params, outputs), input_names, output_names)


def _inputs(graph, env: dict, shape: dict):
    params, names = [], []
    graph_inputs = [i for i in graph.input if i.name not in env]
    unknown = set(shape) - {i.name for i in graph_inputs}
    if unknown:
        raise UserError(f"from_onnx: shape= names {sorted(unknown)}, which are not inputs of "
                        f"the model; its inputs are {[i.name for i in graph_inputs]}")
    for inp in graph_inputs:
        tt = inp.type.tensor_type
        if not inp.type.HasField("tensor_type"):
            raise UserError(f"from_onnx: input {inp.name!r} is not a tensor")
        dims = []
        for d in tt.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") else
                        (d.dim_param or "?"))
        if inp.name in shape:
            fixed = tuple(int(d) for d in shape[inp.name])
            if len(fixed) != len(dims) or any(isinstance(d, int) and d != f
                                              for d, f in zip(dims, fixed)):
                raise UserError(f"from_onnx: shape {fixed} for input {inp.name!r} does not fit "
                                f"its declared shape {tuple(dims)}")
            dims = list(fixed)
        symbolic = [d for d in dims if not isinstance(d, int)]
        if symbolic:
            raise UserError(f"from_onnx: input {inp.name!r} has symbolic dimensions "
                            f"{tuple(dims)}; fix them with shape={{{inp.name!r}: (...)}}")
        var = Var(inp.name, TensorType(tuple(dims), storage(_np_dtype(tt.elem_type))))
        env[inp.name] = var
        params.append(var)
        names.append(inp.name)
    return params, names


def _check_supported(graph, constants: set) -> None:
    """Raise one UserError listing every node that can be neither folded nor converted."""
    known = set(constants)
    bad = []
    for proto in graph.node:
        # Shape reads static shapes; an If / Loop on constants is assumed to give constants
        foldable = proto.op_type not in _NEVER_FOLD and (
            all(i == "" or i in known for i in proto.input) or proto.op_type == "Shape")
        if proto.domain not in ("", "ai.onnx"):
            bad.append(f"{proto.domain}.{proto.op_type} (node {proto.name!r})")
        elif foldable:
            known.update(proto.output)
        elif proto.op_type not in _CONVERTERS:
            bad.append(f"{proto.op_type} (node {proto.name!r})")
    if bad:
        raise UnsupportedOpError(f"from_onnx: {len(bad)} unsupported node(s): " +
                                 ", ".join(bad))


def _convert(model, proto, opset: int, env: dict, formats: dict) -> None:
    node = _Node(proto, opset, model, env, formats)
    inputs = []
    for name in proto.input:
        if name == "":
            inputs.append(None)
        elif name not in env:
            raise node.error(f"input {name!r} is produced by no earlier node")
        else:
            inputs.append(env[name])
    if proto.op_type == "Shape" and inputs and inputs[0] is not None:
        attrs = _attrs(proto)
        dims = np.array(inputs[0].type.shape, np.int64)
        start, end = attrs.get("start", 0), attrs.get("end", len(dims))
        results = [Constant(proto.output[0], dims[start:end])]
    elif proto.op_type not in _NEVER_FOLD and proto.op_type not in _SUBGRAPH_OPS and \
            all(i is None or isinstance(i, Constant) for i in inputs):
        results = _fold(model, proto, inputs, opset)
    else:
        # constants of a stored format reach converters in their storage dtype, like values
        inputs = [Constant(i.name, widen(i.value)) if isinstance(i, Constant) and
                  format_of(i.value.dtype) else i for i in inputs]
        if proto.op_type not in _CONVERTERS:  # passed the check, assumed constant; it is not
            raise UnsupportedOpError(f"ONNX node {node.name!r} ({node.op_type}) is supported "
                                     "only on constant inputs, and some of its inputs are not")
        try:
            results = _CONVERTERS[proto.op_type](node, inputs, _attrs(proto))
        except UnsupportedOpError:
            raise
        except UserError as err:
            if node.name in str(err):
                raise
            raise type(err)(f"ONNX node {node.name!r} ({node.op_type}): {err}") from err
        results = results if isinstance(results, list) else [results]
        used = [o for o in proto.output[len(results):] if o]
        if used:
            raise UnsupportedOpError(f"ONNX node {node.name!r} ({node.op_type}): its extra "
                                     f"outputs {used} are not supported (inference only)")
        results = [_to_format(node, name, value, formats.get(name))
                   for name, value in zip(proto.output, results)]
    for name, value in zip(proto.output, results):
        if name:
            env[name] = value


def _to_format(node, name, value, fmt):
    """A converted result whose ONNX type is stored format ``fmt``, rounded to the format
    (the converters compute in the storage dtype) unless it is already rounded."""
    if fmt is None or fmt not in FORMAT_OPS or value is None or isinstance(value, Constant) \
            or isinstance(value, Call) and value.op == "round_to_format" \
            or isinstance(value.type, tuple) \
            or value.type.dtype != storage(fmt):
        return value
    return node.call("round_to_format", (value,), format=fmt, saturate=0)


def _fold(model, proto, inputs, opset: int) -> list:
    """Evaluate a node on constant inputs with onnx's reference implementation."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    feeds, infos = {}, []
    for name, value in zip(proto.input, inputs):
        if value is not None and name not in feeds:
            feeds[name] = value.value
            infos.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.value.dtype), value.value.shape))
    outs = [helper.make_empty_tensor_value_info(o) for o in proto.output if o]
    g = helper.make_graph([proto], "fold", infos, outs)
    imports = [o for o in model.opset_import if o.domain not in ("", "ai.onnx")]
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), *imports])
    try:
        values = ReferenceEvaluator(m).run(None, feeds)
    except Exception as err:  # noqa: BLE001 - the reference implementation's own errors
        raise UserError(f"ONNX node {proto.name!r} ({proto.op_type}): constant folding "
                        f"failed: {err}") from err
    it = iter(values)
    return [Constant(o, np.asarray(next(it))) if o else None for o in proto.output]


from . import onnx_ops  # noqa: E402,F401  (registers the converters)
from . import onnx_ops_more  # noqa: E402,F401
from . import onnx_control, onnx_ops_signal, onnx_ops_cast  # noqa: E402,F401

__all__ = ["from_onnx", "converter", "supported_ops"]
