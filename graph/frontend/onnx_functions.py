"""Expand ONNX nodes that have no converter but whose operator is defined as an ONNX function
(Attention, RMSNormalization, SoftmaxCrossEntropyLoss, CastLike, ...) into the function's
body, so that the importer converts the primitive ops instead.

The body is the schema's function for the highest function version not above the model's
opset (context-dependent functions get the node's input types from ONNX shape inference). Each
expanded node keeps the opset its function was written for, returned beside the model.

Example::

    model, opsets = expand_functions(model, convertible=set(supported_ops()))
"""
from __future__ import annotations

_MAX_ROUNDS = 6


def _function_for(node, opset: int, types: dict):
    """The FunctionProto defining ``node`` at ``opset`` and its opset, or (None, None)."""
    from onnx import FunctionProto, TypeProto, defs
    try:
        schema = defs.get_schema(node.op_type, opset, node.domain)
    except Exception:  # noqa: BLE001 - no schema: not ours to expand
        return None, None
    body = None
    if schema.has_function:
        versions = [v for v in schema.function_opset_versions if v <= opset]
        if versions:
            body = schema.get_function_with_opset_version(max(versions))
            if isinstance(body, bytes):
                body = FunctionProto.FromString(body)
    if body is None and schema.has_context_dependent_function:
        versions = [v for v in schema.context_dependent_function_opset_versions if v <= opset]
        if not versions:
            return None, None
        input_types = []
        for name in node.input:
            t = types.get(name)
            if name and t is None:
                return None, None
            input_types.append((t if t is not None else TypeProto()).SerializeToString())
        try:
            data = schema.get_context_dependent_function_with_opset_version(
                max(versions), node.SerializeToString(), input_types)
        except Exception:  # noqa: BLE001 - the schema refused these inputs
            return None, None
        body = FunctionProto.FromString(data) if data else None
    if body is None or not body.node:
        return None, None
    fn_opset = max([o.version for o in body.opset_import if o.domain in ("", "ai.onnx")],
                   default=opset)
    return body, fn_opset


def _schema_defaults(node, opset: int) -> dict:
    """The schema's default attribute values (AttributeProtos), for ``@attr`` references."""
    from onnx import defs
    try:
        schema = defs.get_schema(node.op_type, opset, node.domain)
    except Exception:  # noqa: BLE001
        return {}
    out = {}
    for name, attr in schema.attributes.items():
        value = attr.default_value
        if value is not None and value.type != 0:
            out[name] = value
    return out


def _inline(node, body, prefix: str, defaults: dict) -> list | None:
    """The body's nodes with its formal names bound to ``node``'s, attributes substituted."""
    from onnx import AttributeProto, NodeProto
    rename = {}
    for k, name in enumerate(body.input):
        rename[name] = node.input[k] if k < len(node.input) else ""
    for k, name in enumerate(body.output):
        rename[name] = node.output[k] if k < len(node.output) and node.output[k] else \
            prefix + name
    given = {a.name: a for a in node.attribute}
    defaults = {**defaults, **{a.name: a for a in getattr(body, "attribute_proto", [])}}
    def name_of(n):
        return rename.get(n, prefix + n)

    out = []
    for k, inner in enumerate(body.node):
        new = NodeProto()
        new.CopyFrom(inner)
        new.name = f"{prefix}{inner.name or inner.op_type}_{k}"
        new.ClearField("input")
        new.ClearField("output")
        new.input.extend(rename.get(n, prefix + n) if n else "" for n in inner.input)
        new.output.extend(rename.get(n, prefix + n) if n else "" for n in inner.output)
        attrs = []
        for a in inner.attribute:
            if a.ref_attr_name:
                src = given.get(a.ref_attr_name) or defaults.get(a.ref_attr_name)
                if src is None:
                    continue
                b = AttributeProto()
                b.CopyFrom(src)
                b.name = a.name
                attrs.append(b)
            else:
                attrs.append(a)
        for a in attrs:  # a Loop / Scan / If body names the function's values too
            if a.type == AttributeProto.GRAPH:
                _rename_graph(a.g, name_of, given, defaults)
            elif a.type == AttributeProto.GRAPHS:
                for g in a.graphs:
                    _rename_graph(g, name_of, given, defaults)
        new.ClearField("attribute")
        new.attribute.extend(attrs)
        out.append(new)
    return out


def _rename_graph(graph, name_of, given: dict, defaults: dict) -> None:
    """Rename every value of subgraph ``graph`` (in place) with ``name_of``, and substitute its
    attribute references, as for the function body around it."""
    from onnx import AttributeProto
    for v in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        v.name = name_of(v.name)
    for node in graph.node:
        names = [list(node.input), list(node.output)]
        node.ClearField("input")
        node.ClearField("output")
        node.input.extend(name_of(n) if n else "" for n in names[0])
        node.output.extend(name_of(n) if n else "" for n in names[1])
        for a in node.attribute:
            if a.ref_attr_name:
                src = given.get(a.ref_attr_name) or defaults.get(a.ref_attr_name)
                if src is not None:
                    name = a.name
                    a.CopyFrom(src)
                    a.name = name
            if a.type == AttributeProto.GRAPH:
                _rename_graph(a.g, name_of, given, defaults)
            elif a.type == AttributeProto.GRAPHS:
                for g in a.graphs:
                    _rename_graph(g, name_of, given, defaults)


def _types(model) -> dict:
    from onnx import shape_inference
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - shape inference is only a help here
        inferred = model
    g = inferred.graph
    types = {v.name: v.type for v in [*g.input, *g.value_info, *g.output]}
    from onnx import helper
    for init in g.initializer:
        types.setdefault(init.name, helper.make_tensor_type_proto(init.data_type, init.dims))
    return types


def expand_functions(model, convertible: set, opset: int):
    """``(model, {output name: opset})``: ``model`` with every node that is neither
    convertible nor in a non-default domain replaced by its function body (repeatedly, for
    bodies that call functions); the dict gives the opset of each expanded node (by its first
    output)."""
    from onnx import ModelProto
    node_opset: dict = {}
    for _ in range(_MAX_ROUNDS):
        todo = [n for n in model.graph.node if n.op_type not in convertible and
                n.domain in ("", "ai.onnx")]
        if not todo:
            break
        types = _types(model)
        nodes, changed = [], False
        for k, node in enumerate(model.graph.node):
            if node.op_type in convertible or node.domain not in ("", "ai.onnx"):
                nodes.append(node)
                continue
            here = node_opset.get(node.output[0], opset) if node.output else opset
            body, fn_opset = _function_for(node, here, types)
            inlined = _inline(node, body, f"{node.output[0] if node.output else k}__"
                              f"{node.op_type}{k}_", _schema_defaults(node, here)) \
                if body is not None else None
            if inlined is None:
                nodes.append(node)
                continue
            for n in inlined:
                if n.output:
                    node_opset[n.output[0]] = fn_opset
            nodes.extend(inlined)
            changed = True
        if not changed:
            break
        new = ModelProto()
        new.CopyFrom(model)
        new.graph.ClearField("node")
        new.graph.node.extend(nodes)
        model = new
    return model, node_opset


__all__ = ["expand_functions"]
