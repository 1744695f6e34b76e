"""The HTML report: self-contained, escaped, in tree order, and rendered by a real browser
(headless Chromium through Playwright; skipped with the reason where neither is installed,
required in CI)."""

import dataclasses
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.cluster.hierarchy import leaves_list

from nnequiv import __version__, analyze, cluster, compare, identify
from nnequiv.errors import InputError
from nnequiv.output._figure_data import Curve
from nnequiv.output._svg import svg_curves
from nnequiv.output._words import eps_label
from nnequiv.output.html import render_report, write_report

EVIL = "<script>alert(1)</script>.npz"


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """Five small networks in files: a wide design, its rescaled copy, two deep ones, and
    a small MLP."""
    rng = np.random.default_rng(11)
    wide = {f"w{i}": rng.standard_t(2.5, (90, 80)) for i in range(3)}
    states = {
        "wide.npz": wide,
        "wide_rescaled.npz": {k: 5.0 * v for k, v in wide.items()},
        "deep_1.npz": {f"d{i}": rng.standard_normal((20, 20)) for i in range(8)},
        "deep_2.npz": {f"d{i}": rng.standard_normal((20, 20)) for i in range(8)},
        "mlp.npz": {f"fc{i}": rng.standard_normal((40 - 8 * i, 48 - 8 * i)) for i in range(3)},
    }
    directory = tmp_path_factory.mktemp("nets")
    analyses = []
    for name, state in states.items():
        np.savez(directory / name, **state)
        analyses.append(analyze(str(directory / name), realizations=4))
    return analyses


@pytest.fixture(scope="module")
def classes(networks):
    return cluster(networks)


def _section(page: str, name: str) -> str:
    return page[page.index(f'<section id="{name}">') :].split("</section>", 1)[0]


def test_report_is_self_contained(networks, classes, tmp_path):
    verdict = compare(networks[0], networks[2])
    path = write_report(tmp_path / "r.html", analyses=networks, classes=classes, verdict=verdict)
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<img" not in page and "@import" not in page
    assert page.count("<script") == 1  # the page's own hover script
    assert f"nnequiv {__version__}" in page
    for key in classes.to_dict()["eps_source"], "realizations", "tail quantile":
        assert key in page


def test_classes_section_in_tree_order_with_eps(networks, classes):
    page = render_report(analyses=networks, classes=classes)
    heatmap = page[page.index('<svg class="figure heatmap"') :].split("</svg>", 1)[0]
    sources = [a.source for a in networks]
    titles = [t for t in re.findall(r"<title>([^<]*)</title>", heatmap) if t in sources]
    rows = titles[: len(sources)]
    assert rows == [sources[i] for i in leaves_list(classes.linkage)]
    assert heatmap.count('class="cell"') == len(sources) ** 2
    assert f"d = {classes.design_distance[0, 1]:.4g}" in heatmap  # hover text of a cell
    tree = page[page.index('<svg class="figure dendrogram"') :].split("</svg>", 1)[0]
    assert eps_label(classes.eps_design, "design") in tree
    assert f"{len(classes.classes)} classes at {eps_label(classes.eps_design, 'design')}" in page
    curves = _section(page, "curves")
    assert curves.count('<svg class="figure curves"') == len(classes.classes)


def test_network_table_reads_what_the_fit_reports(networks):
    fit, other = networks[0].decay, networks[1].decay
    with_interval = dataclasses.replace(
        networks[0], decay=dataclasses.replace(fit, interval=(0.8125, 1.0625))
    )
    nan = float("nan")
    without = dataclasses.replace(
        networks[1], decay=dataclasses.replace(other, interval=(nan, nan))
    )
    table = _section(render_report(analyses=[with_interval, without]), "networks")
    assert f"{fit.alpha:.3g} [0.812, 1.06]" in table  # the interval where the fit has one
    assert f"{other.alpha:.3g} ± {other.stderr:.2g} (fit s.e.)" in table
    main = table.split("</table>", 1)[0]
    assert main.count("<tr>") == 3 and "<th>class</th>" not in main  # header and two rows
    assert table.count("<details>") == 2 and "90 × 80" in table  # the layer tables
    assert f"{networks[0].tail_start:.4g}" in table and f"{networks[1].conjugacy:.4g}" in table


def test_pair_report_has_the_verdict_and_both_curves(networks):
    verdict = compare(networks[0], networks[2])
    page = render_report(analyses=[networks[0], networks[2]], verdict=verdict)
    section = _section(page, "verdict")
    assert f'<p class="verdict not-equivalent">{verdict.verdict}</p>' in section
    assert f"{verdict.distance:.4g}" in section and f"{verdict.eps:.4g}" in section
    assert section.count("<polyline") >= 2 and "wide.npz" in section and "deep_1.npz" in section


def test_identification_report_ranks_the_matches(networks):
    result = identify(networks[0], networks[1:], top=3)
    section = _section(render_report(analyses=networks, identification=result), "identification")
    ranked = re.findall(r"<td>\d</td><td><span title=\"([^\"]*)\"", section)
    assert ranked == [m.path for m in result.matches]
    assert "wide.npz (query)" in section


def test_labels_from_strangers_are_escaped(networks):
    evil = [dataclasses.replace(a, source=EVIL) if i == 1 else a for i, a in enumerate(networks)]
    page = render_report(analyses=evil, classes=cluster(evil), title='<img src=x onerror="1">')
    assert "<script>alert" not in page and "<img" not in page
    assert page.count("<script") == 1
    assert html_escaped(EVIL) in page


def html_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_mismatched_inputs_are_refused(networks, classes):
    with pytest.raises(InputError, match="order given to cluster"):
        render_report(analyses=networks[::-1], classes=classes)
    verdict = compare(networks[0], networks[2])
    with pytest.raises(InputError, match="for the verdict"):
        render_report(analyses=networks[:2], verdict=verdict)
    with pytest.raises(InputError, match="at least one"):
        render_report(analyses=[])


def test_curves_end_where_the_data_end():
    x = np.logspace(-2, 2, 41)
    mean = np.where(x < 10, 1 / (1 + x), 0.0)
    low = np.where(x < 1, 0.8 / (1 + x), 0.0)
    high = np.where(x < 30, 1.2 / (1 + x), 0.0)
    curve = Curve("net", "#000", x, mean, low, high, 1.0, None)
    svg = svg_curves([curve], (x[0], x[-1]), "test")
    band = re.search(r'<polygon points="([^"]*)"', svg).group(1)
    mean_line = re.search(r'<polyline points="([^"]*)"[^>]*stroke-width="1.8"', svg).group(1)
    band_x = [float(p.split(",")[0]) for p in band.split()]
    mean_x = [float(p.split(",")[0]) for p in mean_line.split()]
    frame = re.search(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', svg).groups()
    left, width = map(float, frame)

    def pixel(value):
        return left + (np.log10(value) + 2) / 4 * width

    assert max(band_x) == pytest.approx(pixel(x[x < 1][-1]), abs=0.1)
    assert max(mean_x) == pytest.approx(pixel(x[x < 10][-1]), abs=0.1)
    assert len(mean_x) == (x < 10).sum()


# ---- in a real browser ----------------------------------------------------------------------

CHROMIUM = os.environ.get("NNEQUIV_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason}, but CI must run the browser test (.ci/run installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -r requirements-dev.txt)")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield chromium
        chromium.close()


def _open(browser, path: Path):
    """The page at ``path`` and what it reported: console errors, page errors, dialogs and
    requests for anything but the file itself."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    events = {"errors": [], "dialogs": [], "requests": []}
    page.on(
        "console",
        lambda m: events["errors"].append(m.text) if m.type == "error" else None,
    )
    page.on("pageerror", lambda exc: events["errors"].append(str(exc)))
    page.on("dialog", lambda d: (events["dialogs"].append(d.message), d.dismiss()))
    page.on(
        "request",
        lambda r: events["requests"].append(r.url) if r.url != path.as_uri() else None,
    )
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, events


@pytest.mark.xdist_group("chromium")  # one worker launches the browser for both tests
def test_report_renders_in_chromium(browser, networks, classes, tmp_path):
    verdict = compare(networks[0], networks[2])
    path = write_report(
        tmp_path / "report.html",
        analyses=networks,
        classes=classes,
        verdict=verdict,
        title="nnequiv report: five generated networks",
    )
    page, events = _open(browser, path)
    count = len(networks)
    assert page.locator("svg.heatmap rect.cell").count() == count**2
    assert page.locator("svg.dendrogram").count() == 1
    assert page.locator("table.networks tbody tr").count() == count
    assert page.locator("svg.heatmap title").count() == 0  # turned into instant hover text
    cell = page.locator("svg.heatmap rect.cell").nth(1)
    cell.hover()
    tip = page.locator("#tip")
    assert tip.is_visible()
    assert re.search(r"distance d = [\d.]+", tip.inner_text())
    assert cell.get_attribute("data-tip") == tip.inner_text()
    curves = page.locator("svg.curves").first
    curves.scroll_into_view_if_needed()  # the mouse reaches only what the viewport shows
    box = curves.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5)
    assert tip.is_visible() and "CSD" in tip.inner_text()
    assert page.locator("p.verdict").inner_text() == verdict.verdict
    screenshot = tmp_path / "report.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("NNEQUIV_SCREENSHOT"):
        page.screenshot(path=os.environ["NNEQUIV_SCREENSHOT"], full_page=True)
    page.emulate_media(media="print")
    assert not tip.is_visible()
    page.close()
    assert events == {"errors": [], "dialogs": [], "requests": []}


@pytest.mark.xdist_group("chromium")
def test_hostile_names_stay_text_in_chromium(browser, networks, tmp_path):
    evil = [dataclasses.replace(a, source=EVIL) if i == 1 else a for i, a in enumerate(networks)]
    path = write_report(tmp_path / "evil.html", analyses=evil, classes=cluster(evil))
    page, events = _open(browser, path)
    assert page.evaluate("document.scripts.length") == 1
    titles = page.locator("table.networks span[title]").evaluate_all(
        "spans => spans.map(s => s.title)"
    )
    assert EVIL in titles
    page.close()
    assert events == {"errors": [], "dialogs": [], "requests": []}


# ---- the old module names -------------------------------------------------------------------


@pytest.mark.parametrize(
    "old, name, home",
    [
        ("nnequiv.report", "render_report", "nnequiv.output.html"),
        ("nnequiv.reporting", "format_verdict", "nnequiv.output.text"),
        ("nnequiv.reporting", "classes_csv", "nnequiv.output.text"),
        ("nnequiv.figures", "plot_classes", "nnequiv.output.plots"),
        ("nnequiv.figures", "eps_label", "nnequiv.output._words"),
        ("nnequiv.figures", "tree_order", "nnequiv.output._figure_data"),
        ("nnequiv.report_svg", "svg_curves", "nnequiv.output._svg"),
    ],
)
def test_old_module_names_answer_with_a_deprecation_warning(old, name, home):
    import importlib

    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated.*{name} from {home}"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(home), name)
    assert name in dir(module)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = module.nothing


def test_the_tree_is_drawn_from_the_figure_data(networks, classes):
    from nnequiv.output._figure_data import classes_figure

    figure = classes_figure(classes)
    page = render_report(analyses=networks, classes=classes)
    tree = page[page.index('<svg class="figure dendrogram"') :].split("</svg>", 1)[0]
    strokes = re.findall(r'<polyline class="link"[^>]*stroke="([^"]*)"', tree)
    assert strokes == figure.link_colors and len(strokes) == len(classes.models) - 1
    wide = classes.models.index(next(m for m in classes.models if m.endswith("/wide.npz")))
    assert figure.link_colors[-1] == "#8a8a8a"  # the root joins different classes
    assert figure.color(wide) in strokes  # wide and its rescaled copy: one class, one colour
