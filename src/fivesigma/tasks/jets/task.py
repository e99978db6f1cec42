"""``task: jets``: the jet-tagging benchmark run from a config (and ``fivesigma apply``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fivesigma.core.task import Result, Task
from fivesigma.tasks.jets.config import JetsConfig

__all__ = ["JetsTask"]


class JetsTask(Task):
    """Train and compare the jet taggers on generated or published jets."""

    name = "jets"
    description = "jet tagging on constituents: BDT, CNN, PFN, ParticleNet, ParT side by side"
    config_model = JetsConfig
    template_file = "jets.yaml"

    def check(self, config: JetsConfig) -> None:
        config.settings(progress=False)

    def run(self, config: JetsConfig, out: Path, progress: bool = True) -> Result:
        from fivesigma.tasks.jets.benchmark import run_benchmark

        result = run_benchmark(config.settings(progress=progress), out=out)
        out = Path(out)
        files = {
            "metrics": out / "metrics.json",
            "report": out / "report.html",
            "table": out / "benchmark.md",
        }
        bundles = {name: out / "models" / name for name in result["taggers"]}
        return Result(self.name, out, result, files, bundles, details=result)

    def apply(self, bundle: Path, inputs: list[str], out: Path, **options: Any) -> dict[str, Any]:
        from fivesigma.tasks.jets.apply import apply_tagger

        info = apply_tagger(bundle, inputs, out, chunk_jets=options.get("chunk_size") or 200_000)
        info["message"] = (
            f"scored {info['jets']} jets from {info['files']} file(s) -> {info['out']}"
        )
        return info

    def summary(self, result: Result) -> Any:
        m = result.metrics
        return (
            f"{m['table']}\nwrote {result.out_dir}/benchmark.md, metrics.json, report.html "
            f"({m['wall_seconds']:.0f} s)"
        )
