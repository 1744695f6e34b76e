"""Distances between analyses (method items 9-11) on a fixed scale.

A :class:`Fingerprint` holds what the distance of one analysis compares: the cloud of its
layer points (layer level) or its mean CSD curve (pooled level), the same under each
bootstrap resample of the realisations, and the network's noise floor. Nothing here depends
on which other networks are compared, so ``d(A, B)`` is a property of A, B and the settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnequiv.csd import bootstrap_indices, replicate_interval
from nnequiv.errors import InputError
from nnequiv.settings import DistanceSettings, Settings

__all__ = [
    "Fingerprint",
    "fingerprint",
    "layer_cloud",
    "energy_distance",
    "distance",
    "distance_with_spread",
    "check_comparable",
]


@dataclass(frozen=True, repr=False)
class Fingerprint:
    """What the distance compares for one analysis.

    Attributes
    ----------
    source : str
        The analysed network.
    settings : Settings
        Its analysis settings.
    level : str
        ``"layer"`` or ``"pooled"``.
    mean : numpy.ndarray
        Layer level: the cloud of layer points, ``(L, K + 1)``; pooled level: the mean CSD.
    resampled : numpy.ndarray
        The same for each bootstrap resample of the realisations (leading axis).
    self_mean, self_resampled : float, numpy.ndarray
        Layer level: mean distance between the cloud's points, for ``mean`` and each resample.
    noise_floor : float
        Distance expected between two independent analyses of this network.
    """

    source: str
    settings: Settings
    level: str
    mean: np.ndarray
    resampled: np.ndarray
    self_mean: float
    self_resampled: np.ndarray
    noise_floor: float

    def __repr__(self) -> str:
        return f"Fingerprint({self.source!r}, {self.level}, noise floor {self.noise_floor:.4g})"


def layer_cloud(points: np.ndarray, orders, order_weight: float) -> np.ndarray:
    """Layer points on the fixed scale (method item 10): the tail-mass coordinates as they are
    (probabilities, one natural unit) and ``order_weight * log n`` appended."""
    points = np.asarray(points, dtype=float)
    log_order = order_weight * np.log(np.asarray(orders, dtype=float))
    order_column = np.broadcast_to(log_order[:, None], points.shape[:-1] + (1,))
    return np.concatenate([points, order_column], axis=-1)


def _mean_pair_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean Euclidean distance between the rows of ``x`` and of ``y`` (leading axes batched).
    Differences, not a Gram expansion, so equal clouds give exactly equal values."""
    difference = x[..., :, None, :] - y[..., None, :, :]
    return np.sqrt(np.einsum("...ijk,...ijk->...ij", difference, difference)).mean(axis=(-2, -1))


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """``sqrt(2 E|X - Y| - E|X - X'| - E|Y - Y'|)`` between two point clouds (rows)."""
    value = 2 * _mean_pair_distance(x, y) - _mean_pair_distance(x, x) - _mean_pair_distance(y, y)
    return float(np.sqrt(max(value, 0.0)))


def _energy(cross, self_a, self_b) -> np.ndarray:
    return np.sqrt(np.maximum(2 * cross - self_a - self_b, 0.0))


def _level_values(analysis, level: str, order_weight: float, realisations) -> np.ndarray:
    """The mean over the chosen realisations of what the distance compares; layer points in
    the order of their stream keys, so that the file's order of layers cannot change a bit."""
    if level == "pooled":
        return analysis.csd[realisations].mean(axis=0)
    keys = [layer.stream for layer in analysis.layers]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    points = analysis.layer_points[realisations][..., order, :].mean(axis=0)
    return layer_cloud(points, analysis.orders[order], order_weight)


def fingerprint(analysis, distance_settings: DistanceSettings | None = None) -> Fingerprint:
    """The :class:`Fingerprint` of an analysis at the level and order weight of
    ``distance_settings`` (default :class:`~nnequiv.settings.DistanceSettings`)."""
    chosen = distance_settings or DistanceSettings()
    level, weight = chosen.level, chosen.order_weight
    count = analysis.csd.shape[0]
    resamples = bootstrap_indices(analysis.settings.seed, count)
    mean = _level_values(analysis, level, weight, slice(None))
    resampled = np.stack([_level_values(analysis, level, weight, pick) for pick in resamples])
    if level == "pooled":
        self_mean, self_resampled = 0.0, np.zeros(len(resamples))
    else:
        self_mean = float(_mean_pair_distance(mean, mean))
        self_resampled = _mean_pair_distance(resampled, resampled)
    floor = float("nan")
    if count >= 2:
        half = count // 2
        first = _level_values(analysis, level, weight, slice(0, half))
        second = _level_values(analysis, level, weight, slice(half, 2 * half))
        floor = _between(level, first, second) / np.sqrt(2.0)
    return Fingerprint(
        analysis.source, analysis.settings, level, mean, resampled, self_mean, self_resampled, floor
    )


def _between(level: str, x: np.ndarray, y: np.ndarray) -> float:
    if level == "pooled":
        return float(np.abs(x - y).max())
    return energy_distance(x, y)


def distance(a: Fingerprint, b: Fingerprint) -> float:
    """``d(A, B)`` of the realisation means (method items 9 and 10)."""
    if a.level == "pooled":
        return float(np.abs(a.mean - b.mean).max())
    return float(_energy(_mean_pair_distance(a.mean, b.mean), a.self_mean, b.self_mean))


def distance_with_spread(a: Fingerprint, b: Fingerprint) -> tuple[float, tuple[float, float]]:
    """``d(A, B)`` and the interval in which the distance of a repeated analysis (another
    seed) falls, 95 %, from the same bootstrap resamples for both networks (method item 11)."""
    value = distance(a, b)
    if a.level == "pooled":
        replicates = np.abs(a.resampled - b.resampled).max(axis=-1)
    else:
        cross = _mean_pair_distance(a.resampled, b.resampled)
        replicates = _energy(cross, a.self_resampled, b.self_resampled)
    (low, high), _ = replicate_interval(value, replicates, a.settings.realizations)
    if not np.isfinite(low):
        return value, (value, value)
    return value, (max(low, 0.0), high)


def check_comparable(analyses) -> None:
    """Refuse analyses made with different analysis settings, naming the first difference."""
    first = analyses[0]
    for other in analyses[1:]:
        differing = first.settings.differences(other.settings)
        if differing:
            name = differing[0]
            raise InputError(
                f"{other.source}: analysed with {name}={getattr(other.settings, name)!r} but "
                f"{first.source} with {name}={getattr(first.settings, name)!r}; "
                "compared analyses must share every analysis setting"
            )
