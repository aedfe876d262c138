"""The CUDA backend without a GPU: CUDA C from GPU schedules, NVRTC to sm_90 / sm_80 cubins,
barrier placement, the GPU verifier, and the GPU-bound loop IR against NumPy in the
interpreter. One test runs a kernel on the card when there is one."""

import numpy as np
import pytest

import tensorlang as tl
from tensorlang import expr as E
from tensorlang.errors import ScheduleError, UnsupportedOpError, UserError
from tensorlang.ir import stmt as S
from tensorlang.ir.buffer import decl_buffer
from tensorlang.ir.function import PrimFunc
from tensorlang.ir.interpreter import run as interpret
from tensorlang.lower.gpu_sync import insert_barriers
from tensorlang.lower.verify_gpu import barrier, verify_gpu
from tensorlang.runtime import cuda as cuda_rt

import codegen.cuda as cc
from codegen.cuda.source_expr import float_literal
from cuda_cases import (CASES, RNG, _bind, _inputs, _private_cache, _rand,  # noqa: F401
                        _reference, _softmax_ref, elementwise_schedule, injective,
                        matmul_schedule, row_reduce_schedule, softmax_block_schedule,
                        softmax_schedule)



# -- CUDA C and NVRTC ---------------------------------------------------------------------------

nvrtc = pytest.importorskip("cuda.bindings.nvrtc",
                            reason="cuda-python (the 'cuda' extra) is needed to compile CUDA C")


@pytest.mark.parametrize("name", sorted(CASES))
def test_source_compiles_to_sm90_and_sm80_cubins(name):
    s, args = CASES[name][0]()
    module = tl.build(s, args, target="cuda -arch=sm_90")
    source = module.get_source()
    assert '__global__' in source and 'extern "C"' in source
    for arch in ("sm_90", "sm_80"):
        cubin = cc.compile_cuda(source, arch)
        assert cubin[:4] == b"\x7fELF"  # machine code, not PTX
    assert module.get_source("cubin")[:4] == b"\x7fELF"


@pytest.mark.parametrize("name", sorted(CASES))
def test_gpu_loop_ir_matches_numpy_in_interpreter(name):
    s, args = CASES[name][1]()
    func, _ = cc.lower_for_gpu(tl.lower(s, args))  # with its barriers (no-ops here)
    inputs = _inputs(args)
    out = np.full([int(d) for d in args[-1].shape], np.nan, np.float32)
    interpret(func, *inputs, out)
    np.testing.assert_allclose(out, _reference(name, inputs), rtol=1e-4, atol=1e-5)


def test_matmul_source_shape():
    s, args = matmul_schedule(256, 64, 16, 8)
    module = tl.build(s, args, target="cuda")
    src = module.get_source()
    kernel = module.kernels[0]
    assert len(module.kernels) == 1
    assert kernel.shared_bytes == 2 * 64 * 8 * 4
    assert [str(e) for e in kernel.launch.extents["blockIdx.x"]] == ["4"]
    assert "__launch_bounds__(256)" in src
    assert "__shared__ __align__(16) float A_shared[512];" in src
    assert "= (int)threadIdx.x;" in src and "= (int)blockIdx.y;" in src
    assert "#pragma unroll" in src
    assert "const float* __restrict__ A" in src and "float* __restrict__ C" in src


def test_barriers_go_between_shared_writes_and_reads_and_at_the_loop_end():
    s, args = matmul_schedule(256, 64, 16, 8)
    src = tl.build(s, args, target="cuda").get_source()
    body = src[src.index("k_outer"):]
    lines = [ln.strip() for ln in body.splitlines()]
    syncs = [i for i, ln in enumerate(lines) if ln == "__syncthreads();"]
    assert len(syncs) == 2
    first_store_b = max(i for i, ln in enumerate(lines) if ln.startswith("B_shared["))
    first_read = min(i for i, ln in enumerate(lines) if "A_shared[" in ln and
                     not ln.startswith("A_shared["))
    # after both cooperative loads, before the compute
    assert first_store_b < syncs[0] < first_read
    # the last statement of the k-loop: the next iteration overwrites the tiles
    assert syncs[1] > first_read and lines[syncs[1] + 1] == "}"


def test_no_barrier_without_shared_memory():
    for make in (lambda: elementwise_schedule(64, 64), lambda: softmax_schedule(64, 64)):
        s, args = make()
        func = tl.lower(s, args)
        assert insert_barriers(func) is func
        assert "__syncthreads" not in tl.build(s, args, target="cuda").get_source()


def test_multi_stage_function_launches_one_kernel_per_root_stage():
    s, args = softmax_schedule(1024, 1000)
    module = tl.build(s, args, target="cuda")
    assert [k.name for k in module.kernels] == [f"main_{i}_kernel" for i in range(4)]
    assert len(module._source.scratch) == 3  # row_max, ex, row_sum live in global scratch


def test_vector_accesses_become_float4():
    s, args = elementwise_schedule(512, 512, vector=4)
    module = tl.build(s, args, target="cuda")
    src = module.get_source()
    assert "*(const float4*)(x + " in src and "*(float4*)(out + " in src
    # a[j] is a contiguous vector of 4 too
    assert "*(const float4*)(a + " in src
    assert set(module.kernels[0].align.values()) == {16}


def test_unaligned_vector_access_is_scalarized():
    x = tl.placeholder((8, 6), name="x")  # rows of 6: row starts are not multiples of 4
    y = tl.compute((8, 4), lambda i, j: x[i, j + 1] * 2.0, name="y")
    s = tl.create_schedule(y)
    injective(s, y, threads=8, vector=4)
    src = tl.build(s, [x, y], target="cuda").get_source()
    assert "float4*)(x" not in src        # x's offset i*6 + 1 is not a multiple of 4
    assert "*(float4*)(y + " in src       # y's offset i*4 is


def test_floor_division_semantics_in_source():
    n = tl.var("n")
    A = tl.placeholder((n,), "int32", name="A")
    B = tl.compute((n,), lambda i: tl.floordiv(A[i], 3) + tl.floormod(A[i], -2)
                   + tl.truncdiv(A[i], 4), name="B")
    s = tl.create_schedule(B)
    injective(s, B, threads=32)
    module = tl.build(s, [A, B], target="cuda -arch=sm_80")
    src = module.get_source()
    assert "tl_floordiv(" in src and "tl_floormod(" in src
    assert module.get_source("cubin")[:4] == b"\x7fELF"
    assert "int n" in src  # the symbolic extent is a kernel parameter
    func, _ = cc.lower_for_gpu(tl.lower(s, [A, B]))
    a = RNG.integers(-50, 50, size=37).astype(np.int32)
    b = np.zeros(37, np.int32)
    interpret(func, a, b)
    np.testing.assert_array_equal(b, a // 3 + a % -2 + np.trunc(a / 4).astype(np.int32))


def test_float16_and_math_compile_without_cuda_headers():
    A = tl.placeholder((64,), "float16", name="A")
    B = tl.compute((64,), lambda i: (tl.sqrt(tl.abs(A[i])) + tl.round(A[i]) * tl.sigmoid(A[i]))
                   .astype("float32").astype("float16"), name="B")
    s = tl.create_schedule(B)
    injective(s, B, threads=32)
    src = tl.build(s, [A, B], target="cuda -arch=sm_90").get_source()
    assert "#include" not in src and "unsigned short* __restrict__ B" in src
    assert "rintf(" in src and "tl_f2h(" in src


def test_float_literals_round_trip():
    assert float_literal(0.5, "float32") == "0.5f"
    assert float_literal(0.1, "float32") == "0.1f"
    assert float_literal(float("inf"), "float32") == "(__int_as_float(0x7f800000))"
    assert float_literal(1e300, "float64") == "1e+300"


def test_nvrtc_errors_show_log_and_lines():
    with pytest.raises(cc.CompileError, match=r"(?s)undefined.*>>\s+2 \|"):
        cc.compile_cuda('extern "C" __global__ void f(float* a) {\n  a[0] = nope;\n}\n', "sm_90")


def test_cubins_are_cached_in_memory_and_on_disk(tmp_path):
    from codegen.cuda import nvrtc as nv
    src = 'extern "C" __global__ void g(float* a) { a[threadIdx.x] *= 2.0f; }\n'
    first = cc.compile_cuda(src, "sm_80")
    assert list((tmp_path / "cache" / "cuda").glob("*.cubin"))
    nv.clear_cache()
    assert cc.compile_cuda(src, "sm_80") == first


# -- schedules a GPU cannot run -----------------------------------------------------------------

def test_unbound_loops_are_refused_naming_stage_and_axis():
    A = tl.placeholder((64, 64), name="A")
    B = tl.compute((64, 64), lambda i, j: A[i, j] + 1.0, name="B")
    s = tl.create_schedule(B)
    with pytest.raises(ScheduleError, match=r"stage B: loop i .*not inside any blockIdx"):
        tl.build(s, [A, B], target="cuda")
    # bound outer loop but an unbound one around it
    s = tl.create_schedule(B)
    i, j = s[B].op.axis
    _bind(s[B], j, "threadIdx.x")
    with pytest.raises(ScheduleError, match=r"stage B: loop i"):
        tl.build(s, [A, B], target="cuda")


def test_too_many_threads_are_refused():
    A = tl.placeholder((64, 64), name="A")
    B = tl.compute((64, 64), lambda i, j: A[i, j] + 1.0, name="B")
    s = tl.create_schedule(B)
    i, j = s[B].op.axis
    _bind(s[B], i, "threadIdx.y")
    _bind(s[B], j, "threadIdx.x")
    with pytest.raises(ScheduleError, match=r"stage B: 4096 threads per block.*1024"):
        tl.build(s, [A, B], target="cuda")


def test_too_much_shared_memory_is_refused():
    s, args = matmul_schedule(512, 128, 16, 64)  # 2 * 128 * 64 * 4 B = 64 KB
    with pytest.raises(ScheduleError, match=r"65536 bytes of shared memory.*A.shared"):
        tl.build(s, args, target="cuda")


def test_divergent_barrier_is_refused():
    tx = tl.var("tx")
    sh = decl_buffer((64,), "float32", "S", scope="shared")
    out = decl_buffer((64,), "float32", "out")
    store = S.BufferStore(sh, E.FloatImm(1.0, "float32"), (tx,))
    read = S.BufferStore(out, E.BufferLoad(sh, (63 - tx,), "float32"), (tx,))
    body = S.seq(store, S.IfThenElse(tx < 32, barrier()), read)
    kernel = S.For(tx, E.IntImm(0, "int32"), E.IntImm(64, "int32"), S.THREAD_BINDING,
                   S.Allocate(sh, body), "threadIdx.x")
    func = PrimFunc("f", (out,), kernel)
    with pytest.raises(ScheduleError, match=r"barrier.*divergent.*tx < 32"):
        verify_gpu(func)
    # the same barrier outside the condition is fine
    ok = S.For(tx, E.IntImm(0, "int32"), E.IntImm(64, "int32"), S.THREAD_BINDING,
               S.Allocate(sh, S.seq(store, barrier(), read)), "threadIdx.x")
    verify_gpu(PrimFunc("f", (out,), ok))


def test_shared_exchange_under_thread_dependent_loop_is_refused():
    tx, i = tl.var("tx"), tl.var("i")
    sh = decl_buffer((64,), "float32", "S", scope="shared")
    out = decl_buffer((64,), "float32", "out")
    inner = S.seq(S.BufferStore(sh, E.FloatImm(1.0, "float32"), (tx,)),
                  S.BufferStore(out, E.BufferLoad(sh, (63 - tx,), "float32"), (tx,)))
    loop = S.For(i, E.IntImm(0, "int32"), tx, S.SERIAL, inner)
    kernel = S.For(tx, E.IntImm(0, "int32"), E.IntImm(64, "int32"), S.THREAD_BINDING,
                   S.Allocate(sh, loop), "threadIdx.x")
    with pytest.raises(ScheduleError, match=r"divergent control flow \(loop i has bounds"):
        insert_barriers(PrimFunc("f", (out,), kernel))


def test_same_tag_nested_with_larger_extent_is_refused():
    tx1, tx2 = tl.var("t1"), tl.var("t2")
    out = decl_buffer((64,), "float32", "out")
    inner = S.For(tx2, E.IntImm(0, "int32"), E.IntImm(64, "int32"), S.THREAD_BINDING,
                  S.BufferStore(out, E.FloatImm(0.0, "float32"), (tx2,)), "threadIdx.x")
    outer = S.For(tx1, E.IntImm(0, "int32"), E.IntImm(32, "int32"), S.THREAD_BINDING, inner,
                  "threadIdx.x")
    with pytest.raises(ScheduleError, match=r"t2 bound to threadIdx.x .*nested inside loop t1"):
        verify_gpu(PrimFunc("f", (out,), outer))


def test_parallel_loop_and_numpy_argument_errors():
    A = tl.placeholder((64,), name="A")
    B = tl.compute((64,), lambda i: A[i] + 1.0, name="B")
    s = tl.create_schedule(B)
    bx, tx = s[B].split(B.op.axis[0], factor=32)
    _bind(s[B], bx, "blockIdx.x")
    s[B].parallel(tx)
    with pytest.raises(UnsupportedOpError, match=r"parallel"):
        tl.build(s, [A, B], target="cuda")
    with pytest.raises(UserError, match="sm_XX"):
        tl.build(tl.create_schedule(B), [A, B], target="cuda -arch=compute_90")


# -- on the card --------------------------------------------------------------------------------

gpu = pytest.mark.skipif(not cuda_rt.available(),
                         reason=f"no CUDA GPU/driver: {cuda_rt.unavailable_reason()}")


@gpu
@pytest.mark.parametrize("name", sorted(CASES))
def test_kernels_match_numpy_on_the_gpu(name):
    s, args = CASES[name][0]()
    module = tl.build(s, args, target="cuda")
    inputs = _inputs(args)
    out = tl.nd.empty([int(d) for d in args[-1].shape], "float32", device="cuda")
    module(*[tl.nd.array(a, device="cuda") for a in inputs], out)
    tol = 1e-3 if name in ("matmul", "conv2d") else 1e-4
    np.testing.assert_allclose(out.numpy(), _reference(name, inputs), rtol=tol, atol=tol)
    timing = module.time_evaluator(number=3, repeat=2)(
        *[tl.nd.array(a, device="cuda") for a in inputs], out)
    assert len(timing.results) == 2 and timing.mean > 0


@gpu
def test_torch_cuda_tensors_are_used_in_place():
    torch = pytest.importorskip("torch", reason="PyTorch is needed for DLPack exchange")
    s, args = elementwise_schedule(256, 128)
    module = tl.build(s, args, target="cuda")
    x, a, r = (torch.randn(256, 128, device="cuda"), torch.randn(128, device="cuda"),
               torch.randn(256, 128, device="cuda"))
    out = torch.empty(256, 128, device="cuda")
    module(x, a, r, out)
    torch.cuda.synchronize()
    want = torch.tanh(torch.clamp(x * a, min=0)) + torch.exp(r * 0.5) - torch.floor(r)
    np.testing.assert_allclose(out.cpu().numpy(), want.cpu().numpy(), rtol=1e-5, atol=1e-5)


@gpu
def test_numpy_arguments_are_refused_on_the_gpu():
    s, args = elementwise_schedule(64, 64)
    module = tl.build(s, args, target="cuda")
    arrays = [_rand(64, 64), _rand(64), _rand(64, 64), np.zeros((64, 64), np.float32)]
    with pytest.raises(UserError, match=r"argument 'x' \(#0\) is a NumPy array"):
        module(*arrays)


def test_buffers_over_2_31_elements_index_with_64_bits():
    A = tl.placeholder((65536, 32768), name="A")  # 2**31 elements
    B = tl.compute((65536, 32768), lambda i, j: A[i, j] * 2.0, name="B")
    s = tl.create_schedule(B)
    i, j = B.op.axis
    jo, ji = s[B].split(j, factor=256)
    _bind(s[B], i, "blockIdx.x")
    _bind(s[B], ji, "threadIdx.x")
    src = tl.build(s, [A, B], target="cuda -arch=sm_90").get_source()
    assert "B[(long long)i * 32768LL + " in src


# -- the host side of a launch, with a stand-in for the driver ---------------------------------

class _FakeFunction:
    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def launch(self, grid, block, args, shared_bytes=0, stream=None):
        self.calls.append((self.name, tuple(grid), tuple(block), list(args)))


class _FakeDriver:
    """Just enough of tensorlang.runtime.cuda to launch: records the launches."""

    def __init__(self):
        self.calls, self.loaded = [], []

    def available(self):
        return True

    def require(self, what=""):
        return self

    def device_properties(self, device_id=None):
        class P:
            arch, max_threads_per_block, max_shared_per_block = "sm_80", 1024, 48 * 1024
        return P()

    def load_module(self, cubin):
        assert cubin[:4] == b"\x7fELF"
        self.loaded.append(cubin)
        calls = self.calls

        class M:
            def function(self, name):
                return _FakeFunction(name, calls)
        return M()


def _fake_array(shape, dtype="float32", address=0x10000):
    from tensorlang.runtime.module import _Array
    return _Array(address, tuple(shape), dtype, None, True, None)


def test_launch_configuration_and_arguments_with_a_fake_driver(monkeypatch):
    import codegen.cuda.module as cm
    fake = _FakeDriver()
    monkeypatch.setattr(cuda_rt, "available", fake.available)
    monkeypatch.setattr(cuda_rt, "require", fake.require)
    monkeypatch.setattr(cuda_rt, "device_properties", fake.device_properties)
    monkeypatch.setattr(cuda_rt, "load_module", fake.load_module)
    monkeypatch.setattr(cm, "_as_cuda_array", lambda obj, spec, pos: obj)
    n = tl.var("n")
    A = tl.placeholder((n, 64), name="A")
    B = tl.compute((n, 64), lambda i, j: A[i, j] * 2.0, name="B")
    s = tl.create_schedule(B)
    injective(s, B, threads=128)
    module = tl.build(s, [A, B], target="cuda")
    a, b = _fake_array((10, 64), address=0x1000), _fake_array((10, 64), address=0x9000)
    module(a, b)
    ((name, grid, block, args),) = fake.calls
    assert name == "main_kernel" and block == (128, 1, 1)
    assert grid == (5, 1, 1)  # ceil(10 * 64 / 128)
    assert args == [(0x1000, "ptr"), (0x9000, "ptr"), (10, "int32")]
    with pytest.raises(tl.ShapeError, match=r"B\.shape\[0\]"):
        module(a, _fake_array((11, 64), address=0x9000))
    with pytest.raises(UserError, match="shares memory"):
        module(a, _fake_array((10, 64), address=0x1000))
    with pytest.raises(UserError, match="takes 2 arguments"):
        module(a)


def test_scratch_buffers_and_kernel_order_with_a_fake_driver(monkeypatch):
    import codegen.cuda.module as cm
    fake = _FakeDriver()
    for name in ("available", "require", "device_properties", "load_module"):
        monkeypatch.setattr(cuda_rt, name, getattr(fake, name))
    monkeypatch.setattr(cm, "_as_cuda_array", lambda obj, spec, pos: obj)

    class Scratch:
        data_ptr = 0x40000
    made = []
    import tensorlang.runtime.ndarray as nd
    monkeypatch.setattr(nd, "empty", lambda shape, dtype, device: made.append(
        (shape, dtype, device)) or Scratch())
    s, args = softmax_schedule(64, 100)
    module = tl.build(s, args, target="cuda")
    module(_fake_array((64, 100), address=0x1000), _fake_array((64, 100), address=0x20000))
    assert [c[0] for c in fake.calls] == [f"main_{i}_kernel" for i in range(4)]
    assert sorted(made) == sorted([((64,), "float32", "cuda"), ((6400,), "float32", "cuda"),
                                   ((64,), "float32", "cuda")])
    assert fake.calls[0][1:3] == ((2, 1, 1), (32, 1, 1))
    assert fake.calls[1][1:3] == ((100, 1, 1), (64, 1, 1))


def test_unsupported_cross_thread_reduction_is_refused():
    x = tl.placeholder((64, 256), name="x")
    k = tl.reduce_axis((0, 256), name="k")
    decay = tl.comm_reducer(lambda a, b: a * 0.5 + b, lambda t: tl.const(0.0, t), name="decay")
    total = tl.compute((64,), lambda i: decay(x[i, k], axis=k), name="total")
    s = tl.create_schedule(total)
    _bind(s[total], total.op.axis[0], "blockIdx.x")
    ko, ki = s[total].split(k, factor=32)
    _bind(s[total], ki, "threadIdx.x")
    with pytest.raises(ScheduleError, match=r"stage total: loop k.inner bound to threadIdx.x"
                                            r".*cross-thread reduction"):
        tl.build(s, [x, total], target="cuda")


@pytest.mark.parametrize("reducer,inside,shape", [
    (tl.sum, True, (3, 37, 8)), (tl.max, True, (2, 10, 6)), (tl.sum, False, (4, 64, 16)),
    (tl.min, False, (3, 20, 5))])
def test_cross_thread_reduction_in_the_interpreter(reducer, inside, shape):
    rows, cols, threads = shape
    s, args = row_reduce_schedule(rows, cols, threads, reducer, inside)
    func, _ = cc.lower_for_gpu(tl.lower(s, args))
    x = _rand(rows, cols)
    out = np.full(rows, np.nan, np.float32)
    interpret(func, x, out)
    want = {tl.sum: x.sum(1), tl.max: x.max(1), tl.min: x.min(1)}[reducer]
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_cross_thread_reduction_source():
    s, args = row_reduce_schedule(1024, 4096, 256, tl.sum)
    module = tl.build(s, args, target="cuda -arch=sm_80")
    src = module.get_source()
    assert "__shared__ __align__(16) float total_red_shared[256];" in src
    assert src.count("__syncthreads();") == 1 + 8 + 1  # partials, 8 tree steps, the total
    assert "if (k_inner_red_out == 0) {" in src
    s, args = softmax_block_schedule(1024, 4096, 256)
    module = tl.build(s, args, target="cuda -arch=sm_90")
    assert len(module.kernels) == 1
    func, _ = cc.lower_for_gpu(tl.lower(*softmax_block_schedule(3, 37, 8)))
    x = _rand(3, 37)
    out = np.full((3, 37), np.nan, np.float32)
    interpret(func, x, out)
    np.testing.assert_allclose(out, _softmax_ref(x), rtol=1e-5, atol=1e-6)


def test_local_stage_shared_between_threads_is_refused():
    A = tl.placeholder((64, 64), name="A")
    B = tl.compute((64, 64), lambda i, j: A[i, j] * 2.0, name="B")
    C = tl.compute((64, 64), lambda i, j: B[i, 63 - j] + 1.0, name="C")
    s = tl.create_schedule(C)
    i, j = C.op.axis
    _bind(s[C], i, "blockIdx.x")
    _bind(s[C], j, "threadIdx.x")
    s[B].set_scope("local")
    s[B].compute_at(s[C], i)
    _bind(s[B], s[B].op.axis[1], "threadIdx.x")
    with pytest.raises(ScheduleError, match=r"stage B is in 'local' memory.*threadIdx.x"):
        tl.build(s, [A, C], target="cuda")
