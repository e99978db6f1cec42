"""Helpers the task tests share: write a config with overrides, expect a one-line error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fivesigma.cli import main


def write_config(path: Path, cfg: dict[str, Any], extra: dict[str, Any]) -> Path:
    """``cfg`` with ``extra`` on top (a section given as a dict updates that section, any
    other value replaces the key), written as YAML to ``path``."""
    cfg = dict(cfg)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


def assert_fails_one_line(argv: list[str], capsys: Any, match: str) -> str:
    """Run the CLI and check the bad-input contract: exit status 2 and one line on stderr
    containing ``match``; that line is returned."""
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and match in err[0], err
    return err[0]
