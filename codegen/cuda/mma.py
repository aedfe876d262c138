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
from tensorlang.errors import ScheduleError
from tensorlang.ir import stmt as S
from tensorlang.ir.functor import post_order_visit
from tensorlang.lower.verify_gpu import _stmt_children as _children

from .mma_match import (INPUT_DTYPES, LDMATRIX, PIPELINE, PRAGMA, SHAPES,  # noqa: F401
                        Fragment, _MmaNest, _Pipeline, _const, _fors, _fragments_touched,
                        _is_zero, _linear, _match, _match_pipeline, _store_name)


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

