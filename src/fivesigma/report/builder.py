"""One report builder for every task: a :class:`Report` of :class:`Section` s of blocks.

A task assembles its report from plain blocks and writes ONE self-contained HTML file
that opens offline (no scripts, external styles, fonts or images; figures are embedded
as base64 PNG ``data:`` URIs), rendered through the Jinja2 template ``template.html``
(autoescape on) so that every report looks the same:

- :class:`Text`: a paragraph (escaped), or pre-formatted text (``pre=True``);
- :class:`Table`: a header and rows of cells; a cell is a value (numbers go through
  :func:`fmt_number`) or a :class:`Cell` with a CSS class, a tooltip or a link; a row
  may be a :class:`Row` with an id and a class;
- :class:`Figure`: a matplotlib figure, or a callable that makes one (preferred: it is
  called at render time inside the report style, so an error while drawing it is caught
  too); the figure is closed after rendering;
- :class:`KeyValues`: key/value lists (configuration, provenance); nested dicts are
  flattened to ``a.b`` keys;
- :class:`Grid` (blocks side by side), :class:`Group` (a sub-section with its own
  heading and anchor, listed in the navigation), :class:`Details` (collapsed) and
  :class:`Box` (a highlighted result) hold other blocks.

A figure that fails to draw does not lose the report: its place shows a short error
note and the rest is rendered (the error is logged on ``fivesigma.report``).  Any other
error leaves no file: :meth:`Report.write` renders everything first and writes through
:func:`fivesigma.core.files.atomic_file`.

Strings are escaped; to put trusted markup in a text, heading or cell build it with
:func:`markup`, which escapes its arguments (the result is an :class:`Html` string, which
the template does not escape again).

A missing report dependency (matplotlib, mplhep, hist, jinja2) is not a figure error: it
raises :class:`~fivesigma.errors.MissingDependencyError` with the install command.
Importing this module loads none of them.

Examples
--------
>>> import tempfile, pathlib
>>> rep = Report("Toy", subtitle="a report")
>>> sec = rep.section("Results").add(
...     Text("Two numbers:"), Table(["name", "value"], [["pi", 3.14159265], ["n", 12345]])
... )
>>> page = rep.render()
>>> "<td>3.142</td>" in page and "<td>12,345</td>" in page and 'href="#results"' in page
True
>>> out = rep.write(pathlib.Path(tempfile.mkdtemp()) / "report.html")
"""

from __future__ import annotations

import functools
import html
import logging
import math
import os
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.core import extras
from fivesigma.core.files import atomic_file
from fivesigma.errors import MissingDependencyError
from fivesigma.report.style import (
    DEFAULT_LABEL,
    DPI,
    HTML_COLORS,
    ExpLabel,
    close_figure,
    fig_to_data_uri,
    hep_style,
    use_label,
)

__all__ = [
    "MISSING",
    "Box",
    "Cell",
    "Details",
    "Figure",
    "Grid",
    "Group",
    "Html",
    "KeyValues",
    "Report",
    "Row",
    "Section",
    "Table",
    "Text",
    "flatten",
    "fmt_number",
    "fmt_value",
    "markup",
    "slugify",
]

log = logging.getLogger("fivesigma.report")

#: How a missing or NaN number shows.
MISSING = "—"
#: The error note of a figure that failed is cut to this many characters.
MAX_ERROR_CHARS = 300


# --------------------------------------------------------------------------- formatting


def fmt_number(v: Any, digits: int = 4) -> str:
    """Short human form of a number: ``digits`` significant digits, integers with
    thousands separators, None/NaN as an em dash, ±inf as ∞; other values as ``str``.

    Examples
    --------
    >>> fmt_number(0.051749), fmt_number(12345), fmt_number(float("nan")), fmt_number(True)
    ('0.05175', '12,345', '—', 'yes')
    """
    if v is None:
        return MISSING
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    if isinstance(v, str):
        return v
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return MISSING
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    return f"{f:.{digits}g}"


def fmt_value(v: Any, digits: int = 6) -> str:
    """A value of a key/value list: numbers via :func:`fmt_number`, sequences joined
    (the first 20 items), None as an em dash, anything else as ``str``."""
    if isinstance(v, float | np.floating | int | np.integer) and not isinstance(v, bool):
        return fmt_number(v, digits)
    if isinstance(v, list | tuple | np.ndarray):
        items = list(v)
        shown = ", ".join(fmt_value(x, digits) for x in items[:20])
        return shown + (f", … ({len(items)} in all)" if len(items) > 20 else "")
    return MISSING if v is None else str(v)


def flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested mappings to ``[("a.b", value), ...]``; empty mappings stay one entry."""
    rows: list[tuple[str, Any]] = []
    if isinstance(d, Mapping):
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, Mapping) and v:
                rows.extend(flatten(v, key))
            else:
                rows.append((key, v))
    else:
        rows.append((prefix, d))
    return rows


class Html(str):
    """A string of trusted HTML: the template inserts it as it is (``__html__``).

    Make one with :func:`markup`, which escapes what it inserts.
    """

    __slots__ = ()

    def __html__(self) -> str:
        return str(self)


def _is_html(v: Any) -> bool:
    return hasattr(v, "__html__")


class _EscapingFormatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        text = format(value, format_spec)
        return text if _is_html(value) else html.escape(text, quote=True)


def markup(template: str, *args: Any, **kwargs: Any) -> Html:
    """Trusted HTML ``template`` with ``str.format`` fields filled by escaped arguments
    (an :class:`Html` argument is inserted as it is).

    >>> str(markup("<strong>{}</strong> {:.2f}", "a<b", 3.14159))
    '<strong>a&lt;b</strong> 3.14'
    """
    return Html(_EscapingFormatter().vformat(template, args, kwargs))


def slugify(text: str) -> str:
    """An HTML id from ``text``: letters, digits, ``-`` and ``_`` only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-").lower() or "section"


# --------------------------------------------------------------------------- blocks


@dataclass
class Cell:
    """One table cell: ``value`` (number formatted with ``digits``, or text/markup),
    an optional CSS class, tooltip (``title``) and link target (``href``, e.g. ``#id``)."""

    value: Any
    cls: str = ""
    title: str = ""
    href: str = ""
    digits: int | None = None


@dataclass
class Row:
    """A table row with an optional id and CSS class (e.g. ``"best"``)."""

    cells: Sequence[Any]
    id: str = ""
    cls: str = ""


@dataclass
class Text:
    """A paragraph (``pre``: pre-formatted block); ``cls`` e.g. "note" or "alarm"."""

    text: str | Html
    pre: bool = False
    cls: str = ""


@dataclass
class Table:
    """A table: ``header`` cells, then ``rows`` (lists of values / :class:`Cell`, or
    :class:`Row`).  Numbers show with ``digits`` significant digits; the columns in
    ``left`` are left-aligned (names); ``scroll`` lets a wide table scroll sideways."""

    header: Sequence[Any] = ()
    rows: Sequence[Row | Sequence[Any]] = ()
    digits: int = 4
    left: Sequence[int] = (0,)
    cls: str = ""
    scroll: bool = False


@dataclass
class Figure:
    """A matplotlib figure, or a zero-argument callable returning one (called while the
    report renders, inside :func:`fivesigma.report.style.hep_style`)."""

    figure: Any
    caption: str | Html = ""
    alt: str = ""
    dpi: int = DPI


@dataclass
class KeyValues:
    """Key/value rows from a mapping (nested mappings flattened to ``a.b``) or pairs.

    ``header`` None leaves out the header row; ``mono`` shows values in a monospace
    font that breaks anywhere (hashes, paths, versions).
    """

    items: Mapping[str, Any] | Iterable[tuple[str, Any]]
    header: tuple[str, str] | None = ("item", "value")
    mono: bool = True
    digits: int = 6


@dataclass
class Grid:
    """Blocks side by side (figures, usually), wrapping on narrow screens."""

    blocks: list[Any] = field(default_factory=list)


@dataclass
class Group:
    """A sub-section: a heading (with an optional note and badge), its own anchor
    (listed in the navigation under its section), and blocks."""

    title: str | Html
    blocks: list[Any] = field(default_factory=list)
    anchor: str = ""
    note: str = ""
    badge: str = ""


@dataclass
class Details:
    """Blocks shown collapsed under a ``summary`` line."""

    summary: str | Html
    blocks: list[Any] = field(default_factory=list)


@dataclass
class Box:
    """Blocks in a highlighted box (``cls="result"``: the physics result)."""

    blocks: list[Any] = field(default_factory=list)
    cls: str = "result"


@dataclass
class Section:
    """A titled part of the report with an anchor (default: from the title)."""

    title: str
    blocks: list[Any] = field(default_factory=list)
    anchor: str = ""

    def add(self, *blocks: Any) -> Section:
        """Append blocks (None is skipped); returns the section."""
        self.blocks.extend(b for b in blocks if b is not None)
        return self


# --------------------------------------------------------------------------- report


class Report:
    """A report: title, subtitle, sections; :meth:`write` renders one HTML file.

    ``label`` is the experiment-style label on every figure drawn while rendering
    (:class:`fivesigma.report.style.ExpLabel`; default "fivesigma"; None: no label).
    """

    def __init__(
        self,
        title: str,
        subtitle: str | Html = "",
        *,
        sections: Iterable[Section] = (),
        label: ExpLabel | None = DEFAULT_LABEL,
    ) -> None:
        self.title = title
        self.subtitle = subtitle
        self.sections: list[Section] = list(sections)
        self.label = label

    def add(self, *sections: Section) -> Report:
        """Append sections; returns the report."""
        self.sections.extend(sections)
        return self

    def section(self, title: str, anchor: str = "") -> Section:
        """A new, empty section appended to the report."""
        sec = Section(title, anchor=anchor)
        self.sections.append(sec)
        return sec

    def render(self) -> str:
        """The report as one HTML string (figures drawn and embedded now)."""
        ids = _Ids()
        with use_label(self.label):
            nodes = [self._section(s, ids) for s in self.sections]
        return _template().render(
            title=self.title,
            subtitle=self.subtitle,
            sections=nodes,
            colors=HTML_COLORS,
        )

    def write(self, path: str | os.PathLike) -> Path:
        """Render and write to ``path`` atomically (nothing is left there on error)."""
        text = self.render()
        path = Path(path)
        with atomic_file(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return path

    # ------------------------------------------------------------------ nodes

    def _section(self, sec: Section, ids: _Ids) -> dict[str, Any]:
        anchor = ids.take(sec.anchor or slugify(sec.title))
        blocks = [self._block(b, ids) for b in sec.blocks]
        toc = [(b["anchor"], b["title"]) for b in blocks if b["kind"] == "group"]
        return {"anchor": anchor, "title": sec.title, "blocks": blocks, "toc": toc}

    def _block(self, b: Any, ids: _Ids) -> dict[str, Any]:
        if isinstance(b, str | Html):
            b = Text(b)
        if isinstance(b, Text):
            return {"kind": "pre" if b.pre else "text", "text": b.text, "cls": b.cls}
        if isinstance(b, Table):
            return _table_node(b)
        if isinstance(b, KeyValues):
            return _key_values_node(b)
        if isinstance(b, Figure):
            return _figure_node(b)
        if isinstance(b, Grid):
            return {"kind": "grid", "blocks": [self._block(c, ids) for c in b.blocks]}
        if isinstance(b, Group):
            return {
                "kind": "group",
                "anchor": ids.take(b.anchor or slugify(str(b.title))),
                "title": b.title,
                "note": b.note,
                "badge": b.badge,
                "blocks": [self._block(c, ids) for c in b.blocks],
            }
        if isinstance(b, Details):
            return {
                "kind": "details",
                "summary": b.summary,
                "blocks": [self._block(c, ids) for c in b.blocks],
            }
        if isinstance(b, Box):
            return {"kind": "box", "cls": b.cls, "blocks": [self._block(c, ids) for c in b.blocks]}
        raise TypeError(
            f"a report block must be Text, Table, Figure, KeyValues, Grid, Group, Details "
            f"or Box, got {type(b).__name__}"
        )


class _Ids:
    """Unique HTML ids: a repeated one gets ``-2``, ``-3``, ..."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def take(self, base: str) -> str:
        slug, i = base, 2
        while slug in self.used:
            slug, i = f"{base}-{i}", i + 1
        self.used.add(slug)
        return slug


def _cell_node(c: Any, digits: int, left: bool, header: bool = False) -> dict[str, Any]:
    cell = c if isinstance(c, Cell) else Cell(c)
    v = cell.value
    text = v if _is_html(v) else fmt_number(v, cell.digits or digits)
    cls = cell.cls or (("key" if header else "name") if left else "")
    return {"text": text, "cls": cls, "title": cell.title, "href": cell.href}


def _table_node(t: Table) -> dict[str, Any]:
    left = set(t.left)
    rows = []
    for r in t.rows:
        row = r if isinstance(r, Row) else Row(list(r))
        cells = [_cell_node(c, t.digits, i in left) for i, c in enumerate(row.cells)]
        rows.append({"id": row.id, "cls": row.cls, "cells": cells})
    header = [_cell_node(h, t.digits, i in left, header=True) for i, h in enumerate(t.header)]
    return {"kind": "table", "header": header, "rows": rows, "cls": t.cls, "scroll": t.scroll}


def _key_values_node(kv: KeyValues) -> dict[str, Any]:
    pairs = flatten(kv.items) if isinstance(kv.items, Mapping) else list(kv.items)
    rows = [(str(k), v if _is_html(v) else fmt_value(v, kv.digits)) for k, v in pairs]
    return {"kind": "keyvalues", "header": kv.header, "rows": rows, "mono": kv.mono}


def _figure_node(f: Figure) -> dict[str, Any]:
    """Draw (when given a callable) and embed a figure; on error, a short note instead."""
    fig = None
    try:
        with hep_style():
            fig = f.figure if hasattr(f.figure, "savefig") else f.figure()
            if not hasattr(fig, "savefig"):
                raise TypeError(f"expected a matplotlib figure, got {type(fig).__name__}")
            src = fig_to_data_uri(fig, dpi=f.dpi)
    except MissingDependencyError:
        raise  # not this figure's fault: no figure can be drawn
    except Exception as err:  # a broken figure must not lose the report
        if fig is not None and hasattr(fig, "clear"):
            close_figure(fig)
        what = f.alt or (str(f.caption)[:80] if f.caption else "figure")
        log.warning("report figure '%s' could not be drawn", what, exc_info=True)
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        if len(reason) > MAX_ERROR_CHARS:
            reason = reason[: MAX_ERROR_CHARS - 1] + "…"
        return {"kind": "error", "text": f"Figure not drawn ({what}): {reason}"}
    return {"kind": "figure", "src": src, "caption": f.caption, "alt": f.alt}


@functools.cache
def _template() -> Any:
    jinja2 = extras.jinja2()  # lazy: only rendering needs it

    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    source = resources.files("fivesigma.report").joinpath("template.html").read_text("utf-8")
    return env.from_string(source)
