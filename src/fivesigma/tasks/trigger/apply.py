"""Score files with a trigger bundle (``fivesigma apply`` on a ``trigger_model``).

AXOL1TL- and CICADA-like bundles read L1 files (``fivesigma generate l1``) and write
``file_index``, ``event``, ``score`` and one ``pass_<budget>kHz`` column per rate budget
the bundle stores (score above the threshold met on the zero-bias stream).  A jet-tagger
bundle reads jet files and writes ``logit_<class>`` for the classes g, q, w, z, t.
Scores come from the bundle's compiled firmware emulation (bit exact), or from the numpy
fixed-point reference when the bundle has none.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.io.writers import check_apply_paths, ordered_inputs, write_columns

__all__ = ["apply_trigger"]


def _chunks(model: Any, files: Sequence[Path]) -> Iterator[dict[str, np.ndarray]]:
    for index, path in enumerate(files):
        if model.network == "jet_tagger":
            from fivesigma.io.jets import read_jets
            from fivesigma.tasks.trigger.jet_features import jet_features
            from fivesigma.tasks.trigger.models import JET_CLASSES

            jets = read_jets([path])
            logits = model.score(model.inputs(jet_features(jets.constituents)))
            cols = {"file_index": np.full(len(jets), index, np.int32),
                    "jet": np.arange(len(jets), dtype=np.int64)}  # fmt: skip
            for k, name in enumerate(JET_CLASSES):
                cols[f"logit_{name}"] = logits[:, k].astype(np.float64)
            yield cols
            continue
        from fivesigma.generate.l1 import read

        table = read(path)
        score = model.score(model.inputs(table))
        cols = {
            "file_index": np.full(len(score), index, np.int32),
            "event": np.arange(len(score), dtype=np.int64),
            "score": score.astype(np.float64),
        }
        for budget, threshold in model.thresholds.items():
            cols[f"pass_{budget.replace('.', 'p')}kHz"] = score > threshold
        yield cols


def apply_trigger(bundle: str | Path, inputs: Sequence[str], out: str | Path) -> dict[str, Any]:
    """Score the events (or jets) of ``inputs`` (files or globs, in the order given)."""
    from fivesigma.tasks.trigger.bundle import load

    out = check_apply_paths(out, inputs)
    model = load(bundle)
    files = ordered_inputs(inputs)
    n = write_columns(_chunks(model, files), out)
    return {"events": n, "files": len(files), "out": out}
