"""Schedule primitives beyond split/tile/reorder, traces, dtypes and extern stages, built and
compared with NumPy on random data."""
import platform

import numpy as np
import pytest

import tensorlang as tl
from tensorlang.errors import UnsupportedOpError

RNG = np.random.default_rng(7)


def _rand(shape, dtype="float32"):
    return RNG.standard_normal(shape).astype(dtype)


def test_storage_align_pads_the_stride_and_keeps_values():
    A = tl.placeholder((8, 12), name="A")
    B = tl.compute((8, 12), lambda i, j: A[i, j] * 2.0, name="B")
    C = tl.compute((8, 12), lambda i, j: B[i, j] + 1.0, name="C")
    s = tl.create_schedule(C)
    s[B].storage_align(B.op.axis[0], 16, 1)
    text = str(tl.lower(s, [A, C]))
    assert "B[i * 17 + j]" in text.replace("B[j + i * 17]", "B[i * 17 + j]")
    func = tl.lower(s, [A, C])
    assert func.body.buffer.allocation_extents()[0].value == 8 * 17  # padded rows allocated
    a = _rand((8, 12))
    c = np.empty_like(a)
    from tensorlang.ir import interpreter  # it refuses out-of-bounds accesses
    interpreter.run(func, a, c)
    np.testing.assert_allclose(c, a * 2 + 1, rtol=1e-6)
    c[:] = np.nan
    tl.build(s, [A, C])(a, c)
    np.testing.assert_allclose(c, a * 2 + 1, rtol=1e-6)


def test_pragma_is_recorded_on_the_loop():
    A = tl.placeholder((16,), name="A")
    B = tl.compute((16,), lambda i: A[i] + 1.0, name="B")
    s = tl.create_schedule(B)
    s[B].pragma(B.op.axis[0], "unroll_explicit", 4)
    func = tl.lower(s, [A, B])
    assert func.body.annotations == (("unroll_explicit", 4),)


def test_bind_is_lowered_and_refused_by_the_cpu_backend():
    A = tl.placeholder((64,), name="A")
    B = tl.compute((64,), lambda i: A[i] * 3.0, name="B")
    s = tl.create_schedule(B)
    bx, tx = s[B].split(B.op.axis[0], factor=32)
    s[B].bind(bx, tl.thread_axis("blockIdx.x"))
    s[B].bind(tx, tl.thread_axis("threadIdx.x"))
    func = tl.lower(s, [A, B])
    assert 'thread_binding(0, 2, "blockIdx.x")' in str(func)
    from tensorlang.ir import interpreter
    a, b = _rand(64), np.empty(64, "float32")
    interpreter.run(func, a, b)
    np.testing.assert_allclose(b, a * 3, rtol=1e-6)
    with pytest.raises(UnsupportedOpError, match="blockIdx.x"):
        tl.build(func)
    with pytest.raises(tl.UserError, match="unknown thread axis"):
        tl.thread_axis("threadIdx.w")


def test_compute_root_undoes_compute_at():
    A = tl.placeholder((6, 6), name="A")
    B = tl.compute((6, 6), lambda i, j: A[i, j] + 1.0, name="B")
    C = tl.compute((6, 6), lambda i, j: B[i, j] * B[j, i], name="C")
    s = tl.create_schedule(C)
    s[B].compute_at(s[C], C.op.axis[0])
    s[B].compute_root()
    a = _rand((6, 6))
    c = np.empty_like(a)
    tl.build(s, [A, C])(a, c)
    np.testing.assert_allclose(c, (a + 1) * (a + 1).T, rtol=1e-5)


def test_cache_read_into_local_at_a_loop():
    A = tl.placeholder((10, 7), name="A")
    k = tl.reduce_axis((0, 7), name="k")
    B = tl.compute((10,), lambda i: tl.sum(A[i, k] * A[i, k], axis=k), name="B")
    s = tl.create_schedule(B)
    AL = s.cache_read(A, "local", [B])
    s[AL].compute_at(s[B], B.op.axis[0])
    text = str(tl.lower(s, [A, B]))
    assert "A.local" in text
    a = _rand((10, 7))
    b = np.empty(10, "float32")
    tl.build(s, [A, B])(a, b)
    np.testing.assert_allclose(b, (a * a).sum(1), rtol=1e-5)


def test_schedule_json_round_trip_gives_the_same_loops():
    def make():
        A = tl.placeholder((20, 30), name="A")
        B = tl.compute((20, 30), lambda i, j: A[i, j] * 2.0, name="B")
        C = tl.compute((20, 30), lambda i, j: B[i, j] + A[i, j], name="C")
        return A, B, C

    A, B, C = make()
    s = tl.create_schedule(C)
    xo, yo, xi, yi = s[C].tile(C.op.axis[0], C.op.axis[1], 6, 8)
    s[B].compute_at(s[C], yo)
    s[C].vectorize(yi)
    s[C].parallel(xo)
    text = s.to_json()
    A2, B2, C2 = make()
    s2 = tl.schedule_from_json(text, [A2, C2])
    assert str(tl.lower(s, [A, C])) == str(tl.lower(s2, [A2, C2]))
    a = _rand((20, 30))
    c = np.empty_like(a)
    tl.build(s2, [A2, C2])(a, c)
    np.testing.assert_allclose(c, 3 * a, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "float64", "int8", "int16", "int64", "uint8"])
def test_dtypes_end_to_end(dtype):
    A = tl.placeholder((33,), dtype, name="A")
    B = tl.placeholder((33,), dtype, name="B")
    C = tl.compute((33,), lambda i: A[i] * B[i] + A[i], name="C")
    s = tl.create_schedule(C)
    xo, xi = s[C].split(C.op.axis[0], factor=8)
    s[C].vectorize(xi)
    if np.dtype(dtype).kind == "f":
        a, b = _rand(33, dtype), _rand(33, dtype)
    else:
        info = np.iinfo(dtype)
        a = RNG.integers(max(info.min, -100), min(info.max, 100), 33).astype(dtype)
        b = RNG.integers(max(info.min, -100), min(info.max, 100), 33).astype(dtype)
    c = np.empty(33, dtype)
    tl.build(s, [A, B, C])(a, b, c)
    expected = a * b + a  # NumPy wraps integers the same way
    tol = 2e-3 if dtype == "float16" else 1e-6
    np.testing.assert_allclose(c.astype("float64"), expected.astype("float64"), rtol=tol, atol=tol)


def test_bool_and_casts():
    A = tl.placeholder((17,), name="A")
    M = tl.compute((17,), lambda i: A[i] > 0.25, name="M")
    I = tl.compute((17,), lambda i: tl.cast(A[i] * 10.0, "int32"), name="I")
    s = tl.create_schedule([M, I])
    a = _rand(17)
    m, idx = np.empty(17, bool), np.empty(17, "int32")
    tl.build(s, [A, M, I])(a, m, idx)
    np.testing.assert_array_equal(m, a > 0.25)
    np.testing.assert_array_equal(idx, (a * 10).astype("int32"))


def test_rounding_and_integer_division_match_numpy():
    A = tl.placeholder((64,), name="A")
    X = tl.placeholder((64,), "int32", name="X")
    R = tl.compute((64,), lambda i: tl.round(A[i]), name="R")
    D = tl.compute((64,), lambda i: X[i] // 3 + X[i] % 5 * 100 + tl.truncdiv(X[i], 3) * 10000,
                   name="D")
    s = tl.create_schedule([R, D])
    a = (RNG.integers(-20, 20, 64) / 2).astype("float32")  # many exact halves
    x = RNG.integers(-50, 50, 64).astype("int32")
    r, d = np.empty(64, "float32"), np.empty(64, "int32")
    tl.build(s, [A, X, R, D])(a, x, r, d)
    np.testing.assert_array_equal(r, np.round(a))
    np.testing.assert_array_equal(d, x // 3 + x % 5 * 100 + np.trunc(x / 3).astype("int32") * 10000)


def test_extern_stage_calls_a_c_function():
    from tensorlang.expr import var
    from tensorlang.ir.stmt import BufferStore, For
    A = tl.placeholder((9,), name="A")

    def body(ins, outs):
        i = var("i")
        value = tl.call_extern("float32", "expf", ins[0].vload((i,)))
        return For(i, tl.const(0), tl.const(9), "serial", BufferStore(outs[0], value, (i,)))

    E = tl.extern((9,), [A], body, name="E", dtype="float32")
    F = tl.compute((9,), lambda i: E[i] + 1.0, name="F")
    s = tl.create_schedule(F)
    a = _rand(9)
    f = np.empty(9, "float32")
    tl.build(s, [A, F])(a, f)
    np.testing.assert_allclose(f, np.exp(a) + 1, rtol=1e-5)


def test_config_verify_and_dump(capsys):
    A = tl.placeholder((8,), name="A")
    B = tl.compute((8,), lambda i: A[i] + 1.0, name="B")
    s = tl.create_schedule(B)
    with tl.config(verify=True, dump_ir=True, disabled_passes=["vectorize"]):
        tl.lower(s, [A, B])
    out = capsys.readouterr().out
    assert "# after loop_nest" in out and "# after simplify" in out
    assert "# after vectorize" not in out


def test_argmax_with_tuple_reducer_and_one_output_argument():
    A = tl.placeholder((6, 11), name="A")
    k = tl.reduce_axis((0, 11), name="k")
    argmax = tl.comm_reducer(
        lambda x, y: (tl.select(x[1] >= y[1], x[0], y[0]), tl.select(x[1] >= y[1], x[1], y[1])),
        lambda ti, tv: (tl.const(-1, ti), tl.min_value(tv)), name="argmax")
    idx, val = tl.compute((6,), lambda i: argmax((k.var, A[i, k]), axis=k), name="T")
    s = tl.create_schedule(idx)
    a = _rand((6, 11))
    out = np.empty(6, "int32")
    tl.build(s, [A, idx])(a, out)
    np.testing.assert_array_equal(out, a.argmax(1))


def test_pragma_unroll_keys_reach_llvm():
    A = tl.placeholder((64,), name="A")
    B = tl.compute((64,), lambda i: A[i] * 2.0, name="B")
    s = tl.create_schedule(B)
    o, i = s[B].split(B.op.axis[0], factor=16)
    s[B].pragma(o, "unroll", 2)
    s[B].pragma(i, "unroll_explicit", 16)
    func = tl.lower(s, [A, B])
    from codegen.llvm import host_target
    from codegen.llvm.codegen import lower_to_llvm
    text = str(lower_to_llvm(func, host_target()).module)  # before LLVM's passes consume it
    assert '!"llvm.loop.unroll.count", i32 2' in text
    f = tl.build(s, [A, B])
    a, b = _rand(64), np.empty(64, "float32")
    f(a, b)
    np.testing.assert_allclose(b, 2 * a, rtol=1e-6)
    s2 = tl.create_schedule(B)
    s2[B].pragma(B.op.axis[0], "unrol", 4)
    with pytest.raises(tl.UserError, match="unknown pragma 'unrol'"):
        tl.build(s2, [A, B])


def test_parallel_chunk_pragma_gives_a_dynamic_schedule():
    A = tl.placeholder((1000, 3), name="A")
    B = tl.compute((1000, 3), lambda i, j: A[i, j] + tl.cast(i, "float32"), name="B")
    s = tl.create_schedule(B)
    s[B].parallel(B.op.axis[0])
    s[B].pragma(B.op.axis[0], "parallel_chunk", 7)
    a, b = _rand((1000, 3)), np.full((1000, 3), np.nan, "float32")
    tl.build(s, [A, B])(a, b)
    np.testing.assert_allclose(b, a + np.arange(1000, dtype="float32")[:, None], rtol=1e-6)
    s[B].pragma(B.op.axis[0], "parallel_chunk", 0)
    with pytest.raises(tl.UserError, match="parallel_chunk needs a positive"):
        tl.build(s, [A, B])


def test_prefetch_pragma_emits_prefetches_and_keeps_values():
    A = tl.placeholder((64, 256), name="A")
    k = tl.reduce_axis((0, 256), name="k")
    B = tl.compute((64,), lambda i: tl.sum(A[i, k], axis=k), name="B")
    s = tl.create_schedule(B)
    s[B].pragma(B.op.reduce_axis[0], "prefetch", 16)
    f = tl.build(s, [A, B])
    assert "prefetch" in f.get_source("asm")
    a, b = _rand((64, 256)), np.empty(64, "float32")
    f(a, b)
    np.testing.assert_allclose(b, a.sum(1), rtol=1e-4, atol=1e-4)


def test_prefetch_pragma_on_unrolled_loop():
    A = tl.placeholder((8, 256), name="A")
    B = tl.compute((8, 256), lambda i, j: A[i, j] * 2.0, name="B")
    s = tl.create_schedule(B)
    i, j = s[B].op.axis
    jo, ji = s[B].split(j, factor=4)
    s[B].unroll(ji)
    s[B].pragma(ji, "prefetch", 256)  # the same column of the next row
    f = tl.build(s, [A, B])
    assert "llvm.prefetch" in f.get_source("ll")
    a, b = _rand((8, 256)), np.empty((8, 256), "float32")
    f(a, b)
    np.testing.assert_array_equal(b, a * 2)


def _streaming_copy(n):
    A = tl.placeholder((n,), name="A")
    B = tl.compute((n,), lambda i: A[i] + 1.0, name="B")
    s = tl.create_schedule(B)
    o, v = s[B].split(B.op.axis[0], factor=8)
    s[B].vectorize(v)
    s[B].pragma(o, "nontemporal", True)
    return tl.build(s, [A, B])


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="checks x86 streaming-store instructions (vmovntps / movntps)")
def test_nontemporal_pragma_streams_aligned_and_handles_unaligned_outputs():
    f = _streaming_copy(1024)
    assert "movntps" in f.get_source("asm")
    a = _rand((1024,))
    b = tl.nd.empty((1024,), "float32")  # 64-byte aligned: the streaming path
    f(tl.nd.array(a), b)
    np.testing.assert_array_equal(b.numpy(), a + 1)
    # an output that starts 4 bytes into an aligned block takes the ordinary stores
    raw = np.empty(1024 + 16, "float32")
    shift = (-raw.ctypes.data % 64) // 4 + 1
    out = raw[shift:shift + 1024]
    assert out.ctypes.data % 32
    f(a, out)
    np.testing.assert_array_equal(out, a + 1)


def test_nontemporal_pragma_takes_true_only():
    A = tl.placeholder((64,), name="A")
    B = tl.compute((64,), lambda i: A[i] + 1.0, name="B")
    s = tl.create_schedule(B)
    s[B].pragma(B.op.axis[0], "nontemporal", 3)
    with pytest.raises(tl.UserError, match="nontemporal takes True"):
        tl.build(s, [A, B])


def test_select_tree_reads_give_one_bound_each():
    # a consumer that reads each element of its producer through a select tree (each level
    # repeats its operands): bound inference must not build a chain over every repeat
    X = tl.placeholder((4, 64), name="X")
    P = tl.compute((4, 64), lambda i, j: X[i, j] * 2.0, name="P")

    def tree(i):
        terms = [P[i, l] for l in range(64)]
        while len(terms) > 1:
            terms = [tl.select(a > b, a, b) for a, b in zip(terms[0::2], terms[1::2])]
        return terms[0]

    Y = tl.compute((4,), lambda i: tree(i), name="Y")
    s = tl.create_schedule(Y)
    s[P].compute_at(s[Y], Y.op.axis[0])
    x = _rand((4, 64))
    y = np.empty(4, "float32")
    tl.build(s, [X, Y])(x, y)
    np.testing.assert_array_equal(y, (x * 2).max(axis=1))


def test_producer_attached_below_its_readers_loop_is_refused():
    # P is read by C's local stage, attached at C's outer loop; P itself at C's inner loop
    # would be computed after its reader ran: a ScheduleError naming both stages
    A = tl.placeholder((16, 16), name="A")
    P = tl.compute((16, 16), lambda i, j: A[i, j] + 1.0, name="P")
    k = tl.reduce_axis((0, 16), name="k")
    C = tl.compute((16, 16), lambda i, j: tl.sum(P[i, k] * 2.0, axis=k), name="C")
    s = tl.create_schedule(C)
    CL = s.cache_write(C, "local")
    i, j = s[C].op.axis
    s[CL].compute_at(s[C], i)
    s[P].compute_at(s[C], j)
    with pytest.raises(tl.ScheduleError, match="P.*C.local|C.local.*P"):
        tl.lower(s, [A, C])


def test_nested_compute_at_chain_bounds():
    # M is read by Y (at Y.i) and by P, which is attached inside V, itself attached at Y.i:
    # M's region must be the one row of Y.i, not a span computed from doubled offsets
    X = tl.placeholder((8, 64), name="X")
    M = tl.compute((8,), lambda i: X[i, 0] * 0.5, name="M")
    ro = tl.reduce_axis((0, 2), name="ro")
    P = tl.compute((8, 32), lambda i, l: tl.sum(X[i, ro * 32 + l] - M[i], axis=ro), name="P")
    rl = tl.reduce_axis((0, 32), name="rl")
    V = tl.compute((8,), lambda i: tl.sum(P[i, rl], axis=rl), name="V")
    Y = tl.compute((8, 64), lambda i, j: X[i, j] - M[i] + V[i], name="Y")
    s = tl.create_schedule(Y)
    i, _ = s[Y].op.axis
    s[M].compute_at(s[Y], i)
    s[V].compute_at(s[Y], i)
    s[P].compute_at(s[V], V.op.axis[0])
    assert "allocate M: float32[1]" in str(tl.lower(s, [X, Y]))
    x = _rand((8, 64))
    y = np.empty_like(x)
    tl.build(s, [X, Y])(x, y)
    m = x[:, 0] * 0.5
    v = (x - m[:, None]).sum(1)
    np.testing.assert_allclose(y, x - m[:, None] + v[:, None], rtol=1e-4, atol=1e-4)


def test_attached_region_keeps_a_constant_extent_at_tails():
    # 50 rows in tiles of 4: the cached tile of the last row tile is smaller, but its loops
    # keep the full constant extent (guarded), so fuse + split + vectorize stays legal
    n = 50
    A = tl.placeholder((n, n), name="A")
    B = tl.placeholder((n, n), name="B")
    k = tl.reduce_axis((0, n), "k")
    C = tl.compute((n, n), lambda i, j: tl.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = tl.create_schedule(C)
    CC = s.cache_write(C, "local")
    io, jo, ii, ji = s[C].tile(C.op.axis[0], C.op.axis[1], 4, 16)
    s[CC].compute_at(s[C], jo)
    fo, fi = s[CC].split(s[CC].fuse(*s[CC].op.axis), factor=8)
    s[CC].vectorize(fi)
    f = tl.build(s, [A, B, C])
    a, b = _rand((n, n)), _rand((n, n))
    c = np.full((n, n), np.nan, "float32")
    f(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


def test_lowering_twice_gives_structurally_equal_functions():
    A = tl.placeholder((16, 16), name="A")
    B = tl.compute((16, 16), lambda i, j: A[i, j] * 2.0, name="B")
    s = tl.create_schedule(B)
    s[B].split(B.op.axis[0], factor=4)
    first, second = tl.lower(s, [A, B]), tl.lower(s, [A, B])
    assert first == second and hash(first) == hash(second)
    assert first != tl.lower(tl.create_schedule(B), [A, B])


def test_vectorized_loop_over_fused_short_rows_is_a_contiguous_vector():
    # fuse(i, j) then split by 8: the flat index (f // 14) * 14 + f % 14 folds to f before
    # the vectorizer runs, so the store is one ramp, not a loop left for LLVM to gather
    A = tl.placeholder((3, 14, 14), name="A")
    b = tl.placeholder((3,), name="b")
    out = tl.compute((3, 14, 14), lambda c, i, j: A[c, i, j] * 2.0 + b[c], name="out")
    s = tl.create_schedule(out)
    c, i, j = s[out].op.axis
    _, inner = s[out].split(s[out].fuse(i, j), factor=4)
    s[out].vectorize(inner)
    text = str(tl.lower(s, [A, b, out]))
    assert "ramp(" in text and "vectorized(" not in text
    f = tl.build(s, [A, b, out])
    a = np.random.default_rng(0).standard_normal((3, 14, 14)).astype(np.float32)
    bias = np.random.default_rng(1).standard_normal(3).astype(np.float32)
    got = np.zeros_like(a)
    f(a, bias, got)
    np.testing.assert_allclose(got, a * 2 + bias[:, None, None], rtol=1e-6)
