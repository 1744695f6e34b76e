"""Text and CSV: human-readable tables of analyses, verdicts, classes, matches and a
calibration, and the same results as CSV."""

from __future__ import annotations

import csv
import io

from nnequiv._display import printable
from nnequiv.analysis import Analysis
from nnequiv.output._words import plural
from nnequiv.results import Classes, Identification, Verdict

__all__ = [
    "format_analysis",
    "format_verdict",
    "format_classes",
    "format_identification",
    "layers_csv",
    "verdict_csv",
    "classes_csv",
    "identification_csv",
    "format_calibration",
]


def _joined(lines: list[str]) -> str:
    """The lines of a text output, each made safe for a terminal (names from files may hold
    control characters or newlines)."""
    return "\n".join(printable(line) for line in lines)


def _csv(rows) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def format_analysis(analysis: Analysis) -> str:
    """A layer table and the summary numbers of one analysis."""
    s = analysis.settings
    width = max([36, *(len(row.name) for row in analysis.layers)])
    lines = [
        f"{analysis.source}: {plural(len(analysis.layers), 'layer')} ({analysis.layout}), "
        f"conjugate {s.ensemble}, {plural(s.realizations, 'realization')}, seed {s.seed}, "
        f"{s.canonical} canonical form, {s.normalization} normalisation",
        f"{'layer':{width}} {'N x M':>13} {'n':>6} {'zeros':>5} {'TV':>6} {'alpha':>6} method",
    ]
    for row in analysis.layers:
        shape = f"{row.matrix_shape[0]} x {row.matrix_shape[1]}"
        lines.append(
            f"{row.name:{width}} {shape:>13} {row.order:6d} {row.n_dropped:5d} "
            f"{row.total_variation:6.3f} {row.alpha:6.2f} {row.method}"
        )
    if analysis.skipped:
        lines.append(f"skipped: {plural(len(analysis.skipped), 'tensor')} (see --json)")
    d = analysis.decay
    low, high = d.interval
    lines += [
        f"tail start (q={s.tail_quantile:g}): x = {analysis.tail_start:.4g}",
        f"decay rate alpha = {d.alpha:.4f}, 95% interval for another seed [{low:.4f}, "
        f"{high:.4f}] (fit standard error {d.stderr:.4f}; R^2 = {d.r2:.3f}, "
        f"{d.n_points} bins, x in [{d.x_start:.3g}, {d.x_end:.3g}])",
        f"CSD at x = {analysis.edges[0]:.0e} (total variation): {analysis.csd_mean[0]:.4f}",
        f"conjugacy (max CSD beyond the 99th percentile): {analysis.conjugacy:.4f}",
    ]
    return _joined(lines)


def layers_csv(analysis: Analysis) -> str:
    """One row per layer: name, shapes, order, counts, method, total variation, alpha."""
    header = ["name", "shape", "N", "M", "order", "n_eigenvalues", "n_dropped", "method"]
    rows = [header + ["total_variation", "alpha"]]
    for row in analysis.layers:
        rows.append(
            [row.name, "x".join(map(str, row.shape)), *row.matrix_shape, row.order]
            + [row.n_eigenvalues, row.n_dropped, row.method]
            + [f"{row.total_variation:.6g}", f"{row.alpha:.6g}"]
        )
    return _csv(rows)


def format_verdict(verdict: Verdict) -> str:
    low, high = verdict.spread
    design_low, design_high = verdict.design_spread
    parts = verdict.parts or {}
    counts = verdict.layer_counts
    lines = [
        f"{verdict.a} vs {verdict.b}",
        f"verdict: {verdict.verdict} (decided by {verdict.decided_by})",
        f"design distance {verdict.design_distance:.4f}  spread [{design_low:.4f}, "
        f"{design_high:.4f}]  eps_design {verdict.eps_design:.4f} "
        f"({verdict.calibration.get('name', 'calibration')})",
        f"  parts: spectral {parts.get('spectral', float('nan')):.4f}, structural "
        f"{parts.get('structural', float('nan')):.4f} (weight "
        f"{verdict.calibration.get('structure_weight', float('nan')):g})",
        f"same-network distance {verdict.distance:.4f}  spread [{low:.4f}, {high:.4f}]  "
        f"eps {verdict.eps:.4f} ({verdict.eps_source} noise floor; {verdict.level} level)",
    ]
    if counts[0] != counts[1]:
        lines.append(f"layers: {counts[0]} vs {counts[1]} (the layer counts differ)")
    if verdict.explanation is not None and verdict.distance > 0:
        lines.append("largest contributions to the same-network distance:")
        lines += [f"  {line}" for line in verdict.explanation.lines()]
    if verdict.distance == 0:
        lines.append(
            "(distance 0: at this resolution the two layer clouds coincide; tail masses are "
            "multiples of 1/n, docs/method.md item 10)"
        )
    return _joined(lines)


def verdict_csv(verdict: Verdict) -> str:
    header = ["a", "b", "verdict", "decided_by", "design_distance", "design_spread_low"]
    header += ["design_spread_high", "eps_design", "spectral_part", "structural_part"]
    header += ["level", "distance", "spread_low", "spread_high", "eps", "eps_source"]
    parts = verdict.parts or {}
    row = [verdict.a, verdict.b, verdict.verdict, verdict.decided_by, verdict.design_distance]
    row += [*verdict.design_spread, verdict.eps_design, parts.get("spectral")]
    row += [parts.get("structural"), verdict.level, verdict.distance, *verdict.spread]
    return _csv([header, row + [verdict.eps, verdict.eps_source]])


def format_classes(classes: Classes) -> str:
    names = list(classes.models)
    width = max(8, *(len(n) for n in names))
    lines = [
        f"{plural(len(classes.models), 'network')}, "
        f"{plural(len(classes.classes), 'class', 'classes')} of one design each "
        f"(design tolerance {classes.eps_design:.4f}, "
        f"{classes.calibration.get('name', 'calibration')}; same network within each "
        f"pair's {classes.eps_source} noise floor, median {classes.eps:.4f})"
    ]
    for index, members in enumerate(classes.classes, 1):
        lines.append(f"  class {index}: {', '.join(members)}")
    if len(names) <= 12:
        marks = {"same network": "#", "equivalent": "=", "undecided": "?", "not equivalent": " "}
        lines.append(
            "design distances (# same network, = equivalent, ? undecided; --json gives both "
            "resolutions):"
        )
        numbers = [f"[{i}]" for i in range(1, len(names) + 1)]
        lines.append(" " * (width + 6) + " ".join(f"{n:>7} " for n in numbers).rstrip())
        for i, (number, name, row) in enumerate(zip(numbers, names, classes.design_distance)):
            cells = (
                f"{v:7.3f}{' ' if i == j else marks[classes.verdicts[i][j]]}"
                for j, v in enumerate(row)
            )
            lines.append(f"{number:>4} {name:{width}} " + " ".join(cells).rstrip())
    return _joined(lines)


def classes_csv(classes: Classes) -> str:
    """One row per network: its class and its design distance to every network."""
    rows = [["model", "class", *classes.models]]
    for model, label, row in zip(classes.models, classes.labels_, classes.design_distance):
        rows.append([model, int(label) + 1, *(f"{v:.6g}" for v in row)])
    return _csv(rows)


def format_identification(result: Identification) -> str:
    lines = [f"nearest designs to {result.query}:"]
    for rank, match in enumerate(result.matches, 1):
        lines.append(
            f"  {rank}. {match.path}  design distance {match.design_distance:.4f}  "
            f"[{match.design_spread[0]:.4f}, {match.design_spread[1]:.4f}]  eps_design "
            f"{match.eps_design:.4f}  distance {match.distance:.4f}  eps {match.eps:.4f}  "
            f"{match.verdict}"
        )
    return _joined(lines)


def identification_csv(result: Identification) -> str:
    header = ["rank", "path", "design_distance", "design_spread_low", "design_spread_high"]
    header += ["eps_design", "distance", "spread_low", "spread_high", "eps", "verdict"]
    rows = [header]
    for rank, m in enumerate(result.matches, 1):
        rows.append(
            [rank, m.path, m.design_distance, *m.design_spread, m.eps_design, m.distance]
            + [*m.spread, m.eps, m.verdict]
        )
    return _csv(rows)


def format_calibration(calibration, path: str | None = None) -> str:
    """The fitted tolerance, its weight and its leave-one-family-out error rates."""
    provenance = calibration.provenance
    families = provenance.get("families", [])
    checked = calibration.cross_validation.get("leave_one_family_out", {})
    fitted = provenance.get("fitted", {})
    lines = [
        f"design tolerance eps_design = {calibration.eps_design:.4f}, structural weight "
        f"{calibration.structure_weight:g}" + (f" (written to {path})" if path else ""),
        f"fitted on {plural(len(families), 'network')} of "
        f"{plural(len(set(families)), 'family', 'families')}: "
        f"{fitted.get('true_rate', float('nan')):.3f} of same-family pairs equivalent, "
        f"{fitted.get('false_rate', float('nan')):.4f} of different-family pairs",
    ]
    if checked:
        lines.append(
            f"leaving one family out: {checked['true_rate']:.3f} of "
            f"{checked['same_family_pairs']} same-family pairs equivalent, "
            f"{checked['false_rate']:.4f} of {checked['different_family_judgements']} "
            "different-family judgements"
        )
    return "\n".join(lines)
