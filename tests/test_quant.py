"""Quantisation-aware training layers: exact forward pass, gradients, pruning, accuracy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fivesigma.errors import ConfigError, ModelError  # noqa: E402
from fivesigma.export.fixed_point import (  # noqa: E402
    FixedPoint,
    FixedPointReference,
    count_overflow,
    quantize,
)
from fivesigma.nn.quant import (  # noqa: E402
    FakeQuant,
    QDense,
    QReLU,
    fake_quantize,
    nonzero_weights,
    prune_to_sparsity,
    quant_cnn,
    quant_mlp,
)

MODES = list(itertools.product(["TRN", "RND"], ["WRAP", "SAT"]))


def toy_classes(n: int, seed: int = 0, n_features: int = 16, n_classes: int = 5):
    """Five overlapping Gaussian classes in 16 dimensions (Bayes accuracy about 85%)."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(123).normal(scale=0.6, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, n)
    x = means[y] + rng.normal(size=(n, n_features))
    return x.astype(np.float32), y


def train(model, x, y, epochs: int, lr: float = 3e-3, seed: int = 0):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt)).split(256):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model


@pytest.mark.parametrize(("rounding", "saturation"), MODES)
def test_fake_quantize_equals_numpy(rounding, saturation):
    fp = FixedPoint(6, 2, True, rounding, saturation)
    x = np.random.default_rng(0).uniform(-5, 5, 3000).astype(np.float32)
    x[:40] = np.arange(-20, 20) * fp.lsb / 2  # the ties
    got = fake_quantize(torch.tensor(x), fp).numpy()
    np.testing.assert_array_equal(got, quantize(x, fp))


def test_straight_through_gradient():
    fp = FixedPoint(6, 2)  # SAT, [-2, 1.9375]
    x = torch.tensor([-3.0, -1.0, 0.3, 1.9, 2.5], requires_grad=True)
    fake_quantize(x, fp).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    x.grad = None
    fake_quantize(x, fp, clip_grad=False).sum().backward()
    assert x.grad.tolist() == [1.0] * 5
    x.grad = None
    fake_quantize(x, FixedPoint(6, 2, saturation="WRAP")).sum().backward()
    assert x.grad.tolist() == [1.0] * 5


@pytest.mark.parametrize(("width", "integer"), [(8, 3), (6, 2), (16, 6)])
def test_torch_forward_equals_reference_mlp(width, integer):
    torch.manual_seed(width)
    model = quant_mlp([16, 64, 32, 32, 5], width=width, integer=integer,
                      input_type=FixedPoint(width, 4))  # fmt: skip
    x = (
        np.random.default_rng(1).normal(scale=4, size=(2000, 16)).astype(np.float32)
    )  # many saturate
    ref = FixedPointReference.from_model(model)
    want = ref.predict(x)
    assert ref.overflows["input"] == count_overflow(x, FixedPoint(width, 4)) > 0
    got = model(torch.tensor(x, dtype=torch.float32)).detach().numpy()
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(want)) > 100  # not a constant network
    trace = ref.trace(x)
    assert list(trace) == ["input", "fc1", "relu1", "fc2", "relu2", "fc3", "relu3", "fc4"]
    np.testing.assert_array_equal(trace["fc4"], want)


def test_torch_forward_equals_reference_cnn():
    torch.manual_seed(0)
    model = quant_cnn(width=8, integer=6, input_type=FixedPoint(8, 8, signed=False))
    x = np.random.default_rng(2).exponential(40, size=(300, 1, 18, 14))
    ref = FixedPointReference.from_model(model)
    want = ref.predict(x)
    got = model(torch.tensor(x, dtype=torch.float32)).detach().numpy()
    np.testing.assert_array_equal(got, want)
    assert want.shape == (300, 1) and ref.overflows["input"] > 0


def test_overflow_of_a_narrow_type_is_counted():
    torch.manual_seed(0)
    model = quant_mlp([4, 8, 2], width=4, integer=1, input_type=FixedPoint(4, 1))
    x = np.random.default_rng(0).normal(scale=3, size=(500, 4))
    ref = FixedPointReference.from_model(model)
    ref.predict(x)
    assert ref.overflows["input"] == count_overflow(x, FixedPoint(4, 1)) > 100
    assert ref.overflow_total >= ref.overflows["input"]


def test_unsupported_layers_named():
    model = torch.nn.Sequential(FakeQuant("ap_fixed<8,3>"), torch.nn.LSTM(4, 4))
    with pytest.raises(ModelError) as err:
        FixedPointReference.from_model(model)
    message = str(err.value)
    assert "LSTM" in message and "QDense" in message and "\n" not in message
    with pytest.raises(ModelError, match="input quantiser"):
        FixedPointReference.from_model(torch.nn.Sequential(QDense(4, 2, "ap_fixed<8,1>")))
    with pytest.raises(ConfigError, match="entries"):
        quant_mlp([4, 8, 2], width=[8, 8, 8], integer=3, input_type=None)


def test_pruning_masks_stay_fixed_through_training():
    x, y = toy_classes(2000)
    torch.manual_seed(0)
    model = quant_mlp([16, 64, 32, 32, 5], width=8, integer=3, input_type=FixedPoint(12, 4))
    report = prune_to_sparsity(model, 0.6)
    assert abs(report["sparsity"] - 0.6) < 0.05
    masks = {n: b.clone() for n, b in model.named_buffers() if n.endswith("weight_mask")}
    train(model, x, y, epochs=1)
    for name, mask in masks.items():
        layer = model.get_submodule(name.rsplit(".", 1)[0])
        assert torch.all(layer.quantized_weight()[mask == 0] == 0)
    assert nonzero_weights(model)["nonzero"] <= report["nonzero"]
    ref = FixedPointReference.from_model(model)
    assert (
        sum(np.count_nonzero(lay.weight) for lay in ref.layers if lay.weight is not None)
        == (nonzero_weights(model)["nonzero"])
    )
    with pytest.raises(ConfigError):
        prune_to_sparsity(model, 1.0)


def test_qat_encoder_trains_inside_a_float_vae():
    class VAE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = quant_mlp([57, 28, 15, 8], width=8, integer=3,
                                     input_type=FixedPoint(12, 6))  # fmt: skip
            self.logvar = torch.nn.Linear(57, 8)
            self.decoder = torch.nn.Sequential(torch.nn.Linear(8, 28), torch.nn.ReLU(),
                                               torch.nn.Linear(28, 57))  # fmt: skip

        def forward(self, x):
            mu, logvar = self.encoder(x), self.logvar(x)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            return self.decoder(z), mu, logvar

    torch.manual_seed(0)
    vae = VAE()
    x = torch.randn(512, 57)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    before = vae.encoder.fc1.weight.detach().clone()
    losses = []
    for _ in range(30):
        opt.zero_grad()
        rec, mu, logvar = vae(x)
        kl = -0.5 * torch.mean(1 + logvar - mu**2 - logvar.exp())
        loss = torch.nn.functional.mse_loss(rec, x) + 0.1 * kl
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert not torch.equal(before, vae.encoder.fc1.weight) and losses[-1] < losses[0]
    # the trained encoder alone is what the firmware runs: mu, and |mu|^2 as the score
    ref = FixedPointReference.from_model(vae.encoder)
    mu_ref = ref.predict(x.numpy())
    np.testing.assert_array_equal(vae.encoder(x).detach().numpy(), mu_ref)
    assert mu_ref.shape == (512, 8)


def test_relu_output_is_on_its_grid():
    relu = QReLU("ap_ufixed<4,2,AP_RND,AP_SAT>")
    out = relu(torch.tensor([-1.0, 0.1, 0.2, 3.9, 9.0]))
    assert out.tolist() == [0.0, 0.0, 0.25, 3.75, 3.75]


@pytest.mark.slow
def test_qat_8bit_accuracy_within_one_percent_of_float():
    x, y = toy_classes(8000, seed=0)
    xt, yt = toy_classes(20000, seed=1)
    torch.manual_seed(0)
    floating = torch.nn.Sequential(
        torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
        torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5),
    )  # fmt: skip
    qat = quant_mlp([16, 64, 32, 32, 5], width=8, integer=3, input_type=FixedPoint(12, 4))
    train(floating, x, y, epochs=6)
    train(qat, x, y, epochs=6)
    with torch.no_grad():
        acc_float = float((floating(torch.tensor(xt)).argmax(1).numpy() == yt).mean())
    acc_fixed = float((FixedPointReference.from_model(qat).predict(xt).argmax(1) == yt).mean())
    print(f"toy 5-class accuracy: float {acc_float:.4f}, 8-bit QAT (fixed point) {acc_fixed:.4f}")
    assert acc_float > 0.7
    assert acc_fixed > acc_float - 0.01
