"""The shared Trainer: reproducibility, event weights, early stopping, schedules, resume."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from fivesigma.errors import ConfigError, DataError, ModelError
from fivesigma.training import Standardiser, Trainer, TrainerConfig, weighted_mean
from fivesigma.training.trainer import CHECKPOINT_NAME, TrainHistory

BCE = torch.nn.BCEWithLogitsLoss(reduction="none")


def bce(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return BCE(out[:, 0], target)


class Net(torch.nn.Module):
    """Small net with dropout, so the global torch RNG matters for reproducibility."""

    def __init__(self, n_in: int = 3) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(n_in, 16),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def make_net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net()


def toy(n: int = 600, seed: int = 0, negative: bool = False) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.5).float()
    x = torch.randn(n, 3, generator=g) + y[:, None] * torch.tensor([1.0, 0.5, 0.0])
    w = torch.rand(n, generator=g) + 0.5
    if negative:
        w = torch.where(torch.rand(n, generator=g) < 0.2, -w, w)
    return x, y, w


def cfg(**kw: object) -> TrainerConfig:
    base = {"epochs": 6, "batch_size": 64, "progress": False, "early_stopping_patience": None}
    base.update(kw)
    return TrainerConfig(**base)  # type: ignore[arg-type]


def state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------------------
# weighted loss


def test_weighted_mean_is_sum_of_weighted_losses_over_sum_of_weights() -> None:
    loss = torch.tensor([1.0, 2.0, 4.0])
    w = torch.tensor([0.5, 1.0, -0.25])
    expected = (0.5 * 1 + 1 * 2 - 0.25 * 4) / (0.5 + 1.0 - 0.25)
    assert weighted_mean(loss, w).item() == pytest.approx(expected)


def test_weighted_mean_with_non_positive_weight_sum_normalises_by_abs_weights() -> None:
    loss = torch.tensor([1.0, 3.0])
    w = torch.tensor([1.0, -1.0])  # sums to zero: dividing by it would give inf
    assert weighted_mean(loss, w).item() == pytest.approx((1.0 - 3.0) / 2.0)
    assert math.isfinite(weighted_mean(loss, -torch.ones(2)).item())


def test_integer_weight_equals_duplicated_event_in_full_batch_training() -> None:
    # one full batch per epoch and no dropout: weight 2 must act exactly like two copies
    x, y, _ = toy(40, seed=3)
    w2 = torch.ones(40)
    w2[:10] = 2.0
    xd = torch.cat([x, x[:10]])
    yd = torch.cat([y, y[:10]])
    torch.manual_seed(1)
    a = torch.nn.Linear(3, 1)
    b = torch.nn.Linear(3, 1)
    b.load_state_dict(a.state_dict())
    c = cfg(batch_size=1000, scheduler="none")
    Trainer(c).fit(a, (x, y, w2), None, bce)
    Trainer(c).fit(b, (xd, yd, torch.ones(50)), None, bce)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_negative_weights_train_without_crash() -> None:
    x, y, w = toy(300, negative=True)
    assert (w < 0).any()
    net = make_net()
    hist = Trainer(cfg(epochs=3)).fit(net, (x, y, w), (x, y, w), bce)
    assert all(math.isfinite(v) for v in hist.train_loss + hist.val_loss)


# --------------------------------------------------------------------------------------
# reproducibility and global state


def test_same_config_gives_bit_identical_weights_and_other_seed_differs() -> None:
    x, y, w = toy()
    nets = []
    for seed in (0, 0, 1):
        net = make_net()
        Trainer(cfg(seed=seed, epochs=3)).fit(net, (x, y, w), None, bce)
        nets.append(net)
    assert state_equal(nets[0], nets[1])
    assert not state_equal(nets[0], nets[2])


def test_fit_restores_the_callers_random_streams_and_threads() -> None:
    x, y, w = toy(100)
    net = make_net(5)

    def seed_all() -> None:
        torch.manual_seed(123)
        np.random.seed(123)
        random.seed(123)

    seed_all()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    seed_all()
    threads = torch.get_num_threads()
    Trainer(cfg(epochs=1, num_threads=1, seed=9)).fit(net, (x, y, w), None, bce)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]
    assert torch.get_num_threads() == threads


# --------------------------------------------------------------------------------------
# early stopping, schedules


def test_early_stopping_restores_weights_of_best_epoch() -> None:
    x, y, w = toy(400)
    # validation labels are flipped: learning the training data makes it worse every epoch
    valid = (x, 1.0 - y, w)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    net = make_net()

    def snap(epoch: int, history: TrainHistory) -> None:
        snapshots[epoch] = {k: v.clone() for k, v in net.state_dict().items()}

    hist = Trainer(cfg(epochs=30, early_stopping_patience=3, lr=1e-2), [snap]).fit(
        net, (x, y, w), valid, bce
    )
    assert hist.stopped_early
    assert len(hist.train_loss) == hist.best_epoch + 3 < 30
    assert hist.val_loss[hist.best_epoch - 1] == min(hist.val_loss)
    best = snapshots[hist.best_epoch]
    assert all(torch.equal(best[k], v) for k, v in net.state_dict().items())


def test_cosine_schedule_follows_closed_form() -> None:
    x, y, w = toy(100)
    hist = Trainer(cfg(epochs=5, lr=0.01, scheduler="cosine")).fit(make_net(), (x, y, w), None, bce)
    expected = [0.01 * (1 + math.cos(math.pi * e / 5)) / 2 for e in range(5)]
    assert hist.lr == pytest.approx(expected)


def test_onecycle_and_plateau_and_none_change_lr_as_documented() -> None:
    x, y, w = toy(200)
    one = Trainer(cfg(epochs=4, lr=0.01, scheduler="onecycle")).fit(
        make_net(), (x, y, w), None, bce
    )
    assert max(one.lr) <= 0.01 and one.lr[0] < 0.01  # warms up from below the peak
    none = Trainer(cfg(epochs=3, lr=0.01, scheduler="none")).fit(make_net(), (x, y, w), None, bce)
    assert none.lr == [0.01, 0.01, 0.01]
    valid = (x, 1.0 - y, w)  # never improves -> plateau must lower the lr
    plat = Trainer(cfg(epochs=8, lr=0.01, scheduler="plateau", early_stopping_patience=4)).fit(
        make_net(), (x, y, w), valid, bce
    )
    assert plat.lr[-1] == pytest.approx(0.001)


# --------------------------------------------------------------------------------------
# checkpoints and resume


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle", "plateau"])
def test_interrupted_run_resumes_to_identical_weights_and_history(tmp_path, scheduler) -> None:
    x, y, w = toy(500)
    valid = toy(200, seed=9)
    c = cfg(epochs=6, scheduler=scheduler, early_stopping_patience=10)

    straight = make_net()
    h_straight = Trainer(c).fit(straight, (x, y, w), valid, bce)

    def interrupt(epoch: int, history: TrainHistory) -> None:
        if epoch == 3:
            raise KeyboardInterrupt

    ck = cfg(
        epochs=6,
        scheduler=scheduler,
        early_stopping_patience=10,
        checkpoint_dir=str(tmp_path / "ck"),
    )
    first = make_net()
    with pytest.raises(KeyboardInterrupt):
        Trainer(ck, [interrupt]).fit(first, (x, y, w), valid, bce)
    assert (tmp_path / "ck" / CHECKPOINT_NAME).is_file()

    # a fresh process would build a freshly initialised model: use a different init
    resumed = make_net(seed=77)
    epochs_seen: list[int] = []
    h_resumed = Trainer(ck, [lambda e, h: epochs_seen.append(e)]).fit(
        resumed, (x, y, w), valid, bce
    )
    assert epochs_seen == [4, 5, 6]
    assert state_equal(straight, resumed)
    assert h_resumed.to_dict() == h_straight.to_dict()


def test_extending_a_finished_run_equals_training_longer(tmp_path) -> None:
    x, y, w = toy(300)
    straight = make_net()
    Trainer(cfg(epochs=6, scheduler="none")).fit(straight, (x, y, w), None, bce)
    ck = str(tmp_path / "ck")
    Trainer(cfg(epochs=3, scheduler="none", checkpoint_dir=ck)).fit(
        make_net(), (x, y, w), None, bce
    )
    longer = make_net(seed=5)
    hist = Trainer(cfg(epochs=6, scheduler="none", checkpoint_dir=ck)).fit(
        longer, (x, y, w), None, bce
    )
    assert hist.epochs_run == 6
    assert state_equal(straight, longer)


def test_checkpoint_loads_with_weights_only_and_holds_resume_state(tmp_path) -> None:
    x, y, w = toy(100)
    Trainer(cfg(epochs=2, checkpoint_dir=str(tmp_path))).fit(make_net(), (x, y, w), (x, y, w), bce)
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["epoch"] == 2
    for key in (
        "model",
        "optimizer",
        "scheduler",
        "best_state",
        "rng_torch",
        "rng_numpy",
        "rng_python",
        "rng_loader",
        "bad_epochs",
        "history",
    ):
        assert key in state
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_checkpoint_of_another_run_is_refused_in_one_line_saying_how_to_restart(tmp_path) -> None:
    x, y, w = toy(100)
    Trainer(cfg(epochs=1, checkpoint_dir=str(tmp_path))).fit(make_net(), (x, y, w), None, bce)
    with pytest.raises(ModelError, match="different run") as err:
        Trainer(cfg(epochs=1, lr=0.5, checkpoint_dir=str(tmp_path))).fit(
            make_net(), (x, y, w), None, bce
        )
    msg = str(err.value)
    assert "\n" not in msg
    assert f"remove the checkpoint directory '{tmp_path}'" in msg and "another --out" in msg
    assert (tmp_path / CHECKPOINT_NAME).is_file()  # another run's checkpoint is kept


def _damage(path, how: str) -> None:
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"garbage")
    elif how == "empty":
        path.write_bytes(b"")
    else:  # a checkpoint of this run whose content is broken
        state = torch.load(path, weights_only=True)
        state["optimizer"] = {"state": {}, "param_groups": "broken"}
        del state["rng_numpy"]
        torch.save(state, path)


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "broken inside"])
def test_a_damaged_checkpoint_restarts_the_training_with_a_warning(tmp_path, how) -> None:
    x, y, w = toy(200)
    c = cfg(epochs=2, checkpoint_dir=str(tmp_path / "ck"))
    straight = make_net()
    h_straight = Trainer(cfg(epochs=2)).fit(straight, (x, y, w), (x, y, w), bce)
    Trainer(c).fit(make_net(), (x, y, w), (x, y, w), bce)  # a real checkpoint, epoch 2
    path = tmp_path / "ck" / CHECKPOINT_NAME
    _damage(path, how)

    again = make_net()
    epochs_seen: list[int] = []
    with pytest.warns(UserWarning, match="is damaged") as caught:
        hist = Trainer(c, [lambda e, h: epochs_seen.append(e)]).fit(
            again, (x, y, w), (x, y, w), bce
        )
    msg = next(str(m.message) for m in caught if "is damaged" in str(m.message))
    assert "\n" not in msg and str(path) in msg
    assert msg.endswith("starting the training from the beginning")
    assert epochs_seen == [1, 2]  # from the beginning, to the end
    assert hist.to_dict() == h_straight.to_dict() and state_equal(straight, again)
    assert torch.load(path, weights_only=True)["epoch"] == 2  # a sound checkpoint again


def test_a_file_that_is_not_a_checkpoint_is_refused_and_kept(tmp_path) -> None:
    x, y, w = toy(100)
    torch.save({"weights": torch.zeros(2)}, tmp_path / CHECKPOINT_NAME)
    with pytest.raises(ModelError, match="not a fivesigma trainer checkpoint") as err:
        Trainer(cfg(epochs=1, checkpoint_dir=str(tmp_path))).fit(make_net(), (x, y, w), None, bce)
    assert "\n" not in str(err.value) and "another --out" in str(err.value)
    assert (tmp_path / CHECKPOINT_NAME).is_file()


# --------------------------------------------------------------------------------------
# generic inputs, progress, bad input


class MaskedMean(torch.nn.Module):
    """Jet-tagger shaped model: padded constituents + mask, keyword inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.phi = torch.nn.Linear(2, 8)
        self.rho = torch.nn.Linear(8, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.phi(x) * mask[..., None]  # (batch, n_const, 8)
        return self.rho(h.sum(1) / mask.sum(1, keepdim=True).clamp_min(1))  # (batch, 1)


def test_dict_batches_pass_keyword_inputs() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 5, 2, generator=g)
    mask = (torch.rand(128, 5, generator=g) < 0.7).float()
    y = (x[..., 0].mean(1) > 0).float()
    data = {"x": x, "mask": mask, "target": y, "weight": torch.ones(128)}
    torch.manual_seed(0)
    net = MaskedMean()
    hist = Trainer(cfg(epochs=8, lr=0.02)).fit(net, data, data, bce)
    assert hist.train_loss[-1] < hist.train_loss[0]


def test_progress_goes_to_stderr_only_when_enabled(capsys) -> None:
    x, y, w = toy(100)
    Trainer(cfg(epochs=1, progress=False)).fit(make_net(), (x, y, w), None, bce)
    assert capsys.readouterr().err == ""
    Trainer(cfg(epochs=2, progress=True)).fit(make_net(), (x, y, w), (x, y, w), bce)
    out = capsys.readouterr()
    assert "epoch" in out.err and "val" in out.err and out.out == ""


def test_validation_loss_does_not_depend_on_its_batch_size() -> None:
    """eval_batch_size only bounds memory: the same weights, history and run id."""
    x, y, w = toy(300)
    valid = toy(130, seed=1)
    seen: list[int] = []

    class Counting(Net):
        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            if not self.training:
                seen.append(len(inp))
            return super().forward(inp)

    runs = []
    for size in (None, 32):
        torch.manual_seed(0)
        net = Counting()
        seen.clear()
        hist = Trainer(cfg(epochs=3, eval_batch_size=size)).fit(net, (x, y, w), valid, bce)
        runs.append((net, hist, max(seen)))
    (net_a, hist_a, big), (net_b, hist_b, small) = runs
    assert big == 130 and small == 32
    np.testing.assert_allclose(hist_a.val_loss, hist_b.val_loss, rtol=1e-6)
    assert state_equal(net_a, net_b)
    from fivesigma.training.trainer import _as_data

    train_data, valid_data = _as_data((x, y, w), "t", True), _as_data(valid, "v", True)
    ids = [
        Trainer(cfg(eval_batch_size=s))._run_id(net_a, train_data, valid_data) for s in (None, 32)
    ]
    assert ids[0] == ids[1]
    with pytest.raises(ConfigError, match="eval_batch_size must be a positive integer"):
        Trainer(cfg(eval_batch_size=0))


def test_jet_tagger_validates_in_small_batches() -> None:
    from fivesigma.tasks.jets.tagger import _VALID_BATCH, JetTagger

    assert JetTagger()._trainer_config().eval_batch_size == _VALID_BATCH <= 256


def test_bad_config_and_data_raise_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="scheduler 'linear'.*accepted: none, cosine"):
        Trainer(cfg(scheduler="linear"))
    with pytest.raises(ConfigError, match="epochs"):
        Trainer(cfg(epochs=0))
    x, y, w = toy(50)
    with pytest.raises(DataError, match="different lengths"):
        Trainer(cfg()).fit(make_net(), (x, y, w[:-1]), None, bce)
    with pytest.raises(DataError, match="'weight'"):
        Trainer(cfg()).fit(make_net(), {"x": x, "target": y}, None, bce)


def test_diverging_training_raises_model_error() -> None:
    x, y, w = toy(50)
    x[0, 0] = float("nan")
    with pytest.raises(ModelError, match="diverged in epoch 1"):
        Trainer(cfg(batch_size=100)).fit(make_net(), (x, y, w), None, bce)


def test_history_to_dict_is_json_ready() -> None:
    import json

    h = TrainHistory(train_loss=[1.0], val_loss=[float("nan")], lr=[0.1], best_epoch=1)
    d = json.loads(json.dumps(h.to_dict()))
    assert d["val_loss"] == [None] and d["epochs_run"] == 1
    assert TrainHistory.from_dict(d).train_loss == [1.0]


# --------------------------------------------------------------------------------------
# Standardiser


def test_standardiser_matches_sklearn_unweighted_and_handles_constant_columns() -> None:
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(5, 3, 200), np.full(200, 7.0), rng.exponential(2, 200)])
    ours = Standardiser().fit_transform(X)
    ref = StandardScaler().fit_transform(X)
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    assert np.all(ours[:, 1] == 0)  # constant column centred, not blown up


def test_standardiser_weights_act_like_repetition_and_round_trip() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 2))
    w = rng.integers(1, 4, 50)
    weighted = Standardiser().fit(X, w)
    repeated = Standardiser().fit(np.repeat(X, w, axis=0))
    np.testing.assert_allclose(weighted.mean_, repeated.mean_, rtol=1e-12)
    np.testing.assert_allclose(weighted.scale_, repeated.scale_, rtol=1e-12)
    back = Standardiser.from_dict(weighted.to_dict())
    assert np.array_equal(back.transform(X), weighted.transform(X))
    back2 = Standardiser.from_arrays(weighted.to_arrays("s."), "s.")
    assert np.array_equal(back2.scale_, weighted.scale_)
    neg = Standardiser().fit(X, -w)  # negative weights: |w| statistics, no crash
    np.testing.assert_allclose(neg.scale_, weighted.scale_)
    with pytest.raises(ModelError, match="not fitted"):
        Standardiser().transform(X)


# --------------------------------------------------------------------------------------
# Devices


def test_resolve_device_accepts_cpu_and_auto_and_names_bad_devices() -> None:
    from fivesigma.training import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ConfigError, match="unknown device 'gpu0'.*accepted: cpu, cuda"):
        resolve_device("gpu0")
    with pytest.raises(ConfigError, match="'meta' is not supported"):
        resolve_device("meta")
    with pytest.raises(ConfigError, match="must be a string"):
        resolve_device(0)  # type: ignore[arg-type]
    from fivesigma.training.trainer import device_name

    assert device_name("cpu") == "CPU"
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        device_name("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_clear_error_before_training() -> None:
    from fivesigma.training import resolve_device

    with pytest.raises(ConfigError, match="PyTorch sees no CUDA GPU here.*use device 'cpu'"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        cfg(device="cuda:0").validate()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_the_gpu_learns_and_keeps_the_model_there() -> None:
    x, y, w = toy(400)
    model = make_net(0)
    hist = Trainer(cfg(epochs=4, device="cuda")).fit(model, (x, y, w), (x, y, w), bce)
    assert next(model.parameters()).is_cuda
    assert hist.train_loss[-1] < hist.train_loss[0]


# -- what the coming tasks need: no target, streams, graphs ------------------------------


def _reconstruction(model, batch):
    return ((model(batch["x"]) - batch["x"]) ** 2).mean(dim=1)


def test_an_autoencoder_trains_on_a_reconstruction_objective_without_target():
    gen = torch.Generator().manual_seed(0)
    latent = torch.randn(512, 1, generator=gen)
    x = torch.cat([latent, 2 * latent, -latent], dim=1) + 0.01 * torch.randn(512, 3, generator=gen)
    torch.manual_seed(0)
    ae = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Linear(1, 3))
    config = TrainerConfig(epochs=30, batch_size=64, lr=0.02, progress=False)
    hist = Trainer(config).fit(ae, {"x": x[:400]}, {"x": x[400:]}, objective=_reconstruction)
    assert hist.val_loss[-1] < 0.05 * hist.val_loss[0]
    with pytest.raises(ModelError, match="exactly one of loss_fn"):
        Trainer(config).fit(ae, {"x": x}, None)


def test_a_density_objective_returns_its_own_weights():
    """A Gaussian fitted by negative log-likelihood; weights from the objective count."""
    x = torch.randn(2000, generator=torch.Generator().manual_seed(1)) * 2.0 + 3.0

    class Gaussian(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mu = torch.nn.Parameter(torch.zeros(()))
            self.log_sigma = torch.nn.Parameter(torch.zeros(()))

        def forward(self, v):
            z = (v - self.mu) / self.log_sigma.exp()
            return 0.5 * z**2 + self.log_sigma  # -log p up to a constant

    model = Gaussian()

    def nll(m, batch):
        return m(batch["x"]), torch.ones_like(batch["x"])

    config = TrainerConfig(epochs=60, batch_size=256, lr=0.05, scheduler="none", progress=False)
    Trainer(config).fit(model, {"x": x}, None, objective=nll)
    assert float(model.mu) == pytest.approx(float(x.mean()), abs=0.05)
    assert float(model.log_sigma.exp()) == pytest.approx(float(x.std()), rel=0.05)


class _Stream(torch.utils.data.IterableDataset):
    """A training set produced chunk by chunk, never held in memory as a whole."""

    def __init__(self, chunks: int, seed: int):
        self.chunks, self.seed = chunks, seed

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed)
        for _ in range(self.chunks):
            x = torch.randn(64, 2, generator=gen)
            yield {"x": x, "target": (x[:, 0] > 0).float(), "weight": torch.ones(64)}


def test_a_streaming_loader_trains_and_is_reproducible():
    def run():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Flatten(0))
        loader = torch.utils.data.DataLoader(_Stream(20, seed=3), batch_size=None)
        config = TrainerConfig(epochs=4, lr=0.05, progress=False)

        def bce(out, target):
            return torch.nn.functional.binary_cross_entropy_with_logits(
                out, target, reduction="none"
            )

        def call(m, batch):
            return bce(m(batch["x"]), batch["target"])

        hist = Trainer(config).fit(model, loader, _Stream(4, seed=9), objective=call)
        return model, hist

    (a, hist_a), (b, hist_b) = run(), run()
    assert hist_a.train_loss == hist_b.train_loss and state_equal(a, b)
    assert hist_a.val_loss[-1] < hist_a.val_loss[0]
    with pytest.raises(ConfigError, match="onecycle"):
        config = TrainerConfig(epochs=1, scheduler="onecycle", progress=False)
        Trainer(config).fit(a, _Stream(2, 0), None, objective=lambda m, b: m(b["x"]) ** 2)


def test_graph_batches_of_variable_size_train_through_pyg_loader():
    pyg = pytest.importorskip("torch_geometric")
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader
    from torch_geometric.nn import global_mean_pool

    gen = torch.Generator().manual_seed(0)
    graphs = []
    for i in range(120):
        n = int(torch.randint(3, 12, (1,), generator=gen))
        label = i % 2
        x = torch.randn(n, 2, generator=gen) + (1.5 if label else 0.0)
        edges = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
        graphs.append(Data(x=x, edge_index=edges, y=torch.tensor([float(label)])))

    class GraphNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = pyg.nn.GraphConv(2, 8)
            self.head = torch.nn.Linear(8, 1)

        def forward(self, batch):
            h = torch.relu(self.conv(batch.x, batch.edge_index))
            return self.head(global_mean_pool(h, batch.batch)).squeeze(-1)

    torch.manual_seed(0)
    model = GraphNet()
    train = DataLoader(graphs[:100], batch_size=16, shuffle=True,
                       generator=torch.Generator().manual_seed(1))  # fmt: skip
    valid = DataLoader(graphs[100:], batch_size=20)

    def bce(out, target):
        return torch.nn.functional.binary_cross_entropy_with_logits(out, target, reduction="none")

    hist = Trainer(TrainerConfig(epochs=15, lr=0.02, progress=False)).fit(model, train, valid, bce)
    assert hist.val_loss[hist.best_epoch - 1] < 0.5 * hist.val_loss[0]
