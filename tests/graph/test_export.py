"""Exported models: one shared library with a C API, loaded back with graph.load_library and
linked into a C program, compared with ONNX Runtime; threads; bad input; what cannot export."""
import fcntl
import json
import os
import subprocess
import textwrap

import numpy as np
import pytest

from graph_onnx_util import helper, make_model, run_ort

import graph
from graph import export as export_module
from codegen.llvm.export import find_compiler
from tensorlang.errors import DTypeError, ShapeError, UnsupportedOpError, UserError

pytestmark = pytest.mark.skipif(find_compiler() is None,
                                reason="export_library needs a C compiler (cc, gcc or clang)")


def _weights(rng, *shape):
    return rng.uniform(-1.0, 1.0, shape).astype("float32")


def _small_net():
    """conv + bias + relu (im2col + BLAS in-process), a residual block (grouped conv + bias +
    add + relu), max pool, a Gemm of two rows (the BLAS in-process), softmax; outputs: probs,
    the logits (read by the softmax too), one half of a Split of the logits and the input
    itself (copied)."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=4),
             helper.make_node("Add", ["c2", "r1"], ["s"]),
             helper.make_node("Relu", ["s"], ["r2"]),
             helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Reshape", ["p", "rows"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
             helper.make_node("Split", ["logits", "parts"], ["head", "tail"], axis=1),
             helper.make_node("Identity", ["x"], ["x_out"])]
    weights = dict(w1=_weights(rng, 16, 4, 3, 3), b1=_weights(rng, 16),
                   w2=_weights(rng, 16, 4, 3, 3), b2=_weights(rng, 16),
                   rows=np.array([2, -1], np.int64), fw=_weights(rng, 10, 128),
                   fb=_weights(rng, 10), parts=np.array([4, 6], np.int64))
    return make_model(nodes, [("x", (1, 4, 8, 8), "float32")],
                      [("probs", None, "float32"), ("logits", None, "float32"),
                       ("tail", None, "float32"), ("x_out", None, "float32")], weights)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, request):
    """(ONNX model, path of the exported library, facts about the in-process library). Built
    once per run: pytest-xdist workers share the folder, and a file lock makes the others wait
    for the first."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if hasattr(request.config, "workerinput") else base) / "shared_export"
    folder.mkdir(exist_ok=True)
    model, path, facts = _small_net(), str(folder / "model.so"), folder / "facts.json"
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not facts.exists():
            lib = graph.build(graph.from_onnx(model))
            lib.export_library(path)
            dense = [s.kernel.get_source() for s in lib._steps if s.name.startswith("fused_dense")]
            facts.write_text(json.dumps({
                "dense_calls_blas": bool(dense) and "tl_blas_sgemm" in dense[0],
                "groups": lib.groups, "inputs": lib.input_names, "outputs": lib.output_names}))
    return model, path, json.loads(facts.read_text())


def _atol(want):
    """Absolute tolerance for values near zero after cancellation, at the output's scale."""
    return 1e-5 * max(1.0, float(np.abs(want).max()))


def _inputs(seed):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (1, 4, 8, 8)).astype("float32")


def test_loaded_library_matches_onnxruntime(exported):
    model, path, built = exported
    assert os.path.exists(path[:-3] + ".h")
    assert built["dense_calls_blas"]  # in-process the dense layer calls the BLAS
    loaded = graph.load_library(path)
    assert loaded.input_names == tuple(built["inputs"]) == ("x",)
    assert loaded.output_names == tuple(built["outputs"]) == ("probs", "logits", "tail",
                                                              "x_out")
    assert loaded.output_shapes == ((2, 10), (2, 10), (2, 6), (1, 4, 8, 8))
    assert loaded.groups and all(name in built["groups"] for name in loaded.groups)
    assert 0 < loaded.workspace_bytes
    for seed in (1, 2):
        x = _inputs(seed)
        got, want = loaded.run(x), run_ort(model, {"x": x})
        assert len(got) == len(want) == 4
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=_atol(w))
    by_name = loaded.run(x=x)
    np.testing.assert_array_equal(by_name[0], got[0])
    assert by_name[0] is not got[0]


def test_threads_give_the_same_numbers(exported):
    _, path, _ = exported
    loaded = graph.load_library(path)
    x = _inputs(3)
    tasks = lambda: len(os.listdir("/proc/self/task"))  # noqa: E731
    loaded.set_num_threads(1)
    assert loaded.num_threads == 1
    one, before = loaded.run(x), tasks()
    loaded.set_num_threads(2)
    two = loaded.run(x)
    assert loaded.num_threads == 2 and tasks() == before + 1  # one pool worker started
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


_MAIN_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model.h"

/* model <input.raw> <output.raw>: runs the model on the raw float32 input, writes the first
 * output; then checks that a wrong input shape is refused with a message. */
int main(int argc, char** argv) {
  if (argc != 3) return 2;
  if (model_num_inputs() != 1 || strcmp(model_input_name(0), "x") != 0) return 3;
  int64_t in_count = 1, out_count = 1;
  for (int i = 0; i < model_input_ndim(0); i++) in_count *= model_input_shape(0)[i];
  for (int i = 0; i < model_output_ndim(0); i++) out_count *= model_output_shape(0)[i];
  float* x = malloc(sizeof(float) * in_count);
  FILE* f = fopen(argv[1], "rb");
  if (!f || fread(x, sizeof(float), in_count, f) != (size_t)in_count) return 4;
  fclose(f);
  int n_out = model_num_outputs();
  DLTensor inputs[1], outputs[8];
  memset(inputs, 0, sizeof(inputs));
  memset(outputs, 0, sizeof(outputs));
  inputs[0].data = x;
  inputs[0].device.device_type = kDLCPU;
  inputs[0].ndim = model_input_ndim(0);
  inputs[0].dtype = model_input_dtype(0);
  inputs[0].shape = (int64_t*)model_input_shape(0);
  for (int j = 0; j < n_out; j++) {
    int64_t count = 1;
    for (int i = 0; i < model_output_ndim(j); i++) count *= model_output_shape(j)[i];
    outputs[j].data = malloc(sizeof(float) * (count ? count : 1));
    outputs[j].device.device_type = kDLCPU;
    outputs[j].ndim = model_output_ndim(j);
    outputs[j].dtype = model_output_dtype(j);
    outputs[j].shape = (int64_t*)model_output_shape(j);
  }
  if (model_run(inputs, outputs) != 0) {
    fprintf(stderr, "model_run failed: %s\n", model_last_error());
    return 5;
  }
  f = fopen(argv[2], "wb");
  fwrite(outputs[0].data, sizeof(float), out_count, f);
  fclose(f);
  int64_t wrong[4] = {1, 4, 8, 9};
  inputs[0].shape = wrong;
  int code = model_run(inputs, outputs);
  printf("threads=%d wrong-shape=%d error=%s\n", model_get_num_threads(), code,
         model_last_error());
  return code != 0 ? 0 : 6;
}
"""


def test_c_program_runs_without_python(exported, tmp_path):
    model, path, _ = exported
    folder = os.path.dirname(path)
    (tmp_path / "main.c").write_text(textwrap.dedent(_MAIN_C))
    program = str(tmp_path / "main")
    subprocess.run([find_compiler(), "-O2", "-o", program, str(tmp_path / "main.c"),
                    f"-I{folder}", path, f"-Wl,-rpath,{folder}"], check=True,
                   capture_output=True, text=True)
    x = _inputs(4)
    x.tofile(tmp_path / "x.raw")
    want = run_ort(model, {"x": x})[0]
    results = []
    for threads in ("1", "2"):
        env = {"PATH": os.environ.get("PATH", ""), "TENSORLANG_NUM_THREADS": threads}
        out = tmp_path / f"y{threads}.raw"
        run = subprocess.run([program, str(tmp_path / "x.raw"), str(out)], env=env,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert f"threads={threads} wrong-shape=4" in run.stdout
        assert "input 'x' must have shape (1, 4, 8, 8), got (1, 4, 8, 9)" in run.stdout
        results.append(np.fromfile(out, np.float32).reshape(want.shape))
        np.testing.assert_allclose(results[-1], want, rtol=1e-4, atol=_atol(want))
    np.testing.assert_array_equal(results[0], results[1])


_POOL_MAIN_C = r"""
static int64_t started, total;
static pthread_t ids[2];

/* Each task waits (up to 5 s) for the other to start: both finish early only if two threads
 * ran them at the same time. */
static void meet(int64_t task, int64_t num_tasks, void* closure) {
  (void)num_tasks; (void)closure;
  ids[task] = pthread_self();
  __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
  for (int i = 0; i < 5000 && __atomic_load_n(&started, __ATOMIC_SEQ_CST) < 2; i++)
    usleep(1000);
}

static void add(int64_t task, int64_t num_tasks, void* closure) {
  (void)num_tasks; (void)closure;
  __atomic_add_fetch(&total, task + 1, __ATOMIC_SEQ_CST);
}

int main(void) {
  if (tlm_default_threads() < 1 || tlm_pool_start(2) != 0) return 2;
  for (int round = 0; round < 3; round++) {
    started = 0;
    tlm_launch(meet, NULL, 2);
    if (pthread_equal(ids[0], ids[1])) return 3;
  }
  for (int round = 0; round < 2000; round++) tlm_launch(add, NULL, 1 + round % 7);
  tlm_pool_stop();
  int64_t want = 0;
  for (int round = 0; round < 2000; round++) want += (int64_t)(1 + round % 7) * (2 + round % 7) / 2;
  printf("total=%lld want=%lld\n", (long long)total, (long long)want);
  return total == want ? 0 : 4;
}
"""


def test_pool_runs_tasks_on_two_threads_at_once(tmp_path):
    from graph.export_c import POOL_SOURCE
    source = "#define _GNU_SOURCE\n#include <pthread.h>\n#include <sched.h>\n" \
             "#include <stdint.h>\n#include <stdio.h>\n#include <stdlib.h>\n" \
             "#include <unistd.h>\n" + POOL_SOURCE + _POOL_MAIN_C
    (tmp_path / "pool.c").write_text(source)
    program = str(tmp_path / "pool")
    subprocess.run([find_compiler(), "-O2", "-Wall", "-Werror", "-pthread", "-o", program,
                    str(tmp_path / "pool.c")], check=True, capture_output=True, text=True)
    run = subprocess.run([program], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, (run.returncode, run.stdout, run.stderr)


def test_bad_inputs_are_refused_with_their_name(exported):
    _, path, _ = exported
    loaded = graph.load_library(path)
    with pytest.raises(ShapeError, match=r"input 'x' must have shape \(1, 4, 8, 8\)"):
        loaded.run(np.zeros((1, 4, 8, 9), np.float32))
    with pytest.raises(DTypeError, match="input 'x' must be float32"):
        loaded.run(np.zeros((1, 4, 8, 8), np.float64))
    with pytest.raises(UserError, match="input 'x' is missing"):
        loaded.run()
    with pytest.raises(UserError, match="no input named 'y'"):
        loaded.run(y=_inputs(0))
    outputs = [np.empty(s, np.float32) for s in loaded.output_shapes]
    # the library's own checks (the C API), reached without the Python ones
    with pytest.raises(ShapeError,
                       match=r"model.so: input 'x' must have shape .*got \(1, 4, 8, 9\)"):
        loaded.run_into([np.zeros((1, 4, 8, 9), np.float32)], outputs)
    with pytest.raises(DTypeError, match="input 'x' must be float32"):
        loaded.run_into([np.zeros((1, 4, 8, 8), np.float64)], outputs)
    strided = np.zeros((1, 4, 8, 16), np.float32)[..., ::2]
    with pytest.raises(UserError, match="input 'x' must be compact"):
        loaded.run_into([strided], outputs)
    with pytest.raises(UserError, match="output 'x_out' shares memory with input 'x'"):
        x = _inputs(0)
        loaded.run_into([x], outputs[:3] + [x])


def test_what_is_not_a_model_library(tmp_path):
    with pytest.raises(UserError, match="cannot load"):
        graph.load_library(tmp_path / "missing.so")
    import tensorlang as tl
    n = 16
    A = tl.placeholder((n,), name="A")
    B = tl.compute((n,), lambda i: A[i] + 1.0, name="B")
    kernel = tl.build(tl.create_schedule(B), [A, B])
    kernel.export_library(str(tmp_path / "kernel.so"))
    with pytest.raises(UserError, match="not a model exported by tensorlang"):
        graph.load_library(tmp_path / "kernel.so")


def _tiny_model():
    node = helper.make_node("Relu", ["x"], ["y"])
    return make_model([node], [("x", (2, 3), "float32")], [("y", None, "float32")])


def test_prefix_and_export_errors(tmp_path, monkeypatch):
    lib = graph.build(graph.from_onnx(_tiny_model()))
    with pytest.raises(UserError, match="prefix must be a C identifier"):
        lib.export_library(tmp_path / "a.so", prefix="my-model")
    lib.export_library(tmp_path / "relu.so", prefix="relu")
    assert "int relu_run(const DLTensor* inputs" in (tmp_path / "relu.h").read_text()
    x = np.random.default_rng(5).standard_normal((2, 3)).astype("float32")
    (y,) = graph.load_library(tmp_path / "relu.so").run(x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    monkeypatch.setattr(export_module, "find_compiler", lambda: None)
    with pytest.raises(UnsupportedOpError, match="needs a C compiler"):
        lib.export_library(tmp_path / "b.so")


def test_cuda_build_export_is_refused(tmp_path):
    try:
        lib = graph.build(graph.from_onnx(_tiny_model()), target="cuda", vendor="none")
    except Exception as err:  # noqa: BLE001 - no CUDA toolchain (NVRTC) on this machine
        pytest.skip(f"building for target 'cuda' needs NVRTC here: {err}")
    with pytest.raises(UnsupportedOpError, match="CUDA export not supported yet"):
        lib.export_library(tmp_path / "cuda.so")


def test_blas_groups_export_as_the_tunable_native_kernel():
    """A BLAS convolution group is exported as the native group whose tuning records the
    build reads (same structural task key), so a tuned record applies at export."""
    from autotune.task import Task
    from graph.build import group_workload, native_conv_spec
    from graph.compile import _CACHE
    rng = np.random.default_rng(6)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    model = make_model(nodes, [("x", (1, 8, 6, 6), "float32")], [("y", None, "float32")],
                       {"w": _weights(rng, 8, 8, 3, 3), "b": _weights(rng, 8)})
    lib = graph.build(graph.from_onnx(model))
    (step,) = lib._steps
    assert "tl_blas_sgemm" in step.kernel.get_source()
    spec = export_module._step_spec(step, "llvm")
    assert any(key[0] == spec for key in _CACHE)  # the spec the build compiled
    native = Task(export_module.native_group_workload, args=(spec,), target="llvm")
    assert native.key == Task(group_workload, args=(native_conv_spec(spec),), target="llvm").key
    assert native.key != Task(group_workload, args=(spec,), target="llvm").key


def test_winograd_conv_exports_with_its_products_made_native(tmp_path):
    """A Winograd convolution group (a grouped BLAS product in-process) is exported with the
    products as a DSL reduction and gives ONNX Runtime's numbers from the loaded library."""
    from graph.passes import optimize
    from graph.passes.layout import convert_conv_layout
    rng = np.random.default_rng(7)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    model = make_model(nodes, [("x", (1, 8, 10, 10), "float32")], [("y", None, "float32")],
                       {"w": _weights(rng, 8, 8, 3, 3), "b": _weights(rng, 8)})
    mod = convert_conv_layout(optimize(graph.from_onnx(model)), winograd=lambda conv: True)
    lib = graph.build(mod, layout="NCHW")
    step = next(s for s in lib._steps if "winograd" in s.name)
    assert "tl_blas_sgemm_group" in step.kernel.get_source()
    lib.export_library(tmp_path / "wino.so")
    x = np.random.default_rng(9).uniform(-1, 1, (1, 8, 10, 10)).astype("float32")
    want = run_ort(model, {"x": x})[0]
    (got,) = graph.load_library(tmp_path / "wino.so").run(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=_atol(want))
    np.testing.assert_allclose(lib.run(x)[0], want, rtol=1e-4, atol=_atol(want))
