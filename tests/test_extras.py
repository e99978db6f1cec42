"""Optional dependencies (fivesigma.core.extras): one-line install hints when one is missing.

``sys.modules[name] = None`` makes ``import name`` fail as if the package were not
installed (monkeypatch restores it after each test).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fivesigma.cli import main
from fivesigma.core import extras
from fivesigma.errors import FivesigmaError, MissingDependencyError

#: import name -> (pip name, fivesigma extra that installs it), as in pyproject.toml
EXPECTED = {
    "torch": ("torch", "ml"),
    "xgboost": ("xgboost", "ml"),
    "sklearn": ("scikit-learn", "ml"),
    "onnx": ("onnx", "ml"),
    "onnxruntime": ("onnxruntime", "ml"),
    "safetensors": ("safetensors", "ml"),
    "pythia8mc": ("pythia8mc", "generate"),
    "fastjet": ("fastjet", "generate"),
    "pyhf": ("pyhf", "stats"),
    "scipy": ("scipy", "stats"),
    "matplotlib": ("matplotlib", "report"),
    "mplhep": ("mplhep", "report"),
    "hist": ("hist", "report"),
    "jinja2": ("jinja2", "report"),
    "torch_geometric": ("torch-geometric", "graph"),
    "zuko": ("zuko", "flows"),
    "hls4ml": ("hls4ml", "firmware"),
    "hep_ml": ("hep_ml", "reweight"),
    "sympy": ("sympy", "symbolic"),
    "pyoperon": ("pyoperon", "symbolic"),
    "gplearn": ("gplearn", "symbolic"),
    "gymnasium": ("gymnasium", "rl"),
    "stable_baselines3": ("stable-baselines3", "rl"),
    "optuna": ("optuna", "rl"),
    "pymoo": ("pymoo", "scan"),
    "dask": ("dask", "dask"),
    "distributed": ("distributed", "dask"),
    "dask_awkward": ("dask-awkward", "dask"),
    "dask_histogram": ("dask-histogram", "dask"),
}


def hide(monkeypatch, *names: str) -> None:
    """Make ``import name`` (and its submodules) fail for each of ``names``."""
    for name in names:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)


def test_every_optional_dependency_has_a_function():
    assert set(extras.DEPENDENCIES) == set(EXPECTED)
    for name in EXPECTED:
        assert callable(getattr(extras, name)) and name in extras.__all__


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_missing_dependency_is_one_line_with_the_install_command(monkeypatch, name):
    package, extra = EXPECTED[name]
    hide(monkeypatch, name)
    with pytest.raises(MissingDependencyError) as info:
        getattr(extras, name)()
    message = str(info.value)
    assert isinstance(info.value, FivesigmaError) and info.value.exit_code == 2
    assert "\n" not in message
    assert message.startswith(f"{package} is needed ")
    assert f"install it with: pip install 'fivesigma[{extra}]' (or" in message
    alternative = message.split("(or", 1)[1]
    pinned = {"xgboost": "xgboost-cpu"}.get(name, package)  # the CPU-only wheel, as in the lock
    assert f"pip install {pinned}==" in alternative


def test_submodules_of_a_missing_package_name_the_package(monkeypatch):
    hide(monkeypatch, "scipy")
    with pytest.raises(MissingDependencyError, match=r"^scipy is needed .*fivesigma\[stats\]"):
        extras.scipy("stats")


def test_torch_message_gives_the_cpu_build(monkeypatch):
    hide(monkeypatch, "torch")
    with pytest.raises(MissingDependencyError) as info:
        extras.torch()
    assert str(info.value) == (
        "torch is needed to train and run neural networks; install it with: "
        "pip install 'fivesigma[ml]' (or, for the CPU build: pip install torch==2.13.0 "
        "--extra-index-url https://download.pytorch.org/whl/cpu)"
    )


def test_a_broken_install_says_so(monkeypatch):
    def fail(name):
        err = ModuleNotFoundError("No module named 'boost_histogram'")
        err.name = "boost_histogram"
        raise err

    monkeypatch.setattr(extras.importlib, "import_module", fail)
    with pytest.raises(MissingDependencyError, match=r"^hist is installed but cannot be imported"):
        extras.hist()


def test_present_dependency_returns_the_module():
    scipy_stats = extras.scipy("stats")
    assert scipy_stats.__name__ == "scipy.stats" and hasattr(scipy_stats, "kstwo")


def test_library_calls_raise_the_install_hint(monkeypatch):
    from fivesigma.generate._pythia import require_pythia
    from fivesigma.metrics import ks_test
    from fivesigma.stats import build_workspace, expected_significance

    spec = build_workspace([10.0], [100.0], bkg_norm_unc=0)
    hide(monkeypatch, "scipy", "pyhf", "pythia8mc")
    with pytest.raises(MissingDependencyError, match="^scipy is needed"):
        ks_test(np.linspace(0, 1, 20), np.linspace(0, 1, 30))
    with pytest.raises(MissingDependencyError, match="^pyhf is needed"):
        expected_significance(spec)
    with pytest.raises(MissingDependencyError, match="^pythia8mc is needed"):
        require_pythia()


def test_cli_exits_2_with_one_line_naming_pip_install(monkeypatch, tmp_path, capsys):
    hide(monkeypatch, "pythia8mc")
    out = tmp_path / "gen"
    code = main(["generate", "higgs4l", "--events", "10", "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "pythia8mc is needed" in lines[0]
    assert "pip install 'fivesigma[generate]'" in lines[0] and "pythia8mc==8.317.2" in lines[0]
    assert not list(out.glob("*.root"))
