"""Densities, CSD and decay rate against cases with known answers."""

import numpy as np
import pytest
from scipy.stats import linregress
from scipy.stats import t as t_distribution

from nnequiv.csd import (
    bin_counts,
    bootstrap_indices,
    csd_curve,
    csd_from_counts,
    decay_rate,
    decay_with_interval,
    layer_csd_curves,
    layer_csd_points,
    log_grid,
    replicate_interval,
    sample_curves,
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


@pytest.mark.fixed_seed(1)
def test_network_of_circular_spectra_has_small_csd(seed):
    """A 'network' whose layers are themselves circular spectra is close to its conjugate."""
    edges = log_grid()
    orders = [200, 150, 300]
    mine = [x[0] for x in conjugate_ensemble(orders, "CUE", 1, seed=seed + 98)]
    conj = conjugate_ensemble(orders, "CUE", 5, seed=seed)
    for values, conjugate in zip(mine, conj):
        points = layer_csd_points(values, conjugate, edges, signed=True)
        assert np.abs(points).max() < 0.15
    # and a spectrum far from half-Cauchy is not
    far = layer_csd_points(np.full(200, 50.0), conj[0], edges, signed=True)
    assert np.abs(far).max() > 0.9


def test_grid_needs_one_bin_at_least():
    assert np.array_equal(log_grid(1.0, 100.0, 1), [1.0, 100.0])
    assert log_grid(1e-3, 1e3, 6) == pytest.approx(np.logspace(-3, 3, 7), rel=1e-14)
    with pytest.raises(ValueError, match="bins >= 1"):
        log_grid(1.0, 100.0, 0)


def test_values_on_and_beyond_the_edges_are_binned_by_the_rule():
    """Bin j holds [e_j, e_{j+1}); values below e_0 or at and above e_B are counted in the
    first or last bin (method item 6)."""
    edges = log_grid(1.0, 1000.0, 3)  # 1, 10, 100, 1000
    values = [0.5, 1.0, 9.99, 10.0, 99.0, 100.0, 1000.0, 5000.0]
    assert bin_counts(values, edges).tolist() == [3, 2, 3]
    assert spectral_density(values, edges).tolist() == [3 / 8, 2 / 8, 3 / 8]
    assert spectral_density([42.0], edges).tolist() == [0.0, 1.0, 0.0]
    assert spectral_density([], edges).tolist() == [0.0, 0.0, 0.0]


def test_curves_from_counts_equal_the_curves_of_the_densities():
    """csd_from_counts is csd_curve (and, signed, survival_difference) of the two densities,
    for one pair and batched over rows, with histograms of different sizes."""
    rng = np.random.default_rng(7)
    own = rng.integers(0, 9, 30)
    others = rng.integers(0, 5, (4, 30))
    for signed, formula in [(False, csd_curve), (True, survival_difference)]:
        got = csd_from_counts(own, others, signed)
        assert got.shape == (4, 30)
        for row, counts in zip(got, others):
            expected = formula(own / own.sum(), counts / counts.sum())
            np.testing.assert_allclose(row, expected, rtol=1e-12, atol=1e-15)
        # the other way round: the CSD is symmetric, the signed curve changes its sign
        back = csd_from_counts(others, own, signed)
        np.testing.assert_allclose(back, got if not signed else -got, rtol=1e-12, atol=1e-15)


def test_layer_curves_default_to_the_absolute_csd():
    edges = log_grid(1e-2, 1e2, 40)
    rng = np.random.default_rng(3)
    spectrum, conjugates = rng.lognormal(0, 1, 50), rng.lognormal(0.3, 1.5, (3, 50))
    curves = layer_csd_curves(spectrum, conjugates, edges)
    points = layer_csd_points(spectrum, conjugates, edges, locations=(0.1, 1.0))
    own = spectral_density(spectrum, edges)
    for row, x, p in zip(curves, conjugates, points):
        np.testing.assert_allclose(row, csd_curve(own, spectral_density(x, edges)), atol=1e-15)
        assert p.tolist() == [row[10], row[20]]  # 0.1 = e_10 and 1 = e_20 exactly


def test_curves_are_sampled_at_the_first_bin_at_or_above_each_location():
    edges = log_grid(1.0, 1000.0, 3)  # 1, 10, 100, 1000
    curves = np.array([[10.0, 20.0, 30.0], [1.0, 2.0, 3.0]])
    locations = [1e-3, 1.0, 5.0, 10.0, 99.0, 100.0, 1e3, 1e9]
    assert sample_curves(curves, edges, locations)[0].tolist() == [
        10.0, 10.0, 20.0, 20.0, 30.0, 30.0, 30.0, 30.0,
    ]  # fmt: skip
    assert sample_curves(curves, edges, [5.0])[:, 0].tolist() == [20.0, 2.0]


def fitted_line(x, y):
    """Slope, intercept, R^2 and the slope's standard error of an ordinary least-squares line
    (scipy.stats.linregress: m - 2 degrees of freedom)."""
    fit = linregress(x, y)
    return fit.slope, fit.intercept, fit.rvalue**2, fit.stderr


@pytest.mark.parametrize("points", [3, 4, 11, 20])
def test_decay_fit_is_the_least_squares_line_with_its_standard_error(points):
    """Method item 8: alpha = -slope of log CSD against log x from x_start to the last non-zero
    bin, with R^2 and the fit standard error sqrt(sum res^2 / (m - 2) / sum (log x - mean)^2)."""
    edges = log_grid(1e-2, 1e2, 40)
    x = edges[:-1]
    rng = np.random.default_rng(points)
    start = 20  # x_start = 1.0 = e_20 exactly: that bin is in the fit
    csd = np.zeros(40)
    csd[: start + points] = (
        0.2 * x[: start + points] ** -1.3 * rng.lognormal(0, 0.3, start + points)
    )
    fit = decay_rate(edges, csd, x_start=x[start])
    slope, intercept, r2, stderr = fitted_line(np.log(x[start : start + points]),
                                               np.log(csd[start : start + points]))  # fmt: skip
    assert fit.n_points == points
    assert fit.alpha == pytest.approx(-slope, rel=1e-9)
    assert fit.intercept == pytest.approx(intercept, rel=1e-9)
    assert fit.r2 == pytest.approx(r2, rel=1e-9)
    assert fit.stderr == pytest.approx(stderr, rel=1e-9) and fit.stderr > 1e-3
    assert fit.x_start == x[start] and fit.x_end == x[start + points - 1]
    # x_start between two edges: the fit starts at the next edge
    later = decay_rate(edges, csd, x_start=x[start] * 1.01)
    assert later.n_points == points - 1 or (points == 3 and np.isnan(later.alpha))


def test_decay_fit_needs_three_points_and_skips_empty_bins():
    edges = log_grid(1e-2, 1e2, 40)
    x = edges[:-1]
    csd = np.zeros(40)
    csd[20:22] = [0.5, 0.1]
    two = decay_rate(edges, csd, x_start=x[20])
    assert two.n_points == 2 and np.isnan(two.alpha) and np.isnan(two.stderr)
    csd[25] = 0.01  # bins 22-24 are empty: left out, and bin 25 ends the fit
    three = decay_rate(edges, csd, x_start=x[20])
    assert three.n_points == 3 and three.x_end == x[25]
    slope = fitted_line(np.log(x[[20, 21, 25]]), np.log([0.5, 0.1, 0.01]))[0]
    assert three.alpha == pytest.approx(-slope, rel=1e-9)


def test_a_flat_tail_is_a_perfect_fit_of_zero_decay():
    edges = log_grid(1e-2, 1e2, 40)
    fit = decay_rate(edges, np.full(40, 0.25), x_start=1.0)
    assert fit.alpha == pytest.approx(0.0, abs=1e-12) and fit.r2 == 1.0
    assert fit.intercept == pytest.approx(np.log(0.25))


def test_replicate_interval_is_t_times_sqrt2_times_the_corrected_sd():
    """s = sd(replicates) sqrt(R / (R - 1)); estimate +- t_{0.975, R-1} sqrt(2) s (items 8, 11);
    two replicates and two realizations are enough."""
    replicates = np.array([0.9, 1.3, 1.0, 1.2])
    for realizations in (2, 3, 10):
        (low, high), sd = replicate_interval(1.1, replicates, realizations)
        expected_sd = np.std(replicates, ddof=1) * np.sqrt(realizations / (realizations - 1))
        half = t_distribution.ppf(0.975, realizations - 1) * np.sqrt(2) * expected_sd
        assert sd == pytest.approx(expected_sd, rel=1e-12)
        assert (low, high) == pytest.approx((1.1 - half, 1.1 + half), rel=1e-12)
    (low, high), _ = replicate_interval(1.1, replicates, 5, level=0.5)
    half = t_distribution.ppf(0.75, 4) * np.sqrt(2) * np.std(replicates, ddof=1) * np.sqrt(5 / 4)
    assert high - 1.1 == pytest.approx(half, rel=1e-12)
    (low, high), sd = replicate_interval(1.1, replicates[:2], 4)
    assert np.isfinite(sd) and low < 1.1 < high
    for few in [replicate_interval(1.1, replicates, 1), replicate_interval(1.1, [1.0], 4)]:
        assert np.isnan(few[1]) and np.isnan(few[0][0]) and np.isnan(few[0][1])


def test_decay_interval_from_two_realizations_and_none_from_one():
    edges = log_grid(1e-2, 1e2, 40)
    x = edges[:-1]
    rng = np.random.default_rng(1)
    curves = 0.2 * x**-1.1 * rng.lognormal(0, 0.2, (2, 40))
    resamples = bootstrap_indices(0, 2)
    fit = decay_with_interval(edges, curves, 1.0, resamples)
    assert fit.alpha == decay_rate(edges, curves.mean(axis=0), 1.0).alpha
    replicates = [decay_rate(edges, curves[p].mean(axis=0), 1.0).alpha for p in resamples]
    (low, high), sd = replicate_interval(fit.alpha, np.array(replicates), 2)
    assert fit.interval == (low, high) and fit.realisation_sd == sd and low < high
    single = decay_with_interval(edges, curves[:1], 1.0, bootstrap_indices(0, 1))
    assert np.isfinite(single.alpha) and np.isnan(single.realisation_sd)


def test_bootstrap_resamples_draw_every_realization_with_replacement():
    picks = bootstrap_indices(5, 4)
    assert picks.shape == (32, 4) and set(picks.ravel()) == {0, 1, 2, 3}
    assert any(len(set(row)) < 4 for row in picks)  # with replacement
    assert np.array_equal(picks, bootstrap_indices(5, 4))
    assert not np.array_equal(picks, bootstrap_indices(6, 4))
