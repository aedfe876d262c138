"""Tensor-core (``mma.sync``) matrix multiply for NVIDIA GPUs (sm_80 and newer).

The DSL side of tensor cores is one pragma, ``s[CL].pragma(ax, "tensor_core", "m16n8k16")``,
on a loop of the stage that accumulates a *warp tile*. The convention (see
``codegen/cuda/mma.py``, which emits it):

* the accumulator stage ``CL`` is a ``"local"`` stage (``cache_write(C, "local")``) computed at
  a loop bound to ``threadIdx.y`` / ``threadIdx.z`` (one warp per value of those), never
  inside a ``threadIdx.x`` loop; the kernel's ``threadIdx.x`` extent must be exactly 32 (the
  lanes of the warp, used by the cooperative shared-memory loads). In the loop IR (and in the
  interpreter, which runs it sequentially) the warp tile is computed once per warp, as plain
  loops; the CUDA code runs it on the 32 lanes together;
* the loop nest below the annotated loop must be exactly ``for k, for i, for j`` (any order)
  of ``CL[i, j] += float32(A[.., k]) * float32(B[k, ..])`` with float16 (or bfloat16) operands
  in shared memory, extents of ``i`` / ``j`` / ``k`` multiples of 16 / 8 / 16; it becomes
  ``mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32`` instructions;
* ``CL`` becomes a *fragment*: each lane holds the 4 float32 values of each 16x8 tile that the
  PTX ISA's m16n8k16 accumulator layout gives it (row ``lane / 4`` and ``lane / 4 + 8``,
  columns ``2 * (lane % 4)`` and ``+ 1``), ``WM * WN / 32`` registers per lane. Every other
  loop nest that touches ``CL`` (its zero-fill, the copy to ``C``) must be a 2-deep
  ``for i in WM, for j in WN`` nest indexing ``CL[i, j]``; each lane runs it on its own
  elements only.

Two optional pragmas go with it: ``"double_buffer"`` on the loop at which the shared operand
tiles are computed (two shared stages, ``cp.async`` prefetch of the next step during the
current one) and ``"tensor_core_ldmatrix": False`` next to ``"tensor_core"`` (per-lane fragment
loads instead of ``ldmatrix``). Both change only the CUDA code, never the values.

Anything else is refused at build time with a ScheduleError naming the stage and the axis.
"""
from __future__ import annotations

from .. import tensor as _t
from ..errors import ScheduleError
from ..schedule import create_schedule
from . import nn as _nn

__all__ = ["matmul_tensorcore_cuda"]

_MAX_THREADS = 1024
_MAX_STATIC_SHARED = 48 * 1024


def _check(what: str, cond: bool, message: str):
    if not cond:
        raise ScheduleError(f"{what}: {message}")


def _cooperative_load(s, cached, lanes_total: int, warps_y: int, warps_z: int, vector: int):
    """Copy the tile of ``cached`` with all threads: axes fused, ``vector`` elements per
    access (128 bits for 8 halves), consecutive ``threadIdx.x`` on consecutive vectors."""
    st = s[cached]
    fused = st.fuse(*st.op.axis)
    if vector > 1:
        fused, vec = st.split(fused, factor=vector)
        st.vectorize(vec)
    outer, inner = st.split(fused, factor=lanes_total)
    st.unroll(outer)
    tz, rest = st.split(inner, factor=32 * warps_y)
    ty, tx = st.split(rest, factor=32)
    st.bind(tz, _t.thread_axis("threadIdx.z"))
    st.bind(ty, _t.thread_axis("threadIdx.y"))
    st.bind(tx, _t.thread_axis("threadIdx.x"))


def matmul_tensorcore_cuda(m: int, n: int, k: int, dtype: str = "float16", block_m: int = 128,
                           block_n: int = 128, block_k: int = 32, warp_m: int = 64,
                           warp_n: int = 64, pad: int = 8, vector: int = 8,
                           double_buffer: bool = True, ldmatrix: bool = True):
    """``C = A @ B`` on tensor cores: A [m, k] and B [k, n] of ``dtype`` (``"float16"`` or
    ``"bfloat16"``), C [m, n] float32 (fp32 accumulation).

    A block computes a ``block_m x block_n`` tile of C with ``(block_m / warp_m) x
    (block_n / warp_n)`` warps (``threadIdx.z`` x ``threadIdx.y``, 32 lanes on
    ``threadIdx.x``); each warp accumulates a ``warp_m x warp_n`` tile in registers with
    ``mma.sync`` m16n8k16 (the ``"tensor_core"`` pragma, see the module docstring). Per step of
    ``block_k`` the A tile (``block_m x block_k``) and the B tile (``block_k x block_n``) are
    copied to shared memory by all threads in 128-bit accesses (``vector`` halves), the rows
    padded by ``pad`` halves (``storage_align``) so that the fragment loads of a warp are free
    of bank conflicts. With ``double_buffer`` (a ``"double_buffer"`` pragma on the
    ``block_k`` loop) the shared tiles have two stages and the copies of the next step run
    asynchronously (``cp.async``) while the tensor cores work on the current one. The warp
    fragments come from shared memory through ``ldmatrix`` (``ldmatrix=False``: per-lane
    loads, a pragma ``"tensor_core_ldmatrix"`` set to False). Needs ``m``, ``n``, ``k`` to be
    multiples of the block tile. Shared memory: ``2 * (block_m * (block_k + pad) + block_k *
    (block_n + pad))`` bytes, twice that with ``double_buffer`` (48 KB at most: static shared
    memory). Returns ``(schedule, [A, B, C])``.

    Example::

        s, args = matmul_tensorcore_cuda(4096, 4096, 4096)   # 4 warps, 128x128x32 tiles
        mod = tl.build(s, args, target="cuda")

    On an H200 (8192^3, fp16 in, fp32 out) the defaults gave 263-293 TFLOP/s against cuBLAS
    fp16's 750 (torch.matmul, fp16 out): 0.35-0.39x; without ``double_buffer`` 222, without
    ``ldmatrix`` 227, ``warp_m=32`` (8 warps) 266, ``block_k=64`` single-buffered 273.
    """
    what = f"matmul_tensorcore_cuda({m}, {n}, {k})"
    _check(what, dtype in ("float16", "bfloat16"),
           f"dtype={dtype!r}: tensor cores here take float16 or bfloat16 inputs")
    _check(what, warp_m > 0 and warp_m % 16 == 0, f"warp_m={warp_m} must be a multiple of 16")
    _check(what, warp_n > 0 and warp_n % 8 == 0, f"warp_n={warp_n} must be a multiple of 8")
    _check(what, block_k > 0 and block_k % 16 == 0,
           f"block_k={block_k} must be a multiple of 16")
    for name, tile, per in (("block_m", block_m, warp_m), ("block_n", block_n, warp_n)):
        _check(what, tile > 0 and tile % per == 0,
               f"{name}={tile} must be a positive multiple of the warp tile {per}")
    for name, size, tile in (("m", m, block_m), ("n", n, block_n), ("k", k, block_k)):
        _check(what, size % tile == 0,
               f"{name}={size} must be a multiple of the tile {tile} (no guards on tensor "
               "cores yet)")
    wz, wy = block_m // warp_m, block_n // warp_n
    threads = 32 * wy * wz
    _check(what, threads <= _MAX_THREADS, f"{wz} x {wy} warps = {threads} threads per block "
           f"exceed {_MAX_THREADS}")
    _check(what, wz <= 64, f"{wz} warps along m exceed the threadIdx.z limit 64")
    _check(what, pad >= 0 and pad % vector == 0 if vector > 1 else pad >= 0,
           f"pad={pad} must be a multiple of vector={vector} (aligned 128-bit rows)")
    shared = 2 * (block_m * (block_k + pad) + block_k * (block_n + pad))
    shared *= 2 if double_buffer else 1
    _check(what, shared <= _MAX_STATIC_SHARED,
           f"{shared} bytes of shared memory exceed {_MAX_STATIC_SHARED}; shrink the tiles")
    vectors = {}
    for name, tile in (("block_m x block_k", block_m * block_k),
                       ("block_k x block_n", block_k * block_n)):
        v = max(1, vector)
        while v > 1 and tile % (threads * v):
            v //= 2  # fewer halves per access when the tile is small for the block
        _check(what, tile % (threads * v) == 0,
               f"the {name} tile ({tile} elements) must be a multiple of the {threads} "
               "threads per block")
        vectors[name] = v

    A = _t.placeholder((m, k), dtype, name="A")
    B = _t.placeholder((k, n), dtype, name="B")
    C = _nn.matmul(A, B, out_dtype="float32", name="C")
    s = create_schedule(C)
    AS = s.cache_read(A, "shared", [C])
    BS = s.cache_read(B, "shared", [C])
    CL = s.cache_write(C, "local")

    i, j = s[C].op.axis
    bi, ii = s[C].split(i, factor=block_m)
    bj, jj = s[C].split(j, factor=block_n)
    wi, mi = s[C].split(ii, factor=warp_m)
    wj, mj = s[C].split(jj, factor=warp_n)
    s[C].reorder(bi, bj, wi, wj, mi, mj)
    s[C].bind(bi, _t.thread_axis("blockIdx.y"))
    s[C].bind(bj, _t.thread_axis("blockIdx.x"))
    s[C].bind(wi, _t.thread_axis("threadIdx.z"))
    s[C].bind(wj, _t.thread_axis("threadIdx.y"))

    s[CL].compute_at(s[C], wj)
    ci, cj = s[CL].op.axis
    (rk,) = s[CL].op.reduce_axis
    ko, ki = s[CL].split(rk, factor=block_k)
    s[CL].reorder(ko, ki, ci, cj)
    s[CL].pragma(ki, "tensor_core", "m16n8k16")
    if not ldmatrix:
        s[CL].pragma(ki, "tensor_core_ldmatrix", False)
    if double_buffer:
        s[CL].pragma(ko, "double_buffer", True)

    for cached, width, v in ((AS, block_k, vectors["block_m x block_k"]),
                             (BS, block_n, vectors["block_k x block_n"])):
        s[cached].compute_at(s[CL], ko)
        row = s[cached].op.axis[0]
        if pad:
            stride = width + pad
            factor = 2 * stride
            s[cached].storage_align(row, factor, stride % factor)
        _cooperative_load(s, cached, threads, wy, wz, v)
    return s, [A, B, C]
