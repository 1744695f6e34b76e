"""Distances on the fixed scale: the formulas, the spread, the noise floor, the guard."""

import numpy as np
import pytest
from _helpers import random_mlp
from scipy.spatial.distance import cdist

from nnequiv import analyze
from nnequiv.csd import bootstrap_indices
from nnequiv.distances import (
    check_comparable,
    distance,
    distance_with_spread,
    distances_with_spread,
    energy_distance,
    fingerprint,
    fingerprints,
    layer_cloud,
    summarize,
)
from nnequiv.errors import InputError
from nnequiv.settings import DistanceSettings


def pair(seed=0, realizations=6, **options):
    rng = np.random.default_rng(seed)
    wide = {f"w{i}": rng.standard_t(2.5, (120, 100)) for i in range(3)}
    deep = {f"d{i}": rng.standard_normal((24, 24)) for i in range(6)}
    return [analyze(net, realizations=realizations, **options) for net in (wide, deep)]


def expected_cloud(analysis, weight, realizations=slice(None)):
    order = sorted(range(len(analysis.layers)), key=lambda i: analysis.layers[i].stream)
    points = analysis.layer_points[realizations][:, order].mean(axis=0)
    log_order = np.log(analysis.orders[order])[:, None]
    return np.hstack([points, weight * log_order])


def scipy_energy(x, y):
    return np.sqrt(2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean())


def test_energy_distance_matches_its_definition():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((5, 3)) + 1.0
    assert energy_distance(x, y) == pytest.approx(scipy_energy(x, y), rel=1e-12)
    assert energy_distance(x, x) == 0.0


@pytest.mark.parametrize("weight", [0.0, 0.1, 1.0, 3.0])
def test_layer_distance_is_the_energy_distance_of_fixed_scale_clouds(weight):
    a, b = pair()
    settings = DistanceSettings(order_weight=weight)
    got = distance(fingerprint(a, settings), fingerprint(b, settings))
    clouds = [expected_cloud(x, weight) for x in (a, b)]
    assert got == pytest.approx(scipy_energy(*clouds), rel=1e-12)
    np.testing.assert_array_equal(
        layer_cloud(np.ones((2, 3)), [np.e, np.e**2], weight)[:, -1], [weight, 2 * weight]
    )


def test_pooled_distance_is_the_sup_of_the_mean_curves():
    a, b = pair()
    settings = DistanceSettings(level="pooled")
    expected = np.abs(a.csd.mean(0) - b.csd.mean(0)).max()
    assert distance(fingerprint(a, settings), fingerprint(b, settings)) == expected


@pytest.mark.parametrize("level", ["layer", "pooled"])
def test_noise_floor_is_the_half_split_distance(level):
    a, _ = pair(realizations=7)
    settings = DistanceSettings(level=level)
    floor = fingerprint(a, settings).noise_floor
    if level == "pooled":
        halves = [a.csd[s].mean(0) for s in (slice(0, 3), slice(3, 6))]
        expected = np.abs(halves[0] - halves[1]).max()
    else:
        weight = settings.order_weight
        halves = [expected_cloud(a, weight, s) for s in (slice(0, 3), slice(3, 6))]
        expected = scipy_energy(*halves)
    assert floor == pytest.approx(expected / np.sqrt(2), rel=1e-10)
    (single,) = pair(realizations=1)[:1]
    assert np.isnan(fingerprint(single).noise_floor)


@pytest.mark.parametrize("level", ["layer", "pooled"])
def test_spread_is_where_another_seed_lands(level):
    a, b = pair(realizations=6)
    settings = DistanceSettings(level=level)
    fa, fb = fingerprint(a, settings), fingerprint(b, settings)
    value, (low, high) = distance_with_spread(fa, fb)
    resamples = bootstrap_indices(0, 6)
    if level == "pooled":
        replicates = [np.abs(a.csd[p].mean(0) - b.csd[p].mean(0)).max() for p in resamples]
    else:
        weight = settings.order_weight
        replicates = [
            scipy_energy(expected_cloud(a, weight, p), expected_cloud(b, weight, p))
            for p in resamples
        ]
    sd = np.std(replicates, ddof=1) * np.sqrt(6 / 5)
    half = 2.570582 * np.sqrt(2) * sd  # Student t, 97.5 %, 5 degrees of freedom
    assert high == pytest.approx(value + half, rel=1e-6)
    assert low == pytest.approx(max(value - half, 0.0), rel=1e-6, abs=1e-12)


def test_identical_networks_have_a_zero_spread():
    a, _ = pair()
    fa = fingerprint(a)
    assert distance_with_spread(fa, fa) == (0.0, (0.0, 0.0))


def test_spread_narrows_with_more_realizations():
    widths = []
    for count in (4, 32):
        a, b = pair(realizations=count)
        settings = DistanceSettings(level="pooled")
        _, (low, high) = distance_with_spread(fingerprint(a, settings), fingerprint(b, settings))
        widths.append(high - low)
    assert widths[1] < widths[0]


def test_mismatched_analyses_are_refused_by_name():
    net = random_mlp([20, 16, 12], seed=1)
    base = analyze(net, realizations=3)
    for option, value in [
        ("ensemble", "COE"),
        ("seed", 1),
        ("realizations", 4),
        ("normalization", "mean"),
        ("canonical", "raw"),
        ("fingerprint", "absolute"),
        ("locations", (1.0, 10.0)),
        ("grid", (1e-3, 1e3, 50)),
    ]:
        other = analyze(net, **{"realizations": 3, option: value})
        with pytest.raises(InputError, match=f"analysed with {option}="):
            check_comparable([base, other])
    check_comparable([base, analyze(net, realizations=3, include="fc0*")])  # loading options


@pytest.mark.parametrize("level", ["layer", "pooled"])
def test_a_summary_gives_the_fingerprint_of_its_analysis(level):
    a, b = pair()
    settings = DistanceSettings(level=level)
    for analysis in (a, b):
        direct, summarised = (
            fingerprint(analysis, settings),
            fingerprint(summarize(analysis), settings),
        )
        for name in ("mean", "resampled", "self_resampled"):
            assert np.array_equal(getattr(direct, name), getattr(summarised, name)), name
        assert direct.self_mean == summarised.self_mean
        assert direct.noise_floor == summarised.noise_floor
    first = [fingerprint(x, settings) for x in (a, b)]
    second = [fingerprint(summarize(x), settings) for x in (a, b)]
    assert distance_with_spread(*first) == distance_with_spread(*second)


def test_the_distance_is_the_energy_distance_bit_for_bit():
    a, b = pair()
    fa, fb = fingerprint(a), fingerprint(b)
    assert distance(fa, fb) == energy_distance(fa.mean, fb.mean)
    assert fa.self_mean == pytest.approx(cdist(fa.mean, fa.mean).mean(), rel=1e-14)


def test_resampled_self_terms_are_mean_point_distances():
    a, _ = pair()
    fa = fingerprint(a)
    expected = [cdist(cloud, cloud).mean() for cloud in fa.resampled]
    np.testing.assert_allclose(fa.self_resampled, expected, rtol=1e-14)
    assert fa.resampled.shape == (32, len(a.layers), len(a.settings.locations) + 1)


def test_one_to_many_equals_pair_by_pair():
    rng = np.random.default_rng(8)
    nets = [random_mlp([30, 24, 18, 12], seed=s) for s in range(3)]
    nets += [{f"w{i}": rng.standard_t(3, (20, 20)) for i in range(5)} for _ in range(3)]
    nets.append(nets[0])
    prints = [fingerprint(analyze(net, realizations=5)) for net in nets]
    together = distances_with_spread(prints[0], prints)
    assert together == [distance_with_spread(prints[0], b) for b in prints]
    assert together[0] == together[-1] == (0.0, (0.0, 0.0))
    for b, (value, spread) in zip(prints, together):
        resampled = [scipy_energy(x, y) for x, y in zip(prints[0].resampled, b.resampled)]
        sd = np.std(resampled, ddof=1) * np.sqrt(5 / 4)
        assert spread[1] == pytest.approx(value + 2.776445 * np.sqrt(2) * sd, rel=1e-6)


@pytest.mark.parametrize("level", ["layer", "pooled"])
def test_fingerprints_together_equal_one_at_a_time(level, monkeypatch):
    import nnequiv.distances

    monkeypatch.setattr(nnequiv.distances, "FINGERPRINT_ELEMENTS", 20000)  # several chunks
    rng = np.random.default_rng(4)
    nets = [random_mlp([30, 24, 18, 12], seed=s) for s in range(4)]
    nets += [{f"w{i}": rng.standard_t(3, (20, 16)) for i in range(5)} for _ in range(3)]
    analyses = [analyze(net, realizations=5) for net in nets]
    settings = DistanceSettings(level=level)
    together = fingerprints(analyses, settings)
    for analysis, got in zip(analyses, together):
        alone = fingerprint(analysis, settings)
        for name in ("mean", "resampled", "self_resampled"):
            assert np.array_equal(getattr(got, name), getattr(alone, name)), name
        assert (got.self_mean, got.noise_floor) == (alone.self_mean, alone.noise_floor)
        assert got.source == alone.source


def test_equal_clouds_give_exact_zeros_in_every_resample():
    net = random_mlp([40, 35, 30, 20], seed=3)
    rng = np.random.default_rng(2)
    shuffled = {
        k: v[rng.permutation(v.shape[0])][:, rng.permutation(v.shape[1])] * 3.0
        if v.ndim == 2
        else v
        for k, v in reversed(net.items())
    }
    for level in ("layer", "pooled"):
        settings = DistanceSettings(level=level)
        first, second = (fingerprint(analyze(x, realizations=6), settings) for x in (net, shuffled))
        assert distance_with_spread(first, second) == (0.0, (0.0, 0.0))


@pytest.mark.parametrize("realizations", [2, 3])
def test_two_realizations_are_enough_for_a_noise_floor(realizations):
    """Halves of one realization each (a third is left out of the split)."""
    a, _ = pair(realizations=realizations)
    pooled = fingerprint(a, DistanceSettings(level="pooled")).noise_floor
    assert pooled == pytest.approx(np.abs(a.csd[0] - a.csd[1]).max() / np.sqrt(2), rel=1e-12)
    weight = DistanceSettings().order_weight
    halves = [expected_cloud(a, weight, slice(k, k + 1)) for k in (0, 1)]
    floor = fingerprint(a).noise_floor
    assert floor == pytest.approx(scipy_energy(*halves) / np.sqrt(2), rel=1e-10) and floor > 0


def test_a_summary_names_its_network_layers_and_realizations():
    a, _ = pair(realizations=5)
    summary = summarize(a)
    assert repr(summary) == f"Summary({a.source!r}, 3 layers, 5 realizations)"
    assert summary.streams.tolist() == [list(layer.stream) for layer in a.layers]
    assert summarize(summary) is summary


# ---- the design distance (method item 15) -------------------------------------------------


def conv_net(width: int, blocks: int, kernel: int = 3, seed: int = 0) -> dict:
    """A CNN between hidden widths (PyTorch layout): an expanding 1x1, ``blocks`` kernel x
    kernel convolutions, a depthwise kernel and a contracting 1x1."""
    rng = np.random.default_rng(seed)
    state = {"expand.weight": rng.standard_normal((2 * width, width, 1, 1))}
    for b in range(blocks):
        state[f"block{b}.weight"] = rng.standard_normal((2 * width, 2 * width, kernel, kernel))
    state["dw.weight"] = rng.standard_normal((2 * width, 1, kernel, kernel))
    state["project.weight"] = rng.standard_normal((width, 2 * width, 1, 1))
    return state


def test_layer_structure_points():
    from nnequiv.layers import layer_structure

    assert layer_structure((64, 32, 3, 3), "oihw") == (np.log(2), np.log(9), 0.0)
    assert layer_structure((3, 3, 32, 64), "hwio") == (np.log(2), np.log(9), 0.0)
    assert layer_structure((64, 3, 3, 32), "ohwi") == (np.log(2), np.log(9), 0.0)
    assert layer_structure((32, 1, 5, 5), "oihw") == (0.0, np.log(25), 1.0)  # depthwise
    assert layer_structure((5, 5, 32, 1), "hwio") == (0.0, np.log(25), 1.0)
    assert layer_structure((10, 40), "oihw") == layer_structure((40, 10), "oihw")
    assert layer_structure((16, 8, 7), "oihw") == (np.log(2), np.log(7), 0.0)  # conv1d


def test_structural_part_ignores_width_multipliers_repeated_blocks_and_layouts():
    from transforms import to_hwio

    from nnequiv.distances import design_prints, structural_distance

    base = conv_net(16, 2)
    variants = {
        "twice as wide": conv_net(32, 2, seed=1),
        "twice the blocks": {
            **conv_net(16, 2, seed=2),
            **{f"{k}.again": v for k, v in conv_net(16, 2, seed=3).items()},
        },  # fmt: skip
        "tensorflow layout": to_hwio(base),
    }
    first = design_prints([analyze(base, realizations=2)])[0]
    for name, state in variants.items():
        other = design_prints([analyze(state, realizations=2)])[0]
        assert structural_distance(first, other) == pytest.approx(0.0, abs=1e-12), name
    five = design_prints([analyze(conv_net(16, 2, kernel=5), realizations=2)])[0]
    assert structural_distance(first, five) > 0.3  # 5x5 kernels are another design


def test_design_distance_is_the_hypotenuse_of_its_parts_with_a_spread():
    from nnequiv.distances import (
        SPECTRAL_PART,
        design_distances_with_spread,
        design_prints,
        structural_distance,
    )

    a, b = pair(realizations=6)
    first, second = design_prints([a, b])
    ((value, (low, high), (spectral, structural)),) = design_distances_with_spread(
        first, [second], 0.5
    )
    assert spectral == distance(fingerprint(a, SPECTRAL_PART), fingerprint(b, SPECTRAL_PART))
    assert structural == 0.5 * structural_distance(first, second) > 0
    assert value == pytest.approx(np.hypot(spectral, structural), rel=1e-15)
    assert low < value < high
    (none,) = design_distances_with_spread(first, [second], 0.0)
    assert none[0] == spectral and none[2][1] == 0.0  # the weight is used
    # the spectral part has no order coordinate: the order weight does not enter it
    assert SPECTRAL_PART.order_weight == 0.0


def test_a_summary_without_layer_shapes_is_refused_for_the_design_distance():
    from dataclasses import replace

    from nnequiv.distances import design_prints

    a, _ = pair(realizations=3)
    with pytest.raises(InputError, match="rebuild it"):
        design_prints([replace(summarize(a), structure=None)])


@pytest.mark.parametrize("group_distances", [1, 4096, 10**9])
def test_clouds_compared_in_groups_get_the_bits_of_one_pair_at_a_time(group_distances):
    """Small clouds share kernel calls (stacked, diagonal blocks kept); every mean is the one
    of its pair alone, and equals cdist's."""
    import nnequiv.distances
    from nnequiv.distances import _mean_pair_distance

    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((3, 7, 4, 10)), rng.standard_normal((3, 7, 5, 10))
    saved = nnequiv.distances.GROUP_DISTANCES
    nnequiv.distances.GROUP_DISTANCES = group_distances
    try:
        together = _mean_pair_distance(x, y)
        broadcast = _mean_pair_distance(x[:1], y)
    finally:
        nnequiv.distances.GROUP_DISTANCES = saved
    alone = np.array([[_mean_pair_distance(a, b) for a, b in zip(p, q)] for p, q in zip(x, y)])
    assert np.array_equal(together, alone)
    assert np.array_equal(broadcast[0], alone[0]) and broadcast.shape == (3, 7)
    assert together[1, 2] == np.add.reduce(cdist(x[1, 2], y[1, 2]).ravel()) / 20
    assert np.array_equal(_mean_pair_distance(x, x), _mean_pair_distance(x, x.copy()))


def test_mean_pair_distance_broadcasts_one_cloud_against_many():
    from nnequiv.distances import _mean_pair_distance

    rng = np.random.default_rng(0)
    one, many = rng.standard_normal((5, 3)), rng.standard_normal((4, 6, 3))
    got = _mean_pair_distance(one, many)
    assert got.shape == (4,)
    for k in range(4):
        assert got[k] == _mean_pair_distance(one, many[k])  # the same bits as one pair
