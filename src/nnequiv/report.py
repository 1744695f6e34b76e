"""One self-contained HTML report of analyses, and of classes, a verdict or an identification.

The page needs no network access: its figures are inline SVG drawn here from the numbers,
hover text is SVG ``<title>`` shown at once by a few lines of inline JavaScript, and print
CSS lays it out on paper. Every label is escaped, since file names come from strangers.

Read top to bottom: helpers, figures (data in, SVG string out), sections, page.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnequiv.equivalence import Analysis, Classes, Identification, Verdict
from nnequiv.errors import InputError
from nnequiv.figures import (
    GREY,
    alpha_text,
    class_color,
    class_labels,
    class_runs,
    display_names,
    link_classes,
    tree_order,
    x_range,
)

__all__ = ["render_report", "write_report"]

# ---- helpers --------------------------------------------------------------------------------


def _e(value) -> str:
    """Text made safe for HTML and SVG, quotes included."""
    return html.escape(str(value), quote=True)


def _num(value, digits: int = 4) -> str:
    value = float(value)
    return f"{value:.{digits}g}" if math.isfinite(value) else "n/a"


def _short(text: str, limit: int = 32) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _title(text: str) -> str:
    """An SVG hover text (the page's script shows it at once)."""
    return f"<title>{_e(text)}</title>"


def _label(x: float, y: float, text: str, **attributes) -> str:
    extra = "".join(f' {key.replace("_", "-")}="{_e(v)}"' for key, v in attributes.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{_e(text)}</text>'


#: Viridis at nine evenly spaced points (matplotlib's colormap, sampled).
_VIRIDIS = (
    (68, 1, 84),
    (71, 45, 123),
    (59, 82, 139),
    (44, 114, 142),
    (33, 145, 140),
    (40, 174, 128),
    (94, 201, 98),
    (173, 220, 48),
    (253, 231, 37),
)


def viridis(fraction: float) -> str:
    """The viridis colour at ``fraction`` in [0, 1], as ``#rrggbb``."""
    position = min(max(float(fraction), 0.0), 1.0) * (len(_VIRIDIS) - 1)
    low = min(int(position), len(_VIRIDIS) - 2)
    part = position - low
    rgb = [round(a + (b - a) * part) for a, b in zip(_VIRIDIS[low], _VIRIDIS[low + 1])]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _ink(fraction: float) -> str:
    """Text colour that reads on the viridis colour at ``fraction``."""
    return "#000" if fraction > 0.55 else "#fff"


@dataclass(frozen=True)
class _Scale:
    """Data interval ``[low, high]`` onto pixels ``[start, stop]``, linear or log10."""

    low: float
    high: float
    start: float
    stop: float
    log: bool = False

    def _t(self, value):
        return np.log10(value) if self.log else np.asarray(value, float)

    def __call__(self, value):
        low, high = self._t(self.low), self._t(self.high)
        span = (high - low) or 1.0
        return self.start + (self._t(value) - low) / span * (self.stop - self.start)


def _log_ticks(low: float, high: float) -> list[int]:
    """Decade exponents within ``[low, high]``, at most about eight."""
    first, last = math.ceil(math.log10(low) - 1e-9), math.floor(math.log10(high) + 1e-9)
    step = max(1, math.ceil((last - first + 1) / 8))
    return list(range(first, last + 1, step))


def _linear_ticks(high: float, count: int = 5) -> list[float]:
    """Round ticks from 0 to ``high``."""
    if not high > 0:
        return [0.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(high / step + 1e-9) + 1)]


def _decade_label(x: float, y: float, exponent: int, anchor: str) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">10'
        f'<tspan dy="-5" font-size="8">{exponent}</tspan></text>'
    )


def _svg(width: float, height: float, body: str, label: str, css_class: str = "") -> str:
    return (
        f'<svg class="figure {css_class}" role="img" '
        f'aria-label="{_e(label)}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}">{body}</svg>'
    )


# ---- figures --------------------------------------------------------------------------------


def svg_heatmap(
    distance: np.ndarray,
    names: Sequence[str],
    sources: Sequence[str],
    labels: Sequence[int],
    order: Sequence[int],
    eps: float,
    level: str,
    spread: tuple[np.ndarray, np.ndarray] | None = None,
    pair_eps: np.ndarray | None = None,
) -> str:
    """Distance matrix in ``order`` with a class strip, boxes around runs of one class, hover
    text on every cell, and a colour bar with eps marked."""
    count = len(order)
    cell = min(44.0, max(10.0, 560.0 / max(count, 1)))
    shown = [_short(names[i]) for i in order]
    margin = 12 + 6.2 * max(len(s) for s in shown)
    left, top = margin + 12, 10.0
    size = cell * count
    scale = float(distance.max()) or 1.0
    parts = []
    for row, i in enumerate(order):
        y = top + row * cell
        parts.append(
            f'<text x="{left - 14:.1f}" y="{y + cell / 2 + 4:.1f}" text-anchor="end">'
            f"{_title(sources[i])}{_e(shown[row])}</text>"
        )
        parts.append(
            f'<rect x="{left - 10:.1f}" y="{y:.1f}" width="7" height="{cell:.1f}" '
            f'fill="{class_color(labels[i])}">{_title(f"class {labels[i] + 1}")}</rect>'
        )
        for col, j in enumerate(order):
            value = float(distance[i, j])
            fraction = value / scale
            limit = eps if pair_eps is None else float(pair_eps[i, j])
            text = f"{names[i]} vs {names[j]}\n{level} distance d = {_num(value)}"
            if spread is not None and i != j:
                text += f", spread [{_num(spread[0][i, j])}, {_num(spread[1][i, j])}]"
            text += f"\neps = {_num(limit)}: d {'<=' if value <= limit else '>'} eps"
            x = left + col * cell
            parts.append(
                f'<rect class="cell" x="{x:.1f}" y="{y:.1f}" width="{cell:.1f}" '
                f'height="{cell:.1f}" fill="{viridis(fraction)}">{_title(text)}</rect>'
            )
            if count <= 12:
                parts.append(
                    _label(
                        x + cell / 2,
                        y + cell / 2 + 3.5,
                        f"{value:.2f}",
                        text_anchor="middle",
                        font_size="9",
                        fill=_ink(fraction),
                        pointer_events="none",
                    )
                )
    for start, stop, _ in class_runs([labels[i] for i in order]):
        for width, color in ((3.0, "#000"), (1.5, "#fff")):
            parts.append(
                f'<rect x="{left + start * cell:.1f}" y="{top + start * cell:.1f}" '
                f'width="{(stop - start) * cell:.1f}" height="{(stop - start) * cell:.1f}" '
                f'fill="none" stroke="{color}" stroke-width="{width}" pointer-events="none"/>'
            )
    for col, j in enumerate(order):
        x = left + col * cell + cell / 2 + 4
        y = top + size + 8
        parts.append(
            f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="end" '
            f'transform="rotate(-90 {x:.1f} {y:.1f})">{_title(sources[j])}{_e(shown[col])}</text>'
        )
    parts.append(_colour_bar(left + size + 18, top, size, scale, eps, level))
    width = left + size + 100
    height = top + size + 8 + margin
    return _svg(width, height, "".join(parts), f"{level} distance heatmap", "heatmap")


def _colour_bar(x: float, top: float, height: float, scale: float, eps: float, level: str):
    """Vertical viridis bar from 0 (bottom) to ``scale`` with ticks and eps."""
    stops = "".join(
        f'<stop offset="{k / (len(_VIRIDIS) - 1):.3f}" stop-color="{viridis(k / 8)}"/>'
        for k in range(len(_VIRIDIS))
    )
    y = _Scale(0.0, scale, top + height, top)
    parts = [
        f'<defs><linearGradient id="viridis-bar" x1="0" y1="1" x2="0" y2="0">{stops}'
        "</linearGradient></defs>",
        f'<rect x="{x:.1f}" y="{top:.1f}" width="12" height="{height:.1f}" '
        f'fill="url(#viridis-bar)" stroke="#444" stroke-width="0.5"/>',
    ]
    for tick in _linear_ticks(scale):
        parts.append(_label(x + 16, y(tick) + 3.5, _num(tick, 3), font_size="9"))
    if 0 <= eps <= scale:
        parts.append(
            f'<line x1="{x - 3:.1f}" x2="{x + 15:.1f}" y1="{y(eps):.1f}" y2="{y(eps):.1f}" '
            f'stroke="#c0392b" stroke-width="2"/>'
        )
        parts.append(_label(x + 44, y(eps) + 3.5, "eps", font_size="9", fill="#c0392b"))
    middle = top + height / 2
    parts.append(
        f'<text x="{x + 80:.1f}" y="{middle:.1f}" text-anchor="middle" font-size="10" '
        f'transform="rotate(-90 {x + 80:.1f} {middle:.1f})">{_e(level)} distance</text>'
    )
    return "".join(parts)


def svg_dendrogram(
    linkage: np.ndarray,
    names: Sequence[str],
    sources: Sequence[str],
    labels: Sequence[int],
    eps: float,
    eps_source: str,
    level: str,
) -> str:
    """Average-linkage tree: links within one class at ``d <= eps`` in the class colour,
    eps as a dashed line labelled with its value, hover text on every merge."""
    count = len(names)
    order = tree_order(linkage, count)
    spacing = min(40.0, max(14.0, 560.0 / count))
    shown = [_short(names[i]) for i in order]
    left, top, plot_height = 56.0, 14.0, 220.0
    eps_text = f"eps = {_num(eps)} ({eps_source})"
    end = left + spacing * count + 8
    width = end + 12 + 6.2 * len(eps_text)
    high = max(float(linkage[:, 2].max()), eps) * 1.12 or 1.0
    y = _Scale(0.0, high, top + plot_height, top)
    links = link_classes(linkage, labels, eps)
    centre = np.zeros(count + len(linkage))
    centre[order] = left + spacing * (np.arange(count) + 0.5)
    height = np.concatenate([np.zeros(count), linkage[:, 2]])
    parts = [_axis_left(y, _linear_ticks(high), top, plot_height, left, f"{level} distance")]
    for row, (a, b, merge, _) in enumerate(linkage):
        a, b = int(a), int(b)
        centre[count + row] = (centre[a] + centre[b]) / 2
        color = class_color(links[row]) if links[row] >= 0 else GREY
        points = (
            f"{centre[a]:.1f},{y(height[a]):.1f} {centre[a]:.1f},{y(merge):.1f} "
            f"{centre[b]:.1f},{y(merge):.1f} {centre[b]:.1f},{y(height[b]):.1f}"
        )
        parts.append(
            f'<polyline class="link" points="{points}" fill="none" stroke="{color}" '
            f'stroke-width="1.6">{_title(f"merge at {level} distance {_num(merge)}")}</polyline>'
        )
    parts.append(
        f'<line x1="{left:.1f}" x2="{end:.1f}" y1="{y(eps):.1f}" y2="{y(eps):.1f}" '
        f'stroke="#c0392b" stroke-dasharray="5 3">{_title(eps_text)}</line>'
    )
    parts.append(_label(end + 4, y(eps) + 3.5, eps_text, fill="#c0392b", class_="eps-label"))
    base = top + plot_height + 8
    for position, index in enumerate(order):
        cx = centre[index] + 4
        parts.append(
            f'<text x="{cx:.1f}" y="{base:.1f}" text-anchor="end" '
            f'fill="{class_color(labels[index])}" '
            f'transform="rotate(-90 {cx:.1f} {base:.1f})">'
            f"{_title(sources[index])}{_e(shown[position])}</text>"
        )
    total = base + 12 + 6.2 * max(len(s) for s in shown)
    return _svg(width, total, "".join(parts), "average-linkage dendrogram", "dendrogram")


def _axis_left(y: _Scale, ticks, top, height, left, text, log=False) -> str:
    parts = [
        f'<line x1="{left:.1f}" x2="{left:.1f}" y1="{top:.1f}" y2="{top + height:.1f}" '
        'stroke="#444"/>'
    ]
    for tick in ticks:
        value = 10.0**tick if log else tick
        ty = y(value)
        parts.append(
            f'<line x1="{left - 4:.1f}" x2="{left:.1f}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#444"/>'
        )
        if log:
            parts.append(_decade_label(left - 6, ty + 4, tick, "end"))
        else:
            parts.append(_label(left - 6, ty + 3.5, _num(tick, 3), text_anchor="end"))
    middle = top + height / 2
    parts.append(
        f'<text x="{14:.1f}" y="{middle:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {middle:.1f})">{_e(text)}</text>'
    )
    return "".join(parts)


@dataclass
class Curve:
    """One network's CSD for the curve figure."""

    name: str
    color: str
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    tail_start: float
    fit: tuple[float, float, float, float] | None  # alpha, intercept, x_start, x_end


def curve_of(analysis: Analysis, name: str, color: str) -> Curve:
    low, high = analysis.csd_band
    d = analysis.decay
    fit = (d.alpha, d.intercept, d.x_start, d.x_end) if math.isfinite(d.alpha) else None
    return Curve(
        name,
        color,
        analysis.edges[:-1],
        analysis.csd_mean,
        low,
        high,
        float(analysis.tail_start),
        fit,
    )


def _path(xs, ys, x: _Scale, y: _Scale) -> str:
    return " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(xs, ys))


def svg_curves(curves: Sequence[Curve], x_limits: tuple[float, float], label: str) -> str:
    """CSD curves on log axes: the mean, the min-max band where both ends are positive, the
    maximum alone (dotted) where the minimum is 0, the tail fit (dashed), the tail start (a
    tick on the top edge); nothing where the CSD is 0. Hovering a column shows every curve's
    values at that x."""
    positive = np.concatenate(
        [np.zeros(0)] + [v[v > 0] for c in curves for v in (c.mean, c.low, c.high)]
    )
    if positive.size == 0:
        return '<p class="note">The CSD is 0 at every location: nothing to draw on log axes.</p>'
    left, top, width, height = 64.0, 14.0, 600.0, 300.0
    x = _Scale(*x_limits, left, left + width, log=True)
    y_low = 10.0 ** math.floor(math.log10(positive.min()))
    y_high = 10.0 ** math.ceil(math.log10(positive.max()) + 1e-9)
    y = _Scale(y_low, y_high, top + height, top, log=True)
    inside = (curves[0].x >= x_limits[0]) & (curves[0].x <= x_limits[1])
    parts = [
        f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#444"/>',
        _axis_left(y, _log_ticks(y_low, y_high), top, height, left, "CSD(x)", log=True),
    ]
    for tick in _log_ticks(*x_limits):
        tx = x(10.0**tick)
        parts.append(
            f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{top:.1f}" y2="{top + height:.1f}" '
            'stroke="#ddd"/>'
        )
        parts.append(_decade_label(tx, top + height + 16, tick, "middle"))
    parts.append(
        _label(left + width / 2, top + height + 36, "normalised eigenvalue x", text_anchor="middle")
    )
    # a nested svg with the same coordinates clips the curves to the frame
    parts.append(
        f'<svg x="{left}" y="{top}" width="{width}" height="{height}" '
        f'viewBox="{left} {top} {width} {height}">'
        + "".join(_curve_svg(curve, inside, x, y) for curve in curves)
        + "</svg>"
    )
    parts += [_tail_marker(curve, x, top) for curve in curves]
    parts.append(_hover_columns(curves, inside, x, top, height))
    return _svg(left + width + 16, top + height + 44, "".join(parts), label, "curves")


def _curve_svg(curve: Curve, inside: np.ndarray, x: _Scale, y: _Scale) -> str:
    parts = []
    band = inside & (curve.low > 0)
    if band.any():
        outline = (
            _path(curve.x[band], curve.high[band], x, y)
            + " "
            + _path(curve.x[band][::-1], curve.low[band][::-1], x, y)
        )
        parts.append(
            f'<polygon points="{outline}" fill="{curve.color}" fill-opacity="0.2" stroke="none"/>'
        )
    beyond = inside & (curve.high > 0) & ~(curve.low > 0)
    if beyond.any():
        first = int(np.argmax(beyond))
        beyond[max(first - 1, 0)] = bool(inside[max(first - 1, 0)])
        parts.append(
            f'<polyline points="{_path(curve.x[beyond], curve.high[beyond], x, y)}" '
            f'fill="none" stroke="{curve.color}" stroke-width="1" stroke-dasharray="1 2"/>'
        )
    shown = inside & (curve.mean > 0)
    parts.append(
        f'<polyline points="{_path(curve.x[shown], curve.mean[shown], x, y)}" fill="none" '
        f'stroke="{curve.color}" stroke-width="1.8">{_title(curve.name)}</polyline>'
    )
    if curve.fit is not None:
        alpha, intercept, start, stop = curve.fit
        ends = np.array([start, stop])
        parts.append(
            f'<polyline points="{_path(ends, np.exp(intercept) * ends**-alpha, x, y)}" '
            f'fill="none" stroke="#000" stroke-width="1" stroke-dasharray="5 3">'
            f"{_title(f'{curve.name}: tail fit alpha = {_num(alpha, 3)}')}</polyline>"
        )
    return "".join(parts)


def _tail_marker(curve: Curve, x: _Scale, top: float) -> str:
    """A triangle on the top edge at the curve's tail start."""
    if not x.low <= curve.tail_start <= x.high:
        return ""
    tx = x(curve.tail_start)
    return (
        f'<path d="M{tx - 5:.1f},{top - 8:.1f} L{tx + 5:.1f},{top - 8:.1f} '
        f'L{tx:.1f},{top:.1f} Z" fill="{curve.color}">'
        f"{_title(f'{curve.name}: tail start x = {_num(curve.tail_start)}')}</path>"
    )


def _hover_columns(curves, inside, x: _Scale, top: float, height: float) -> str:
    """Transparent columns, one per bin, whose hover text lists each curve at that x."""
    columns = []
    xs = curves[0].x
    for k in np.flatnonzero(inside):
        right = xs[k + 1] if k + 1 < len(xs) else xs[k] * (xs[k] / xs[k - 1])
        start, stop = x(xs[k]), min(x(right), x(x.high))
        lines = [f"x = {_num(xs[k], 3)}"]
        for curve in curves:
            if curve.high[k] > 0:
                lines.append(
                    f"{curve.name}: CSD {_num(curve.mean[k], 3)} "
                    f"(min {_num(curve.low[k], 3)}, max {_num(curve.high[k], 3)})"
                )
            else:
                lines.append(f"{curve.name}: CSD 0")
        columns.append(
            f'<rect class="column" x="{start:.1f}" y="{top:.1f}" width="{stop - start:.2f}" '
            f'height="{height:.1f}">{_title(chr(10).join(lines))}</rect>'
        )
    return "<g>" + "".join(columns) + "</g>"


def _legend(curves: Sequence[Curve], notes: Sequence[str]) -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:{c.color}"></span>{_e(c.name)}'
        f' <span class="muted">{_e(note)}</span></li>'
        for c, note in zip(curves, notes)
    )
    return f'<ul class="legend">{items}</ul>'


# ---- sections -------------------------------------------------------------------------------

_CURVE_CAPTION = (
    "Mean CSD over the realisations (solid), its min–max band (shaded; dotted: the maximum "
    "where the minimum is 0), the tail fit (dashed) and the tail start (triangle on the top "
    "edge). Curves end where the CSD reaches 0. Hover for the values at each x."
)


def _figure(svg: str, caption: str, legend: str = "") -> str:
    return f"<figure>{svg}{legend}<figcaption>{_e(caption)}</figcaption></figure>"


def _curves_figure(
    analyses: Sequence[Analysis], names: Sequence[str], label: str, note: str = ""
) -> str:
    curves = [curve_of(a, n, class_color(i)) for i, (a, n) in enumerate(zip(analyses, names))]
    notes = [f"alpha = {alpha_text(a.decay)}" for a in analyses]
    return _figure(
        svg_curves(curves, x_range(analyses), label),
        _CURVE_CAPTION + note,
        _legend(curves, notes),
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], hints=None, css="") -> str:
    """An HTML table (no header row when ``header`` is empty); cells come escaped, header
    hints become hover text."""
    hints = hints or [""] * len(header)
    head = "".join(
        f'<th title="{_e(hint)}">{_e(text)}</th>' if hint else f"<th>{_e(text)}</th>"
        for text, hint in zip(header, hints)
    )
    head = f"<thead><tr>{head}</tr></thead>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css}">{head}<tbody>{body}</tbody></table>'


def _name_cell(name: str, source: str) -> str:
    return f'<span title="{_e(source)}">{_e(name)}</span>'


def _verdict_section(verdict: Verdict, pair: Sequence[Analysis], names: Sequence[str]) -> str:
    low, high = verdict.spread
    rows = [
        ("networks", f"{_name_cell(names[0], verdict.a)} vs {_name_cell(names[1], verdict.b)}"),
        ("level", _e(verdict.level)),
        ("distance", _e(_num(verdict.distance))),
        ("spread (2.5–97.5 %)", _e(f"[{_num(low)}, {_num(high)}]")),
        ("eps", _e(f"{_num(verdict.eps)} ({verdict.eps_source})")),
    ]
    known = {"a", "b", "level", "distance", "spread", "eps", "eps_source", "verdict"}
    extra = {k: v for k, v in verdict.to_dict().items() if k not in known}
    tables = []
    for key, value in extra.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append(f"<h3>{_e(key.replace('_', ' '))}</h3>{_records_table(value)}")
        else:
            rows.append((_e(key.replace("_", " ")), _e(_value_text(value))))
    verdict_class = verdict.verdict.replace(" ", "-")
    return (
        '<section id="verdict"><h2>Verdict</h2>'
        f'<p class="verdict {_e(verdict_class)}">{_e(verdict.verdict)}</p>'
        + _table([], rows, css="keyvalue")
        + "".join(tables)
        + _curves_figure(
            pair,
            names,
            "CSD curves of the compared networks",
            " The layer-level distance compares the clouds of the networks' layer points "
            "(docs/method.md, item 10), not these pooled curves."
            if verdict.level == "layer"
            else " The pooled distance is the largest gap between the two mean curves.",
        )
        + "</section>"
    )


def _classes_section(classes: Classes, names: Sequence[str]) -> str:
    labels = class_labels(classes)
    order = tree_order(classes.linkage, len(classes.models))
    members = "".join(
        f'<li><span class="swatch" style="background:{class_color(k)}"></span>'
        f"class {k + 1}: "
        + ", ".join(_name_cell(names[i], classes.models[i]) for i in np.flatnonzero(labels == k))
        + "</li>"
        for k in range(len(classes.classes))
    )
    heatmap = svg_heatmap(
        classes.distance,
        names,
        classes.models,
        labels,
        order,
        classes.eps,
        classes.level,
        (classes.spread_low, classes.spread_high),
        classes.eps_pairs,
    )
    parts = [
        '<section id="classes"><h2>Classes</h2>',
        f"<p>{len(classes.models)} networks, {len(classes.classes)} "
        f"{'class' if len(classes.classes) == 1 else 'classes'} at eps = {_num(classes.eps)} "
        f"({_e(classes.eps_source)}, {_e(classes.level)} level). A class is a connected "
        "component of the graph with an edge wherever d ≤ eps.</p>",
        f'<ul class="legend">{members}</ul>',
        _figure(
            heatmap,
            "Distance between networks in the leaf order of the average-linkage tree; boxes "
            "enclose runs of one class (a class whose members are not adjacent in the tree "
            "gets several boxes). Hover a cell for the distance, its spread and eps.",
        ),
    ]
    if len(classes.models) > 1:
        parts.append(
            _figure(
                svg_dendrogram(
                    classes.linkage,
                    names,
                    classes.models,
                    labels,
                    classes.eps,
                    classes.eps_source,
                    classes.level,
                ),
                "Average-linkage tree of the distances. Links inside one class below eps are "
                "drawn in the class colour; the dashed line is eps.",
            )
        )
    parts.append("</section>")
    return "".join(parts)


def _class_curves_section(
    classes: Classes, analyses: Sequence[Analysis], names: Sequence[str]
) -> str:
    labels = class_labels(classes)
    limits = x_range(analyses)
    panels = []
    for k in range(len(classes.classes)):
        chosen = np.flatnonzero(labels == k)
        curves = [curve_of(analyses[i], names[i], class_color(k + n)) for n, i in enumerate(chosen)]
        notes = [f"alpha = {alpha_text(analyses[i].decay)}" for i in chosen]
        panels.append(
            f'<div class="panel"><h3><span class="swatch" '
            f'style="background:{class_color(k)}"></span>class {k + 1}</h3>'
            + _figure(svg_curves(curves, limits, f"CSD curves of class {k + 1}"), "")
            + _legend(curves, notes)
            + "</div>"
        )
    return (
        '<section id="curves"><h2>CSD curves by class</h2>'
        f'<p class="caption">{_e(_CURVE_CAPTION)} All panels share the x range.</p>'
        + '<div class="panels">'
        + "".join(panels)
        + "</div></section>"
    )


def _identification_section(
    result: Identification, analyses: Sequence[Analysis], names: dict[str, str]
) -> str:
    rows = [
        (
            str(rank),
            _name_cell(names.get(m.path, m.path), m.path),
            _e(_num(m.distance)),
            _e(f"[{_num(m.spread[0])}, {_num(m.spread[1])}]"),
        )
        for rank, m in enumerate(result.matches, 1)
    ]
    by_source = {a.source: a for a in analyses}
    shown = [result.query] + [m.path for m in result.matches[:3]]
    chosen = [by_source[s] for s in shown if s in by_source]
    labels = [names.get(a.source, a.source) for a in chosen]
    if chosen and chosen[0].source == result.query:
        labels[0] += " (query)"
    return (
        '<section id="identification"><h2>Nearest designs</h2>'
        f"<p>Library networks ranked by {_e(result.level)}-level distance to "
        f"{_name_cell(names.get(result.query, result.query), result.query)}, nearest first."
        "</p>"
        + _table(["rank", "network", "distance", "spread (2.5–97.5 %)"], rows, css="numbers")
        + (
            _curves_figure(chosen, labels, "CSD curves of the query and its nearest matches")
            if chosen
            else ""
        )
        + "</section>"
    )


_NETWORK_HINTS = {
    "#": "",
    "network": "the network's file (hover for the full path)",
    "class": "equivalence class",
    "layers": "weight matrices analysed",
    "eigenvalues": "eigenvalues pooled over the layers",
    "alpha": "tail decay rate of the mean CSD, with its interval or standard error",
    "R²": "R² of the straight-line fit of log CSD against log x",
    "fit range x": "locations of the fit: tail start to the last non-zero bin",
    "tail start x": "the tail_quantile quantile of the pooled normalised spectrum",
    "conjugacy": "largest mean CSD beyond the 99th percentile of the pooled spectrum",
}


def _networks_section(
    analyses: Sequence[Analysis], names: Sequence[str], labels: Sequence[int] | None
) -> str:
    rows = []
    for index, (analysis, name) in enumerate(zip(analyses, names)):
        d = analysis.decay
        rows.append(
            (
                str(index + 1),
                _name_cell(name, analysis.source),
                *([] if labels is None else [str(labels[index] + 1)]),
                str(len(analysis.layers)),
                str(sum(layer.n_eigenvalues for layer in analysis.layers)),
                _e(alpha_text(d)),
                _e(_num(d.r2, 3)),
                _e(f"{_num(d.x_start, 3)} – {_num(d.x_end, 3)}"),
                _e(_num(analysis.tail_start)),
                _e(_num(analysis.conjugacy)),
            )
        )
    header = [
        "#",
        "network",
        *([] if labels is None else ["class"]),
        "layers",
        "eigenvalues",
        "alpha",
        "R²",
        "fit range x",
        "tail start x",
        "conjugacy",
    ]
    details = "".join(
        f"<details><summary>layers of {_e(name)} ({len(a.layers)})</summary>"
        f"{_records_table([layer.to_dict() for layer in a.layers])}</details>"
        for a, name in zip(analyses, names)
    )
    return (
        '<section id="networks"><h2>Networks</h2>'
        + _table(header, rows, [_NETWORK_HINTS[h] for h in header], css="numbers networks")
        + details
        + "</section>"
    )


def _value_text(value) -> str:
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, (list, tuple)):
        if len(value) in (2, 3, 4) and all(isinstance(v, int) for v in value):
            return " × ".join(str(v) for v in value)
        return ", ".join(_value_text(v) for v in value)
    return "default" if value is None else str(value)


def _records_table(records: Sequence[dict]) -> str:
    """A table of dicts: one column per key, in the order the keys first appear."""
    keys: list[str] = []
    for record in records:
        keys += [k for k in record if k not in keys]
    rows = [[_e(_value_text(record.get(k))) for k in keys] for record in records]
    return _table([k.replace("_", " ") for k in keys], rows, css="numbers small")


def _settings_section(analyses: Sequence[Analysis], names: Sequence[str], version: str) -> str:
    settings = analyses[0].settings.to_dict()
    rows = [("nnequiv version", _e(version))]
    rows += [(_e(key.replace("_", " ")), _e(_value_text(v))) for key, v in settings.items()]
    differ = [n for a, n in zip(analyses, names) if a.settings.to_dict() != settings]
    note = (
        f'<p class="warning">These networks were analysed with other settings: '
        f"{_e(', '.join(differ))}.</p>"
        if differ
        else ""
    )
    return (
        '<section id="settings"><h2>Settings</h2>'
        + note
        + _table(["setting", "value"], rows, css="keyvalue")
        + '<p class="muted">Every option that changes a number (docs/method.md); the same '
        "settings, seed and nnequiv version give the same numbers.</p></section>"
    )


# ---- page -----------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
 margin:0 auto;max-width:1100px;padding:16px 24px}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;border-bottom:1px solid #ccc;
 padding-bottom:2px;margin-top:28px}h3{font-size:15px;margin:12px 0 4px}
.muted,.caption,figcaption{color:#555;font-size:12px}
figure{margin:8px 0 16px}svg.figure{max-width:100%;height:auto;font-size:11px;
 font-family:inherit;display:block}
.cell:hover,.link:hover{stroke:#e0115f;stroke-width:2}
.column{fill:#000;fill-opacity:0}.column:hover{fill-opacity:.07}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{padding:3px 8px;border-bottom:1px solid #e3e3e3;text-align:left;vertical-align:top}
th[title]{text-decoration:underline dotted;cursor:help}
table.numbers td{text-align:right}table.numbers td:nth-child(2){text-align:left}
table.small{font-size:12px}table.keyvalue td:first-child{color:#555}
.legend{list-style:none;padding:0;margin:4px 0;columns:2;font-size:12px}
.legend li{break-inside:avoid}.panel .legend{columns:1}
.swatch{display:inline-block;width:10px;height:10px;margin-right:6px;border-radius:2px}
.verdict{font-size:20px;font-weight:600}.verdict.equivalent{color:#1a7f37}
.verdict.not-equivalent{color:#b42318}.verdict.undecided{color:#9a6700}
.warning{color:#b42318}details{margin:4px 0}summary{cursor:pointer}
.panels{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:8px 20px}
#tip{position:fixed;z-index:10;pointer-events:none;background:#fffffe;border:1px solid #888;
 border-radius:4px;padding:4px 8px;font-size:12px;white-space:pre-line;max-width:460px;
 box-shadow:0 2px 6px rgba(0,0,0,.2);display:none}
@media print{body{max-width:none;padding:0;font-size:11px}#tip{display:none!important}
 figure,.panel,tr{break-inside:avoid}h2,h3{break-after:avoid}
 .panels{grid-template-columns:1fr 1fr}
 .column:hover,.cell:hover{fill-opacity:0;stroke:none}}
@page{margin:12mm}
"""

#: Hover text: each SVG ``<title>`` becomes a ``data-tip`` shown at once next to the pointer
#: (the native tooltip would come late and twice); details open before printing.
_JS = """
(function(){
  var tip=document.getElementById('tip');
  document.querySelectorAll('svg title').forEach(function(t){
    t.parentNode.setAttribute('data-tip',t.textContent);t.remove();});
  document.addEventListener('mousemove',function(e){
    var el=e.target.closest&&e.target.closest('[data-tip]');
    if(!el){tip.style.display='none';return;}
    tip.textContent=el.getAttribute('data-tip');tip.style.display='block';
    var x=e.clientX+14,y=e.clientY+14,r=tip.getBoundingClientRect();
    if(x+r.width>innerWidth)x=e.clientX-r.width-14;
    if(y+r.height>innerHeight)y=e.clientY-r.height-14;
    tip.style.left=x+'px';tip.style.top=y+'px';});
  addEventListener('beforeprint',function(){
    document.querySelectorAll('details').forEach(function(d){d.open=true;});});
})();
"""


def _check(analyses, classes, verdict, identification) -> tuple[list[Analysis], list]:
    """The analyses as a list, and the pair of analyses the verdict compares (or [])."""
    analyses = list(analyses)
    if not analyses:
        raise InputError("a report needs at least one analysis")
    sources = [a.source for a in analyses]
    if classes is not None and list(classes.models) != sources:
        raise InputError(
            "the analyses do not match the classes: pass the analyses in the order given to cluster"
        )
    pair = []
    if verdict is not None:
        by_source = {a.source: a for a in analyses}
        missing = [s for s in (verdict.a, verdict.b) if s not in by_source]
        if missing:
            raise InputError(f"no analysis of {', '.join(missing)} for the verdict")
        pair = [by_source[verdict.a], by_source[verdict.b]]
    if identification is not None and identification.query not in sources:
        raise InputError(f"no analysis of the query {identification.query}")
    return analyses, pair


def render_report(
    *,
    analyses: Sequence[Analysis],
    classes: Classes | None = None,
    verdict: Verdict | None = None,
    identification: Identification | None = None,
    title: str | None = None,
) -> str:
    """The HTML report as one self-contained page.

    Parameters
    ----------
    analyses : sequence of Analysis
        Every network of the report; with ``classes``, in the order given to
        :func:`nnequiv.cluster` (``classes.models``).
    classes : Classes, optional
        Adds the class list, the heatmap in tree order and the dendrogram, and draws the
        CSD curves class by class.
    verdict : Verdict, optional
        Adds the verdict and the two curves together; both networks must be in ``analyses``.
    identification : Identification, optional
        Adds the ranked matches and the curves of the query and its nearest matches.
    title : str, optional
        Heading and page title (default: "nnequiv report").

    Returns
    -------
    str
        The page; it loads nothing from elsewhere.
    """
    from nnequiv import __version__  # here, so that nnequiv/__init__ may import this module

    analyses, pair = _check(analyses, classes, verdict, identification)
    names = display_names([a.source for a in analyses])
    by_source = dict(zip((a.source for a in analyses), names))
    labels = class_labels(classes) if classes is not None else None
    title = title or "nnequiv report"
    sections = []
    if verdict is not None:
        sections.append(_verdict_section(verdict, pair, [by_source[a.source] for a in pair]))
    if identification is not None:
        sections.append(_identification_section(identification, analyses, by_source))
    if classes is not None:
        sections.append(_classes_section(classes, names))
        sections.append(_class_curves_section(classes, analyses, names))
    elif verdict is None and identification is None:
        sections.append(
            '<section id="curves"><h2>CSD curves</h2>'
            + _curves_figure(analyses, names, "CSD curves")
            + "</section>"
        )
    sections.append(_networks_section(analyses, names, labels))
    sections.append(_settings_section(analyses, names, __version__))
    count = len(analyses)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f'<p class="muted">nnequiv {_e(__version__)} · {count} '
        f"{'network' if count == 1 else 'networks'} · conjugate "
        f"{_e(analyses[0].settings.ensemble)}, {analyses[0].settings.realizations} "
        f"realisations, seed {analyses[0].settings.seed}</p>"
        + "".join(sections)
        + f'<div id="tip" role="tooltip"></div><script>{_JS}</script></body></html>\n'
    )


def write_report(
    path: str | os.PathLike,
    *,
    analyses: Sequence[Analysis],
    classes: Classes | None = None,
    verdict: Verdict | None = None,
    identification: Identification | None = None,
    title: str | None = None,
) -> Path:
    """Write :func:`render_report` to ``path`` (UTF-8) and return the path."""
    page = render_report(
        analyses=analyses,
        classes=classes,
        verdict=verdict,
        identification=identification,
        title=title,
    )
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
