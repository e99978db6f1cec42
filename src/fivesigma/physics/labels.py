"""Truth-label schemas: what the integer ``label`` of a sample means.

One definition shared by the generators that write labels and the readers, taggers and
benchmarks that read them.

>>> JET_LABELS[4], JET_LABEL_CODES["gluon"]
('top', 1)
>>> TOP_VS_QCD.names[TOP_VS_QCD.codes[JET_LABEL_CODES["b"]]]
'QCD'
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["FLAVOUR", "JET_LABELS", "JET_LABEL_CODES", "TOP_VS_QCD", "ClassMap"]

#: Jet truth-label codes (the ``label`` branch of the built-in ``jets`` samples, and the
#: codes every jet reader maps its files' labels to): QCD jets by flavour (light quark
#: u/d/s, gluon, c, b), then the boosted-resonance jets (t, W, Z, H -> b bbar).
JET_LABELS: dict[int, str] = {
    0: "light",
    1: "gluon",
    2: "c",
    3: "b",
    4: "top",
    5: "W",
    6: "Z",
    7: "Hbb",
}
#: name -> code of :data:`JET_LABELS`.
JET_LABEL_CODES: dict[str, int] = {name: code for code, name in JET_LABELS.items()}


class ClassMap(NamedTuple):
    """Classes of a classifier built on label codes.

    ``names[i]`` is the name of class ``i``; ``codes`` maps a label code to its class
    index.  Samples with codes not in ``codes`` are not used.
    """

    names: tuple[str, ...]
    codes: dict[int, int]


#: Top against QCD jets of any flavour.
TOP_VS_QCD = ClassMap(("QCD", "top"), {0: 0, 1: 0, 2: 0, 3: 0, 4: 1})
#: Five classes: b, c, light-quark, gluon and top jets.
FLAVOUR = ClassMap(("b", "c", "uds", "g", "top"), {3: 0, 2: 1, 0: 2, 1: 3, 4: 4})
