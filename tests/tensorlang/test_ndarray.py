"""NDArray, the tl.nd functions, dtype names and DLPack exchange (NumPy, PyTorch if installed)."""

import gc
import sys
import weakref

import ml_dtypes
import numpy as np
import pytest

from tensorlang.errors import DTypeError, ShapeError, UnsupportedOpError, UserError
from tensorlang.runtime import DTYPE_NAMES, dlpack, dtypes
from tensorlang.runtime import cuda
from tensorlang.runtime import ndarray as nd

RNG = np.random.default_rng(20240611)


def random_array(shape, dtype):
    """Random values of a dtype name, never all zeros."""
    np_type = dtypes.np_dtype(dtype)
    if dtype == "bool":
        values = RNG.random(shape) > 0.5
        values.flat[0] = True
        return values
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(np_type)
        return RNG.integers(max(info.min, -100), min(info.max, 100), size=shape, endpoint=True,
                            dtype=np_type) | np_type.type(1)
    return (RNG.standard_normal(shape) * 3 + 0.5).astype(np_type)


def same_bits(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.fixture
def unraisable(monkeypatch):
    """Collects exceptions raised in callbacks (a second deleter call would show up here)."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


# --- dtypes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_dtype_names_round_trip(name):
    assert dtypes.dtype_name(dtypes.np_dtype(name)) == name
    code, bits, lanes = dtypes.dlpack_dtype(name)
    assert bits == dtypes.np_dtype(name).itemsize * 8 and lanes == 1
    assert dtypes.dtype_from_dlpack(code, bits, lanes) == name


def test_dtype_helpers_accept_numpy_types():
    assert dtypes.dtype_name(np.float32) == "float32"
    assert dtypes.dtype_name(ml_dtypes.bfloat16) == "bfloat16"
    assert dtypes.np_dtype(np.dtype("int16")) == np.int16
    assert dtypes.np_dtype("float8_e5m2") == ml_dtypes.float8_e5m2


@pytest.mark.parametrize("bad", ["float128", "complex64", "int4"])
def test_unknown_dtype_name_is_named(bad):
    with pytest.raises(DTypeError, match=bad):
        dtypes.np_dtype(bad)


@pytest.mark.parametrize("bad", [np.complex64, np.dtype("U3"), np.dtype(">f4"), object, None,
                                 "float", "f4"])
def test_unknown_numpy_dtype(bad):
    with pytest.raises(DTypeError, match="unsupported dtype"):
        dtypes.dtype_name(bad)


def test_dlpack_vector_lanes_rejected():
    with pytest.raises(DTypeError, match="lanes=4"):
        dtypes.dtype_from_dlpack(2, 32, 4)


# --- NDArray basics -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_round_trip_every_dtype(name):
    source = random_array((3, 5), name)
    x = nd.array(source)
    assert x.dtype == name and x.shape == (3, 5) and x.strides is None
    assert x.data_ptr % 64 == 0
    out = x.numpy()
    assert same_bits(out, source)
    assert not np.shares_memory(out, x._as_numpy_view())  # numpy() copies
    assert same_bits(x.asnumpy(), source)


@pytest.mark.parametrize("shape", [(), (0,), (1,), (7,), (3, 0, 2), (5, 3, 7)])
@pytest.mark.parametrize("name", ["bool", "int8", "float16", "float64", "bfloat16"])
def test_empty_is_aligned_and_contiguous(shape, name):
    x = nd.empty(shape, name)
    assert x.data_ptr % nd.ALIGNMENT == 0
    view = x._as_numpy_view()
    assert view.shape == shape and view.flags.c_contiguous and view.ctypes.data == x.data_ptr


def test_attributes_and_repr():
    x = nd.array(random_array((2, 3, 4), "float32"))
    assert (x.ndim, x.size, x.nbytes, x.device) == (3, 24, 96, "cpu")
    assert isinstance(x.shape, tuple) and isinstance(x.data_ptr, int)
    assert nd.empty(5).shape == (5,) and nd.empty(5).dtype == "float32"
    text = repr(x)
    assert "shape=(2, 3, 4)" in text and "dtype=float32" in text


def test_array_converts_dtype_and_lists():
    source = RNG.standard_normal((4, 4))
    x = nd.array(source, dtype="bfloat16")
    assert x.dtype == "bfloat16"
    np.testing.assert_allclose(x.numpy().astype(np.float64), source, rtol=1e-2)
    assert nd.array([[1, 2], [3, 4]]).dtype == "int64"
    y = nd.array(x)  # NDArray input copies too
    assert y.data_ptr != x.data_ptr and same_bits(y.numpy(), x.numpy())


def test_numpy_copy_is_independent():
    x = nd.array(random_array((4,), "float32"))
    before = x.numpy()
    out = x.numpy()
    out += 1
    assert same_bits(x.numpy(), before)


def test_copyfrom():
    x = nd.empty((2, 3), "float32")
    source = random_array((2, 3), "float32")
    assert x.copyfrom(source) is x
    assert same_bits(x.numpy(), source)
    other = nd.array(random_array((2, 3), "float32"))
    assert same_bits(x.copyfrom(other).numpy(), other.numpy())
    assert same_bits(x.copyfrom([[1, 2, 3], [4, 5, 6]]).numpy(),
                     np.arange(1, 7, dtype=np.float32).reshape(2, 3))


def test_copyfrom_shape_mismatch_names_both():
    x = nd.empty((2, 3), "float32")
    with pytest.raises(ShapeError, match=r"expected \(2, 3\), got \(3, 2\)"):
        x.copyfrom(random_array((3, 2), "float32"))


def test_copyfrom_dtype_mismatch_names_both():
    x = nd.empty((2, 3), "float32")
    with pytest.raises(DTypeError, match="expected float32, got float64"):
        x.copyfrom(random_array((2, 3), "float64"))
    with pytest.raises(DTypeError, match="expected float32, got bfloat16"):
        x.copyfrom(nd.array(random_array((2, 3), "bfloat16")))


def test_bad_dtype_and_shape():
    with pytest.raises(DTypeError, match="float128"):
        nd.empty((2,), "float128")
    with pytest.raises(DTypeError, match="complex64"):
        nd.array(np.ones(3, np.complex64))
    with pytest.raises(ShapeError, match="negative"):
        nd.empty((2, -1))
    with pytest.raises(ShapeError, match="sequence of ints"):
        nd.empty((2.5,))


@pytest.mark.skipif(cuda.available(),
                    reason="a CUDA GPU is present: CUDA arrays work (test_cuda_runtime.py)")
def test_devices():
    with pytest.raises(UnsupportedOpError, match="CUDA arrays need the CUDA runtime"):
        nd.empty((2,), device="cuda")
    with pytest.raises(UnsupportedOpError, match="cuda-python"):
        nd.array(np.ones(2), device="cuda:1")
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        nd.empty((2,), device="tpu")


# --- DLPack -------------------------------------------------------------------------------------

def test_numpy_from_tensorlang_is_zero_copy():
    x = nd.array(random_array((4, 5), "float32"))
    assert x.__dlpack_device__() == (1, 0)
    y = np.from_dlpack(x)
    assert y.ctypes.data == x.data_ptr and np.shares_memory(y, x._as_numpy_view())
    y[1, 2] = 42.0
    assert x.numpy()[1, 2] == 42.0
    x.copyfrom(np.full((4, 5), 7.0, np.float32))
    assert np.all(y == 7.0)


def test_tensorlang_from_numpy_is_zero_copy():
    a = random_array((3, 4), "int32")
    t = nd.from_dlpack(a)
    assert t.data_ptr == a.ctypes.data and t.dtype == "int32" and t.strides is None
    a[2, 3] = 1234
    assert t.numpy()[2, 3] == 1234
    t.copyfrom(np.full((3, 4), -5, np.int32))
    assert np.all(a == -5)


@pytest.mark.parametrize("index, strides", [
    ((slice(None), slice(None, None, 2)), (6, 2)),
    ((slice(None, None, -1),), (-6, 1)),
    ((slice(1, 3), slice(2, 5)), (6, 1)),
])
def test_non_contiguous_import_keeps_strides(index, strides):
    base = random_array((4, 6), "float64")
    view = base[index]
    t = nd.from_dlpack(view)
    assert t.strides == strides and t.shape == view.shape
    assert t.data_ptr == view.ctypes.data
    assert same_bits(t.numpy(), np.ascontiguousarray(view)) and t.numpy().flags.c_contiguous
    back = np.from_dlpack(t)  # strides survive a second trip
    assert back.strides == view.strides and np.shares_memory(back, base)


def test_transposed_import():
    base = random_array((3, 5), "float32")
    t = nd.from_dlpack(base.T)
    assert t.strides == (1, 5) and same_bits(t.numpy(), np.ascontiguousarray(base.T))


def test_zero_dim_and_empty_through_dlpack():
    scalar = np.array(3.25, np.float32)
    t = nd.from_dlpack(scalar)
    assert t.shape == () and t.numpy() == 3.25
    assert np.from_dlpack(nd.array(scalar)).shape == ()
    empty = nd.from_dlpack(np.ones((0, 3), np.float32))
    assert empty.shape == (0, 3) and empty.numpy().shape == (0, 3)


@pytest.mark.parametrize("max_version", [None, (1, 0)])
def test_raw_capsules(max_version):
    a = random_array((5,), "uint16")
    capsule = a.__dlpack__(max_version=max_version)
    assert ("versioned" in repr(capsule)) == (max_version is not None)
    t = nd.from_dlpack(capsule)
    assert t.data_ptr == a.ctypes.data and same_bits(t.numpy(), a)
    with pytest.raises(UserError, match="consumed only once"):
        nd.from_dlpack(capsule)


def test_export_versions_and_options():
    x = nd.array(random_array((3,), "float32"))
    assert "dltensor_versioned" in repr(x.__dlpack__(max_version=(1, 0)))
    assert '"dltensor"' in repr(x.__dlpack__())
    copied = np.from_dlpack(x, copy=True)
    assert not np.shares_memory(copied, x._as_numpy_view()) and same_bits(copied, x.numpy())
    with pytest.raises(BufferError, match="stream"):
        x.__dlpack__(stream=1)
    with pytest.raises(BufferError, match="device"):
        x.__dlpack__(dl_device=(2, 0))


def test_read_only_import():
    a = random_array((4,), "float32")
    a.flags.writeable = False
    t = nd.from_dlpack(a)
    assert t.readonly and not t._as_numpy_view().flags.writeable
    with pytest.raises(UserError, match="read-only"):
        t.copyfrom(np.ones(4, np.float32))
    with pytest.raises(BufferError, match="read-only"):
        t.__dlpack__()
    back = np.from_dlpack(t)  # versioned: carries the read-only flag
    assert not back.flags.writeable and np.shares_memory(back, a)


def test_tensorlang_to_tensorlang_keeps_source_alive():
    x = nd.array(random_array((8,), "bfloat16"))
    expected, alive = x.numpy(), weakref.ref(x)
    y = nd.from_dlpack(x)
    assert y.data_ptr == x.data_ptr
    del x
    gc.collect()
    assert alive() is not None and same_bits(y.numpy(), expected)
    del y
    gc.collect()
    assert alive() is None


def test_imported_memory_outlives_producer_reference():
    a = random_array((6,), "int64")
    expected = a.copy()
    t = nd.from_dlpack(a[::2])
    del a
    gc.collect()
    assert same_bits(t.numpy(), expected[::2])


def test_export_deleter_runs_once_when_consumed(unraisable):
    x = nd.array(random_array((16,), "float32"))
    base_refs, base_live = sys.getrefcount(x), dlpack.live_exports()
    y = np.from_dlpack(x)
    assert dlpack.live_exports() == base_live + 1 and sys.getrefcount(x) > base_refs
    del y
    gc.collect()
    assert dlpack.live_exports() == base_live and sys.getrefcount(x) == base_refs
    assert unraisable == []


@pytest.mark.parametrize("max_version", [None, (1, 0)])
def test_export_deleter_runs_once_when_capsule_dropped(unraisable, max_version):
    x = nd.array(random_array((16,), "int8"))
    alive, base_live = weakref.ref(x), dlpack.live_exports()
    capsule = x.__dlpack__(max_version=max_version)
    del x
    gc.collect()
    assert alive() is not None and dlpack.live_exports() == base_live + 1
    del capsule  # never consumed: the capsule destructor must call the deleter
    gc.collect()
    assert alive() is None and dlpack.live_exports() == base_live
    assert unraisable == []


def test_import_deleter_runs_once():
    a = random_array((10,), "float64")
    base = sys.getrefcount(a)
    t = nd.from_dlpack(a)
    assert sys.getrefcount(a) > base
    del t
    gc.collect()
    assert sys.getrefcount(a) == base  # a second deleter call would drop it below


def test_rejected_import_leaves_capsule_to_its_destructor():
    a = np.ones(4, np.complex64) * (1 + 2j)
    base = sys.getrefcount(a)
    with pytest.raises(DTypeError, match="code=5"):
        nd.from_dlpack(a)
    gc.collect()
    assert sys.getrefcount(a) == base


@pytest.mark.skipif(cuda.available(),
                    reason="a CUDA GPU is present: CUDA arrays work (test_cuda_runtime.py)")
def test_non_cpu_device_rejected():
    class OnGPU:
        def __dlpack__(self, **kwargs):
            raise AssertionError("must not be asked for a capsule")

        def __dlpack_device__(self):
            return (2, 0)

    with pytest.raises(UnsupportedOpError, match="CPU tensors only.*cuda"):
        nd.from_dlpack(OnGPU())
    with pytest.raises(UserError, match="__dlpack__"):
        nd.from_dlpack([1, 2, 3])


def test_consumer_rejecting_our_capsule_still_frees_it(unraisable):
    # NumPy cannot import bfloat16; it drops our capsule while raising. The memory must still
    # be released (see dlpack._on_capsule_destroyed for why the error surfaces as SystemError).
    x = nd.array(random_array((4,), "bfloat16"))
    base_live = dlpack.live_exports()
    with pytest.raises(Exception):
        np.from_dlpack(x)
    gc.collect()
    assert dlpack.live_exports() == base_live


# --- PyTorch ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["float32", "bfloat16", "int64", "bool", "float8_e4m3fn"])
def test_torch_interop(name):
    torch = pytest.importorskip("torch", reason="torch not installed")
    source = nd.array(random_array((3, 4), name))
    t = torch.from_dlpack(source)
    assert t.data_ptr() == source.data_ptr and tuple(t.shape) == (3, 4)
    back = nd.from_dlpack(t)
    assert back.data_ptr == source.data_ptr and back.dtype == name
    assert same_bits(back.numpy(), source.numpy())
    strided = torch.from_dlpack(nd.array(random_array((4, 6), name)))[:, 1::2]
    s = nd.from_dlpack(strided)
    assert s.strides == (6, 2) and s.data_ptr == strided.data_ptr()
    assert same_bits(s.numpy(), nd.from_dlpack(strided.contiguous()).numpy())


def test_torch_mutation_is_shared():
    torch = pytest.importorskip("torch", reason="torch not installed")
    x = nd.array(random_array((5,), "float32"))
    t = torch.from_dlpack(x)
    t.mul_(2)
    np.testing.assert_array_equal(x.numpy(), t.numpy())
    y = nd.from_dlpack(t)
    y.copyfrom(np.full(5, 3.0, np.float32))
    assert torch.all(t == 3.0)
