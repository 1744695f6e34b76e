"""Circular ensembles against random matrix theory, at fixed seeds or a sweep of seeds
(``NNEQUIV_TEST_SEEDS``; tests able to fail, at a per-check alpha set in _helpers.py)."""

import numpy as np
import pytest
from _helpers import ALPHA
from scipy import special, stats

from nnequiv.ensembles import (
    _eigenphases_of_verblunsky,
    cayley_from_cosines,
    cayley_spectrum,
    circular_eigenphases,
    circular_matrices,
    cmv_matrix,
    conjugate_ensemble,
    ensemble_beta,
    half_cauchy_cdf,
    verblunsky_coefficients,
)

KINDS = ["COE", "CUE", "CSE"]
P_MIN = ALPHA  # reject a law only when p < ALPHA (about 2e-5; _helpers.py says why)


def unfolded_spacings(phases: np.ndarray) -> np.ndarray:
    """Nearest-neighbour spacings around the circle, unfolded to mean 1 (n / 2 pi)."""
    phases = np.sort(phases, axis=-1)
    n = phases.shape[-1]
    gaps = np.diff(np.concatenate([phases, phases[..., :1] + 2 * np.pi], axis=-1), axis=-1)
    return (gaps * n / (2 * np.pi)).ravel()


def wigner_cdf(beta: float):
    """CDF of the Wigner surmise a s^beta exp(-b s^2), beta = 1, 2, 4."""
    b = {1: np.pi / 4, 2: 4 / np.pi, 4: 64 / (9 * np.pi)}[beta]
    return lambda s: special.gammainc((beta + 1) / 2, b * np.asarray(s) ** 2)


def matrix_phases(kind, n, size, seed):
    mats = circular_matrices(kind, n, size, seed=seed)
    phases = np.sort(np.angle(np.linalg.eigvals(mats)), axis=-1)
    if kind == "CSE":
        phases = phases[:, ::2]  # one phase of each Kramers pair
    return phases


@pytest.mark.parametrize("kind", KINDS)
def test_circular_matrices_are_unitary(kind):
    mats = circular_matrices(kind, 12, 5, seed=1)
    order = 24 if kind == "CSE" else 12
    assert mats.shape == (5, order, order) and mats.dtype == complex
    eye = np.eye(order)
    for u in mats:
        assert np.abs(u @ u.conj().T - eye).max() < 1e-10


def test_coe_is_symmetric_and_cse_self_dual_with_kramers_pairs():
    coe = circular_matrices("COE", 10, 4, seed=2)
    assert np.abs(coe - np.swapaxes(coe, 1, 2)).max() < 1e-12
    n = 8
    cse = circular_matrices("CSE", n, 4, seed=3)
    zero, eye = np.zeros((n, n)), np.eye(n)
    j = np.block([[zero, eye], [-eye, zero]])
    for u in cse:
        assert np.abs(j @ u.T @ j.T - u).max() < 1e-12  # self-dual: U^R = U
        phases = np.sort(np.angle(np.linalg.eigvals(u)))
        assert np.abs(phases[::2] - phases[1::2]).max() < 1e-7  # degenerate pairs


def test_cmv_matrix_is_unitary_and_five_diagonal():
    rng = np.random.default_rng(4)
    for n in [1, 2, 3, 8, 33]:
        c = cmv_matrix(verblunsky_coefficients(n, 2.0, rng))
        assert np.abs(c @ c.conj().T - np.eye(n)).max() < 1e-12
        rows, cols = np.nonzero(np.abs(c) > 0)
        assert np.all(np.abs(rows - cols) <= 2)


@pytest.mark.fixed_seed(5)
@pytest.mark.parametrize("kind", KINDS)
def test_eigenphase_density_is_uniform(kind, seed):
    for phases in (
        circular_eigenphases(kind, 40, 50, seed=seed),
        matrix_phases(kind, 20, 40, seed + 1),
    ):
        assert stats.kstest(phases.ravel(), stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > P_MIN


@pytest.mark.fixed_seed(7)
@pytest.mark.parametrize("kind,beta", [("COE", 1), ("CUE", 2), ("CSE", 4)])
def test_spacings_follow_wigner_surmise(kind, beta, seed):
    spacings = unfolded_spacings(circular_eigenphases(kind, 64, 40, seed=seed))
    assert stats.kstest(spacings, wigner_cdf(beta)).pvalue > P_MIN
    # the test has power: the other surmises are rejected on the same data
    for other in {1, 2, 4} - {beta}:
        assert stats.kstest(spacings, wigner_cdf(other)).pvalue < P_MIN


@pytest.mark.fixed_seed(8)
@pytest.mark.parametrize("kind,beta", [("COE", 1), ("CUE", 2), ("CSE", 4)])
def test_dense_spacings_follow_wigner_surmise(kind, beta, seed):
    spacings = unfolded_spacings(matrix_phases(kind, 32, 40, seed=seed))
    assert stats.kstest(spacings, wigner_cdf(beta)).pvalue > P_MIN


def pair_separation_counts(phases, edges):
    n = phases.shape[-1]
    diff = np.abs(phases[:, :, None] - phases[:, None, :])
    diff = np.minimum(diff, 2 * np.pi - diff) * n / (2 * np.pi)
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)  # each unordered pair once
    return np.histogram(diff[:, upper], bins=edges)[0]


@pytest.mark.fixed_seed(9)
def test_cue_two_point_correlation(seed):
    n, size = 60, 60
    edges = np.linspace(0.0, 3.0, 16)
    s = np.linspace(edges[0], edges[-1], 3001)

    def expected(r2):
        dens = r2(s)
        cum = np.concatenate([[0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(s))])
        return size * n * np.diff(np.interp(edges, s, cum))

    def sinc_kernel(x):
        # 1 - (sin(pi s) / (pi s))^2 at order n: sin(pi s) / (n sin(pi s / n)) -> sinc(s)
        return 1 - (np.sinc(x) / np.sinc(x / n)) ** 2  # numpy sinc(x) = sin(pi x) / (pi x)

    for phases in (
        circular_eigenphases("CUE", n, size, seed=seed),
        matrix_phases("CUE", n, size, seed + 1),
    ):
        counts = pair_separation_counts(phases, edges)
        chi2 = np.sum((counts - expected(sinc_kernel)) ** 2 / expected(sinc_kernel))
        assert stats.chi2.sf(chi2, len(counts)) > P_MIN
        poisson = expected(lambda x: np.ones_like(x))  # uncorrelated levels must be rejected
        assert stats.chi2.sf(np.sum((counts - poisson) ** 2 / poisson), len(counts)) < P_MIN


@pytest.mark.parametrize(
    "kind,beta", [("COE", None), ("CUE", None), ("CSE", None), (None, 0.5), (None, 3.0)]
)
@pytest.mark.fixed_seed(11)
def test_cayley_variable_is_half_cauchy(kind, beta, seed):
    x = cayley_spectrum(kind, 50, 40, seed=seed, beta=beta)
    assert x.shape == (40, 50) and np.all(np.diff(x, axis=1) >= 0)
    assert stats.kstest(x.ravel(), half_cauchy_cdf).pvalue > P_MIN
    assert stats.kstest(x.ravel(), stats.expon().cdf).pvalue < P_MIN


@pytest.mark.fixed_seed(12)
@pytest.mark.parametrize("kind", KINDS)
def test_cmv_phases_have_the_law_of_haar_matrices(kind, seed):
    cmv = circular_eigenphases(kind, 24, 60, seed=seed)
    dense = matrix_phases(kind, 24, 60, seed + 1)
    assert stats.ks_2samp(cmv.ravel(), dense.ravel()).pvalue > P_MIN
    assert stats.ks_2samp(unfolded_spacings(cmv), unfolded_spacings(dense)).pvalue > P_MIN


@pytest.mark.parametrize("kind", KINDS)
def test_banded_cayley_matches_dense_path(kind):
    for n in [1, 2, 5, 64, 200]:
        x = cayley_spectrum(kind, n, 3, seed=14)
        phases = circular_eigenphases(kind, n, 3, seed=14)  # same streams, same alpha
        dense_x = np.sort(np.abs(np.tan(phases / 2)), axis=1)
        # compared in the well-conditioned angle |theta| = 2 arctan x
        # compared in cos(theta) = (1 - x^2) / (1 + x^2), what the banded solver determines
        assert np.abs((1 - x**2) / (1 + x**2) - (1 - dense_x**2) / (1 + dense_x**2)).max() < 1e-12
        assert np.allclose(x, dense_x, rtol=1e-8, atol=0)


def test_cayley_from_cosines_edge_values():
    x = cayley_from_cosines(np.array([1.0, 0.0, -1.0, 1.5]))
    assert x[0] == 0.0 and x[1] == pytest.approx(1.0) and np.isfinite(x[2]) and x[3] == 0.0


@pytest.mark.parametrize("func", [cayley_spectrum, circular_eigenphases])
def test_same_seed_same_bits_serial_equals_parallel(func):
    a = func("CUE", 30, 6, seed=15)
    assert a.tobytes() == func("CUE", 30, 6, seed=15).tobytes()
    assert a.tobytes() == func("CUE", 30, 6, seed=15, n_jobs=2).tobytes()
    assert a.tobytes() != func("CUE", 30, 6, seed=16).tobytes()
    # realization i has its own stream (child i of the seed): a shorter run is a prefix
    assert a[:4].tobytes() == func("CUE", 30, 4, seed=15).tobytes()


def test_matrices_reproducible_and_generator_seeds():
    a = circular_matrices("COE", 6, 4, seed=17)
    assert a.tobytes() == circular_matrices("COE", 6, 4, seed=17, n_jobs=2).tobytes()
    gen = np.random.default_rng(18)
    first, second = cayley_spectrum("CUE", 5, 2, seed=gen), cayley_spectrum("CUE", 5, 2, seed=gen)
    assert first.tobytes() != second.tobytes()
    again = np.random.default_rng(18)
    assert cayley_spectrum("CUE", 5, 2, seed=again).tobytes() == first.tobytes()


def test_zero_realizations_and_bad_arguments():
    assert cayley_spectrum("CUE", 4, 0, seed=0).shape == (0, 4)
    assert circular_matrices("CSE", 3, 0, seed=0).shape == (0, 6, 6)
    with pytest.raises(ValueError, match="unknown circular ensemble"):
        cayley_spectrum("GUE", 4, 1)
    with pytest.raises(ValueError, match="n must be"):
        circular_eigenphases("CUE", 0, 1)
    with pytest.raises(ValueError, match="realizations"):
        circular_matrices("CUE", 3, -1)
    with pytest.raises(ValueError, match="beta"):
        cayley_spectrum(None, 3, 1, beta=0.0)
    with pytest.raises(ValueError, match="beta"):
        cayley_spectrum("COE", 3, 1, beta=2.0)
    with pytest.raises(ValueError):
        ensemble_beta(None)
    with pytest.raises(TypeError):  # beta is keyword-only, as in circular_eigenphases
        cayley_spectrum(None, 3, 1, 0, 2.0)


@pytest.mark.fixed_seed(5)
def test_conjugate_ensemble_is_half_cauchy_keyed_and_parallel_safe(seed):
    conj = conjugate_ensemble([40, 60], "COE", 3, seed=seed)
    assert [layer.shape for layer in conj] == [(3, 40), (3, 60)]
    pooled = np.concatenate([layer.ravel() for layer in conj])
    assert stats.kstest(pooled, half_cauchy_cdf).pvalue > P_MIN
    again = conjugate_ensemble([40, 99], "COE", 3, seed=seed)  # layer 0 does not depend on layer 1
    assert again[0].tobytes() == conj[0].tobytes()
    parallel = conjugate_ensemble([40, 60], "COE", 3, seed=seed, n_jobs=2)
    assert all(p.tobytes() == s.tobytes() for p, s in zip(parallel, conj))
    with pytest.raises(ValueError, match="fixed seed"):
        conjugate_ensemble([4], "CUE", 1, seed=None)


def circle_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Largest distance on the unit circle from a phase in ``a`` to the nearest in ``b``,
    both ways (equal multisets give 0 whatever the branch of -pi / pi)."""
    apart = np.abs(np.exp(1j * a)[:, None] - np.exp(1j * b)[None, :])
    return max(apart.min(axis=1).max(), apart.min(axis=0).max())


@pytest.mark.parametrize("n", [2, 3, 8, 51])
def test_eigenphases_match_dense_cmv_eigenvalues(n):
    rng = np.random.default_rng(n)
    for beta in (1.0, 2.0, 4.0):
        alpha = verblunsky_coefficients(n, beta, rng)
        dense = np.angle(np.linalg.eigvals(cmv_matrix(alpha)))
        assert circle_gap(_eigenphases_of_verblunsky(alpha), dense) < 1e-12


def test_eigenphases_resolve_exactly_degenerate_cosines():
    """Real Verblunsky coefficients give a spectrum symmetric under conjugation, so every
    cosine is doubly degenerate: the phases must still come out right, not averaged."""
    rng = np.random.default_rng(3)
    for n in (5, 40):
        alpha = np.append(rng.uniform(-0.9, 0.9, n - 1), 1.0).astype(complex)
        dense = np.angle(np.linalg.eigvals(cmv_matrix(alpha)))
        mine = _eigenphases_of_verblunsky(alpha)
        assert circle_gap(mine, -mine) < 1e-10  # symmetric under conjugation
        assert circle_gap(mine, dense) < 1e-10
