"""Distances between analyses (method items 9-11) on a fixed scale.

A :class:`Fingerprint` holds what the distance of one analysis compares: the cloud of its
layer points (layer level) or its mean CSD curve (pooled level), the same under each
bootstrap resample of the realizations, and the network's noise floor. Nothing here depends
on which other networks are compared, so ``d(A, B)`` is a property of A, B and the settings.

A :class:`Summary` is what a fingerprint is made from: the per-realization layer points and
CSD curves of an analysis, with the layers' orders and stream keys. The fingerprint index
(:mod:`nnequiv.store`) keeps summaries, so distances from an index equal those from files.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.spatial.distance import cdist

from nnequiv.csd import bootstrap_indices, replicate_interval
from nnequiv.errors import InputError
from nnequiv.layers import layer_structure
from nnequiv.settings import BOOTSTRAP_RESAMPLES, DistanceSettings, Settings

__all__ = [
    "Summary",
    "summarize",
    "Fingerprint",
    "fingerprint",
    "fingerprints",
    "layer_cloud",
    "energy_distance",
    "distance",
    "distance_with_spread",
    "distances_with_spread",
    "check_comparable",
    "DesignPrint",
    "design_prints",
    "design_distances_with_spread",
    "design_part_matrices",
    "structural_distance",
]


@dataclass(frozen=True, repr=False)
class Summary:
    """What the distances read from one analysis.

    Attributes
    ----------
    source, settings : str, Settings
        The analysed network and its analysis settings.
    layer_points : numpy.ndarray
        Layer points of every realization, ``(R, layers, locations)``.
    orders : numpy.ndarray
        The order n of every layer, ``(layers,)``.
    streams : numpy.ndarray
        The stream key ``(n, rank)`` of every layer, ``(layers, 2)``.
    csd : numpy.ndarray or None
        Pooled CSD of every realization, ``(R, bins)``; None where only the layer level is
        needed (read from an index without its curves).
    path : str or None
        The network's file, where it has one.
    structure : numpy.ndarray or None
        The structural point of every layer, ``(layers, 3)``
        (:func:`nnequiv.layers.layer_structure`, method item 15); None where it was not kept.
    index : str or None
        The fingerprint index it was read from, where it came from one (named by the errors
        that refuse a summary where a whole analysis is needed).
    """

    source: str
    settings: Settings
    layer_points: np.ndarray
    orders: np.ndarray
    streams: np.ndarray
    csd: np.ndarray | None
    path: str | None = None
    structure: np.ndarray | None = None
    index: str | None = None

    def __repr__(self) -> str:
        count, layers = self.layer_points.shape[:2]
        return f"Summary({self.source!r}, {layers} layers, {count} realizations)"


def summarize(analysis) -> Summary:
    """The :class:`Summary` of an :class:`~nnequiv.analysis.Analysis` (a summary as it is)."""
    if isinstance(analysis, Summary):
        return analysis
    streams = np.array([layer.stream for layer in analysis.layers], dtype=np.int64)
    structure = [layer_structure(layer.shape, analysis.layout) for layer in analysis.layers]
    return Summary(
        analysis.source,
        analysis.settings,
        analysis.layer_points,
        analysis.orders,
        streams.reshape(-1, 2),
        analysis.csd,
        analysis.path,
        np.array(structure, dtype=float).reshape(-1, 3),
    )


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
        The same for each bootstrap resample of the realizations (leading axis).
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
    order_column = np.broadcast_to(log_order[..., None], points.shape[:-1] + (1,))
    return np.concatenate([points, order_column], axis=-1)


def _point_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``x`` (La, D) and of ``y`` (Lb, D): SciPy's
    ``cdist``, the one distance kernel of nnequiv. A pair of points gets the same bits
    whatever else is compared, so equal clouds give exactly equal values."""
    return cdist(x, y, "euclidean")


#: Small clouds are compared several pairs in one call of the kernel (the points of the
#: pairs stacked, the diagonal blocks kept): about this many point distances per call.
GROUP_DISTANCES = 4096


def _mean_pair_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean Euclidean distance between the rows of ``x`` (..., La, D) and of ``y``
    (..., Lb, D), leading axes broadcast. Small clouds go several pairs to a kernel call
    (:data:`GROUP_DISTANCES`), larger ones one pair at a time; either way each distance is
    the kernel's for that pair of points, so a cloud compared with an equal cloud gives
    exactly its own self term, in any batch."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rows, columns, width = x.shape[-2], y.shape[-2], x.shape[-1]
    pairs = rows * columns
    if x.ndim == 2 and y.ndim == 2:
        return np.float64(np.add.reduce(_point_distances(x, y).ravel()) / pairs)
    shape = np.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    x = np.broadcast_to(x, shape + x.shape[-2:])
    y = np.broadcast_to(y, shape + y.shape[-2:])
    out = np.empty(shape)
    group = int(np.sqrt(GROUP_DISTANCES / pairs))
    if group < 2:
        for where in np.ndindex(shape):
            out[where] = np.add.reduce(_point_distances(x[where], y[where]).ravel()) / pairs
        return out
    for outer in np.ndindex(shape[:-1]):
        x_outer, y_outer, out_outer = x[outer], y[outer], out[outer]
        for start in range(0, shape[-1], group):
            part = slice(start, start + group)
            block = _point_distances(
                x_outer[part].reshape(-1, width), y_outer[part].reshape(-1, width)
            )
            count = block.shape[0] // rows
            diagonal = np.arange(count)  # the diagonal blocks: each pair of clouds with itself
            block = block.reshape(count, rows, count, columns)[diagonal, :, diagonal, :]
            out_outer[part] = block.reshape(count, pairs).sum(axis=-1) / pairs
    return out


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """``sqrt(2 E|X - Y| - E|X - X'| - E|Y - Y'|)`` between two point clouds (rows)."""
    return float(_energy_distances(x, y))


def _energy_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:func:`energy_distance` of the clouds ``x[...]`` and ``y[...]`` (leading axes batched)."""
    value = 2 * _mean_pair_distance(x, y) - _mean_pair_distance(x, x) - _mean_pair_distance(y, y)
    return np.sqrt(np.maximum(value, 0.0))


def _energy(cross, self_a, self_b) -> np.ndarray:
    return np.sqrt(np.maximum(2 * cross - self_a - self_b, 0.0))


@lru_cache(maxsize=64)
def _resamples(seed: int, count: int) -> np.ndarray:
    """The bootstrap resamples of ``count`` realizations (read-only; one draw per seed)."""
    resamples = bootstrap_indices(seed, count)
    resamples.setflags(write=False)
    return resamples


#: Realization values held at once while fingerprints are computed together.
FINGERPRINT_ELEMENTS = 2**22


def fingerprint(analysis, distance_settings: DistanceSettings | None = None) -> Fingerprint:
    """The :class:`Fingerprint` of an analysis (or its :class:`Summary`) at the level and
    order weight of ``distance_settings`` (default :class:`~nnequiv.settings.DistanceSettings`).
    """
    return fingerprints([analysis], distance_settings)[0]


def fingerprints(analyses, distance_settings: DistanceSettings | None = None) -> list:
    """:func:`fingerprint` of each analysis (or summary), computed together for those of one
    shape: the same numbers as one at a time."""
    chosen = distance_settings or DistanceSettings()
    summaries = [summarize(analysis) for analysis in analyses]
    groups: dict = {}
    for index, summary in enumerate(summaries):
        values = summary.csd if chosen.level == "pooled" else summary.layer_points
        groups.setdefault((summary.settings.seed, np.shape(values)), []).append(index)
    out: list = [None] * len(summaries)
    for (seed, shape), members in groups.items():
        step = max(1, FINGERPRINT_ELEMENTS // (BOOTSTRAP_RESAMPLES * int(np.prod(shape))))
        for start in range(0, len(members), step):
            part = members[start : start + step]
            made = _fingerprint_group([summaries[i] for i in part], chosen, seed)
            for index, value in zip(part, made):
                out[index] = value
    return out


def _realization_values(summaries: list, level: str, order_weight: float):
    """What the distance compares, for every network and realization (leading axes), and
    how a mean over realizations becomes a fingerprint value. Layer points come in the order
    of their stream keys, so that the file's order of layers cannot change a bit."""
    if level == "pooled":
        missing = next((s.source for s in summaries if s.csd is None), None)
        if missing is not None:
            raise InputError(f"{missing}: the pooled level needs the CSD curves, left out here")
        return np.stack([np.asarray(s.csd, dtype=float) for s in summaries]), lambda mean: mean
    points, orders = [], []
    for summary in summaries:
        streams = np.asarray(summary.streams)
        order = np.lexsort((streams[:, 1], streams[:, 0]))
        points.append(np.asarray(summary.layer_points, dtype=float)[:, order, :])
        orders.append(np.asarray(summary.orders)[order])
    stacked = np.stack(orders)

    def finish(mean: np.ndarray) -> np.ndarray:
        shape = (len(stacked),) + (1,) * (mean.ndim - 3) + stacked.shape[1:]
        return layer_cloud(mean, stacked.reshape(shape), order_weight)

    return np.stack(points), finish


def _fingerprint_group(summaries: list, chosen: DistanceSettings, seed: int) -> list:
    """Fingerprints of summaries of one shape and seed."""
    level = chosen.level
    values, finish = _realization_values(summaries, level, chosen.order_weight)
    count = values.shape[1]
    mean = finish(values.mean(axis=1))
    resampled = finish(values[:, _resamples(seed, count)].mean(axis=2))
    if level == "pooled":
        self_mean, self_resampled = np.zeros(len(summaries)), np.zeros(resampled.shape[:2])
    else:
        self_mean = _mean_pair_distance(mean, mean)
        self_resampled = _mean_pair_distance(resampled, resampled)
    floor = np.full(len(summaries), np.nan)
    if count >= 2:
        half = count // 2
        first = finish(values[:, :half].mean(axis=1))
        second = finish(values[:, half : 2 * half].mean(axis=1))
        if level == "pooled":
            between = np.abs(first - second).max(axis=-1)
        else:
            between = _energy_distances(first, second)
        floor = between / np.sqrt(2.0)
    return [
        Fingerprint(
            summary.source,
            summary.settings,
            level,
            mean[g],
            resampled[g],
            float(self_mean[g]),
            self_resampled[g],
            float(floor[g]),
        )
        for g, summary in enumerate(summaries)
    ]


def distance(a: Fingerprint, b: Fingerprint) -> float:
    """``d(A, B)`` of the realization means (method items 9 and 10)."""
    if a.level == "pooled":
        return float(np.abs(a.mean - b.mean).max())
    return float(_energy(_mean_pair_distance(a.mean, b.mean), a.self_mean, b.self_mean))


def distance_with_spread(a: Fingerprint, b: Fingerprint) -> tuple[float, tuple[float, float]]:
    """``d(A, B)`` and the interval in which the distance of a repeated analysis (another
    seed) falls, 95 %, from the same bootstrap resamples for both networks (method item 11)."""
    return distances_with_spread(a, [b])[0]


def distances_with_spread(
    a: Fingerprint, others: list[Fingerprint]
) -> list[tuple[float, tuple[float, float]]]:
    """:func:`distance_with_spread` of ``a`` and each of ``others``, computed together (the
    same numbers as one pair at a time)."""
    others = list(others)
    return [_spread(a, b, values) for b, values in zip(others, _replicates(a, others))]


def _replicates(a: Fingerprint, others: list[Fingerprint]) -> list[np.ndarray]:
    """The bootstrap replicates d* of ``d(a, b)`` for each of ``others``."""
    replicates: list = [None] * len(others)
    if a.level == "pooled":
        for index, b in enumerate(others):
            replicates[index] = np.abs(a.resampled - b.resampled).max(axis=-1)
    else:
        groups: dict[int, list[int]] = {}
        for index, b in enumerate(others):
            groups.setdefault(b.resampled.shape[1], []).append(index)
        for members in groups.values():
            stacked = np.stack([others[index].resampled for index in members])
            for index, cross in zip(members, _mean_pair_distance(a.resampled[None], stacked)):
                replicates[index] = _energy(cross, a.self_resampled, others[index].self_resampled)
    return replicates


def _spread(a: Fingerprint, b: Fingerprint, replicates: np.ndarray):
    return _interval(distance(a, b), replicates, a.settings.realizations)


def _interval(value: float, replicates: np.ndarray, realizations: int):
    (low, high), _ = replicate_interval(value, replicates, realizations)
    if not np.isfinite(low):
        return value, (value, value)
    return value, (max(low, 0.0), high)


# ---- the design distance (method item 15) ---------------------------------------------

#: The spectral part of the design distance: layer clouds without the order coordinate.
SPECTRAL_PART = DistanceSettings(level="layer", order_weight=0.0)


@dataclass(frozen=True, repr=False)
class DesignPrint:
    """What the design distance compares for one analysis (method item 15).

    Attributes
    ----------
    source : str
        The analysed network.
    spectral : Fingerprint
        Its layer cloud without the order coordinate (:data:`SPECTRAL_PART`).
    structure : numpy.ndarray
        The structural points of its layers, ``(layers, 3)``.
    self_structure : float
        Mean distance between its structural points.
    """

    source: str
    spectral: Fingerprint
    structure: np.ndarray
    self_structure: float

    def __repr__(self) -> str:
        return f"DesignPrint({self.source!r}, {len(self.structure)} layers)"


def design_prints(analyses) -> list[DesignPrint]:
    """The :class:`DesignPrint` of each analysis (or :class:`Summary` that kept its layers'
    structure)."""
    summaries = [summarize(analysis) for analysis in analyses]
    missing = next((s.source for s in summaries if s.structure is None), None)
    if missing is not None:
        raise InputError(
            f"{missing}: the design distance needs the layer shapes, which this index does "
            "not keep; rebuild it with this version of nnequiv"
        )
    out = []
    for summary, spectral in zip(summaries, fingerprints(summaries, SPECTRAL_PART)):
        streams = np.asarray(summary.streams)
        order = np.lexsort((streams[:, 1], streams[:, 0]))
        structure = np.asarray(summary.structure, dtype=float)[order]
        self_structure = float(_mean_pair_distance(structure, structure))
        out.append(DesignPrint(summary.source, spectral, structure, self_structure))
    return out


def structural_distance(a: DesignPrint, b: DesignPrint) -> float:
    """Energy distance between the structural points of two networks' layers."""
    cross = _mean_pair_distance(a.structure, b.structure)
    return float(_energy(cross, a.self_structure, b.self_structure))


def design_distances_with_spread(
    a: DesignPrint, others: list[DesignPrint], structure_weight: float
) -> list[tuple[float, tuple[float, float], tuple[float, float]]]:
    """The design distance ``D = sqrt(d_spectral^2 + (w * d_structural)^2)`` of ``a`` and each
    of ``others``, its spread (the spectral part's bootstrap; the structural part has no
    randomness) and its parts ``(d_spectral, w * d_structural)`` (method item 15)."""
    others = list(others)
    replicates = _replicates(a.spectral, [b.spectral for b in others])
    out = []
    for b, spectral_replicates in zip(others, replicates):
        spectral = distance(a.spectral, b.spectral)
        structural = structure_weight * structural_distance(a, b)
        value = float(np.hypot(spectral, structural))
        _, spread = _interval(
            value, np.hypot(spectral_replicates, structural), a.spectral.settings.realizations
        )
        out.append((value, spread, (spectral, structural)))
    return out


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


def design_part_matrices(prints: list[DesignPrint]) -> tuple[np.ndarray, np.ndarray]:
    """The spectral and the (unweighted) structural part of the design distance between
    every pair of ``prints``, as two symmetric matrices."""
    count = len(prints)
    spectral, structural = np.zeros((count, count)), np.zeros((count, count))
    for i in range(count):
        for j in range(i + 1, count):
            spectral[i, j] = spectral[j, i] = distance(prints[i].spectral, prints[j].spectral)
            structural[i, j] = structural[j, i] = structural_distance(prints[i], prints[j])
    return spectral, structural
