"""Tensor cores in the CUDA C: warp-level ``mma.sync`` m16n8k16 for ``"tensor_core"`` loops.

A loop annotated ``s[CL].pragma(ax, "tensor_core", "m16n8k16")`` (see
``tensorlang/ops/gpu_tensorcore.py`` for the convention) heads a warp-tile multiply-accumulate

    for k in K: for i in WM: for j in WN:            (any order of the three loops)
        CL[i * WN + j] = CL[i * WN + j] + float32(A[f(i, k)]) * float32(B[g(k, j)])

with A, B float16 (or bfloat16) in shared memory and CL a float32 ``local`` buffer allocated
per warp (inside the ``threadIdx.y/z`` loops, outside any ``threadIdx.x`` loop; the kernel's
``threadIdx.x`` extent is the 32 lanes). The code emitted here:

* ``CL`` becomes a *fragment*: ``WM * WN / 32`` floats per lane; tile ``(tm, tn)`` (16 x 8) of
  the warp tile is registers ``4 * (tm * WN / 8 + tn) + r``, holding element
  ``(16 tm + lane / 4 + 8 (r / 2), 8 tn + 2 (lane % 4) + r % 2)`` (the PTX ISA's accumulator
  layout of m16n8k16);
* the nest becomes, per 16-step of ``k``, fragment loads from shared memory (A: registers
  ``q = 0..3`` hold rows ``lane / 4 + 8 (q % 2)``, columns ``2 (lane % 4) + 8 (q / 2)`` and
  ``+ 1``; B: registers ``q = 0..1`` hold rows (k) ``2 (lane % 4) + 8 q`` and ``+ 1``, column
  ``lane / 4``) and one ``mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32`` per 16 x 8 output
  tile. The fragments come through ``ldmatrix`` (``.x4`` for A, ``.x4.trans`` / ``.x2.trans``
  for B) when the indices prove 16-byte-aligned contiguous rows, else per lane (a pair of
  halves in one 32-bit load where contiguous and aligned, two 16-bit loads otherwise);
  the pragma ``"tensor_core_ldmatrix": False`` forces the per-lane loads;
* a loop annotated ``"double_buffer"`` whose body is the copies of the shared operand tiles, a
  barrier and the tensor-core loop is software-pipelined: the tiles get two stages, the copies
  of step ``k + 1`` are issued (``cp.async`` for aligned 4/8/16-byte copies) before the
  tensor cores work on step ``k``;
* every other nest touching ``CL`` must be ``for i in WM: for j in WN`` indexing
  ``CL[i * WN + j]`` (the zero-fill, the copy to global memory, an epilogue): each lane runs
  its body for its own elements only.

Anything else touching ``CL`` is refused with a ScheduleError naming the stage and the loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tensorlang import dtype as dt
from tensorlang import expr as E
from tensorlang.errors import ScheduleError
from tensorlang.ir import stmt as S
from tensorlang.ir.functor import post_order_visit
from tensorlang.lower.verify_gpu import _stmt_children as _children

PRAGMA = "tensor_core"
SHAPES = ("m16n8k16",)
INPUT_DTYPES = {"float16": "f16", "bfloat16": "bf16"}

PREAMBLE = r"""// tl-mma-begin: warp-level tensor-core multiply-accumulate (sm_80+), D += A * B
__device__ __forceinline__ void tl_mma_m16n8k16_f16(float* d, const unsigned int* a,
                                                    const unsigned int* b) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1])); }
__device__ __forceinline__ void tl_mma_m16n8k16_bf16(float* d, const unsigned int* a,
                                                     const unsigned int* b) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1])); }
__device__ __forceinline__ unsigned int tl_smem_addr(const void* p) {
  unsigned int a;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
  return a; }
// 8x8 matrices of 16-bit elements from shared memory into the warp's fragments: lane l gives
// the address of row l % 8 of matrix l / 8
__device__ __forceinline__ void tl_ldmatrix_x4(unsigned int* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(tl_smem_addr(p))); }
__device__ __forceinline__ void tl_ldmatrix_x4_trans(unsigned int* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(tl_smem_addr(p))); }
__device__ __forceinline__ void tl_ldmatrix_x2_trans(unsigned int* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1]) : "r"(tl_smem_addr(p))); }
// asynchronous global -> shared copies (sm_80+) for double-buffered tiles
__device__ __forceinline__ void tl_cp_async16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" :: "r"(tl_smem_addr(dst)),
               "l"(src) : "memory"); }
__device__ __forceinline__ void tl_cp_async8(void* dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" :: "r"(tl_smem_addr(dst)),
               "l"(src) : "memory"); }
__device__ __forceinline__ void tl_cp_async4(void* dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" :: "r"(tl_smem_addr(dst)),
               "l"(src) : "memory"); }
__device__ __forceinline__ void tl_cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void tl_cp_async_wait_1() {
  asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }
// tl-mma-end
"""
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


@dataclass
class TensorCorePlan:
    fragments: dict = field(default_factory=dict)   # buffer uid -> Fragment
    nests: dict = field(default_factory=dict)       # id(For) -> _MmaNest
    active: dict = field(default_factory=dict)      # buffer uid -> register text while emitting
    pipelines: dict = field(default_factory=dict)   # id(For) -> _Pipeline
    doubled: dict = field(default_factory=dict)     # shared buffer uid -> elements per stage
    async_ok: bool = False                          # emitting the prefetch of a pipeline

    def stages(self, buf) -> int:
        return 2 if buf.uid in self.doubled else 1

    def async_copy(self, gen, dst_buf, dst, src_buf, src, nbytes: int) -> bool:
        """An aligned copy into a double-buffered tile becomes ``cp.async``."""
        if not self.async_ok or dst_buf.uid not in self.doubled or src_buf.scope != "global" \
                or nbytes not in (4, 8, 16):
            return False
        gen.line(f"tl_cp_async{nbytes}({gen.buf(dst_buf)} + {dst}, {gen.buf(src_buf)} + {src});")
        return True

    # -- hooks called by source._KernelGen ----------------------------------------------------
    def allocate(self, gen, s) -> bool:
        frag = self.fragments.get(s.buffer.uid)
        if frag is None:
            return False
        gen.local_buffers.add(s.buffer.uid)
        gen.line(f"float {gen.buf(s.buffer)}[{frag.per_lane}];  // {frag.rows} x {frag.cols} "
                 "warp-tile accumulator, mma.sync fragment layout")
        gen.stmt(s.body)
        return True

    def emit_for(self, gen, s) -> bool:
        pipe = self.pipelines.get(id(s))
        if pipe is not None:
            _emit_pipeline(gen, self, pipe)
            return True
        nest = self.nests.get(id(s))
        if nest is not None:
            _emit_mma(gen, nest)
            return True
        frag = self._elementwise(s)
        if frag is None:
            return False
        _emit_elementwise(gen, self, frag, s)
        return True

    def load(self, gen, e) -> str | None:
        if e.buffer.uid not in self.fragments:
            return None
        return self._element(e.buffer, e.indices)

    def store(self, gen, s) -> bool:
        if s.buffer.uid not in self.fragments:
            return False
        reg = self._element(s.buffer, s.indices)
        value = gen.expr(s.value)
        if dt.element_of(s.value.dtype) != "float32":
            value = f"(float)({value})"
        gen.line(f"{reg} = {value};")
        return True

    # -- helpers ------------------------------------------------------------------------------
    def _element(self, buf, indices) -> str:
        frag = self.fragments[buf.uid]
        active = self.active.get(buf.uid)
        if active is None:
            raise ScheduleError(
                f"stage {frag.stage}: it is a tensor-core accumulator (mma.sync fragment, "
                f"spread over the 32 lanes of a warp); it may only be used by the "
                f"'tensor_core' loop nest and by 2-deep loop nests 'for i in {frag.rows}: for j "
                f"in {frag.cols}' reading or writing {frag.stage}[i, j]")
        (index,) = indices
        rows_var, cols_var, reg = active
        lin = _linear(index)
        want = {rows_var.uid: frag.cols, cols_var.uid: 1}
        if lin is None or lin[1] != 0 or {u: c for u, c in lin[0].items() if c} != want:
            raise ScheduleError(
                f"stage {frag.stage}: the tensor-core accumulator is accessed at `{index}`; "
                f"in a loop nest over its elements only {frag.stage}[{rows_var.name}, "
                f"{cols_var.name}] (index {rows_var.name} * {frag.cols} + {cols_var.name}) "
                "is supported")
        return reg

    def _elementwise(self, s):
        """The Fragment when ``s`` is a 2-deep ``for i in rows: for j in cols`` nest that
        touches a fragment; raises when it touches one in another shape."""
        touched = _fragments_touched(s, self.fragments)
        if not touched:
            return None
        if any(id(n) in self.nests for n in _fors(s)):
            return None  # an outer loop around the tensor-core nest: emit it normally
        inner = s.body
        frag = self.fragments[touched[0]]
        ok = len(touched) == 1 and isinstance(inner, S.For) and \
            _const(s.extent) == frag.rows and _const(inner.extent) == frag.cols and \
            _is_zero(s.min) and _is_zero(inner.min) and not any(
                isinstance(n, S.For) for n in _fors(inner.body))
        if not ok:
            # an outer loop of a nest (e.g. around the zero-fill): emit it normally if the
            # fragment accesses sit in a proper nest further in, else refuse
            if any(self._is_proper(n) for n in _fors(s.body)):
                return None
            raise ScheduleError(
                f"stage {frag.stage}: loop {s.loop_var.name} (extent {s.extent}) touches the "
                f"tensor-core accumulator {frag.stage} in an unsupported loop nest; only "
                f"'for i in {frag.rows}: for j in {frag.cols}' nests over {frag.stage}[i, j] "
                "(its zero-fill, its copy-out) and the 'tensor_core' nest may use it; do not "
                "split, reorder, vectorize or bind these loops")
        return frag

    def _is_proper(self, s) -> bool:
        touched = _fragments_touched(s, self.fragments)
        if len(touched) != 1:
            return False
        frag = self.fragments[touched[0]]
        inner = s.body
        return isinstance(inner, S.For) and _const(s.extent) == frag.rows and \
            _const(inner.extent) == frag.cols


def plan(kernel, info, shared=()) -> TensorCorePlan | None:
    """Find the ``tensor_core`` (and ``double_buffer``) loops of ``kernel`` and check them
    (None when there are none). ``shared``: (Buffer, bytes) of the kernel's shared tiles."""
    found, pipes = [], []

    def walk(s, tags):
        if isinstance(s, S.For):
            if s.kind == S.THREAD_BINDING and s.thread_tag:
                tags = tags + [(s.thread_tag, s)]
            if any(k == PIPELINE and v for k, v in s.annotations):
                pipes.append(s)
            if any(k == PRAGMA for k, _ in s.annotations):
                found.append((s, tags))
                return
        for child in _children(s):
            walk(child, tags)
    walk(kernel, [])
    if not found:
        if pipes:
            raise ScheduleError(
                f"stage {_store_name(pipes[0])}: loop {pipes[0].loop_var.name} asks for "
                "'double_buffer', which the CUDA backend supports only around a "
                "'tensor_core' loop")
        return None
    tc = TensorCorePlan()
    allocs = {}
    post_order_visit(kernel, lambda n: allocs.__setitem__(n.buffer.uid, n)
                     if isinstance(n, S.Allocate) else None)
    lanes = info.const_extent("threadIdx.x")
    for loop, tags in found:
        nest = _match(loop, allocs)
        stage = nest.acc.stage
        for tag, outer in tags:
            if tag == "threadIdx.x":
                raise ScheduleError(
                    f"stage {stage}: the 'tensor_core' loop {loop.loop_var.name} is inside "
                    f"loop {outer.loop_var.name} bound to threadIdx.x; a warp tile is computed "
                    "by the 32 lanes of threadIdx.x together: compute the stage at a loop "
                    "bound to threadIdx.y / threadIdx.z (one warp each)")
        if lanes != 32:
            raise ScheduleError(
                f"stage {stage}: the 'tensor_core' loop {loop.loop_var.name} needs the kernel's "
                f"threadIdx.x extent to be exactly 32 (the lanes of a warp), got {lanes}; bind "
                "the warps to threadIdx.y / threadIdx.z and 32 lanes of the cooperative loads "
                "to threadIdx.x")
        known = tc.fragments.get(nest.acc.buffer.uid)
        if known is not None and (known.rows, known.cols) != (nest.acc.rows, nest.acc.cols):
            raise ScheduleError(f"stage {stage}: two 'tensor_core' nests give the accumulator "
                                "different shapes")
        tc.fragments[nest.acc.buffer.uid] = nest.acc
        tc.nests[id(loop)] = nest
    sizes = {buf.uid: nbytes for buf, nbytes in shared}
    for loop in pipes:
        pipe = _match_pipeline(loop, tc, sizes)
        tc.pipelines[id(loop)] = pipe
        for uid, (_, count) in pipe.buffers.items():
            tc.doubled[uid] = count
    total = sum((nbytes or 0) * tc.stages(buf) for buf, nbytes in shared)
    if tc.doubled and total > 48 * 1024:
        raise ScheduleError(
            f"stage {_store_name(pipes[0])}: double-buffering the shared tiles of loop "
            f"{pipes[0].loop_var.name} needs {total} bytes of shared memory, over the 48 KB "
            "static limit; use smaller tiles (block_k) or no double buffering")
    return tc


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


# -- emission -----------------------------------------------------------------------------------

def _lane_exprs():
    return "((int)threadIdx.x >> 2)", "((int)threadIdx.x & 3)"


def _emit_elementwise(gen, tc, frag, s) -> None:
    inner = s.body
    tiles_n = frag.cols // 8
    g, t = _lane_exprs()
    gen.line(f"{{  // {frag.stage}: this lane's elements of the {frag.rows} x {frag.cols} "
             "fragment")
    gen.depth += 1
    gen.line("#pragma unroll")
    gen.line(f"for (int tl_tm = 0; tl_tm < {frag.rows // 16}; ++tl_tm) {{")
    gen.depth += 1
    gen.line("#pragma unroll")
    gen.line(f"for (int tl_tn = 0; tl_tn < {tiles_n}; ++tl_tn) {{")
    gen.depth += 1
    gen.line("#pragma unroll")
    gen.line("for (int tl_r = 0; tl_r < 4; ++tl_r) {")
    gen.depth += 1
    gen.line(f"const int {gen.var(s.loop_var)} = tl_tm * 16 + {g} + ((tl_r >> 1) << 3);")
    gen.line(f"const int {gen.var(inner.loop_var)} = tl_tn * 8 + ({t} << 1) + (tl_r & 1);")
    gen.nonneg.add(s.loop_var.uid)
    gen.nonneg.add(inner.loop_var.uid)
    reg = f"{gen.buf(frag.buffer)}[(tl_tm * {tiles_n} + tl_tn) * 4 + tl_r]"
    tc.active[frag.buffer.uid] = (s.loop_var, inner.loop_var, reg)
    try:
        gen.stmt(inner.body)
    finally:
        del tc.active[frag.buffer.uid]
    for _ in range(4):
        gen.depth -= 1
        gen.line("}")


def _emit_pipeline(gen, tc, pipe: _Pipeline) -> None:
    """Two shared stages: the copies of step ``k + 1`` (``cp.async``) run while the tensor
    cores work on step ``k``::

        copies(0); commit
        for k: { if (k + 1 < K) copies(k + 1); commit; wait for copies(k); barrier;
                 compute(k); barrier }

    The barrier at the end keeps a stage from being overwritten while a warp still reads it.
    """
    loop = pipe.loop
    v = loop.loop_var
    name = gen.var(v)
    extent = gen.expr(loop.extent)
    saved = {uid: gen.names.by_key[("buf", uid)] for uid in pipe.buffers
             if ("buf", uid) in gen.names.by_key}
    for uid, (buf, _) in pipe.buffers.items():
        saved.setdefault(uid, gen.buf(buf))

    def staged(step: str):
        for uid, (buf, count) in pipe.buffers.items():
            gen.names.by_key[("buf", uid)] = f"({saved[uid]} + (({step}) & 1) * {count})"

    def copies(step: str):
        gen.names.by_key[v.uid] = "tl_kp"
        staged("tl_kp")
        tc.async_ok = True
        try:
            gen.line("{")
            gen.depth += 1
            gen.line(f"const int tl_kp = {step};")
            for c in pipe.copies:
                gen.stmt(c)
            gen.depth -= 1
            gen.line("}")
        finally:
            tc.async_ok = False
            gen.names.by_key[v.uid] = name
    gen.line(f"{{  // {loop.loop_var.name}: double-buffered shared tiles "
             f"({', '.join(b.name for b, _ in pipe.buffers.values())}), cp.async prefetch")
    gen.depth += 1
    try:
        copies("0")
        gen.line("tl_cp_async_commit();")
        gen.line(f"for (int {name} = 0; {name} < {extent}; ++{name}) {{")
        gen.depth += 1
        gen.nonneg.add(v.uid)
        gen.line(f"if ({name} + 1 < {extent}) {{")
        gen.depth += 1
        copies(f"{name} + 1")
        gen.depth -= 1
        gen.line("}")
        gen.line("tl_cp_async_commit();")
        gen.line("tl_cp_async_wait_1();")
        gen.line("__syncthreads();")
        staged(name)
        gen.stmt(pipe.compute)
        gen.line("__syncthreads();")
        gen.depth -= 1
        gen.line("}")
    finally:
        for uid, text in saved.items():
            gen.names.by_key[("buf", uid)] = text
    gen.depth -= 1
    gen.line("}")


def _emit_mma(gen, nest: _MmaNest) -> None:
    frag = nest.acc
    rows, cols, depth = frag.rows, frag.cols, _const(nest.k.extent)
    tiles_m, tiles_n = rows // 16, cols // 8
    g, t = _lane_exprs()
    iv, jv, kv = gen.var(nest.i.loop_var), gen.var(nest.j.loop_var), gen.var(nest.k.loop_var)
    for f in (nest.i, nest.j, nest.k):
        gen.nonneg.add(f.loop_var.uid)
    acc = gen.buf(frag.buffer)
    gen.line(f"{{  // tensor cores: {frag.stage}[{rows} x {cols}] += {nest.a.buffer.name} * "
             f"{nest.b.buffer.name} over {nest.k.loop_var.name} ({depth}), mma.sync m16n8k16 "
             f"{nest.in_dtype}")
    gen.depth += 1
    gen.line("#pragma unroll")
    gen.line(f"for (int tl_kb = 0; tl_kb < {depth // 16}; ++tl_kb) {{")
    gen.depth += 1
    gen.line(f"unsigned int tl_fa[{tiles_m}][4];")
    gen.line(f"unsigned int tl_fb[{tiles_n}][2];")
    lane = "(int)threadIdx.x"
    gen.line("#pragma unroll")
    gen.line(f"for (int tl_tm = 0; tl_tm < {tiles_m}; ++tl_tm) {{")
    gen.depth += 1
    if nest.ldmatrix and _rows_aligned(nest.a, nest.k.loop_var):
        # ldmatrix.x4: matrices (rows 0-7 | 8-15) x (cols 0-7 | 8-15) are registers 0..3
        _with_bindings(gen, [
            (iv, f"tl_tm * 16 + ({lane} & 15)"),
            (kv, f"tl_kb * 16 + (({lane} >> 4) << 3)")],
            f"tl_ldmatrix_x4(tl_fa[tl_tm], &{gen.buf(nest.a.buffer)}"
            f"[{gen.index(nest.a.buffer, nest.a.indices[0])}]);")
    else:
        # register q holds (row g + 8 (q % 2), cols 2 t + 8 (q / 2) and + 1)
        gen.line("#pragma unroll")
        gen.line("for (int tl_q = 0; tl_q < 4; ++tl_q) {")
        gen.depth += 1
        _pair_load(gen, nest.a, "tl_fa[tl_tm][tl_q]", pair_var=nest.k.loop_var, bindings=[
            (iv, nest.i.loop_var, f"tl_tm * 16 + {g} + ((tl_q & 1) << 3)"),
            (kv, nest.k.loop_var, f"tl_kb * 16 + ({t} << 1) + ((tl_q >> 1) << 3)")])
        gen.depth -= 1
        gen.line("}")
    gen.depth -= 1
    gen.line("}")
    b_index = gen.index
    if nest.ldmatrix and _rows_aligned(nest.b, nest.j.loop_var) and tiles_n % 2 == 0:
        # ldmatrix.x4.trans over two n-tiles: matrix l / 8 = (k rows 0-7 | 8-15) x (tile
        # 2 tn2 | 2 tn2 + 1); transposed, a lane gets rows 2 t, 2 t + 1 of column g
        gen.line("#pragma unroll")
        gen.line(f"for (int tl_tn2 = 0; tl_tn2 < {tiles_n // 2}; ++tl_tn2) {{")
        gen.depth += 1
        gen.line("unsigned int tl_r[4];")
        _with_bindings(gen, [
            (jv, f"(tl_tn2 * 2 + ({lane} >> 4)) * 8"),
            (kv, f"tl_kb * 16 + ({lane} & 7) + ((({lane} >> 3) & 1) << 3)")],
            f"tl_ldmatrix_x4_trans(tl_r, &{gen.buf(nest.b.buffer)}"
            f"[{b_index(nest.b.buffer, nest.b.indices[0])}]);")
        gen.line("tl_fb[tl_tn2 * 2][0] = tl_r[0]; tl_fb[tl_tn2 * 2][1] = tl_r[1];")
        gen.line("tl_fb[tl_tn2 * 2 + 1][0] = tl_r[2]; tl_fb[tl_tn2 * 2 + 1][1] = tl_r[3];")
        gen.depth -= 1
        gen.line("}")
    elif nest.ldmatrix and _rows_aligned(nest.b, nest.j.loop_var):
        gen.line("#pragma unroll")
        gen.line(f"for (int tl_tn = 0; tl_tn < {tiles_n}; ++tl_tn) {{")
        gen.depth += 1
        _with_bindings(gen, [
            (jv, "tl_tn * 8"),
            (kv, f"tl_kb * 16 + ({lane} & 7) + ((({lane} >> 3) & 1) << 3)")],
            f"tl_ldmatrix_x2_trans(tl_fb[tl_tn], &{gen.buf(nest.b.buffer)}"
            f"[{b_index(nest.b.buffer, nest.b.indices[0])}]);")
        gen.depth -= 1
        gen.line("}")
    else:
        # register q holds (rows 2 t + 8 q and + 1, column g)
        gen.line("#pragma unroll")
        gen.line(f"for (int tl_tn = 0; tl_tn < {tiles_n}; ++tl_tn) {{")
        gen.depth += 1
        gen.line("#pragma unroll")
        gen.line("for (int tl_q = 0; tl_q < 2; ++tl_q) {")
        gen.depth += 1
        _pair_load(gen, nest.b, "tl_fb[tl_tn][tl_q]", pair_var=nest.k.loop_var, bindings=[
            (jv, nest.j.loop_var, f"tl_tn * 8 + {g}"),
            (kv, nest.k.loop_var, f"tl_kb * 16 + ({t} << 1) + (tl_q << 3)")])
        gen.depth -= 1
        gen.line("}")
        gen.depth -= 1
        gen.line("}")
    gen.line("#pragma unroll")
    gen.line(f"for (int tl_tm = 0; tl_tm < {tiles_m}; ++tl_tm) {{")
    gen.line("  #pragma unroll")
    gen.line(f"  for (int tl_tn = 0; tl_tn < {tiles_n}; ++tl_tn) {{")
    gen.line(f"    tl_mma_m16n8k16_{INPUT_DTYPES[nest.in_dtype]}(&{acc}[(tl_tm * {tiles_n} + "
             "tl_tn) * 4], tl_fa[tl_tm], tl_fb[tl_tn]);")
    gen.line("  }")
    gen.line("}")
    gen.depth -= 1
    gen.line("}")
    gen.depth -= 1
    gen.line("}")


def _rows_aligned(load, contiguous_var) -> bool:
    """ldmatrix fits: ``load``'s index is affine, steps by 1 along ``contiguous_var`` and
    every other term (and the constant) is a multiple of 8 elements, so each 8-element row
    of an 8x8 matrix is 16 contiguous, 16-byte-aligned bytes."""
    if dt.bits(dt.element_of(load.buffer.dtype)) != 16 or load.buffer.scope != "shared":
        return False
    lin = _linear(load.indices[0])
    if lin is None or lin[0].get(contiguous_var.uid, 0) != 1 or lin[1] % 8:
        return False
    return all(c % 8 == 0 for u, c in lin[0].items() if u != contiguous_var.uid)


def _with_bindings(gen, bindings, statement: str) -> None:
    gen.line("{")
    gen.depth += 1
    for name, value in bindings:
        gen.line(f"const int {name} = {value};")
    gen.line(statement)
    gen.depth -= 1
    gen.line("}")


def _pair_load(gen, load, target: str, pair_var, bindings) -> None:
    """``target`` = the two halves at ``pair_var`` and ``pair_var + 1`` of ``load`` packed
    in 32 bits (low half first), with the loop variables bound by ``bindings``."""
    buf = load.buffer
    (index,) = load.indices
    lin = _linear(index)
    contiguous = lin is not None and lin[0].get(pair_var.uid, 0) == 1 and lin[1] % 2 == 0 and \
        all(c % 2 == 0 for u, c in lin[0].items() if u != pair_var.uid)
    defs = [f"const int {name} = {value};" for name, _, value in bindings]
    if contiguous:  # the pair is 4-byte aligned and adjacent: one 32-bit shared load
        gen.line("{")
        gen.depth += 1
        for d in defs:
            gen.line(d)
        gen.line(f"{target} = *(const unsigned int*)(&{gen.buf(buf)}"
                 f"[{gen.index(buf, index)}]);")
        gen.depth -= 1
        gen.line("}")
        return
    gen.line("{")
    gen.depth += 1
    gen.line("unsigned int tl_lo, tl_hi;")
    for half, var in (("tl_lo", None), ("tl_hi", 1)):
        gen.line("{")
        gen.depth += 1
        for name, v, value in bindings:
            extra = " + 1" if var and v.uid == pair_var.uid else ""
            gen.line(f"const int {name} = {value}{extra};")
        gen.line(f"{half} = (unsigned int){gen.buf(buf)}[{gen.index(buf, index)}];")
        gen.depth -= 1
        gen.line("}")
    gen.line(f"{target} = tl_lo | (tl_hi << 16);")
    gen.depth -= 1
    gen.line("}")


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
