"""How results show themselves: pandas DataFrames (the ``pandas`` extra) and the small HTML
tables Jupyter displays."""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from nnequiv._optional import optional_module


def frame(rows: Sequence[dict], index: str | None = None):
    """A pandas DataFrame of ``rows`` (one dict per row)."""
    table = optional_module("pandas", "pandas", "a DataFrame").DataFrame(list(rows))
    return table.set_index(index) if index is not None else table


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "n/a"
    return html.escape(str(value))


def html_table(caption: str, rows: Sequence[tuple[str, object]] = (), table=None) -> str:
    """A captioned HTML table: key-value ``rows``, or a ``table`` (header, body rows)."""
    parts = [f"<table><caption>{html.escape(caption)}</caption>"]
    for key, value in rows:
        parts.append(f"<tr><th style='text-align:left'>{html.escape(key)}</th>"
                     f"<td>{_cell(value)}</td></tr>")  # fmt: skip
    if table is not None:
        header, body = table
        parts.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        for row in body:
            parts.append("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>")
    parts.append("</table>")
    return "".join(parts)


def printable(text) -> str:
    """``text`` with every character a terminal would act on or hide (control characters
    such as ``ESC``, newlines, bidirectional overrides) written as its escape (``\\x1b``);
    for text output and messages. JSON keeps names exact."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in text
    )


def unique_labels(
    parts: Sequence[Sequence[str]], min_parts: Sequence[int] | None = None
) -> list[str]:
    """Short labels that tell paths (given as their parts) apart: the last ``min_parts`` parts
    (default 1), with as many more as it takes to tell different paths apart. A path given
    twice keeps its label the first time and gets ``"#2"``, ``"#3"``, ... after: the one
    labeller of nnequiv (text, JSON, figures and reports show the same labels).

    Examples
    --------
    >>> unique_labels([("run1", "model.npz"), ("run2", "model.npz"), ("run1", "other.npz")])
    ['run1/model.npz', 'run2/model.npz', 'other.npz']
    >>> unique_labels([("m.npz",), ("m.npz",)])
    ['m.npz', 'm.npz#2']
    """
    parts = [tuple(p) for p in parts]
    lengths = [min(m, len(p)) for m, p in zip(min_parts or [1] * len(parts), parts)]
    while True:
        labels = ["/".join(p[-k:]) for p, k in zip(parts, lengths)]
        paths_of: dict[str, set] = {}
        for p, label in zip(parts, labels):
            paths_of.setdefault(label, set()).add(p)
        grow = [
            i
            for i, label in enumerate(labels)
            if len(paths_of[label]) > 1 and lengths[i] < len(parts[i])
        ]
        if not grow:
            break
        for i in grow:
            lengths[i] += 1
    return numbered(labels)


def numbered(labels: Sequence[str]) -> list[str]:
    """The labels with each repeat numbered: ``"#2"``, ``"#3"``, ... after the first (the
    marks of :func:`unique_labels`)."""
    seen: Counter = Counter()
    out = []
    for label in labels:
        seen[label] += 1
        out.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return out


def display_names(sources: Sequence[str]) -> list[str]:
    """:func:`unique_labels` of the sources' paths: the file name, with as many parent folders
    as it takes to be unique; a source given twice gets ``"#2"``, ``"#3"``, ..."""
    return unique_labels([Path(str(s)).parts or (str(s),) for s in sources])
