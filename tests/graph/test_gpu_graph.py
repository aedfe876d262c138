"""graph.build(mod, target="cuda"): whole models compiled to CUDA kernels and run on the GPU.

Without a GPU (CI): a small model (conv + bias + relu + pool + dense + softmax) compiles to CUDA C
for every group; the loop IR of those kernels, run by the interpreter one thread after another,
matches ONNX Runtime; ``lib.run`` says clearly that it needs a GPU. With a GPU: that model and
the light SqueezeNet / ResNet-50 (random weights) against ONNX Runtime on the CPU, NumPy and
torch inputs, the memory plan and the profile.
"""
import numpy as np
import pytest

from graph_onnx_util import helper, make_model, run_ort  # noqa: E402  (skips without onnx)

import graph  # noqa: E402
from graph.executor import value_key  # noqa: E402
from graph.gpu import plan_slots, vendor_plan  # noqa: E402
from graph.ir import Constant  # noqa: E402
from tensorlang.errors import CudaUnavailableError, UserError  # noqa: E402
from tensorlang.runtime import cuda  # noqa: E402

needs_gpu = pytest.mark.skipif(not cuda.available(),
                               reason=f"no CUDA GPU/driver: {cuda.unavailable_reason()}")


def small_model(size: int = 6):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    b = (rng.standard_normal(8) * 0.1).astype(np.float32)
    flat = 8 * (size // 2) ** 2
    fw = (rng.standard_normal((10, flat)) * 0.1).astype(np.float32)
    fb = (rng.standard_normal(10) * 0.1).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], transB=1),
             helper.make_node("Softmax", ["g"], ["y"], axis=1)]
    return make_model(nodes, [("x", (1, 3, size, size), "float32")],
                      [("y", (1, 10), "float32")], {"w": w, "b": b, "fw": fw, "fb": fb})


def _input(shape, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


@pytest.fixture(scope="module")
def small():
    model = small_model()
    return model, graph.build(graph.from_onnx(model), target="cuda", vendor="none")


def test_cuda_build_gives_cuda_source_for_every_group(small):
    _, lib = small
    assert lib.device == "cuda" and "device='cuda'" in repr(lib)
    sources = lib.sources()
    assert list(sources) == lib.groups and len(sources) == lib.num_kernels == 5
    for name, text in sources.items():
        assert "__global__" in text, name
        assert "tl_blas" not in text, name  # no CPU BLAS extern inside a GPU kernel
    assert any("conv2d" in n for n in sources) and any("dense" in n for n in sources)
    cubins = lib.sources("cubin")
    assert all(isinstance(c, bytes) and c[:4] == b"\x7fELF" for c in cubins.values())


def test_cuda_kernels_interpreted_match_onnxruntime(small):
    """The loop IR of every group's CUDA kernels (thread loops run one after another by the
    interpreter) computes what ONNX Runtime does."""
    from tensorlang.ir import interpreter
    model, lib = small
    x = _input((1, 3, 6, 6))
    env = {id(lib._params[0]): x}

    def value(node):
        return np.ascontiguousarray(node.value if isinstance(node, Constant)
                                    else env[value_key(node)])
    for step in lib._steps:
        outs = [np.empty(o.type.shape, o.type.dtype) for o in step.outputs]
        interpreter.run(step.kernel.func, *[value(a) for a in step.inputs], *outs)
        env.update({value_key(o): a for o, a in zip(step.outputs, outs)})
    got = env[value_key(lib._outputs[0])]
    want = run_ort(model, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(cuda.available(), reason="checks the error raised without a GPU")
def test_run_without_gpu_says_so(small):
    _, lib = small
    with pytest.raises(CudaUnavailableError, match="target 'cuda'.*CUDA runtime"):
        lib.run(_input((1, 3, 6, 6)))


def test_cuda_memory_plan_reuses_slots_and_keeps_outputs(small):
    _, lib = small
    sizes, where, naive = plan_slots(lib._steps, lib._outputs)
    assert lib.planned_bytes == sum(sizes) and lib.naive_bytes == naive
    order = [value_key(o) for step in lib._steps for o in step.outputs]
    out_key = value_key(lib._outputs[0])
    # the output keeps its slot to the end: only values computed before it shared that slot
    sharing = [k for k, s in where.items() if s == where[out_key]]
    assert all(order.index(k) <= order.index(out_key) for k in sharing)
    assert len(sizes) < len(where)  # some intermediate slot is reused
    assert all(s % 256 == 0 for s in sizes)


def test_vendor_plan_splits_conv_and_its_epilogue():
    from graph.build import group_spec, partition
    from graph.passes import optimize
    mod = optimize(graph.from_onnx(small_model()))
    groups = partition(mod)
    conv = next(g for g in groups if g.calls[0].op == "conv2d")
    plan = vendor_plan(group_spec(conv, "cuda"))
    assert plan is not None and plan.op == "conv2d" and plan.shape == (1, 8, 6, 6)
    assert plan.operands == [0, 1] and plan.epilogue_inputs == [2]
    assert '"device":"cuda"' in plan.epilogue and '"conv2d"' not in plan.epilogue
    dense = next(g for g in groups if g.calls[0].op == "dense")
    assert vendor_plan(group_spec(dense, "cuda")) is None  # 10 x 72: too small for cuBLAS
    assert '"device"' not in group_spec(conv)  # CPU specs (and tuning keys) unchanged


def test_vendor_epilogue_kernel_reads_the_vendor_result():
    """conv -> add(bias) -> add(residual input) -> relu: the epilogue kernel (compiled as a
    group of its own) takes the bias and residual, then the convolution's result."""
    from tensorlang.ir import interpreter
    from graph.build import group_spec, partition
    from graph.compile import _compile_cuda_here
    from graph.passes import optimize
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 4, 1, 1)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"]),
             helper.make_node("Add", ["c", "x"], ["s"]),
             helper.make_node("Relu", ["s"], ["y"])]
    model = make_model(nodes, [("x", (1, 4, 3, 3), "float32")], [("y", (1, 4, 3, 3), "float32")],
                       {"w": w, "b": b})
    (group,) = partition(optimize(graph.from_onnx(model)))
    plan = vendor_plan(group_spec(group, "cuda"))
    assert plan.op == "conv2d" and plan.shape == (1, 4, 3, 3)
    kernel = _compile_cuda_here("epilogue", plan.epilogue, "cuda", None, "cuda -arch=sm_90")
    assert "__global__" in kernel.get_source()
    ins = [np.ascontiguousarray(a.value if isinstance(a, Constant) else
                                rng.standard_normal(a.type.shape).astype(np.float32))
           for a in group.inputs]
    conv = rng.standard_normal(plan.shape).astype(np.float32)  # stands for cuDNN's result
    out = np.empty(plan.shape, np.float32)
    interpreter.run(kernel.func, *[ins[k] for k in plan.epilogue_inputs], conv, out)
    x = ins[next(i for i, a in enumerate(group.inputs) if not isinstance(a, Constant))]
    bias = next(a for a in ins if a.size == 4).reshape(1, 4, 1, 1)  # folded to [1, 4, 1, 1]
    np.testing.assert_allclose(out, np.maximum(conv + bias + x, 0), rtol=1e-6)


def test_bad_vendor_option_is_refused():
    with pytest.raises(UserError, match="vendor"):
        graph.build(graph.from_onnx(small_model()), target="cuda", vendor="cudnn")


# -- on the GPU --------------------------------------------------------------------------------
def _light(name):
    import onnx
    from graph.light_models import light_model_path, randomize_weights
    return randomize_weights(onnx.load(light_model_path(name)), seed=0)


def _compare(model, lib, x):
    got = lib.run(x)
    want = run_ort(model, {lib.input_names[0]: x})
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert isinstance(g, np.ndarray) and g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5 * float(np.abs(w).max()))
    return got


@needs_gpu
@pytest.mark.parametrize("vendor", ["none", "auto"])
def test_small_model_on_gpu(vendor):
    model = small_model(8)
    lib = graph.build(graph.from_onnx(model), target="cuda", vendor=vendor)
    x = _input((1, 3, 8, 8))
    first = _compare(model, lib, x)
    again = lib.run(x)  # a second run reuses the device buffers and cached launches
    np.testing.assert_array_equal(first[0], again[0])
    prof = lib.profile(x, number=2)
    assert sorted(n for n, _ in prof) == sorted(lib.groups)
    assert all(t > 0 for _, t in prof)


@needs_gpu
def test_small_model_torch_cuda_inputs_give_torch_outputs():
    torch = pytest.importorskip("torch", reason="PyTorch is needed for torch CUDA inputs")
    model = small_model(8)
    lib = graph.build(graph.from_onnx(model), target="cuda")
    x = _input((1, 3, 8, 8), seed=3)
    (y,) = lib.run(torch.from_numpy(x).cuda())
    assert isinstance(y, torch.Tensor) and y.is_cuda
    want = run_ort(model, {"x": x})[0]
    np.testing.assert_allclose(y.cpu().numpy(), want, rtol=1e-3, atol=1e-6)
    (z,) = lib.run(torch.from_numpy(x).cuda())
    assert z.data_ptr() != y.data_ptr()  # a new tensor per run


@needs_gpu
@pytest.mark.parametrize("name,vendor", [("squeezenet", "none"), ("squeezenet", "auto"),
                                         ("resnet50", "auto")])
def test_light_model_on_gpu_matches_onnxruntime(name, vendor):
    model = _light(name)
    lib = graph.build(graph.from_onnx(model), target="cuda", vendor=vendor)
    x = _input(lib.module.function.params[0].type.shape)
    _compare(model, lib, x)
