"""Program features of lowered loop IR, for the cost model.

:func:`extract` walks a lowered (flattened, vectorized) ``PrimFunc`` once and describes every
``BufferStore`` -- the innermost statements -- by a fixed-length row of ``N_FEATURES`` numbers;
:func:`extract_pooled` folds the rows of one candidate into one vector. The layout is fixed and
named by ``FEATURE_NAMES`` (see the table below), so models trained on one run read another's.

Example::

    import tensorlang as tl
    from autotune import features

    func = tl.lower(schedule, args)
    rows = features.extract(func)            # (n_stores, N_FEATURES) float32
    vector = features.extract_pooled(func)   # (POOLED_LENGTH,) float32

Row layout (``log`` marks a ``log2(1 + x)`` transform; counts are totals over the enclosing
loop nest, each vector operation counted once per lane):

====================  ===================================================================
group                 features
====================  ===================================================================
float arithmetic      add/sub, mul, div, fused multiply-add pairs (mul feeding add/sub),
                      min/max, math intrinsics (exp, log, tanh, sqrt, ...), compares (log)
integer arithmetic    add/sub, mul, div/mod, min/max, compares (log)
other ops             selects (``Select``, ``if_then_else``), boolean and/or/not, casts (log)
vector                lanes of the stored value, whether the store is a vector store
loop context          product of enclosing extents (log); extents of the innermost 1-4 loops
                      (log, 0 when absent); loop depth; number of parallel, vectorized and
                      unrolled enclosing loops and the products of their extents (log);
                      whether the innermost loop is vectorized (a vector store or a
                      ``vectorized`` loop); enclosing conditions (``IfThenElse``)
allocations           number of ``Allocate`` around the store, their total bytes (log)
intensity             float ops / unique bytes of all buffers accessed (log)
per buffer (x K)      the K=5 buffers with the most bytes touched, most first; for each:
                      present, read, write, local scope, accesses per execution, vector
                      lanes, bytes per innermost iteration, total bytes, unique bytes over
                      the nest and over the innermost 1, 2 and 3 loops, reuse (total /
                      unique), stride w.r.t. the innermost loop,
                      stride w.r.t. the innermost loop with extent > 1, stride w.r.t. the
                      innermost loop the access varies with, vector (ramp) stride, reuse
                      distance in iterations (all byte, stride and distance values log,
                      strides as absolute values in elements), irregular (non-affine) index
====================  ===================================================================

Strides are the coefficients of the loop variables in the flat index, read off an affine walk
of the index; a non-affine index (``//``, ``%``, ...) falls back to
``simplify(index[v:=1] - index[v:=0])`` with the other loop variables at 0. Unique bytes are
estimated per buffer from the strides and extents (the span of the access, capped by the number
of distinct points and by the buffer's size).
"""
from __future__ import annotations

import math

import numpy as np

from tensorlang import dtype as dt
from tensorlang.arith import const_int_bound, simplify
from tensorlang.expr import (Add, And, Broadcast, BufferLoad, Call, Cast, CmpOp, Div, FloatImm,
                             FloorDiv, FloorMod, IntImm, Let, Max, Min, Mod, Mul, Not, Or, Ramp,
                             Select, Sub, Var)
from tensorlang.ir.buffer import GLOBAL
from tensorlang.ir.function import PrimFunc
from tensorlang.ir.functor import substitute
from tensorlang.ir.stmt import (PARALLEL, UNROLLED, VECTORIZED, Allocate, AssertStmt, AttrStmt,
                                BufferStore, Evaluate, For, IfThenElse, LetStmt, SeqStmt)

MAX_BUFFERS = 5  # K: buffers described per store
INNER_LOOPS = 4  # extents of this many innermost loops
FOOTPRINT_DEPTHS = (1, 2, 3)  # working sets over this many innermost loops (cache behaviour)

_ARITH = ["float_addsub", "float_mul", "float_div", "float_fma", "float_minmax", "float_math",
          "float_cmp", "int_addsub", "int_mul", "int_divmod", "int_minmax", "int_cmp",
          "select", "bool_op", "cast"]
_STORE = ["vector_lanes", "is_vector_store",
          "loop_product", *(f"inner_extent_{i}" for i in range(INNER_LOOPS)), "loop_depth",
          "num_parallel", "parallel_product", "num_vectorized", "vectorized_product",
          "num_unrolled", "unrolled_product", "innermost_vectorized", "num_conditions",
          "num_allocations", "allocation_bytes", "arithmetic_intensity"]
_BUFFER = ["present", "read", "write", "local", "accesses", "lanes", "bytes_per_iteration",
           "bytes_total", "bytes_unique", *(f"bytes_unique_inner_{d}" for d in FOOTPRINT_DEPTHS),
           "reuse", "stride_innermost", "stride_innermost_nonunit",
           "stride_innermost_varying", "stride_vector", "reuse_distance", "irregular"]
# Features kept as they are (flags, small counts); everything else gets log2(1 + x).
_LINEAR = {"is_vector_store", "loop_depth", "num_parallel", "num_vectorized", "num_unrolled",
           "innermost_vectorized", "num_conditions", "num_allocations", "present", "read",
           "write", "local", "irregular"}

FEATURE_NAMES: tuple = tuple(
    _ARITH + _STORE + [f"buffer{k}_{name}" for k in range(MAX_BUFFERS) for name in _BUFFER])
N_FEATURES = len(FEATURE_NAMES)
# Columns stored as log2(1 + x): pooling sums them in the linear domain.
LOG_COLUMNS = np.array([name.split("_", 1)[1] not in _LINEAR if name.startswith("buffer")
                        else name not in _LINEAR for name in FEATURE_NAMES])
POOLED_LENGTH = 2 * N_FEATURES + 1

_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
_MATH = {"exp", "exp2", "exp10", "log", "log2", "log10", "log1p", "expm1", "tanh", "sigmoid",
         "sqrt", "rsqrt", "sin", "cos", "tan", "erf", "pow", "power", "atan", "asin", "acos",
         "sinh", "cosh", "atanh", "asinh", "acosh", "cbrt", "fmod"}


def extract(func: PrimFunc) -> np.ndarray:
    """One feature row per ``BufferStore`` of a lowered function, in program order.

    Returns a float32 array of shape ``(n_stores, N_FEATURES)``; a function without stores gives
    ``(0, N_FEATURES)``.

    Example::

        rows = extract(tl.lower(s, [A, B, C]))
        rows[:, FEATURE_NAMES.index("vector_lanes")]
    """
    walker = _Walker()
    walker.stmt(func.body)
    if not walker.rows:
        return np.zeros((0, N_FEATURES), np.float32)
    return np.stack(walker.rows)


def pool(rows: np.ndarray) -> np.ndarray:
    """Fold per-store rows into one vector: sums, maxima, then the number of rows.

    Log columns are summed in the linear domain (``log2(1 + sum(2**x - 1))``) so the pooled
    count of a candidate is its total count.
    """
    rows = np.asarray(rows, np.float64)
    if rows.ndim != 2 or rows.shape[1] != N_FEATURES:
        raise ValueError(f"expected rows of shape (n, {N_FEATURES}), got {rows.shape}")
    if len(rows) == 0:
        return np.zeros(POOLED_LENGTH, np.float32)
    linear = np.where(LOG_COLUMNS, np.exp2(rows) - 1.0, rows)
    total = linear.sum(axis=0)
    total = np.where(LOG_COLUMNS, np.log2(1.0 + total), total)
    return np.concatenate([total, rows.max(axis=0), [len(rows)]]).astype(np.float32)


def extract_pooled(func: PrimFunc) -> np.ndarray:
    """:func:`pool` of :func:`extract`: one vector of length ``POOLED_LENGTH`` per candidate."""
    return pool(extract(func))


# -- the walk --------------------------------------------------------------------------------

class _Loop:
    __slots__ = ("var", "extent", "kind")

    def __init__(self, var, extent, kind):
        self.var, self.extent, self.kind = var, extent, kind


def _const_extent(e) -> int:
    if isinstance(e, IntImm):
        return max(int(e.value), 0)
    hi = const_int_bound(e).max
    return 1 if hi is None or hi > 2**31 else max(int(hi), 0)


def _bytes(dtype: str) -> float:
    return max(dt.bits(dtype), 8) / 8.0


class _Access:
    """What one store statement does to one buffer."""

    __slots__ = ("buffer", "read", "write", "accesses", "lanes", "bytes", "index", "ramp_stride")

    def __init__(self, buffer):
        self.buffer = buffer
        self.read = self.write = False
        self.accesses = 0
        self.lanes = 1
        self.bytes = 0.0
        self.index = None  # the first index seen; its strides describe the buffer
        self.ramp_stride = 0


class _Walker:
    def __init__(self):
        self.loops: list[_Loop] = []
        self.allocations: list[float] = []
        self.conditions = 0
        self.rows: list[np.ndarray] = []
        self._coeff_memo: dict[int, tuple] = {}

    # statements ------------------------------------------------------------------------------
    def stmt(self, s):
        t = type(s)
        if t is For:
            self.loops.append(_Loop(s.loop_var, _const_extent(s.extent), s.kind))
            self.stmt(s.body)
            self.loops.pop()
        elif t is SeqStmt:
            for child in s.seq:
                self.stmt(child)
        elif t is BufferStore:
            self.rows.append(self.store_row(s))
        elif t is Allocate:
            size = 1
            for e in s.buffer.allocation_extents():
                size *= _const_extent(e)
            self.allocations.append(size * _bytes(s.buffer.dtype))
            self.stmt(s.body)
            self.allocations.pop()
        elif t is IfThenElse:
            self.conditions += 1
            self.stmt(s.then_case)
            if s.else_case is not None:
                self.stmt(s.else_case)
            self.conditions -= 1
        elif t in (LetStmt, AttrStmt, AssertStmt):
            self.stmt(s.body)
        elif t is Evaluate:
            pass

    # one store -------------------------------------------------------------------------------
    def store_row(self, store: BufferStore) -> np.ndarray:
        row = np.zeros(N_FEATURES, np.float64)
        counts = _OpCounter()
        accesses: dict[int, _Access] = {}
        counts.count(store.value)
        for index in store.indices:
            counts.count(index)
        self._note_access(accesses, store.buffer, store.indices, store.value.dtype, write=True)
        for load in counts.loads:
            self._note_access(accesses, load.buffer, load.indices, load.dtype, write=False)

        product = 1
        for loop in self.loops:
            product *= loop.extent
        for i, name in enumerate(_ARITH):
            row[i] = counts.ops[i] * product

        lanes = dt.lanes_of(store.value.dtype)
        row[_INDEX["vector_lanes"]] = lanes
        row[_INDEX["is_vector_store"]] = lanes > 1
        row[_INDEX["loop_product"]] = product
        for i, loop in enumerate(reversed(self.loops[-INNER_LOOPS:])):
            row[_INDEX[f"inner_extent_{i}"]] = loop.extent
        row[_INDEX["loop_depth"]] = len(self.loops)
        for kind, name in ((PARALLEL, "parallel"), (VECTORIZED, "vectorized"),
                           (UNROLLED, "unrolled")):
            extents = [loop.extent for loop in self.loops if loop.kind == kind]
            if kind == VECTORIZED and lanes > 1:
                extents.append(lanes)  # a vectorized loop lowered into ramps
            row[_INDEX[f"num_{name}"]] = len(extents)
            row[_INDEX[f"{name}_product"]] = math.prod(extents) if extents else 0
        row[_INDEX["innermost_vectorized"]] = lanes > 1 or (
            bool(self.loops) and self.loops[-1].kind == VECTORIZED)
        row[_INDEX["num_conditions"]] = self.conditions
        row[_INDEX["num_allocations"]] = len(self.allocations)
        row[_INDEX["allocation_bytes"]] = sum(self.allocations)

        described = [self._describe(a, product) for a in accesses.values()]
        described.sort(key=lambda d: -d["bytes_total"])
        unique = sum(d["bytes_unique"] for d in described)
        flops = sum(counts.ops[i] for i in range(7)) * product
        row[_INDEX["arithmetic_intensity"]] = flops / unique if unique else 0.0
        for k, d in enumerate(described[:MAX_BUFFERS]):
            base = _INDEX[f"buffer{k}_present"]
            for j, name in enumerate(_BUFFER):
                row[base + j] = d[name]
        np.log2(1.0 + np.abs(row, where=LOG_COLUMNS, out=row), where=LOG_COLUMNS, out=row)
        return row.astype(np.float32)

    def _note_access(self, accesses, buffer, indices, dtype, write):
        a = accesses.get(buffer.uid)
        if a is None:
            a = accesses[buffer.uid] = _Access(buffer)
        lanes = dt.lanes_of(dtype)
        a.accesses += 1
        a.lanes = max(a.lanes, lanes)
        a.bytes += lanes * _bytes(buffer.dtype)
        if write:
            a.write = True
        else:
            a.read = True
        if a.index is None or write:
            a.index = indices[0] if len(indices) == 1 else None
            if a.index is None and indices:  # not flattened: fold to a row-major flat index
                a.index = _flat_index(buffer, indices)

    def _describe(self, a: _Access, product: int) -> dict:
        loops = self.loops
        coeffs, ramp_stride, irregular = self._coefficients(a.index)
        elem = _bytes(a.buffer.dtype)
        total_bytes = a.bytes * product
        # Span and distinct points of the access over the nest, the ramp as an innermost loop.
        pairs = [(coeffs.get(loop.var.uid, 0), loop.extent) for loop in loops]
        size = 1
        for e in a.buffer.allocation_extents() if a.buffer.shape else ():
            size *= _const_extent(e)
        vector = (ramp_stride, a.lanes) if a.lanes > 1 else (0, 1)
        unique_bytes = _footprint(pairs + [vector], size) * elem
        working_sets = {f"bytes_unique_inner_{d}": _footprint(pairs[-d:] + [vector], size) * elem
                 for d in FOOTPRINT_DEPTHS}
        reuse_distance = 0
        inner = 1
        for loop in reversed(loops):
            if not coeffs.get(loop.var.uid, 0) and loop.extent > 1:
                reuse_distance = inner
                break
            inner *= loop.extent
        innermost = coeffs.get(loops[-1].var.uid, 0) if loops else 0
        nonunit = next((coeffs.get(l.var.uid, 0) for l in reversed(loops) if l.extent > 1), 0)
        varying = next((coeffs[l.var.uid] for l in reversed(loops)
                        if coeffs.get(l.var.uid, 0)), 0)
        return {"present": 1, "read": a.read, "write": a.write,
                "local": a.buffer.scope != GLOBAL, "accesses": a.accesses, "lanes": a.lanes,
                "bytes_per_iteration": a.bytes, "bytes_total": total_bytes,
                "bytes_unique": unique_bytes, **working_sets, "reuse": total_bytes / unique_bytes,
                "stride_innermost": innermost, "stride_innermost_nonunit": nonunit,
                "stride_innermost_varying": varying, "stride_vector": ramp_stride,
                "reuse_distance": reuse_distance, "irregular": irregular}

    def _coefficients(self, index) -> tuple[dict, int, bool]:
        """Coefficients of the loop variables in a flat index, the ramp stride, irregularity."""
        if index is None:
            return {}, 0, True
        hit = self._coeff_memo.get(id(index))
        if hit is not None and hit[0] is index:
            return hit[1]
        ramp_stride = 0
        base = index
        if type(index) is Ramp:
            base = index.base
            ramp_stride = _int_or_zero(index.stride)
        elif type(index) is Broadcast:
            base = index.value
        linear = _affine(base)
        if linear is not None:
            result = (linear, ramp_stride, False)
        else:
            result = (self._coefficients_by_difference(base), ramp_stride, True)
        self._coeff_memo[id(index)] = (index, result)
        return result

    def _coefficients_by_difference(self, index) -> dict:
        zero = {loop.var: IntImm(0, loop.var.dtype) for loop in self.loops}
        at_zero = substitute(index, zero)
        coeffs = {}
        for loop in self.loops:
            at_one = substitute(index, {**zero, loop.var: IntImm(1, loop.var.dtype)})
            c = _int_or_zero(simplify(at_one - at_zero))
            if c:
                coeffs[loop.var.uid] = c
        return coeffs


def _footprint(pairs, size: int) -> int:
    """Distinct elements touched by an access with (coefficient, extent) loops: its span,
    capped by the number of points and by the buffer's size."""
    span, points = 1, 1
    for c, extent in pairs:
        if c and extent > 1:
            span += abs(c) * (extent - 1)
            points *= extent
    return max(1, min(span, points, size) if size else min(span, points))


def _int_or_zero(e) -> int:
    return int(e.value) if isinstance(e, IntImm) else 0


def _flat_index(buffer, indices):
    flat = indices[0]
    for extent, i in zip(buffer.shape[1:], indices[1:]):
        flat = flat * extent + i
    return flat


def _affine(e) -> dict | None:
    """``{var uid: coefficient}`` of an affine integer expression, or None when it is not affine.

    Constants and variables that are not loop variables simply contribute nothing.
    """
    t = type(e)
    if t is Var:
        return {e.uid: 1}
    if t is IntImm:
        return {}
    if t is Add or t is Sub:
        a, b = _affine(e.a), _affine(e.b)
        if a is None or b is None:
            return None
        sign = 1 if t is Add else -1
        for k, v in b.items():
            a[k] = a.get(k, 0) + sign * v
        return a
    if t is Mul:
        if type(e.b) is IntImm:
            inner, c = _affine(e.a), e.b.value
        elif type(e.a) is IntImm:
            inner, c = _affine(e.b), e.a.value
        else:
            return None
        if inner is None:
            return None
        return {k: v * c for k, v in inner.items()}
    if t is Cast:
        return _affine(e.value)
    return None


class _OpCounter:
    """Counts operations of an expression by kind (lane-weighted), collecting its loads."""

    __slots__ = ("ops", "loads")
    _SLOT = {name: i for i, name in enumerate(_ARITH)}

    def __init__(self):
        self.ops = [0] * len(_ARITH)
        self.loads: list[BufferLoad] = []

    def count(self, e) -> None:
        ops, slot = self.ops, self._SLOT
        stack = [e]
        while stack:
            e = stack.pop()
            t = type(e)
            if t is Var or t is IntImm or t is FloatImm:
                continue
            if t is BufferLoad:
                self.loads.append(e)
                stack.extend(e.indices)
                continue
            if t is Ramp:
                stack.append(e.base)
                continue
            if t is Broadcast:
                stack.append(e.value)
                continue
            dtype = e.dtype
            lanes = dt.lanes_of(dtype)
            if t is Add or t is Sub:
                if dt.is_float(dtype):
                    ops[slot["float_addsub"]] += lanes
                    if type(e.a) is Mul or type(e.b) is Mul:
                        ops[slot["float_fma"]] += lanes
                else:
                    ops[slot["int_addsub"]] += lanes
                stack.append(e.a)
                stack.append(e.b)
            elif t is Mul:
                ops[slot["float_mul" if dt.is_float(dtype) else "int_mul"]] += lanes
                stack.append(e.a)
                stack.append(e.b)
            elif t in (Div, Mod, FloorDiv, FloorMod):
                ops[slot["float_div" if dt.is_float(dtype) else "int_divmod"]] += lanes
                stack.append(e.a)
                stack.append(e.b)
            elif t is Min or t is Max:
                ops[slot["float_minmax" if dt.is_float(dtype) else "int_minmax"]] += lanes
                stack.append(e.a)
                stack.append(e.b)
            elif issubclass(t, CmpOp):
                lanes = dt.lanes_of(e.a.dtype)
                ops[slot["float_cmp" if dt.is_float(e.a.dtype) else "int_cmp"]] += lanes
                stack.append(e.a)
                stack.append(e.b)
            elif t is And or t is Or:
                ops[slot["bool_op"]] += lanes
                stack.append(e.a)
                stack.append(e.b)
            elif t is Not:
                ops[slot["bool_op"]] += lanes
                stack.append(e.a)
            elif t is Select:
                ops[slot["select"]] += lanes
                stack.extend((e.condition, e.true_value, e.false_value))
            elif t is Cast:
                ops[slot["cast"]] += lanes
                stack.append(e.value)
            elif t is Call:
                if e.op == "if_then_else":
                    ops[slot["select"]] += lanes
                elif dt.is_float(dtype):
                    ops[slot["float_math"]] += lanes
                stack.extend(a for a in e.args if not isinstance(a, str))
            elif t is Let:
                stack.append(e.value)
                stack.append(e.body)


# -- GPU flavour -------------------------------------------------------------------------------

# On GPUs nothing runs on parallel CPU loops and the GPU sketches make no integer min/max
# (their splits divide), so these pooled slots are free; the GPU extractor stores the launch
# shape there and keeps the vector length at POOLED_LENGTH (one model reads both flavours).
GPU_SLOTS = {
    "threads_per_block": ("sum", "num_parallel"),
    "blocks": ("sum", "parallel_product"),
    "shared_bytes_per_block": ("max", "num_parallel"),
    "local_bytes_per_thread": ("max", "parallel_product"),
    "global_load_lanes": ("sum", "int_minmax"),
    "thread_intensity": ("max", "int_minmax"),
}


def gpu_slot(name: str) -> int:
    """The index in a pooled vector of the GPU feature ``name`` (see ``GPU_SLOTS``)."""
    half, feature = GPU_SLOTS[name]
    return _INDEX[feature] + (N_FEATURES if half == "max" else 0)


def extract_pooled_gpu(func: PrimFunc) -> np.ndarray:
    """:func:`extract_pooled` of a GPU function with its launch shape in the ``GPU_SLOTS``:
    threads per block, blocks, shared bytes per block, local (register) bytes per thread, the
    widest global load (lanes) and the arithmetic intensity of the innermost accumulation
    (float ops per load of its store nest), all ``log2(1 + x)`` but the lanes.

    Example::

        v = extract_pooled_gpu(tl.lower(gpu_schedule, args))
        v[gpu_slot("threads_per_block")]       # log2(1 + 256) for 16 x 16 threads
    """
    from tensorlang.ops.gpu_schedules import gpu_launch_stats
    rows = extract(func)
    vector = pool(rows)
    stats = gpu_launch_stats(func)
    grid = stats["grid"]
    blocks = _prod_or_zero(grid)
    local_bytes, lanes = 0, 1
    globals_ = {p.uid for p in func.params if hasattr(p, "scope")}

    def visit(node):
        nonlocal local_bytes, lanes
        if isinstance(node, Allocate) and node.buffer.scope == "local":
            size = 1
            for d in node.buffer.allocation_extents():
                size *= max(0, _int_or_zero(d))
            local_bytes += size * _bytes(node.buffer.dtype)
        elif isinstance(node, BufferLoad) and (node.buffer.uid in globals_
                                               or node.buffer.scope == GLOBAL):
            lanes = max(lanes, dt.lanes_of(node.dtype))
    from tensorlang.ir.functor import post_order_visit
    post_order_visit(func.body, visit)
    intensity = 0.0
    if len(rows):
        linear = np.exp2(rows.astype(np.float64)) - 1.0
        flops = linear[:, [_INDEX[n] for n in _ARITH[:7]]].sum(axis=1)
        row = linear[int(np.argmax(flops))]  # the store doing the most float work
        ops = float(flops.max())
        loads = sum(row[_INDEX[f"buffer{k}_accesses"]] for k in range(MAX_BUFFERS))
        intensity = ops / loads if loads > 0 else 0.0
    values = {"threads_per_block": math.log2(1 + (stats["threads"] or 0)),
              "blocks": math.log2(1 + blocks),
              "shared_bytes_per_block": math.log2(1 + (stats["shared_bytes"] or 0)),
              "local_bytes_per_thread": math.log2(1 + local_bytes),
              "global_load_lanes": float(lanes),
              "thread_intensity": math.log2(1 + intensity)}
    for name, value in values.items():
        vector[gpu_slot(name)] = value
    return vector


def _prod_or_zero(values) -> int:
    out = 1
    for v in values:
        if v is None:
            return 0
        out *= v
    return out
