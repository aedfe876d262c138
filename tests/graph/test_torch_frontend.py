"""The PyTorch frontend (graph.from_torch): ATen ops and small models against eager PyTorch."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch (the torch extra)")
import torch.nn.functional as F  # noqa: E402

import graph  # noqa: E402
from tensorlang.errors import ShapeError, UnsupportedOpError, UserError  # noqa: E402

RTOL = 1e-4


def randn(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


class Fn(torch.nn.Module):
    """A module whose forward is ``fn`` (its inputs named x, y, z)."""

    def __init__(self, fn, arity):
        super().__init__()
        self.fn = fn
        self.arity = arity

    def forward(self, x, y=None, z=None):
        return self.fn(*(x, y, z)[:self.arity])


def compare(got, want, rtol=RTOL, atol=1e-5):
    want = want if isinstance(want, (list, tuple)) else [want]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = w.detach().numpy()
        assert g.shape == w.shape, (g.shape, w.shape)
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        if w.dtype == bool or np.issubdtype(w.dtype, np.integer):
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def check(fn, *inputs, rtol=RTOL, atol=1e-5, module=None):
    """Import ``fn`` (or ``module``), build it and compare with eager on ``inputs``."""
    model = module if module is not None else Fn(fn, len(inputs))
    model = model.eval()
    mod = graph.from_torch(model, inputs)
    lib = graph.build(mod, target="llvm")
    got = lib.run(*[x.numpy() for x in inputs])
    with torch.no_grad():
        compare(got, model(*inputs), rtol, atol)
    return mod


# -- one group of ops per test (each test builds one library) --------------------------------

def test_elementwise_math_and_broadcasting():
    x, y = randn(3, 4, seed=1), randn(4, seed=2)
    check(lambda x, y: (x + y * 2, x - y, 3.0 - x, x * y, x / (y.abs() + 1), torch.pow(x, 2),
                        torch.pow(x.abs() + 0.5, y), torch.maximum(x, y), torch.minimum(x, y),
                        torch.exp(x), torch.log(x.abs() + 1), torch.sqrt(x.abs()),
                        torch.rsqrt(x.abs() + 1), torch.reciprocal(y + 3), torch.neg(x),
                        torch.sin(x), torch.cos(x), torch.floor(x * 3), torch.ceil(x * 3),
                        torch.round(x * 3), torch.trunc(x * 3), torch.sign(x), torch.erf(x),
                        torch.clamp(x, -0.5, 0.5), torch.log1p(x.abs()), torch.expm1(x)),
          x, y)


def test_type_promotion_int_tensors_and_scalars():
    a = torch.randint(-20, 20, (3, 5), generator=torch.Generator().manual_seed(3))
    b = torch.randint(1, 7, (5,), generator=torch.Generator().manual_seed(4))
    x = randn(3, 5, seed=5)
    check(lambda a, b, x: (a + b, a * 3, a + 2.5, a / b, torch.div(a, b, rounding_mode="floor"),
                           torch.div(a, b, rounding_mode="trunc"), a // b, a % b,
                           torch.div(x, 0.3, rounding_mode="floor"),
                           torch.div(x, 0.3, rounding_mode="trunc"), a + x, x * b, 1 - a,
                           torch.rsub(x, 2.0), a.pow(2), (a > b), (x <= 0.1), (a == 3),
                           (a != b), torch.where(a > 0, x, b.float()),
                           torch.where(x > 0, x, 0.0), (a > 0) & (x > 0), a.float(),
                           x.to(torch.int32), a.sum(1), (a > 0).sum()),
          a, b, x)


def test_activations():
    x = randn(2, 3, 4, seed=6) * 3
    check(lambda x: (F.relu(x), F.leaky_relu(x, 0.1), F.hardtanh(x), F.relu6(x), F.elu(x),
                     F.hardswish(x), F.hardsigmoid(x), torch.sigmoid(x), torch.tanh(x),
                     F.gelu(x), F.gelu(x, approximate="tanh"), F.silu(x), F.softplus(x),
                     F.selu(x), F.celu(x, 0.7), F.mish(x), F.softmax(x, -1),
                     F.log_softmax(x, 1), F.elu(x, alpha=0.5)),
          x)


def test_views_and_layout():
    x = randn(2, 3, 4, seed=7)
    check(lambda x: (x.view(6, 4), x.reshape(2, -1), x.permute(2, 0, 1), x.transpose(0, 2),
                     x[:, :1].expand(2, 5, 4), x.unsqueeze(1), x[:, :1].squeeze(1),
                     x.contiguous().clone(), torch.cat([x, x * 2], 1),
                     *torch.split(x, [1, 2], 1), *torch.chunk(x, 2, 2), x[:, 1:3, ::2],
                     x[1], x[:, -1], x.flip(2), x.t() if x.ndim == 2 else x.mT,
                     torch.index_select(x, 1, torch.tensor([2, 0])),
                     F.pad(x, (1, 2, 0, 1), value=0.5), x.repeat(1, 2, 1), torch.tril(x[0]),
                     x.cumsum(2), *x.unbind(0)),
          x)


def test_indexing_and_embedding():
    emb = torch.nn.Embedding(10, 6)
    torch.nn.init.normal_(emb.weight, generator=torch.Generator().manual_seed(8))
    idx = torch.tensor([[1, 9, 3], [0, 0, 7]])

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = emb

        def forward(self, idx, x):
            return self.emb(idx), x[idx[0]], torch.gather(x, 1, idx[:, :2] % 4)

    x = randn(10, 4, seed=9)
    check(None, idx, x, module=M())


def test_reductions():
    x = randn(3, 4, 5, seed=10)
    check(lambda x: (x.mean(), x.mean(1), x.mean((0, 2), keepdim=True), x.sum(-1), x.sum(),
                     x.amax(1), x.amin((1, 2)), x.max(2).values, x.max(2).indices,
                     x.min(1, keepdim=True)[0], x.argmax(1), x.argmin(), x.var(1), x.std(2),
                     x.prod(1), (x > 0).any(1), (x > -3).all(), torch.logsumexp(x, 1)),
          x)


def test_matmul_family():
    a, b = randn(2, 3, 4, seed=11), randn(2, 4, 5, seed=12)
    w = randn(5, 4, seed=13)
    check(lambda a, b, w: (a @ b, torch.bmm(a, b), a[0] @ b[0], torch.mm(a[0], w.t()),
                           torch.addmm(w[:, 0], a[1], b[1]), F.linear(a, w), a @ w[0],
                           torch.matmul(a, b[0])),
          a, b, w)


def test_conv_pool_and_norm():
    x = randn(2, 4, 9, 9, seed=14)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=True)
            self.grouped = torch.nn.Conv2d(6, 6, 3, stride=2, padding=2, dilation=2, groups=3)
            self.depthwise = torch.nn.Conv2d(6, 6, 3, padding=(0, 1), groups=6, bias=False)
            self.conv1d = torch.nn.Conv1d(4, 3, 3, padding=1)
            self.up = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1,
                                               groups=2)
            self.bn = torch.nn.BatchNorm2d(6)
            self.ln = torch.nn.LayerNorm([9])
            self.gn = torch.nn.GroupNorm(2, 4)
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)
            self.bn.weight.data.uniform_(0.5, 1.5)
            self.bn.bias.data.uniform_(-0.5, 0.5)

        def forward(self, x):
            y = self.bn(self.conv(x))
            return (y, self.grouped(y), self.depthwise(y), self.conv1d(x[:, :, 0]),
                    F.max_pool2d(y, 3, 2, 1), F.max_pool2d(y, 2, ceil_mode=True),
                    F.avg_pool2d(y, 3, 2, 1), F.avg_pool2d(y, 3, 2, 1, count_include_pad=False),
                    F.adaptive_avg_pool2d(y, 1), F.adaptive_avg_pool2d(y, (3, 3)),
                    F.adaptive_avg_pool2d(y, (2, 4)), self.ln(x), self.gn(x), self.up(x))

    torch.manual_seed(15)
    check(None, x, module=M())


def test_attention_and_creation_ops():
    q, k, v = randn(2, 2, 5, 8, seed=16), randn(2, 2, 6, 8, seed=17), randn(2, 2, 6, 8, seed=18)
    check(lambda q, k, v: (F.scaled_dot_product_attention(q, k, v),
                           F.scaled_dot_product_attention(q, k[:, :, :5], v[:, :, :5],
                                                          is_causal=True),
                           F.scaled_dot_product_attention(q, k, v, attn_mask=k[0, 0, :5, :6] > 0),
                           q + torch.arange(8), q * torch.ones(5, 8), torch.full_like(q, 2.0) - q,
                           q + torch.zeros_like(q), torch.arange(q.shape[2]).float()),
          q, k, v)


# -- models --------------------------------------------------------------------------------

def _block(cin, cout, stride):
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(cout)
            self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = torch.nn.BatchNorm2d(cout)
            self.down = None if stride == 1 and cin == cout else torch.nn.Sequential(
                torch.nn.Conv2d(cin, cout, 1, stride, bias=False), torch.nn.BatchNorm2d(cout))

        def forward(self, x):
            y = F.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return F.relu(y + (x if self.down is None else self.down(x)))
    return Block()


def small_resnet(width=8, classes=10):
    """A ResNet-like network: a stem, two residual stages, pooling and a classifier, with
    batch-norm running statistics that are not the identity."""
    torch.manual_seed(20)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, width, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(width),
        torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2, 1),
        _block(width, width, 1), _block(width, 2 * width, 2),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(2 * width, classes))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


def mlp():
    torch.manual_seed(21)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 32),
                               torch.nn.SiLU(), torch.nn.LayerNorm(32),
                               torch.nn.Linear(32, 4)).eval()


def encoder():
    torch.manual_seed(22)
    return torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True).eval()


@pytest.mark.parametrize("make, shape", [(small_resnet, (3, 12, 12)), (mlp, (16,)),
                                         (encoder, (5, 16))], ids=["resnet", "mlp", "encoder"])
def test_model_dynamic_batch(make, shape):
    model = make()
    example = randn(1, *shape, seed=23)  # batch 1: one specialised library, for batch 8
    mod = graph.from_torch(model, (example,), dynamic_shapes="batch")
    assert mod.specializer.dims == ((mod.input_names[0], 0, "batch"),)
    lib = graph.build(mod, target="llvm")
    for batch in (1, 8):
        x = randn(batch, *shape, seed=24 + batch)
        (got,) = lib.run(x.numpy())
        with torch.no_grad():
            compare([got], model(x), atol=1e-5)


def test_dynamic_dims_in_torch_export_form_and_range():
    model = mlp()
    batch = torch.export.Dim("n", min=1, max=4)
    mod = graph.from_torch(model, (randn(3, 16, seed=30),), dynamic_shapes={"input": {0: batch}})
    assert mod.specializer.dims == (("input", 0, "n"),)
    with pytest.raises(ShapeError, match="input 'input' axis 0"):
        mod.specializer.rebuild({"n": 9})
    assert mod.specializer.rebuild({"n": 2}).function.params[0].type.shape == (2, 16)


def test_names_of_inputs_outputs_and_weights():
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 2)

        def forward(self, image, mask):
            return self.fc(image) * mask, image.sum()

    mod = graph.from_torch(M(), (randn(4, 3), randn(4, 2)))
    assert mod.input_names == ("image", "mask")
    assert mod.output_names == ("output0", "output1")
    assert "@fc.bias" in str(mod) and "@fc.weight" in str(mod)


# -- errors --------------------------------------------------------------------------------

def test_unsupported_ops_are_listed_together():
    def fn(x):
        return torch.fft.fft(x).real + torch.special.i0(x) + torch.cosine_similarity(x, x, 0)

    with pytest.raises(UnsupportedOpError) as err:
        graph.from_torch(Fn(fn, 1), (randn(4, 4),))
    text = str(err.value)
    assert "aten._fft" in text and "aten.i0" in text and "(nodes " in text


def test_bad_inputs():
    with pytest.raises(UserError, match="torch.nn.Module"):
        graph.from_torch(lambda x: x, (randn(2),))
    with pytest.raises(UserError, match="example input 0"):
        graph.from_torch(mlp(), (np.ones((2, 16), "float32"),))
    with pytest.raises(UserError, match="do not fit"):
        graph.from_torch(mlp(), (randn(2, 16), randn(2, 16)))
    with pytest.raises(UserError, match="tuple of tensors"):
        graph.from_torch(mlp(), 3)
    with pytest.raises(UserError, match="dynamic_shapes"):
        graph.from_torch(mlp(), (randn(2, 16),), dynamic_shapes="everything")
