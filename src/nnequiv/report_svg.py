"""SVG figures of the HTML report, drawn from the numbers: distance heatmap, dendrogram and
CSD curves, with hover text as SVG ``<title>``. Every label is escaped (file names come from
strangers). Read top to bottom: text and colour helpers, scales and axes, figures.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nnequiv.analysis import Analysis
from nnequiv.figures import (
    GREY,
    class_color,
    class_runs,
    eps_label,
    link_classes,
    tree_order,
)

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
    eps_text = eps_label(eps, eps_source)
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
