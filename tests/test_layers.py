"""The architecture as tests: imports point downward, tasks never import each other,
and the light layers stay light (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import fivesigma

PACKAGE = Path(fivesigma.__file__).parent
#: modules above the tasks: they dispatch to tasks through the registry
ABOVE_TASKS = {"cli.py", "api.py", "__main__.py"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _imported(path: Path) -> set[str]:
    """Every module name a file imports (absolute; relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(("fivesigma", *path.relative_to(PACKAGE).parent.parts))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _task_of(path: Path) -> str | None:
    parts = path.relative_to(PACKAGE).parts
    return parts[1] if parts[0] == "tasks" and len(parts) > 2 else None


def test_the_scan_sees_every_kind_of_import():
    names = _imported(PACKAGE / "tasks" / "jets" / "task.py")
    assert "fivesigma.core.task" in names and "fivesigma.tasks.jets.config" in names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_downward(path):
    rel = path.relative_to(PACKAGE)
    imported = {n for n in _imported(path) if n.startswith("fivesigma.tasks.")}
    own = _task_of(path)
    if own is not None:
        others = {n for n in imported if not n.startswith(f"fivesigma.tasks.{own}")}
        assert not others, f"task {own!r} imports another task: {sorted(others)}"
    elif str(rel) not in ABOVE_TASKS:
        assert not imported, f"shared layer {rel} imports a task: {sorted(imported)}"


@pytest.mark.parametrize("layer", ["metrics", "stats"])
def test_metrics_and_stats_never_import_torch(layer):
    for path in (PACKAGE / layer).rglob("*.py"):
        heavy = {n for n in _imported(path) if n.split(".")[0] in ("torch", "xgboost")}
        assert not heavy, f"{path.relative_to(PACKAGE)} imports {sorted(heavy)}"


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "statement",
    [
        "import fivesigma",
        "import fivesigma as fs; fs.task_names()",
        "import fivesigma.metrics, fivesigma.stats",
        "from fivesigma.cli import build_parser; build_parser().format_help()",
        "import fivesigma.estimators",
    ],
)
def test_light_imports_load_neither_torch_nor_xgboost(statement):
    loaded = _loaded_after(statement)
    assert "torch" not in loaded and "xgboost" not in loaded
