"""Export a CPU-built model as one shared library with a plain C entry point.

``export_library(lib, "model.so")`` writes ``model.so`` and its header ``model.h``. The library
holds

* every distinct kernel's object code (from the kernels' optimised LLVM IR; each kernel's
  exported symbols renamed ``tlm_k<i>...`` and hidden, everything else made internal, so kernels
  of any names link side by side);
* the plan (generated C, graph/export_c.py): the kernel calls in order, each buffer a pointer
  into the caller's tensors, into the weights, or into one workspace (allocated once, 64-byte
  aligned) at the offset the memory plan gave it — intermediate values share space once dead;
* the weights: one binary blob linked in through an assembly ``.incbin`` (never C literals),
  each constant at a 64-byte aligned offset;
* a small pthread pool that the kernels' parallel loops launch on (each kernel's
  ``__parallel_launch`` pointer is pointed at it at the first run), sized by
  ``TENSORLANG_NUM_THREADS``, else the CPUs the process may use, or ``model_set_num_threads``;
* the C API declared in the header: ``model_run(const DLTensor* inputs, DLTensor* outputs)``,
  ``model_last_error``, ``model_num_inputs`` / ``model_input_name`` / ``_ndim`` / ``_shape`` /
  ``_dtype`` (and the same for outputs), ``model_set_num_threads`` / ``model_get_num_threads``.

Vendor BLAS: groups that call the BLAS in-process (convolutions through im2col + sgemm and dense
layers of several rows, graph/ops/gemm.py and graph/ops/nn.py) reach scipy's OpenBLAS through
function pointers resolved inside the Python process. An exported library must run without
Python or scipy, so those groups are compiled again for the export as tensorlang's own kernels:
the convolution as the blocked native kernel (``graph.build.native_conv_spec``) or the plain
direct one, a Winograd convolution with its products as a DSL reduction (``tensorlang.ops.
winograd``), the dense layer as ``ops.nn.dense``, with the tuned record of that computation when
the build's database has one, else the default schedule. Their numbers then agree with the
in-process library up to float reassociation, and their speed may differ. Kernels that a build
compiled in worker processes (whose LLVM IR is not kept) are compiled again here the same way
the build compiled them.

Each parallel loop is cut into as many tasks as the build's target had threads
(``-num-threads``, by default this machine's thread count at build time); the pool runs those
tasks on up to its own thread count.

Example::

    lib = graph.build(graph.from_onnx("model.onnx"), target="llvm")
    lib.export_library("model.so")           # model.so + model.h
    lib2 = graph.load_library("model.so")    # or link model.so from C
    (y,) = lib2.run(x)
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

import llvmlite.binding as llvm
import numpy as np

import tensorlang as tl
from autotune.task import Task, workload
from codegen.llvm.blas import GROUP_SHIMS, PART_SHIMS, SHIMS
from codegen.llvm.export import find_compiler
from codegen.llvm.target import parse_target, target_machine
from tensorlang import ops as T
from tensorlang.errors import InternalError, UnsupportedOpError, UserError
from tensorlang.runtime.dtypes import itemsize
from tensorlang.tensor import ExternOp

from .build import Group, _conv2d_native, _thaw, group_spec, group_workload, native_conv_spec
from .compile import _compile_here, _extern_schedule
from .executor import value_key
from .export_c import KernelCall, Plan, TensorInfo, header_text, kernel_symbol, plan_source, \
    weights_assembly
from .ir import Call, Constant, TensorType, TupleGetItem, Var
from .memory_plan import plan_slots
from .ops import get_op, placeholders

ALIGN = 64
FORMAT = 1


def export_library(lib, path: "str | os.PathLike", database=None, prefix: str = "model") -> None:
    """Write ``lib`` (a CPU-built :class:`graph.Library`) as the shared library ``path`` and
    its C header beside it (same stem, ``.h``).

    Args:
        lib: the built model.
        path: the ``.so`` to write.
        database: the tuning database for the groups compiled again here (BLAS groups, and
            groups a build compiled in worker processes); None: the build's database when it
            can be known, else the default schedules.
        prefix: the C API's name prefix (``<prefix>_run``, ...); a C identifier. Give two
            models different prefixes to link both into one C program.

    Raises:
        UnsupportedOpError: a CUDA-built library, no C compiler, or a kernel the export cannot
            handle (the message names its group).
        UserError: compiling or linking failed (the message names the file and the command).

    Example:
        >>> lib = graph.build(graph.from_onnx("model.onnx"))   # doctest: +SKIP
        >>> export_library(lib, "model.so")                     # doctest: +SKIP
    """
    if getattr(lib, "device", "cpu") != "cpu":
        raise UnsupportedOpError(f"export_library({os.fspath(path)!r}): CUDA export not "
                                 "supported yet; build the model with target='llvm' to export "
                                 "it for the CPU")
    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix):
        raise UserError(f"export_library: prefix must be a C identifier, got {prefix!r}")
    compiler = find_compiler()
    if compiler is None:
        raise UnsupportedOpError(f"export_library({os.fspath(path)!r}) needs a C compiler to "
                                 "compile the plan and link the library (cc, gcc or clang on "
                                 "PATH, or $CC); none was found")
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(os.path.dirname(path)):
        raise UserError(f"export_library: the folder of {path} does not exist")
    if database is None:
        database = _build_database(lib)
    kernels, kernel_of_step = _export_kernels(lib, database)
    objects = [_kernel_object(kernel, index) for index, kernel in enumerate(kernels)]
    plan, constants = _make_plan(lib, kernels, kernel_of_step, prefix,
                                 [parallel for _, parallel in objects])
    stem = os.path.splitext(path)[0]
    header_name = os.path.basename(stem) + ".h"
    guard = "TENSORLANG_" + re.sub(r"[^A-Za-z0-9]", "_", os.path.basename(stem)).upper() + "_H_"
    header = header_text(plan, guard)
    with tempfile.TemporaryDirectory(prefix="tensorlang_model_") as tmp:
        object_paths = []
        for index, (code, _) in enumerate(objects):
            object_paths.append(os.path.join(tmp, f"kernel{index}.o"))
            with open(object_paths[-1], "wb") as handle:
                handle.write(code)
        blob = os.path.join(tmp, "weights.bin")
        _write_weights(blob, constants)
        sources = {"weights.s": weights_assembly(blob), header_name: header,
                   "plan.c": plan_source(plan, header_name)}
        for name, text in sources.items():
            with open(os.path.join(tmp, name), "w") as handle:
                handle.write(text)
        # linked beside the target, then renamed over it: a process that has the old file
        # loaded keeps its (unlinked) copy instead of seeing it rewritten in place
        staging = f"{path}.{os.getpid()}.tmp"
        command = [compiler, "-O2", "-fPIC", "-shared", "-pthread", "-fvisibility=hidden",
                   "-o", staging, os.path.join(tmp, "plan.c"), os.path.join(tmp, "weights.s"),
                   *object_paths, "-lm"]
        if sys.platform.startswith("linux"):
            command.insert(-1, "-Wl,--no-undefined")  # a leftover external is an error here
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            if os.path.exists(staging):
                os.remove(staging)
            raise UserError(f"export_library: compiling and linking {path} failed "
                            f"({' '.join(command)}):\n{result.stderr[-4000:]}")
        os.replace(staging, path)
    with open(stem + ".h", "w") as handle:
        handle.write(header)


# -- kernels -----------------------------------------------------------------------------------
def _build_database(lib):
    """The database the build used (``graph.build`` records it on the library)."""
    return getattr(lib, "database", None)


def _export_kernels(lib, database) -> tuple[list, dict]:
    """The distinct kernels as modules with LLVM IR and no BLAS call (compiled again where
    needed), and ``{step index: kernel index}``; steps with nothing to compute have none."""
    kernels, index_of, kernel_of_step = [], {}, {}
    for position, step in enumerate(lib._steps):
        if not hasattr(step.kernel, "signature"):
            continue  # a group whose outputs are all empty
        if id(step.kernel) not in index_of:
            index_of[id(step.kernel)] = len(kernels)
            kernels.append(_exportable(step, database))
        kernel_of_step[position] = index_of[id(step.kernel)]
    return kernels, kernel_of_step


def _exportable(step, database):
    """``step.kernel`` when its IR is kept and calls no BLAS; else the group compiled again."""
    kernel = step.kernel
    target = kernel.signature.target
    try:
        text = kernel.get_source("ll")
    except UnsupportedOpError:
        text = None  # compiled by a worker process and loaded from its library
    if text is not None and not _calls_blas(text):
        return kernel
    spec = _step_spec(step, target)
    if text is None and not _calls_blas(None, spec, target):
        return _compile_here(step.name, spec, target, database)  # as the build did
    task = Task(native_group_workload, args=(spec,), target=target)
    if any(t.op.tag == "winograd_output" for t in _all_tensors(task.outputs)):
        schedule, args = _extern_schedule(task), list(task.tensors)  # its own stage schedules
    else:
        schedule, args = task.apply_best(database)
    if any(isinstance(stage.op, ExternOp) for stage in schedule.stages):
        raise UnsupportedOpError(f"export_library: group {step.name} still calls an external "
                                 "function after its BLAS layers were made native")
    return tl.build(schedule, args, target=target, name=step.name)


def _calls_blas(ir_text, spec: str | None = None, target: str | None = None) -> bool:
    if ir_text is not None:
        return any(re.search(rf"declare [^\n]*@{name}\(", ir_text)
                   for name in (*SHIMS, *PART_SHIMS, *GROUP_SHIMS))
    task = Task(group_workload, args=(spec,), target=target)
    return any(isinstance(t.op, ExternOp) for t in _all_tensors(task.outputs))


def _all_tensors(outputs) -> list:
    found, stack, seen = [], list(outputs), set()
    while stack:
        t = stack.pop()
        if id(t.op) in seen:
            continue
        seen.add(id(t.op))
        found.append(t)
        stack.extend(getattr(t.op, "input_tensors", ()) or ())
    return found


def _step_spec(step, target: str) -> str:
    """The group spec of ``step``: its calls (every call between its inputs and its outputs,
    inputs first) with its inputs in kernel-parameter order."""
    stop = {id(a) for a in step.inputs}
    roots = [o.tuple_value if isinstance(o, TupleGetItem) else o for o in step.outputs]
    calls, seen = [], set()
    for root in roots:
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                calls.append(node)
                continue
            if id(node) in seen or id(node) in stop or not isinstance(node, Call):
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((a, False) for a in reversed(node.args))
    try:
        return group_spec(Group(step.name, calls, list(step.inputs)), target)
    except KeyError:
        raise InternalError(f"export_library: group {step.name} reads a value that is neither "
                            "one of its inputs nor one of its calls") from None


@workload
def native_group_workload(spec: str) -> list:
    """The computation of a fused group (like ``graph.build.group_workload``) with every BLAS
    layer replaced by tensorlang's own kernel: a convolution by the blocked kernel when
    ``native_conv_spec`` covers it, else by the direct one; a dense layer by ``ops.nn.dense``.
    Its structural task key is the native group's, so tuning records for it apply."""
    data = json.loads(spec)
    blocked = native_conv_spec(spec) is not None
    ins = placeholders([TensorType(tuple(s), d) for s, d in data["inputs"]])
    values = []
    for op_name, attrs, refs in data["ops"]:
        args = [ins[k] if kind == "i" else values[k] for kind, k in refs]
        attrs = {key: _thaw(v) for key, v in attrs}
        out = get_op(op_name).compute(args, attrs)
        if not isinstance(out, (list, tuple)) and \
                any(isinstance(t.op, ExternOp) for t in _all_tensors([out])):
            if op_name == "conv2d" and blocked:
                out = _conv2d_native(args, attrs)
            elif op_name == "conv2d":
                out = T.nn.conv2d_nchw(args[0], args[1],
                                       stride=tuple(attrs.get("strides", (1, 1))),
                                       padding=tuple(attrs.get("pads", (0, 0, 0, 0))),
                                       dilation=tuple(attrs.get("dilations", (1, 1))),
                                       groups=attrs.get("groups", 1))
            elif op_name == "dense":
                out = T.nn.dense(args[0], args[1])
            elif op_name == "conv2d_winograd_nchwc":  # the products as a DSL reduction
                out = T.winograd.conv2d_winograd_nchwc(
                    args[0], args[1], tile=int(attrs.get("tile", 4)),
                    padding=tuple(attrs.get("pads", (0, 0, 0, 0))),
                    out_block=int(attrs["block"]))
            else:
                raise UnsupportedOpError(f"export_library: {op_name} calls an external "
                                         "function and has no native form to export")
        if isinstance(out, (list, tuple)):
            return [*ins, *out]
        values.append(out)
    return [*ins, values[-1]]


def _kernel_object(kernel, index: int) -> tuple[bytes, bool]:
    """Object code of ``kernel`` whose entry, error-message function and parallel-launch pointer
    are renamed ``tlm_k<index>...`` and hidden, every other definition made internal; and
    whether it has a parallel-launch pointer."""
    entry = kernel.signature.entry
    symbol = kernel_symbol(index)
    keep = {entry: symbol, f"{entry}__error_message": f"{symbol}__error_message",
            f"{entry}__parallel_launch": f"{symbol}__parallel_launch"}
    module = llvm.parse_assembly(kernel.get_source("ll"))
    parallel = False
    for value in [*module.functions, *module.global_variables]:
        if value.is_declaration:
            continue
        parallel |= value.name == f"{entry}__parallel_launch"
        if value.name in keep:
            value.name = keep[value.name]
            value.visibility = "hidden"
        elif value.linkage.name not in ("internal", "private", "appending"):
            value.linkage = "internal"
    module.verify()
    target = parse_target(kernel.signature.target)
    return target_machine(target, jit=False).emit_object(module), parallel


# -- the plan ----------------------------------------------------------------------------------
def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _nbytes(t: TensorType) -> int:
    return t.size * itemsize(t.dtype)


def _plan_workspace(steps: list, output_keys: set) -> tuple[dict, int]:
    """``({value key: byte offset}, workspace bytes)`` for every intermediate value: the
    executor's plan (graph/memory_plan.py), its slots laid out one after another, 64-byte
    aligned."""
    sizes, slot_of, _ = plan_slots(steps, output_keys, keep_outputs=False, size_of=_nbytes)
    offsets, total = [], 0
    for size in sizes:
        offsets.append(total)
        total += _aligned(size)
    return {key: offsets[slot] for key, slot in slot_of.items()}, total


def _make_plan(lib, kernels: list, kernel_of_step: dict, prefix: str,
               parallel: list) -> tuple[Plan, list]:
    """The :class:`Plan` of ``lib`` (``parallel``: per kernel, whether it has a parallel-launch
    pointer) and its constants as ``[(byte offset, array)]``."""
    steps, params, outputs = lib._steps, list(lib._params), list(lib._outputs)
    places: dict = {value_key(p): f"in[{i}]" for i, p in enumerate(params)}
    constants, constant_at, weights_bytes = [], {}, 0

    def place(node) -> str:
        nonlocal weights_bytes
        key = value_key(node)
        if key in places:
            return places[key]
        if isinstance(node, Constant):
            digest = (node.type, node._digest)
            if digest not in constant_at:
                constant_at[digest] = weights_bytes
                constants.append((weights_bytes, node.value))
                weights_bytes += _aligned(max(_nbytes(node.type), 1))
            places[key] = f"W + {constant_at[digest]}"
            return places[key]
        raise InternalError(f"export_library: value {getattr(node, 'name', node)!r} is read "
                            "before any step computes it")

    produced = {value_key(o) for step in steps for o in step.outputs}
    copies, direct = [], set()
    for j, node in enumerate(outputs):
        key = value_key(node)
        if key in produced and key not in direct and not isinstance(node, (Var, Constant)):
            places[key] = f"out[{j}]"
            direct.add(key)
    offsets, workspace = _plan_workspace(steps, direct)
    places.update({key: f"ws + {offset}" for key, offset in offsets.items()})
    calls = []
    for position, step in enumerate(steps):
        if position not in kernel_of_step:
            continue
        index = kernel_of_step[position]
        nodes = [*step.inputs, *step.outputs]
        calls.append(KernelCall(step.name, index, [place(n) for n in nodes],
                                _shape_values(kernels[index], step.name, nodes)))
    for j, node in enumerate(outputs):
        if places.get(value_key(node)) != f"out[{j}]":
            copies.append((j, place(node), _nbytes(node.type)))
    info = json.dumps({"format": FORMAT, "prefix": prefix, "inputs": list(lib.input_names),
                       "outputs": list(lib.output_names), "groups": [c.group for c in calls]})
    plan = Plan(prefix=prefix,
                inputs=[TensorInfo(n, p.type.shape, p.type.dtype)
                        for n, p in zip(lib.input_names, params)],
                outputs=[TensorInfo(n, o.type.shape, o.type.dtype)
                         for n, o in zip(lib.output_names, outputs)],
                kernels=list(parallel), calls=calls, copies=copies,
                workspace_bytes=workspace, weights_bytes=weights_bytes, info=info)
    return plan, constants


def _shape_values(kernel, group: str, nodes: list) -> list:
    """The kernel's symbolic extents bound from the (static) types of its arguments; checks
    that every fixed extent and dtype agrees with the value passed."""
    params = kernel.signature.params
    if len(params) != len(nodes) or any(p.kind != "buffer" for p in params):
        raise UnsupportedOpError(f"export_library: the kernel of group {group} takes "
                                 f"{len(params)} parameters (buffers only are supported), the "
                                 f"group passes {len(nodes)} tensors")
    values: dict = {}
    for spec, node in zip(params, nodes):
        if spec.dtype != node.type.dtype or len(spec.shape) != len(node.type.shape):
            raise InternalError(f"export_library: group {group}: kernel parameter {spec.name} "
                                f"is {spec.dtype}{spec.shape}, the value is {node.type}")
        for dim, extent in zip(spec.shape, node.type.shape):
            if isinstance(dim, int):
                if dim != extent:
                    raise InternalError(f"export_library: group {group}: kernel parameter "
                                        f"{spec.name} has extent {dim}, the value {extent}")
            elif dim[0] == "var":
                values.setdefault(dim[1], extent)
        compact = _compact_strides(node.type.shape)
        for dim, stride, extent in zip(spec.strides or (), compact, node.type.shape):
            if isinstance(dim, int) and dim != stride and extent != 1:
                raise UnsupportedOpError(f"export_library: the kernel of group {group} wants "
                                         f"strides {spec.strides} for {spec.name}; the plan "
                                         "passes compact tensors")
            if not isinstance(dim, int) and dim[0] == "var":
                values.setdefault(dim[1], stride)
    count = len(kernel.signature.shape_vars)
    if set(values) != set(range(count)):
        raise UnsupportedOpError(f"export_library: the kernel of group {group} has symbolic "
                                 "extents that its arguments' shapes do not give")
    return [values[j] for j in range(count)]


def _compact_strides(shape: tuple) -> list:
    strides, step = [], 1
    for extent in reversed(shape):
        strides.append(step)
        step *= max(extent, 1)
    return strides[::-1]


def _write_weights(path: str, constants: list) -> None:
    with open(path, "wb") as handle:
        at = 0
        for offset, value in constants:
            handle.write(b"\0" * (offset - at))
            data = np.ascontiguousarray(value).tobytes()
            handle.write(data)
            at = offset + len(data)


__all__ = ["export_library", "native_group_workload"]
