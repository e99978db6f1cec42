"""Optional dependencies, imported in one place.

Every optional package has one function here that imports it (or one of its submodules)
and returns the module.  When the package is missing the function raises a one-line
:class:`~fivesigma.errors.MissingDependencyError` naming the package, what needs it and
the exact install command, so a user sees ``pip install ...`` rather than a traceback
(the CLI prints that line and exits with code 2).

Call them where the package is used, never at module level, so that importing fivesigma
stays light::

    torch = extras.torch()
    kstwo = extras.scipy("stats").kstwo

The install extras are those of ``pyproject.toml``: ``generate`` (pythia8mc, fastjet),
``ml`` (torch, xgboost, scikit-learn, safetensors, onnx, onnxruntime), ``stats`` (pyhf,
scipy), ``report`` (matplotlib, mplhep, hist, jinja2), ``graph`` (torch-geometric) and ``dask``
(dask, distributed, dask-awkward, dask-histogram: running on a cluster).

>>> from fivesigma.core import extras
>>> extras.scipy("special").expit(0.0)
np.float64(0.5)
>>> sorted(DEPENDENCIES)[:3]
['dask', 'dask_awkward', 'dask_histogram']
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from fivesigma.errors import MissingDependencyError, describe_exception

__all__ = [
    "DEPENDENCIES",
    "Dependency",
    "dask",
    "dask_awkward",
    "dask_histogram",
    "distributed",
    "fastjet",
    "gplearn",
    "gymnasium",
    "hep_ml",
    "hist",
    "hls4ml",
    "jinja2",
    "matplotlib",
    "mplhep",
    "onnx",
    "onnxruntime",
    "optuna",
    "pyhf",
    "pymoo",
    "pyoperon",
    "pythia8mc",
    "safetensors",
    "scipy",
    "sklearn",
    "stable_baselines3",
    "sympy",
    "torch",
    "torch_geometric",
    "xgboost",
    "zuko",
]

_TORCH_CPU = "pip install torch==2.13.0 --extra-index-url https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class Dependency:
    """An optional package: its import name, pip name, what needs it and how to install it.

    ``extra`` is the ``fivesigma[...]`` group that installs it; ``alternative`` a
    stand-alone install command (the pinned version of ``requirements.lock``).
    """

    module: str
    package: str
    purpose: str
    extra: str
    alternative: str

    def message(self) -> str:
        """The one-line ``... is needed ...; install it with: ...`` text."""
        return (
            f"{self.package} is needed {self.purpose}; install it with: "
            f"pip install 'fivesigma[{self.extra}]' ({self.alternative})"
        )


def _dep(module: str, package: str, purpose: str, extra: str, pin: str) -> Dependency:
    return Dependency(module, package, purpose, extra, f"or pip install {pin}")


#: Every optional dependency, by import name.
DEPENDENCIES: dict[str, Dependency] = {
    d.module: d
    for d in (
        Dependency(
            "torch",
            "torch",
            "to train and run neural networks",
            "ml",
            f"or, for the CPU build: {_TORCH_CPU}",
        ),
        _dep("xgboost", "xgboost", "for the BDT (xgboost) models", "ml", "xgboost-cpu==3.2.0"),
        _dep(
            "sklearn",
            "scikit-learn",
            "for the scikit-learn models",
            "ml",
            "scikit-learn==1.9.1",
        ),
        _dep("onnx", "onnx", "to export models to ONNX", "ml", "onnx==1.23.2"),
        _dep("onnxruntime", "onnxruntime", "to run ONNX models", "ml", "onnxruntime==1.31.1"),
        _dep(
            "safetensors",
            "safetensors",
            "to save and load model bundles",
            "ml",
            "safetensors==0.8.0",
        ),
        _dep("pythia8mc", "pythia8mc", "to generate events", "generate", "pythia8mc==8.317.2"),
        _dep("fastjet", "fastjet", "to cluster jets", "generate", "fastjet==3.5.2.0"),
        _dep(
            "pyhf",
            "pyhf",
            "for significances and limits (statistical analysis)",
            "stats",
            "pyhf==0.7.6",
        ),
        _dep("scipy", "scipy", "for statistical tests and intervals", "stats", "scipy==1.17.1"),
        _dep("matplotlib", "matplotlib", "to draw plots", "report", "matplotlib==3.11.2"),
        _dep("mplhep", "mplhep", "for HEP-style plots", "report", "mplhep==1.3.3"),
        _dep("hist", "hist", "for histograms in reports", "report", "hist==2.12.1"),
        _dep("jinja2", "jinja2", "to write HTML reports", "report", "jinja2==3.1.6"),
        _dep(
            "torch_geometric",
            "torch-geometric",
            "for graph neural networks",
            "graph",
            "torch-geometric==2.8.1",
        ),
        _dep("zuko", "zuko", "for normalizing flows", "flows", "zuko==1.6.0"),
        _dep(
            "hls4ml",
            "hls4ml",
            "to convert networks to FPGA firmware and emulate it",
            "firmware",
            "hls4ml==1.3.0",
        ),
        _dep("dask", "dask", "to run on a dask cluster (--scheduler)", "dask", "dask==2025.3.0"),
        _dep(
            "distributed",
            "distributed",
            "to run on a dask cluster (--scheduler)",
            "dask",
            "distributed==2025.3.0",
        ),
        _dep(
            "dask_awkward",
            "dask-awkward",
            "to read event files on a dask cluster (--scheduler)",
            "dask",
            "dask-awkward==2026.2.1",
        ),
        _dep(
            "dask_histogram",
            "dask-histogram",
            "to fill histograms on a dask cluster (--scheduler)",
            "dask",
            "dask-histogram==2026.2.0",
        ),
        _dep("hep_ml", "hep_ml", "for the GBReweighter baseline", "reweight", "hep_ml==0.8.0"),
        _dep("sympy", "sympy", "for symbolic expressions", "symbolic", "sympy==1.14.0"),
        _dep(
            "pyoperon",
            "pyoperon",
            "for symbolic regression (Operon)",
            "symbolic",
            "pyoperon==0.6.2",
        ),
        _dep(
            "gplearn", "gplearn", "for symbolic regression (gplearn)", "symbolic", "gplearn==0.4.3"
        ),
        _dep(
            "gymnasium",
            "gymnasium",
            "for reinforcement-learning environments",
            "rl",
            "gymnasium==1.4.0",
        ),
        _dep(
            "stable_baselines3",
            "stable-baselines3",
            "for reinforcement-learning agents (PPO, SAC)",
            "rl",
            "stable-baselines3==2.9.2",
        ),
        _dep("optuna", "optuna", "for Bayesian optimisation baselines", "rl", "optuna==5.0.0"),
        _dep("pymoo", "pymoo", "for genetic algorithms", "scan", "pymoo==0.6.2"),
    )
}


def _load(module: str, submodule: str) -> ModuleType:
    """Import ``module`` (or ``module.submodule``); MissingDependencyError if that fails."""
    dep = DEPENDENCIES[module]
    try:
        top = importlib.import_module(module)  # first: a missing package names itself
        return importlib.import_module(f"{module}.{submodule}") if submodule else top
    except ImportError as err:
        if getattr(err, "name", None) == module:
            raise MissingDependencyError(dep.message()) from None
        # The package is there but something it needs is not, or it is broken.
        raise MissingDependencyError(
            f"{dep.package} is installed but cannot be imported ({describe_exception(err)}); "
            f"reinstall it with: pip install 'fivesigma[{dep.extra}]' ({dep.alternative})"
        ) from None
    except OSError as err:  # e.g. a shared library of the package is missing
        raise MissingDependencyError(
            f"{dep.package} is installed but cannot be loaded ({describe_exception(err)}); "
            f"reinstall it with: pip install 'fivesigma[{dep.extra}]' ({dep.alternative})"
        ) from None


def torch(submodule: str = "") -> ModuleType:
    """``torch`` (or ``torch.<submodule>``), for the neural networks."""
    return _load("torch", submodule)


def xgboost(submodule: str = "") -> ModuleType:
    """``xgboost``, for the BDT models."""
    return _load("xgboost", submodule)


def sklearn(submodule: str = "") -> ModuleType:
    """``sklearn`` (scikit-learn), e.g. ``sklearn("linear_model").LogisticRegression``."""
    return _load("sklearn", submodule)


def onnx(submodule: str = "") -> ModuleType:
    """``onnx``, for exporting models."""
    return _load("onnx", submodule)


def onnxruntime(submodule: str = "") -> ModuleType:
    """``onnxruntime``, for running exported models."""
    return _load("onnxruntime", submodule)


def safetensors(submodule: str = "") -> ModuleType:
    """``safetensors``, e.g. ``safetensors("numpy").save`` for model bundles."""
    return _load("safetensors", submodule)


def pythia8mc(submodule: str = "") -> ModuleType:
    """``pythia8mc``, the Pythia 8 bindings of the event generators."""
    return _load("pythia8mc", submodule)


def fastjet(submodule: str = "") -> ModuleType:
    """``fastjet``, for jet clustering."""
    return _load("fastjet", submodule)


def pyhf(submodule: str = "") -> ModuleType:
    """``pyhf``, e.g. ``pyhf("infer.intervals.upper_limits").toms748_scan``."""
    return _load("pyhf", submodule)


def scipy(submodule: str = "") -> ModuleType:
    """``scipy``, e.g. ``scipy("stats").kstwo``."""
    return _load("scipy", submodule)


def matplotlib(submodule: str = "") -> ModuleType:
    """``matplotlib``, e.g. ``matplotlib("figure").Figure``."""
    return _load("matplotlib", submodule)


def mplhep(submodule: str = "") -> ModuleType:
    """``mplhep``, for HEP plot styles."""
    return _load("mplhep", submodule)


def hist(submodule: str = "") -> ModuleType:
    """``hist``, for histograms."""
    return _load("hist", submodule)


def jinja2(submodule: str = "") -> ModuleType:
    """``jinja2``, for the HTML reports."""
    return _load("jinja2", submodule)


def torch_geometric(submodule: str = "") -> ModuleType:
    """``torch_geometric`` (PyTorch Geometric), for graph neural networks."""
    return _load("torch_geometric", submodule)


def zuko(submodule: str = "") -> ModuleType:
    """``zuko``, for normalizing flows (anomaly detection, fast simulation)."""
    return _load("zuko", submodule)


def hls4ml(submodule: str = "") -> ModuleType:
    """``hls4ml``, to convert networks to HLS firmware and compile its C++ emulation."""
    return _load("hls4ml", submodule)


def dask(submodule: str = "") -> ModuleType:
    """``dask``, e.g. ``dask("delayed").delayed``, for task graphs."""
    return _load("dask", submodule)


def distributed(submodule: str = "") -> ModuleType:
    """``distributed`` (dask.distributed): clients, local clusters, workers."""
    return _load("distributed", submodule)


def dask_awkward(submodule: str = "") -> ModuleType:
    """``dask_awkward``: awkward arrays in partitions (``map_partitions``)."""
    return _load("dask_awkward", submodule)


def dask_histogram(submodule: str = "") -> ModuleType:
    """``dask_histogram``: histograms filled from dask collections."""
    return _load("dask_histogram", submodule)


def hep_ml(submodule: str = "") -> ModuleType:
    """``hep_ml``, for the GBReweighter baseline of reweighting."""
    return _load("hep_ml", submodule)


def sympy(submodule: str = "") -> ModuleType:
    """``sympy``, for symbolic expressions (symbolic regression)."""
    return _load("sympy", submodule)


def pyoperon(submodule: str = "") -> ModuleType:
    """``pyoperon`` (Operon), for symbolic regression."""
    return _load("pyoperon", submodule)


def gplearn(submodule: str = "") -> ModuleType:
    """``gplearn``, for symbolic regression."""
    return _load("gplearn", submodule)


def gymnasium(submodule: str = "") -> ModuleType:
    """``gymnasium``, for reinforcement-learning environments."""
    return _load("gymnasium", submodule)


def stable_baselines3(submodule: str = "") -> ModuleType:
    """``stable_baselines3``, for PPO and SAC agents."""
    return _load("stable_baselines3", submodule)


def optuna(submodule: str = "") -> ModuleType:
    """``optuna``, for Bayesian-optimisation baselines."""
    return _load("optuna", submodule)


def pymoo(submodule: str = "") -> ModuleType:
    """``pymoo``, for genetic algorithms."""
    return _load("pymoo", submodule)
