"""Human-readable tables and CSV of analyses, verdicts, classes and matches."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from nnequiv.equivalence import Analysis, Classes, Identification, Verdict

__all__ = [
    "format_analysis",
    "format_verdict",
    "format_classes",
    "format_identification",
    "classes_csv",
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
