"""A run's output directory holds one complete run: the previous one until the new one is
complete. Locked against concurrent runs; --keep-partial keeps a failed run's output aside."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fivesigma.cli import main
from fivesigma.core.files import OutputLock, staged_output
from fivesigma.errors import OutputError

FAST = [{"name": "logistic", "kind": "logistic"}]
TWO = [*FAST, {"name": "bdt", "kind": "bdt", "params": {"n_estimators": 5}}]


def _tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def test_a_late_failure_leaves_the_previous_run_untouched(toy_config_file, tmp_path, monkeypatch):
    cfg = toy_config_file(n=300, models=TWO)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "-q"]) == 0
    before = _tree(out)

    from fivesigma import report

    def blocked(*args, **kwargs):
        raise OutputError("report.html is blocked")

    monkeypatch.setattr(report, "write_report", blocked)
    cfg = toy_config_file(n=300, models=FAST)  # a different run: one model only
    assert main(["run", str(cfg), "-q"]) == 2
    assert _tree(out) == before
    assert not (tmp_path / ".out.staging").exists() and not (tmp_path / ".out.lock").exists()


def test_a_rerun_with_fewer_models_leaves_no_stale_bundle(toy_config_file, tmp_path):
    assert main(["run", str(toy_config_file(n=300, models=TWO)), "-q"]) == 0
    assert {p.name for p in (tmp_path / "out" / "models").iterdir()} == {"logistic", "bdt"}
    assert main(["run", str(toy_config_file(n=300, models=FAST)), "-q"]) == 0
    assert {p.name for p in (tmp_path / "out" / "models").iterdir()} == {"logistic"}
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"logistic"}


def test_keep_partial_puts_a_failed_run_aside(toy_config_file, tmp_path, monkeypatch):
    from fivesigma import report

    monkeypatch.setattr(report, "write_report", lambda *a, **k: 1 / 0)
    cfg = toy_config_file(n=300, models=FAST)
    assert main(["run", str(cfg), "-q", "--keep-partial"]) == 1
    partial = tmp_path / "out.partial"
    assert (partial / "metrics.json").exists() and (partial / "models" / "logistic").is_dir()
    assert not (tmp_path / "out").exists()


def test_a_second_run_into_a_locked_directory_is_refused(toy_config_file, tmp_path, capsys):
    cfg = toy_config_file(n=300, models=FAST)
    with OutputLock(tmp_path / "out"):  # held by this (live) process
        assert main(["run", str(cfg), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"pid {os.getpid()}" in err and "is writing" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(toy_config_file, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    lock = tmp_path / ".out.lock"
    import socket

    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    assert main(["run", str(toy_config_file(n=300, models=FAST)), "-q"]) == 0
    assert not lock.exists() and (tmp_path / "out" / "metrics.json").exists()


def test_staged_output_swaps_in_whole(tmp_path):
    out = tmp_path / "o"
    with staged_output(out) as staging:
        (staging / "a.txt").write_text("1")
    with pytest.raises(RuntimeError), staged_output(out) as staging:
        (staging / "b.txt").write_text("2")
        raise RuntimeError
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    with staged_output(out) as staging:
        (staging / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]


@pytest.mark.slow
def test_killing_a_run_at_random_points_never_mixes_two_runs(toy_config_file, tmp_path):
    """SIGKILL at random moments: the directory is the previous complete run or the new one."""
    cfg = toy_config_file(n=400, models=TWO)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "fivesigma", "run", str(cfg), "-q"]
    t0 = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    duration = time.perf_counter() - t0
    complete = {"metrics.json", "report.html", "workspace.json", "models"}
    rng = random.Random(3)
    seen = set()
    for _ in range(3):
        previous = json.loads((out / "metrics.json").read_text())["provenance"]["time"]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.1) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert {p.name for p in out.iterdir()} == complete
        assert set(os.listdir(out / "models")) == {"logistic", "bdt"}
        now = json.loads((out / "metrics.json").read_text())["provenance"]["time"]
        seen.add(now != previous)
    # a run after the kills takes over the dead runs' lock and completes
    subprocess.run(command, check=True, capture_output=True)
    assert {p.name for p in out.iterdir()} == complete


def test_temporaries_of_killed_processes_are_cleaned_up(tmp_path):
    """A SIGKILL during `apply` leaves `.scores.tmp-<pid>-...`; the next write removes it."""
    from fivesigma.core.files import atomic_file

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    stale = tmp_path / f".scores.tmp-{dead}-abc123.parquet"
    stale.write_bytes(b"x" * 1000)
    live = tmp_path / f".scores.tmp-{os.getpid()}-def456.parquet"  # a run still writing
    live.write_bytes(b"y")
    with atomic_file(tmp_path / "scores.parquet") as tmp:
        assert tmp.name.startswith(f".scores.tmp-{os.getpid()}-")
        tmp.write_bytes(b"z")
    assert not stale.exists() and live.exists()
    assert (tmp_path / "scores.parquet").read_bytes() == b"z"


def test_apply_killed_mid_write_leaves_a_temporary_that_the_next_apply_removes(tmp_path):
    """Kill a process inside atomic_file, as SIGKILL during `apply` would."""
    code = (
        "import os, signal, sys\n"
        "from fivesigma.core.files import atomic_file\n"
        f"with atomic_file(r'{tmp_path / 'scores.parquet'}') as tmp:\n"
        "    tmp.write_bytes(b'partial' * 1000)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    leftovers = list(tmp_path.glob(".scores.tmp-*"))
    assert len(leftovers) == 1 and not (tmp_path / "scores.parquet").exists()
    from fivesigma.core.files import atomic_file

    with atomic_file(tmp_path / "scores.parquet") as tmp:
        tmp.write_bytes(b"ok")
    assert not leftovers[0].exists()
