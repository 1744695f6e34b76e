"""Human-readable tables, CSV, and figures of analyses, verdicts, classes and matches."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from nnequiv.equivalence import Analysis, Classes, Identification, Verdict
from nnequiv.errors import MissingDependencyError

__all__ = [
    "format_analysis",
    "format_verdict",
    "format_classes",
    "format_identification",
    "classes_csv",
    "plot_analysis",
    "plot_classes",
]


def _short(path: str) -> str:
    return Path(path).name or path


def format_analysis(analysis: Analysis) -> str:
    """A layer table and the summary numbers of one analysis."""
    s = analysis.settings
    lines = [
        f"{analysis.source}: {len(analysis.layers)} layers, conjugate {s.ensemble}, "
        f"{s.realizations} realisations, seed {s.seed}, {s.normalization} normalisation",
        f"{'layer':40} {'N x M':>13} {'n':>6} {'kept':>6} {'zeros':>6} method",
    ]
    for row in analysis.layers:
        shape = f"{row['matrix_shape'][0]} x {row['matrix_shape'][1]}"
        lines.append(
            f"{row['name'][:40]:40} {shape:>13} {row['order']:6d} "
            f"{row['n_eigenvalues']:6d} {row['n_dropped']:6d} {row['method']}"
        )
    d = analysis.decay
    lines += [
        f"tail start (q={s.tail_quantile:g}): x = {analysis.tail_start:.4g}",
        f"decay rate alpha = {d.alpha:.4f} +/- {d.stderr:.4f}  (R^2 = {d.r2:.3f}, "
        f"{d.n_points} bins, x in [{d.x_start:.3g}, {d.x_end:.3g}])",
        f"CSD at x = {analysis.edges[0]:.0e} (total variation): {analysis.csd_mean[0]:.4f}",
        f"conjugacy (max CSD beyond the 99th percentile): {analysis.conjugacy:.4f}",
    ]
    return "\n".join(lines)


def format_verdict(verdict: Verdict) -> str:
    low, high = verdict.spread
    return (
        f"{_short(verdict.a)} vs {_short(verdict.b)} ({verdict.level} level)\n"
        f"distance {verdict.distance:.4f}  spread [{low:.4f}, {high:.4f}]  "
        f"eps {verdict.eps:.4f} ({verdict.eps_source})\n"
        f"verdict: {verdict.verdict}"
    )


def format_classes(classes: Classes) -> str:
    names = [_short(m) for m in classes.models]
    width = max(8, *(len(n) for n in names))
    lines = [
        f"{len(classes.models)} networks, {len(classes.classes)} classes at eps = "
        f"{classes.eps:.4f} ({classes.eps_source}, {classes.level} level)"
    ]
    for index, members in enumerate(classes.classes, 1):
        lines.append(f"  class {index}: {', '.join(_short(m) for m in members)}")
    if len(names) <= 12:
        lines.append("distances:")
        lines.append(" " * (width + 1) + " ".join(f"{n[:7]:>7}" for n in names))
        for name, row in zip(names, classes.distance):
            lines.append(f"{name:{width}} " + " ".join(f"{v:7.3f}" for v in row))
    return "\n".join(lines)


def format_identification(result: Identification) -> str:
    lines = [f"nearest designs to {_short(result.query)} ({result.level} level):"]
    for rank, match in enumerate(result.matches, 1):
        lines.append(
            f"  {rank}. {match.path}  distance {match.distance:.4f}  "
            f"[{match.spread[0]:.4f}, {match.spread[1]:.4f}]"
        )
    return "\n".join(lines)


def classes_csv(classes: Classes) -> str:
    """One row per network: its class and its distance to every network."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    label = {m: i for i, members in enumerate(classes.classes, 1) for m in members}
    writer.writerow(["model", "class", *classes.models])
    for model, row in zip(classes.models, classes.distance):
        writer.writerow([model, label[model], *(f"{v:.6g}" for v in row)])
    return buffer.getvalue()


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
