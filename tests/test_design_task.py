"""The design task: the rate model, the controllers, the agents' export, the tracker
resolution model against closed forms and toys, a tiny run end to end, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from _cli import assert_fails_one_line
from fivesigma.cli import main
from fivesigma.core.config import parse_config
from fivesigma.errors import ConfigError
from fivesigma.tasks.design.detector import DetectorModel, gluckstern_sigma_kappa
from fivesigma.tasks.design.env import (
    PIDController,
    ThresholdMap,
    rate_elasticity,
    run_fill,
    tune_thresholds,
)
from fivesigma.tasks.design.fill import INPUT_RATE_KHZ, Fill, RateModel


def _settings(**extra):
    return parse_config({"version": 1, "task": "design", **extra}).settings()


def _toy_model(grid=(10.0, 60.0), n=20_000, seed=0) -> RateModel:
    """One seed; zero-bias scores exponential with a mean growing with pile-up, so the
    pass fraction at threshold t is exp(-t / (5 + mu / 5)) (known in closed form)."""
    rng = np.random.default_rng(seed)
    u = rng.exponential(1.0, size=(n, 1))
    zb = [u * (5 + mu / 5) for mu in grid]
    sig = {"s": [50 + 10 * rng.standard_normal((4000, 1)) for _ in grid]}
    return RateModel(list(grid), zb, sig, ["x"])


# ----------------------------------------------------------------------- rate model


def test_rate_interpolates_log_linearly_between_grid_points():
    m = _toy_model()
    t = np.array([20.0])
    p10, p60 = math.exp(-20 / 7), math.exp(-20 / 17)
    assert m.rate_khz(t, 10.0) / INPUT_RATE_KHZ == pytest.approx(p10, rel=0.05)
    assert m.rate_khz(t, 60.0) / INPUT_RATE_KHZ == pytest.approx(p60, rel=0.03)
    # halfway: the geometric mean of the two grid points
    expected = math.sqrt(m.pass_fraction(t, 10.0) * m.pass_fraction(t, 60.0))
    assert m.pass_fraction(t, 35.0) == pytest.approx(expected, rel=1e-9)
    # signal efficiency: Gaussian(50, 10) above 40 GeV
    assert m.efficiencies(np.array([40.0]), 30.0)["s"] == pytest.approx(0.8413, abs=0.015)
    with pytest.raises(ConfigError, match="outside the rate model's grid"):
        m.rate_khz(t, 70.0)


def test_pid_controller_holds_the_rate_as_the_luminosity_falls():
    m = _toy_model()
    bmap = ThresholdMap({"x": (1.0, 200.0)})
    budget = 0.01 * INPUT_RATE_KHZ
    fill = Fill(mu_start=58.0, lifetime_h=8.0, hours=10.0, steps=40)
    t0, _ = tune_thresholds(m, float(fill.mu[0]), budget, bmap, np.random.default_rng(1), 200)
    assert m.rate_khz(t0, float(fill.mu[0])) <= budget
    g = rate_elasticity(m, t0, float(fill.mu[0]))
    # exponential tail: dlog(rate)/dlog(t) = -t / scale
    assert g == pytest.approx(t0[0] / (5 + fill.mu[0] / 5), rel=0.15)
    fixed = run_fill(PIDController(t0, budget, 0.0, 0.0), m, fill, budget, 5.0)
    pid = run_fill(PIDController(t0, budget, 0.5, 0.3, bounds=bmap, gain=g), m, fill, budget, 5)
    # the fixed menu falls far below budget; the PID one follows it down, a little
    # below budget (a PI loop lags a falling ramp by a constant error)
    assert fixed["rate_khz"][-1] < 0.3 * budget
    assert np.all(np.abs(pid["rate_khz"][5:] / budget - 0.8) < 0.2)
    assert pid["integrated_efficiency"] > fixed["integrated_efficiency"] + 0.05


def test_menu_tuning_spends_one_rate_evaluation_per_candidate():
    # most random menus are over budget here; each must cost one rate evaluation, so
    # the counted simulation budget of the fixed and PID baselines is what they spend
    m = _toy_model()
    bmap = ThresholdMap({"x": (1.0, 200.0)})
    budget = 0.01 * INPUT_RATE_KHZ
    before = m.calls
    t, spent = tune_thresholds(m, 58.0, budget, bmap, np.random.default_rng(3), 200)
    assert spent == 200
    assert 190 <= m.calls - before <= 200
    assert m.rate_khz(t, 58.0) <= budget


def test_pid_gains_are_chosen_on_as_many_fills_as_the_agents_budget_pays_for():
    from fivesigma.tasks.design.stages import _PID_GRID, _TUNE_CALLS, pid_tuning_fills

    per_fill = len(_PID_GRID) * (_TUNE_CALLS + 2 + 20)
    n = pid_tuning_fills(48_000, 20)
    assert n == 48_000 // per_fill == 8
    assert n * per_fill <= 48_000 < (n + 1) * per_fill
    assert pid_tuning_fills(160, 5) == 3  # never fewer than 3


def test_threshold_map_round_trips_and_clips():
    bmap = ThresholdMap({"a": (10.0, 1000.0), "b": (1.0, 4.0)})
    t = bmap.thresholds(np.array([0.0, 1.0]))
    assert t == pytest.approx([100.0, 4.0])
    assert bmap.action(t) == pytest.approx([0.0, 1.0])
    c = ThresholdMap({"a": (10.0, 1000.0)}, centre=np.array([50.0]), width=math.log(4))
    assert c.thresholds(np.array([1.0])) == pytest.approx([200.0])
    assert c.thresholds(np.array([-1.0])) == pytest.approx([12.5])


# ----------------------------------------------------------------------- detector


def test_resolution_without_material_is_gluckstern():
    d = _settings().detector
    m = DetectorModel(d)
    for n in (5, 11, 30):
        r = np.linspace(100.0, 1000.0, n)
        exact = gluckstern_sigma_kappa(15e-6, 0.9, n)
        assert m.sigma_kappa(r, 1e6, material=False) == pytest.approx(exact, rel=1e-9)
    # Gluckstern's large-N limit sqrt(720 / (N + 4)), N + 1 points
    big = gluckstern_sigma_kappa(1.0, 1.0, 2001)
    assert big == pytest.approx(math.sqrt(720 / 2004), rel=2e-3)


def test_multiple_scattering_term_matches_a_toy_monte_carlo():
    d = {**_settings().detector, "hit_resolution_um": 5.0}
    m = DetectorModel(d)
    r = np.array([50.0, 150.0, 300.0, 500.0, 750.0, 1000.0]) / 1000
    p = 1.0
    predicted = m.sigma_kappa(r * 1000, p)
    rng = np.random.default_rng(2)
    theta0 = 0.0136 / p * math.sqrt(m.x0) * (1 + 0.038 * math.log(m.x0))
    n = 20_000
    theta = rng.normal(0, theta0, size=(n, r.size))
    y = np.zeros((n, r.size)) + rng.normal(0, m.sigma, size=(n, r.size))
    for j in range(r.size):  # each layer's kink displaces the later measurements
        y += theta[:, [j]] * np.maximum(r - r[j], 0)
    a = np.stack([np.ones_like(r), r, r**2 / 2], axis=1)
    v = np.eye(r.size) * m.sigma**2
    lever = np.maximum(r[None, :] - r[:, None], 0)
    v += theta0**2 * lever.T @ lever
    w = np.linalg.solve(v, a)
    fit = np.linalg.solve(a.T @ w, w.T @ y.T)  # GLS estimates of (y0, phi, kappa)
    assert np.std(fit[2]) == pytest.approx(predicted, rel=0.03)
    # the multiple-scattering-dominated relative resolution does not depend on pT
    tiny = DetectorModel({**d, "hit_resolution_um": 1e-3})
    res = [tiny.sigma_kappa(r * 1000, q) * q for q in (0.5, 1.0, 2.0)]
    assert res[0] == pytest.approx(res[2], rel=1e-3)


def test_tracking_efficiency_is_binomial():
    stats = pytest.importorskip("scipy.stats")
    d = _settings().detector
    m = DetectorModel(d)
    for n in (4, 6, 8):
        assert m.efficiency(n) == pytest.approx(stats.binom.sf(3, n, 0.97), rel=1e-12)


def test_genetic_algorithm_beats_random_layouts():
    from fivesigma.tasks.design.detector import genetic_search

    m = DetectorModel(_settings().detector)
    _, ga = genetic_search(m, 300, 1)
    rng = np.random.default_rng(1)
    random = max(m.score(z) for z in rng.uniform(-1, 1, size=(300, 2 * m.n)))
    assert ga > random
    assert m.evaluate(m.fixed_design())["within_budget"]


# ----------------------------------------------------------------------- agents


@pytest.mark.parametrize("kind", ["ppo", "sac"])
def test_exported_policy_equals_the_agent(kind):
    pytest.importorskip("stable_baselines3")
    from fivesigma.tasks.design.agents import export_policy
    from fivesigma.tasks.design.env import make_trigger_env

    s = _settings(stream={"mu_grid": [10, 60]}, fill={"mu_start": [40, 50]})
    m = _toy_model()
    m.seeds = s.seeds = ["x"]
    bmap = ThresholdMap({"x": (1.0, 200.0)})
    from fivesigma.core import extras

    sb3 = extras.stable_baselines3()
    env = make_trigger_env(m, s, bmap, 0)
    agent = (sb3.PPO if kind == "ppo" else sb3.SAC)("MlpPolicy", env, seed=0, device="cpu")
    policy = export_policy(agent, kind)
    obs = np.random.default_rng(0).uniform(0, 1, size=(20, 2)).astype(np.float32)
    expected, _ = agent.predict(obs, deterministic=True)
    got = np.array([policy(o) for o in obs])
    assert got == pytest.approx(expected, abs=1e-5)


@pytest.mark.slow
def test_ppo_learns_to_follow_the_falling_pile_up():
    # the reference menu is tuned at the highest starting pile-up; as the pile-up falls
    # through a fill the agent must lower the threshold (a feed-forward schedule in mu)
    # to keep signal, without going over budget
    pytest.importorskip("stable_baselines3")
    from fivesigma.tasks.design.agents import train_agent
    from fivesigma.tasks.design.env import (
        FixedController,
        PolicyController,
        evaluate,
        make_trigger_env,
    )

    s = _settings(stream={"mu_grid": [10, 60]}, fill={"mu_start": [40, 50]})
    m = _toy_model()
    m.seeds = s.seeds = ["x"]
    plain = ThresholdMap({"x": (1.0, 200.0)})
    t_ref, _ = tune_thresholds(m, 50.0, s.budget_khz, plain, np.random.default_rng(0), 200)
    bmap = ThresholdMap({"x": (1.0, 200.0)}, centre=t_ref, width=1.0)
    policy, _ = train_agent("ppo", lambda j: make_trigger_env(m, s, bmap, [0, j]), 4000, 0)
    high = bmap.thresholds(policy(np.array([48 / 60, 0.0], dtype=np.float32)))
    low = bmap.thresholds(policy(np.array([20 / 60, 0.9], dtype=np.float32)))
    assert low[0] < 0.8 * high[0]
    fills = [Fill(45.0, 12.0, 10.0, 20), Fill(42.0, 18.0, 10.0, 20)]
    agent = evaluate(PolicyController(policy, bmap, 60.0), m, fills, s.budget_khz, s.penalty)
    fixed = evaluate(FixedController(t_ref), m, fills, s.budget_khz, s.penalty)
    assert agent["integrated_efficiency"] > fixed["integrated_efficiency"] + 0.2
    assert agent["violation"] < 0.01


# ----------------------------------------------------------------------- config, CLI


def test_template_checks_and_presets_resolve(tmp_path, capsys):
    from fivesigma.core.registry import TASKS

    text = TASKS.get("design")().template()
    s = parse_config(yaml.safe_load(text)).settings()
    assert s.n_seeds == 5 and s.agents == ["ppo", "sac"] and s.budget_khz == 250
    path = tmp_path / "design.yaml"
    path.write_text(text)
    assert main(["config", "--check", str(path)]) == 0


def test_a_budget_below_the_reserved_rate_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "d.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"version": 1, "task": "design", "trigger": {"budget_khz": 5, "reserved_khz": 8}}
        )
    )
    out = tmp_path / "out"
    assert_fails_one_line(["run", str(cfg), "--out", str(out), "--quiet"], capsys, "cannot be met")
    assert not out.exists()
    assert_fails_one_line(["config", "--check", str(cfg)], capsys, "cannot be met")


def test_fills_outside_the_pile_up_grid_are_refused(capsys, tmp_path):
    cfg = tmp_path / "d.yaml"
    cfg.write_text(yaml.safe_dump({"version": 1, "task": "design", "fill": {"mu_start": [50, 80]}}))
    msg = assert_fails_one_line(["config", "--check", str(cfg)], capsys, "mu_grid")
    assert "mu_start" in msg or "pile-up" in msg


def _tiny(tmp_path, **extra):
    cfg = {
        "version": 1,
        "task": "design",
        "seed": 3,
        "stream": {
            "mu_grid": [4, 8],
            "zerobias_events": 400,
            "signal_events": 100,
            "pool_size": 40,
        },
        "trigger": {"budget_khz": 3000},
        "fill": {
            "mu_start": [6, 8],
            "lifetime_h": [10, 12],
            "hours": 4,
            "steps": 5,
            "heldout_fills": 2,
        },
        "training": {"timesteps": {"ppo": 160, "sac": 60}, "seeds": 2, "bo_fills": 1},
        "detector": {"evaluations": 30},
    }
    for key, value in extra.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path = tmp_path / "design.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
@pytest.mark.pythia
def test_tiny_run_end_to_end_and_apply(tmp_path, capsys):
    pytest.importorskip("pythia8mc")
    pytest.importorskip("stable_baselines3")
    out = tmp_path / "out"
    assert main(["run", str(_tiny(tmp_path)), "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    methods = m["trigger"]["summary"]["methods"]
    assert set(methods) == {"fixed", "pid", "bo", "ppo", "sac"}
    for row in methods.values():
        assert 0 <= row["integrated_efficiency"]["mean"] <= 1
        assert row["violation"]["mean"] >= 0
    assert set(m["trigger"]["summary"]["verdict"]) == {"ppo", "sac"}
    assert set(m["detector"]["summary"]) == {"fixed", "random", "bo", "ga", "ppo", "sac"}
    assert (out / "report.html").stat().st_size > 10_000
    # the saved policy gives thresholds within the bounds
    rows = tmp_path / "mu.csv"
    rows.write_text("mu,phase\n8,0\n6,0.5\n")
    res = tmp_path / "thresholds.parquet"
    assert main(["apply", str(out / "models" / "trigger_ppo"), str(rows), "--out", str(res)]) == 0
    import pyarrow.parquet as pq

    table = pq.read_table(res).to_pydict()
    assert table["mu"] == [8.0, 6.0]
    assert all(30 <= v <= 400 for v in table["threshold_single_jet"])
    # a budget no threshold can meet: one line, no output
    bad = tmp_path / "bad"
    cfg = _tiny(tmp_path, trigger={"budget_khz": 0.5, "bounds": {"ht": [60, 70]}})
    assert_fails_one_line(
        ["run", str(cfg), "--out", str(bad), "--quiet"], capsys, "cannot be met by any"
    )
    assert not bad.exists()
