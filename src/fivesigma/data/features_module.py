"""User feature modules: a Python file whose functions become expression functions.

A config may name one with ``data.features_module: myfeatures.py`` (relative to the
config file), the way coffea users write processors::

    # myfeatures.py
    import awkward as ak

    __all__ = ["n_central"]          # optional; default: every public function defined here

    def n_central(eta, cut=2.5):
        return ak.sum(abs(eta) < cut, axis=1)

and then writes ``derived: {ncen: "n_central(Jet_eta, cut=2.4)"}``.  Functions receive
the evaluated arguments (numpy or awkward arrays, constants) and return one value, or
one list, per event; keyword arguments must be constants.

This is the user's own code: it is imported (with :mod:`importlib`, under a module name
unique to its content) and runs with the user's rights.  Only the expressions stay
whitelisted.  :func:`features_module_digest` gives a content hash, so that a model can
record exactly which file it was trained with.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fivesigma.data.expressions import CONSTANTS, FUNCTIONS
from fivesigma.errors import ConfigError, describe_exception

__all__ = ["features_module_digest", "load_features_module"]

# (resolved path, digest) -> functions: loading the same content twice runs it once
_LOADED: dict[tuple[str, str], dict[str, Callable[..., Any]]] = {}


def _read(path: str | Path) -> tuple[Path, bytes]:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"features module '{p}' not found (data.features_module)")
    if not p.is_file():
        raise ConfigError(f"features module '{p}' is not a file (data.features_module)")
    try:
        return p, p.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"features module '{p}' cannot be read: {describe_exception(exc)}"
        ) from None


def features_module_digest(path: str | Path) -> str:
    """SHA-256 (hex) of the file's bytes.

    Raises
    ------
    ConfigError
        The file is missing or unreadable.
    """
    return hashlib.sha256(_read(path)[1]).hexdigest()


class _HashedSourceLoader(importlib.machinery.SourceFileLoader):
    """Runs exactly the bytes that were hashed; reads and writes no bytecode cache."""

    def __init__(self, fullname: str, path: str, source: bytes) -> None:
        super().__init__(fullname, path)
        self._source = source

    def get_data(self, path: str) -> bytes:
        if path == self.path:
            return self._source
        raise OSError("no bytecode cache for a features module")

    def set_data(self, path: str, data: bytes, *, _mode: int = 0o666) -> None:
        return None


def load_features_module(path: str | Path) -> dict[str, Callable[..., Any]]:
    """Import a user's Python file and return its public functions by name.

    The functions are those named in the module's ``__all__`` if it has one, else every
    function defined in the file (not imported into it) whose name does not start with
    ``_``.

    Raises
    ------
    ConfigError
        One line naming the file: missing or unreadable, a syntax error, an exception
        while importing it, ``__all__`` naming something that is not a function, no
        functions at all, or a name that clashes with a built-in expression function or
        constant.
    """
    p, source = _read(path)
    digest = hashlib.sha256(source).hexdigest()
    key = (str(p.resolve()), digest)
    if key in _LOADED:
        return dict(_LOADED[key])
    where = f"features module '{p}'"
    name = f"fivesigma_features_{digest[:16]}"
    loader = _HashedSourceLoader(name, str(p), source)
    spec = importlib.util.spec_from_file_location(name, str(p), loader=loader)
    if spec is None:  # pragma: no cover - only for a path importlib cannot name
        raise ConfigError(f"{where} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickling etc. look the module up by name
    try:
        loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        at = f" at line {exc.lineno}" if exc.lineno else ""
        other = exc.filename and Path(exc.filename) != p
        inside = f" (in '{exc.filename}')" if other else ""
        raise ConfigError(f"{where}: syntax error{at}{inside}: {exc.msg}") from None
    except BaseException as exc:
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ConfigError(f"{where} failed while importing: {describe_exception(exc)}") from exc

    functions = _public_functions(module, where)
    for fname in functions:
        if fname in FUNCTIONS or fname in CONSTANTS:
            raise ConfigError(
                f"{where}: function '{fname}' has the name of a built-in expression "
                f"{'function' if fname in FUNCTIONS else 'constant'}; rename it"
            )
    _LOADED[key] = functions
    return dict(functions)


def _public_functions(module: Any, where: str) -> dict[str, Callable[..., Any]]:
    exported = getattr(module, "__all__", None)
    if exported is None:
        functions = {
            n: obj
            for n, obj in vars(module).items()
            if not n.startswith("_")
            and inspect.isfunction(obj)
            and obj.__module__ == module.__name__
        }
    else:
        if isinstance(exported, str) or not all(isinstance(n, str) for n in exported):
            raise ConfigError(f"{where}: __all__ must be a list of function names")
        functions = {}
        for n in exported:
            obj = getattr(module, n, None)
            if not n.isidentifier() or n.startswith("__"):
                raise ConfigError(f"{where}: __all__ names {n!r}, which is not a usable name")
            if obj is None or not callable(obj) or inspect.isclass(obj):
                raise ConfigError(f"{where}: __all__ names {n!r}, which is not a function in it")
            functions[n] = obj
    if not functions:
        raise ConfigError(
            f"{where} defines no public function (define one, or list them in __all__)"
        )
    return functions
