"""What the figures show, computed once from the results: colours, the tree order and the
classes' runs, the tree's links, the CSD curves with the parts of them that are drawn, and the
x range. The matplotlib files (:mod:`nnequiv.output.plots`) and the report's inline SVG
(:mod:`nnequiv.output._svg`) draw the same numbers; nothing here needs matplotlib."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnequiv._display import display_names
from nnequiv.analysis import Analysis
from nnequiv.output._words import alpha_text, eps_label
from nnequiv.results import Classes

__all__ = [
    "CLASS_COLORS",
    "GREY",
    "CUT_COLOR",
    "class_color",
    "file_stem",
    "tree_order",
    "class_labels",
    "class_runs",
    "link_classes",
    "x_range",
    "Curve",
    "curve_of",
    "curves_of",
    "ClassesFigure",
    "classes_figure",
]

#: Colours of classes and curves (Okabe-Ito, then further distinct hues), used cyclically.
CLASS_COLORS = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#cc79a7",
    "#d55e00",
    "#56b4e9",
    "#8c6d31",
    "#7b4173",
    "#393b79",
    "#637939",
)
#: Colour of tree links that join different classes or lie above eps.
GREY = "#8a8a8a"
#: Colour of the cut (eps) on the tree and the colour bar.
CUT_COLOR = "#c0392b"


def class_color(index: int) -> str:
    """Colour of class (or curve) ``index`` (0-based)."""
    return CLASS_COLORS[index % len(CLASS_COLORS)]


def file_stem(source: str) -> str:
    """A file-name stem for a source: its file stem (safe characters only) and six hex digits
    of a hash of the whole source, so that two sources never share a stem."""
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(str(source)).stem)
    digest = hashlib.blake2s(str(source).encode("utf-8", "replace"), digest_size=3).hexdigest()
    return f"{stem[:60] or 'model'}-{digest}"


def tree_order(linkage: np.ndarray, count: int) -> list[int]:
    """Indices of the ``count`` networks in the leaf order of their tree (as drawn by
    :func:`scipy.cluster.hierarchy.dendrogram`)."""
    if count < 2:
        return list(range(count))
    from scipy.cluster.hierarchy import dendrogram

    return [int(i) for i in dendrogram(linkage, no_plot=True)["leaves"]]


def class_labels(classes: Classes) -> np.ndarray:
    """Class index (0-based, in the order of ``classes.classes``) of every network."""
    return np.asarray(classes.labels_, dtype=int)


def class_runs(labels: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(start, stop, class)`` of each run of equal consecutive labels. A class whose members
    are not adjacent in the tree order gets several runs."""
    runs: list[tuple[int, int, int]] = []
    for position, label in enumerate(labels):
        if runs and runs[-1][2] == label:
            runs[-1] = (runs[-1][0], position + 1, int(label))
        else:
            runs.append((position, position + 1, int(label)))
    return runs


def link_classes(linkage: np.ndarray, labels: Sequence[int], eps: float) -> np.ndarray:
    """Class of each link of the tree (row of ``linkage``): the class of all leaves below it
    when they share one and it merges at ``d <= eps``, else -1."""
    count = len(labels)
    node = list(labels) + [-1] * len(linkage)
    for row, (left, right, height, _) in enumerate(linkage):
        first, second = node[int(left)], node[int(right)]
        node[count + row] = first if first == second and first >= 0 and height <= eps else -1
    return np.asarray(node[count:], dtype=int)


def x_range(analyses: Sequence[Analysis]) -> tuple[float, float]:
    """Locations where the curves have data: from the first occupied bin of either density
    to the last bin where any CSD band is non-zero (one bin of margin each side)."""
    edges = analyses[0].edges
    occupied = np.zeros(len(edges) - 1, dtype=bool)
    positive = np.zeros(len(edges) - 1, dtype=bool)
    for analysis in analyses:
        occupied |= (analysis.p_net > 0) | (analysis.p_circ > 0)
        positive |= analysis.csd.max(axis=0) > 0
    first = int(np.argmax(occupied)) if occupied.any() else 0
    last = int(np.flatnonzero(positive)[-1]) if positive.any() else len(edges) - 2
    return float(edges[max(first - 1, 0)]), float(edges[min(last + 2, len(edges) - 1)])


# ---- CSD curves -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Curve:
    """One network's CSD as the figures draw it.

    Attributes
    ----------
    name, color : str
    x : ndarray
        The left bin edges.
    mean, low, high : ndarray
        The mean CSD over the realizations and its min-max band.
    tail_start : float
    fit : tuple of float, or None
        ``(alpha, intercept, x_start, x_end)`` of the tail fit, None where it has none.
    alpha : str
        How alpha reads (:func:`~nnequiv.output._words.alpha_text`).
    """

    name: str
    color: str
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    tail_start: float
    fit: tuple[float, float, float, float] | None
    alpha: str = ""

    def _within(self, inside: np.ndarray | None) -> np.ndarray:
        return np.ones(len(self.x), dtype=bool) if inside is None else inside

    def band(self, inside: np.ndarray | None = None) -> np.ndarray:
        """Where the min-max band is drawn: both ends positive (and ``inside``)."""
        return self._within(inside) & (self.low > 0)

    def beyond(self, inside: np.ndarray | None = None) -> np.ndarray:
        """Where the maximum is drawn alone: it is positive but the minimum is 0; the bin
        before the first such one joins it to the band's end."""
        inside = self._within(inside)
        beyond = inside & (self.high > 0) & ~(self.low > 0)
        if beyond.any():
            join = max(int(np.argmax(beyond)) - 1, 0)
            beyond[join] = bool(inside[join])
        return beyond

    def shown(self, inside: np.ndarray | None = None) -> np.ndarray:
        """Where the mean is drawn: it is positive (nothing is drawn where the CSD is 0)."""
        return self._within(inside) & (self.mean > 0)

    def fit_values(self, x: np.ndarray) -> np.ndarray:
        """The tail fit ``exp(intercept) x^-alpha`` at ``x`` (only where ``fit`` is set)."""
        alpha, intercept, _, _ = self.fit
        return np.exp(intercept) * x ** (-alpha)


def curve_of(analysis: Analysis, name: str, color: str) -> Curve:
    """The curve of one analysis, named and coloured."""
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
        alpha_text(d),
    )


def curves_of(analyses: Sequence[Analysis], names: Sequence[str], first: int = 0) -> list[Curve]:
    """The curves of ``analyses`` in the colours ``first``, ``first + 1``, ..."""
    return [
        curve_of(analysis, name, class_color(first + index))
        for index, (analysis, name) in enumerate(zip(analyses, names))
    ]


# ---- classes: heatmap and tree --------------------------------------------------------------


@dataclass(frozen=True)
class ClassesFigure:
    """The heatmap and the tree of a set of classes.

    Attributes
    ----------
    names, sources : list of str
        Display names and sources of the networks, in the order of ``classes.models``.
    labels : ndarray
        Class of every network (0-based).
    order : list of int
        The networks in the leaf order of the tree.
    runs : list of (start, stop, class)
        Runs of one class along ``order`` (the heatmap's boxes).
    distance, spread_low, spread_high : ndarray
        The design distances and their spread, in the order of ``classes.models``.
    eps, eps_text : float, str
        The design tolerance (the cut) and how it reads.
    class_count : int
    linkage : ndarray
    link_colors : list of str
        Colour of each link (row of ``linkage``): its class where it joins one class at
        ``d <= eps``, else grey.
    centres : ndarray
        Horizontal place of every leaf and link (leaves at ``position + 0.5`` in tree
        order, a link midway between the two it joins), in leaf spacings.
    heights : ndarray
        Height of every leaf (0) and link (its merge distance).
    top : float
        The top of the tree's height axis.
    level : str
        Which distance the figures show (``"design"``).
    """

    names: list[str]
    sources: list[str]
    labels: np.ndarray
    order: list[int]
    runs: list[tuple[int, int, int]]
    distance: np.ndarray
    spread_low: np.ndarray
    spread_high: np.ndarray
    eps: float
    eps_text: str
    class_count: int
    linkage: np.ndarray
    link_colors: list[str]
    centres: np.ndarray
    heights: np.ndarray
    top: float
    level: str = "design"

    def color(self, index: int) -> str:
        """Colour of network ``index``: the colour of its class."""
        return class_color(int(self.labels[index]))


def classes_figure(classes: Classes) -> ClassesFigure:
    """The figure data of ``classes`` (design distances, cut at the design tolerance)."""
    count = len(classes.models)
    linkage = np.asarray(classes.linkage, dtype=float).reshape(-1, 4)
    order = tree_order(linkage, count)
    labels = class_labels(classes)
    eps = classes.eps_design
    links = link_classes(linkage, labels, eps)
    centres = np.zeros(count + len(linkage))
    centres[order] = np.arange(count) + 0.5
    for row, (a, b, _, _) in enumerate(linkage):
        centres[count + row] = (centres[int(a)] + centres[int(b)]) / 2
    top = (max(float(linkage[:, 2].max()), eps) * 1.12 or 1.0) if len(linkage) else 1.0
    return ClassesFigure(
        names=display_names(classes.models),
        sources=list(classes.models),
        labels=labels,
        order=order,
        runs=class_runs(labels[order]),
        distance=classes.design_distance,
        spread_low=classes.design_spread_low,
        spread_high=classes.design_spread_high,
        eps=eps,
        eps_text=eps_label(eps, "design"),
        class_count=len(classes.classes),
        linkage=linkage,
        link_colors=[class_color(k) if k >= 0 else GREY for k in links],
        centres=centres,
        heights=np.concatenate([np.zeros(count), linkage[:, 2]]),
        top=top,
    )
