"""Matching the loop nests of a tensor-core kernel (see ``codegen/cuda/mma.py``): the warp-tile
accumulators (fragments), the ``tensor_core`` multiply-accumulate nest and the ``double_buffer``
pipeline around it, and the small index analyses the matching and the emission share.
"""
from __future__ import annotations

from dataclasses import dataclass

from tensorlang import dtype as dt
from tensorlang import expr as E
from tensorlang.errors import ScheduleError
from tensorlang.ir import stmt as S
from tensorlang.ir.functor import post_order_visit

PRAGMA = "tensor_core"
SHAPES = ("m16n8k16",)
INPUT_DTYPES = {"float16": "f16", "bfloat16": "bf16"}
PIPELINE = "double_buffer"
LDMATRIX = "tensor_core_ldmatrix"  # pragma next to "tensor_core": False = per-lane loads

@dataclass
class Fragment:
    """A warp-tile accumulator held in registers, ``rows x cols`` (multiples of 16 x 8)."""

    buffer: object
    rows: int
    cols: int
    stage: str

    @property
    def per_lane(self) -> int:
        return self.rows * self.cols // 32


@dataclass
class _MmaNest:
    loop: object        # the annotated For
    acc: object         # Fragment
    k: object           # For of the reduction
    i: object           # For of the rows
    j: object           # For of the columns
    a: E.BufferLoad
    b: E.BufferLoad
    in_dtype: str
    ldmatrix: bool = True  # fragments through ldmatrix where the layout allows


@dataclass
class _Pipeline:
    """A ``double_buffer`` loop: copies of its shared tiles, then the tensor-core nest."""

    loop: object
    copies: list        # statements filling the shared tiles
    compute: object     # the tensor_core For
    buffers: dict       # uid -> (Buffer, elements per stage)


def _flatten(s) -> list:
    """The statements of a loop body, through sequences and (shared) allocations."""
    if isinstance(s, S.SeqStmt):
        return [x for item in s.seq for x in _flatten(item)]
    if isinstance(s, S.Allocate) and s.buffer.scope == "shared":
        return _flatten(s.body)
    return [s]


def _match_pipeline(loop, tc, sizes) -> _Pipeline:
    from tensorlang.lower.verify_gpu import is_barrier
    stage = _store_name(loop)

    def fail(why):
        raise ScheduleError(
            f"stage {stage}: loop {loop.loop_var.name} asks for 'double_buffer' but {why}; "
            "its body must be the cooperative copies of the shared tiles, a barrier and the "
            "'tensor_core' loop (the shared stages computed at this loop)")
    if not _is_zero(loop.min) or loop.kind not in (S.SERIAL,):
        fail("it is not a serial loop starting at 0")
    items = [x for x in _flatten(loop.body) if not is_barrier(x)]
    if not items or id(items[-1]) not in tc.nests:
        fail("its body does not end with the 'tensor_core' loop")
    compute, copies = items[-1], items[:-1]
    nest = tc.nests[id(compute)]
    operands = {nest.a.buffer.uid: nest.a.buffer, nest.b.buffer.uid: nest.b.buffer}
    written = {}
    for c in copies:
        def visit(n):
            if isinstance(n, S.BufferStore):
                written[n.buffer.uid] = n.buffer
        post_order_visit(c, visit)
        if any(isinstance(n, E.Call) and n.op.startswith("tl.") for n in _calls(c)):
            fail("a copy contains a barrier or another intrinsic")
    if set(written) != set(operands) or any(b.scope != "shared" for b in written.values()):
        fail(f"the statements before the tensor-core loop write "
             f"{sorted(b.name for b in written.values())} instead of its shared operands "
             f"{sorted(b.name for b in operands.values())}")
    buffers = {}
    for uid, buf in operands.items():
        nbytes = sizes.get(uid)
        if nbytes is None or nbytes % 16:
            fail(f"the shared tile {buf.name} has no constant size that is a multiple of "
                 "16 bytes")
        buffers[uid] = (buf, nbytes // (dt.bits(dt.element_of(buf.dtype)) // 8))
    return _Pipeline(loop, copies, compute, buffers)


def _calls(s) -> list:
    out = []
    post_order_visit(s, lambda n: out.append(n) if isinstance(n, E.Call) else None)
    return out


def _match(loop, allocs) -> _MmaNest:
    """Check the nest under the annotated ``loop`` (see the module docstring)."""
    def fail(stage, why):
        raise ScheduleError(
            f"stage {stage}: loop {loop.loop_var.name} is annotated 'tensor_core' but {why}; "
            "the nest below it must be exactly 'for k: for i: for j: C[i, j] += "
            "float32(A[i, k]) * float32(B[k, j])' (any loop order) with float16/bfloat16 A and "
            "B in shared memory and a float32 local C, extents of i / j / k multiples of "
            "16 / 8 / 16")

    stage = _store_name(loop)
    shape = dict(loop.annotations).get(PRAGMA)
    if shape not in SHAPES:
        fail(stage, f"asks for shape {shape!r} (supported: {', '.join(SHAPES)})")
    loops, body = [], loop
    while isinstance(body, S.For):
        loops.append(body)
        body = body.body
    if len(loops) != 3:
        fail(stage, f"has {len(loops)} nested loops instead of 3")
    if not isinstance(body, S.BufferStore):
        fail(stage, f"its innermost statement is a {type(body).__name__}, not one store")
    for f in loops:
        if _const(f.extent) is None or not _is_zero(f.min):
            fail(stage, f"loop {f.loop_var.name} has a non-constant extent or a non-zero start")
        if f.kind not in (S.SERIAL, S.UNROLLED) or f.thread_tag:
            fail(stage, f"loop {f.loop_var.name} is {f.kind} {f.thread_tag}".rstrip())
    acc = body.buffer
    if acc.scope != "local" or dt.element_of(acc.dtype) != "float32" or \
            dt.lanes_of(acc.dtype) != 1:
        fail(stage, f"it stores {acc.name} ({acc.dtype}, {acc.scope!r}) instead of a float32 "
             "local accumulator")
    value = body.value
    if not isinstance(value, E.Add):
        fail(stage, "the stored value is not an accumulation `C + A * B`")
    terms = [value.a, value.b]
    self_load = [t for t in terms if isinstance(t, E.BufferLoad) and t.buffer.uid == acc.uid]
    prod = [t for t in terms if isinstance(t, E.Mul)]
    if len(self_load) != 1 or len(prod) != 1 or \
            not E.Node.structural_equal(self_load[0].indices[0], body.indices[0]):
        fail(stage, "the stored value is not `C[same index] + A * B`")
    operands = []
    for t in (prod[0].a, prod[0].b):
        if isinstance(t, E.Cast) and dt.element_of(t.dtype) == "float32":
            t = t.value
        if not isinstance(t, E.BufferLoad) or dt.element_of(t.buffer.dtype) not in \
                INPUT_DTYPES or dt.lanes_of(t.dtype) != 1:
            fail(stage, f"operand `{t}` is not a float16/bfloat16 load cast to float32")
        if t.buffer.scope != "shared":
            fail(stage, f"operand {t.buffer.name} is in {t.buffer.scope!r} memory, not shared "
                 "(stage it with cache_read(..., 'shared', ...))")
        operands.append(t)
    if operands[0].buffer.dtype != operands[1].buffer.dtype:
        fail(stage, f"the operands have different dtypes ({operands[0].buffer.dtype}, "
             f"{operands[1].buffer.dtype})")
    out_index = _linear(body.indices[0])
    by_uid = {f.loop_var.uid: f for f in loops}
    if out_index is None:
        fail(stage, f"the accumulator index `{body.indices[0]}` is not affine")
    out_vars = {u for u, c in out_index[0].items() if c}
    ks = [f for f in loops if f.loop_var.uid not in out_vars]
    if len(ks) != 1 or not out_vars <= set(by_uid):
        fail(stage, f"the accumulator index `{body.indices[0]}` must use exactly the two "
             "non-reduction loops")
    k = ks[0]

    def uses(load, f):
        lin = _linear(load.indices[0])
        if lin is None:
            fail(stage, f"the index `{load.indices[0]}` of {load.buffer.name} is not affine")
        return lin[0].get(f.loop_var.uid, 0) != 0
    others = [f for f in loops if f is not k]
    # the rows loop is the one the accumulator index scales by the other loop's extent
    i, j = others
    if out_index[0].get(j.loop_var.uid) != 1:
        i, j = j, i
    a_load = b_load = None
    for x, y in ((operands[0], operands[1]), (operands[1], operands[0])):
        if uses(x, i) and not uses(x, j) and uses(y, j) and not uses(y, i) and \
                uses(x, k) and uses(y, k):
            a_load, b_load = x, y
    if a_load is None:
        fail(stage, "cannot tell the operands apart (A must be indexed by i and k, B by k "
             "and j)")
    rows, cols, depth = _const(i.extent), _const(j.extent), _const(k.extent)
    if out_index[0].get(i.loop_var.uid) != cols or out_index[0].get(j.loop_var.uid) != 1 or \
            out_index[1] != 0:
        fail(stage, f"the accumulator is indexed `{body.indices[0]}`, expected "
             f"{i.loop_var.name} * {cols} + {j.loop_var.name}")
    for f, ext, mult in ((i, rows, 16), (j, cols, 8), (k, depth, 16)):
        if ext % mult:
            fail(stage, f"loop {f.loop_var.name} has extent {ext}, not a multiple of {mult}")
    alloc = allocs.get(acc.uid)
    count = 1
    for e in (alloc.buffer.allocation_extents() if alloc is not None else ()):
        count = count * _const(e) if _const(e) is not None and count is not None else None
    if alloc is None or count != rows * cols:
        fail(stage, f"the accumulator {acc.name} must be a local buffer of exactly "
             f"{rows} x {cols} elements allocated in this kernel")
    frag = Fragment(acc, rows, cols, acc.name)
    ldmatrix = bool(dict(loop.annotations).get(LDMATRIX, True))
    return _MmaNest(loop, frag, k, i, j, a_load, b_load, dt.element_of(a_load.buffer.dtype),
                    ldmatrix)

# -- small analyses -----------------------------------------------------------------------------

def _const(e):
    return e.value if isinstance(e, E.IntImm) else None


def _is_zero(e) -> bool:
    return isinstance(e, E.IntImm) and e.value == 0


def _linear(e):
    """``({var uid: coefficient}, constant)`` of an integer expression affine in its
    variables, None otherwise."""
    if isinstance(e, E.IntImm):
        return {}, e.value
    if isinstance(e, E.Var):
        return {e.uid: 1}, 0
    if isinstance(e, E.Cast) and dt.is_int(e.dtype) and dt.is_int(e.value.dtype):
        return _linear(e.value)
    if isinstance(e, (E.Add, E.Sub)):
        a, b = _linear(e.a), _linear(e.b)
        if a is None or b is None:
            return None
        sign = 1 if isinstance(e, E.Add) else -1
        out = dict(a[0])
        for u, c in b[0].items():
            out[u] = out.get(u, 0) + sign * c
        return out, a[1] + sign * b[1]
    if isinstance(e, E.Mul):
        a, b = _linear(e.a), _linear(e.b)
        if a is None or b is None:
            return None
        if not a[0]:
            a, b = b, a
        if b[0]:
            return None  # product of two variables
        return {u: c * b[1] for u, c in a[0].items()}, a[1] * b[1]
    return None


def _fors(s) -> list:
    out = []
    post_order_visit(s, lambda n: out.append(n) if isinstance(n, S.For) else None)
    return out


def _fragments_touched(s, fragments) -> list:
    seen = []

    def visit(n):
        if isinstance(n, (E.BufferLoad, S.BufferStore)) and n.buffer.uid in fragments and \
                n.buffer.uid not in seen:
            seen.append(n.buffer.uid)
    post_order_visit(s, visit)
    return seen


def _store_name(s) -> str:
    """The stage the annotated loop belongs to: the last store of its nest (the stages
    computed at it, e.g. shared tiles, come first)."""
    found = []
    post_order_visit(s, lambda n: found.append(n.buffer.name)
                     if isinstance(n, S.BufferStore) else None)
    return found[-1] if found else "?"
