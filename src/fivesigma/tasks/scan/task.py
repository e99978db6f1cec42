"""``task: scan``: a genetic search of a Z' model's parameter space guided by a learned
surrogate, judged against a dense grid, a uniform grid and random sampling.

The run (each stage's numbers go to ``metrics.json``):

1. the oracle (:mod:`fivesigma.tasks.scan.oracle`): σ × BR(Z' → ee) from Pythia8 and an
   ATLAS-like expected limit; every point cached on disk;
2. the dense reference grid (``benchmark.grid`` nodes per axis, log-uniform), once;
3. the surrogate-guided search (:func:`~fivesigma.tasks.scan.search.active_search`) for
   ``benchmark.seeds`` seeds: a Gaussian process refitted after every oracle call and a
   pymoo genetic algorithm proposing the point most likely misclassified; the accuracy
   against the dense grid recorded after every call; the search's own stopping rule;
4. the baselines on the same dense grid: uniform sub-grids and random scans (linear
   interpolation, and the same surrogate), and the oracle calls each method needs to
   reach ``benchmark.target``;
5. outputs: ``metrics.json``, the surrogate bundle ``models/surrogate`` (``fivesigma
   apply`` classifies new points), then ``report.html`` with the excluded region.

Without the benchmark (``benchmark.enabled: false``) only the search runs, to its own
stopping rule.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.core.task import Result, Task
from fivesigma.tasks.scan.config import ScanConfig, ScanSettings

__all__ = ["ScanTask"]


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def _ratio(slow: float | None, fast: float | None) -> float | None:
    return None if slow is None or not fast else float(slow) / float(fast)


def _mean(values: list[int | None]) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))


class ScanTask(Task):
    """Surrogate-guided genetic scan of a Z' model, against grid and random scans."""

    name = "scan"
    description = "theory-space scan: Pythia8 Z' oracle, Gaussian-process surrogate, GA search"
    config_model = ScanConfig
    template_file = "scan.yaml"

    def check(self, config: ScanConfig) -> None:
        config.settings()

    def oracle(self, config: ScanConfig, s: ScanSettings) -> Any:
        from fivesigma.generate.cache import default_cache_dir
        from fivesigma.tasks.scan.oracle import ZprimeOracle

        cache = (
            config.resolve(config.oracle.cache_dir)
            if config.oracle.cache_dir
            else default_cache_dir()
        )
        return ZprimeOracle(
            events=s.events, fixed=dict(s.fixed), limit=s.limit, cache_dir=cache, jobs=s.jobs
        )

    # ----------------------------------------------------------------------------------
    def run(self, config: ScanConfig, out: Path, progress: bool = True) -> Result:
        from fivesigma.report import write_metrics_json
        from fivesigma.tasks.scan import bundle as scan_bundle
        from fivesigma.tasks.scan import search
        from fivesigma.tasks.scan.report import write_report

        out = Path(out)
        s = config.settings()
        wall0 = time.perf_counter()
        oracle = self.oracle(config, s)
        space = search.Space(s.scanned, s.low, s.high)
        searched: list[int] = []  # oracle calls of the searches (cache hits included)

        def evaluate(u: np.ndarray) -> np.ndarray:
            searched.append(len(u))
            return oracle.log_ratio(oracle.evaluate(space.points(u)))

        truth = None
        nodes = None
        seconds: dict[str, float] = {}
        if s.benchmark:
            t0 = time.perf_counter()
            _say(progress, f"reference grid: {s.grid}×{s.grid} oracle points (cached) ...")
            nodes, _ = search.dense_grid(s.grid)
            ref = oracle.evaluate(space.points(nodes), progress=progress)
            truth = oracle.log_ratio(ref)
            seconds["reference_grid"] = time.perf_counter() - t0

        runs = []
        seeds = [s.seed + i for i in range(s.seeds if s.benchmark else 1)]
        t0 = time.perf_counter()
        for seed in seeds:
            _say(progress, f"surrogate-guided search, seed {seed} ...")
            runs.append(
                search.active_search(
                    evaluate,
                    space.dim,
                    seed=seed,
                    initial=s.initial,
                    max_calls=s.max_calls,
                    batch=s.batch,
                    population=s.population,
                    generations=s.generations,
                    stop_accuracy=s.stop_accuracy,
                    patience=s.patience,
                    truth=None if truth is None else (nodes, truth),
                    run_to_max=s.benchmark,
                    progress=(lambda t: _say(progress, t)) if progress else None,
                )
            )
        seconds["searches"] = time.perf_counter() - t0

        answer = runs[0]
        answer_calls = answer.rule_stop or answer.stopped_at
        answer_gp = answer.surrogates.get(answer_calls, answer.surrogate)
        metrics: dict[str, Any] = {
            "task": "scan",
            "settings": s.to_dict(),
            "model": {
                "oracle": "Pythia8 NewGaugeBoson:ffbar2gmZZprime, Zprime:gmZmode = 3, 13 TeV; "
                "sigma x BR(Z' -> ee)",
                "limit": s.limit.describe(),
                "fixed": s.fixed,
            },
            "answer": self._answer(answer, answer_calls, answer_gp, space, nodes, truth),
        }
        if s.benchmark:
            t0 = time.perf_counter()
            metrics["benchmark"] = self._benchmark(s, runs, nodes, truth, progress)
            seconds["baselines"] = time.perf_counter() - t0
            metrics["reference_grid"] = {
                "nodes": len(truth),
                "excluded_fraction": float(np.mean(truth > 0)),
                "sigma_rel_error_median": float(
                    np.median([r.sigma_br_err_fb / r.sigma_br_fb for r in ref])
                ),
            }
        metrics["oracle"] = {
            "pythia_calls": oracle.calls,
            "cache_hits": oracle.cache_hits,
            "search_calls": int(sum(searched)),
            "pythia_seconds": oracle.pythia_seconds,
            "seconds_per_call": oracle.pythia_seconds / oracle.calls if oracle.calls else None,
            "events_per_point": s.events,
            "cache_dir": str(oracle.cache_dir),
        }
        metrics["seconds"] = seconds
        metrics["wall_seconds"] = time.perf_counter() - wall0

        bundles = {
            "surrogate": scan_bundle.save(
                answer_gp,
                space,
                out / "models" / "surrogate",
                {
                    "oracle_calls": answer_calls,
                    "limit": s.limit.to_dict(),
                    "fixed": s.fixed,
                    "events_per_point": s.events,
                    "seed": answer.seed,
                },
            )
        }
        files = {"metrics": write_metrics_json(metrics, out / "metrics.json")}
        try:
            files["report"] = write_report(
                out / "report.html",
                s,
                metrics,
                space,
                answer,
                answer_calls,
                answer_gp,
                nodes,
                truth,
            )
        except Exception as exc:  # the last stage: never lose the results
            _say(progress, f"report failed ({type(exc).__name__}: {exc}); metrics are kept")
            metrics["report_error"] = f"{type(exc).__name__}: {exc}"
            files["metrics"] = write_metrics_json(metrics, out / "metrics.json")
        details = {"runs": runs, "space": space, "nodes": nodes, "truth": truth}
        return Result(self.name, out, metrics, files, bundles, details=details)

    # ----------------------------------------------------------------------------------
    @staticmethod
    def _answer(run: Any, calls: int, gp: Any, space: Any, nodes: Any, truth: Any) -> dict:
        from fivesigma.tasks.scan.search import agreement, dense_grid

        probe, _ = dense_grid(101)
        mean, _ = gp.predict(probe)
        out: dict[str, Any] = {
            "seed": run.seed,
            "oracle_calls": int(calls),
            "stop_reason": run.stop_reason,
            "estimated_accuracy": float(run.estimated[run.calls.index(calls)]),
            "excluded_fraction": float(np.mean(mean > 0)),
            "points": {
                "params": space.to_physical(run.x[:calls]).tolist(),
                "log_ratio": run.y[:calls].tolist(),
            },
        }
        if truth is not None:
            out["accuracy"] = float(run.accuracy[run.calls.index(calls)])
            out["accuracy_dense_grid"] = agreement(gp.predict(nodes)[0], truth)
        return out

    @staticmethod
    def _benchmark(s: ScanSettings, runs: list[Any], nodes: Any, truth: Any, progress: bool):
        from fivesigma.tasks.scan.search import calls_to_reach, grid_baseline, random_baseline

        target = s.target
        grid = grid_baseline(s.grid, truth, target)
        active = []
        for run in runs:
            active.append(
                {
                    "seed": run.seed,
                    "calls": run.calls,
                    "accuracy": run.accuracy,
                    "estimated": run.estimated,
                    "calls_to_target": calls_to_reach(run.calls, run.accuracy, target),
                    "rule_stop": run.rule_stop,
                    "accuracy_at_rule_stop": (
                        run.accuracy[run.calls.index(run.rule_stop)] if run.rule_stop else None
                    ),
                    "seconds": run.seconds,
                    "ga_seconds": run.ga_seconds,
                }
            )
        randoms = []
        for run in runs:
            _say(progress, f"random scan, seed {run.seed} ...")
            r = random_baseline(nodes, truth, run.seed, s.initial, s.random_max_calls)
            r["calls_to_target_interpolation"] = calls_to_reach(
                r["calls"], r["accuracy_interpolation"], target
            )
            r["calls_to_target_surrogate"] = calls_to_reach(
                r["calls"], r["accuracy_surrogate"], target
            )
            randoms.append(r)
        a = _mean([r["calls_to_target"] for r in active])
        ri = _mean([r["calls_to_target_interpolation"] for r in randoms])
        rg = _mean([r["calls_to_target_surrogate"] for r in randoms])
        summary = {
            "target_accuracy": target,
            "active_calls": [r["calls_to_target"] for r in active],
            "active_calls_mean": a,
            "grid_calls": grid["calls_to_target"],
            "random_calls": [r["calls_to_target_interpolation"] for r in randoms],
            "random_calls_mean": ri,
            "random_surrogate_calls": [r["calls_to_target_surrogate"] for r in randoms],
            "random_surrogate_calls_mean": rg,
            "gain_vs_grid": _ratio(grid["calls_to_target"], a),
            "gain_vs_random": _ratio(ri, a),
            "gain_vs_random_surrogate": _ratio(rg, a),
        }
        if ri is None and a:
            # no random scan reached the target within its budget: the gain is at least
            # the budget over the guided search's calls
            summary["gain_vs_random"] = s.random_max_calls / a
            summary["gain_vs_random_is_lower_bound"] = True
        gains = (summary["gain_vs_grid"], summary["gain_vs_random"])
        summary["done_5x"] = bool(all(g is not None and g >= 5 for g in gains))
        # the same comparison at other accuracies, for the report's table
        grid_calls = [r["calls"] for r in grid["rows"]]
        grid_acc = [r["accuracy"] for r in grid["rows"]]
        by_target = []
        for t in sorted({0.95, 0.99, 0.995, target}):
            a_t = _mean([calls_to_reach(r.calls, r.accuracy, t) for r in runs])
            g_t = calls_to_reach(grid_calls, grid_acc, t)
            ri_t = _mean(
                [calls_to_reach(r["calls"], r["accuracy_interpolation"], t) for r in randoms]
            )
            rg_t = _mean([calls_to_reach(r["calls"], r["accuracy_surrogate"], t) for r in randoms])
            by_target.append(
                {
                    "target": t,
                    "active": a_t,
                    "grid": g_t,
                    "random": ri_t,
                    "random_surrogate": rg_t,
                    "gain_vs_grid": _ratio(g_t, a_t),
                    "gain_vs_random": _ratio(ri_t, a_t),
                    "gain_vs_random_surrogate": _ratio(rg_t, a_t),
                }
            )
        summary["by_target"] = by_target
        return {"summary": summary, "grid": grid, "active": active, "random": randoms}

    # ----------------------------------------------------------------------------------
    def apply(self, bundle: Path, inputs: list[str], out: Path, **options: Any) -> dict[str, Any]:
        from fivesigma.tasks.scan.apply import apply_surrogate

        info = apply_surrogate(bundle, inputs, out)
        info["message"] = (
            f"classified {info['events']} points from {info['files']} file(s) -> {out}"
        )
        return info

    def summary(self, result: Result) -> str:
        m = result.metrics
        ans = m["answer"]
        lines = [
            f"excluded fraction of the scanned region {ans['excluded_fraction']:.3f} after "
            f"{ans['oracle_calls']} oracle calls ({ans['stop_reason']}); estimated accuracy "
            f"{ans['estimated_accuracy']:.3f}"
            + (f", against the dense grid {ans['accuracy']:.3f}" if "accuracy" in ans else "")
        ]
        b = m.get("benchmark")
        if b:
            sm = b["summary"]

            def show(v: Any) -> str:
                return "not reached" if v is None else f"{v:.1f}"

            lines.append(
                f"oracle calls to {sm['target_accuracy']:.1%} of the dense grid: surrogate-guided "
                f"{show(sm['active_calls_mean'])}, uniform grid {show(sm['grid_calls'])}, random "
                f"{show(sm['random_calls_mean'])} (budget {m['settings']['random_max_calls']}; "
                "with the surrogate "
                f"{show(sm['random_surrogate_calls_mean'])})"
            )
        lines.append(f"wrote {result.out_dir}/report.html, metrics.json, models/surrogate")
        return "\n".join(lines)
