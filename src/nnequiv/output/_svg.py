"""The report's figures as inline SVG, drawn from the figure data
(:mod:`nnequiv.output._figure_data`): distance heatmap, dendrogram and CSD curves, with hover
text as SVG ``<title>``. Every label is escaped by markupsafe (file names come from
strangers). Read top to bottom: text and colour helpers, scales and axes, figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from markupsafe import escape

from nnequiv.output._figure_data import CUT_COLOR, ClassesFigure, Curve
from nnequiv.output._words import number, shortened

__all__ = ["viridis", "svg_heatmap", "svg_dendrogram", "svg_curves"]

# ---- helpers --------------------------------------------------------------------------------


def _title(text: str) -> str:
    """An SVG hover text (the page's script shows it at once)."""
    return f"<title>{escape(text)}</title>"


def _label(x: float, y: float, text: str, **attributes) -> str:
    extra = "".join(f' {key.replace("_", "-")}="{escape(v)}"' for key, v in attributes.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(text)}</text>'


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


def _vertical_text(x: float, y: float, content: str, extra: str = "") -> str:
    """Text that reads upwards, ending at ``(x, y)``; ``content`` is markup."""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="end"{extra} '
        f'transform="rotate(-90 {x:.1f} {y:.1f})">{content}</text>'
    )


def _svg(width: float, height: float, body: str, label: str, css_class: str = "") -> str:
    return (
        f'<svg class="figure {css_class}" role="img" '
        f'aria-label="{escape(label)}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}">{body}</svg>'
    )


# ---- figures --------------------------------------------------------------------------------


def svg_heatmap(figure: ClassesFigure) -> str:
    """Distance matrix in tree order with a class strip, boxes around runs of one class, hover
    text on every cell, and a colour bar with eps marked."""
    names, sources, order, eps, level = (
        figure.names,
        figure.sources,
        figure.order,
        figure.eps,
        figure.level,
    )
    distance, labels = figure.distance, figure.labels
    count = len(order)
    cell = min(44.0, max(10.0, 560.0 / max(count, 1)))
    shown = [shortened(names[i]) for i in order]
    margin = 12 + 6.2 * max(len(s) for s in shown)
    left, top = margin + 12, 10.0
    size = cell * count
    scale = float(distance.max()) or 1.0
    parts = []
    for row, i in enumerate(order):
        y = top + row * cell
        parts.append(
            f'<text x="{left - 14:.1f}" y="{y + cell / 2 + 4:.1f}" text-anchor="end">'
            f"{_title(sources[i])}{escape(shown[row])}</text>"
        )
        parts.append(
            f'<rect x="{left - 10:.1f}" y="{y:.1f}" width="7" height="{cell:.1f}" '
            f'fill="{figure.color(i)}">{_title(f"class {labels[i] + 1}")}</rect>'
        )
        for col, j in enumerate(order):
            value = float(distance[i, j])
            fraction = value / scale
            text = f"{names[i]} vs {names[j]}\n{level} distance d = {number(value)}"
            if i != j:
                low, high = figure.spread_low[i, j], figure.spread_high[i, j]
                text += f", spread [{number(low)}, {number(high)}]"
            text += f"\neps = {number(eps)}: d {'<=' if value <= eps else '>'} eps"
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
    for start, stop, _ in figure.runs:
        for width, color in ((3.0, "#000"), (1.5, "#fff")):
            parts.append(
                f'<rect x="{left + start * cell:.1f}" y="{top + start * cell:.1f}" '
                f'width="{(stop - start) * cell:.1f}" height="{(stop - start) * cell:.1f}" '
                f'fill="none" stroke="{color}" stroke-width="{width}" pointer-events="none"/>'
            )
    for col, j in enumerate(order):
        x = left + col * cell + cell / 2 + 4
        parts.append(_vertical_text(x, top + size + 8, f"{_title(sources[j])}{escape(shown[col])}"))
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
        parts.append(_label(x + 16, y(tick) + 3.5, number(tick, 3), font_size="9"))
    if 0 <= eps <= scale:
        parts.append(
            f'<line x1="{x - 3:.1f}" x2="{x + 15:.1f}" y1="{y(eps):.1f}" y2="{y(eps):.1f}" '
            f'stroke="{CUT_COLOR}" stroke-width="2"/>'
        )
        parts.append(_label(x + 44, y(eps) + 3.5, "eps", font_size="9", fill=CUT_COLOR))
    middle = top + height / 2
    parts.append(
        f'<text x="{x + 80:.1f}" y="{middle:.1f}" text-anchor="middle" font-size="10" '
        f'transform="rotate(-90 {x + 80:.1f} {middle:.1f})">{escape(level)} distance</text>'
    )
    return "".join(parts)


def svg_dendrogram(figure: ClassesFigure) -> str:
    """Average-linkage tree: links within one class at ``d <= eps`` in the class colour,
    eps as a dashed line labelled with its value, hover text on every merge."""
    count, order, level, eps_text = len(figure.names), figure.order, figure.level, figure.eps_text
    spacing = min(40.0, max(14.0, 560.0 / count))
    shown = [shortened(figure.names[i]) for i in order]
    left, top, plot_height = 56.0, 14.0, 220.0
    end = left + spacing * count + 8
    width = end + 12 + 6.2 * len(eps_text)
    y = _Scale(0.0, figure.top, top + plot_height, top)
    centre = left + spacing * figure.centres
    height = figure.heights
    parts = [_axis_left(y, _linear_ticks(figure.top), top, plot_height, left, f"{level} distance")]
    for row, (a, b, merge, _) in enumerate(figure.linkage):
        a, b = int(a), int(b)
        points = (
            f"{centre[a]:.1f},{y(height[a]):.1f} {centre[a]:.1f},{y(merge):.1f} "
            f"{centre[b]:.1f},{y(merge):.1f} {centre[b]:.1f},{y(height[b]):.1f}"
        )
        parts.append(
            f'<polyline class="link" points="{points}" fill="none" '
            f'stroke="{figure.link_colors[row]}" stroke-width="1.6">'
            f"{_title(f'merge at {level} distance {number(merge)}')}</polyline>"
        )
    cut = y(figure.eps)
    parts.append(
        f'<line x1="{left:.1f}" x2="{end:.1f}" y1="{cut:.1f}" y2="{cut:.1f}" '
        f'stroke="{CUT_COLOR}" stroke-dasharray="5 3">{_title(eps_text)}</line>'
    )
    parts.append(_label(end + 4, cut + 3.5, eps_text, fill=CUT_COLOR, class_="eps-label"))
    base = top + plot_height + 8
    for position, index in enumerate(order):
        parts.append(
            _vertical_text(
                centre[index] + 4,
                base,
                f"{_title(figure.sources[index])}{escape(shown[position])}",
                f' fill="{figure.color(index)}"',
            )
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
            parts.append(_label(left - 6, ty + 3.5, number(tick, 3), text_anchor="end"))
    middle = top + height / 2
    parts.append(
        f'<text x="{14:.1f}" y="{middle:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {middle:.1f})">{escape(text)}</text>'
    )
    return "".join(parts)


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
    band = curve.band(inside)
    if band.any():
        outline = (
            _path(curve.x[band], curve.high[band], x, y)
            + " "
            + _path(curve.x[band][::-1], curve.low[band][::-1], x, y)
        )
        parts.append(
            f'<polygon points="{outline}" fill="{curve.color}" fill-opacity="0.2" stroke="none"/>'
        )
    beyond = curve.beyond(inside)
    if beyond.any():
        parts.append(
            f'<polyline points="{_path(curve.x[beyond], curve.high[beyond], x, y)}" '
            f'fill="none" stroke="{curve.color}" stroke-width="1" stroke-dasharray="1 2"/>'
        )
    shown = curve.shown(inside)
    parts.append(
        f'<polyline points="{_path(curve.x[shown], curve.mean[shown], x, y)}" fill="none" '
        f'stroke="{curve.color}" stroke-width="1.8">{_title(curve.name)}</polyline>'
    )
    if curve.fit is not None:
        ends = np.array(curve.fit[2:])
        parts.append(
            f'<polyline points="{_path(ends, curve.fit_values(ends), x, y)}" '
            f'fill="none" stroke="#000" stroke-width="1" stroke-dasharray="5 3">'
            f"{_title(f'{curve.name}: tail fit alpha = {number(curve.fit[0], 3)}')}</polyline>"
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
        f"{_title(f'{curve.name}: tail start x = {number(curve.tail_start)}')}</path>"
    )


def _hover_columns(curves, inside, x: _Scale, top: float, height: float) -> str:
    """Transparent columns, one per bin, whose hover text lists each curve at that x."""
    columns = []
    xs = curves[0].x
    for k in np.flatnonzero(inside):
        right = xs[k + 1] if k + 1 < len(xs) else xs[k] * (xs[k] / xs[k - 1])
        start, stop = x(xs[k]), min(x(right), x(x.high))
        lines = [f"x = {number(xs[k], 3)}"]
        for curve in curves:
            if curve.high[k] > 0:
                lines.append(
                    f"{curve.name}: CSD {number(curve.mean[k], 3)} "
                    f"(min {number(curve.low[k], 3)}, max {number(curve.high[k], 3)})"
                )
            else:
                lines.append(f"{curve.name}: CSD 0")
        columns.append(
            f'<rect class="column" x="{start:.1f}" y="{top:.1f}" width="{stop - start:.2f}" '
            f'height="{height:.1f}">{_title(chr(10).join(lines))}</rect>'
        )
    return "<g>" + "".join(columns) + "</g>"
