"""Import a PyTorch module into a graph Module through ``torch.export``.

The module is exported (``torch.export.export``) and lowered to the core ATen operator set
(``run_decompositions``); each ATen node then becomes graph operator calls (``torch_ops``).
Parameters, buffers and lifted constants become Constants named by their qualified names
(``layer1.0.conv1.weight``); user inputs become Vars named after ``forward``'s parameters;
outputs are named ``output0``, ``output1``, ... A node whose tensor inputs are all constants
(a transposed weight, ``arange``, ``full``) is evaluated with PyTorch itself and becomes a
Constant. Every ATen operator that can be neither converted nor folded is listed in one
``UnsupportedOpError``.

Symbolic sizes (``dynamic_shapes``) stay symbolic only in the exported program: the graph IR
is static, so the Module returned is the one for the example inputs' sizes, and its
specializer (:mod:`graph.dynamic`) re-converts the same exported program for other sizes.

Example::

    mod = from_torch(torch.nn.Linear(8, 4), (torch.randn(2, 8),), dynamic_shapes="batch")
    lib = graph.build(mod)
    (y,) = lib.run(np.ones((5, 8), "float32"))
"""
from __future__ import annotations

import inspect
import operator

import numpy as np

from tensorlang.errors import DTypeError, InternalError, ShapeError, UnsupportedOpError, \
    UserError

from ..ir import Call, Constant, Expr, Function, Module, TensorType, Var

_CONVERTERS: dict = {}
# ops never evaluated at import even on constant inputs (random numbers)
_NEVER_FOLD = {"aten.rand", "aten.randn", "aten.randint", "aten.randperm", "aten.bernoulli",
               "aten.normal", "aten.uniform", "aten.native_dropout", "aten.rand_like",
               "aten.randn_like", "aten.randint_like", "aten.multinomial"}
# nodes that only check things at trace time
_IGNORED = {"aten._assert_scalar.default", "aten.sym_constrain_range_for_size.default",
            "aten.sym_constrain_range.default", "aten._assert_tensor_metadata.default",
            "aten._assert_async.msg", "aten._assert_async.default"}
# Python operators on sizes that export leaves in the graph
_SYM_OPS = {operator.add, operator.sub, operator.mul, operator.floordiv, operator.mod,
            operator.neg, operator.truediv, operator.pow, operator.eq, operator.ne,
            operator.lt, operator.le, operator.gt, operator.ge}
_LAYOUT_OPS = {"aten.permute", "aten.view", "aten.t", "aten.transpose", "aten.expand",
               "aten.clone", "aten.alias", "aten.reshape", "aten._unsafe_view", "aten.unsqueeze",
               "aten.squeeze", "aten.contiguous", "aten._to_copy", "aten.detach"}
# folding a constant that grows past this many elements (an expand of a weight) is left to
# the graph as a broadcast instead
_FOLD_GROWTH_LIMIT = 1 << 16


def converter(*names):
    """Register ``f(ctx, *args, **kwargs) -> Expr | list`` for ATen overloads, named as
    ``str(overload)`` (``"aten.add.Tensor"``); ``args`` hold graph nodes for tensors and ints
    for sizes."""
    def deco(f):
        for name in names:
            _CONVERTERS[name] = f
        return f
    return deco


def supported_ops() -> list[str]:
    """The ATen overloads the importer converts."""
    return sorted(_CONVERTERS)


def _torch():
    try:
        import torch
    except ImportError as err:  # pragma: no cover - the `torch` extra
        raise UserError("from_torch needs PyTorch: pip install tensorlang[torch]") from err
    return torch


def numpy_dtype(dtype) -> str:
    """The graph dtype name of a ``torch.dtype``; a DTypeError for complex and other types."""
    name = str(dtype).replace("torch.", "")
    if name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                "uint64", "float16", "float32", "float64", "bfloat16"):
        return name
    raise DTypeError(f"from_torch: dtype {dtype} is not supported")


def to_numpy(t) -> np.ndarray:
    """A CPU copy of tensor ``t`` as a NumPy array (bfloat16 through ml_dtypes)."""
    torch = _torch()
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        import ml_dtypes
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
    return t.numpy().copy()


class Context:
    """What a converter sees: the FX node being converted, the sizes of the symbols, and
    helpers to make calls named after the node."""

    def __init__(self, bindings: dict):
        self.bindings = bindings  # sympy Symbol -> int
        self.node = None

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def op_name(self) -> str:
        return str(self.node.target)

    def call(self, op: str, args, **attrs) -> Call:
        return Call(op, tuple(args), attrs, name=self.node.name)

    def error(self, message: str, kind=UserError) -> UserError:
        return kind(f"PyTorch node {self.node.name!r} ({self.op_name}): {message}")

    def size(self, value) -> int:
        """An int from a size that may be symbolic."""
        return evaluate_symbolic(value, self.bindings)

    def val(self, index=None):
        """The node's example value (a FakeTensor, or a tuple of them)."""
        val = self.node.meta.get("val")
        return val if index is None else val[index]

    def out_type(self, index=None) -> TensorType:
        """The node's result type for the bound sizes."""
        val = self.val(index)
        return TensorType(tuple(self.size(d) for d in val.shape), numpy_dtype(val.dtype))

    def scalar(self, value, dtype: str) -> Constant:
        return Constant(f"{self.node.name}_scalar", np.array(value, dtype=dtype))


def evaluate_symbolic(value, bindings: dict):
    """``value`` (an int, a ``torch.SymInt`` / ``SymFloat`` / ``SymBool``) as a Python number
    for the symbol sizes ``bindings`` ({sympy Symbol: int})."""
    torch = _torch()
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        import sympy
        expr = value.node.expr
        result = sympy.sympify(expr.xreplace({k: sympy.Integer(v) for k, v in bindings.items()}))
        if result.free_symbols:
            raise InternalError(f"from_torch: size {expr} has unbound symbols "
                                f"{sorted(map(str, result.free_symbols))}")
        if isinstance(value, torch.SymBool):
            return bool(result)
        return int(result) if isinstance(value, torch.SymInt) else float(result)
    return value


# -- the importer -------------------------------------------------------------------------------

def from_torch(module, example_inputs, dynamic_shapes=None) -> Module:
    """Import a ``torch.nn.Module`` as a graph Module, through ``torch.export``.

    Args:
        module: the model; it is put in eval mode (dropout off, batch norm on running stats).
        example_inputs: a tuple (or list) of tensors, one per ``forward`` parameter; a single
            tensor is taken as a one-element tuple.
        dynamic_shapes: None (static), ``torch.export``'s own form (``torch.export.Dim`` objects
            in a dict or tuple per input), or ``"batch"``: dim 0 of every input is one shared
            symbol named ``batch``. The Module returned has the example inputs' sizes, and
            ``graph.build`` of it runs on any size of the symbolic dims.

    Raises:
        UserError: ``module`` is not a ``torch.nn.Module``, ``example_inputs`` are not tensors
            or do not fit ``forward``, the export fails.
        UnsupportedOpError: ATen operators with no converter (every one listed, with its nodes).

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU())  # doctest: +SKIP
        >>> mod = from_torch(model, (torch.randn(2, 8),), dynamic_shapes="batch")  # doctest: +SKIP
        >>> lib = graph.build(mod)                                           # doctest: +SKIP
        >>> (y,) = lib.run(np.random.rand(5, 8).astype("float32"))           # doctest: +SKIP
    """
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise UserError(f"from_torch takes a torch.nn.Module, got {type(module).__name__}")
    inputs = _check_inputs(torch, module, example_inputs)
    if isinstance(dynamic_shapes, str):
        if dynamic_shapes != "batch":
            raise UserError(f"from_torch: dynamic_shapes must be None, 'batch' or "
                            f"torch.export's Dim specs, got {dynamic_shapes!r}")
        batch = torch.export.Dim("batch")
        dynamic_shapes = tuple({0: batch} if t.ndim else None for t in inputs)
    traced = inputs
    if dynamic_shapes is not None:
        traced = _avoid_size_one(torch, inputs, dynamic_shapes)
    module = module.eval()
    try:
        program = torch.export.export(module, traced, dynamic_shapes=dynamic_shapes)
        program = program.run_decompositions()
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - torch's own export errors, passed on
        raise UserError(f"from_torch: torch.export failed: {type(err).__name__}: "
                        f"{str(err).strip()[:2000]}") from err
    names = _user_inputs(program)
    return import_program(program, inputs, _dim_names(torch, names, dynamic_shapes))


def _dynamic_specs(torch, dynamic_shapes, count: int) -> list:
    """Per input, ``{axis: Dim}`` from torch.export's spec (a dict by parameter name in
    ``forward``'s order, or a tuple / list)."""
    if dynamic_shapes is None:
        return [None] * count
    specs = list(dynamic_shapes.values()) if isinstance(dynamic_shapes, dict) else \
        list(dynamic_shapes)
    out = []
    for spec in specs[:count] + [None] * (count - len(specs)):
        if isinstance(spec, (list, tuple)):
            spec = {axis: d for axis, d in enumerate(spec) if d is not None}
        out.append(spec if isinstance(spec, dict) else None)
    return out


def _avoid_size_one(torch, inputs, dynamic_shapes) -> tuple:
    """The example inputs with each dynamic dim of size 1 repeated to 2: torch.export
    specializes a size-1 dim to the constant 1 (the Module is still built for size 1)."""
    out = []
    for x, spec in zip(inputs, _dynamic_specs(torch, dynamic_shapes, len(inputs))):
        for axis in (spec or {}):
            if isinstance(axis, int) and -x.ndim <= axis < x.ndim and x.shape[axis] == 1:
                x = torch.cat([x, x], dim=axis)
        out.append(x)
    return tuple(out)


def _dim_names(torch, names, dynamic_shapes) -> dict:
    """{(input name, axis): the Dim's name}."""
    out = {}
    for name, spec in zip(names, _dynamic_specs(torch, dynamic_shapes, len(names))):
        for axis, d in (spec or {}).items():
            dim_name = getattr(d, "__name__", None)
            if isinstance(axis, int) and isinstance(dim_name, str):
                out[(name, axis)] = dim_name
    return out


def _check_inputs(torch, module, example_inputs) -> tuple:
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if not isinstance(example_inputs, (tuple, list)):
        raise UserError(f"from_torch: example_inputs must be a tuple of tensors, got "
                        f"{type(example_inputs).__name__}")
    for i, x in enumerate(example_inputs):
        if not isinstance(x, torch.Tensor):
            raise UserError(f"from_torch: example input {i} is a {type(x).__name__}, not a "
                            "torch.Tensor")
        numpy_dtype(x.dtype)
    try:
        inspect.signature(module.forward).bind(*example_inputs)
    except TypeError as err:
        raise UserError(f"from_torch: the {len(example_inputs)} example input(s) do not fit "
                        f"{type(module).__name__}.forward: {err}") from None
    except ValueError:  # no signature to check (a builtin forward)
        pass
    return tuple(example_inputs)


def import_program(program, example_inputs=None, dim_names=None) -> Module:
    """Convert an ``ExportedProgram`` (already in core ATen) to a Module at the example
    inputs' sizes, with a specializer for its symbolic input dims (named by ``dim_names``,
    ``{(input name, axis): name}``, else by their symbols).

    Example:
        >>> program = torch.export.export(model, (x,)).run_decompositions()  # doctest: +SKIP
        >>> mod = import_program(program, (x,))                               # doctest: +SKIP
    """
    dims, symbols, ranges = _symbolic_dims(program, dim_names or {})
    hints = _hints(program, dims, example_inputs)
    constants: dict = {}  # the weights, shared by every specialisation
    mod = _convert_program(program, {symbols[k]: v for k, v in hints.items()}, constants)
    if not dims:
        return mod
    from ..dynamic import attach_specializer

    def rebuild(values: dict) -> Module:
        bound = {}
        for name, symbol in symbols.items():
            if name not in values:
                raise UserError(f"from_torch: no size given for the symbolic dim {name!r}")
            value = int(values[name])
            low, high = ranges[name]
            if value < low or (high is not None and value > high):
                where = ", ".join(f"input {i!r} axis {a}" for i, a, s in dims if s == name)
                bounds = f"[{low}, {high if high is not None else 'inf'}]"
                raise ShapeError(f"from_torch: {where} ({name}) is {value}, outside the range "
                                 f"{bounds} the model was exported for")
            bound[symbol] = value
        return _convert_program(program, bound, constants)

    return attach_specializer(mod, tuple(dims), rebuild)


def _user_inputs(program) -> list:
    """The names of the user inputs (``forward``'s parameters), in order."""
    from torch.export.graph_signature import InputKind
    return [spec.arg.name for spec in program.graph_signature.input_specs
            if spec.kind == InputKind.USER_INPUT]


def _symbolic_dims(program, dim_names: dict):
    """([(input name, axis, symbol name)], {symbol name: sympy Symbol},
    {symbol name: (min, max or None)}) of the user inputs' symbolic dims."""
    import sympy
    torch = _torch()
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    dims, symbols, ranges = [], {}, {}
    by_symbol = {}
    for input_name in _user_inputs(program):
        val = placeholders[input_name].meta.get("val")
        for axis, d in enumerate(getattr(val, "shape", ())):
            if not isinstance(d, torch.SymInt):
                continue
            expr = d.node.expr
            if not isinstance(expr, sympy.Symbol):
                raise UnsupportedOpError(f"from_torch: input {input_name!r} axis {axis} has the "
                                         f"derived size {expr}; only plain symbols are supported")
            if expr not in by_symbol:
                name = dim_names.get((input_name, axis), str(expr))
                name = name if name not in symbols else f"{name}_{len(symbols)}"
                by_symbol[expr] = name
                symbols[name] = expr
                constraint = program.range_constraints.get(expr)
                low = int(constraint.lower) if constraint is not None else 0
                upper = constraint.upper if constraint is not None else None
                high = _finite(upper)
                ranges[name] = (max(low, 1), high)
            dims.append((input_name, axis, by_symbol[expr]))
    return dims, symbols, ranges


def _finite(bound):
    """An int bound, None for infinity (sympy's, or torch's ``int_oo``)."""
    try:
        value = int(bound)
    except (TypeError, ValueError, AttributeError, OverflowError):
        return None
    return value if abs(value) < 1 << 62 else None


def _hints(program, dims, example_inputs) -> dict:
    """{symbol name: size} from the example inputs, else from the sizes export traced with."""
    if example_inputs is not None:
        by_name = dict(zip(_user_inputs(program), example_inputs))
        return {symbol: int(by_name[name].shape[axis]) for name, axis, symbol in dims}
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    hints = {}
    for name, axis, symbol in dims:
        hint = placeholders[name].meta["val"].shape[axis].node.hint
        if hint is None:
            raise UserError(f"from_torch: the size of input {name!r} axis {axis} is unknown; "
                            "pass example_inputs")
        hints[symbol] = int(hint)
    return hints


def _convert_program(program, bindings: dict, constants: dict) -> Module:
    """The static Module of ``program`` with its size symbols bound to ``bindings``;
    ``constants`` caches the weights' Constants across calls."""
    from torch.export.graph_signature import InputKind, OutputKind
    graph = program.graph
    _check_supported(program)
    ctx = Context(bindings)
    env: dict = {}
    specs = {spec.arg.name: spec for spec in program.graph_signature.input_specs}
    params, input_names = [], []
    for node in graph.nodes:
        ctx.node = node
        if node.op == "placeholder":
            spec = specs[node.name]
            if spec.kind == InputKind.USER_INPUT:
                var = Var(node.name, ctx.out_type())
                env[node.name] = var
                params.append(var)
                input_names.append(node.name)
            elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
                if spec.target not in constants:
                    constants[spec.target] = Constant(spec.target,
                                                      to_numpy(_state(program, spec)))
                env[node.name] = constants[spec.target]
            else:
                raise UnsupportedOpError(f"from_torch: input {node.name!r} of kind "
                                         f"{spec.kind.name} is not supported")
        elif node.op == "call_function":
            env[node.name] = _convert_node(ctx, node, env)
        elif node.op == "output":
            outputs = []
            results = node.args[0]
            for spec, value in zip(program.graph_signature.output_specs, results):
                if spec.kind != OutputKind.USER_OUTPUT:
                    raise UnsupportedOpError(f"from_torch: the model mutates "
                                             f"{spec.target!r} ({spec.kind.name}); inference "
                                             "only (put the module in eval mode)")
                outputs.append(_output_value(ctx, value, env))
    names = [f"output{i}" for i in range(len(outputs))]
    return Module(Function(params, outputs), input_names, names)


def _state(program, spec):
    if spec.target in program.state_dict:
        return program.state_dict[spec.target]
    return program.constants[spec.target]


def _output_value(ctx, value, env) -> Expr:
    if value is None or not hasattr(value, "name") or value.name not in env:
        raise UnsupportedOpError(f"from_torch: output {value!r} is not a tensor")
    out = env[value.name]
    if not isinstance(out, Expr):
        raise UnsupportedOpError(f"from_torch: output {value.name!r} is a "
                                 f"{type(out).__name__}, not a tensor")
    return out


def _op_name(node) -> str:
    return str(node.target) if not callable(node.target) or hasattr(node.target, "_schema") \
        else getattr(node.target, "__name__", str(node.target))


def _packet(node) -> str:
    """``aten.add`` of ``aten.add.Tensor``."""
    return ".".join(str(node.target).split(".")[:2])


def _is_size(node) -> bool:
    """Whether ``node`` computes a size (``sym_size``, arithmetic on sizes) from the input
    shapes, evaluated at import for the bound symbols."""
    torch = _torch()
    if node.target in _SYM_OPS or str(node.target) == "aten.sym_size.int":
        return True
    val = node.meta.get("val")
    if not isinstance(val, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        return False
    # a value read from tensor data (``item()``) has free "unbacked" symbols of its own
    return all(str(s).startswith("s") for s in val.node.expr.free_symbols)


def _check_supported(program) -> None:
    """Raise one UnsupportedOpError naming every ATen op that can be neither converted nor
    folded, with its FX nodes."""
    from torch.export.graph_signature import InputKind
    constant = {s.arg.name for s in program.graph_signature.input_specs
                if s.kind != InputKind.USER_INPUT}
    bad: dict = {}
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        name = _op_name(node)
        inputs_constant = all(a.name in constant for a in node.all_input_nodes)
        if node.target is operator.getitem or name in _IGNORED or _is_size(node):
            if inputs_constant:
                constant.add(node.name)
            continue
        if _packet(node) not in _NEVER_FOLD and inputs_constant:
            constant.add(node.name)
        elif name not in _CONVERTERS:
            bad.setdefault(name, []).append(node.name)
    if bad:
        listed = "; ".join(f"{op} (nodes {', '.join(nodes)})" for op, nodes in sorted(bad.items()))
        raise UnsupportedOpError(f"from_torch: {len(bad)} unsupported ATen operator(s): {listed}")


def _map_args(value, env, ctx):
    """FX arguments with nodes replaced by their converted values and sizes evaluated."""
    torch = _torch()
    if isinstance(value, (list, tuple)):
        return type(value)(_map_args(v, env, ctx) for v in value)
    if hasattr(value, "op") and hasattr(value, "name") and hasattr(value, "meta"):
        return env[value.name]
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        return ctx.size(value)
    return value


def _convert_node(ctx, node, env):
    name = _op_name(node)
    args = _map_args(node.args, env, ctx)
    kwargs = {k: _map_args(v, env, ctx) for k, v in node.kwargs.items()}
    if node.target is operator.getitem:
        seq, index = args
        if isinstance(seq, (list, tuple)):
            if seq[index] is None:
                raise ctx.error(f"output {index} of {node.args[0].name!r} is not supported",
                                UnsupportedOpError)
            return seq[index]
        raise ctx.error(f"getitem on a {type(seq).__name__}", UnsupportedOpError)
    if name in _IGNORED:
        return None
    tensors = [a for a in _flat(args) + _flat(list(kwargs.values())) if isinstance(a, Expr)]
    foldable = _packet(node) not in _NEVER_FOLD and all(isinstance(a, Constant) for a in tensors)
    if foldable and (name not in _CONVERTERS or _small_enough(ctx, tensors)):
        return _fold(ctx, node, args, kwargs)
    if _is_size(node):
        return ctx.size(node.meta["val"])
    try:
        result = _CONVERTERS[name](ctx, *args, **kwargs)
    except UnsupportedOpError as err:
        if node.name in str(err):
            raise
        raise ctx.error(str(err), UnsupportedOpError) from err
    except UserError as err:
        if node.name in str(err):
            raise
        raise ctx.error(str(err), type(err)) from err
    return _fix_types(ctx, result)


def _flat(values) -> list:
    out = []
    for v in values:
        out.extend(_flat(v) if isinstance(v, (list, tuple)) else [v])
    return out


def _small_enough(ctx, tensors) -> bool:
    """Whether folding keeps constants small: the result is no bigger than the inputs (or
    small anyway), so an expand of a weight stays a broadcast."""
    val = ctx.val()
    vals = val if isinstance(val, (list, tuple)) else [val]
    try:
        total = sum(int(np.prod([ctx.size(d) for d in v.shape])) for v in vals
                    if hasattr(v, "shape"))
    except InternalError:
        return False
    biggest = max([t.type.size for t in tensors], default=0)
    return total <= max(biggest, _FOLD_GROWTH_LIMIT)


def _to_torch(value):
    torch = _torch()
    if isinstance(value, Constant):
        array = value.value
        if array.dtype.name == "bfloat16":
            return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
        return torch.from_numpy(np.array(array))
    if isinstance(value, (list, tuple)):
        return type(value)(_to_torch(v) for v in value)
    return value


def _fold(ctx, node, args, kwargs):
    """Evaluate ``node`` with PyTorch on constant inputs."""
    torch = _torch()
    try:
        with torch.no_grad():
            result = node.target(*_to_torch(args), **{k: _to_torch(v) for k, v in kwargs.items()})
    except Exception as err:  # noqa: BLE001 - torch's own errors
        raise ctx.error(f"constant folding failed: {err}") from err

    # a weight only re-laid out (a transposed linear weight) keeps the weight's name
    sources = [a for a in _flat(list(args)) if isinstance(a, Constant)]
    base = sources[0].name if len(sources) == 1 and _packet(node) in _LAYOUT_OPS else node.name

    def wrap(r, suffix=""):
        if isinstance(r, torch.Tensor):
            return Constant(base + suffix, to_numpy(r))
        if isinstance(r, (list, tuple)):
            return [wrap(v, f"{suffix}_{i}") for i, v in enumerate(r)]
        return r
    return wrap(result)


def _fix_types(ctx, result):
    """Check a converted result against the node's example value: the shape must match (else
    the converter is wrong) and the dtype is made PyTorch's (type promotion)."""
    torch = _torch()
    val = ctx.val()
    if isinstance(result, (list, tuple)):
        out = []
        for i, r in enumerate(result):
            v = val[i] if isinstance(val, (list, tuple)) and i < len(val) else None
            out.append(_fix_one(ctx, r, v) if isinstance(v, torch.Tensor) else r)
        return out
    return _fix_one(ctx, result, val) if isinstance(val, torch.Tensor) else result


def _fix_one(ctx, result, val):
    if result is None:
        return None
    if not isinstance(result, Expr):
        raise InternalError(f"from_torch: the converter of {ctx.op_name} gave "
                            f"{type(result).__name__}")
    want = TensorType(tuple(ctx.size(d) for d in val.shape), numpy_dtype(val.dtype))
    if result.type.shape != want.shape:
        raise InternalError(f"from_torch: node {ctx.name!r} ({ctx.op_name}) converted to shape "
                            f"{result.type.shape}, PyTorch says {want.shape}")
    if result.type.dtype != want.dtype:
        result = ctx.call("cast", (result,), dtype=want.dtype)
    return result


from . import torch_ops  # noqa: E402,F401  (registers the converters)
from . import torch_ops_nn  # noqa: E402,F401

__all__ = ["from_torch", "import_program", "converter", "supported_ops", "Context"]
