"""Equivalence: invariances, verdicts, classes, identification on generated networks."""

import numpy as np
import pytest
from conftest import random_mlp

from nnequiv import analyze, cluster, compare, identify
from nnequiv.equivalence import energy_distance
from nnequiv.errors import InputError


def designs(seed):
    """Two clearly different random designs: a wide-shallow and a narrow-deep network, with
    heavy-tailed (trained-like) weights."""
    rng = np.random.default_rng(seed)
    wide = {f"w{i}": rng.standard_t(2.5, (200, 180)) for i in range(3)}
    deep = {f"d{i}": rng.standard_normal((24, 24)) for i in range(12)}
    return wide, deep


def test_analysis_fields_and_json():
    analysis = analyze(random_mlp([60, 50, 40, 30], seed=1), realizations=4, seed=2)
    assert len(analysis.layers) == 3 and analysis.csd.shape == (4, 240)
    assert analysis.layer_points.shape == (4, 3, 10)
    assert np.isfinite(analysis.decay.alpha) and 0 <= analysis.decay.r2 <= 1
    assert analysis.p_net.sum() == pytest.approx(1.0) and analysis.p_circ.sum() == pytest.approx(1)
    payload = analysis.to_dict()
    assert payload["decay"]["alpha"] == analysis.decay.alpha and len(payload["curves"]["x"]) == 240
    again = analyze(random_mlp([60, 50, 40, 30], seed=1), realizations=4, seed=2)
    assert np.array_equal(again.csd, analysis.csd)  # one seed fixes every number


def test_network_is_equivalent_to_itself_rescaled_and_permuted():
    net = random_mlp([40, 35, 30, 20], seed=3)
    rng = np.random.default_rng(0)
    scaled = {k: 9.0 * v for k, v in net.items()}
    permuted = {}
    for key, value in net.items():  # permute the neurons of every layer
        if value.ndim == 2:
            value = value[rng.permutation(value.shape[0])][:, rng.permutation(value.shape[1])]
        permuted[key] = value
    for other in (net, scaled, permuted):
        for level in ("layer", "pooled"):
            verdict = compare(net, other, level=level, realizations=6)
            assert verdict.distance == pytest.approx(0.0, abs=1e-12), level
            assert verdict.verdict == "equivalent"


def test_clearly_different_designs_are_not_equivalent():
    wide, deep = designs(4)
    for level in ("layer", "pooled"):
        verdict = compare(wide, deep, level=level, realizations=8)
        assert verdict.verdict == "not equivalent", verdict
        assert verdict.spread[0] <= verdict.distance <= verdict.spread[1]


def test_layer_distance_is_energy_distance_of_standardised_clouds():
    wide, deep = designs(6)
    first, second = analyze(wide, realizations=3), analyze(deep, realizations=3)
    clouds = [a.layer_points.mean(axis=0) for a in (first, second)]
    # scaled over the single-realisation points of every layer
    stacked = np.concatenate([a.layer_points.reshape(-1, 10) for a in (first, second)])
    for weight, expected_weight in ((None, 3.0), (1.0, 1.0), (0.5, 0.5)):
        scale = stacked.std(axis=0) / np.r_[np.ones(9), expected_weight]
        standard = [(c - stacked.mean(axis=0)) / scale for c in clouds]
        verdict = compare(first, second, eps=1.0, order_weight=weight)
        assert verdict.distance == pytest.approx(energy_distance(*standard), rel=1e-12)
    with pytest.raises(InputError, match="order_weight"):
        analyze(wide, order_weight=0.0)


def test_spread_shrinks_as_realisations_grow():
    wide, deep = designs(5)
    widths = []
    for count in (4, 32):
        low, high = compare(wide, deep, level="pooled", realizations=count, eps=1.0).spread
        widths.append(high - low)
    assert widths[1] < widths[0]


def test_verdict_is_undecided_inside_the_spread():
    wide, deep = designs(6)
    verdict = compare(wide, deep, realizations=8)
    inside = 0.5 * sum(verdict.spread)
    if verdict.spread[0] < verdict.spread[1]:
        assert compare(wide, deep, realizations=8, eps=inside).verdict == "undecided"
    assert compare(wide, deep, realizations=8, eps=verdict.spread[1] * 2).verdict == "equivalent"


def test_classes_are_connected_components():
    a = random_mlp([50, 50, 50, 50], seed=7)
    b = {k: v + 0.02 * np.random.default_rng(1).standard_normal(v.shape) for k, v in a.items()}
    c = {k: v + 0.02 * np.random.default_rng(2).standard_normal(v.shape) for k, v in b.items()}
    wide, deep = designs(8)
    result = cluster([a, b, c, wide, deep], realizations=6, eps=None)
    d = result.distance
    assert d.shape == (5, 5) and np.allclose(d, d.T) and np.all(np.diag(d) == 0)
    # every pair within eps shares a class (transitive closure of d <= eps)
    label = {name: i for i, members in enumerate(result.classes) for name in members}
    for i in range(5):
        for j in range(5):
            if d[i, j] <= result.eps:
                assert label[result.models[i]] == label[result.models[j]]
    assert sum(len(m) for m in result.classes) == 5 and result.linkage.shape == (4, 4)
    payload = result.to_dict()
    assert set(payload) >= {"models", "distance", "classes"}


def test_identify_ranks_the_same_design_first():
    a = random_mlp([60, 60, 60, 60], seed=9)
    query = {k: v + 0.01 * np.random.default_rng(3).standard_normal(v.shape) for k, v in a.items()}
    wide, deep = designs(10)
    result = identify(query, [wide, a, deep], top=2, realizations=6)
    assert len(result.matches) == 2 and result.matches[0].distance <= result.matches[1].distance
    assert result.matches[0].path == "<dict>"
    assert result.to_dict()["matches"][0]["distance"] == result.matches[0].distance


def test_bad_options_and_empty_sets():
    net = random_mlp([10, 8, 6])
    with pytest.raises(InputError, match="empty"):
        cluster([])
    with pytest.raises(InputError, match="level"):
        compare(net, net, level="global")
    with pytest.raises(InputError, match="realizations"):
        analyze(net, realizations=0)
    with pytest.raises(InputError, match="single realisation"):
        compare(net, net, realizations=1)
    with pytest.raises(ValueError, match="unknown circular ensemble"):
        analyze(net, ensemble="GOE")


def test_a_noise_only_coordinate_does_not_swamp_the_distance():
    """With median normalisation the point at x = 1 is conjugate noise for every layer; the
    standardisation must not blow it up, or shallow networks of one design fall apart."""
    rng = np.random.default_rng(9)
    shallow = [
        {"a": rng.standard_t(3, (256, 64)), "b": rng.standard_t(3, (10, 256))} for _ in range(3)
    ]
    deep = [{f"l{i}": rng.standard_normal((64, 64)) for i in range(4)} for _ in range(3)]
    result = cluster(shallow + deep, realizations=20)
    assert sorted(len(members) for members in result.classes) == [3, 3]
    assert result.eps < 0.35 * result.distance[:3, 3:].min()
