"""Figures: files written, quantities named on the axes, bands that end with the data, the tree
order and classes, eps labelled, file names that do not collide."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.cluster.hierarchy import leaves_list

from nnequiv import analyze, cluster, compare
from nnequiv._display import display_names
from nnequiv.errors import InputError
from nnequiv.output._figure_data import (
    class_labels,
    class_runs,
    classes_figure,
    curve_of,
    file_stem,
    link_classes,
    tree_order,
)
from nnequiv.output._words import eps_label
from nnequiv.output.plots import plot_analysis, plot_classes, plot_pair

pytest.importorskip("matplotlib", reason="the figures need matplotlib (the plot extra)")


def _save(directory, name, state):
    path = directory / name
    np.savez(path, **state)
    return str(path)


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """Four small networks in files: two of one design (one a rescaled copy), two of
    another."""
    rng = np.random.default_rng(7)
    wide = {f"w{i}": rng.standard_t(2.5, (90, 80)) for i in range(3)}
    deep = {f"d{i}": rng.standard_normal((20, 20)) for i in range(8)}
    other = {f"d{i}": rng.standard_normal((20, 20)) for i in range(8)}
    directory = tmp_path_factory.mktemp("nets")
    paths = [
        _save(directory, "deep.npz", deep),
        _save(directory, "wide.npz", wide),
        _save(directory, "wide_x9.npz", {k: 9.0 * v for k, v in wide.items()}),
        _save(directory, "deep_other.npz", other),
    ]
    return [analyze(path, realizations=4) for path in paths]


@pytest.fixture(scope="module")
def classes(networks):
    return cluster(networks)


def _svg_texts(path) -> list[str]:
    text = Path(path).read_text(encoding="utf-8")
    return [re.sub(r"\s+", " ", t).strip() for t in re.findall(r"<text[^>]*>([^<]*)</text>", text)]


@pytest.mark.slow
def test_analysis_figures_name_their_quantities(networks, tmp_path):
    written = plot_analysis(networks[0], tmp_path)
    assert sorted(p.rsplit(".", 1)[1] for p in written) == ["png", "png", "svg", "svg"]
    density = _svg_texts(next(p for p in written if p.endswith("_density.svg")))
    csd = _svg_texts(next(p for p in written if p.endswith("_csd.svg")))
    assert "normalised eigenvalue x" in density and "normalised eigenvalue x" in csd
    assert "CSD(x)" in csd
    assert "network layers (MME)" in density and "network MME" not in density
    fit = networks[0].decay
    assert any(t.startswith(f"fit range x = {fit.x_start:.3g}") for t in csd)
    assert any(t.startswith(f"tail start x = {networks[0].tail_start:.3g}") for t in csd)
    assert any(t.startswith("tail fit, alpha = ") for t in csd)


def test_band_ends_where_the_data_end(networks):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nnequiv.output.plots import _draw_csd

    analysis = networks[1]
    low, high = analysis.csd_band
    x = analysis.edges[:-1]
    assert (low == 0).any(), "the test needs a band whose minimum reaches 0"
    fig, ax = plt.subplots()
    _draw_csd(ax, curve_of(analysis, "mean CSD", "C0"), "mean CSD", realizations=4)
    band = np.concatenate([p.vertices for p in ax.collections[0].get_paths()])
    assert band[:, 1].min() >= low[low > 0].min()  # no floor below the data
    assert band[:, 0].max() == pytest.approx(x[low > 0][-1])
    for line in ax.lines:
        assert (np.asarray(line.get_ydata()) > 0).all(), line.get_label()
    plt.close(fig)


@pytest.mark.slow
def test_two_inputs_with_one_file_name_get_their_own_files(networks, tmp_path):
    first = dataclasses.replace(networks[0], source="run1/model.npz")
    second = dataclasses.replace(networks[3], source="run2/model.npz")
    written = plot_analysis(first, tmp_path) + plot_analysis(second, tmp_path)
    assert len(set(written)) == 8 and len(list(tmp_path.iterdir())) == 8
    assert file_stem("run1/model.npz") != file_stem("run2/model.npz")
    assert file_stem("a/../x.npz").startswith("x-")
    assert display_names(["run1/model.npz", "run2/model.npz", "run1/other.npz"]) == [
        "run1/model.npz",
        "run2/model.npz",
        "other.npz",
    ]
    assert display_names(["m.npz", "m.npz"]) == ["m.npz", "m.npz#2"]


def test_pair_figure_shows_both_curves_and_the_verdict(networks, tmp_path):
    a, b = networks[0], networks[1]
    verdict = compare(a, b)
    written = plot_pair(a, b, verdict, tmp_path)
    assert len(written) == 2
    texts = _svg_texts(next(p for p in written if p.endswith(".svg")))
    assert f"deep.npz vs wide.npz: {verdict.verdict}" in texts
    assert any(f"eps_design {verdict.eps_design:.4g}" in t for t in texts)
    assert any(f"design distance {verdict.design_distance:.4g}" in t for t in texts)
    assert any(f"eps {verdict.eps:.4g}" in t for t in texts)
    assert any(t.startswith("deep.npz (alpha = ") for t in texts)
    assert any(t.startswith("wide.npz (alpha = ") for t in texts)
    with pytest.raises(InputError, match="verdict compares"):
        plot_pair(b, a, verdict, tmp_path)


def test_tree_order_classes_and_eps_label(classes, tmp_path):
    assert classes.classes[1] == [classes.models[1], classes.models[2]]  # wide and its copy
    order = tree_order(classes.linkage, len(classes.models))
    assert order == leaves_list(classes.linkage).tolist()
    labels = class_labels(classes)
    assert [classes.classes[k].count(m) for m, k in zip(classes.models, labels)] == [1] * 4
    runs = class_runs(labels[order])
    assert sorted(stop - start for start, stop, _ in runs)[-1] == 2  # the pair is adjacent
    links = link_classes(classes.linkage, labels, classes.eps_design)
    joined = [set(row[:2].astype(int)) for row in classes.linkage]
    assert links[joined.index({1, 2})] == labels[1]  # the merge of wide and its copy
    assert links[-1] == -1  # the root joins different classes
    figure = classes_figure(classes)  # what both the files and the report draw
    assert figure.order == order and figure.runs == runs
    assert figure.top == pytest.approx(max(classes.linkage[:, 2].max(), classes.eps_design) * 1.12)
    written = plot_classes(classes, tmp_path)
    assert [p.rsplit("/", 1)[1] for p in written] == [
        "distance_heatmap.png",
        "distance_heatmap.svg",
        "dendrogram.png",
        "dendrogram.svg",
    ]
    tree = _svg_texts(written[3])
    assert eps_label(classes.eps_design, "design") in tree
    heatmap = _svg_texts(written[1])
    names = display_names(classes.models)
    shown = [t for t in heatmap if t in names]
    assert shown[:4] == [names[i] for i in order]  # columns in tree order
    assert any("classes at" in t and "eps" in t for t in heatmap)


def test_class_runs_split_a_class_that_is_not_adjacent():
    assert class_runs([0, 0, 1, 0]) == [(0, 2, 0), (2, 3, 1), (3, 4, 0)]
