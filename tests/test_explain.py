"""Explaining a verdict: the per-layer split of the squared energy distance is exact."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from nnequiv import analyze
from nnequiv.distances import distance, fingerprint
from nnequiv.explain import Explanation, LayerContribution, explain
from nnequiv.settings import DistanceSettings


def test_layer_shares_add_up_to_the_squared_distance():
    rng = np.random.default_rng(3)
    a = analyze({f"w{i}": rng.standard_t(2.5, (80, 60)) for i in range(3)}, realizations=4)
    b = analyze({f"d{i}": rng.standard_normal((20, 20)) for i in range(5)}, realizations=4)
    for weight in (0.0, 0.1, 1.0):
        settings = DistanceSettings(order_weight=weight)
        everything = explain(a, b, settings, top=10).contributions
        assert len(everything) == 8
        assert sum(c.share for c in everything) == pytest.approx(1.0, abs=1e-12)
        assert distance(fingerprint(a, settings), fingerprint(b, settings)) > 0
        top = {c.network: c.layer for c in explain(a, b, settings, top=1).contributions}
        for side in ("a", "b"):  # one per network: its largest share
            mine = [c for c in everything if c.network == side]
            assert top[side] == max(mine, key=lambda c: c.share).layer
    sentence = everything[0].sentence()
    assert everything[0].layer in sentence and "of d^2" in sentence


def clouds(analysis, weight):
    """The layer cloud of an analysis in file order (method item 10)."""
    points = analysis.layer_points.mean(axis=0)
    return np.hstack([points, weight * np.log(analysis.orders)[:, None]])


@pytest.fixture(scope="module")
def two_networks():
    rng = np.random.default_rng(5)
    a = analyze({f"w{i}": rng.standard_t(2.5, (60, 40 + 10 * i)) for i in range(3)}, realizations=4)
    b = analyze({f"d{i}": rng.standard_normal((24, 30)) for i in range(4)}, realizations=4)
    return a, b


@pytest.fixture(scope="module")
def one_order():
    """Two networks whose layers all have order 40: they differ in tail masses alone."""
    rng = np.random.default_rng(6)
    a = analyze({f"w{i}": rng.standard_t(2.5, (40, 50)) for i in range(3)}, realizations=4)
    b = analyze({f"d{i}": rng.standard_normal((40, 40)) for i in range(2)}, realizations=4)
    return a, b


@pytest.mark.parametrize(
    "networks,weight",
    [("two_networks", 0.5), ("two_networks", 2.0), ("one_order", 2.0)],
)
def test_each_share_is_its_term_of_the_squared_energy_distance(request, networks, weight):
    """a_i = (mean_j |x_i - y_j| - mean_k |x_i - x_k|) / L_A (and the same for B), as a fraction
    of d^2; the coordinate, its values and the nearest layer are read as documented."""
    a, b = request.getfixturevalue(networks)
    settings = DistanceSettings(order_weight=weight)
    squared = distance(fingerprint(a, settings), fingerprint(b, settings)) ** 2
    x, y = clouds(a, weight), clouds(b, weight)
    terms = {
        "a": (cdist(x, y).mean(axis=1) - cdist(x, x).mean(axis=1)) / len(x),
        "b": (cdist(x, y).mean(axis=0) - cdist(y, y).mean(axis=1)) / len(y),
    }
    assert terms["a"].sum() + terms["b"].sum() == pytest.approx(squared, rel=1e-9)
    names = {"a": [layer.name for layer in a.layers], "b": [layer.name for layer in b.layers]}
    labels = [f"S(x={x:.3g})" for x in a.settings.locations] + ["log n"]
    found = explain(a, b, settings, top=10).contributions
    assert [c.share for c in found] == sorted((c.share for c in found), reverse=True)
    for c in found:
        side, other = (x, y) if c.network == "a" else (y, x)
        i = names[c.network].index(c.layer)
        assert c.share == pytest.approx(terms[c.network][i] / squared, rel=1e-9, abs=1e-12)
        typical = np.median(other, axis=0)
        k = int(np.argmax(np.abs(side[i] - typical)))
        unit = weight if k == len(labels) - 1 else 1.0
        assert c.coordinate == labels[k]
        assert c.value == pytest.approx(side[i, k] / unit) and c.other == pytest.approx(
            typical[k] / unit
        )
        nearest = int(np.argmin(cdist(side[i : i + 1], other)))
        assert c.nearest == names["b" if c.network == "a" else "a"][nearest]
    if networks == "one_order":  # equal orders: the layers differ in their tail masses
        assert {c.coordinate for c in found} <= set(labels[:-1])
    assert explain(a, b) == explain(a, b, DistanceSettings())


def test_any_positive_distance_is_explained():
    rng = np.random.default_rng(2)
    a = analyze({f"w{i}": rng.standard_t(3, (40, 40)) for i in range(3)}, realizations=4)
    b = analyze({f"w{i}": rng.standard_normal((40, 40)) for i in range(3)}, realizations=4)
    settings = DistanceSettings(order_weight=0.0)
    d = distance(fingerprint(a, settings), fingerprint(b, settings))
    assert 0 < d < 0.5
    assert len(explain(a, b, settings, top=1).contributions) == 2


def test_sentences_name_the_coordinate_and_its_values():
    order = LayerContribution(
        network="a",
        layer="fc1",
        share=0.25,
        coordinate="log n",
        value=np.log(64),
        other=np.log(24),
        nearest="d3",
    )
    assert order.sentence() == (
        "fc1 (25% of d^2): order n = 64, the other network's layers 24 (median); nearest there: d3"
    )
    tail = LayerContribution(
        network="b",
        layer="d3",
        share=0.5,
        coordinate="S(x=0.316)",
        value=0.125,
        other=-0.05,
        nearest="fc1",
    )
    assert tail.sentence() == (
        "d3 (50% of d^2): tail mass beyond x = 0.316 minus its conjugate's +0.125, the other "
        "network's layers -0.050 (median); nearest there: fc1"
    )
    nearer = LayerContribution(
        network="b",
        layer="d4",
        share=-0.48,
        coordinate="log n",
        value=np.log(24),
        other=np.log(24),
        nearest="fc1",
    )
    assert nearer.sentence().startswith("d4 (-48% of d^2, brings the networks closer): ")
    layered = Explanation(level="layer", contributions=(order, tail))
    assert layered.lines() == [f"a: {order.sentence()}", f"b: {tail.sentence()}"]
    assert layered.to_dict() == {"level": "layer", "layers": [order.to_dict(), tail.to_dict()]}
    pooled = Explanation(level="pooled", location=3.16, csd_a=0.5, csd_b=0.25)
    assert pooled.lines() == ["largest CSD difference at x = 3.16: 0.5000 against 0.2500"]
    assert pooled.to_dict() == {"level": "pooled", "location": 3.16, "csd": [0.5, 0.25]}


def test_the_pooled_explanation_is_where_the_mean_curves_differ_most(two_networks):
    a, b = two_networks
    found = explain(a, b, DistanceSettings(level="pooled"))
    gap = np.abs(a.csd_mean - b.csd_mean)
    k = int(np.argmax(gap))
    assert (found.location, found.csd_a, found.csd_b) == (a.edges[k], a.csd_mean[k], b.csd_mean[k])
    assert abs(found.csd_a - found.csd_b) == gap.max() > 0
