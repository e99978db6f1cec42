"""``task: symbolic``: formulas from data (symbolic regression) with Operon and SymPy.

The run (each stage's numbers go to ``metrics.json``):

0. preparation, before any search, so that bad input stops the run with one line and
   no output: every benchmark formula is sampled (a constant input is a DataError), the
   user's table is read, the distillation events are read (the higgs4l sample is
   generated first if it is not cached);
1. the benchmark: each formula at each noise level is searched
   (:func:`~fivesigma.tasks.symbolic.engine.search`: ``restarts`` Operon runs of a fixed
   number of generations, fronts merged, constants refitted in SymPy) and the chosen
   formula is checked for exact recovery
   (:func:`~fivesigma.tasks.symbolic.recovery.exact_recovery`); ``engine.jobs`` searches
   run side by side in spawned processes; wall and CPU seconds per search are recorded;
2. the search on the user's table (``data:``), if given;
3. the distillation (:mod:`fivesigma.tasks.symbolic.distill`): an MLP's log-odds as a
   formula, and the AUC the formula keeps; a failure here is recorded, not fatal;
4. outputs: ``metrics.json``, the formula bundles ``models/formula_<name>`` (each
   benchmark formula at its lowest noise level), ``models/data``, ``models/distilled``
   (``fivesigma apply`` evaluates them on table files), then ``report.html``.  A failing
   report never loses the earlier outputs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.core.task import Result, Task
from fivesigma.errors import ConfigError, DataError, FivesigmaError
from fivesigma.tasks.symbolic.config import SymbolicConfig, SymbolicSettings

__all__ = ["SymbolicTask", "run_cell"]


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def _candidate_row(c: Any) -> dict[str, Any]:
    return {"formula": str(c.expr), "complexity": c.complexity, "nmse": c.nmse, "units": c.units}


def _sample_seed(seed: int, name: str, noise: float | None) -> int:
    """The sampling seed of formula ``name`` at ``noise`` (None: the fresh noise-free
    points of the exact-recovery check); a subset of formulas or noise levels samples
    the same points."""
    import zlib

    level = -1 if noise is None else round(noise * 1e6)
    return int(
        np.random.SeedSequence([seed, zlib.crc32(name.encode()), level + 1]).generate_state(1)[0]
    )


def run_cell(job: dict[str, Any]) -> dict[str, Any]:
    """One benchmark search: sample, search, check exact recovery (module level: it runs
    in spawned worker processes)."""
    from fivesigma.tasks.symbolic.benchmark import sample, truth_expr
    from fivesigma.tasks.symbolic.engine import search
    from fivesigma.tasks.symbolic.recovery import exact_recovery

    f = job["formula"]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    X, y, _ = sample(f, job["points"], job["noise"], job["sample_seed"])
    Xc, _, yc = sample(f, job["check_points"], 0.0, job["check_seed"])
    truth = truth_expr(f)
    res = search(X, y, f.names, f.units, f.operators, job["seed"], job["engine"])
    search_wall, search_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    rec = exact_recovery(res.best.expr, truth, f.names, Xc, yc, X)
    truth_on_front = None
    if not rec["exact"]:
        # diagnostic: did the search find the truth but the choice miss it? (members of
        # up to 40 nodes: SymPy is slow on bigger ones)
        truth_on_front = [
            str(c.expr)
            for c in res.front
            if c is not res.best
            and c.complexity <= 40
            and exact_recovery(c.expr, truth, f.names, Xc, yc, X)["exact"]
        ]
    return {
        "formula": f.name,
        "title": f.title,
        "truth": str(truth),
        "truth_latex": _latex(truth),
        "noise": job["noise"],
        "points": job["points"],
        "found": str(res.best.expr),
        "found_latex": _latex(res.best.expr),
        "snapped": str(rec["expression"]),
        "snapped_latex": _latex(rec["expression"]),
        "exact": bool(rec["exact"]),
        "numeric": bool(rec["numeric"]),
        "proof": rec.get("proof"),
        "refit_shift": rec["refit_shift"],
        "nmse": res.best.nmse,
        "complexity": res.best.complexity,
        "units": res.best.units,
        "seconds": search_wall,
        "cpu_seconds": search_cpu,
        "check_seconds": time.perf_counter() - wall0 - search_wall,
        "generations": res.engine["generations"],
        "time_capped": res.engine["time_capped"],
        "restarts": res.engine["restarts"],
        "front": [_candidate_row(c) for c in res.front],
        "truth_on_front": truth_on_front,
        "_best": res.best.expr,
    }


def _latex(expr: Any) -> str:
    """LaTeX of ``expr`` with its floats shown to 4 significant digits (for the report)."""
    sp = _sympy()
    return sp.latex(expr.xreplace({a: sp.Float(a, 4) for a in expr.atoms(sp.Float)}))


def _sympy() -> Any:
    from fivesigma.core import extras

    return extras.sympy()


class SymbolicTask(Task):
    """Symbolic regression: the 10-formula benchmark, your table, a distilled classifier."""

    name = "symbolic"
    description = "symbolic regression: Operon + SymPy; exact recovery of physics formulas"
    config_model = SymbolicConfig
    template_file = "symbolic.yaml"

    def check(self, config: SymbolicConfig) -> None:
        from fivesigma.data.expressions import Expression
        from fivesigma.errors import ExpressionError
        from fivesigma.tasks.symbolic.benchmark import truth_expr
        from fivesigma.tasks.symbolic.distill import check_inputs

        s = config.settings()
        for f in s.formulas:
            const = [i.name for i in f.inputs if not i.high > i.low]
            if const:
                raise DataError(
                    f"formula {f.name!r}: input(s) {', '.join(const)} are constant (range low "
                    "== high); a formula cannot be found from inputs that do not vary"
                )
            expr = truth_expr(f)
            extra = sorted(str(x) for x in expr.free_symbols if str(x) not in f.names)
            if extra:
                raise ConfigError(
                    f"formula {f.name!r}: the truth uses {', '.join(extra)}, which is not "
                    f"among its inputs ({', '.join(f.names)})"
                )
        if config.data is not None:
            try:
                Expression(config.data.target, "data.target")
                if config.data.selection:
                    Expression(config.data.selection, "data.selection")
            except ExpressionError as exc:
                raise ConfigError(str(exc)) from None
        d = config.distill
        if d.enabled:
            check_inputs(d.inputs, d.features, d.bundle)

    # ----------------------------------------------------------------------------------
    def _jobs(self, s: SymbolicSettings) -> list[dict[str, Any]]:
        jobs = []
        for f in s.formulas:
            for noise in s.noise:
                jobs.append(
                    {
                        "formula": f,
                        "noise": noise,
                        "points": s.points,
                        "sample_seed": _sample_seed(s.seed, f.name, noise),
                        "check_points": s.check_points,
                        "check_seed": _sample_seed(s.seed, f.name, None),
                        "seed": s.seed,
                        "engine": s.engine,
                    }
                )
        return jobs

    def _prepare_benchmark(self, s: SymbolicSettings) -> None:
        """Sample every formula once: bad ranges fail here, before any search."""
        from fivesigma.tasks.symbolic.benchmark import sample

        for f in s.formulas:
            sample(f, s.points, 0.0, _sample_seed(s.seed, f.name, 0.0))

    def _benchmark(self, s: SymbolicSettings, progress: bool) -> list[dict[str, Any]]:
        jobs = self._jobs(s)
        # the slowest searches (most inputs) first, so that parallel workers finish together
        order = sorted(range(len(jobs)), key=lambda j: -len(jobs[j]["formula"].inputs))
        results: list[dict[str, Any] | None] = [None] * len(jobs)

        def done(j: int, row: dict[str, Any]) -> None:
            results[j] = row
            n = sum(r is not None for r in results)
            _say(
                progress,
                f"[{n}/{len(jobs)}] {row['formula']} noise {row['noise']:g}: "
                f"{'exact' if row['exact'] else 'numeric' if row['numeric'] else 'not found'}"
                f" ({row['seconds']:.0f} s) {row['snapped'][:80]}",
            )

        if s.jobs > 1 and len(jobs) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(
                min(s.jobs, len(jobs)), mp_context=mp.get_context("spawn")
            ) as pool:
                futures = {pool.submit(run_cell, jobs[j]): j for j in order}
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
        else:
            for j in order:
                done(j, run_cell(jobs[j]))
        return [r for r in results if r is not None]

    # ----------------------------------------------------------------------------------
    def _read_data(self, config: SymbolicConfig) -> dict[str, Any]:
        """The user's table: inputs and target as float arrays (selection applied)."""
        import awkward as ak

        from fivesigma.data.expressions import Expression
        from fivesigma.io.events import expand_files, read_events

        d = config.data
        assert d is not None
        target = Expression(d.target, "data.target")
        selection = Expression(d.selection, "data.selection") if d.selection else None
        names = set(d.inputs) | set(target.names) | (selection.names if selection else set())
        paths = expand_files(list(d.files), config.base_dir)
        events = read_events([str(p) for p in paths], columns=sorted(names), tree=d.tree)
        n = len(events)
        cols = {}
        for name in sorted(names):
            col = events[name]
            if col.ndim != 1:
                raise DataError(f"data: column {name!r} is not one number per row")
            cols[name] = np.asarray(ak.to_numpy(col), dtype=np.float64)
        with np.errstate(all="ignore"):
            y = np.broadcast_to(np.asarray(target.evaluate(cols, n), dtype=float), (n,))
            keep = np.ones(n, dtype=bool)
            if selection is not None:
                keep = np.asarray(selection.evaluate(cols, n), dtype=bool)
        X = np.column_stack([cols[c] for c in d.inputs])
        keep &= np.isfinite(y) & np.all(np.isfinite(X), axis=1)
        X, y = X[keep], np.asarray(y)[keep]
        if len(y) < 10:
            raise DataError(
                f"data: {len(y)} usable rows in {', '.join(map(str, paths))} (finite inputs "
                "and target, selection passed); a search needs at least 10"
            )
        const = [c for j, c in enumerate(d.inputs) if np.ptp(X[:, j]) == 0]
        if const:
            raise DataError(
                f"data: input column(s) {', '.join(const)} are constant; a formula cannot be "
                "found from inputs that do not vary"
            )
        if np.ptp(y) == 0:
            raise DataError(f"data: the target {d.target!r} is constant")
        return {"X": X, "y": y, "files": [str(p) for p in paths], "rows": len(y)}

    def _data_search(
        self, config: SymbolicConfig, s: SymbolicSettings, table: dict[str, Any]
    ) -> dict[str, Any]:
        from fivesigma.tasks.symbolic.engine import refit_constants, search
        from fivesigma.tasks.symbolic.units import parse_unit

        d = config.data
        assert d is not None
        rng = np.random.default_rng(s.seed)
        X, y = table["X"], table["y"]
        pick = np.sort(rng.choice(len(y), size=min(d.max_rows, len(y)), replace=False))
        units = {c: parse_unit(d.units.get(c, "1")) for c in d.inputs}
        t0 = time.perf_counter()
        res = search(X[pick], y[pick], list(d.inputs), units, d.operators, s.seed, s.engine)
        _, nmse_all = refit_constants(res.best.expr, list(d.inputs), X, y)
        return {
            "files": table["files"],
            "rows": table["rows"],
            "rows_searched": len(pick),
            "inputs": list(d.inputs),
            "units": {c: d.units.get(c, "1") for c in d.inputs},
            "target": d.target,
            "formula": str(res.best.expr),
            "latex": _latex(res.best.expr),
            "complexity": res.best.complexity,
            "nmse": res.best.nmse,
            "nmse_all_rows": nmse_all,
            "units_check": res.best.units,
            "front": [_candidate_row(c) for c in res.front],
            "seconds": time.perf_counter() - t0,
            "engine": res.engine,
            "_best": res.best.expr,
        }

    # ----------------------------------------------------------------------------------
    def _distill_events(self, config: SymbolicConfig, progress: bool) -> Any:
        from fivesigma.tasks.symbolic.config import higgs4l_data
        from fivesigma.tasks.symbolic.distill import load_events

        d = config.distill
        columns = list(dict.fromkeys([*d.inputs, *([] if d.bundle else d.features)]))
        if d.bundle:
            from fivesigma.core.bundle import load_bundle

            columns += [
                c for c in load_bundle(config.resolve(d.bundle)).features if c not in columns
            ]
        data = d.data or higgs4l_data(columns)
        generate = d.generate if (d.data is None or _uses_generated(d.data)) else None
        return load_events(data, generate, config.seed, config.base_dir, columns, progress)

    def _distill(self, config: SymbolicConfig, s: SymbolicSettings, events: Any) -> Any:
        from fivesigma.tasks.symbolic.distill import distill

        d = config.distill
        return distill(
            events,
            inputs=list(d.inputs),
            units=dict(d.units),
            operators=d.operators,
            engine=s.distill_engine,
            seed=s.seed,
            points=s.distill_points,
            clip=d.clip,
            target_kept=d.target_kept,
            bundle=config.resolve(d.bundle) if d.bundle else None,
            features=list(d.features),
            hidden=list(d.hidden),
            epochs=s.epochs,
            lr=d.lr,
        )

    # ----------------------------------------------------------------------------------
    def run(self, config: SymbolicConfig, out: Path, progress: bool = True) -> Result:
        from fivesigma.report import write_metrics_json
        from fivesigma.tasks.symbolic import bundle as formula_bundle
        from fivesigma.tasks.symbolic.report import summarise_benchmark, write_report

        out = Path(out)
        self.check(config)
        s = config.settings()
        wall0 = time.perf_counter()
        seconds: dict[str, float] = {}
        # 0. everything that reads input, before any search
        self._prepare_benchmark(s)
        table = self._read_data(config) if config.data is not None else None
        events = None
        if s.distill:
            t0 = time.perf_counter()
            _say(progress, "distillation: reading the events ...")
            events = self._distill_events(config, progress)
            seconds["distill_events"] = time.perf_counter() - t0

        metrics: dict[str, Any] = {"task": "symbolic", "settings": s.to_dict()}
        cells: list[dict[str, Any]] = []
        if s.formulas:
            t0 = time.perf_counter()
            _say(progress, f"benchmark: {len(s.formulas)} formulas x {len(s.noise)} noise levels")
            cells = self._benchmark(s, progress)
            seconds["benchmark"] = time.perf_counter() - t0
            metrics["benchmark"] = {
                "cells": [{k: v for k, v in c.items() if not k.startswith("_")} for c in cells],
                "summary": summarise_benchmark(cells, s),
            }
        data_result = None
        if table is not None:
            _say(progress, f"data: searching {table['rows']} rows ...")
            data_result = self._data_search(config, s, table)
            seconds["data"] = data_result["seconds"]
            metrics["data"] = {k: v for k, v in data_result.items() if not k.startswith("_")}
        distilled = None
        if events is not None:
            t0 = time.perf_counter()
            _say(progress, "distillation: network, then the formula search ...")
            try:
                distilled = self._distill(config, s, events)
                metrics["distill"] = distilled.to_dict()
                metrics["distill"]["target_kept"] = config.distill.target_kept
                metrics["distill"]["done"] = bool(distilled.kept >= config.distill.target_kept)
            except FivesigmaError:
                raise
            except Exception as exc:  # a late stage: keep the benchmark's results
                _say(progress, f"distillation failed ({type(exc).__name__}: {exc})")
                metrics["distill"] = {"error": f"{type(exc).__name__}: {exc}"}
            seconds["distill"] = time.perf_counter() - t0
        metrics["seconds"] = seconds
        metrics["wall_seconds"] = time.perf_counter() - wall0

        bundles: dict[str, Path] = {}
        models = out / "models"
        by_formula: dict[str, dict[str, Any]] = {}
        for c in cells:  # the lowest noise level of each formula
            if c["formula"] not in by_formula or c["noise"] < by_formula[c["formula"]]["noise"]:
                by_formula[c["formula"]] = c
        formulas = {f.name: f for f in s.formulas}
        for name, c in by_formula.items():
            f = formulas[name]
            bundles[f"formula_{name}"] = formula_bundle.save(
                c["_best"],
                f.names,
                {i.name: i.unit for i in f.inputs},
                models / f"formula_{name}",
                {
                    "source": "benchmark",
                    "formula": name,
                    "noise": c["noise"],
                    "exact": c["exact"],
                    "nmse": c["nmse"],
                },
            )
        if data_result is not None and config.data is not None:
            bundles["data"] = formula_bundle.save(
                data_result["_best"],
                list(config.data.inputs),
                dict(config.data.units),
                models / "data",
                {
                    "source": "data",
                    "target": config.data.target,
                    "tree": config.data.tree,
                    "nmse": data_result["nmse"],
                },
            )
        if distilled is not None:
            d = config.distill
            from fivesigma.tasks.symbolic.config import HIGGS4L_DERIVED

            derived = dict(d.data.derived) if d.data is not None else dict(HIGGS4L_DERIVED)
            bundles["distilled"] = formula_bundle.save(
                distilled.chosen.expr,
                distilled.names,
                distilled.units,
                models / "distilled",
                {
                    "source": "distillation",
                    "target": "network log-odds",
                    "kept": distilled.kept,
                    "auc": distilled.auc,
                },
                derived=derived,
                output="score",
            )
        files = {"metrics": write_metrics_json(metrics, out / "metrics.json")}
        try:
            files["report"] = write_report(out / "report.html", s, metrics, cells, distilled)
        except Exception as exc:  # the report is the last stage: never lose the results
            _say(progress, f"report failed ({type(exc).__name__}: {exc}); metrics are kept")
            metrics["report_error"] = f"{type(exc).__name__}: {exc}"
            files["metrics"] = write_metrics_json(metrics, out / "metrics.json")
        details = {"cells": cells, "data": data_result, "distill": distilled}
        return Result(self.name, out, metrics, files, bundles, details=details)

    # ----------------------------------------------------------------------------------
    def apply(self, bundle: Path, inputs: list[str], out: Path, **options: Any) -> dict[str, Any]:
        from fivesigma.tasks.symbolic.apply import apply_formula

        info = apply_formula(
            bundle,
            inputs,
            out,
            tree=options.get("tree"),
            chunk_size=int(options.get("chunk_size") or 200_000),
        )
        info["message"] = (
            f"evaluated the formula on {info['events']} rows from {info['files']} file(s) -> {out}"
        )
        return info

    def summary(self, result: Result) -> str:
        m = result.metrics
        lines = []
        b = m.get("benchmark")
        if b:
            for row in b["summary"]["by_noise"]:
                lines.append(
                    f"benchmark, noise {row['noise']:g}: exact {row['exact']}/{row['formulas']}"
                    f", numeric {row['numeric']}/{row['formulas']}, search time "
                    f"{row['seconds']:.0f} s"
                )
        dr = m.get("data")
        if dr:
            lines.append(f"data: {dr['target']} = {dr['formula']} (NMSE {dr['nmse']:.3g})")
        di = m.get("distill")
        if di:
            if "error" in di:
                lines.append(f"distillation failed: {di['error']}")
            else:
                lines.append(
                    f"distilled score = {di['formula']}: AUC {di['auc']['formula']:.4f} vs the "
                    f"network's {di['auc']['network']:.4f}, kept {di['kept']:.1%} of AUC - 0.5"
                )
        if "report_error" in m:
            lines.append(f"report failed: {m['report_error']}")
        lines.append(f"wrote {result.out_dir}/report.html, metrics.json, models/")
        return "\n".join(lines)


def _uses_generated(data: Any) -> bool:
    from fivesigma.data.config import GENERATED_PLACEHOLDER

    return any(GENERATED_PLACEHOLDER in f for s in data.samples for f in s.files)
