"""Sketches: the search space generated from a computation (autotune/sketch.py)."""
import json
import random
import re

import numpy as np
import pytest

import tensorlang as tl
from autotune.sketch import (default_schedule, factorizations, from_record, generate_sketches,
                             to_record)
from tensorlang.errors import UserError
from tensorlang.ops import nn

LANES = 8


# -- workloads (each call builds a fresh copy of the computation) ---------------------------------

def matmul(m=24, n=20, k=16):
    A = tl.placeholder((m, k), name="A")
    B = tl.placeholder((k, n), name="B")
    r = tl.reduce_axis((0, k), name="k")
    C = tl.compute((m, n), lambda i, j: tl.sum(A[i, r] * B[r, j], axis=r), name="C")
    return [A, B, C]


def batch_matmul(b=2, m=12, n=16, k=8):
    A = tl.placeholder((b, m, k), name="A")
    B = tl.placeholder((b, k, n), name="B")
    return [A, B, nn.batch_matmul(A, B)]


def conv_bias_relu(n=1, c=4, h=8, w=8, k=8):
    data = tl.placeholder((n, c, h, w), name="data")
    kernel = tl.placeholder((k, c, 3, 3), name="kernel")
    bias = tl.placeholder((k,), name="bias")
    conv = nn.conv2d_nchw(data, kernel, padding=1)
    out = tl.compute(conv.shape, lambda b, f, y, x: tl.max(conv[b, f, y, x] + bias[f], 0.0),
                     name="bias_relu")
    return [data, kernel, bias, out]


def conv_blocked(n=1, c=8, h=6, w=6, k=16):
    data = tl.placeholder((n, c, h, w), name="data")
    kernel = tl.placeholder((k, c, 3, 3), name="kernel")
    return [data, kernel, nn.conv2d_nchw_blocked(data, kernel, padding=1, c_block=4,
                                                 k_block=8)]


def depthwise(n=1, c=4, h=8, w=8):
    data = tl.placeholder((n, c, h, w), name="data")
    kernel = tl.placeholder((c, 1, 3, 3), name="kernel")
    return [data, kernel, nn.depthwise_conv2d_nchw(data, kernel, padding=1)]


def softmax(rows=4, cols=64):
    X = tl.placeholder((rows, cols), name="X")
    return [X, nn.softmax(X)]


def layer_norm(rows=4, cols=64):
    X = tl.placeholder((rows, cols), name="X")
    G = tl.placeholder((cols,), name="G")
    B = tl.placeholder((cols,), name="B")
    return [X, G, B, nn.layer_norm(X, G, B)]


def _reference(name, arrays):
    if name == "matmul":
        return arrays[0] @ arrays[1]
    if name == "batch_matmul":
        return np.matmul(arrays[0], arrays[1])
    if name in ("conv_bias_relu", "depthwise", "conv_blocked"):
        data, kernel = arrays[0], arrays[1]
        n, c, h, w = data.shape
        padded = np.pad(data, ((0, 0), (0, 0), (1, 1), (1, 1)))
        if name == "depthwise":
            out = np.zeros((n, c, h, w), np.float32)
            for y in range(3):
                for x in range(3):
                    out += padded[:, :, y:y + h, x:x + w] * kernel[None, :, 0, y, x, None, None]
            return out
        k = kernel.shape[0]
        out = np.zeros((n, k, h, w), np.float32)
        for y in range(3):
            for x in range(3):
                out += np.einsum("nchw,kc->nkhw", padded[:, :, y:y + h, x:x + w],
                                 kernel[:, :, y, x])
        if name == "conv_blocked":
            return out
        return np.maximum(out + arrays[2][None, :, None, None], 0)
    if name == "softmax":
        e = np.exp(arrays[0] - arrays[0].max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    if name == "layer_norm":
        x, g, b = arrays[:3]
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-5) * g + b
    raise KeyError(name)


WORKLOADS = {"matmul": matmul, "batch_matmul": batch_matmul, "conv_bias_relu": conv_bias_relu,
             "depthwise": depthwise, "softmax": softmax, "layer_norm": layer_norm,
             "conv_blocked": conv_blocked}


def _check(name, tensors, schedule, seed=0):
    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal([int(d) for d in t.shape]).astype(np.float32)
              for t in tensors[:-1]]
    out = np.zeros([int(d) for d in tensors[-1].shape], np.float32)
    tl.build(schedule, tensors)(*inputs, out)
    np.testing.assert_allclose(out, _reference(name, inputs), rtol=1e-4, atol=1e-4)


# -- tests ----------------------------------------------------------------------------------------

def test_factorizations():
    assert sorted(factorizations(12, 2)) == [(1, 12), (2, 6), (3, 4), (4, 3), (6, 2), (12, 1)]
    assert all(a * b * c * d == 24 for a, b, c, d in factorizations(24, 4))
    assert all(f[-1] <= 4 for f in factorizations(64, 3, 4))


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_sketches_replay_deterministically(name):
    build = WORKLOADS[name]
    sketches = generate_sketches(build(), LANES)
    assert sketches
    rng = random.Random(1)
    for index, sketch in enumerate(sketches):
        decisions = sketch.sample(rng)
        record = to_record(index, decisions)
        json.loads(record)
        idx, again = from_record(record)
        assert idx == index and again == decisions
        first, second = build(), build()
        s1 = generate_sketches(first, LANES)[idx].apply(first, again)
        s2 = generate_sketches(second, LANES)[idx].apply(second, again)
        assert s1.to_json() == s2.to_json()
        assert str(tl.lower(s1, first)) == str(tl.lower(s2, second))
        # the trace replays too
        s3 = tl.schedule_from_json(s1.to_json(), first)
        assert str(tl.lower(s3, first)) == str(tl.lower(s1, first))


def test_sketch_kinds():
    names = [sk.name for sk in generate_sketches(conv_bias_relu(), LANES)]
    assert any("tile" in n and "cache" in n and "fuse=bias_relu" in n for n in names)
    assert any("tile" in n and "cache" not in n for n in names)
    assert "pad_temp:simple" in names[0]          # padding stays a stage: vectorizable loads
    assert any("pad_temp:inline" in n for n in names)
    assert any("rfactor" in sk.name for sk in generate_sketches(softmax(), LANES))
    assert not any("rfactor" in sk.name for sk in generate_sketches(matmul(), LANES))
    # the packs of a blocked conv stay stages (a strided, gathering read otherwise)
    first = generate_sketches(conv_blocked(), LANES)[0].name
    assert "data_pack:simple" in first and "kernel_pack:simple" in first


def test_blocked_conv_register_tile_rows_are_output_columns():
    """The weights' vectors (16 output channels) are reused across the tile's rows: the rows
    are output columns (x), which the weights do not depend on, not the channel blocks."""
    from autotune.stage_analysis import _row_axis
    out = conv_blocked()[-1]
    conv = out.op.input_tensors[0]
    assert [iv.var.name for iv in conv.op.axis][_row_axis(conv.op)] == \
        conv.op.axis[3].var.name
    m = matmul()[-1]
    assert _row_axis(m.op) == 0


def _check_samples(name, samples, seed, max_unroll=512):
    tensors = WORKLOADS[name]()
    rng = random.Random(seed)
    for sketch in generate_sketches(tensors, LANES):
        for _ in range(samples):
            decisions = sketch.sample(rng)
            for key in decisions:  # 512-step unrolls take LLVM seconds to optimize
                if key.endswith(".unroll"):
                    decisions[key] = min(decisions[key], max_unroll)
            _check(name, tensors, sketch.apply(tensors, decisions))


@pytest.mark.parametrize("name,samples", [("matmul", 5), ("conv_bias_relu", 1),
                                          ("conv_blocked", 1),
                                          ("batch_matmul", 1), ("depthwise", 1),
                                          ("softmax", 1), ("layer_norm", 1)])
def test_sampled_candidates_are_correct(name, samples):
    _check_samples(name, samples, seed=7, max_unroll=64)


@pytest.mark.slow
@pytest.mark.parametrize("name,samples", [("matmul", 20), ("conv_bias_relu", 20),
                                          ("batch_matmul", 5), ("depthwise", 5),
                                          ("softmax", 5), ("layer_norm", 5)])
def test_every_sampled_candidate_of_a_small_space_is_correct(name, samples):
    _check_samples(name, samples, seed=11)


def test_mutate_keeps_validity():
    tensors = matmul()
    rng = random.Random(3)
    for sketch in generate_sketches(tensors, LANES):
        decisions = sketch.sample(rng)
        for _ in range(10):
            mutated = sketch.mutate(decisions, rng)
            assert sum(mutated[k] != decisions[k] for k in decisions) <= 1
            sketch.check(mutated)
            decisions = mutated
        _check("matmul", tensors, sketch.apply(tensors, decisions))


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_default_schedule_is_correct(name):
    tensors = WORKLOADS[name]()
    _check(name, tensors, default_schedule(tensors, LANES))


def test_default_schedule_beats_unscheduled_matmul():
    tensors = matmul(256, 256, 256)
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((256, 256)).astype(np.float32) for _ in range(2))
    times = []
    for s in (tl.create_schedule(tensors[-1]), default_schedule(tensors, LANES)):
        f = tl.build(s, tensors)
        c = np.zeros((256, 256), np.float32)
        f(a, b, c)
        np.testing.assert_allclose(c, a @ b, rtol=1e-3, atol=1e-3)
        times.append(f.time_evaluator(number=3, repeat=3)(a, b, c).median)
    print(f"matmul 256^3: unscheduled {times[0] * 1e3:.2f} ms, default sketch "
          f"{times[1] * 1e3:.2f} ms ({times[0] / times[1]:.1f}x)")
    assert times[0] / times[1] >= 5


def test_bad_records_and_decisions():
    tensors = matmul()
    sketch = generate_sketches(tensors, LANES)[0]
    with pytest.raises(UserError, match="missing"):
        sketch.apply(tensors, {})
    bad = sketch.default_decisions()
    bad[next(k for k in bad if ".tile." in k)] = [1, 1, 1, 7]
    with pytest.raises(UserError, match="not one of its options"):
        sketch.apply(tensors, bad)
    with pytest.raises(UserError, match="another computation"):
        sketch.apply(matmul(24, 20, 8), sketch.default_decisions())
    with pytest.raises(UserError, match="malformed"):
        from_record("{not json")


def test_consumer_fused_through_inlined_stages():
    """dense -> bias (inlined) -> relu: the relu carries the tiled loops of the dense."""
    X = tl.placeholder((6, 10), name="X")
    W = tl.placeholder((16, 10), name="W")
    B = tl.placeholder((16,), name="B")
    Y = nn.dense(X, W, B)
    Z = tl.compute(Y.shape, lambda i, j: tl.max(Y[i, j], 0.0), name="relu")
    tensors = [X, W, B, Z]
    sketches = generate_sketches(tensors, LANES)
    assert "fuse=relu" in sketches[0].name
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal([int(d) for d in t.shape]).astype(np.float32)
               for t in tensors[:3])
    for sketch in sketches:
        out = np.zeros((6, 16), np.float32)
        tl.build(sketch.apply(tensors, sketch.default_decisions()), tensors)(x, w, b, out)
        np.testing.assert_allclose(out, np.maximum(x @ w.T + b, 0), rtol=1e-4, atol=1e-4)


def test_stage_read_by_an_extern_call_is_not_inlined():
    from tensorlang.ops import blas
    A = tl.placeholder((4, 8), name="A")
    B = tl.placeholder((8, 5), name="B")
    A2 = tl.compute((4, 8), lambda i, j: A[i, j] * 2.0, name="A2")
    C = blas.matmul(A2, B)
    f = tl.build(default_schedule([C], LANES), [A, B, C])
    rng = np.random.default_rng(2)
    a = rng.standard_normal((4, 8)).astype(np.float32)
    b = rng.standard_normal((8, 5)).astype(np.float32)
    c = np.empty((4, 5), np.float32)
    f(a, b, c)
    np.testing.assert_allclose(c, (2 * a) @ b, rtol=1e-5, atol=1e-5)


def _stage_named(tensor, name):
    """The op of the stage ``name`` among ``tensor`` and its producers."""
    seen, todo = set(), [tensor]
    while todo:
        t = todo.pop()
        if t.op.name == name:
            return t.op
        if id(t.op) not in seen:
            seen.add(id(t.op))
            todo.extend(getattr(t.op, "input_tensors", []))
    raise KeyError(name)


def test_unpacking_consumer_carries_the_blocked_tiles():
    """conv2d_nchw[b, f, y, x] = blocked[b, f // 8, y, x, f % 8]: the NCHW result carries the
    register tiles of the blocked conv (f split in two), so no blocked buffer is written."""
    from autotune.stage_analysis import _carrier_map
    tensors = conv_blocked()
    out = tensors[-1]
    conv = _stage_named(out, "conv_blocked")
    assert _carrier_map(out.op, conv) == [(0, None, None), (1, 8, "outer"), (2, None, None),
                                          (3, None, None), (1, 8, "inner")]
    fused = [sk for sk in generate_sketches(tensors, LANES) if "fuse=conv2d_nchw" in sk.name]
    assert fused, [sk.name for sk in generate_sketches(tensors, LANES)]
    rng = random.Random(3)
    for sketch in fused:
        for decisions in [sketch.default_decisions()] + [sketch.sample(rng) for _ in range(2)]:
            decisions = {k: min(v, 64) if k.endswith(".unroll") else v
                         for k, v in decisions.items()}
            schedule = sketch.apply(tensors, decisions)
            text = str(tl.lower(schedule, tensors))
            assert not re.search(r"allocate conv_blocked\S*: .* in global", text), text
            _check("conv_blocked", tensors, schedule)


def test_carrier_map_needs_a_one_to_one_layout():
    from autotune.stage_analysis import _carrier_map
    A = tl.placeholder((4, 6), name="A")
    B = tl.placeholder((6, 8), name="B")
    r = tl.reduce_axis((0, 6), name="r")
    P = tl.compute((4, 8), lambda i, j: tl.sum(A[i, r] * B[r, j], axis=r), name="P")
    transposed = tl.compute((8, 4), lambda j, i: P[i, j], name="T")
    assert _carrier_map(transposed.op, P.op) == [(1, None, None), (0, None, None)]
    halved = tl.compute((8, 8), lambda i, j: P[i // 2, j], name="H")       # i // 2 only
    assert _carrier_map(halved.op, P.op) is None
    doubled = tl.compute((4, 8), lambda i, j: P[i, j] + P[i, j], name="D")  # two reads
    assert _carrier_map(doubled.op, P.op) is None
    # a transposing consumer carries the tiles too, and computes the same numbers
    tensors = [A, B, transposed]
    sketch = next(sk for sk in generate_sketches(tensors, LANES) if "fuse=T" in sk.name)
    a = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((6, 8)).astype(np.float32)
    out = np.zeros((8, 4), np.float32)
    tl.build(sketch.apply(tensors, sketch.default_decisions()), tensors)(a, b, out)
    np.testing.assert_allclose(out, (a @ b).T, rtol=1e-5, atol=1e-5)


def test_layout_stages_read_their_input_in_blocks():
    """An unpack (blocked -> plain) walks each block of its input while it is in cache, and a
    pack whose last axis gathers across rows defaults to plain (not gathered vector) loops."""
    from autotune.stage_analysis import _strided_last_axis, _unblocked_axes
    tensors = conv_blocked()
    out = tensors[-1]
    pack = _stage_named(out, "data_pack")
    assert _unblocked_axes(out.op) == {1: 8}
    assert _unblocked_axes(pack) == {}
    assert _strided_last_axis(pack) and _strided_last_axis(out.op)  # both gather across rows
    A = tl.placeholder((4, 8), name="A")
    assert not _strided_last_axis(tl.compute((4, 8), lambda i, j: A[i, j] * 2.0).op)
    assert _strided_last_axis(tl.compute((8, 4), lambda j, i: A[i, j]).op)
    sketch = next(sk for sk in generate_sketches(tensors, LANES)
                  if "conv2d_nchw:simple" in sk.name)
    names = [st.name for st in tl.create_schedule([out]).stages]
    index, pack_index = names.index("conv2d_nchw"), names.index("data_pack")
    decisions = sketch.default_decisions()
    assert decisions[f"{index}.order"] == "blocked"
    assert decisions[f"{pack_index}.vectorize"] is False
    for order in ("blocked", "output"):
        decisions[f"{index}.order"] = order
        schedule = sketch.apply(tensors, decisions)
        text = str(tl.lower(schedule, tensors))
        unpack = text[text.rindex("conv_blocked[") - 2000:]
        # blocked: the f % 8 loop (f.inner) sits inside the row loop y
        assert (unpack.find("for f.inner") > unpack.find("for y")) == (order == "blocked"), \
            text
        _check("conv_blocked", tensors, schedule)


def test_default_register_tile_fills_the_registers():
    """The default register tile aims at 8-12 accumulator vectors on AVX2 (16 registers),
    more on AVX-512 (32): a 7-wide row axis takes 7 rows of one vector, not 1 row of two."""
    from autotune.tiles import _register_tile
    assert _register_tile(16, 7, 8) == (8, 7)      # (columns, rows): 7 accumulators, not 2
    assert _register_tile(16, 56, 8) == (16, 4)    # 8
    assert _register_tile(1024, 1024, 8) == (16, 4)
    assert _register_tile(64, 12, 8) == (16, 6)    # 12
    assert _register_tile(16, 56, 16) == (16, 14)  # AVX-512: 14 of its 32 registers
    assert _register_tile(3, 5, 8) == (1, 5)       # nothing divides: scalar columns
    # a blocked conv on a 7 x 7 output: the default schedule is correct with that tile
    data = tl.placeholder((1, 2, 7, 7, 4), name="data")
    kernel = tl.placeholder((2, 2, 3, 3, 4, 8), name="kernel")
    out = nn.conv2d_nchwc(data, kernel, padding=1)
    tensors = [data, kernel, out]
    schedule = default_schedule([out], LANES)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 7, 7, 4)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3, 4, 8)).astype(np.float32)
    got = np.zeros((1, 2, 7, 7, 8), np.float32)
    tl.build(schedule, tensors)(x, w, got)
    # back to NCHW / OIHW and the plain reference
    x4 = x.transpose(0, 1, 4, 2, 3).reshape(1, 8, 7, 7)
    w4 = w.transpose(0, 5, 1, 4, 2, 3).reshape(16, 8, 3, 3)
    want = _reference("conv_blocked", [x4, w4])
    np.testing.assert_allclose(got.transpose(0, 1, 4, 2, 3).reshape(1, 16, 7, 7), want,
                               rtol=1e-4, atol=1e-4)
    text = str(tl.lower(schedule, tensors))
    assert "float32[1, 1, 1, 7, 8] in local" in text, text  # 7 rows x one 8-lane vector


def test_weights_already_blocked_are_not_copied_by_default():
    """A pre-packed weight (the graph's NCHWc convs) is read in place by the default schedule;
    a matmul's B, whose panels are strided, is still packed first."""
    from autotune.stage_analysis import _panel_in_place
    data = tl.placeholder((1, 2, 6, 6, 8), name="data")
    kernel = tl.placeholder((2, 2, 3, 3, 8, 8), name="kernel")
    out = nn.conv2d_nchwc(data, kernel, padding=1)
    assert _panel_in_place(out.op, kernel, 2 * LANES)
    text = str(tl.lower(default_schedule([out], LANES), [data, kernel, out]))
    assert "kernel.global" not in text, text
    sketches = generate_sketches([out], LANES)
    assert any("pack" in sk.name for sk in sketches[1:])  # still in the space, not first
    A, B, C = matmul(m=16, n=64, k=16)
    assert not _panel_in_place(C.op, B, 2 * LANES)


def max_pool(n=1, c=3, h=9, w=19):
    data = tl.placeholder((n, c, h, w), name="data")
    return [data, nn.pool2d(data, kernel=3, stride=2, padding=1)]


def test_pooling_accumulates_vectors_of_outputs():
    """Max pooling: vectors of outputs along the row accumulate in a local buffer, parallel
    over the outer axes only (not one fused loop over every output); sampled variants agree
    with NumPy too."""
    from autotune.stage_analysis import _lanes_along_rows
    tensors = max_pool()
    data, out = tensors
    assert _lanes_along_rows(out.op)
    X = tl.placeholder((4, 32), name="X")
    k = tl.reduce_axis((0, 32), name="k")
    row_sums = tl.compute((4,), lambda i: tl.sum(X[i, k], axis=k), name="row_sums")
    assert not _lanes_along_rows(row_sums.op)  # its lanes would come from 4 rows
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 3, 9, 19)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    want = np.full((1, 3, 5, 10), -np.inf, np.float32)
    for ky in range(3):
        for kx in range(3):
            want = np.maximum(want, padded[:, :, ky:ky + 9:2, kx:kx + 19:2])
    schedule = default_schedule([out], LANES)
    text = str(tl.lower(schedule, tensors))
    # over n * c * rows (15), not every output; vectors of 2 outputs (10 = 5 x 2)
    assert "in local" in text and "parallel(0, 15)" in text, text
    got = np.zeros((1, 3, 5, 10), np.float32)
    tl.build(schedule, tensors)(x, got)
    np.testing.assert_allclose(got, want)
    r = random.Random(2)
    for sketch in generate_sketches([out], LANES):
        for _ in range(3):
            got = np.zeros((1, 3, 5, 10), np.float32)
            tl.build(sketch.apply(tensors, sketch.sample(r)), tensors)(x, got)
            np.testing.assert_allclose(got, want)


def test_elementwise_stages_fuse_few_parallel_loops():
    """An elementwise output fuses only the outer loops that give 64 iterations (each fused
    loop costs an index division per iteration), and stays correct."""
    X = tl.placeholder((2, 64, 9, 9), name="X")
    Y = tl.compute(X.shape, lambda n, c, h, w: tl.max(X[n, c, h, w], 0.0), name="Y")
    schedule = default_schedule([Y], LANES)
    text = str(tl.lower(schedule, [X, Y]))
    assert "parallel(0, 128)" in text, text  # n * c, not n * c * h (1152)
    x = np.random.default_rng(1).standard_normal((2, 64, 9, 9)).astype(np.float32)
    y = np.zeros_like(x)
    tl.build(schedule, [X, Y])(x, y)
    np.testing.assert_array_equal(y, np.maximum(x, 0))


def test_short_rows_of_an_elementwise_stage_are_fused_for_full_vectors():
    """A bias add on a 14 x 14 map: rows of 14 allow only 2-lane vectors, so the default
    schedule fuses the last two axes (196 = 4 x 49) and vectorizes 4 lanes; a stage that reads
    the rows transposed keeps its rows."""
    A = tl.placeholder((1, 6, 14, 14), name="A")
    b = tl.placeholder((6, 1, 1), name="b")
    out = tl.compute((1, 6, 14, 14), lambda n, c, i, j: A[n, c, i, j] + b[c, 0, 0], name="out")
    text = str(tl.lower(default_schedule([out], LANES), [A, b, out]))
    assert "ramp(" in text and ", 1, 4)]" in text, text
    a = np.random.default_rng(0).standard_normal((1, 6, 14, 14)).astype(np.float32)
    bias = np.random.default_rng(1).standard_normal((6, 1, 1)).astype(np.float32)
    got = np.zeros_like(a)
    tl.build(default_schedule([out], LANES), [A, b, out])(a, bias, got)
    np.testing.assert_allclose(got, a + bias, rtol=1e-6)
    T = tl.compute((1, 6, 14, 14), lambda n, c, i, j: A[n, c, j, i] + b[c, 0, 0], name="T")
    text = str(tl.lower(default_schedule([T], LANES), [A, b, T]))
    assert ", 1, 4)]" not in text, text


# -- Winograd convolutions: fixed transform schedules, a searched product -----------------------

def _winograd_conv(bias_relu: bool):
    """A blocked Winograd F(4x4, 3x3) conv (16 channels in, 32 out, 12 x 12), with bias + relu
    fused after it when asked; returns (argument tensors, reference function)."""
    from tensorlang.ops.winograd import conv2d_winograd_nchwc
    X = tl.placeholder((1, 1, 12, 12, 16), name="X")
    U = tl.placeholder((36, 16, 32), name="U")
    Y = conv2d_winograd_nchwc(X, U, tile=4, padding=1, out_block=16)
    args = [X, U]
    if bias_relu:
        B = tl.placeholder((2, 16), name="B")
        Y = tl.compute(Y.shape, lambda b, k, y, x, c: tl.max(Y[b, k, y, x, c] + B[k, c], 0.0),
                       name="bias_relu")
        args.append(B)
    return args + [Y]


def _winograd_reference(x, w, bias):
    """NumPy: blocked x [1, 1, 12, 12, 16], OIHW w [32, 16, 3, 3] -> blocked [1, 2, 12, 12, 16]."""
    xp = np.pad(x[0, 0].transpose(2, 0, 1).astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((32, 12, 12))
    for i in range(3):
        for j in range(3):
            out += np.einsum("chw,kc->khw", xp[:, i:i + 12, j:j + 12], w[:, :, i, j])
    if bias is not None:
        out = np.maximum(out + bias.reshape(32, 1, 1), 0)
    return out.reshape(1, 2, 16, 12, 12).transpose(0, 1, 3, 4, 2)


@pytest.mark.parametrize("bias_relu", [False, True])
def test_winograd_transforms_keep_their_schedules_and_only_the_product_is_searched(bias_relu):
    from tensorlang.ops.winograd import winograd_weight
    tensors = _winograd_conv(bias_relu)
    sketches = generate_sketches([tensors[-1]], vector_lanes=8)
    assert sketches
    for sk in sketches:
        assert "winograd_pad:winograd,part=pad" in sk.name
        assert "winograd_input:winograd,part=input" in sk.name
        assert "winograd_product:tile" in sk.name
        # the output transform's loops are carried by the fused bias + relu when there is one
        carrier = "bias_relu" if bias_relu else "winograd_output"
        assert f"{carrier}:winograd,part=output,tile=4" in sk.name, sk.name
        # every knob is the product's: the transforms have nothing to search
        product = next(i for i, kind, _ in sk.plans if kind == "tile")
        assert sk.knobs and all(name.startswith(f"{product}.") for name in sk.knobs)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 1, 12, 12, 16), dtype=np.float32)
    w = rng.standard_normal((32, 16, 3, 3), dtype=np.float32)
    bias = rng.standard_normal((2, 16), dtype=np.float32) if bias_relu else None
    want = _winograd_reference(x, w, bias)
    inputs = [x, winograd_weight(w, tile=4)] + ([bias] if bias_relu else [])
    pick = random.Random(2)
    for sk in sketches:
        for decisions in (sk.default_decisions(), sk.sample(pick)):
            f = tl.build(sk.apply(tensors, decisions), tensors)
            out = np.zeros(want.shape, np.float32)
            f(*inputs, out)
            np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4,
                                       err_msg=f"{sk.name} {decisions}")
