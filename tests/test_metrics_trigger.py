"""Trigger rates: thresholds for a budget, efficiencies, rate curves."""

from __future__ import annotations

import numpy as np
import pytest

from fivesigma.metrics._validate import MetricError
from fivesigma.metrics.trigger import efficiency_at, rate_curve, threshold_for_rate


def test_threshold_meets_the_budget_and_is_the_lowest_that_does():
    rng = np.random.default_rng(3)
    zb = rng.exponential(size=200_000)
    input_khz = 40_000 * 2544 / 3564
    r = threshold_for_rate(zb, 50.0, input_khz)
    assert r["rate_khz"] <= 50.0
    # one zero-bias event more would exceed the budget
    assert (r["n_pass"] + 1) / zb.size * input_khz > 50.0
    # exponential scores: the threshold is near the analytic quantile -ln(f)
    f = 50.0 / input_khz
    assert r["threshold"] == pytest.approx(-np.log(f), rel=0.05)
    low, high = r["rate_interval_khz"]
    assert low < r["rate_khz"] < high


def test_ties_never_pass_more_than_the_budget():
    zb = np.array([1.0] * 50 + [0.0] * 950)
    r = threshold_for_rate(zb, 10.0, 1000.0)  # allows 10 events of 1000
    assert r["n_pass"] <= 10


def test_budget_finer_than_the_sample_is_flagged():
    r = threshold_for_rate(np.arange(100.0), 0.5, 1000.0)  # 0.05 events allowed
    assert not r["resolved"] and r["n_pass"] == 0


def test_efficiency_and_interval_against_binomial():
    s = np.concatenate([np.ones(30), np.zeros(70)])
    e = efficiency_at(s, 0.5)
    assert e["efficiency"] == 0.3 and e["n_pass"] == 30
    sd = np.sqrt(0.3 * 0.7 / 100)
    assert e["low"] == pytest.approx(0.3 - sd, abs=0.01)
    assert e["high"] == pytest.approx(0.3 + sd, abs=0.01)


def test_rate_curve_is_monotonic_and_consistent():
    rng = np.random.default_rng(0)
    zb, sig = rng.normal(size=20_000), rng.normal(2.0, 1.0, size=5000)
    c = rate_curve(zb, sig, 1000.0)
    assert np.all(np.diff(c["rate_khz"]) >= 0) and np.all(np.diff(c["efficiency"]) >= 0)
    i = len(c["threshold"]) // 2
    t = c["threshold"][i]
    assert c["rate_khz"][i] == pytest.approx(np.mean(zb > t) * 1000.0)
    assert c["efficiency"][i] == pytest.approx(np.mean(sig > t))


@pytest.mark.parametrize(
    ("scores", "budget", "match"),
    [
        (np.array([1.0, np.nan]), 1.0, "non-finite"),
        (np.array([]), 1.0, "empty"),
        (np.arange(10.0), 2000.0, "input rate"),
    ],
)
def test_bad_input_is_one_line(scores, budget, match):
    with pytest.raises(MetricError, match=match) as err:
        threshold_for_rate(scores, budget, 1000.0)
    assert "\n" not in str(err.value)
