"""Large intermediate buffers are cached between a kernel's calls (codegen.llvm.workspace):
the same numbers on every call and from concurrent calls, small buffers still allocated per
call, and the cached blocks freed when the module is collected."""
import gc
import threading

import numpy as np

import tensorlang as tl


def _kernel(n: int):
    A = tl.placeholder((n,), name="A")
    B = tl.compute((n,), lambda i: A[i] * 2.0, name="B")
    C = tl.compute((n,), lambda i: B[n - 1 - i] + 1.0, name="C")  # B reversed: not inlinable
    s = tl.create_schedule(C)
    return tl.build(s, [A, C])


def test_large_intermediate_is_cached_and_every_call_is_right():
    n = 1 << 16  # 256 KiB of float32
    f = _kernel(n)
    ir_text = f.get_source()
    assert "__ws_take" in ir_text and "__release_workspace" in ir_text
    rng = np.random.default_rng(0)
    for _ in range(3):
        a = rng.standard_normal(n).astype(np.float32)
        c = np.empty(n, np.float32)
        f(a, c)
        np.testing.assert_array_equal(c, a[::-1] * 2.0 + 1.0)


def test_concurrent_calls_of_one_kernel_agree():
    n = 1 << 16
    f = _kernel(n)
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal(n).astype(np.float32) for _ in range(4)]
    outputs = [np.empty(n, np.float32) for _ in inputs]
    errors = []

    def work(k):
        try:
            for _ in range(20):
                f(inputs[k], outputs[k])
                np.testing.assert_array_equal(outputs[k], inputs[k][::-1] * 2.0 + 1.0)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_small_intermediates_are_allocated_per_call_and_modules_release_theirs():
    small = _kernel(1024)
    assert "__ws_take" not in small.get_source()
    big = _kernel(1 << 16)
    a, c = np.ones(1 << 16, np.float32), np.empty(1 << 16, np.float32)
    big(a, c)
    del big
    gc.collect()  # the finalizer frees the cached block; nothing to observe but no crash
    again = _kernel(1 << 16)
    again(a, c)
    np.testing.assert_array_equal(c, np.full(1 << 16, 3.0, np.float32))
