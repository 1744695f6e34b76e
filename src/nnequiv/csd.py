"""Circular Spectral Difference (method items 6-8 and 10): densities, CSD, decay rate with its
interval, and the layer-resolved CSD points.

Everything here is a pure function on NumPy arrays: spectra in, curves and numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from scipy.special import stdtrit

from nnequiv._seeding import stream_seed
from nnequiv.errors import InputError
from nnequiv.settings import BOOTSTRAP_RESAMPLES, DEFAULT_GRID, DEFAULT_LOCATIONS

__all__ = [
    "log_grid",
    "spectral_density",
    "bin_counts",
    "csd_curve",
    "csd_from_counts",
    "survival_difference",
    "DecayFit",
    "decay_rate",
    "decay_with_interval",
    "layer_csd_curves",
    "layer_csd_points",
    "sample_curves",
    "bootstrap_indices",
    "replicate_interval",
]


def log_grid(
    low: float = DEFAULT_GRID[0], high: float = DEFAULT_GRID[1], bins: int = DEFAULT_GRID[2]
) -> np.ndarray:
    """``bins + 1`` log-spaced bin edges from ``low`` to ``high``."""
    if not (0 < low < high) or bins < 1:
        raise InputError(f"grid needs 0 < low < high and bins >= 1, got {low}, {high}, {bins}")
    return np.logspace(np.log10(low), np.log10(high), int(bins) + 1)


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """How many of ``values`` fall in each bin of ``edges`` (values beyond the grid are
    counted in its first or last bin)."""
    values = np.asarray(values, dtype=float).ravel()
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    return np.bincount(index, minlength=len(edges) - 1)


def spectral_density(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mass per bin of ``values`` on ``edges`` (sums to 1; values beyond the grid are counted
    in its first or last bin)."""
    values = np.asarray(values, dtype=float).ravel()
    if values.size == 0:
        return np.zeros(len(edges) - 1)
    return bin_counts(values, edges) / values.size


def csd_from_counts(counts_a: np.ndarray, counts_b: np.ndarray, signed: bool = False):
    """:func:`csd_curve` (or with ``signed=True`` :func:`survival_difference`) of the densities
    of two histograms, computed from their integer counts (last axis: bins) so that equal
    counts always give bit-identical curves: the tail masses are exact fractions."""
    a, b = np.asarray(counts_a, dtype=np.int64), np.asarray(counts_b, dtype=np.int64)
    size_a, size_b = a.sum(axis=-1, keepdims=True), b.sum(axis=-1, keepdims=True)
    if signed:
        return _tail_sum(a) / size_a - _tail_sum(b) / size_b
    return _tail_sum(np.abs(a * size_b - b * size_a)) / (size_a * size_b)


def _tail_sum(values: np.ndarray) -> np.ndarray:
    """``out[k] = sum_{j >= k} values[j]`` along the last axis."""
    return np.cumsum(values[..., ::-1], axis=-1)[..., ::-1]


def csd_curve(p_net: np.ndarray, p_circ: np.ndarray) -> np.ndarray:
    """``CSD(x_k) = sum_{j >= k} |p_net(j) - p_circ(j)|`` (method item 7), cumulated from the
    tail inwards; index k is the bin whose left edge is ``x_k``."""
    return _tail_sum(np.abs(np.asarray(p_net, float) - np.asarray(p_circ, float)))


def survival_difference(p_net: np.ndarray, p_circ: np.ndarray) -> np.ndarray:
    """Signed cumulative difference ``sum_{j >= k} (p_net(j) - p_circ(j))``: the CSD without the
    absolute value, i.e. the difference of the two tail masses (survival functions)."""
    return _tail_sum(np.asarray(p_net, float) - np.asarray(p_circ, float))


@dataclass(frozen=True, kw_only=True)
class DecayFit:
    """Tail decay of the CSD: ``log CSD ~ -alpha log x`` (method item 8).

    Attributes
    ----------
    alpha : float
        Decay rate of the mean CSD.
    stderr : float
        Standard error of the least-squares slope of that one fit (it leaves out the
        conjugate ensemble's randomness).
    r2 : float
        Coefficient of determination of the fit.
    x_start, x_end : float
        First and last location of the fit.
    n_points : int
        Bins in the fit.
    intercept : float
        Of ``log CSD`` at ``log x = 0``.
    interval : tuple of float
        Where the alpha of a repeated analysis with another seed falls, 95 %: from the
        spread of alpha over resamples of the realizations (:func:`replicate_interval`).
    realisation_sd : float
        Standard deviation of alpha over those resamples.
    """

    alpha: float
    stderr: float
    r2: float
    x_start: float
    x_end: float
    n_points: int
    intercept: float = float("nan")
    interval: tuple[float, float] = (float("nan"), float("nan"))
    realisation_sd: float = float("nan")

    def to_dict(self) -> dict:
        out = {k: float(v) for k, v in self.__dict__.items() if k not in ("n_points", "interval")}
        out["n_points"] = int(self.n_points)
        out["interval"] = [float(v) for v in self.interval]
        return out


def decay_rate(edges: np.ndarray, csd: np.ndarray, x_start: float) -> DecayFit:
    """Least-squares slope of ``log CSD`` against ``log x`` from ``x_start`` to the last
    non-zero CSD bin; ``alpha = -slope``, with its standard error and R^2.

    Fewer than three points give NaN values.
    """
    locations = np.asarray(edges[:-1], dtype=float)
    csd = np.asarray(csd, dtype=float)
    mask = (locations >= x_start) & (csd > 0)  # so the fit ends at the last non-zero bin
    count = int(mask.sum())
    if count < 3:
        nan = float("nan")
        return DecayFit(
            alpha=nan, stderr=nan, r2=nan, x_start=float(x_start), x_end=nan, n_points=count
        )
    lx, ly = np.log(locations[mask]), np.log(csd[mask])
    slope, intercept = np.polyfit(lx, ly, 1)
    residual = ly - (slope * lx + intercept)
    ss_tot = np.sum((ly - ly.mean()) ** 2)
    r2 = 1.0 - np.sum(residual**2) / ss_tot if ss_tot > 0 else 1.0
    stderr = np.sqrt(np.sum(residual**2) / max(count - 2, 1) / np.sum((lx - lx.mean()) ** 2))
    return DecayFit(
        alpha=float(-slope),
        stderr=float(stderr),
        r2=float(r2),
        x_start=float(x_start),
        x_end=float(locations[mask][-1]),
        n_points=count,
        intercept=float(intercept),
    )


def decay_with_interval(
    edges: np.ndarray, csd: np.ndarray, x_start: float, resamples: np.ndarray
) -> DecayFit:
    """:func:`decay_rate` of the mean of the CSD curves ``csd`` (realizations x bins), with
    the interval in which the alpha of a repeated analysis falls (:func:`replicate_interval`
    over the realization ``resamples``, rows of indices from :func:`bootstrap_indices`)."""
    fit = decay_rate(edges, csd.mean(axis=0), x_start)
    if csd.shape[0] < 2 or not np.isfinite(fit.alpha):
        return fit
    replicates = np.array(
        [decay_rate(edges, csd[pick].mean(axis=0), x_start).alpha for pick in resamples]
    )
    replicates = replicates[np.isfinite(replicates)]
    interval, sd = replicate_interval(fit.alpha, replicates, csd.shape[0])
    return replace(fit, interval=interval, realisation_sd=sd)


def bootstrap_indices(
    seed: int, realizations: int, resamples: int = BOOTSTRAP_RESAMPLES
) -> np.ndarray:
    """Resamples (with replacement) of ``realizations`` realizations, shape ``(resamples,
    realizations)``, from the seed's ``"bootstrap"`` stream: the same for every network."""
    rng = np.random.default_rng(stream_seed(seed, "bootstrap", realizations))
    return rng.integers(0, realizations, size=(resamples, realizations))


def replicate_interval(
    estimate: float, replicates: np.ndarray, realizations: int, level: float = 0.95
) -> tuple[tuple[float, float], float]:
    """Where the estimate of a repeated analysis (another seed) falls, with probability
    ``level``, and the standard deviation of the estimate.

    The bootstrap replicates (resampled realizations) give the estimate's standard
    deviation s, corrected by sqrt(R / (R - 1)) for the small number R of realizations. Two
    independent analyses differ by sqrt(2) s, and the Student t quantile with R - 1 degrees
    of freedom replaces the normal one: ``estimate +- t * sqrt(2) * s``.
    """
    if realizations < 2 or len(replicates) < 2:
        nan = float("nan")
        return (nan, nan), nan
    sd = float(np.std(replicates, ddof=1) * np.sqrt(realizations / (realizations - 1)))
    half = float(_t_quantile(0.5 + level / 2, realizations - 1) * np.sqrt(2.0) * sd)
    return (estimate - half, estimate + half), sd


@lru_cache(maxsize=256)
def _t_quantile(probability: float, dof: int) -> float:
    """The Student t quantile (``scipy.stats.t.ppf``, without importing ``scipy.stats``)."""
    return float(stdtrit(dof, probability))


def layer_csd_curves(
    spectrum: np.ndarray, conjugates: np.ndarray, edges: np.ndarray, signed: bool = False
) -> np.ndarray:
    """CSD of one normalised layer spectrum against each of its conjugate matrices (rows of
    ``conjugates``), or with ``signed=True`` the :func:`survival_difference`. Shape
    ``(realizations, bins)``; exact fractions (:func:`csd_from_counts`)."""
    own = bin_counts(spectrum, edges)
    conjugate = np.array([bin_counts(x, edges) for x in conjugates])
    return csd_from_counts(own, conjugate, signed)


def sample_curves(curves: np.ndarray, edges: np.ndarray, locations) -> np.ndarray:
    """The curves (last axis on the bins of ``edges``) at the bins whose left edges are the
    first at or above each of ``locations``."""
    index = np.clip(np.searchsorted(edges, np.asarray(locations), side="left"), 0, len(edges) - 2)
    return curves[..., index]


def layer_csd_points(
    spectrum: np.ndarray,
    conjugates: np.ndarray,
    edges: np.ndarray,
    locations=DEFAULT_LOCATIONS,
    signed: bool = False,
) -> np.ndarray:
    """:func:`layer_csd_curves` sampled at ``locations`` (method item 10), shape
    ``(realizations, len(locations))``."""
    return sample_curves(layer_csd_curves(spectrum, conjugates, edges, signed), edges, locations)
