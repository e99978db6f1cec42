"""The stages of ``task: fastsim``: jet surrogates, calorimeter surrogates, validation.

Each stage trains the configured generators, draws from them on held-out conditions and
measures everything the report shows: per-feature Wasserstein-1, correlation matrices,
the response ``reco pT / gen pT`` against gen pT, a classifier two-sample AUC (a BDT
trained on half of the held-out objects to tell the simulation from the surrogate, scored
on the other half: 0.5 means it cannot), the oversampling gain and the speed against the
simulation replaced, both timed in this run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fivesigma.errors import DataError
from fivesigma.tasks.fastsim.config import FastsimSettings
from fivesigma.tasks.fastsim.models import GeneratorSettings, Preprocessing, Surrogate

__all__ = [
    "CALO_CONDITIONS",
    "JET_PREPROCESSING",
    "StageResult",
    "classifier_auc",
    "run_calorimeter",
    "run_jets",
]

#: outputs (name, transform, reference condition) and conditions (name, transform)
JET_PREPROCESSING = {
    "outputs": [
        ["reco_pt", "logratio", "gen_pt"],
        ["reco_eta", "diff", "gen_eta"],
        ["reco_phi", "dphi", "gen_phi"],
        ["reco_mass", "logratio", "gen_mass"],
        ["reco_tau21", "identity", None],
        ["reco_tau32", "identity", None],
        ["reco_nconst", "count", None],
        ["reco_btag", "log1p", None],
    ],
    "conditions": [
        ["gen_pt", "log"],
        ["gen_eta", "identity"],
        ["gen_phi", "identity"],
        ["gen_mass", "log"],
        ["gen_nconst", "log"],
        ["gen_flavour", "onehot:4"],
        ["gen_tau21", "identity"],
        ["gen_tau32", "identity"],
    ],
}
CALO_CONDITIONS = ("energy", "theta")
#: timing batch: surrogates are timed on this many conditions (one torch thread)
_TIMING_BATCH = 20000


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


@dataclass
class StageResult:
    """Numbers (``metrics``), arrays for the figures (``arrays``), trained surrogates."""

    metrics: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, Any] = field(default_factory=dict)
    surrogates: dict[str, Surrogate] = field(default_factory=dict)


def classifier_auc(
    reference: np.ndarray,
    other: np.ndarray,
    group: np.ndarray,
    trees: int,
    seed: int,
    threads: int | None = None,
) -> float:
    """Two-sample test: the ROC AUC of a BDT telling ``reference`` rows (class 0) from
    ``other`` rows (class 1), trained on the objects with ``group == 0`` and scored on
    those with ``group == 1`` (split by object, so no object is in both)."""
    from fivesigma.estimators import make_estimator
    from fivesigma.metrics.roc import auc

    x = np.vstack([reference, other])
    y = np.r_[np.zeros(len(reference)), np.ones(len(other))].astype(np.int64)
    g = np.r_[group, group]
    tr, te = g == 0, g == 1
    if tr.sum() < 20 or te.sum() < 20:
        raise DataError("too few held-out objects for the classifier two-sample test (need 20+)")
    rng = np.random.default_rng([seed, 3])
    idx = np.flatnonzero(tr)
    rng.shuffle(idx)
    nv = max(len(idx) // 5, 1)
    bdt = make_estimator(
        "bdt", n_estimators=trees, max_depth=4, learning_rate=0.1, n_jobs=threads, seed=seed
    )
    bdt.fit(x[idx[nv:]], y[idx[nv:]], valid=(x[idx[:nv]], y[idx[:nv]]))
    score = bdt.decision_function(x[te])
    a = float(auc(y[te], score))
    return a


def _time_sampling(sur: Surrogate, batch: np.ndarray) -> float:
    """CPU seconds per draw of ``sur`` on ``batch`` with one torch thread, as the
    simulation it replaces is timed (CPU time of the calling thread, so the ratio does
    not depend on how loaded the machine is)."""
    from fivesigma.core import extras

    torch = extras.torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sur.sample(batch[:256], seed=3)  # warm-up
        t0 = time.thread_time()
        sur.sample(batch, seed=3)
        return (time.thread_time() - t0) / max(len(batch), 1)
    finally:
        torch.set_num_threads(threads)


def _generator_settings(s: FastsimSettings, offset: int) -> GeneratorSettings:
    return GeneratorSettings.from_dict({**s.training, "seed": s.seed + offset})


# --------------------------------------------------------------------------------------
# jets


def run_jets(s: FastsimSettings, progress: bool = True) -> StageResult:
    """Jet pairs, the surrogates of the jet detector response, their validation."""
    from fivesigma.metrics import generative as gm
    from fivesigma.tasks.fastsim.jetpairs import CONDITIONS, OUTPUTS, cached_pairs, sample_pairs

    _say(progress, f"jets: gen/reco pairs from {s.jet_events} Pythia events (cached) ...")
    pairs = cached_pairs(s.jet_events, s.seed, s.pt_min, s.eta_max, s.match_dr, progress)
    if len(pairs) < 200:
        raise DataError(
            f"only {len(pairs)} matched jet pairs; generate more events (jets.events) "
            "or lower jets.pt_min"
        )
    cond, out = pairs.matrix(CONDITIONS), pairs.matrix(OUTPUTS)
    n = len(cond)
    order = np.random.default_rng([s.seed, 11]).permutation(n)
    n_test = round(s.jet_test_fraction * n)
    te, tr = np.sort(order[:n_test]), np.sort(order[n_test:])
    group = (np.arange(n_test) % 2).astype(np.int64)  # halves of the held-out jets

    # the detector response timed in this run, on fresh events
    _say(progress, "jets: timing the detector response on fresh events ...")
    fresh = sample_pairs({"qcd": s.timing_events}, s.seed + 7919, s.pt_min, s.eta_max, s.match_dr)
    det_per_jet = fresh.info["detector_seconds"] / max(fresh.info["matched"], 1)

    metrics: dict[str, Any] = {
        "pairs": n,
        "train": int(tr.size),
        "test": int(n_test),
        "generation": {k: v for k, v in pairs.info.items()},
        "detector_seconds_per_jet": det_per_jet,
        "detector_jets_per_second": 1.0 / det_per_jet if det_per_jet > 0 else float("inf"),
        "detector_timing_jets": int(fresh.info["matched"]),
        "models": {},
    }
    arrays: dict[str, Any] = {
        "outputs": list(OUTPUTS),
        "conditions": list(CONDITIONS),
        "test_cond": cond[te],
        "test_truth": out[te],
        "samples": {},
    }
    reference = np.column_stack([cond[te], out[te]])
    names = list(OUTPUTS)
    edges_pt = np.quantile(cond[te, 0], np.linspace(0, 1, 7))
    truth_resp = gm.response_profile(cond[te, 0], out[te, 0], edges_pt)
    arrays["response_truth"] = truth_resp
    arrays["corr_truth"] = gm.correlation_difference(out[te], out[te])["reference"]
    surrogates: dict[str, Surrogate] = {}
    for k, model in enumerate(s.jet_models):
        _say(progress, f"jets: training the {model} surrogate on {tr.size} pairs ...")
        settings = _generator_settings(s, 100 + k)
        settings.progress = False
        pre = Preprocessing(
            outputs=[list(o) for o in JET_PREPROCESSING["outputs"]],
            conditions=[list(c) for c in JET_PREPROCESSING["conditions"]],
        )
        sur = Surrogate.fit(model, pre, cond[tr], out[tr], settings)
        surrogates[model] = sur
        sample = sur.sample(cond[te], seed=s.seed + 1)
        # speed: one torch thread, a batch of conditions, as the response (one core)
        batch = np.resize(cond[te], (_TIMING_BATCH, cond.shape[1]))
        per_jet = _time_sampling(sur, batch)
        # oversampling: N draws per held-out gen jet
        reps = np.repeat(cond[te], s.oversampling, axis=0)
        many = sur.sample(reps, seed=s.seed + 2).reshape(n_test, s.oversampling, -1)
        mass_edges = np.quantile(out[te, 3], np.linspace(0.02, 0.98, 21))
        gain = gm.oversampling_gain(many[:, :, 3], mass_edges, n_boot=200, seed=s.seed)
        auc_value = classifier_auc(
            reference,
            np.column_stack([cond[te], sample]),
            group,
            s.classifier_trees,
            s.seed,
            s.training.get("num_threads"),
        )
        w1 = gm.wasserstein_table(out[te], sample, names)
        corr = gm.correlation_difference(out[te], sample)
        resp = gm.response_profile(cond[te, 0], sample[:, 0], edges_pt)
        metrics["models"][model] = {
            "classifier_auc": auc_value,
            "auc_target_met": bool(auc_value <= s.auc_target),
            "w1": w1,
            "w1_over_std_mean": float(np.mean([v["w1_over_std"] for v in w1.values()])),
            "correlation_max_abs_difference": corr["max_abs_difference"],
            "seconds_per_jet": per_jet,
            "jets_per_second": 1.0 / per_jet,
            "speedup": det_per_jet / per_jet,
            "speedup_target_met": bool(det_per_jet / per_jet >= s.speedup_target),
            "oversampling_gain_mass": gain["median_gain"],
            "oversampling_draws": s.oversampling,
            "response_mean_max_abs_difference": float(
                np.nanmax(np.abs(resp["mean"] - truth_resp["mean"]))
            ),
            "fit_seconds": sur.fit_seconds,
            "epochs_run": len(sur.history.get("train_loss", sur.history.get("g_loss", []))),
        }
        arrays["samples"][model] = {
            "sample": sample,
            "response": resp,
            "corr": corr["other"],
            "gain": gain,
        }
        m = metrics["models"][model]
        _say(
            progress,
            f"  {model}: AUC {auc_value:.3f}, W1/std {m['w1_over_std_mean']:.3f}, "
            f"{m['jets_per_second']:.3g} jets/s ({m['speedup']:.0f}x the response)",
        )
    return StageResult(metrics, arrays, surrogates)


# --------------------------------------------------------------------------------------
# calorimeter


def calo_observables(voxels: np.ndarray, energy: np.ndarray, sim: Any) -> dict[str, np.ndarray]:
    """Visible energy over incident, layer fractions (of incident), widths per layer."""
    from fivesigma.physics.calorimeter import layer_energies, shower_widths, total_energy

    return {
        "response": total_energy(voxels) / energy,
        "layers": layer_energies(voxels, sim.n_layers) / energy[:, None],
        "widths": shower_widths(voxels, sim.n_layers, sim.ring_centres()),
    }


def _rel(a: float, b: float) -> float:
    return float(abs(b - a) / abs(a)) if a != 0 else float("inf")


def compare_showers(
    truth: dict[str, np.ndarray], other: dict[str, np.ndarray], tolerances: dict[str, float]
) -> dict[str, Any]:
    """CaloChallenge-style comparison of two shower samples' observables against the
    stated tolerances (relative shifts); layers holding < 1 % of the energy are skipped."""
    mean_t, mean_o = float(truth["response"].mean()), float(other["response"].mean())
    res_t = float(truth["response"].std() / mean_t)
    res_o = float(other["response"].std() / mean_o) if mean_o > 0 else float("inf")
    prof_t, prof_o = truth["layers"].mean(0), other["layers"].mean(0)
    used = prof_t >= 0.01
    prof = [_rel(a, b) for a, b in zip(prof_t[used], prof_o[used], strict=True)]
    wid_t, wid_o = np.nanmean(truth["widths"], 0), np.nanmean(other["widths"], 0)
    wid = [_rel(a, b) for a, b in zip(wid_t[used], wid_o[used], strict=True)]
    out = {
        "total_energy_shift": _rel(mean_t, mean_o),
        "resolution_shift": _rel(res_t, res_o),
        "profile_max_shift": float(max(prof)),
        "width_max_shift": float(np.nanmax(wid)),
        "mean_response": [mean_t, mean_o],
        "resolution": [res_t, res_o],
        "profile": [prof_t.tolist(), prof_o.tolist()],
        "width": [wid_t.tolist(), wid_o.tolist()],
    }
    out["passed"] = {
        "total_energy": out["total_energy_shift"] <= tolerances["total_energy"],
        "resolution": out["resolution_shift"] <= tolerances["resolution"],
        "profile": out["profile_max_shift"] <= tolerances["profile"],
        "width": out["width_max_shift"] <= tolerances["width"],
    }
    out["all_passed"] = all(out["passed"].values())
    return out


def run_calorimeter(s: FastsimSettings, progress: bool = True) -> StageResult:
    """Showers from :class:`~fivesigma.physics.calorimeter.ShowerSimulator`, surrogates
    conditioned on (energy, angle), CaloChallenge-style validation."""
    from fivesigma.metrics import generative as gm
    from fivesigma.physics.calorimeter import ShowerSimulator

    sim = ShowerSimulator()
    rng = np.random.default_rng([s.seed, 23])
    n = s.showers
    lo, hi = s.energy
    energy = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    theta = rng.uniform(s.theta[0], s.theta[1], n)
    _say(progress, f"calorimeter: simulating {n} showers ...")
    t0 = time.thread_time()  # CPU time, as the surrogates are timed
    voxels = sim.simulate(energy, theta, seed=s.seed)
    sim_per_shower = (time.thread_time() - t0) / n
    cond = np.column_stack([energy, theta])
    n_test = round(s.calo_test_fraction * n)
    te, tr = np.arange(n_test), np.arange(n_test, n)
    group = (np.arange(n_test) % 2).astype(np.int64)
    truth_obs = calo_observables(voxels[te], energy[te], sim)
    voxel_names = [
        f"e_l{layer}_r{ring}" for layer in range(sim.n_layers) for ring in range(sim.n_rings)
    ]
    metrics: dict[str, Any] = {
        "showers": n,
        "train": int(tr.size),
        "test": int(n_test),
        "voxels": sim.n_voxels,
        "geometry": {
            "layer_edges_x0": list(sim.layer_edges),
            "ring_edges_rm": list(sim.ring_edges),
        },
        "simulation_seconds_per_shower": sim_per_shower,
        "simulation_showers_per_second": 1.0 / sim_per_shower,
        "tolerances": dict(s.tolerances),
        "models": {},
    }
    arrays: dict[str, Any] = {"truth": truth_obs, "samples": {}, "sim": sim}

    def features(v: np.ndarray, e: np.ndarray, th: np.ndarray) -> np.ndarray:
        obs = calo_observables(v, e, sim)
        return np.column_stack(
            [
                np.log(e),
                th,
                obs["response"],
                obs["layers"],
                np.nan_to_num(obs["widths"]),
                v / e[:, None],
            ]
        )

    reference = features(voxels[te], energy[te], theta[te])
    surrogates: dict[str, Surrogate] = {}
    for k, model in enumerate(s.calo_models):
        _say(progress, f"calorimeter: training the {model} surrogate on {tr.size} showers ...")
        settings = _generator_settings(s, 200 + k)
        pre = Preprocessing(
            outputs=[["visible", "logratio", "energy"]]
            + [[name, "sqrtfrac", "energy"] for name in voxel_names],
            conditions=[["energy", "log"], ["theta", "identity"]],
            total="visible",
        )
        target = np.column_stack([voxels.sum(axis=1), voxels])
        sur = Surrogate.fit(model, pre, cond[tr], target[tr], settings)
        surrogates[model] = sur
        sample = sur.sample(cond[te], seed=s.seed + 5)[:, 1:]
        batch = np.resize(cond[te], (_TIMING_BATCH, 2))
        per = _time_sampling(sur, batch)
        obs = calo_observables(sample, energy[te], sim)
        comparison = compare_showers(truth_obs, obs, s.tolerances)
        auc_value = classifier_auc(
            reference,
            features(sample, energy[te], theta[te]),
            group,
            s.classifier_trees,
            s.seed,
            s.training.get("num_threads"),
        )
        metrics["models"][model] = {
            **comparison,
            "classifier_auc": auc_value,
            "w1_response": gm.wasserstein_1(truth_obs["response"], obs["response"]),
            "seconds_per_shower": per,
            "showers_per_second": 1.0 / per,
            "speedup": sim_per_shower / per,
            "fit_seconds": sur.fit_seconds,
        }
        arrays["samples"][model] = obs
        _say(
            progress,
            f"  {model}: AUC {auc_value:.3f}, energy shift {comparison['total_energy_shift']:.3f}, "
            f"profile {comparison['profile_max_shift']:.3f}, width {comparison['width_max_shift']:.3f}",
        )
    return StageResult(metrics, arrays, surrogates)
