"""Figures of analyses, pairs and classes as PNG and SVG files (matplotlib, the ``plot``
extra), drawn from the figure data (:mod:`nnequiv.output._figure_data`) that the HTML report
draws as well, so both show the same order, classes, colours and ranges."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from nnequiv._display import display_names
from nnequiv._optional import optional_module
from nnequiv.analysis import Analysis
from nnequiv.errors import InputError
from nnequiv.output._figure_data import (
    CUT_COLOR,
    Curve,
    class_color,
    classes_figure,
    curve_of,
    curves_of,
    file_stem,
    x_range,
)
from nnequiv.results import Classes, Verdict

__all__ = ["plot_analysis", "plot_pair", "plot_classes"]


def _pyplot():
    optional_module("matplotlib", "plot", "plotting").use("Agg")
    return optional_module("matplotlib.pyplot", "plot", "plotting")


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


def _draw_csd(ax, curve: Curve, label: str, realizations: int | None = None) -> None:
    """Mean CSD, its min-max band where both ends are positive, the maximum alone where the
    minimum is 0, and the tail fit; nothing is drawn where the CSD is 0. With the number of
    ``realizations``, the band, the maximum and the fit are named in the legend."""
    x = curve.x
    explain = realizations is not None
    ax.fill_between(
        x,
        curve.low,
        curve.high,
        where=curve.band(),
        color=curve.color,
        alpha=0.22,
        linewidth=0,
        label=f"min–max over {realizations} realizations" if explain else None,
    )
    beyond = curve.beyond()
    if beyond.any():
        ax.plot(
            x[beyond],
            curve.high[beyond],
            color=curve.color,
            linewidth=0.8,
            linestyle=":",
            label="maximum where the minimum is 0" if explain else None,
        )
    shown = curve.shown()
    ax.plot(x[shown], curve.mean[shown], color=curve.color, linewidth=1.6, label=label)
    if curve.fit is not None:
        _, _, start, stop = curve.fit
        fit_x = np.logspace(np.log10(start), np.log10(stop), 50)
        ax.plot(
            fit_x,
            curve.fit_values(fit_x),
            color="k",
            linestyle="--",
            linewidth=1.0,
            label=f"tail fit, alpha = {curve.alpha}" if explain else None,
        )


def _csd_axes(ax, analyses, title: str) -> None:
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
    curve = curve_of(analysis, "mean CSD", class_color(0))
    _draw_csd(ax, curve, curve.name, settings.realizations)
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
    for curve in curves_of([a, b], names):
        _draw_csd(ax, curve, f"{curve.name} (alpha = {curve.alpha})")
        ax.axvline(curve.tail_start, color=curve.color, linestyle=":", linewidth=1)
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
    figure = classes_figure(classes)
    directory, order = Path(directory), figure.order
    ordered = [figure.names[i] for i in order]
    size = max(4.0, 0.35 * len(order) + 2)
    written = _plot_heatmap(plt, figure, ordered, size, directory)
    if len(order) > 1:
        written += _plot_tree(plt, figure, size, directory)
    return written


def _color_ticks(labels, figure, order) -> None:
    for tick, index in zip(labels, order):
        tick.set_color(figure.color(index))


def _plot_heatmap(plt, figure, ordered, size, directory) -> list[str]:
    from matplotlib.patches import Rectangle

    order, distance, eps = figure.order, figure.distance, figure.eps
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(distance[np.ix_(order, order)], cmap="viridis")
    ax.set_xticks(range(len(order)), ordered, rotation=90, fontsize=7)
    ax.set_yticks(range(len(order)), ordered, fontsize=7)
    for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
        _color_ticks(ticks, figure, order)
    for start, stop, _ in figure.runs:
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
        f"design distance between networks, in tree order\nboxes: {figure.class_count} "
        f"classes at {figure.eps_text}",
        fontsize=9,
    )
    return _save(fig, directory, "distance_heatmap")


def _plot_tree(plt, figure, size, directory) -> list[str]:
    from matplotlib.transforms import offset_copy
    from scipy.cluster.hierarchy import dendrogram

    count = len(figure.names)
    fig, ax = plt.subplots(figsize=(size + 2, 4))
    dendrogram(
        figure.linkage,
        labels=figure.names,
        ax=ax,
        leaf_rotation=90,
        leaf_font_size=7,
        link_color_func=lambda node: figure.link_colors[node - count],
    )
    _color_ticks(ax.get_xticklabels(), figure, figure.order)
    ax.set_ylim(0, figure.top)
    ax.axhline(figure.eps, color=CUT_COLOR, linestyle="--", linewidth=1)
    ax.text(
        0.99,
        figure.eps,
        figure.eps_text,
        transform=offset_copy(ax.get_yaxis_transform(), fig=fig, y=3, units="points"),
        ha="right",
        va="bottom",
        color=CUT_COLOR,
        fontsize=8,
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
    )
    ax.set(
        ylabel="design distance (average linkage)",
        title="average-linkage tree of the design distances; classes coloured, the cut "
        "(eps_design) dashed",
    )
    return _save(fig, directory, "dendrogram")
