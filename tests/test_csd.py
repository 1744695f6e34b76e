"""Densities, CSD and decay rate against cases with known answers."""

import numpy as np
import pytest

from nnequiv.csd import (
    csd_curve,
    decay_rate,
    layer_csd_points,
    log_grid,
    spectral_density,
    survival_difference,
)
from nnequiv.ensembles import conjugate_ensemble


def test_grid_and_density():
    edges = log_grid()
    assert edges.size == 241 and edges[0] == pytest.approx(1e-6) and edges[-1] == pytest.approx(1e6)
    p = spectral_density(np.array([1e-9, 1.0, 1.0, 1e9]), edges)
    assert p.sum() == pytest.approx(1.0) and p[0] == 0.25 and p[-1] == 0.25
    with pytest.raises(ValueError):
        log_grid(1.0, 0.5, 10)


def test_csd_vanishes_at_the_tail_and_sums_total_variation():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(20)), rng.dirichlet(np.ones(20))
    curve = csd_curve(p, q)
    assert curve[0] == pytest.approx(np.abs(p - q).sum())
    assert curve[-1] == pytest.approx(abs(p[-1] - q[-1]))
    assert np.all(np.diff(curve) <= 1e-15)
    signed = survival_difference(p, q)
    assert signed[0] == pytest.approx(0.0, abs=1e-12) and np.all(np.abs(signed) <= curve + 1e-15)


def test_decay_rate_recovers_a_power_law():
    edges = log_grid(1e-2, 1e4, 120)
    x = edges[:-1]
    csd = 0.3 * x**-1.7
    csd[x > 1e3] = 0.0
    fit = decay_rate(edges, csd, x_start=1.0)
    assert fit.alpha == pytest.approx(1.7, rel=1e-10) and fit.r2 == pytest.approx(1.0)
    assert fit.stderr < 1e-10 and fit.x_end <= 1e3 * (1 + 1e-12)
    assert np.isnan(decay_rate(edges, np.zeros_like(csd), 1.0).alpha)


def test_network_of_circular_spectra_has_small_csd():
    """A 'network' whose layers are themselves circular spectra is close to its conjugate."""
    edges = log_grid()
    orders = [200, 150, 300]
    mine = [x[0] for x in conjugate_ensemble(orders, "CUE", 1, seed=99)]
    conj = conjugate_ensemble(orders, "CUE", 5, seed=1)
    for values, conjugate in zip(mine, conj):
        points = layer_csd_points(values, conjugate, edges, signed=True)
        assert np.abs(points).max() < 0.15
    # and a spectrum far from half-Cauchy is not
    far = layer_csd_points(np.full(200, 50.0), conj[0], edges, signed=True)
    assert np.abs(far).max() > 0.9
