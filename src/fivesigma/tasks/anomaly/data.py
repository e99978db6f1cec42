"""The anomaly task's data: dijet event tables, signal region and sidebands, signal injection.

A :class:`DijetTable` holds one row per event with the dijet features of the ``dijets``
generator (:mod:`fivesigma.generate.dijets`) or of the LHC Olympics R&D feature file
(:func:`fivesigma.io.lhco.read_lhco`), which use the same names: ``mjj``, ``mj1`` (the
lighter jet), ``mj2``, ``delta_mj = mj2 - mj1``, ``tau21_j1``, ``tau21_j2``, ... and
``label`` (0 background, 1 signal; the truth, never a training input).  :data:`FEATURES` is
the LHCO/CATHODE set (Hallin et al., arXiv:2109.00546): ``mj1, delta_mj, tau21_j1,
tau21_j2``, masses in GeV.

:class:`Regions` defines the signal region (SR) ``[sr_lo, sr_hi)`` in ``mjj`` and the
sidebands (SB) ``[sb_lo, sr_lo)`` and ``[sr_hi, sb_hi)``; :func:`check_regions` checks them
against the data; :func:`inject` mixes background with a random subset of signal at a
given S/B in the SR, where S/B counts events (the tables are unweighted samples).

>>> import numpy as np
>>> Regions().region(np.array([2900.0, 3100.0, 3500.0, 4000.0, 4200.0])).tolist()
[0, 2, 1, 2, 0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.errors import ConfigError, DataError, close_matches

__all__ = [
    "FEATURES",
    "REQUIRED",
    "DijetTable",
    "Regions",
    "check_regions",
    "inject",
    "read_dijets",
]

#: The LHCO/CATHODE features (GeV for masses).
FEATURES: tuple[str, ...] = ("mj1", "delta_mj", "tau21_j1", "tau21_j2")

#: Columns every dijet table has.
REQUIRED: tuple[str, ...] = ("mjj", "mj1", "delta_mj", "tau21_j1", "tau21_j2", "label")

#: Default minimum number of sideband events (see :func:`check_regions`).
MIN_SIDEBAND_EVENTS = 100

_ROOT_MAGIC = b"root"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass
class DijetTable:
    """Dijet events, one row per event: 1-D numpy columns of equal length.

    Parameters
    ----------
    columns
        At least :data:`REQUIRED`, plus whatever the file has (``mj2``, ``tau32_j1``,
        jet kinematics, ``weight``, ...).
    source
        The file(s) it came from (for messages).
    """

    columns: dict[str, np.ndarray]
    source: str = "<memory>"

    def __post_init__(self) -> None:
        missing = [c for c in REQUIRED if c not in self.columns]
        if missing:
            raise DataError(
                f"{self.source}: dijet table without column(s) {', '.join(missing)}; "
                f"required: {', '.join(REQUIRED)}"
            )
        cols = {name: np.asarray(val) for name, val in self.columns.items()}
        lengths = {name: (val.ndim, len(val) if val.ndim else 0) for name, val in cols.items()}
        n = lengths["mjj"][1]
        bad = [name for name, (ndim, size) in lengths.items() if ndim != 1 or size != n]
        if bad:
            raise DataError(
                f"{self.source}: column(s) {', '.join(bad)} are not 1-D with {n} entries "
                "like mjj; a dijet table holds one value per event"
            )
        self.columns = cols

    def __len__(self) -> int:
        return int(self.columns["mjj"].size)

    @property
    def mjj(self) -> np.ndarray:
        """Dijet invariant mass (GeV)."""
        return self.columns["mjj"]

    @property
    def label(self) -> np.ndarray:
        """Truth: 0 background, 1 signal."""
        return self.columns["label"]

    def features(self, names: Sequence[str] = FEATURES) -> np.ndarray:
        """The columns ``names`` as an (n, k) float64 matrix."""
        names = list(names)
        unknown = [name for name in names if name not in self.columns]
        if unknown:
            raise DataError(
                f"{self.source}: no feature {unknown[0]!r}; available: "
                f"{', '.join(sorted(self.columns))} ({close_matches(unknown[0], self.columns)})"
            )
        if not names:
            return np.zeros((len(self), 0), dtype=np.float64)
        return np.column_stack([self.columns[name].astype(np.float64) for name in names])

    def take(self, index: np.ndarray | Sequence[int] | Sequence[bool]) -> DijetTable:
        """The rows ``index`` selects: a boolean mask of length ``len(self)`` or integers."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise DataError(
                    f"{self.source}: a row mask of shape {idx.shape} for {len(self)} events; "
                    f"accepted: a boolean mask of shape ({len(self)},) or integer indices"
                )
        elif idx.size == 0:
            idx = idx.astype(np.int64)
        elif idx.dtype.kind not in "iu":
            raise DataError(
                f"{self.source}: row index of dtype {idx.dtype}; accepted: a boolean mask or "
                "integer indices"
            )
        elif idx.min() < -len(self) or idx.max() >= len(self):
            raise DataError(
                f"{self.source}: row index out of range for {len(self)} events "
                f"(got {int(idx.min())}..{int(idx.max())})"
            )
        return DijetTable({k: v[idx] for k, v in self.columns.items()}, self.source)

    @staticmethod
    def concat(tables: Sequence[DijetTable]) -> DijetTable:
        """The rows of ``tables`` one after the other; the columns all of them have."""
        tables = list(tables)
        if not tables:
            raise DataError("no dijet tables to concatenate; accepted: at least one")
        common = [c for c in tables[0].columns if all(c in t.columns for t in tables[1:])]
        sources = list(dict.fromkeys(t.source for t in tables))
        return DijetTable(
            {c: np.concatenate([t.columns[c] for t in tables]) for c in common},
            " + ".join(sources),
        )


def _read_root(path: Path) -> dict[str, np.ndarray]:
    import uproot

    try:
        with uproot.open(path) as f:
            if "Events" not in f:
                raise DataError(
                    f"'{path}': no TTree 'Events'; expected a fivesigma dijets ROOT file "
                    f"(fivesigma generate dijets) with branches {', '.join(REQUIRED)}"
                )
            tree = f["Events"]
            # per-event branches only: the jagged constituents ("float[]" in a TTree,
            # "std::vector<float>" in an RNTuple) do not fit one row per event
            flat = [n for n, typ in tree.typenames().items() if "[" not in typ and "<" not in typ]
            return tree.arrays(flat, library="np")
    except DataError:
        raise
    except Exception as err:
        raise DataError(
            f"'{path}': cannot read it as a dijets ROOT file ({type(err).__name__}: {err}); "
            f"expected TTree 'Events' with branches {', '.join(REQUIRED)}"
        ) from None


def read_dijets(path: str | PathLike) -> DijetTable:
    """A dijet table from a ``dijets`` generator ROOT file (TTree ``Events``) or an LHC
    Olympics R&D feature file (HDF5), told apart by their first bytes.

    Raises DataError (one line) for a missing file, another format, or missing columns.
    """
    from fivesigma.io.lhco import read_lhco

    path = Path(path)
    expected = (
        "accepted: a fivesigma dijets ROOT file (TTree 'Events') or an LHC Olympics "
        "feature file (.h5)"
    )
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as err:
        raise DataError(f"'{path}': cannot open it ({err.strerror or err}); {expected}") from None
    if head.startswith(_ROOT_MAGIC):
        columns = _read_root(path)
    elif head.startswith(_HDF5_MAGIC):
        columns = read_lhco(path)
    else:
        raise DataError(f"'{path}': neither ROOT nor HDF5; {expected}")
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise DataError(
            f"'{path}': no column(s) {', '.join(missing)}; a dijet file needs {', '.join(REQUIRED)}"
        )
    return DijetTable(columns, str(path))


@dataclass(frozen=True)
class Regions:
    """Signal region and sidebands in ``mjj`` (GeV).

    ``sr = (lo, hi)`` is the signal region ``[lo, hi)``; ``sidebands = (lo, hi)`` are the
    outer edges: SB = ``[sidebands[0], sr[0]) U [sr[1], sidebands[1])``.
    """

    sr: tuple[float, float] = (3300.0, 3700.0)
    sidebands: tuple[float, float] = (3000.0, 4100.0)

    def region(self, mjj: np.ndarray) -> np.ndarray:
        """Per event: 0 outside, 1 signal region, 2 sideband (int8)."""
        m = np.asarray(mjj, dtype=np.float64)
        (sr_lo, sr_hi), (sb_lo, sb_hi) = self.sr, self.sidebands
        out = np.zeros(m.shape, dtype=np.int8)
        out[((m >= sb_lo) & (m < sr_lo)) | ((m >= sr_hi) & (m < sb_hi))] = 2
        out[(m >= sr_lo) & (m < sr_hi)] = 1
        return out


def check_regions(
    regions: Regions, mjj: np.ndarray, min_sideband_events: int = MIN_SIDEBAND_EVENTS
) -> None:
    """Check ``regions`` against the data's ``mjj``; DataError (one line) when:

    the edges are not finite and increasing, the sidebands do not enclose the signal region
    on both sides, the signal region lies (partly) outside the data's mjj range, or fewer
    than ``min_sideband_events`` events fall in the sidebands.
    """
    (sr_lo, sr_hi), (sb_lo, sb_hi) = regions.sr, regions.sidebands
    edges = (sr_lo, sr_hi, sb_lo, sb_hi)
    if not all(isinstance(x, int | float) and math.isfinite(x) for x in edges):
        raise DataError(f"region edges must be finite numbers (GeV), got sr {regions.sr}, "
                        f"sidebands {regions.sidebands}")  # fmt: skip
    if not sr_lo < sr_hi:
        raise DataError(f"signal region {list(regions.sr)} GeV is empty; accepted: low < high")
    if not (sb_lo < sr_lo and sr_hi < sb_hi):
        raise DataError(
            f"sidebands {list(regions.sidebands)} GeV do not enclose the signal region "
            f"{list(regions.sr)} GeV; accepted: sidebands[0] < sr[0] and sr[1] < sidebands[1]"
        )
    m = np.asarray(mjj, dtype=np.float64)
    m = m[np.isfinite(m)]
    if m.size == 0:
        raise DataError("no events with a finite mjj to define the regions on")
    lo, hi = float(m.min()), float(m.max())
    if sr_lo < lo or sr_hi > hi:
        raise DataError(
            f"signal region {list(regions.sr)} GeV lies (partly) outside the data's mjj range "
            f"[{lo:.0f}, {hi:.0f}] GeV; accepted: a signal region inside that range"
        )
    n_sb = int(np.count_nonzero(regions.region(m) == 2))
    if n_sb < min_sideband_events:
        raise DataError(
            f"only {n_sb} events in the sidebands {list(regions.sidebands)} GeV around the "
            f"signal region {list(regions.sr)} GeV; at least {min_sideband_events} are needed "
            "(wider sidebands or more events)"
        )


def inject(
    background: DijetTable,
    signal: DijetTable,
    regions: Regions,
    *,
    s_over_b: float | None = None,
    n_signal: int | None = None,
    rng: np.random.Generator,
) -> tuple[DijetTable, dict[str, Any]]:
    """Background plus a random subset of ``signal``, shuffled; ``label`` stays the truth.

    Give exactly one of:

    ``s_over_b``
        S/B in the signal region, counting events: ``S = round(s_over_b * B)`` signal
        events are drawn from the signal events inside the SR, B being the background
        events in the SR, and signal events outside the SR are drawn in the proportion the
        signal sample has (so the injected signal keeps its mjj shape).  The S/B in the SR
        is then exactly ``S / B``.
    ``n_signal``
        That many signal events, drawn at random from the whole signal table.

    Returns the mixed table and ``{"n_signal", "n_signal_sr", "n_background_sr",
    "s_over_b_sr", "significance_sr"}`` (S/B and S/sqrt(B) in the SR).

    Raises ConfigError for a bad request and DataError when the signal table has fewer
    events than asked for (naming how many it has) or the SR holds no background.
    """
    if (s_over_b is None) == (n_signal is None):
        raise ConfigError("inject needs exactly one of s_over_b and n_signal")
    b_sr = int(np.count_nonzero(regions.region(background.mjj) == 1))
    if b_sr == 0:
        raise DataError(
            f"no background events in the signal region {list(regions.sr)} GeV "
            f"({background.source}), so S/B is undefined"
        )
    sig_region = regions.region(signal.mjj)
    in_sr = np.flatnonzero(sig_region == 1)
    out_sr = np.flatnonzero(sig_region != 1)
    if s_over_b is not None:
        if isinstance(s_over_b, bool) or not isinstance(s_over_b, int | float):
            raise ConfigError(f"s_over_b must be a number >= 0, got {s_over_b!r}")
        if not (math.isfinite(s_over_b) and s_over_b >= 0):
            raise ConfigError(f"s_over_b must be a finite number >= 0, got {s_over_b!r}")
        n_in = round(s_over_b * b_sr)
        if n_in > in_sr.size:
            raise DataError(
                f"S/B = {s_over_b:g} in the signal region needs {n_in} signal events there "
                f"(B = {b_sr}); only {in_sr.size} of the {len(signal)} signal events "
                f"({signal.source}) are in the signal region"
            )
        n_out = round(n_in * out_sr.size / in_sr.size) if in_sr.size else 0
        n_out = min(n_out, out_sr.size)
        chosen = np.concatenate(
            [
                rng.choice(in_sr, size=n_in, replace=False),
                rng.choice(out_sr, size=n_out, replace=False),
            ]
        )
    else:
        if isinstance(n_signal, bool) or not isinstance(n_signal, int | np.integer) or n_signal < 0:
            raise ConfigError(f"n_signal must be an integer >= 0, got {n_signal!r}")
        if n_signal > len(signal):
            raise DataError(
                f"asked to inject {n_signal} signal events; only {len(signal)} are available "
                f"({signal.source})"
            )
        chosen = rng.choice(len(signal), size=int(n_signal), replace=False)
    picked = signal.take(np.sort(chosen).astype(np.int64))
    mixed = DijetTable.concat([background, picked])
    mixed = mixed.take(rng.permutation(len(mixed)))
    s_sr = int(np.count_nonzero(regions.region(picked.mjj) == 1))
    info = {
        "n_signal": len(picked),
        "n_signal_sr": s_sr,
        "n_background_sr": b_sr,
        "s_over_b_sr": s_sr / b_sr,
        "significance_sr": s_sr / math.sqrt(b_sr),
    }
    return mixed, info
