"""Executors (fivesigma.core.execution): --scheduler values, the execution: config key,
unreachable schedulers, workers without fivesigma, and Pythia blocks on dask workers
giving the same sample as a local run.

The cluster tests share one ``distributed.LocalCluster`` (2 worker processes, 1 thread
each) started once for the module.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from fivesigma.cli import main
from fivesigma.core.config import parse_config
from fivesigma.core.execution import (
    SchedulerSpec,
    active_client,
    check_workers,
    executor,
    parse_scheduler,
)
from fivesigma.errors import ConfigError, MissingDependencyError

distributed = pytest.importorskip("distributed")


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg, repr(msg)
    return msg


# --------------------------------------------------------------------------------------
# Parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("local", SchedulerSpec("local", "local")),
        ("threads:4", SchedulerSpec("threads", "threads:4", workers=4)),
        ("processes:2", SchedulerSpec("processes", "processes:2", workers=2)),
        ("tcp://10.0.0.5:8786", SchedulerSpec("address", "tcp://10.0.0.5:8786", target="tcp://10.0.0.5:8786")),
        ("tls://sched.cern.ch:8786", SchedulerSpec("address", "tls://sched.cern.ch:8786", target="tls://sched.cern.ch:8786")),
        ("jobqueue:htcondor", SchedulerSpec("jobqueue", "jobqueue:htcondor", target="htcondor")),
        ("jobqueue:slurm", SchedulerSpec("jobqueue", "jobqueue:slurm", target="slurm")),
        ("gateway:https://gw.example.org", SchedulerSpec("gateway", "gateway:https://gw.example.org", target="https://gw.example.org")),
    ],
)  # fmt: skip
def test_parse_scheduler_accepts(text: str, expected: SchedulerSpec) -> None:
    assert parse_scheduler(text) == expected
    assert parse_scheduler(text).is_local == (text == "local")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("dask", "unknown scheduler 'dask'; accepted: local, threads:N"),
        ("processes:0", "processes:N needs a positive whole number"),
        ("threads:two", "threads:N needs a positive whole number"),
        ("tcp://host", "a scheduler address is tcp://HOST:PORT"),
        ("jobqueue:pbs", "unknown batch system 'pbs'; accepted: jobqueue:htcondor, jobqueue:slurm"),
        ("gateway:gw.example.org", "gateway:URL needs the gateway's http(s) address"),
    ],
)
def test_parse_scheduler_refuses_in_one_line(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_scheduler(text)
    assert fragment in one_line(err)


def test_execution_config_key_every_task_has() -> None:
    cfg = parse_config({"version": 1, "task": "jets"})
    assert cfg.execution.scheduler == "local" and cfg.execution.timeout_s == 10.0
    cfg = parse_config(
        {
            "version": 1,
            "task": "jets",
            "execution": {
                "scheduler": "jobqueue:htcondor",
                "workers": 20,
                "jobqueue": {"cores": 4, "memory": "8GB", "disk": "4GB"},
            },
        }
    )
    assert cfg.execution.jobqueue["cores"] == 4 and cfg.execution.workers == 20
    with pytest.raises(ConfigError) as err:
        parse_config({"version": 1, "task": "jets", "execution": {"scheduler": "spark"}})
    assert one_line(err).startswith("config: execution.scheduler: unknown scheduler 'spark'")
    with pytest.raises(ConfigError, match=r"execution\.timeout_s"):
        parse_config({"version": 1, "task": "jets", "execution": {"timeout_s": 0}})


def test_cli_refuses_an_unknown_scheduler(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", "higgs4l", "--events", "5", "--out", "x", "--scheduler", "yarn"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "unknown scheduler 'yarn'" in err


def test_run_takes_the_flag_over_the_config(toy_config_file, capsys, monkeypatch) -> None:
    import fivesigma.cli as cli

    seen = []
    real = cli._executor

    def spy(scheduler, execution=None):
        seen.append(scheduler)
        return real(scheduler, execution)

    monkeypatch.setattr(cli, "_executor", spy)
    cfg = toy_config_file(n=100)
    assert main(["run", str(cfg), "-q", "--data-only", "--scheduler", "threads:1"]) == 0
    assert "200 events after selection" in capsys.readouterr().out
    assert main(["run", str(cfg), "-q", "--data-only"]) == 0
    assert seen == ["threads:1", "local"]
    assert main(["run", str(cfg), "-q", "--data-only", "--scheduler", "spark"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown scheduler 'spark'" in err


def test_local_is_the_eager_path() -> None:
    with executor("local") as client:
        assert client is None and active_client() is None


def test_unreachable_scheduler_fails_in_one_line_within_the_timeout() -> None:
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as err, executor("tcp://127.0.0.1:9", timeout_s=2):
        pass
    elapsed = time.monotonic() - t0
    msg = one_line(err)
    assert msg.startswith("cannot reach the dask scheduler at tcp://127.0.0.1:9 within 2 s")
    assert elapsed < 10, elapsed


@pytest.mark.parametrize(
    ("spec", "package"),
    [("jobqueue:htcondor", "dask-jobqueue"), ("gateway:https://gw.example.org", "dask-gateway")],
)
def test_cluster_managers_are_optional(monkeypatch, spec: str, package: str) -> None:
    import sys

    monkeypatch.setitem(sys.modules, package.replace("-", "_"), None)
    with pytest.raises(MissingDependencyError) as err, executor(spec):
        pass
    assert one_line(err) == (
        f"{package} is needed for --scheduler {spec}; install it with: pip install {package}"
    )


# --------------------------------------------------------------------------------------
# On a local cluster


@pytest.fixture(scope="module")
def client():
    with executor("processes:2", echo=lambda line: None) as c:
        yield c


@pytest.mark.slow
def test_a_worker_without_fivesigma_is_named(client) -> None:
    from fivesigma import __version__

    versions = check_workers(client)
    assert set(versions.values()) == {__version__} and len(versions) == 2
    victim = sorted(versions)[0]
    # as if fivesigma were not installed there (`import fivesigma` then fails)
    client.run(exec, "import sys; sys.modules['fivesigma'] = None", workers=[victim])
    try:
        with pytest.raises(MissingDependencyError) as err:
            check_workers(client)
        msg = one_line(err)
        assert msg.startswith(f"dask worker {victim} cannot import fivesigma")
        assert "install fivesigma==" in msg
    finally:
        client.restart_workers([victim])
        client.wait_for_workers(2)
    assert len(check_workers(client)) == 2


def _sample_arrays(directory: Path) -> dict[str, dict[str, object]]:
    import uproot

    out: dict[str, dict[str, object]] = {}
    for path in sorted(directory.glob("*.root")):
        with uproot.open(path) as f:
            tree = f["Events"]
            out[path.name] = {name: tree[name].array(library="ak") for name in tree.keys()}  # noqa: SIM118
    return out


@pytest.mark.slow
@pytest.mark.pythia
def test_generate_on_dask_workers_equals_a_local_run(client, tmp_path: Path) -> None:
    pytest.importorskip("pythia8mc")
    import awkward as ak

    from fivesigma.generate import generate

    local = generate("higgs4l", 20, tmp_path / "local", seed=3, jobs=1, progress=False)
    with executor(client_spec(client)) as c:
        assert active_client() is c
        spread = generate("higgs4l", 20, tmp_path / "dask", seed=3, jobs=2, progress=False)
    ran_there = client.run(eval, "'fivesigma.generate.higgs4l' in __import__('sys').modules")
    assert any(ran_there.values())  # the blocks ran on the workers
    a, b = _sample_arrays(local.directory), _sample_arrays(spread.directory)
    assert set(a) == set(b) == {"ggH_4l.root", "qqZZ_4l.root"}
    for name in a:
        assert set(a[name]) == set(b[name])
        assert len(a[name]["weight"]) > 0
        for branch in a[name]:
            assert ak.array_equal(a[name][branch], b[name][branch], equal_nan=True), branch
    xs_local = local.provenance["processes"]["ggH_4l"]["cross_section_pb"]
    xs_dask = spread.provenance["processes"]["ggH_4l"]["cross_section_pb"]
    assert np.float64(xs_local) == np.float64(xs_dask)


def client_spec(client) -> str:
    """The scheduler address of ``client``: a second executor connects to it."""
    return client.scheduler.address
