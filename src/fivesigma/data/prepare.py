"""Glue between a config and the shared layers: make built-in samples, then read the data.

Tasks that read event tables call :func:`prepare_data` with a config that has ``data:``
and optionally ``generate:`` sections (:mod:`fivesigma.data.config`); notebooks can too::

    from fivesigma.core.config import load_config
    from fivesigma.data.prepare import prepare_data
    dataset = prepare_data(load_config("analysis.yaml"))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fivesigma.data.config import GENERATED_PLACEHOLDER
from fivesigma.errors import ConfigError

__all__ = ["generated_directory", "prepare_data"]


def generated_directory(cfg: Any, progress: bool = True) -> Path | None:
    """Generate (or reuse from the cache) the built-in sample the config asks for.

    Returns the directory that ``{generated}`` in sample file patterns stands for, or
    None when the config has no ``generate:`` section.
    """
    uses_placeholder = any(GENERATED_PLACEHOLDER in f for s in cfg.data.samples for f in s.files)
    if cfg.generate is None:
        if uses_placeholder:
            raise ConfigError(
                f"data.samples use '{GENERATED_PLACEHOLDER}' in file paths but the config has no "
                "'generate:' section; add one (e.g. generate: {process: higgs4l}) or give real paths"
            )
        return None
    from fivesigma.generate import cached_sample  # lazy: needs pythia8mc

    g = cfg.generate
    sample = cached_sample(
        process=g.process,
        events=g.events,
        seed=g.seed,
        luminosity_fb=g.luminosity_fb,
        jobs=g.jobs,
        cache_dir=g.cache_dir,
        progress=progress,
    )
    return sample.directory


def prepare_data(cfg: Any, progress: bool = True, extra_columns: Sequence[str] = ()):
    """Generate what the config asks for, then read, select and derive: a ``Dataset``."""
    from fivesigma.data import load_dataset

    return load_dataset(
        cfg,
        progress=progress,
        extra_columns=extra_columns,
        generated_dir=generated_directory(cfg, progress=progress),
    )
