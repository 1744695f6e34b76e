"""Figures of analyses and classes (matplotlib, the ``plot`` extra): PNG and SVG files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nnequiv.analysis import Analysis
from nnequiv.equivalence import Classes
from nnequiv.errors import MissingDependencyError
from nnequiv.reporting import _short

__all__ = ["plot_analysis", "plot_classes"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError("matplotlib", "plot", "plotting") from exc
    return plt


def _save(fig, directory: Path, stem: str) -> list[str]:
    """Write ``fig`` as PNG and SVG, close it, and return the paths."""
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in ("png", "svg"):
        path = directory / f"{stem}.{suffix}"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        written.append(str(path))
    plt.close(fig)
    return written


def _stem(source: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(source).stem) or "model"


def plot_analysis(analysis: Analysis, directory: str | os.PathLike) -> list[str]:
    """Pooled densities (log axes) and the CSD with its band and fitted tail decay."""
    plt = _pyplot()
    directory, stem = Path(directory), _stem(analysis.source)
    x = analysis.edges[:-1]
    centers = np.sqrt(analysis.edges[:-1] * analysis.edges[1:])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.step(centers, analysis.p_net, where="mid", label="network MME")
    ax.step(centers, analysis.p_circ, where="mid", label=f"conjugate {analysis.settings.ensemble}")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="normalised eigenvalue x",
        ylabel="mass per bin",
        title=f"spectral densities: {stem}",
    )
    ax.legend()
    written = _save(fig, directory, f"{stem}_density")

    fig, ax = plt.subplots(figsize=(6, 4))
    low, high = analysis.csd_band
    ax.fill_between(
        x,
        np.maximum(low, 1e-6),
        np.maximum(high, 1e-6),
        alpha=0.3,
        label=f"min-max over {analysis.settings.realizations} realisations",
    )
    mean = analysis.csd_mean
    ax.plot(x[mean > 0], mean[mean > 0], label="mean CSD")
    d = analysis.decay
    if np.isfinite(d.alpha):
        fit_x = np.logspace(np.log10(d.x_start), np.log10(d.x_end), 50)
        ax.plot(
            fit_x,
            np.exp(d.intercept) * fit_x ** (-d.alpha),
            "k--",
            label=f"tail fit alpha = {d.alpha:.2f}",
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="x",
        ylabel="CSD(x)",
        title=f"circular spectral difference: {stem}",
    )
    ax.legend()
    written += _save(fig, directory, f"{stem}_csd")
    return written


def plot_classes(classes: Classes, directory: str | os.PathLike) -> list[str]:
    """Distance heatmap and average-linkage dendrogram."""
    plt = _pyplot()
    from scipy.cluster.hierarchy import dendrogram

    directory = Path(directory)
    names = [_short(m) for m in classes.models]
    size = max(4.0, 0.35 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(classes.distance, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    fig.colorbar(image, ax=ax, label=f"{classes.level} distance")
    ax.set_title("distance between networks")
    written = _save(fig, directory, "distance_heatmap")
    if len(names) > 1:
        fig, ax = plt.subplots(figsize=(size + 2, 4))
        dendrogram(
            classes.linkage,
            labels=names,
            ax=ax,
            leaf_rotation=90,
            leaf_font_size=7,
            color_threshold=classes.eps,
        )
        ax.axhline(classes.eps, color="k", linestyle="--", linewidth=0.8)
        ax.set(ylabel=f"{classes.level} distance", title="average-linkage dendrogram (eps dashed)")
        written += _save(fig, directory, "dendrogram")
    return written
