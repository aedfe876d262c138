"""The hand-written CUDA schedules of ``tensorlang.ops.gpu_schedules``.

Without a GPU: each schedule lowered at tiny sizes (small tiles and thread counts, since the
loop-IR interpreter runs every simulated thread in turn) and run in the interpreter against
NumPy on random data; the default parameters at the real sizes lower within the GPU's limits
(threads per block, static shared memory) with coalesced global accesses where the schedule
promises them. With the CUDA code generator: the schedules compile with NVRTC. With a GPU:
they run on it.
"""

import numpy as np
import pytest

import tensorlang as tl
from tensorlang.errors import ScheduleError
from tensorlang.ir import stmt as S
from tensorlang.ir.functor import post_order_visit, substitute
from tensorlang.ir.interpreter import run
from tensorlang.ops import gpu_schedules as gs

RNG = np.random.default_rng(11)


def _rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def _lower(sched):
    s, args = sched
    return tl.lower(s, args), args


def _conv_ref(x, w, stride, pad):
    n, c, h, wd = x.shape
    k, _, r, q = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - r) // stride + 1, (wd + 2 * pad - q) // stride + 1
    out = np.zeros((n, k, oh, ow))
    for dr in range(r):
        for dq in range(q):
            patch = xp[:, :, dr:dr + stride * oh:stride, dq:dq + stride * ow:stride]
            out += np.einsum("kc,nchw->nkhw", w[:, :, dr, dq], patch)
    return out


def _depthwise_ref(x, w, stride, pad):
    n, c, h, wd = x.shape
    r = w.shape[2]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - r) // stride + 1, (wd + 2 * pad - r) // stride + 1
    out = np.zeros((n, c, oh, ow))
    for dr in range(r):
        for dq in range(r):
            patch = xp[:, :, dr:dr + stride * oh:stride, dq:dq + stride * ow:stride]
            out += patch * w[None, :, 0, dr, dq, None, None]
    return out


def _softmax_ref(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _layer_norm_ref(x, g, b, eps):
    x64 = x.astype(np.float64)
    y = (x64 - x64.mean(1, keepdims=True)) / np.sqrt(x64.var(1, keepdims=True) + eps)
    return y * g + b


# -- correctness in the loop-IR interpreter -----------------------------------------------------

@pytest.mark.parametrize("m,n,k,params", [
    (16, 16, 16, dict(block_m=8, block_n=8, block_k=8, thread_m=2, thread_n=2)),
    (16, 16, 16, dict(block_m=8, block_n=8, block_k=8, thread_m=2, thread_n=2,
                      transpose_a_shared=False)),
    (13, 11, 7, dict(block_m=8, block_n=8, block_k=4, thread_m=2, thread_n=2)),
    (8, 24, 12, dict(block_m=8, block_n=8, block_k=4, thread_m=4, thread_n=2,
                     transpose_a_shared=False, unroll=False)),
])
def test_matmul_matches_numpy(m, n, k, params):
    f, _ = _lower(gs.matmul_cuda(m, n, k, **params))
    a, b = _rand(m, k), _rand(k, n)
    c = np.full((m, n), np.nan, np.float32)
    run(f, a, b, c)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


def test_matmul_fp16_inputs_accumulate_in_fp32():
    f, args = _lower(gs.matmul_cuda(16, 8, 24, dtype="float16", acc_dtype="float32",
                                    block_m=8, block_n=8, block_k=8, thread_m=2,
                                    thread_n=2))
    assert args[2].dtype == "float32"
    a, b = _rand(16, 24, dtype=np.float16), _rand(24, 8, dtype=np.float16)
    c = np.full((16, 8), np.nan, np.float32)
    run(f, a, b, c)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-3,
                               atol=1e-3)


@pytest.mark.parametrize("shape,params", [
    ((1, 4, 6, 6, 4, 3, 1, 1), dict(tile_f=4, tile_y=2, tile_x=6, thread_f=2, thread_y=1,
                                    thread_x=3, rc_block=2)),
    ((1, 2, 7, 9, 3, 3, 2, 0), dict(tile_f=2, tile_y=2, tile_x=4, thread_f=1, thread_y=1,
                                    thread_x=2, rc_block=2)),
])
def test_conv2d_matches_numpy(shape, params):
    n, c, h, w, k, r, stride, pad = shape
    f, _ = _lower(gs.conv2d_nchw_cuda(n, c, h, w, k, r, stride=stride, padding=pad, **params))
    x, wt = _rand(n, c, h, w), _rand(k, c, r, r)
    ref = _conv_ref(x, wt, stride, pad)
    out = np.full(ref.shape, np.nan, np.float32)
    run(f, x, wt, out)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape,params", [
    ((1, 3, 8, 8, 3, 1, 1), dict(tile_y=4, tile_x=4, thread_y=2, thread_x=1)),
    ((2, 2, 9, 7, 3, 2, 1), dict(tile_y=4, tile_x=4, thread_y=2, thread_x=2)),
])
def test_depthwise_conv2d_matches_numpy(shape, params):
    n, c, h, w, r, stride, pad = shape
    f, _ = _lower(gs.depthwise_conv2d_nchw_cuda(n, c, h, w, r, stride=stride, padding=pad,
                                                **params))
    x, wt = _rand(n, c, h, w), _rand(c, 1, r, r)
    ref = _depthwise_ref(x, wt, stride, pad)
    out = np.full(ref.shape, np.nan, np.float32)
    run(f, x, wt, out)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


ROW_CASES = [
    (6, 32, dict(threads_x=4, rows_per_block=2)),                      # staged, vectorized
    (5, 24, dict(threads_x=4, rows_per_block=2)),                      # row guard, scalar
    (3, 16, dict(threads_x=8, rows_per_block=1, stage_input=False)),   # global reads
]


@pytest.mark.parametrize("rows,cols,params", ROW_CASES)
def test_softmax_matches_numpy(rows, cols, params):
    f, _ = _lower(gs.softmax_cuda(rows, cols, **params))
    x = _rand(rows, cols) * 3
    out = np.full((rows, cols), np.nan, np.float32)
    run(f, x, out)
    np.testing.assert_allclose(out, _softmax_ref(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows,cols,params", ROW_CASES)
def test_layer_norm_matches_numpy(rows, cols, params):
    f, _ = _lower(gs.layer_norm_cuda(rows, cols, epsilon=1e-3, **params))
    x, g, b = _rand(rows, cols) + 2, _rand(cols), _rand(cols)
    out = np.full((rows, cols), np.nan, np.float32)
    run(f, x, g, b, out)
    np.testing.assert_allclose(out, _layer_norm_ref(x, g, b, 1e-3), rtol=1e-4, atol=1e-4)


def test_layer_norm_without_affine():
    f, args = _lower(gs.layer_norm_cuda(4, 16, affine=False, threads_x=4, rows_per_block=2))
    assert len(args) == 2
    x = _rand(4, 16)
    out = np.full((4, 16), np.nan, np.float32)
    run(f, x, out)
    np.testing.assert_allclose(out, _layer_norm_ref(x, 1.0, 0.0, 1e-5), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rows,cols,params", [(6, 16, dict(threads=8)), (5, 7, dict(threads=8)),
                                              (3, 12, dict(threads=4, vector=1))])
def test_elementwise_chain_matches_numpy(rows, cols, params):
    s, args = gs.elementwise_chain_cuda(rows, cols, **params)
    assert [st.attach_type for st in s.stages if st.op.name in ("scaled", "shifted", "act")] \
        == ["inline"] * 3
    f = tl.lower(s, args)
    x, r, a, b = _rand(rows, cols), _rand(rows, cols), _rand(cols), _rand(cols)
    out = np.full((rows, cols), np.nan, np.float32)
    run(f, x, a, b, r, out)
    np.testing.assert_allclose(out, np.maximum(x * a + b, 0) + r, rtol=1e-6, atol=1e-6)


def test_schedule_injective_on_a_3d_broadcast():
    from tensorlang.ops import elemwise
    A = tl.placeholder((3, 5, 8), name="A")
    B = tl.placeholder((5, 1), name="B")
    C = elemwise.multiply(elemwise.add(A, B), 2.0)
    s = tl.create_schedule(C)
    s[C.op.input_tensors[0]].compute_inline()
    gs.schedule_injective_cuda(s, C, threads=4, vector=4)
    f = tl.lower(s, [A, B, C])
    assert gs.gpu_launch_stats(f)["block"] == (4, 1, 1)
    a, b = _rand(3, 5, 8), _rand(5, 1)
    c = np.full((3, 5, 8), np.nan, np.float32)
    run(f, a, b, c)
    np.testing.assert_allclose(c, (a + b) * 2, rtol=1e-6)


# -- the defaults at real sizes: launch limits and access patterns --------------------------------

REAL = {
    "matmul": lambda: gs.matmul_cuda(4096, 4096, 4096),
    "matmul_fp16": lambda: gs.matmul_cuda(4096, 4096, 4096, dtype="float16",
                                          acc_dtype="float32"),
    "conv2d": lambda: gs.conv2d_nchw_cuda(1, 64, 56, 56, 64, 3, stride=1, padding=1),
    "depthwise": lambda: gs.depthwise_conv2d_nchw_cuda(1, 32, 112, 112, 3, stride=1,
                                                       padding=1),
    "softmax": lambda: gs.softmax_cuda(4096, 4096),
    "layer_norm": lambda: gs.layer_norm_cuda(4096, 4096),
    "elementwise": lambda: gs.elementwise_chain_cuda(4096, 4096),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_defaults_fit_the_gpu_limits(name):
    f, _ = _lower(REAL[name]())
    stats = gs.gpu_launch_stats(f)
    assert stats["threads"] is not None and 32 <= stats["threads"] <= 1024, stats
    assert stats["shared_bytes"] is not None and stats["shared_bytes"] <= 48 * 1024, stats
    assert all(g is not None and g >= 1 for g in stats["grid"]), stats
    # every loop of the kernel body sits inside the block and thread bindings
    assert isinstance(f.body, S.For) and f.body.thread_tag.startswith("blockIdx"), f.body


def test_default_launch_shapes():
    f, _ = _lower(REAL["matmul"]())
    stats = gs.gpu_launch_stats(f)
    assert stats["grid"] == (32, 32, 1) and stats["block"] == (16, 16, 1)
    assert stats["shared_bytes"] == (16 * 132 + 16 * 128) * 4   # padded transposed A, B
    f, _ = _lower(REAL["softmax"]())
    stats = gs.gpu_launch_stats(f)
    assert stats["grid"] == (4096, 1, 1) and stats["block"] == (64, 1, 1)
    assert stats["shared_bytes"] == 4096 * 4 + 2 * (64 * 4 + 4)   # staged row, partials


def _loops(stmt):
    found = []
    post_order_visit(stmt, lambda n: found.append(n) if isinstance(n, S.For) else None)
    return found


def test_matmul_not_dividing_keeps_the_register_tile_unguarded():
    """Shapes the tiles do not divide: the product runs over the padded domain, so the loops
    of the register tile keep constant extents and carry no guard (a guarded tile would be
    indexed dynamically, out of registers); only the final store is guarded."""
    from tensorlang import expr as E
    f, _ = _lower(gs.matmul_cuda(1000, 1000, 1000))
    (k_loop,) = [lp for lp in _loops(f.body) if lp.loop_var.name == "k.outer"]
    assert isinstance(k_loop.extent, E.IntImm) and k_loop.extent.value == 1008 // 16
    (compute,) = [lp for lp in _loops(k_loop) if lp.loop_var.name == "k.inner"]
    assert all(isinstance(lp.extent, E.IntImm) for lp in _loops(compute))
    ifs = []
    post_order_visit(compute, lambda n: ifs.append(n) if isinstance(n, S.IfThenElse) else None)
    assert not ifs
    stores = [lp for lp in _loops(f.body) if dict(lp.annotations).get("keep_guard")]
    assert len(stores) == 2 and all(isinstance(lp.extent, E.IntImm) for lp in stores)


def _thread_var(func, tag="threadIdx.x"):
    found = []
    post_order_visit(func.body, lambda n: found.append(n.loop_var)
                     if isinstance(n, S.For) and n.thread_tag == tag else None)
    return found


def _global_accesses(func, names):
    """(buffer name, index expression, is_store) of each access to the named buffers."""
    from tensorlang import expr as E
    out = []

    def visit(n):
        if isinstance(n, E.BufferLoad) and n.buffer.name in names:
            out.append((n.buffer.name, n.indices[0], False))
        elif isinstance(n, S.BufferStore) and n.buffer.name in names:
            out.append((n.buffer.name, n.indices[0], True))

    post_order_visit(func.body, visit)
    return out


def _thread_step(index, tvars):
    """How far the accessed address moves when threadIdx.x moves by one (None: varies)."""
    from tensorlang import expr as E
    from tensorlang.arith import simplify
    lanes = 1
    if isinstance(index, E.Ramp):
        index, lanes = index.base, index.lanes
    steps = set()
    for tv in tvars:
        d = simplify(substitute(index, {tv: tv + 1}) - index)
        steps.add(getattr(d, "value", None))
    return steps, lanes


@pytest.mark.parametrize("name,buffers", [
    ("softmax", {"x", "softmax"}), ("layer_norm", {"x", "layer_norm"}),
    ("elementwise", {"x", "r", "out"}), ("matmul", {"B"}),
])
def test_global_accesses_are_coalesced_and_128_bit(name, buffers):
    f, _ = _lower(REAL[name]())
    tvars = _thread_var(f)
    accesses = _global_accesses(f, buffers)
    assert {a[0] for a in accesses} == buffers
    for buf, index, _ in accesses:
        steps, lanes = _thread_step(index, tvars)
        assert lanes == 4, (buf, index)
        # consecutive threadIdx.x touch consecutive 4-element vectors (or do not depend on it)
        assert steps <= {0, 4} and 4 in steps, (buf, index, steps)


def test_too_many_threads_is_refused():
    with pytest.raises(ScheduleError, match="threads per block"):
        gs.matmul_cuda(256, 256, 256, block_m=256, block_n=256, thread_m=4, thread_n=4)
    with pytest.raises(ScheduleError, match="threads per block"):
        gs.conv2d_nchw_cuda(1, 8, 64, 64, 64, 3, tile_f=64, tile_y=8, tile_x=32, thread_f=4,
                            thread_y=1, thread_x=1)
    with pytest.raises(ScheduleError, match="threads"):
        gs.softmax_cuda(64, 64, threads_x=64, rows_per_block=32)
    with pytest.raises(ScheduleError, match="threads"):
        gs.schedule_injective_cuda(None, None, threads=2048)


def test_tile_not_a_multiple_of_the_thread_tile_is_refused():
    with pytest.raises(ScheduleError, match="block_n=100"):
        gs.matmul_cuda(256, 256, 256, block_n=100, thread_n=8)


# -- NVRTC (needs engineer A's codegen.cuda, no GPU) and the device ------------------------------

def _cuda_available():
    try:
        from tensorlang.runtime import cuda
    except ImportError:
        return False
    return cuda.available()


@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("name", sorted(REAL))
def test_defaults_compile_with_nvrtc(name, arch):
    pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-python's NVRTC is not installed")
    s, args = REAL[name]()
    mod = tl.build(s, args, target=f"cuda -arch={arch}")
    src = mod.get_source()
    assert "__global__" in src and "threadIdx.x" in src
    cubin = mod.get_source("cubin")
    assert isinstance(cubin, bytes) and cubin[:4] == b"\x7fELF"


@pytest.mark.skipif(not _cuda_available(), reason="no CUDA GPU/driver: the schedules run "
                    "only in the loop-IR interpreter here")
@pytest.mark.parametrize("name", sorted(REAL))
def test_defaults_on_the_gpu(name):
    small = {
        "matmul": lambda: gs.matmul_cuda(512, 384, 256),
        "matmul_fp16": lambda: gs.matmul_cuda(256, 256, 128, dtype="float16",
                                              acc_dtype="float32"),
        "conv2d": REAL["conv2d"],
        "depthwise": REAL["depthwise"],
        "softmax": lambda: gs.softmax_cuda(300, 1024),
        "layer_norm": lambda: gs.layer_norm_cuda(300, 1024),
        "elementwise": lambda: gs.elementwise_chain_cuda(300, 1024),
    }
    s, args = small[name]()
    mod = tl.build(s, args, target="cuda")
    shapes = [[int(d) for d in t.shape] for t in args]
    inputs = [_rand(*sh, dtype=np.dtype(t.dtype)) for sh, t in zip(shapes[:-1], args[:-1])]
    if name == "layer_norm":
        inputs[0] = inputs[0] + 2
    dev = [tl.nd.array(a, device="cuda") for a in inputs]
    out = tl.nd.empty(shapes[-1], args[-1].dtype, device="cuda")
    mod(*dev, out)
    got = out.numpy()
    x = [a.astype(np.float64) for a in inputs]
    ref = {
        "matmul": lambda: x[0] @ x[1],
        "matmul_fp16": lambda: x[0] @ x[1],
        "conv2d": lambda: _conv_ref(inputs[0], inputs[1], 1, 1),
        "depthwise": lambda: _depthwise_ref(inputs[0], inputs[1], 1, 1),
        "softmax": lambda: _softmax_ref(x[0]),
        "layer_norm": lambda: _layer_norm_ref(inputs[0], x[1], x[2], 1e-5),
        "elementwise": lambda: np.maximum(x[0] * x[1] + x[2], 0) + x[3],
    }[name]()
    np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-3)
