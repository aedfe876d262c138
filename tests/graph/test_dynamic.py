"""Symbolic input dims (one library, many batch sizes) and DLPack inputs and outputs."""
import numpy as np
import pytest

import graph
from graph.dynamic import Specializer, attach_specializer
from graph.ir import Call, Constant, Function, Module, TensorType, Var
from tensorlang.errors import ShapeError, UserError

RNG = np.random.default_rng(7)
WEIGHT = RNG.standard_normal((6, 5)).astype("float32")
BIAS = RNG.standard_normal(6).astype("float32")


def _mlp(batch: int) -> Module:
    x = Var("x", TensorType((batch, 5), "float32"))
    h = Call("dense", (x, Constant("w", WEIGHT)))
    y = Call("relu", (Call("add", (h, Constant("b", BIAS))),))
    return Module(Function((x,), (y,)), ("x",), ("y",))


def _reference(x):
    return np.maximum(x @ WEIGHT.T + BIAS, 0)


def _dynamic_mlp(example: int = 2) -> Module:
    return attach_specializer(_mlp(example), (("x", 0, "batch"),),
                              lambda values: _mlp(values["batch"]))


def test_one_library_runs_every_batch_size():
    lib = graph.build(_dynamic_mlp())
    for batch in (2, 1, 8, 1):
        x = RNG.standard_normal((batch, 5)).astype("float32")
        (y,) = lib.run(x)
        assert y.shape == (batch, 6)
        np.testing.assert_allclose(y, _reference(x), rtol=1e-5, atol=1e-5)
    assert len(lib.specializations) == 2  # batch 1 and 8 compiled once each; 2 is the library
    x = RNG.standard_normal((3, 5)).astype("float32")
    profile = lib.profile(x, number=1)
    assert len(profile) >= 1


def test_static_dims_of_a_dynamic_input_are_still_checked():
    lib = graph.build(_dynamic_mlp())
    with pytest.raises(ShapeError, match="'x'"):
        lib.run(np.zeros((4, 7), "float32"))
    with pytest.raises(ShapeError, match="at least 1 dims"):
        lib.run(np.float32(1.0))


def test_a_shared_symbol_must_agree_across_inputs():
    spec = Specializer((("a", 0, "n"), ("b", 0, "n")), rebuild=None)
    assert spec.values({"a": (3, 2), "b": (3,)}) == {"n": 3}
    with pytest.raises(ShapeError, match="'n' is 3 in input 'a'.*but 4 in input 'b'"):
        spec.values({"a": (3, 2), "b": (4,)})


def test_attach_specializer_checks_the_dims():
    with pytest.raises(UserError, match="no input 'y'"):
        attach_specializer(_mlp(2), (("y", 0, "batch"),), _mlp)
    with pytest.raises(UserError, match="has 2 dims, no dim 5"):
        attach_specializer(_mlp(2), (("x", 5, "batch"),), _mlp)


def test_specializer_takes_no_part_in_equality():
    assert _dynamic_mlp() == _mlp(2)


def test_torch_tensors_in_give_torch_tensors_out():
    torch = pytest.importorskip("torch", reason="needs PyTorch (the torch extra)")
    lib = graph.build(_mlp(3))
    x = torch.randn(3, 5, requires_grad=True)  # read through DLPack after detach
    (y,) = lib.run(x)
    assert isinstance(y, torch.Tensor) and y.shape == (3, 6)
    np.testing.assert_allclose(y.numpy(), _reference(x.detach().numpy()), rtol=1e-5, atol=1e-5)
    (z,) = lib.run(x.detach().numpy())
    assert isinstance(z, np.ndarray)
    # a transposed (non-contiguous) view is accepted and copied to C order
    xt = torch.randn(5, 3).t()
    np.testing.assert_allclose(lib.run(xt)[0].numpy(), _reference(xt.numpy()), rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(UserError, match="'x' must be float32"):
        lib.run(torch.randn(3, 5, dtype=torch.float64))
