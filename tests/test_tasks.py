"""The task contract: registries, `task:` dispatch, `fivesigma tasks`, `init --task`, the API."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

import pytest

import fivesigma as fs
from fivesigma.cli import main
from fivesigma.core.config import TaskConfig, load_config, parse_config
from fivesigma.core.registry import TASKS, Registry
from fivesigma.core.task import Result, Task
from fivesigma.errors import ConfigError

# -- a toy task, registered from this test module ---------------------------------------


class CountConfig(TaskConfig):
    task: Literal["count_toy"] = "count_toy"
    up_to: int = 3


class CountTask(Task):
    name = "count_toy"
    description = "counts to up_to and writes the numbers"
    config_model = CountConfig

    def run(self, config: CountConfig, out: Path, progress: bool = True) -> Result:
        out.mkdir(parents=True, exist_ok=True)
        numbers = list(range(1, config.up_to + 1))
        path = out / "metrics.json"
        path.write_text(json.dumps({"numbers": numbers, "seed": config.seed}))
        return Result(self.name, out, {"numbers": numbers}, {"metrics": path})


@pytest.fixture
def toy_task():
    TASKS.register("count_toy", CountTask, CountTask.description)
    yield CountTask
    TASKS.unregister("count_toy")


def test_a_task_registered_from_a_test_runs_through_the_unchanged_cli(toy_task, tmp_path, capsys):
    config = tmp_path / "toy.yaml"
    config.write_text("version: 1\ntask: count_toy\nup_to: 4\nseed: 7\n")
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "-q"]) == 0
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written == {"numbers": [1, 2, 3, 4], "seed": 7}
    assert "count_toy: wrote" in capsys.readouterr().out
    # its config is part of the schema, and bad keys are one line naming the accepted ones
    assert main(["config", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "count_toy" in schema["discriminator"]["mapping"]
    config.write_text("version: 1\ntask: count_toy\nup_too: 4\n")
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "up_too: unknown key; accepted keys:" in err and "up_to" in err
    assert "\n" not in err


def test_the_api_runs_a_registered_task_from_a_mapping(toy_task, tmp_path):
    result = fs.run({"version": 1, "task": "count_toy", "up_to": 2}, out=tmp_path / "o")
    assert isinstance(result, fs.Result) and result.metrics == {"numbers": [1, 2]}
    assert result.files["metrics"].exists()


def test_tasks_lists_classify_and_jets_one_line_each(capsys):
    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.split()[0] for line in lines]
    assert names[:2] == ["classify", "jets"] and len(lines) == len(TASKS)


def test_tasks_lists_estimators_and_generators(capsys):
    assert main(["tasks", "--estimators"]) == 0
    names = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert {"logistic", "bdt", "mlp", "pfn", "particlenet", "part", "cnn1d"} <= names
    assert main(["tasks", "--generators"]) == 0
    names = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert {"higgs4l", "jets"} <= names


@pytest.mark.parametrize("raw", [{"version": 1, "task": "trakcing"}, {"version": 1, "task": 5}])
def test_an_unknown_task_names_the_registered_ones(raw):
    with pytest.raises(ConfigError, match="registered: classify, jets") as err:
        parse_config(raw)
    assert "\n" not in str(err.value)


def test_a_config_without_task_is_classification():
    cfg = parse_config(
        {
            "version": 1,
            "data": {"samples": [{"name": "s", "files": "s.root", "label": 1}]},
        }
    )
    assert cfg.task == "classify" and type(cfg).__name__ == "ClassifyConfig"


def test_classify_refuses_an_estimator_that_is_not_for_tables(capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "version: 1\ndata: {samples: [{name: a, files: x.root, label: 1}]}\n"
        "models: [{name: net, kind: particlenet}]\n"
    )
    assert main(["config", "--check", str(config)]) == 2
    err = capsys.readouterr().err
    assert "particlenet" in err and "logistic, bdt, mlp" in err


@pytest.mark.parametrize("task", ["classify", "jets"])
def test_init_task_writes_a_config_that_run_accepts(task, tmp_path, capsys):
    path = tmp_path / f"{task}.yaml"
    assert main(["init", str(path), "--task", task]) == 0
    assert main(["config", "--check", str(path)]) == 0
    assert f"valid (task {task}" in capsys.readouterr().out
    assert load_config(path).task == task
    assert path.read_text().count("#") > 10  # commented


def test_init_refuses_an_unknown_task_and_writes_nothing(tmp_path, capsys):
    assert main(["init", str(tmp_path / "x.yaml"), "--task", "trak"]) == 2
    assert "registered: classify, jets" in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()


def _captured_settings(monkeypatch) -> list:
    """Replace the benchmark by a recorder of the settings it is given."""
    from fivesigma.tasks.jets import benchmark

    seen: list = []

    def record(settings, out):
        seen.append(settings)
        return {"taggers": {}, "table": "", "wall_seconds": 0.0}

    monkeypatch.setattr(benchmark, "run_benchmark", record)
    return seen


def test_the_jets_template_is_benchmark_top_quick_seeds_1(tmp_path, monkeypatch):
    """`fivesigma init --task jets` + `run` trains exactly what the shortcut trains."""
    from fivesigma.tasks.jets.benchmark import BenchmarkSettings

    seen = _captured_settings(monkeypatch)
    path = tmp_path / "jets.yaml"
    assert main(["init", str(path), "--task", "jets"]) == 0
    assert main(["run", str(path), "--out", str(tmp_path / "a"), "-q"]) == 0
    shortcut = ["benchmark", "top", "--quick", "--seeds", "1", "--out", str(tmp_path / "b"), "-q"]
    assert main(shortcut) == 0
    from_config, from_flags = seen
    assert dataclasses.asdict(from_config) == dataclasses.asdict(from_flags)
    expected = BenchmarkSettings.quick(seeds=1, progress=False)
    assert dataclasses.asdict(from_config) == dataclasses.asdict(expected)


def test_every_benchmark_flag_is_a_jets_config_key(tmp_path, monkeypatch):
    seen = _captured_settings(monkeypatch)
    flags = [
        "benchmark", "flavour", "--data", "a.h5", "b.h5", "--seeds", "3", "--seed", "5",
        "--taggers", "bdt,pfn", "--jets", "100", "--epochs", "2", "--max-particles", "20",
        "--frame", "none", "--jobs", "1", "--out", str(tmp_path / "b"), "-q",
    ]  # fmt: skip
    assert main(flags) == 0
    config = tmp_path / "jets.yaml"
    config.write_text(
        "version: 1\ntask: jets\npreset: full\nbenchmark: flavour\nseed: 5\nseeds: 3\n"
        f"data: ['{Path.cwd() / 'a.h5'}', '{Path.cwd() / 'b.h5'}']\ntaggers: [bdt, pfn]\n"
        "jets_per_class: 100\nepochs: 2\nmax_particles: 20\nframe: none\njobs: 1\n"
    )
    assert main(["run", str(config), "--out", str(tmp_path / "a"), "-q"]) == 0
    from_flags, from_config = seen
    assert dataclasses.asdict(from_flags) == dataclasses.asdict(from_config)
    assert from_flags.task == "flavour" and from_flags.taggers == ("bdt", "pfn")


def test_jets_config_paths_are_relative_to_the_config(tmp_path):
    config = tmp_path / "sub" / "jets.yaml"
    config.parent.mkdir()
    config.write_text("version: 1\ntask: jets\ndata: [train.h5]\ntaggers: [bdt]\n")
    settings = load_config(config).settings(progress=False)
    assert settings.data == [str(config.parent / "train.h5")]


@pytest.mark.parametrize(
    "extra, match",
    [
        ("benchmark: tops", "did you mean 'top'"),
        ("taggers: [bdt, pfm]", "unknown tagger 'pfm'"),
        ("split: [0.5, 0.5]", "three fractions"),
        ("preset: fast", "preset"),
        ("max_particles: 0", "max_particles"),
    ],
)
def test_bad_jets_config_is_one_line(extra, match, tmp_path, capsys):
    config = tmp_path / "jets.yaml"
    config.write_text(f"version: 1\ntask: jets\n{extra}\n")
    assert main(["config", "--check", str(config)]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_registry_rejects_duplicates_and_names_entries():
    reg = Registry("widget")
    reg.register("a", "json:dumps", "dumps")
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("a", "json:loads")
    reg.register("a", "json:loads", replace=True)
    assert reg.get("a") is json.loads
    with pytest.raises(ConfigError, match="identifier"):
        reg.register("not a name", "json:loads")


def test_public_api_names_are_pinned():
    assert sorted(fs.__all__) == sorted(
        [
            "ConfigError",
            "DataError",
            "ExpressionError",
            "FivesigmaError",
            "GenerationError",
            "ModelError",
            "OutputError",
            "Result",
            "__version__",
            "load",
            "make_estimator",
            "read_events",
            "read_jets",
            "run",
            "task_names",
        ]
    )
    for name in fs.__all__:
        assert getattr(fs, name) is not None
    # the task packages do not shadow the API once imported
    import fivesigma.tasks.classify.task  # noqa: F401

    assert fs.task_names()[:2] == ["classify", "jets"]


@pytest.mark.parametrize("name", [".", "..", "../x", "a/b", "-x", ""])
def test_model_names_are_safe_directory_names_checked_before_any_work(name, tmp_path, capsys):
    """A model named `.` once replaced models/ by one bundle; `..` failed after training."""
    import yaml

    raw = {
        "version": 1,
        "data": {"samples": [{"name": "s", "files": "s.root", "label": 1}], "features": ["x"]},
        "models": [{"name": name, "kind": "logistic"}],
    }
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "models[0].name" in err and err.count("\n") == 1 and "internal error" not in err
    assert not (tmp_path / "out").exists()
