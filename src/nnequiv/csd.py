"""Circular Spectral Difference (method items 6-8 and 10): densities, CSD, decay rate, and the
layer-resolved CSD points.

Everything here is a pure function on NumPy arrays: spectra in, curves and numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_LOCATIONS",
    "log_grid",
    "spectral_density",
    "csd_curve",
    "DecayFit",
    "decay_rate",
    "layer_csd_points",
    "DEFAULT_TAIL_QUANTILE",
    "survival_difference",
]

#: (low, high, bins) of the shared log-spaced grid of densities (method item 6).
DEFAULT_GRID = (1e-6, 1e6, 240)
#: Spectral locations of the layer-resolved CSD points (method item 10).
DEFAULT_LOCATIONS = tuple(np.logspace(-2, 2, 9))
#: The tail of the decay fit starts at this quantile of the pooled network spectrum.
DEFAULT_TAIL_QUANTILE = 0.90


def log_grid(
    low: float = DEFAULT_GRID[0], high: float = DEFAULT_GRID[1], bins: int = DEFAULT_GRID[2]
) -> np.ndarray:
    """``bins + 1`` log-spaced bin edges from ``low`` to ``high``."""
    if not (0 < low < high) or bins < 1:
        raise ValueError(f"grid needs 0 < low < high and bins >= 1, got {low}, {high}, {bins}")
    return np.logspace(np.log10(low), np.log10(high), int(bins) + 1)


def spectral_density(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mass per bin of ``values`` on ``edges`` (sums to 1; values beyond the grid are counted
    in its first or last bin)."""
    values = np.asarray(values, dtype=float).ravel()
    if values.size == 0:
        return np.zeros(len(edges) - 1)
    index = np.searchsorted(edges, values, side="right") - 1
    index = np.clip(index, 0, len(edges) - 2)
    return np.bincount(index, minlength=len(edges) - 1) / values.size


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


@dataclass
class DecayFit:
    """Tail decay of the CSD: ``log CSD ~ -alpha log x`` (method item 8)."""

    alpha: float
    stderr: float
    r2: float
    x_start: float
    x_end: float
    n_points: int
    intercept: float = float("nan")

    def to_dict(self) -> dict:
        return {k: int(v) if k == "n_points" else float(v) for k, v in self.__dict__.items()}


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
        return DecayFit(nan, nan, nan, float(x_start), nan, count)
    lx, ly = np.log(locations[mask]), np.log(csd[mask])
    slope, intercept = np.polyfit(lx, ly, 1)
    residual = ly - (slope * lx + intercept)
    ss_tot = np.sum((ly - ly.mean()) ** 2)
    r2 = 1.0 - np.sum(residual**2) / ss_tot if ss_tot > 0 else 1.0
    stderr = np.sqrt(np.sum(residual**2) / max(count - 2, 1) / np.sum((lx - lx.mean()) ** 2))
    return DecayFit(
        float(-slope),
        float(stderr),
        float(r2),
        float(x_start),
        float(locations[mask][-1]),
        count,
        float(intercept),
    )


def layer_csd_points(
    spectrum: np.ndarray,
    conjugates: list[np.ndarray],
    edges: np.ndarray,
    locations=DEFAULT_LOCATIONS,
    signed: bool = False,
) -> np.ndarray:
    """CSD of one normalised layer spectrum against each of its conjugate matrices, sampled
    at ``locations`` (method item 10); ``signed=True`` samples :func:`survival_difference`
    instead. Shape ``(realisations, len(locations))``."""
    index = np.clip(np.searchsorted(edges, np.asarray(locations), side="left"), 0, len(edges) - 2)
    p_net = spectral_density(spectrum, edges)
    curve = survival_difference if signed else csd_curve
    curves = np.array([curve(p_net, spectral_density(x, edges)) for x in conjugates])
    return curves[:, index]
