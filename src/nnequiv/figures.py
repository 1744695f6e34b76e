"""Figures of analyses, pairs and classes (matplotlib, the ``plot`` extra): PNG and SVG files.

The first section holds the figure data that the HTML report (:mod:`nnequiv.report`) draws
as well, so both show the same order, classes, colours and ranges; it needs no matplotlib.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nnequiv._display import display_names
from nnequiv.analysis import Analysis
from nnequiv.errors import InputError, MissingDependencyError
from nnequiv.results import Classes, Verdict

__all__ = [
    "plot_analysis",
    "plot_pair",
    "plot_classes",
    "CLASS_COLORS",
    "class_color",
    "display_names",
    "file_stem",
    "tree_order",
    "class_labels",
    "class_runs",
    "link_classes",
    "eps_label",
    "alpha_interval",
    "alpha_text",
    "x_range",
]

# ---- figure data (no matplotlib) ------------------------------------------------------------

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


def eps_label(eps: float, source: str) -> str:
    """How a set's tolerance reads on a figure: the median of the pairs' eps where each pair
    was calibrated on its own (method item 11), the design tolerance, or the given value."""
    if source == "calibrated":
        return f"median eps = {eps:.4g} (calibrated per pair)"
    if source == "design":
        return f"eps_design = {eps:.4g}"
    return f"eps = {eps:.4g} ({source})"


def link_classes(linkage: np.ndarray, labels: Sequence[int], eps: float) -> np.ndarray:
    """Class of each link of the tree (row of ``linkage``): the class of all leaves below it
    when they share one and it merges at ``d <= eps``, else -1."""
    count = len(labels)
    node = list(labels) + [-1] * len(linkage)
    for row, (left, right, height, _) in enumerate(linkage):
        first, second = node[int(left)], node[int(right)]
        node[count + row] = first if first == second and first >= 0 and height <= eps else -1
    return np.asarray(node[count:], dtype=int)


def alpha_interval(decay) -> tuple[float, float] | None:
    """The interval of the decay rate (method item 8), where it is finite."""
    low, high = decay.interval
    return (float(low), float(high)) if math.isfinite(low) and math.isfinite(high) else None


def alpha_text(decay) -> str:
    """``alpha`` with its interval where it has one, else with the fit's standard error."""
    if not math.isfinite(decay.alpha):
        return "n/a (fewer than 3 tail bins)"
    interval = alpha_interval(decay)
    if interval is not None:
        return f"{decay.alpha:.3g} [{interval[0]:.3g}, {interval[1]:.3g}]"
    return f"{decay.alpha:.3g} ± {decay.stderr:.2g} (fit s.e.)"


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


# ---- matplotlib -----------------------------------------------------------------------------


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError("matplotlib", "plot", "plotting") from exc
    return plt


def _save(fig, directory: Path, stem: str) -> list[str]:
    """Write ``fig`` as PNG and SVG (text kept as text), close it, and return the paths."""
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    with plt.rc_context({"svg.fonttype": "none"}):
        for suffix in ("png", "svg"):
            path = directory / f"{stem}.{suffix}"
            fig.savefig(path, dpi=120, bbox_inches="tight")
            written.append(str(path))
    plt.close(fig)
    return written


def _draw_csd(ax, analysis: Analysis, color: str, name: str, explain: bool = False) -> None:
    """Mean CSD, its min-max band where both ends are positive, the maximum alone where the
    minimum is 0, and the tail fit; nothing is drawn where the CSD is 0."""
    x = analysis.edges[:-1]
    low, high = analysis.csd_band
    mean = analysis.csd_mean
    count = analysis.settings.realizations
    ax.fill_between(
        x,
        low,
        high,
        where=low > 0,
        color=color,
        alpha=0.22,
        linewidth=0,
        label=f"min–max over {count} realisations" if explain else None,
    )
    beyond = (high > 0) & ~(low > 0)
    if beyond.any():
        first = int(np.argmax(beyond))
        beyond[max(first - 1, 0)] = True  # join the band's end
        ax.plot(
            x[beyond],
            high[beyond],
            color=color,
            linewidth=0.8,
            linestyle=":",
            label="maximum where the minimum is 0" if explain else None,
        )
    shown = mean > 0
    ax.plot(x[shown], mean[shown], color=color, linewidth=1.6, label=name)
    fit = analysis.decay
    if math.isfinite(fit.alpha):
        fit_x = np.logspace(np.log10(fit.x_start), np.log10(fit.x_end), 50)
        ax.plot(
            fit_x,
            np.exp(fit.intercept) * fit_x ** (-fit.alpha),
            color="k",
            linestyle="--",
            linewidth=1.0,
            label=f"tail fit, alpha = {alpha_text(fit)}" if explain else None,
        )


def _csd_axes(ax, analyses: Sequence[Analysis], title: str) -> None:
    low, high = x_range(analyses)
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(low, high),
        xlabel="normalised eigenvalue x",
        ylabel="CSD(x)",
        title=title,
    )
    ax.grid(True, which="major", linewidth=0.3, alpha=0.5)


def plot_analysis(
    analysis: Analysis, directory: str | os.PathLike, *, label: str | None = None
) -> list[str]:
    """Pooled densities and the CSD with its band, tail start, fit range and decay fit.

    Parameters
    ----------
    analysis : Analysis
    directory : path
        Where ``<stem>-<hash>_density`` and ``<stem>-<hash>_csd`` (PNG and SVG) are written;
        the hash of the source keeps two inputs with the same file name apart.
    label : str, optional
        Name shown in the titles (default: the file name of the source).

    Returns
    -------
    list of str
        The files written.
    """
    plt = _pyplot()
    directory, stem = Path(directory), file_stem(analysis.source)
    name = label or display_names([analysis.source])[0]
    settings = analysis.settings
    tail = f"tail start x = {analysis.tail_start:.3g} (quantile {settings.tail_quantile:g})"

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    centers = np.sqrt(analysis.edges[:-1] * analysis.edges[1:])
    for density, text in (
        (analysis.p_net, "network layers (MME)"),
        (analysis.p_circ, f"conjugate {settings.ensemble} (mean of {settings.realizations})"),
    ):
        ax.step(centers, np.where(density > 0, density, np.nan), where="mid", label=text)
    ax.axvline(analysis.tail_start, color="0.35", linestyle=":", linewidth=1, label=tail)
    ax.set(
        xscale="log",
        yscale="log",
        xlim=x_range([analysis]),
        xlabel="normalised eigenvalue x",
        ylabel="probability mass per bin",
        title=f"spectral densities: {name}",
    )
    ax.legend(fontsize=8)
    written = _save(fig, directory, f"{stem}_density")

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    fit = analysis.decay
    if math.isfinite(fit.alpha):
        ax.axvspan(
            fit.x_start,
            fit.x_end,
            color="0.5",
            alpha=0.1,
            linewidth=0,
            label=f"fit range x = {fit.x_start:.3g} to {fit.x_end:.3g} ({fit.n_points} bins)",
        )
    _draw_csd(ax, analysis, class_color(0), "mean CSD", explain=True)
    ax.axvline(analysis.tail_start, color="0.35", linestyle=":", linewidth=1, label=tail)
    _csd_axes(ax, [analysis], f"circular spectral difference: {name}")
    ax.legend(fontsize=8, loc="lower left")
    written += _save(fig, directory, f"{stem}_csd")
    return written


def plot_pair(
    a: Analysis, b: Analysis, verdict: Verdict, directory: str | os.PathLike
) -> list[str]:
    """The CSD curves of two networks with their bands, tail starts and the verdict.

    Parameters
    ----------
    a, b : Analysis
        The compared networks, in the order of ``verdict``.
    verdict : Verdict
        The result of :func:`nnequiv.compare` for ``a`` and ``b``.
    directory : path
        Where ``pair_<stem a>_<stem b>`` (PNG and SVG) is written.

    Returns
    -------
    list of str
        The files written.
    """
    if (a.source, b.source) != (verdict.a, verdict.b):
        raise InputError(
            f"the verdict compares {verdict.a} and {verdict.b}, not {a.source} and {b.source}"
        )
    plt = _pyplot()
    names = display_names([a.source, b.source])
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    for index, (analysis, name) in enumerate(zip((a, b), names)):
        color = class_color(index)
        _draw_csd(ax, analysis, color, f"{name} (alpha = {alpha_text(analysis.decay)})")
        ax.axvline(analysis.tail_start, color=color, linestyle=":", linewidth=1)
    _csd_axes(ax, [a, b], f"{names[0]} vs {names[1]}: {verdict.verdict}")
    low, high = verdict.design_spread
    ax.text(
        0.98,
        0.97,
        f"design distance {verdict.design_distance:.4g}\n"
        f"spread [{low:.4g}, {high:.4g}]\neps_design {verdict.eps_design:.4g}\n"
        f"same-network d {verdict.distance:.4g}, eps {verdict.eps:.4g}",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=8,
        bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7"},
    )
    ax.plot([], [], color="0.35", linestyle=":", label="tail starts")
    ax.plot([], [], color="k", linestyle="--", label="tail fits")
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, Path(directory), f"pair_{file_stem(a.source)}_{file_stem(b.source)}")


def plot_classes(classes: Classes, directory: str | os.PathLike) -> list[str]:
    """Design-distance heatmap in the order of the average-linkage tree with the classes
    boxed, and the tree with the design tolerance (the cut) marked and labelled.

    Returns
    -------
    list of str
        The files written (``distance_heatmap`` and, for two or more networks,
        ``dendrogram``; PNG and SVG).
    """
    plt = _pyplot()
    from matplotlib.patches import Rectangle
    from scipy.cluster.hierarchy import dendrogram

    directory = Path(directory)
    order = tree_order(classes.linkage, len(classes.models))
    labels = class_labels(classes)
    names = display_names(classes.models)
    ordered = [names[i] for i in order]
    eps = classes.eps_design
    eps_text = eps_label(eps, "design")
    size = max(4.0, 0.35 * len(names) + 2)
    distance = classes.design_distance

    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(distance[np.ix_(order, order)], cmap="viridis")
    ax.set_xticks(range(len(order)), ordered, rotation=90, fontsize=7)
    ax.set_yticks(range(len(order)), ordered, fontsize=7)
    for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
        for tick, index in zip(ticks, order):
            tick.set_color(class_color(labels[index]))
    for start, stop, _ in class_runs(labels[order]):
        for width, color in ((2.6, "k"), (1.4, "w")):
            ax.add_patch(
                Rectangle(
                    (start - 0.5, start - 0.5),
                    stop - start,
                    stop - start,
                    fill=False,
                    edgecolor=color,
                    linewidth=width,
                )
            )
    bar = fig.colorbar(image, ax=ax, label="design distance")
    if eps <= distance.max():
        bar.ax.axhline(eps, color="w", linewidth=1.5)
        bar.ax.text(1.05, eps, " eps_design", transform=bar.ax.get_yaxis_transform(), va="center")
    ax.set_title(
        f"design distance between networks, in tree order\nboxes: {len(classes.classes)} "
        f"classes at {eps_text}",
        fontsize=9,
    )
    written = _save(fig, directory, "distance_heatmap")

    if len(names) > 1:
        links = link_classes(classes.linkage, labels, eps)
        count = len(names)
        fig, ax = plt.subplots(figsize=(size + 2, 4))
        dendrogram(
            classes.linkage,
            labels=names,
            ax=ax,
            leaf_rotation=90,
            leaf_font_size=7,
            link_color_func=lambda node: (
                class_color(links[node - count]) if links[node - count] >= 0 else GREY
            ),
        )
        for tick, index in zip(ax.get_xticklabels(), order):
            tick.set_color(class_color(labels[index]))
        top = max(float(classes.linkage[:, 2].max()), eps) * 1.12 or 1.0
        ax.set_ylim(0, top)
        ax.axhline(eps, color="#c0392b", linestyle="--", linewidth=1)
        from matplotlib.transforms import offset_copy

        ax.text(
            0.99,
            eps,
            eps_text,
            transform=offset_copy(ax.get_yaxis_transform(), fig=fig, y=3, units="points"),
            ha="right",
            va="bottom",
            color="#c0392b",
            fontsize=8,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
        )
        ax.set(
            ylabel="design distance (average linkage)",
            title="average-linkage tree of the design distances; classes coloured, the cut "
            "(eps_design) dashed",
        )
        written += _save(fig, directory, "dendrogram")
    return written
