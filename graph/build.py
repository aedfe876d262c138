"""Build a graph Module into a runnable :class:`~graph.executor.Library`.

The graph is cut into fusion groups: each group starts at an *anchor* (any call not yet in a
group: a convolution, a matmul, a reduction, a layout op, or a lone elementwise op) and takes on
the chain of elementwise / broadcast consumers after it while each link has exactly one consumer
and is not a model output. So conv2d + bias add + relu, or batch_norm + relu, become one kernel.
A group without a reduction (data movement, elementwise) takes injective consumers too, so a
channel shuffle (reshape + transpose + reshape) is one kernel.

Each group is described by a JSON *spec* (its ops, attributes and input types, nothing else), and
:func:`group_workload` rebuilds the group's DSL computation from the spec. The spec is the
argument of an ``autotune.Task``, so the task key is structural, tuned records apply through
``Task.apply_best(database)``, and worker processes rebuild the computation by importing this
module. Each distinct spec compiles once per build.

Example::

    mod = graph.from_onnx("model.onnx")
    lib = graph.build(mod, target="llvm", database="tuning.db")
    (y,) = lib.run(x)
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from autotune.task import workload
from tensorlang.errors import UnsupportedOpError, UserError

from .compile import compile_kernels
from .executor import Library, Step
from .gpu import gpu_compute, is_cuda_target
from .ir import Call, Module, TupleGetItem, Var, post_order, TensorType
from .ops import FUSABLE_CONSUMERS, get_op, placeholders


@dataclass
class Group:
    """A fused group: its calls in order (the last one gives the group's output) and the
    nodes it reads from outside, in first-use order. A multi-output call (tuple type) is a
    group of its own; ``outputs`` then holds one TupleGetItem per result."""
    name: str
    calls: list
    inputs: list

    @property
    def output(self) -> Call:
        return self.calls[-1]

    @property
    def outputs(self) -> list:
        out = self.output
        if isinstance(out.type, tuple):
            return [TupleGetItem(out, k) for k in range(len(out.type))]
        return [out]


# anchors whose groups may take injective consumers (no reduction to keep vectorizable)
INJECTIVE_CHAIN = ("elementwise", "broadcast", "injective")


def partition(mod: Module) -> list[Group]:
    """The fusion groups of ``mod``, in an order that runs each after its inputs."""
    order = post_order(mod.function.outputs)
    consumers: dict[int, list] = {}
    for node in order:
        if isinstance(node, Call):
            for a in node.args:
                users = consumers.setdefault(id(a), [])
                if not any(u is node for u in users):
                    users.append(node)
    outputs = {id(o) for o in mod.function.outputs}
    position = {id(n): i for i, n in enumerate(order)}
    assigned: set[int] = set()
    groups = []
    for node in order:
        if not isinstance(node, Call) or id(node) in assigned:
            continue
        calls, cur = [node], node
        assigned.add(id(node))
        pattern = get_op(node.op).pattern
        if pattern != "opaque" and not isinstance(node.type, tuple):
            # a chain of data movement (reshape, transpose, ...) and elementwise ops is one
            # gather per output element: injective consumers join it too
            takes = FUSABLE_CONSUMERS + (("injective",) if pattern in INJECTIVE_CHAIN else ())
            while id(cur) not in outputs and len(consumers.get(id(cur), [])) == 1:
                nxt = consumers[id(cur)][0]
                if id(nxt) in assigned or get_op(nxt.op).pattern not in takes \
                        or isinstance(nxt.type, tuple):
                    break
                calls.append(nxt)
                assigned.add(id(nxt))
                cur = nxt
        inside = {id(c) for c in calls}
        inputs, seen = [], set()
        for c in calls:
            for a in c.args:
                if id(a) not in inside and id(a) not in seen:
                    seen.add(id(a))
                    inputs.append(a)
        groups.append(Group("", calls, inputs))
    groups.sort(key=lambda g: position[id(g.output)])
    for i, g in enumerate(groups):
        g.name = f"fused_{'_'.join(c.op for c in g.calls)}_{i}"
    return groups


def group_spec(group: Group, target: str = "llvm") -> str:
    """The JSON text that :func:`group_workload` rebuilds ``group``'s computation from (for a
    CUDA target it says so: convolutions and dense layers are then plain reductions, not the
    CPU BLAS externs; see graph/gpu.py)."""
    index = {id(a): ["i", k] for k, a in enumerate(group.inputs)}
    ops = []
    for k, c in enumerate(group.calls):
        ops.append([c.op, [[key, value] for key, value in c.attrs],
                    [index[id(a)] for a in c.args]])
        index[id(c)] = ["o", k]
    inputs = [[list(a.type.shape), a.type.dtype] for a in group.inputs]
    data = {"inputs": inputs, "ops": ops}
    if is_cuda_target(target):
        data["device"] = "cuda"
    return json.dumps(data, separators=(",", ":"))


def _thaw(value):
    return tuple(_thaw(v) for v in value) if isinstance(value, list) else value


def native_conv_spec(spec: str) -> str | None:
    """The spec of the same group with its convolution computed by tensorlang's own blocked
    kernel (``nn.conv2d_nchw_blocked``, tunable) instead of im2col + BLAS; None when the group
    has no convolution that the blocked form covers (float32, ungrouped, output channels a
    multiple of 4)."""
    data = json.loads(spec)
    if data.get("device") or data.get("conv"):
        return None
    for op_name, attrs, refs in data["ops"]:
        if op_name != "conv2d":
            continue
        attrs = dict((k, _thaw(v)) for k, v in attrs)
        kind, k = refs[1]
        if kind != "i":
            return None
        weight_shape, dtype = data["inputs"][k]
        if attrs.get("groups", 1) != 1 or dtype != "float32" or weight_shape[0] % 4:
            return None
        return json.dumps({**data, "conv": "native"}, separators=(",", ":"))
    return None


def _conv2d_native(xs, attrs):
    from tensorlang import ops as T
    data, weight = xs
    return T.nn.conv2d_nchw_blocked(data, weight, stride=tuple(attrs.get("strides", (1, 1))),
                                    padding=tuple(attrs.get("pads", (0, 0, 0, 0))),
                                    dilation=tuple(attrs.get("dilations", (1, 1))))


@workload
def group_workload(spec: str) -> list:
    """The computation of a fused group from its JSON spec: the input placeholders, then the
    output tensor(s) (each op's compute called in order; a multi-output op is alone in its
    group and gives all its tensors)."""
    data = json.loads(spec)
    ins = placeholders([TensorType(tuple(s), d) for s, d in data["inputs"]])
    values = []
    on_gpu = data.get("device") == "cuda"
    native = data.get("conv") == "native"
    for op_name, attrs, refs in data["ops"]:
        args = [ins[k] if kind == "i" else values[k] for kind, k in refs]
        if on_gpu:
            compute = gpu_compute(op_name)
        elif native and op_name == "conv2d":
            compute = _conv2d_native
        else:
            compute = get_op(op_name).compute
        out = compute(args, {key: _thaw(v) for key, v in attrs})
        if isinstance(out, (list, tuple)):
            if len(data["ops"]) != 1:
                raise UnsupportedOpError(f"graph.build: {op_name} has several outputs; it "
                                         "cannot be fused with other ops")
            return [*ins, *out]
        values.append(out)
    return [*ins, values[-1]]


def _no_kernel(*arrays) -> None:
    """The kernel of a group whose outputs are all empty."""


def build(mod: Module, target: str = "llvm", database=None, vendor: str = "auto",
          progress=None, layout: str = "auto") -> Library:
    """Compile every fusion group of ``mod`` and return a runnable :class:`Library`.

    Args:
        mod: a graph Module (``graph.from_onnx(...)``).
        target: a tensorlang target string (``"llvm"``, ``"llvm -mcpu=..."``, ``"cuda"``,
            ``"cuda -arch=sm_90"``). A CUDA build compiles without a GPU; running it needs one.
        database: a tuning database path or ``autotune.Database``; None gives the default
            schedules.
        vendor: CUDA only: ``"auto"`` runs convolutions and large dense layers with PyTorch
            (cuDNN / cuBLAS) when it is importable with a GPU, ``"torch"`` insists on it,
            ``"none"`` compiles every group to our own kernels.
        progress: ``progress(done, total)``, called as each distinct kernel is ready (the
            ``tensorlang compile`` progress bar).
        layout: CPU convolutions: ``"NCHW"`` (im2col + BLAS), ``"NCHWc"`` (channel-blocked
            tensors between convolutions, weights packed at build), or ``"auto"``: blocked
            unless im2col + BLAS times 1.25x faster here than the blocked kernel (tuned, or
            with its default schedule; ``graph/conv_layout.py``).

    Example:
        >>> lib = graph.build(graph.from_onnx("model.onnx"))   # doctest: +SKIP
        >>> outs = lib.run(x)                                   # doctest: +SKIP
    """
    if not isinstance(mod, Module):
        raise UserError(f"graph.build takes a graph Module, got {type(mod).__name__}")
    from .passes import optimize
    from .conv_layout import check_layout, choose_conv_layout
    check_layout(layout)
    specializer = mod.specializer  # symbolic dims (graph/dynamic.py); the passes drop it
    mod = optimize(mod)  # batch-norm folding, common subexpressions
    untuned: set = set()  # group specs whose tuned kernel timed slower than the default
    mod = choose_conv_layout(mod, target, database, layout, untuned)
    groups = partition(mod)
    empty = [g for g in groups if all(o.type.size == 0 for o in g.outputs)]
    groups = [g for g in groups if not any(g is e for e in empty)]  # nothing to compute
    specs = [group_spec(g, target) for g in groups]
    # each distinct spec once, in worker processes, cached across builds (graph/compile.py)
    jobs = [(g.name, spec) for g, spec in zip(groups, specs)]
    if is_cuda_target(target):
        kernels = compile_kernels(jobs, target, database, vendor=vendor, progress=progress)
    else:
        kernels = compile_kernels([j for j in jobs if j[1] not in untuned], target, database,
                                  progress=progress)
        kernels.update(compile_kernels([j for j in jobs if j[1] in untuned], target, None))
    steps = []
    for g, spec in zip(groups, specs):
        steps.append(Step(g.name, kernels[spec], list(g.inputs), g.outputs))
    for g in empty:  # empty outputs: allocated by the executor, never written
        steps.append(Step(g.name, _no_kernel, [], g.outputs))
    for p in mod.function.params:
        if not isinstance(p, Var):
            raise UserError(f"graph.build: function parameters must be Vars, got {p!r}")
    lib = Library(mod, steps, num_compiled=len(kernels),
                  device="cuda" if is_cuda_target(target) else "cpu")
    lib.target, lib.database = target, database  # what export_library rebuilds with
    if specializer is not None:
        lib.specializations = _specializations(mod, specializer, target, database, vendor,
                                               layout)
    return lib


def _specializations(mod: Module, specializer, target: str, database, vendor: str,
                     layout: str):
    """The per-size libraries of a model with symbolic dims, built on demand like this one."""
    from .dynamic import Specializations

    def build_static(static: Module) -> Library:
        static = Module(static.function, static.input_names, static.output_names)
        return build(static, target=target, database=database, vendor=vendor, layout=layout)

    shapes = {name: p.type.shape for name, p in zip(mod.input_names, mod.function.params)}
    return Specializations(specializer, build_static, specializer.values(shapes))


__all__ = ["Group", "partition", "group_spec", "group_workload", "native_conv_spec", "build"]
