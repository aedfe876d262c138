"""Tuning tasks: a registered workload, its arguments and a target, with a structural key.

A *workload* is a function that builds a computation and returns its argument tensors, inputs
then outputs. It is registered under its importable name (``module.qualname``) so that worker
processes re-import it by module path instead of unpickling it. A :class:`Task` calls the workload
and keys the computation structurally: two workloads that build the same computation (whatever
the function or tensor names) share a key, so it is tuned once.

Example::

    import tensorlang as tl
    from autotune.task import Task, workload

    @workload
    def matmul(m, n, k):
        A = tl.placeholder((m, k), name="A")
        B = tl.placeholder((k, n), name="B")
        r = tl.reduce_axis((0, k), name="r")
        C = tl.compute((m, n), lambda i, j: tl.sum(A[i, r] * B[r, j], axis=r), name="C")
        return [A, B, C]

    task = Task(matmul, args=(64, 64, 64), target="llvm")
    s, args = task.default_schedule()
    f = task.build(s)

A task with target ``"cuda"`` (or ``"cuda -arch=sm_80"``) is keyed by the GPU it is tuned on
(``cuda -arch=sm_90 -device="NVIDIA H200"``; from the target string alone without a GPU), searched
with the GPU sketches of ``autotune.sketch_gpu`` and measured by ``autotune.measure_gpu``; its
reference outputs are still computed on the CPU.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import re
from typing import Any, Callable

import numpy as np

import tensorlang as tl
from codegen.llvm import parse_target
from tensorlang.errors import InternalError, UserError
from tensorlang.expr import (BinaryOp, Call, FloatImm, IntImm, IterVar, Node, ProducerLoad,
                             Reduce, Var)
from tensorlang.reduction import CommReducer
from tensorlang.runtime.dtypes import np_dtype
from tensorlang.tensor import ComputeOp, ExternOp, PlaceholderOp

from .database import Database
from .sketch import default_schedule

_REGISTRY: dict[str, Callable] = {}


# -- workload registry --------------------------------------------------------------------------

def workload_name(func: Callable) -> str:
    """The importable name a workload function is registered under: ``module.qualname``."""
    return f"{func.__module__}.{func.__qualname__}"


def workload(func: Callable) -> Callable:
    """Register ``func`` as a workload and return it unchanged.

    The function takes plain arguments (shapes, dtype names, ...) and returns the argument
    tensors of a computation, inputs then outputs. It must be importable by name: lambdas and
    functions defined inside other functions are refused.

    Raises:
        UserError: not an importable function, or another function already has its name.

    Example:
        >>> @workload
        ... def add_one(n):
        ...     A = tl.placeholder((n,), name="A")
        ...     return [A, tl.compute((n,), lambda i: A[i] + 1.0, name="B")]  # doctest: +SKIP
    """
    if not inspect.isfunction(func):
        raise UserError(f"@autotune.workload registers a function, got {func!r}")
    qualname = func.__qualname__
    if "<lambda>" in qualname or "<locals>" in qualname or not func.__module__:
        raise UserError(
            f"workload {qualname!r} cannot be imported by name (a lambda or a function defined "
            "inside another function); define it at the top level of a module so worker "
            "processes can import it")
    name = workload_name(func)
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not func:
        raise UserError(f"another workload is already registered as {name!r}; "
                        "give the function a different name")
    _REGISTRY[name] = func
    return func


def lookup_workload(name: str) -> Callable:
    """The workload registered as ``name``, importing its module first if needed.

    Raises:
        UserError: no module of that name can be imported, or it registers no such workload.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    parts = name.split(".")
    import_error: Exception | None = None
    for cut in range(len(parts) - 1, 0, -1):  # the longest importable module prefix
        try:
            importlib.import_module(".".join(parts[:cut]))
            break
        except ImportError as e:
            import_error = import_error or e
    if name not in _REGISTRY:
        why = f" (import failed: {import_error})" if import_error else ""
        raise UserError(f"no workload named {name!r} is registered{why}; decorate it with "
                        "@autotune.workload in an importable module")
    return _REGISTRY[name]


# -- tasks ----------------------------------------------------------------------------------------

class Task:
    """One computation to tune: a workload called with ``args``, for ``target``.

    Attributes:
        workload_name: the registered name of the workload.
        args: the workload's arguments (JSON-able, to reach worker processes).
        target: the target string; ``target_key`` is its full form (CPU, features, threads).
        weight: how often the computation occurs (for multi-task tuning).
        group: a label shared by tasks that compute the same result by different algorithms
            (a direct and a Winograd convolution of one layer), or None. The task scheduler
            counts a group's time as its fastest task's, and :func:`best_task` picks among
            them by their best records.
        tensors: the argument tensors the workload returned; ``outputs`` the computed ones.
        key: SHA-256 of the computation's structure (names do not matter).

    Example:
        >>> task = Task(matmul, args=(64, 64, 64), target="llvm")  # doctest: +SKIP
        >>> task.flop_count()                                      # doctest: +SKIP
        524288
    """

    def __init__(self, workload_func_or_name: "Callable | str", args: tuple = (),
                 target: Any = "llvm", weight: float = 1.0, name: str | None = None,
                 target_key: str | None = None, group: str | None = None):
        if isinstance(workload_func_or_name, str):
            func = lookup_workload(workload_func_or_name)
        else:
            func = workload(workload_func_or_name)  # registers it if it was not yet
        self.workload_name = workload_name(func)
        self.args = tuple(args)
        self.target = target if isinstance(target, str) else str(target)
        self.is_cuda = is_cuda_target(self.target)
        if target_key is not None:  # resolved by the process that made the task
            self.target_key = str(target_key)
        elif self.is_cuda:
            self.target_key = cuda_target_key(self.target)
        else:
            self.target_key = parse_target(self.target).key()
        self.weight = float(weight)
        self.group = None if group is None else str(group)
        self._name = name
        self.tensors = _check_tensors(func(*self.args), self.workload_name)
        self.outputs = [t for t in self.tensors if not isinstance(t.op, PlaceholderOp)]
        self.key = hashlib.sha256(canonical_text(self.tensors).encode()).hexdigest()
        self._reference = None

    # -- numbers --------------------------------------------------------------------------------
    def flop_count(self) -> int | None:
        """Estimated arithmetic operations: per compute stage, output points times reduction
        points times arithmetic nodes in the body (index arithmetic left out). ``None`` when an
        extent is symbolic or a stage is an extern call, whose work is unknown."""
        total = 0
        for op in _ops_in_order(self.tensors):
            if isinstance(op, PlaceholderOp):
                continue
            if not isinstance(op, ComputeOp):
                return None
            extents = [*op.output(0).shape, *(iv.dom.extent for iv in op.reduce_axis)]
            if not all(isinstance(e, IntImm) for e in extents):
                return None
            points = 1
            for e in extents:
                points *= e.value
            total += points * _arithmetic_nodes(op.body)
        return total

    # -- schedules and builds -------------------------------------------------------------------
    def default_schedule(self) -> tuple:
        """``(schedule, args)``: the untuned schedule and the argument tensors to build with
        (for a CUDA task, the first GPU sketch with its default decisions: plain loops do not
        run on a GPU; the plain schedule when the computation has no GPU sketch)."""
        if self.is_cuda:
            try:
                from .sketch_gpu import default_gpu_schedule
                return default_gpu_schedule(self.outputs, self.gpu_limits()), list(self.tensors)
            except UserError:
                pass
        return tl.create_schedule(self.outputs), list(self.tensors)

    def apply_best(self, database=None) -> tuple:
        """``(schedule, args)``: the best measured schedule of this task on its target, replayed
        on this task's tensors; with no database, a missing file or no usable record, the
        default schedule of the search space (``sketch.default_schedule``).

        ``database`` is a path or an open :class:`~autotune.database.Database`; a missing file
        is not created. Records of another target (another CPU or thread count) never apply.

        Example:
            >>> s, args = task.apply_best("tuning.db")                 # doctest: +SKIP
            >>> f = tl.build(s, args, target=task.target)              # doctest: +SKIP
        """
        db, opened = database, False
        if isinstance(database, (str, os.PathLike)):
            path = os.fspath(database)
            db = Database(path) if path == ":memory:" or os.path.exists(path) else None
            opened = db is not None
        try:
            for record in (db.best(self.key, self.target_key, k=8) if db is not None else []):
                try:  # a record that no longer replays (an older schedule language) is skipped
                    return tl.schedule_from_json(record.schedule, self.tensors), list(self.tensors)
                except UserError:
                    continue
        finally:
            if opened:
                db.close()
        try:
            if self.is_cuda:
                from .sketch_gpu import default_gpu_schedule
                return default_gpu_schedule(self.outputs, self.gpu_limits()), list(self.tensors)
            return default_schedule(self.outputs, _vector_lanes(self)), list(self.tensors)
        except UserError:  # no search space for it (symbolic extents, ...): the plain schedule
            return self.default_schedule()

    def build(self, schedule):
        """Compile ``schedule`` of this task's computation for the task's target (for CUDA:
        the architecture of its ``target_key``, so no GPU is needed to compile)."""
        return tl.build(schedule, list(self.tensors), target=self.build_target)

    @property
    def build_target(self) -> str:
        """The target string to compile with: ``"cuda -arch=sm_90"`` for a CUDA task (the
        architecture its key names), the task's target otherwise."""
        if self.is_cuda:
            return f"cuda -arch={cuda_arch_of_key(self.target_key)}"
        return self.target

    def gpu_limits(self):
        """The :class:`~autotune.sketch_gpu.GpuLimits` GPU sketches of this task respect: the
        device's when a GPU is present, H100/H200 values otherwise."""
        from .sketch_gpu import gpu_limits
        return gpu_limits(probe=_cuda_probe_allowed())

    def random_inputs(self, seed: int = 0) -> list[np.ndarray]:
        """One NumPy array per argument tensor: normal floats, small integers, zeroed outputs."""
        rng = np.random.default_rng(seed)
        arrays = []
        for t in self.tensors:
            shape = _concrete_shape(t, self.workload_name)
            dtype = np_dtype(t.dtype)
            if not isinstance(t.op, PlaceholderOp):
                arrays.append(np.zeros(shape, dtype))
            elif dtype == np.bool_:
                arrays.append(rng.integers(0, 2, shape).astype(bool))
            elif np.issubdtype(dtype, np.unsignedinteger):
                arrays.append(rng.integers(0, 8, shape).astype(dtype))
            elif np.issubdtype(dtype, np.integer):
                arrays.append(rng.integers(-4, 5, shape).astype(dtype))
            else:
                arrays.append(rng.standard_normal(shape).astype(dtype))
        return arrays

    def reference_outputs(self, arrays) -> list[np.ndarray]:
        """The outputs for ``arrays`` (as ``random_inputs`` gives), computed by the default
        schedule built for this host; the arrays passed in are left untouched."""
        if len(arrays) != len(self.tensors):
            raise UserError(f"task {self.workload_name}: expected {len(self.tensors)} arrays, "
                            f"got {len(arrays)}")
        if self._reference is None:
            schedule, args = tl.create_schedule(self.outputs), list(self.tensors)
            if self.is_cuda:  # large GPU workloads: the CPU sketch's default, not naive loops
                try:
                    lanes = max(1, parse_target("llvm").vector_bits // 32)
                    schedule = default_schedule(self.outputs, lanes)
                except UserError:
                    pass
            self._reference = tl.build(schedule, args, target="llvm")
        copies = [np.array(a, copy=True) for a in arrays]
        self._reference(*copies)
        return [c for c, t in zip(copies, self.tensors) if not isinstance(t.op, PlaceholderOp)]

    # -- serialization --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-able description that ``Task.from_dict`` turns back into the task."""
        d = {"workload": self.workload_name, "args": list(self.args), "target": self.target,
             "weight": self.weight}
        if self.is_cuda:  # worker processes must not probe (or need) the GPU to key the task
            d["target_key"] = self.target_key
        if self.group is not None:
            d["group"] = self.group
        try:
            json.dumps(d)
        except TypeError as e:
            raise UserError(f"task {self.workload_name}: its arguments {self.args!r} are not "
                            f"JSON-able ({e}), so worker processes cannot receive them") from e
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Task":
        """The task ``to_dict`` described (its workload is imported by name if needed)."""
        return cls(d["workload"], args=_tuples(d.get("args", [])),
                   target=d.get("target", "llvm"), weight=d.get("weight", 1.0),
                   target_key=d.get("target_key"), group=d.get("group"))

    def __eq__(self, other):
        return isinstance(other, Task) and (self.key, self.target_key) == \
            (other.key, other.target_key)

    def __hash__(self):
        return hash((self.key, self.target_key))

    @property
    def name(self) -> str:
        """A short label for progress lines and reports: the ``name`` given, else the
        workload's short name and arguments (long arguments cut)."""
        if self._name:
            return self._name
        args = ",".join(str(a) for a in self.args)
        if len(args) > 40:
            args = args[:37] + "..."
        return f"{self.workload_name.rsplit('.', 1)[-1]}({args})"

    def __repr__(self):
        return (f"Task({self.workload_name}, args={self.args!r}, target={self.target!r}, "
                f"key={self.key[:12]})")


def best_task(tasks, database=None) -> "Task":
    """Of ``tasks`` that compute the same result by different algorithms (one ``group``), the
    one whose best record on its target is fastest; the first task when none has a record.
    ``database`` is a path or an open :class:`~autotune.database.Database`; a missing file is
    not created. Costs of one tuning run on one machine are comparable across the tasks
    (each is seconds per call of the whole computation).

    Example:
        >>> task = best_task([direct, winograd], "tuning.db")        # doctest: +SKIP
        >>> s, args = task.apply_best("tuning.db")                   # doctest: +SKIP
    """
    tasks = list(tasks)
    if not tasks:
        raise UserError("best_task: needs at least one task")
    db = database
    if isinstance(database, (str, os.PathLike)):
        path = os.fspath(database)
        db = Database(path) if path == ":memory:" or os.path.exists(path) else None
    if db is None:
        return tasks[0]
    try:
        costs = []
        for task in tasks:
            best = db.best(task.key, task.target_key, k=1)
            costs.append(best[0].mean_cost if best else float("inf"))
    finally:
        if db is not database:
            db.close()
    return tasks[min(range(len(tasks)), key=lambda i: (costs[i], i))]


def is_cuda_target(target: str) -> bool:
    """Whether a target string names an NVIDIA GPU (``"cuda"``, ``"cuda -arch=sm_90"``)."""
    words = str(target).split()
    return bool(words) and words[0] in ("cuda", "nvptx")


def _cuda_probe_allowed() -> bool:
    # build workers hide the GPU (CUDA_VISIBLE_DEVICES=""), so probing there finds none anyway;
    # TENSORLANG_NO_CUDA_PROBE=1 skips the probe (and the CUDA context it opens) entirely
    return os.environ.get("TENSORLANG_NO_CUDA_PROBE", "") not in ("1", "true", "yes")


def cuda_target_key(target: str) -> str:
    """The full key of a CUDA target: ``cuda -arch=sm_90 -device="NVIDIA H200"`` when a GPU
    is present (its architecture unless the target names one, and its name), else from the
    target string alone (``cuda -arch=sm_90`` by default): records of one GPU never apply to
    another.

    Raises:
        UserError: a malformed CUDA target string.
    """
    from codegen.cuda import parse_cuda_target
    arch = parse_cuda_target(target)
    device = None
    if _cuda_probe_allowed():
        try:
            from tensorlang.runtime import cuda
            if cuda.available():
                props = cuda.device_properties()
                device = props.name
                arch = arch or props.arch
        except Exception:  # noqa: BLE001 -- no usable GPU: key from the string alone
            device = None
    key = f"cuda -arch={arch or 'sm_90'}"
    if device:
        key += f' -device="{device}"'
    return key


def cuda_arch_of_key(key: str) -> str:
    """The ``sm_XX`` a CUDA target key names."""
    m = re.search(r"-arch=(sm_\d+[a-z]?)", key)
    return m.group(1) if m else "sm_90"


def _vector_lanes(task: "Task") -> int:
    """Vector lanes of the task's target for its first output's element type (8 for float32 on
    AVX2): the width sketches tile the innermost loops by."""
    bits = re.search(r"(\d+)$", task.outputs[0].dtype) if task.outputs else None
    element = int(bits.group(1)) if bits else 32
    return max(1, parse_target(task.target).vector_bits // max(element, 8))


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _check_tensors(result, name: str) -> list:
    if not isinstance(result, (list, tuple)) or not result:
        raise UserError(f"workload {name} must return a non-empty list of the argument tensors "
                        f"(inputs then outputs), got {type(result).__name__}")
    for pos, t in enumerate(result):
        if not isinstance(t, tl.Tensor):
            raise UserError(f"workload {name} returned {type(t).__name__} at position {pos}; "
                            "every item must be a tl.Tensor (inputs then outputs)")
    if all(isinstance(t.op, PlaceholderOp) for t in result):
        raise UserError(f"workload {name} returned only placeholders; add the computed "
                        "output tensors after the inputs")
    return list(result)


def _concrete_shape(t, name: str) -> tuple:
    if not all(isinstance(d, IntImm) for d in t.shape):
        raise UserError(f"workload {name}: tensor {t.name} has a symbolic shape "
                        f"{t.shape}; random inputs need concrete extents")
    return tuple(d.value for d in t.shape)


# -- flop estimate --------------------------------------------------------------------------------

def _arithmetic_nodes(body) -> int:
    first = body[0]
    if isinstance(first, Reduce):
        count = sum(_count(s) for s in first.source)
        return count + sum(_count(r) for r in first.combiner.result)
    return sum(_count(b) for b in body)


_NOT_ARITHMETIC = ("if_then_else",)  # a choice, not work


def _count(e) -> int:
    if isinstance(e, ProducerLoad):
        return 0  # indices are address arithmetic, not work
    own = 1 if isinstance(e, BinaryOp) or (isinstance(e, Call) and not e.extern
                                           and e.op not in _NOT_ARITHMETIC) else 0
    if isinstance(e, Node) and not isinstance(e, (Var, IterVar)):
        return own + sum(_count(v) for _, v in e.fields() if isinstance(v, (Node, tuple)))
    if isinstance(e, tuple):
        return sum(_count(v) for v in e)
    return 0


# -- structural key -------------------------------------------------------------------------------

def _ops_in_order(tensors) -> list:
    """Every operation reached from ``tensors``, producers before consumers, in a stable order
    (depth first, inputs in first-use order, starting from the arguments in order)."""
    order, seen = [], set()

    def visit(op):
        if id(op) in seen:
            return
        seen.add(id(op))
        for t in op.input_tensors:
            visit(t.op)
        order.append(op)

    for t in tensors:
        visit(t.op)
    return order


def canonical_text(tensors) -> str:
    """The computation reached from ``tensors`` as text with every name replaced by its order of
    appearance: equal for computations equal up to names, different otherwise."""
    return _Canonical(tensors).text


class _Canonical:
    def __init__(self, tensors):
        ops = _ops_in_order(tensors)
        self.ops = {id(op): i for i, op in enumerate(ops)}
        self.names: dict[int, str] = {}
        lines = [f"t{i} = {self.op(op)}" for i, op in enumerate(ops)]
        lines.append("args = " + self.value(list(tensors)))
        self.text = "\n".join(lines)

    def op(self, op) -> str:
        if isinstance(op, PlaceholderOp):
            return f"placeholder({self.value(op.shape)}, {op.dtype})"
        if isinstance(op, ComputeOp):
            return (f"compute(tag={self.value(op.tag)}, attrs={self.value(op.attrs)}, "
                    f"shape={self.value(op.output(0).shape)}, axis={self.value(op.axis)}, "
                    f"reduce_axis={self.value(op.reduce_axis)}, body={self.value(op.body)})")
        if isinstance(op, ExternOp):
            return (f"extern(tag={self.value(op.tag)}, attrs={self.value(op.attrs)}, "
                    f"inputs={self.value(op.inputs)}, in={self.value(op.input_buffers)}, "
                    f"out={self.value(op.output_buffers)}, body={self.value(op.body)})")
        raise UserError(f"cannot key an operation of type {type(op).__name__} ({op.name})")

    def tensor(self, t) -> str:
        index = self.ops.get(id(t.op))
        if index is None:
            raise InternalError(f"tensor {t.name} is read but was not reached from the arguments")
        return f"t{index}.{t.value_index}"

    def identity(self, x, definition: Callable[[], str]) -> str:
        # the first mention defines the object; later ones refer to it by number
        if id(x) in self.names:
            return self.names[id(x)]
        name = f"%{len(self.names)}"
        self.names[id(x)] = name
        return f"{name}:{definition()}"

    def value(self, x) -> str:
        if isinstance(x, Var):
            return self.identity(x, lambda: x.dtype)
        if isinstance(x, IterVar):
            return self.identity(x, lambda: f"iter({self.value(x.var)}, {self.value(x.dom)}, "
                                            f"{x.kind}, {x.thread_tag!r})")
        if type(x).__name__ == "Buffer":
            return self.identity(x, lambda: self.node(x, skip=("name",)))
        if isinstance(x, ProducerLoad):
            return f"load({self.tensor(x.producer)}, {self.value(x.indices)}, {x.dtype})"
        if isinstance(x, FloatImm):
            return f"{x.dtype}({x.value!r})"
        if isinstance(x, Node):
            return self.node(x)
        if isinstance(x, CommReducer):  # its name does not change what it computes
            return (f"reducer({self.value(x.lhs)}, {self.value(x.rhs)}, "
                    f"{self.value(x.result)}, {self.value(x.identity)})")
        if isinstance(x, tl.Tensor):
            return self.tensor(x)
        if isinstance(x, (list, tuple)):
            return "[" + ", ".join(self.value(v) for v in x) + "]"
        if isinstance(x, dict):
            return "{" + ", ".join(f"{self.value(str(k))}: {self.value(x[k])}"
                                   for k in sorted(x, key=str)) + "}"
        if isinstance(x, str):
            return json.dumps(x)
        if x is None or isinstance(x, (bool, int, float)):
            return repr(x)
        raise UserError(f"cannot key a value of type {type(x).__name__} in a computation "
                        f"({x!r}); op attrs must be numbers, strings, lists or expressions")

    def node(self, x, skip=()) -> str:
        fields = ", ".join(f"{name}={self.value(v)}" for name, v in x.fields()
                           if name not in skip)
        return f"{type(x).__name__}({fields})"


__all__ = ["Task", "workload", "lookup_workload", "workload_name", "canonical_text",
           "is_cuda_target", "cuda_target_key"]
