"""hls4ml firmware: the compiled C++ emulation equals the numpy fixed-point reference bit
for bit; cache, bundles, errors, resource estimates."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("hls4ml")

from fivesigma.errors import ConfigError, MissingDependencyError, ModelError  # noqa: E402
from fivesigma.export.fixed_point import FixedPoint, FixedPointReference  # noqa: E402
from fivesigma.export.hls import Firmware, HLSSettings, resources  # noqa: E402
from fivesigma.nn.quant import FakeQuant, prune_to_sparsity, quant_cnn, quant_mlp  # noqa: E402

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")


def _toy(n, n_features=16, seed=0):
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(123).normal(scale=0.6, size=(5, n_features))
    y = rng.integers(0, 5, n)
    return (means[y] + rng.normal(size=(n, n_features))).astype(np.float32), y


def _train(model, x, y, epochs=2):
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt)).split(256):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model


def _mlp(width, integer):
    torch.manual_seed(width)
    model = quant_mlp([16, 64, 32, 32, 5], width=width, integer=integer,
                      input_type=FixedPoint(width, 4))  # fmt: skip
    x, y = _toy(3000)
    return _train(model, x, y), (16,), 3.0


def _encoder():
    torch.manual_seed(1)
    return quant_mlp([57, 28, 15, 8], width=8, integer=3, input_type=FixedPoint(10, 5)), (57,), 4.0


def _cnn():
    torch.manual_seed(2)
    model = quant_cnn(width=8, integer=6, input_type=FixedPoint(8, 8, signed=False))
    return model, (1, 18, 14), None


MODELS = {"tagger8": lambda: _mlp(8, 3), "tagger6": lambda: _mlp(6, 2), "encoder": _encoder,
          "cnn": _cnn}  # fmt: skip


@pytest.fixture(scope="module")
def hls_cache(request):
    # pytest's own cache directory: compiled projects survive between test runs
    return request.config.cache.mkdir("fivesigma-hls")


def _inputs(shape, scale, n=2000):
    rng = np.random.default_rng(7)
    if scale is None:  # calorimeter ET counts, some beyond the 8-bit input range
        return rng.exponential(40.0, size=(n, *shape)).astype(np.float32)
    x = rng.normal(scale=scale, size=(n, *shape)).astype(np.float32)
    x[:20] = 1e3  # far outside the input type: saturates
    x[20:40] = -1e3
    return x


@pytest.mark.slow
@needs_gxx
@pytest.mark.parametrize("name", list(MODELS))
def test_firmware_bit_exact(name, hls_cache, tmp_path):
    model, shape, scale = MODELS[name]()
    x = _inputs(shape, scale)
    firmware = Firmware.convert(model, shape, HLSSettings(), out_dir=tmp_path / "prj",
                                cache_dir=hls_cache)  # fmt: skip
    firmware.compile()
    print(f"{name}: compile {firmware.compile_seconds:.1f} s (cache hit: {firmware.cache_hit})")
    ref = FixedPointReference.from_model(model)
    want = ref.predict(x)
    got = firmware.predict(x)
    np.testing.assert_array_equal(got, want)
    with torch.no_grad():
        np.testing.assert_array_equal(model(torch.tensor(x)).numpy(), want)
    assert ref.overflows["input"] > 0  # the saturating inputs were exercised
    assert len(np.unique(want)) > 20
    # the bundle predicts without converting again
    firmware.save(tmp_path / "bundle")
    shutil.rmtree(tmp_path / "prj")  # the bundle stands alone
    loaded = Firmware.load(tmp_path / "bundle")
    np.testing.assert_array_equal(loaded.predict(x), got)
    assert loaded.key == firmware.key and (tmp_path / "bundle" / "firmware.json").is_file()
    # a second convert of the same weights is a cache hit
    again = Firmware.convert(model, shape, out_dir=tmp_path / "prj2", cache_dir=hls_cache)
    again.compile()
    assert again.cache_hit and again.compile_seconds < 2.0
    np.testing.assert_array_equal(again.predict(x[:50]), got[:50])


@pytest.mark.slow
@needs_gxx
def test_pruned_network_bit_exact_and_key_changes(hls_cache, tmp_path):
    model, shape, scale = _mlp(8, 3)
    key = Firmware.convert(model, shape).key
    prune_to_sparsity(model, 0.5)
    firmware = Firmware.convert(model, shape, out_dir=tmp_path / "prj", cache_dir=hls_cache)
    assert firmware.key != key
    firmware.compile()
    x = _inputs(shape, scale, n=500)
    np.testing.assert_array_equal(
        firmware.predict(x), FixedPointReference.from_model(model).predict(x)
    )


def test_missing_gxx_is_one_line(monkeypatch, tmp_path):
    model = quant_mlp([4, 3, 2], width=6, integer=2, input_type=None)
    firmware = Firmware.convert(model, (4,), cache_dir=tmp_path / "cache")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(MissingDependencyError) as err:
        firmware.compile()
    assert "g++" in str(err.value) and "\n" not in str(err.value)


def test_unsupported_layer_is_named():
    model = torch.nn.Sequential(FakeQuant("ap_fixed<8,3>"), torch.nn.LSTM(4, 4))
    with pytest.raises(ModelError) as err:
        Firmware.convert(model, (4,))
    assert "LSTM" in str(err.value) and "supported: FakeQuant" in str(err.value)
    plain = torch.nn.Sequential(FakeQuant("ap_fixed<8,3>"), torch.nn.Linear(4, 2))
    with pytest.raises(ModelError, match="Linear"):
        Firmware.convert(plain, (4,))


def test_bad_settings_and_shapes():
    with pytest.raises(ConfigError, match="io_type"):
        HLSSettings(io_type="io_stream")
    with pytest.raises(ConfigError, match="reuse_factor"):
        HLSSettings(reuse_factor=0)
    with pytest.raises(ModelError, match="expects"):
        Firmware.convert(quant_mlp([4, 3, 2], width=6, integer=2, input_type=None), (5,))
    with pytest.raises(ModelError, match="not a firmware bundle"):
        Firmware.load("/nonexistent/bundle")


@pytest.mark.parametrize("width", [6, 8, 16])
def test_resources_of_the_tagger(width):
    torch.manual_seed(0)
    model = quant_mlp([16, 64, 32, 32, 5], width=width, integer=6 if width == 16 else 3,
                      input_type=FixedPoint(width, 6 if width == 16 else 4))  # fmt: skip
    prune_to_sparsity(model, 0.25)
    report = resources(model, HLSSettings(reuse_factor=1))
    total = report["total"]
    nonzero = sum(
        int(np.count_nonzero(layer.weight))
        for layer in FixedPointReference.from_model(model).layers
        if layer.weight is not None
    )
    assert total["weights"] == 16 * 64 + 64 * 32 + 32 * 32 + 32 * 5
    assert total["nonzero_weights"] == total["multiplications"] == total["multipliers"] == nonzero
    assert total["weight_bits"] == nonzero * width
    if width == 16:
        assert total["dsp"] == nonzero  # one DSP48 per 16x16 product
    else:
        assert total["dsp"] == 0 and total["lut"] > 0
    assert total["interval_cycles"] == 1 and total["latency_cycles"] > 4
    assert total["latency_ns"] == total["latency_cycles"] * 5.0
    assert "timing closure at the clock period" in report["synthesis_needed_for"]
    # reuse factor 4: a quarter of the multipliers, an interval of 4
    slow = resources(model, HLSSettings(reuse_factor=4))["total"]
    assert slow["multipliers"] <= -(-nonzero // 4) + 4 and slow["interval_cycles"] == 4


def test_resources_of_the_cnn_need_the_input_shape():
    model = quant_cnn()
    with pytest.raises(ConfigError, match="input_shape"):
        resources(model)
    report = resources(model, input_shape=(1, 18, 14))
    conv = report["layers"]["conv1"]
    assert conv["multiplications"] == conv["nonzero_weights"] * 9 * 7
    assert report["total"]["interval_cycles"] == 63
