"""Equivalence: verdicts, set-independence, classes, identification, guard rails."""

from pathlib import Path

import numpy as np
import pytest
from _helpers import ZOO, random_mlp, require_shared
from transforms import fold_batchnorm, reversed_order, to_hwio, to_ohwi

from nnequiv import analyze, cluster, compare, identify
from nnequiv.distances import fingerprint
from nnequiv.equivalence import analyze_all, decide, pair_eps
from nnequiv.errors import InputError


def designs(seed):
    """Two clearly different random designs: a wide-shallow and a narrow-deep network, with
    heavy-tailed (trained-like) weights."""
    rng = np.random.default_rng(seed)
    wide = {f"w{i}": rng.standard_t(2.5, (200, 180)) for i in range(3)}
    deep = {f"d{i}": rng.standard_normal((24, 24)) for i in range(12)}
    return wide, deep


def noisy(state, seed, scale=1e-4):
    rng = np.random.default_rng(seed)
    return {k: v + scale * rng.standard_normal(v.shape) for k, v in state.items()}


@pytest.fixture
def files(tmp_path):
    """Five networks on disk: a, a near-copy of a, another near-copy, and two other designs."""
    a = random_mlp([60, 60, 60, 60], seed=9)
    wide, deep = designs(10)
    nets = {"a": a, "a2": noisy(a, 1), "a3": noisy(a, 2), "wide": wide, "deep": deep}
    paths = {}
    for name, state in nets.items():
        paths[name] = tmp_path / f"{name}.npz"
        np.savez(paths[name], **state)
    return paths


def test_a_network_is_equivalent_to_every_function_preserving_rewrite():
    rng = np.random.default_rng(0)
    net = random_mlp([40, 35, 30, 20], seed=3)
    permuted = {}
    for key, value in net.items():  # permute the neurons of every layer
        if value.ndim == 2:
            value = value[rng.permutation(value.shape[0])][:, rng.permutation(value.shape[1])]
        permuted[key] = value
    rewrites = {
        "rescaled": {k: 9.0 * v for k, v in net.items()},
        "permuted": permuted,
        "channel scales": {
            k: v * rng.uniform(0.2, 5, v.shape[0])[:, None] if v.ndim == 2 else v
            for k, v in net.items()
        },
        "tensorflow layout": to_hwio(net),
        "tflite layout": to_ohwi(net),
        "layers listed backwards": reversed_order(net),
    }
    for name, other in rewrites.items():
        for level in ("layer", "pooled"):
            verdict = compare(net, other, level=level, realizations=6)
            assert verdict.distance == 0.0, (name, level)
            assert verdict.design_distance == 0.0, (name, level)
            assert verdict.verdict == "same network", (name, level)
            assert verdict.decided_by == "noise floor", (name, level)


def test_raw_form_tells_channel_scales_apart():
    net = random_mlp([40, 35, 30, 20], seed=3)
    rng = np.random.default_rng(1)
    scaled = {
        k: v * rng.uniform(0.2, 5, v.shape[0])[:, None] if v.ndim == 2 else v
        for k, v in net.items()
    }
    assert compare(net, scaled, realizations=6, canonical="raw").distance > 0


def test_clearly_different_designs_are_not_equivalent():
    wide, deep = designs(4)
    for level in ("layer", "pooled"):
        verdict = compare(wide, deep, level=level, realizations=8)
        assert verdict.verdict == "not equivalent", verdict
        assert verdict.spread[0] <= verdict.distance <= verdict.spread[1]
        assert verdict.distance > verdict.eps


def test_the_answer_for_a_pair_depends_on_the_pair_alone(files):
    a, b = files["a"], files["wide"]
    others = [files["a2"], files["deep"], files["a3"]]
    verdict = compare(a, b, realizations=6)
    small = cluster([a, b], realizations=6)
    large = cluster([files["deep"], b, *others[:1], a], realizations=6)
    found = identify(a, [files["deep"], b, files["a2"]], realizations=6, top=3)
    match = next(m for m in found.matches if m.path == b.name)
    i, j = large.models.index(a.name), large.models.index(b.name)
    for d, spread, eps, word in [
        (small.distance[0, 1], (small.spread_low[0, 1], small.spread_high[0, 1]),
         small.eps_pairs[0, 1], small.verdicts[0, 1]),
        (large.distance[i, j], (large.spread_low[i, j], large.spread_high[i, j]),
         large.eps_pairs[i, j], large.verdicts[i, j]),
        (match.distance, match.spread, match.eps, match.verdict),
    ]:  # fmt: skip
        assert d == pytest.approx(verdict.distance, abs=1e-12)
        assert spread == pytest.approx(verdict.spread, abs=1e-12)
        assert eps == pytest.approx(verdict.eps, abs=1e-12)
        assert word == verdict.verdict


def test_calibrated_eps_is_the_larger_noise_floor_of_the_pair():
    wide, deep = designs(6)
    first, second = analyze(wide, realizations=6), analyze(deep, realizations=6)
    floors = [fingerprint(x).noise_floor for x in (first, second)]
    verdict = compare(first, second)
    assert verdict.eps == max(floors) == pair_eps(fingerprint(first), fingerprint(second))
    assert verdict.eps_source == "calibrated" and min(floors) < max(floors)
    assert compare(first, second, eps=0.5).eps_source == "given"


def test_decision_rule_at_its_boundaries():
    assert decide(0.3, (0.3, 0.3), 0.3) == "equivalent"  # d <= eps, empty spread
    assert decide(0.3, (0.2, 0.4), 0.2) == "undecided"  # low <= eps
    assert decide(0.3, (0.2, 0.4), 0.4) == "equivalent"  # eps = high: outside the spread
    assert decide(0.3, (0.2, 0.4), 0.5) == "equivalent"
    assert decide(0.3, (0.25, 0.35), 0.1) == "not equivalent"


def test_verdict_is_undecided_inside_the_spread():
    wide, deep = designs(6)
    verdict = compare(wide, deep, realizations=8)
    low, high = verdict.spread
    assert low < high
    assert compare(wide, deep, realizations=8, eps=0.5 * (low + high)).verdict == "undecided"
    assert compare(wide, deep, realizations=8, eps=2 * high).verdict == "same network"
    assert compare(wide, deep, realizations=8, eps=0.5 * low).verdict == "not equivalent"
    design_low, design_high = verdict.design_spread
    assert design_low < verdict.design_distance < design_high
    middle = 0.5 * (design_low + design_high)
    assert compare(wide, deep, realizations=8, eps_design=middle).verdict == "undecided"
    assert compare(wide, deep, realizations=8, eps_design=2 * design_high).verdict == "equivalent"


def test_classes_are_components_of_the_equivalent_pairs(files):
    paths = [files[k] for k in ("a", "a2", "wide", "a3", "deep")]
    result = cluster(paths, realizations=6)
    d = result.distance
    assert d.shape == (5, 5) and np.allclose(d, d.T) and np.all(np.diag(d) == 0)
    equivalent = result.verdicts == "equivalent"
    for i in range(5):
        for j in range(5):
            if equivalent[i, j]:
                assert result.labels_[i] == result.labels_[j]
    assert list(result.labels_) == [0, 0, 1, 0, 2]
    assert [len(c) for c in result.classes] == [3, 1, 1]
    assert result.eps == np.median(result.eps_pairs[~np.eye(5, dtype=bool)])
    assert result.linkage.shape == (4, 4)
    payload = result.to_dict()
    assert payload["labels"] == [0, 0, 1, 0, 2] and len(payload["eps_pairs"]) == 5
    assert "1 class" not in repr(result) and "3 classes" in repr(result)


def test_undecided_pairs_do_not_join_a_class(files):
    paths = [files["a"], files["wide"]]
    probe = compare(*paths, realizations=6)
    low, high = probe.spread
    result = cluster(paths, realizations=6, eps=0.5 * (low + high))
    assert result.verdicts[0, 1] == "undecided"
    joined = cluster(paths, realizations=6, eps=2 * high)
    assert joined.verdicts[0, 1] == "same network"


def test_identify_ranks_the_query_s_own_design_first(files):
    library = [files["wide"], files["a"], files["deep"]]
    result = identify(files["a2"], library, top=2, realizations=6)
    assert [m.path for m in result.matches] == [files["a"].name, files["deep"].name]
    assert result.matches[0].distance <= result.matches[1].distance
    assert result.query == files["a2"].name
    assert result.to_dict()["matches"][0]["verdict"] == result.matches[0].verdict
    other = identify(files["wide"], library, top=1, realizations=6)
    assert other.matches[0].path == files["wide"].name and other.matches[0].distance == 0


def test_order_weight_and_level_are_used(files):
    a, b = files["a"], files["deep"]
    distances = {w: compare(a, b, realizations=4, order_weight=w).distance for w in (0, 0.1, 1)}
    assert distances[0] < distances[0.1] < distances[1]
    pooled = compare(a, b, realizations=4, level="pooled")
    assert pooled.level == "pooled" and pooled.distance != distances[0.1]


def test_guard_rails():
    net = random_mlp([10, 8, 6])
    with pytest.raises(InputError, match="empty"):
        cluster([])
    with pytest.raises(InputError, match="level"):
        compare(net, net, level="global")
    with pytest.raises(InputError, match="single realization"):
        compare(net, net, realizations=1)
    for eps in (-1.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="eps"):
            compare(net, net, eps=eps)
    with pytest.raises(InputError, match="connectomes only"):
        compare(net, net, submatrices=4)
    with pytest.raises(InputError, match="top"):
        identify(net, [net], top=0)
    first, second = analyze(net, realizations=3), analyze(net, realizations=3, seed=1)
    with pytest.raises(InputError, match="seed"):
        compare(first, second)
    with pytest.raises(InputError, match="realizations"):
        compare(first, first, realizations=5)
    with pytest.raises(InputError, match="locations"):
        cluster([first, analyze(net, realizations=3, locations=(1.0,))])


@pytest.mark.slow
def test_batchnorm_folding_keeps_zoo_networks_equivalent():
    """Real BatchNorm folding (W scaled per output channel by gamma / sqrt(var + eps)) of every
    zoo network with BatchNorm gives distance 0 and "equivalent"."""
    zoo = require_shared(ZOO)
    checked = 0
    for path in sorted(zoo.glob("*.npz")):
        state = dict(np.load(path))
        folded, count = fold_batchnorm(state)
        if count == 0:
            continue
        verdict = compare(state, folded, realizations=4)
        assert verdict.distance == pytest.approx(0, abs=1e-9), path.name
        assert verdict.verdict == "same network", path.name
        checked += 1
    assert checked >= 8


def test_frames_and_notebook_views(files):
    pandas = pytest.importorskip("pandas")
    paths = [files[k] for k in ("a", "a2", "wide")]
    classes = cluster(paths, realizations=4)
    table = classes.to_frame()
    assert isinstance(table, pandas.DataFrame) and list(table.index) == [p.name for p in paths]
    assert list(table["class"]) == list(classes.labels_)
    assert table.loc[paths[0].name, paths[2].name] == classes.design_distance[0, 2]
    found = identify(paths[1], paths, top=2, realizations=4).to_frame()
    assert list(found.index) == [1, 2] and found.loc[1, "distance"] == 0.0
    verdict = compare(paths[0], paths[2], realizations=4)
    for view in (classes._repr_html_(), verdict._repr_html_()):
        assert view.startswith("<table>") and "a.npz" in view
    assert verdict.verdict in verdict._repr_html_() and "because" in verdict._repr_html_()


def test_compare_explains_its_verdict():
    wide, deep = designs(4)
    verdict = compare(wide, deep, realizations=4)
    layers = verdict.explanation.contributions
    assert len(layers) == 6 and {c.network for c in layers} == {"a", "b"}
    assert all(c.layer in (wide if c.network == "a" else deep) for c in layers)
    assert layers[0].share >= layers[-1].share
    payload = verdict.to_dict()["explanation"]
    assert payload["level"] == "layer" and payload["layers"][0]["layer"] == layers[0].layer
    same = compare(wide, wide, realizations=4)
    assert same.explanation.contributions == ()
    pooled = compare(wide, deep, realizations=4, level="pooled").explanation
    assert pooled.level == "pooled" and abs(pooled.csd_a - pooled.csd_b) == pytest.approx(
        compare(wide, deep, realizations=4, level="pooled").distance
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's own
def test_onnx_export_that_folds_batchnorm_is_equivalent_to_its_state_dict(tmp_path):
    """torch.onnx.export (TorchScript exporter, eval mode) folds each BatchNorm into its
    convolution; the balanced canonical form makes the export the same network."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from nets import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():  # BatchNorm statistics far from the identity, so folding matters
        model.bn1.weight.uniform_(0.2, 3.0)
        model.bn1.running_var.uniform_(0.1, 5.0)
        model.bn1.running_mean.normal_()
    path = tmp_path / "cnn.onnx"
    torch.onnx.export(model, torch.randn(1, 3, 8, 8), str(path), dynamo=False)
    import onnx

    stored = {t.name for t in onnx.load(str(path)).graph.initializer}
    assert not any("bn1" in name for name in stored)  # the exporter did fold it
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    folded = compare(state, path, realizations=6)
    assert folded.distance == pytest.approx(0.0, abs=1e-9) and folded.verdict == "same network"
    raw = compare(state, path, realizations=6, canonical="raw")
    assert raw.distance > 0  # the stored matrices differ: the canonical form is what matches


def test_eps_zero_is_allowed_and_only_distance_zero_passes_it():
    net = random_mlp([30, 24, 18], seed=2)
    same = compare(net, {k: 4.0 * v for k, v in net.items()}, realizations=4, eps=0.0)
    assert (same.distance, same.eps, same.eps_source, same.verdict) == (
        0.0, 0.0, "given", "same network",
    )  # fmt: skip
    wide, _ = designs(3)
    assert compare(net, wide, realizations=4, eps=0.0).verdict == "not equivalent"


def test_views_show_the_numbers_of_the_result(files):
    verdict = compare(files["a"], files["deep"], realizations=4)
    low, high = verdict.spread
    text = repr(verdict)
    assert f"d={verdict.distance:.4f} [{low:.4f}, {high:.4f}], eps={verdict.eps:.4f}" in text
    assert f"[{low:.4f}, {high:.4f}]" in verdict._repr_html_()
    found = identify(files["a2"], [files["deep"], files["a"], files["wide"]], realizations=4)
    assert f"nearest {files['a'].name!r}" in repr(found) and "3 matches" in repr(found)
    view = found._repr_html_()
    ranked = [view.index(f"<td>{rank}</td><td>{m.path}</td>") for rank, m in
              enumerate(found.matches, 1)]  # fmt: skip
    assert ranked == sorted(ranked)
    classes = cluster([files["a"], files["wide"]], realizations=4)
    html = classes._repr_html_()
    assert "<td>a.npz</td><td>1</td>" in html and "<td>wide.npz</td><td>2</td>" in html


def test_a_set_of_one_and_of_two(files):
    (one, two) = (cluster([files[k] for k in names], realizations=4)
                  for names in (["a"], ["a", "wide"]))  # fmt: skip
    assert one.classes == [["a.npz"]] and list(one.labels_) == [0] and one.linkage.shape == (0, 4)
    assert one.eps == one.eps_pairs[0, 0] > 0 and repr(one).startswith(
        "Classes(1 networks, 1 class at"
    )
    assert two.eps == two.eps_pairs[0, 1] and two.verdicts[0, 1] == "not equivalent"
    assert two.linkage.shape == (1, 4) and two.linkage[0, 2] == two.design_distance[0, 1]
    assert "2 classes" in repr(two)


def test_the_tree_is_the_average_linkage_of_the_design_distances(files):
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    result = cluster([files[k] for k in ("a", "a2", "wide", "a3", "deep")], realizations=4)
    expected = linkage(squareform(result.design_distance), "average")
    np.testing.assert_allclose(result.linkage, expected, rtol=1e-12)
    assert not np.allclose(result.linkage, linkage(squareform(result.design_distance), "single"))


def test_identify_returns_the_five_nearest_by_default(tmp_path):
    paths = []
    for seed in range(7):
        paths.append(tmp_path / f"net{seed}.npz")
        np.savez(paths[-1], **random_mlp([20 + 4 * seed, 16, 12], seed=seed))
    found = identify(paths[0], paths, realizations=3)
    assert len(found.matches) == 5 and found.matches[0].path == "net0.npz"
    distances = [m.design_distance for m in found.matches]
    assert distances == sorted(distances)
    everything = identify(paths[0], paths, realizations=3, top=7)
    assert [m.path for m in everything.matches][:5] == [m.path for m in found.matches]


def test_relative_paths_are_resolved(files, monkeypatch):
    monkeypatch.chdir(files["a"].parent)
    result = cluster(["a.npz", "wide.npz"], realizations=3)
    assert result.paths == [str(files["a"].resolve()), str(files["wide"].resolve())]
    assert result.models == ["a.npz", "wide.npz"]


def test_a_numeric_table_that_is_not_a_connectome_is_left_out_unless_asked(files, tmp_path):
    folder = files["a"].parent
    (folder / "table.csv").write_text("1,2,3,4,5\n6,7,8,9,10\n")
    for item in (analyze_all([folder], realizations=3), cluster([folder], realizations=3)):
        names = item.models if hasattr(item, "models") else [x.source for x in item]
        assert sorted(names) == ["a.npz", "a2.npz", "a3.npz", "deep.npz", "wide.npz"]
    notes = []  # in a folder, even with connectomes, a table not shaped as one is left out
    found = analyze_all([folder], realizations=3, connectomes=True, notes=notes.append)
    assert "table.csv" not in [x.source for x in found]
    assert any("table.csv" in note and "not a connectome" in note for note in notes)
    with pytest.raises(InputError, match="table.csv"):  # named, it is taken, and refused
        analyze_all([folder / "table.csv"], realizations=3, connectomes=True)


@pytest.mark.parametrize("question", ["compare", "cluster", "identify"])
def test_the_questions_take_no_named_csv_as_a_connectome(files, question):
    """Only analyze_all(connectomes=True) (``--connectome``) reads a named CSV that is not
    a whole connectome as one; the questions look for networks in it."""
    table = files["a"].parent / "table.csv"
    table.write_text("1,2,3,4,5\n6,7,8,9,10\n")
    asked = {
        "compare": lambda: compare(table, files["a"], realizations=3),
        "cluster": lambda: cluster([table, files["a"]], realizations=3),
        "identify": lambda: identify(table, [files["a"]], realizations=3),
    }[question]
    with pytest.raises(InputError, match="table.csv: no network found"):
        asked()


def test_progress_is_reported_for_every_network_in_order(files):
    calls = []
    paths = [files[k] for k in ("a", "wide", "deep")]
    cluster(paths, realizations=3, progress=lambda *args: calls.append(args))
    named = [(done, total, Path(label).name) for done, total, label in calls]
    assert named == [(1, 3, "a.npz"), (2, 3, "wide.npz"), (3, 3, "deep.npz")]
    calls.clear()
    identify(paths[0], paths[1:], realizations=3, progress=lambda *args: calls.append(args))
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)]


def test_networks_of_one_file_name_given_apart_get_their_folders(tmp_path):
    paths = []
    for folder, seed in (("run1", 1), ("run2", 2)):
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / "model.npz")
        np.savez(paths[-1], **random_mlp([20, 16, 8], seed=seed))
    result = cluster(paths, realizations=3)
    assert result.models == ["run1/model.npz", "run2/model.npz"]


@pytest.mark.parametrize("question", ["compare", "cluster", "identify", "calibrate"])
def test_the_run_keywords_reach_the_analyses_of_every_question(files, tmp_path, question):
    """settings, cache_dir and progress are taken among the options of each question
    (documented once, on analyze_all): each changes what happens, none is dropped."""
    from nnequiv import calibrate
    from nnequiv.settings import Settings

    a, b = files["a"], files["wide"]
    cache, calls = tmp_path / "cache", []
    run = {
        "settings": Settings(realizations=3, seed=5),
        "cache_dir": cache,
        "progress": lambda *args: calls.append(args),
        "n_jobs": 1,
    }
    families = {"a": "x", "a2": "x", "wide": "y", "deep": "y"}
    asked = {
        "compare": lambda: compare(a, b, **run).settings,
        "cluster": lambda: cluster([a, b], **run).settings,
        "identify": lambda: identify(a, [b], **run).settings,
        "calibrate": lambda: Settings(
            **calibrate([a, files["a2"], b, files["deep"]], families, **run).provenance["settings"]
        ),
    }
    settings = asked[question]()
    assert (settings.realizations, settings.seed) == (3, 5)
    assert list((cache / "analyses").rglob("*.npz")), "nothing stored in the cache given"
    assert calls and calls[-1][0] == calls[-1][1], "progress not reported to the end"


def test_keywords_a_question_does_not_use_are_refused_not_ignored(files):
    from nnequiv import calibrate

    a, b = files["a"], files["wide"]
    with pytest.raises(InputError, match=r"unknown option 'n_job' \(did you mean 'n_jobs'\?\)"):
        compare(a, b, realizations=3, n_job=2)
    with pytest.raises(InputError, match="'level' is a distance setting"):
        analyze_all([a, b], realizations=3, level="pooled")  # an analysis has no distance
    with pytest.raises(InputError, match="'order_weight' is a distance setting"):
        calibrate([a, b], {"a": "x", "wide": "y"}, realizations=3, order_weight=99.0)


def test_analyze_all_takes_a_named_table_as_a_connectome_only_when_asked(files):
    table = files["a"].parent / "table.csv"
    table.write_text("1,2,3,4,5\n6,7,8,9,10\n")
    with pytest.raises(InputError, match="table.csv: no network found"):
        analyze_all([table], realizations=3)
