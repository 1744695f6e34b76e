"""Explaining a verdict: the per-layer split of the squared energy distance is exact."""

import numpy as np
import pytest

from nnequiv import analyze
from nnequiv.distances import distance, fingerprint
from nnequiv.explain import explain
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
