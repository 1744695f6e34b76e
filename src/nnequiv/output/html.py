"""One self-contained HTML report of analyses, and of classes, a verdict or an identification.

The page needs no network access: its figures are inline SVG (:mod:`nnequiv.output._svg`)
drawn from the figure data, hover text is SVG ``<title>`` shown at once by a few lines of
inline JavaScript, and print CSS lays it out on paper. Every label is escaped by markupsafe,
since file names come from strangers.

Read top to bottom: helpers, sections, page.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from markupsafe import Markup, escape

from nnequiv._display import display_names
from nnequiv._pipeline import require_analyses as whole_analyses
from nnequiv._version import __version__
from nnequiv.analysis import Analysis
from nnequiv.errors import InputError
from nnequiv.output._figure_data import (
    Curve,
    class_color,
    class_labels,
    classes_figure,
    curves_of,
    x_range,
)
from nnequiv.output._svg import svg_curves, svg_dendrogram, svg_heatmap
from nnequiv.output._words import alpha_text, number, plural
from nnequiv.results import Classes, Identification, Verdict

__all__ = ["render_report", "write_report", "require_analyses"]

_CURVE_CAPTION = (
    "Mean CSD over the realizations (solid), its min–max band (shaded; dotted: the maximum "
    "where the minimum is 0), the tail fit (dashed) and the tail start (triangle on the top "
    "edge). Curves end where the CSD reaches 0. Hover for the values at each x."
)


def _legend(curves: Sequence[Curve]) -> str:
    """The curves' colours and names, each with its alpha."""
    items = "".join(
        f'<li><span class="swatch" style="background:{c.color}"></span>{escape(c.name)}'
        f' <span class="muted">{escape(f"alpha = {c.alpha}")}</span></li>'
        for c in curves
    )
    return f'<ul class="legend">{items}</ul>'


def _figure(svg: str, caption: str, legend: str = "") -> str:
    return f"<figure>{svg}{legend}<figcaption>{escape(caption)}</figcaption></figure>"


def _curves_figure(
    analyses: Sequence[Analysis], names: Sequence[str], label: str, note: str = ""
) -> str:
    curves = curves_of(analyses, names)
    return _figure(
        svg_curves(curves, x_range(analyses), label), _CURVE_CAPTION + note, _legend(curves)
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], hints=None, css="") -> str:
    """An HTML table (no header row when ``header`` is empty). Cells are text, escaped here,
    or :class:`~markupsafe.Markup`; header hints become hover text."""
    hints = hints or [""] * len(header)
    head = "".join(
        f'<th title="{escape(hint)}">{escape(text)}</th>' if hint else f"<th>{escape(text)}</th>"
        for text, hint in zip(header, hints)
    )
    head = f"<thead><tr>{head}</tr></thead>" if header else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f'<table class="{css}">{head}<tbody>{body}</tbody></table>'


def _name_cell(name: str, source: str) -> Markup:
    """A network's name, with its source as hover text."""
    return Markup('<span title="{}">{}</span>').format(source, name)


def _verdict_section(verdict: Verdict, pair: Sequence[Analysis], names: Sequence[str]) -> str:
    low, high = verdict.spread
    design_low, design_high = verdict.design_spread
    parts = verdict.parts or {}
    rows = [
        (
            "networks",
            Markup("{} vs {}").format(
                _name_cell(names[0], verdict.a), _name_cell(names[1], verdict.b)
            ),
        ),
        ("decided by", verdict.decided_by),
        ("design distance", number(verdict.design_distance)),
        (
            "design spread (another seed, 95 %)",
            f"[{number(design_low)}, {number(design_high)}]",
        ),
        ("eps_design", f"{number(verdict.eps_design)} ({verdict.calibration.get('name')})"),
        (
            "parts",
            ", ".join(f"{name} {number(value)}" for name, value in parts.items()),
        ),
        ("layers", f"{verdict.layer_counts[0]} vs {verdict.layer_counts[1]}"),
        ("same-network level", verdict.level),
        ("same-network distance", number(verdict.distance)),
        ("spread (another seed, 95 %)", f"[{number(low)}, {number(high)}]"),
        ("eps (noise floor)", f"{number(verdict.eps)} ({verdict.eps_source})"),
        ("order weight", number(verdict.distance_settings.order_weight)),
    ]
    tables = []
    explanation = verdict.explanation
    if explanation is not None and explanation.level == "layer" and explanation.contributions:
        tables.append(
            "<h3>Why: the layers that make the distance</h3>"
            + _records_table([c.to_dict() for c in explanation.contributions])
        )
    elif explanation is not None and explanation.level == "pooled":
        rows += [("why", line) for line in explanation.lines()]
    verdict_class = verdict.verdict.replace(" ", "-")
    return (
        '<section id="verdict"><h2>Verdict</h2>'
        f'<p class="verdict {escape(verdict_class)}">{escape(verdict.verdict)}</p>'
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
    figure = classes_figure(classes)
    labels = figure.labels
    members = "".join(
        f'<li><span class="swatch" style="background:{class_color(k)}"></span>'
        f"class {k + 1}: "
        + ", ".join(_name_cell(names[i], classes.models[i]) for i in np.flatnonzero(labels == k))
        + "</li>"
        for k in range(len(classes.classes))
    )
    parts = [
        '<section id="classes"><h2>Classes</h2>',
        f"<p>{len(classes.models)} networks, {plural(figure.class_count, 'class', 'classes')} "
        f"at {escape(figure.eps_text)} ({escape(str(classes.calibration.get('name')))}). A "
        "class is a group of networks of one design: the average-linkage tree of the design "
        "distances cut at the design tolerance, so that two groups join only while the mean "
        "distance between their members is within it (docs/method.md, item 12). Pairs within "
        f"their own noise floor (median {escape(number(classes.eps))}) are the same network.</p>",
        f'<ul class="legend">{members}</ul>',
        _figure(
            svg_heatmap(figure),
            "Design distance between networks in the leaf order of the average-linkage tree; "
            "boxes enclose runs of one class (a class whose members are not adjacent in the "
            "tree gets several boxes). Hover a cell for the distance, its spread and the "
            "design tolerance.",
        ),
    ]
    if len(classes.models) > 1:
        parts.append(
            _figure(
                svg_dendrogram(figure),
                "Average-linkage tree of the design distances. Links inside one class below "
                "the design tolerance are drawn in the class colour; the dashed line is the "
                "cut (eps_design).",
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
        curves = curves_of([analyses[i] for i in chosen], [names[i] for i in chosen], k)
        panels.append(
            f'<div class="panel"><h3><span class="swatch" '
            f'style="background:{class_color(k)}"></span>class {k + 1}</h3>'
            + _figure(svg_curves(curves, limits, f"CSD curves of class {k + 1}"), "")
            + _legend(curves)
            + "</div>"
        )
    return (
        '<section id="curves"><h2>CSD curves by class</h2>'
        f'<p class="caption">{escape(_CURVE_CAPTION)} All panels share the x range.</p>'
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
            number(m.design_distance),
            f"[{number(m.design_spread[0])}, {number(m.design_spread[1])}]",
            m.verdict,
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
        "<p>Library networks ranked by design distance to "
        f"{_name_cell(names.get(result.query, result.query), result.query)}, nearest first."
        "</p>"
        + _table(
            ["rank", "network", "design distance", "spread (2.5–97.5 %)", "verdict"],
            rows,
            css="numbers",
        )
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
                alpha_text(d),
                number(d.r2, 3),
                f"{number(d.x_start, 3)} – {number(d.x_end, 3)}",
                number(analysis.tail_start),
                number(analysis.conjugacy),
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
        f"<details><summary>layers of {escape(name)} ({len(a.layers)})</summary>"
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
        return number(value)
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
    rows = [[_value_text(record.get(k)) for k in keys] for record in records]
    return _table([k.replace("_", " ") for k in keys], rows, css="numbers small")


def _settings_section(analyses: Sequence[Analysis], names: Sequence[str], version: str) -> str:
    settings = analyses[0].settings.to_dict()
    rows = [("nnequiv version", version)]
    rows += [(key.replace("_", " "), _value_text(v)) for key, v in settings.items()]
    differ = [n for a, n in zip(analyses, names) if a.settings.to_dict() != settings]
    note = (
        f'<p class="warning">These networks were analysed with other settings: '
        f"{escape(', '.join(differ))}.</p>"
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


def _skipped_section(skipped: Sequence[tuple[str, str]]) -> str:
    rows = [[label, reason] for label, reason in skipped]
    count = plural(len(rows), "input")
    return (
        f'<section id="skipped"><h2>Skipped inputs</h2><p class="muted">{count} could not be '
        "analysed and are left out of this report (--keep-going).</p>"
        + _table(["input", "reason"], rows)
        + "</section>"
    )


def require_analyses(analyses: Sequence) -> None:
    """Refuse anything but whole analyses: a report draws each network's curves, which a
    fingerprint index does not keep (one line naming the index,
    :func:`nnequiv._pipeline.require_analyses`)."""
    whole_analyses(analyses, "a report")


def _check(analyses, classes, verdict, identification) -> tuple[list[Analysis], list]:
    """The analyses as a list, and the pair of analyses the verdict compares (or [])."""
    analyses = list(analyses)
    if not analyses:
        raise InputError("a report needs at least one analysis")
    require_analyses(analyses)
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
    skipped: Sequence[tuple[str, str]] = (),
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
    skipped : sequence of (input, reason), optional
        Inputs left out (``--keep-going``), listed with the reason.

    Returns
    -------
    str
        The page; it loads nothing from elsewhere.
    """
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
    if skipped:
        sections.append(_skipped_section(skipped))
    sections.append(_settings_section(analyses, names, __version__))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f'<p class="muted">nnequiv {escape(__version__)} · {plural(len(analyses), "network")} '
        "· conjugate "
        f"{escape(analyses[0].settings.ensemble)}, {analyses[0].settings.realizations} "
        f"realizations, seed {analyses[0].settings.seed}</p>"
        + "".join(sections)
        + f'<div id="tip" role="tooltip"></div><script>{_JS}</script></body></html>\n'
    )


def write_report(path: str | os.PathLike, *, analyses: Sequence[Analysis], **options) -> Path:
    """Write :func:`render_report` to ``path`` (UTF-8) and return the path.

    Parameters
    ----------
    path : path
    analyses : sequence of Analysis
    **options
        ``classes``, ``verdict``, ``identification``, ``title`` and ``skipped``, as for
        :func:`render_report`.
    """
    path = Path(path)
    path.write_text(render_report(analyses=analyses, **options), encoding="utf-8")
    return path
