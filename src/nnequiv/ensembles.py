"""Dyson's circular ensembles (COE, CUE, CSE) and Killip-Nenciu beta-circular ensembles.

Two routes, with the same eigenvalue law:

* :func:`circular_matrices` draws exact Haar matrices (Mezzadri's QR recipe for CUE, then
  ``U^T U`` for COE and the quaternion dual product ``U^R U`` for CSE).
* :func:`circular_eigenphases` and :func:`cayley_spectrum` draw the eigenvalues directly from
  the five-diagonal CMV matrix of Killip and Nenciu (2004), whose eigenvalues follow the
  C-beta-E law exactly at every order ``n`` and every ``beta > 0``, through real symmetric
  banded eigenproblems (docs/method.md, items 4 and 5).

:func:`cayley_spectrum` returns ``x = |tan(theta / 2)|`` (docs/method.md, item 5), which depends
on ``cos(theta)`` alone: the eigenvalues of the Hermitian part of the CMV matrix, which after a
unitary similarity is a real symmetric seven-diagonal matrix, found by a banded eigensolver in
O(n^2).

Every function takes ``seed`` (int, ``numpy.random.SeedSequence``, ``numpy.random.Generator``
or None). Each realization has its own child stream, so results do not depend on ``n_jobs``.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from scipy.linalg import lapack

from nnequiv._pool import map_ordered
from nnequiv._seeding import realization_seeds, stream_seed
from nnequiv._signatures import arguments_of
from nnequiv.errors import InputError
from nnequiv.settings import Settings

__all__ = [
    "ENSEMBLE_BETA",
    "ensemble_beta",
    "circular_matrices",
    "circular_eigenphases",
    "cayley_spectrum",
    "conjugate_ensemble",
    "same_order_keys",
    "cmv_matrix",
    "verblunsky_coefficients",
    "cayley_from_cosines",
    "half_cauchy_cdf",
]

#: Dyson index of each named circular ensemble.
ENSEMBLE_BETA = {"COE": 1.0, "CUE": 2.0, "CSE": 4.0}


def ensemble_beta(ensemble: str | None, beta: float | None = None) -> float:
    """The Dyson index ``beta`` selected by ``ensemble`` and/or ``beta``.

    Raises
    ------
    ValueError
        Unknown ``ensemble``, ``beta <= 0``, neither given, or both given and inconsistent.
    """
    if beta is not None:
        beta = float(beta)
        if not np.isfinite(beta) or beta <= 0:
            raise InputError(f"beta must be a positive finite number, got {beta}")
    if ensemble is None:
        if beta is None:
            raise InputError("give an ensemble ('COE', 'CUE', 'CSE') or beta")
        return beta
    key = str(ensemble).upper()
    if key not in ENSEMBLE_BETA:
        raise InputError(f"unknown circular ensemble {ensemble!r}; expected one of COE, CUE, CSE")
    if beta is not None and beta != ENSEMBLE_BETA[key]:
        raise InputError(f"{key} has beta = {ENSEMBLE_BETA[key]:g}, but beta = {beta:g} was given")
    return ENSEMBLE_BETA[key]


def _check_order(n: int, realizations: int) -> tuple[int, int]:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"matrix order n must be an integer >= 1, got {n!r}")
    if (
        isinstance(realizations, bool)
        or not isinstance(realizations, (int, np.integer))
        or realizations < 0
    ):
        raise InputError(f"realizations must be an integer >= 0, got {realizations!r}")
    return int(n), int(realizations)


# --------------------------------------------------------------------------------------
# Haar matrices
# --------------------------------------------------------------------------------------


def _haar_unitary(n: int, rng: np.random.Generator) -> np.ndarray:
    """One CUE matrix: QR of a complex Ginibre matrix with R's diagonal phases removed."""
    z = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) / np.sqrt(2.0)
    q, r = np.linalg.qr(z)
    d = np.diagonal(r)
    return q * (d / np.abs(d))


def _quaternion_dual(u: np.ndarray) -> np.ndarray:
    """``U^R = J U^T J^T`` with ``J = [[0, I], [-I, 0]]`` (2n x 2n)."""
    n = u.shape[-1] // 2
    ut = u.T
    dual = np.empty_like(u)
    dual[:n, :n] = ut[n:, n:]
    dual[:n, n:] = -ut[n:, :n]
    dual[n:, :n] = -ut[:n, n:]
    dual[n:, n:] = ut[:n, :n]
    return dual


def _one_circular_matrix(ensemble: str, n: int, seed_seq: np.random.SeedSequence) -> np.ndarray:
    rng = np.random.default_rng(seed_seq)
    if ensemble == "CUE":
        return _haar_unitary(n, rng)
    if ensemble == "COE":
        u = _haar_unitary(n, rng)
        return u.T @ u
    u = _haar_unitary(2 * n, rng)
    return _quaternion_dual(u) @ u


def circular_matrices(
    ensemble: str, n: int, realizations: int, seed=None, *, n_jobs: int | None = None
) -> np.ndarray:
    """Draw exact Haar-distributed matrices of a circular ensemble.

    Parameters
    ----------
    ensemble : {"COE", "CUE", "CSE"}
        Orthogonal (symmetric unitary), unitary, or symplectic (self-dual unitary) ensemble.
    n : int
        Matrix order; for CSE the quaternion order, so the matrices are ``2n x 2n`` complex.
    realizations : int
        Number of independent matrices.
    seed : int, SeedSequence, Generator or None
        Fixes every draw.
    n_jobs : int or None
        Worker processes (-1: every core). Does not change the result.

    Returns
    -------
    numpy.ndarray
        Complex array of shape ``(realizations, n, n)``, or ``(realizations, 2n, 2n)`` for CSE.

    References
    ----------
    F. Mezzadri, "How to generate random matrices from the classical compact groups",
    Notices of the AMS 54 (2007) 592-604.

    Examples
    --------
    >>> import numpy as np
    >>> u = circular_matrices("CUE", 4, 2, seed=0)
    >>> u.shape, bool(np.allclose(u[0] @ u[0].conj().T, np.eye(4)))
    ((2, 4, 4), True)
    >>> coe = circular_matrices("COE", 3, 1, seed=0)[0]
    >>> bool(np.allclose(coe, coe.T))  # U^T U is symmetric
    True
    """
    n, realizations = _check_order(n, realizations)
    ensemble = str(ensemble).upper()
    ensemble_beta(ensemble)
    order = 2 * n if ensemble == "CSE" else n
    out = np.empty((realizations, order, order), dtype=complex)
    seeds = realization_seeds(seed, realizations)
    for index, matrix in enumerate(
        map_ordered(partial(_one_circular_matrix, ensemble, n), seeds, n_jobs)
    ):
        out[index] = matrix
    return out


# --------------------------------------------------------------------------------------
# Killip-Nenciu CMV model
# --------------------------------------------------------------------------------------


def verblunsky_coefficients(n: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Independent Verblunsky coefficients of the Killip-Nenciu C-beta-E model.

    ``alpha_k`` for ``k < n - 1`` has uniform phase and ``|alpha_k|^2 ~ Beta(1, beta (n-k-1) / 2)``
    (drawn by inversion, ``1 - U^(1/a)``); ``alpha_{n-1}`` is uniform on the unit circle.
    """
    k = np.arange(n - 1)
    shape_b = beta * (n - k - 1) / 2.0
    uniform = rng.random(n - 1)
    modulus_sq = -np.expm1(np.log1p(-uniform) / shape_b)  # 1 - (1-U)^(1/a), U in [0, 1)
    phases = rng.random(n) * (2.0 * np.pi)
    alpha = np.empty(n, dtype=complex)
    alpha[:-1] = np.sqrt(modulus_sq) * np.exp(1j * phases[:-1])
    alpha[-1] = np.exp(1j * phases[-1])
    return alpha


def _cmv_factors(alpha: np.ndarray):
    """Diagonals and (symmetric) off-diagonals of the CMV factors L and M, C = L M."""
    n = alpha.shape[-1]
    rho = np.sqrt(np.clip(1.0 - np.abs(alpha[:-1]) ** 2, 0.0, None))
    diag_l = np.zeros(n, dtype=complex)
    diag_m = np.zeros(n, dtype=complex)
    off_l = np.zeros(max(n - 1, 0))
    off_m = np.zeros(max(n - 1, 0))
    diag_m[0] = 1.0
    even = np.arange(0, n, 2)
    odd = np.arange(1, n, 2)
    diag_l[even] = np.conj(alpha[even])
    diag_m[odd] = np.conj(alpha[odd])
    even_in = even[even < n - 1]
    odd_in = odd[odd < n - 1]
    diag_l[even_in + 1] = -alpha[even_in]
    diag_m[odd_in + 1] = -alpha[odd_in]
    off_l[even_in] = rho[even_in]
    off_m[odd_in] = rho[odd_in]
    return diag_l, off_l, diag_m, off_m


def cmv_matrix(alpha: np.ndarray) -> np.ndarray:
    """The dense CMV matrix ``C = L M`` of Verblunsky coefficients ``alpha`` (unitary)."""
    diag_l, off_l, diag_m, off_m = _cmv_factors(np.asarray(alpha, dtype=complex))
    big_l = np.diag(diag_l) + np.diag(off_l, 1) + np.diag(off_l, -1)
    big_m = np.diag(diag_m) + np.diag(off_m, 1) + np.diag(off_m, -1)
    return big_l @ big_m


def _symmetric_root_of_m(alpha: np.ndarray, diag_m: np.ndarray, off_m: np.ndarray):
    """Diagonal and off-diagonal of ``S = M^(1/2)``, a complex symmetric unitary matrix.

    Each 2 x 2 block ``A`` of ``M`` is symmetric unitary with ``det A = -1``; its square root
    is ``(A + s I) / sqrt(tr A + 2 s)`` with ``s = +-i`` chosen so that ``|tr A + 2 s| >= 2``.
    The 1 x 1 blocks (modulus one) take the principal root.
    """
    n = alpha.shape[-1]
    diag_s = np.sqrt(diag_m)
    off_s = np.zeros(max(n - 1, 0), dtype=complex)
    block = np.arange(1, n - 1, 2)  # first rows of M's 2 x 2 blocks
    if block.size:
        a = alpha[block]
        s = np.where(a.imag <= 0, 1j, -1j)
        t = np.sqrt(2.0 * s - 2j * a.imag)  # tr A = conj(a) - a = -2i Im a
        diag_s[block] = (np.conj(a) + s) / t
        diag_s[block + 1] = (s - a) / t
        off_s[block] = off_m[block] / t
    return diag_s, off_s


def _band_product(left: dict, right: dict, n: int) -> dict:
    """Product of two banded matrices given as ``{offset: diagonal}``, diagonals padded to n.

    ``A[i, i + p] = a[p][i]``; the product's diagonal ``q`` is ``sum_p a[p][i] b[q-p][i+p]``.
    """
    out: dict = {}
    for p, a in left.items():
        for r, b in right.items():
            shifted = np.zeros(n, dtype=np.result_type(a, b))
            if p >= 0:
                shifted[: n - p] = b[p:]
            else:
                shifted[-p:] = b[: n + p]
            out[p + r] = out.get(p + r, 0) + a * shifted
    return out


def _tridiagonal(diag: np.ndarray, off: np.ndarray) -> dict:
    """A symmetric tridiagonal matrix as ``{offset: diagonal}`` (padded to n)."""
    n = diag.shape[-1]
    upper = np.zeros(n, dtype=off.dtype)
    lower = np.zeros(n, dtype=off.dtype)
    upper[: n - 1] = off
    lower[1:] = off
    return {-1: lower, 0: diag, 1: upper}


def _cmv_symmetric_form(alpha: np.ndarray) -> np.ndarray:
    """Upper band storage (4 x n) of a complex symmetric seven-diagonal matrix ``T``
    unitarily similar to the CMV matrix ``C``.

    With ``C = L M`` and ``S = M^(1/2)``, ``T = S L S = S C S^H``; ``L`` and ``S`` are complex
    symmetric, so ``T`` is too, and its Hermitian and skew-Hermitian parts are the real
    symmetric matrices ``A = Re T`` and ``B = Im T``. They commute (``T`` is unitary), share
    ``T``'s eigenvectors, and have the eigenvalues ``cos(theta)`` and ``sin(theta)``.
    """
    n = alpha.shape[-1]
    diag_l, off_l, diag_m, off_m = _cmv_factors(alpha)
    root = _tridiagonal(*_symmetric_root_of_m(alpha, diag_m, off_m))
    product = _band_product(_band_product(root, _tridiagonal(diag_l, off_l), n), root, n)
    band = np.zeros((4, n), dtype=complex)
    for offset in range(4):
        band[3 - offset, offset:] = product[offset][: n - offset]
    return band


def _band_matmul(band: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``B @ vectors`` for ``B`` symmetric in upper band storage."""
    kd = band.shape[0] - 1
    n = vectors.shape[0]
    out = band[kd][:, None] * vectors
    for offset in range(1, min(kd, n - 1) + 1):
        diagonal = band[kd - offset, offset:][:, None]
        out[:-offset] += diagonal * vectors[offset:]
        out[offset:] += diagonal * vectors[:-offset]
    return out


def _rayleigh_quotients(band: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``v^T B v`` for each column ``v`` of ``vectors``."""
    return np.einsum("ij,ij->j", vectors, _band_matmul(band, vectors))


#: Cosines closer than this form a cluster whose eigenvectors are re-resolved by ``Im T``.
_CLUSTER_GAP = 1e-8


def cayley_from_cosines(cosines: np.ndarray) -> np.ndarray:
    """``x = |tan(theta / 2)| = sqrt((1 - cos theta) / (1 + cos theta))``."""
    c = np.clip(np.asarray(cosines, dtype=float), -1.0, 1.0)
    return np.sqrt((1.0 - c) / np.maximum(1.0 + c, np.finfo(float).tiny))


def _check_lapack(info: int) -> None:
    if info != 0:  # pragma: no cover - LAPACK failure
        raise np.linalg.LinAlgError(f"banded eigensolver failed (info={info})")


def _one_cayley_spectrum(n: int, beta: float, seed_seq) -> np.ndarray:
    alpha = verblunsky_coefficients(n, beta, np.random.default_rng(seed_seq))
    if n == 1:
        cosines = np.array([alpha[0].real])
    else:
        cosines, _, info = lapack.dsbev(_cmv_symmetric_form(alpha).real, compute_v=0)
        _check_lapack(info)
    return np.sort(cayley_from_cosines(cosines))


def _eigenphases_of_verblunsky(alpha: np.ndarray) -> np.ndarray:
    """Sorted eigenphases of the CMV matrix of ``alpha``, in ``(-pi, pi]``.

    The eigenvectors of ``A = Re T`` give ``cos`` and ``sin`` as Rayleigh quotients of ``A``
    and ``B = Im T``. Where cosines cluster (``theta_j`` near ``-theta_k``) the eigenvectors
    of ``A`` are not those of ``T``: there ``B`` is diagonalised on the cluster's subspace.
    """
    if alpha.shape[-1] == 1:
        phases = np.angle(alpha[:1])
    else:
        band = _cmv_symmetric_form(alpha)
        real, imag = band.real, band.imag
        cosines, vectors, info = lapack.dsbevd(real, compute_v=1)
        _check_lapack(info)
        close = np.flatnonzero(np.diff(cosines) < _CLUSTER_GAP)
        for start, stop in _runs(close):
            block = vectors[:, start : stop + 1]
            _, rotation = np.linalg.eigh(block.T @ _band_matmul(imag, block))
            vectors[:, start : stop + 1] = block @ rotation
        if close.size:
            cosines = _rayleigh_quotients(real, vectors)
        phases = np.arctan2(_rayleigh_quotients(imag, vectors), cosines)
    phases[phases <= -np.pi] = np.pi
    return np.sort(phases)


def _runs(gaps: np.ndarray):
    """``(first, last)`` index of each cluster, from the sorted indices ``i`` of small gaps
    between eigenvalue ``i`` and ``i + 1``."""
    if gaps.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(gaps) > 1)
    starts = np.r_[gaps[0], gaps[breaks + 1]]
    stops = np.r_[gaps[breaks], gaps[-1]] + 1
    return list(zip(starts.tolist(), stops.tolist()))


def _one_eigenphases(n: int, beta: float, seed_seq) -> np.ndarray:
    return _eigenphases_of_verblunsky(
        verblunsky_coefficients(n, beta, np.random.default_rng(seed_seq))
    )


def _draw(one, ensemble, n, realizations, seed, *, beta=None, n_jobs=None) -> np.ndarray:
    n, realizations = _check_order(n, realizations)
    b = ensemble_beta(ensemble, beta)
    seeds = realization_seeds(seed, realizations)
    rows = map_ordered(partial(one, n, b), seeds, n_jobs)
    return np.array(rows, dtype=float).reshape(realizations, n)


def circular_eigenphases(
    ensemble: str | None,
    n: int,
    realizations: int,
    seed=None,
    *,
    beta: float | None = None,
    n_jobs: int | None = None,
) -> np.ndarray:
    """Eigenphases of C-beta-E matrices of order ``n``, drawn through the CMV model.

    Parameters
    ----------
    ensemble : {"COE", "CUE", "CSE"} or None
        Named ensemble (beta = 1, 2, 4). None when ``beta`` is given.
    n : int
        Number of eigenphases per realization (for CSE one per Kramers pair).
    realizations : int
        Number of realizations.
    seed : int, SeedSequence, Generator or None
        Fixes every draw.
    beta : float, optional
        Any Dyson index ``beta > 0`` (general beta-circular ensemble).
    n_jobs : int or None
        Worker processes (-1: every core). Does not change the result.

    Returns
    -------
    numpy.ndarray
        Shape ``(realizations, n)``, each row sorted, phases in ``(-pi, pi]``.

    References
    ----------
    R. Killip and I. Nenciu, "Matrix models for circular ensembles", International
    Mathematics Research Notices 2004 (50) 2665-2701.

    Examples
    --------
    >>> import numpy as np
    >>> phases = circular_eigenphases("COE", 5, 3, seed=0)
    >>> phases.shape, bool(np.all(np.diff(phases, axis=1) >= 0))
    ((3, 5), True)
    >>> bool(np.all(np.abs(phases) <= np.pi))
    True
    """
    return _draw(_one_eigenphases, ensemble, n, realizations, seed, beta=beta, n_jobs=n_jobs)


@arguments_of(circular_eigenphases)
def cayley_spectrum(ensemble, n, realizations, seed=None, **options) -> np.ndarray:
    """Cayley variable ``x = |tan(theta / 2)|`` of C-beta-E eigenphases (method item 5).

    Same law, arguments (documented there) and references as :func:`circular_eigenphases`,
    but computed in O(n^2) per realization from the banded Hermitian part of the CMV
    matrix.

    Returns
    -------
    numpy.ndarray
        Shape ``(realizations, n)``, each row sorted ascending, values in ``[0, inf)``.

    Examples
    --------
    >>> import numpy as np
    >>> x = cayley_spectrum("CUE", 6, 2, seed=0)
    >>> x.shape, bool(np.all(x >= 0))
    ((2, 6), True)
    >>> bool(np.array_equal(x, cayley_spectrum("CUE", 6, 2, seed=0, n_jobs=2)))
    True
    """
    return _draw(_one_cayley_spectrum, ensemble, n, realizations, seed, **options)


def _keyed_cayley_spectrum(beta: float, seed, task: tuple) -> np.ndarray:
    key, realization, n = task
    return _one_cayley_spectrum(n, beta, stream_seed(seed, "conjugate", *key, realization))


def same_order_keys(orders) -> list[tuple[int, int]]:
    """``(n, k)`` for each order: k counts the earlier entries of the same order."""
    seen: dict[int, int] = {}
    keys = []
    for n in orders:
        keys.append((int(n), seen.get(int(n), 0)))
        seen[int(n)] = seen.get(int(n), 0) + 1
    return keys


def conjugate_ensemble(
    orders,
    ensemble: str | None = Settings.ensemble,
    realizations: int = Settings.realizations,
    seed: int = Settings.seed,
    *,
    keys=None,
    beta: float | None = None,
    n_jobs: int | None = None,
) -> list[np.ndarray]:
    """Cayley spectra of a conjugate circular ensemble: one matrix per layer order.

    Parameters
    ----------
    orders : sequence of int
        Matrix order of each layer (``min(N, M)``).
    ensemble, beta
        The circular ensemble, as in :func:`cayley_spectrum`.
    realizations : int
        Number of realizations of the whole ensemble.
    seed : int or SeedSequence
        With ``keys``, fixes every draw: the matrix of the layer with key ``(n, k)`` in
        realization r comes from the stream ``("conjugate", n, k, r)`` (method item 14), so
        it depends on the key, not on where the layer stands in the list.
    keys : sequence of (int, int), optional
        ``(n, k)`` per layer: its order and its rank among the layers of that order. Default
        :func:`same_order_keys` (rank = position among the same-order layers).
    n_jobs : int or None
        Worker processes over all (layer, realization) pairs (-1: every core). Does not
        change the result.

    Returns
    -------
    list of numpy.ndarray
        ``out[i]`` has shape ``(realizations, orders[i])``, each row sorted ascending.

    References
    ----------
    The matrix model of Killip and Nenciu (2004), cited in :func:`circular_eigenphases`.

    Examples
    --------
    >>> [layer.shape for layer in conjugate_ensemble([3, 5], "CUE", 2, seed=0)]
    [(2, 3), (2, 5)]
    """
    b = ensemble_beta(ensemble, beta)
    orders = [_check_order(n, realizations)[0] for n in orders]
    keys = same_order_keys(orders) if keys is None else [tuple(map(int, k)) for k in keys]
    if len(keys) != len(orders) or len(set(keys)) != len(keys):
        raise InputError("keys must give each layer its own (n, rank) key")
    if seed is None or (isinstance(seed, (int, np.integer)) and seed < 0):
        raise InputError(f"conjugate_ensemble needs a fixed seed >= 0, got {seed!r}")
    # Largest orders first, so that parallel workers finish together.
    tasks = sorted(
        ((i, r, n) for i, n in enumerate(orders) for r in range(realizations)),
        key=lambda t: -t[2],
    )
    rows = map_ordered(
        partial(_keyed_cayley_spectrum, b, seed), [(keys[i], r, n) for i, r, n in tasks], n_jobs
    )
    out = [np.empty((realizations, n)) for n in orders]
    for (i, r, _), row in zip(tasks, rows):
        out[i][r] = row
    return out


def half_cauchy_cdf(x: np.ndarray) -> np.ndarray:
    """CDF ``(2 / pi) arctan(x)`` of the one-point law of ``x`` for every beta."""
    return (2.0 / np.pi) * np.arctan(np.asarray(x, dtype=float))
