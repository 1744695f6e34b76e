"""Analysis of one network and equivalence between networks (method items 7-12).

:func:`analyze` compares a network's Mixed Matrix Ensemble with its conjugate circular
ensemble; :func:`compare`, :func:`cluster` and :func:`identify` turn analyses into distances,
verdicts, classes and ranked matches. Analyses of the same source and settings are computed
once per call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist, squareform

from nnequiv._seeding import keyed_seed
from nnequiv.connectomes import DEFAULT_DRAWS, DEFAULT_MIXTURE, is_connectome, mixed_ensemble
from nnequiv.csd import (
    DEFAULT_GRID,
    DEFAULT_LOCATIONS,
    DEFAULT_TAIL_QUANTILE,
    DecayFit,
    csd_curve,
    decay_rate,
    layer_csd_points,
    log_grid,
    spectral_density,
)
from nnequiv.ensembles import conjugate_ensemble, ensemble_beta
from nnequiv.errors import InputError
from nnequiv.loading import WeightSource
from nnequiv.spectra import DEFAULT_RTOL, network_spectra, normalize_spectrum

__all__ = [
    "Settings",
    "Analysis",
    "Verdict",
    "Classes",
    "Match",
    "Identification",
    "analyze",
    "compare",
    "cluster",
    "identify",
    "LEVELS",
    "FINGERPRINTS",
]

LEVELS = ("layer", "pooled")
#: Layer-resolved point: signed tail-mass difference (default) or the absolute CSD.
FINGERPRINTS = ("signed", "absolute")
#: Quantile of the compared networks' noise floors that calibrates eps.
EPS_QUANTILE = 0.95


@dataclass(frozen=True)
class Settings:
    """Every option that changes a number (docs/method.md)."""

    ensemble: str = "CUE"
    realizations: int = 10
    seed: int = 0
    normalization: str = "median"
    grid: tuple = DEFAULT_GRID
    locations: tuple = DEFAULT_LOCATIONS
    tail_quantile: float = DEFAULT_TAIL_QUANTILE
    fingerprint: str = "signed"
    order_weight: float | None = None
    include: tuple | None = None
    exclude: tuple | None = None
    layout: str | None = None
    rtol: float = DEFAULT_RTOL
    mixture: float = DEFAULT_MIXTURE
    draws: int = DEFAULT_DRAWS

    def __post_init__(self):
        ensemble_beta(self.ensemble)
        if int(self.realizations) < 1:
            raise InputError(f"realizations must be >= 1, got {self.realizations}")
        if self.fingerprint not in FINGERPRINTS:
            raise InputError(
                f"unknown fingerprint {self.fingerprint!r}; use one of {', '.join(FINGERPRINTS)}"
            )
        if self.order_weight is not None and not float(self.order_weight) > 0:
            raise InputError(f"order_weight must be > 0, got {self.order_weight}")
        if not 0 < self.tail_quantile < 1:
            raise InputError(f"tail_quantile must be in (0, 1), got {self.tail_quantile}")

    @property
    def log_order_weight(self) -> float:
        """Weight of the standardised ``log n`` coordinate of a layer point: by default
        ``sqrt(len(locations))``, so that order and curve weigh the same (method item 10)."""
        if self.order_weight is None:
            return float(np.sqrt(len(self.locations)))
        return float(self.order_weight)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class Analysis:
    """A network's MME against its conjugate circular ensemble.

    Attributes
    ----------
    source : str
        Where the network came from.
    settings : Settings
    layers : list of dict
        Name, shape, (N, M), order n, kept and dropped eigenvalues, method of each layer.
    edges : numpy.ndarray
        Shared log-spaced bin edges; CSD index k sits at ``edges[k]``.
    p_net, p_circ : numpy.ndarray
        Pooled network density and mean conjugate density (mass per bin).
    csd : numpy.ndarray
        CSD of each realisation, shape ``(R, bins)``.
    decay : DecayFit
        Tail decay of the mean CSD.
    tail_start : float
        The ``tail_quantile`` quantile of the pooled normalised spectrum.
    conjugacy : float
        Largest mean CSD from the 99th percentile of the pooled spectrum on: how far the
        far tails of network and conjugate ensemble still differ.
    layer_points : numpy.ndarray
        Layer-resolved points, shape ``(R, layers, len(locations) + 1)``; the last column is
        ``log n``.
    """

    source: str
    settings: Settings
    layers: list[dict]
    edges: np.ndarray = field(repr=False)
    p_net: np.ndarray = field(repr=False)
    p_circ: np.ndarray = field(repr=False)
    csd: np.ndarray = field(repr=False)
    decay: DecayFit = None
    tail_start: float = float("nan")
    conjugacy: float = float("nan")
    layer_points: np.ndarray = field(default=None, repr=False)

    @property
    def csd_mean(self) -> np.ndarray:
        return self.csd.mean(axis=0)

    @property
    def csd_band(self) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise minimum and maximum of the CSD over realisations."""
        return self.csd.min(axis=0), self.csd.max(axis=0)

    def to_dict(self, curves: bool = True) -> dict:
        out = {
            "source": self.source,
            "settings": self.settings.to_dict(),
            "n_layers": len(self.layers),
            "n_eigenvalues": int(sum(layer["n_eigenvalues"] for layer in self.layers)),
            "decay": self.decay.to_dict(),
            "tail_start": float(self.tail_start),
            "conjugacy": float(self.conjugacy),
            "layers": self.layers,
        }
        if curves:
            low, high = self.csd_band
            out["curves"] = {
                "x": self.edges[:-1].tolist(),
                "p_net": self.p_net.tolist(),
                "p_circ": self.p_circ.tolist(),
                "csd_mean": self.csd_mean.tolist(),
                "csd_low": low.tolist(),
                "csd_high": high.tolist(),
            }
        return out


def analyze(
    source,
    ensemble: str = "CUE",
    realizations: int = 10,
    seed: int = 0,
    *,
    settings: Settings | None = None,
    cache_dir: str | os.PathLike | None = None,
    n_jobs: int | None = None,
    **options,
) -> Analysis:
    """Compare a network's Mixed Matrix Ensemble with its conjugate circular ensemble.

    Parameters
    ----------
    source : path, dict, torch module or WeightSource
        The network (anything :func:`nnequiv.loading.open_weights` accepts).
    ensemble : {"COE", "CUE", "CSE"}
        The conjugate circular ensemble.
    realizations : int
        Number R of conjugate ensembles drawn (the CSD band and the distance spread).
    seed : int
        Fixes every draw (method item 13).
    settings : Settings, optional
        All options at once (overrides the arguments above).
    cache_dir : path, optional
        On-disk cache of layer spectra.
    n_jobs : int or None
        Worker processes for the conjugate ensemble (-1: every core). Does not change the
        result.
    **options
        Other :class:`Settings` fields: normalization, grid, locations, tail_quantile,
        fingerprint, order_weight, include, exclude, layout, rtol, and for connectomes
        mixture, draws.

    Returns
    -------
    Analysis
    """
    if settings is None:
        settings = _settings(ensemble=ensemble, realizations=realizations, seed=seed, **options)
    if is_connectome(source):
        layers = mixed_ensemble(source, settings.mixture, settings.draws, settings.seed)
        source = WeightSource(
            str(getattr(source, "label", source)), "out-first", lambda: iter(layers.items())
        )
    spectra = network_spectra(
        source,
        settings.include,
        settings.exclude,
        settings.layout,
        rtol=settings.rtol,
        cache_dir=cache_dir,
    )
    return analysis_from_spectra(spectra.source, spectra.layers, settings, n_jobs)


def _settings(**kwargs) -> Settings:
    for key in ("include", "exclude"):
        value = kwargs.get(key)
        if isinstance(value, str):
            kwargs[key] = (value,)
        elif value is not None:
            kwargs[key] = tuple(value)
    for key in ("grid", "locations"):
        if kwargs.get(key) is not None:
            kwargs[key] = tuple(kwargs[key])
    try:
        return Settings(**kwargs)
    except TypeError as exc:
        raise InputError(f"unknown option: {exc}") from exc


def analysis_from_spectra(
    label: str, layer_spectra, settings: Settings, n_jobs: int | None = None
) -> Analysis:
    """The :class:`Analysis` of already computed layer spectra (lets callers reuse spectra)."""
    edges = log_grid(*settings.grid)
    normalised = [
        normalize_spectrum(layer.eigenvalues, settings.normalization) for layer in layer_spectra
    ]
    orders = [layer.order for layer in layer_spectra]
    conjugates = conjugate_ensemble(
        orders, settings.ensemble, settings.realizations, settings.seed, n_jobs=n_jobs
    )
    pooled = np.concatenate(normalised)
    p_net = spectral_density(pooled, edges)
    p_circ_each = np.array(
        [
            spectral_density(np.concatenate([layer[r] for layer in conjugates]), edges)
            for r in range(settings.realizations)
        ]
    )
    csd = csd_curve(p_net, p_circ_each)
    tail_start, far_start = np.quantile(pooled, [settings.tail_quantile, 0.99])
    far_tail = edges[:-1] >= far_start
    mean_csd = csd.mean(axis=0)
    conjugacy = float(mean_csd[far_tail].max()) if far_tail.any() else 0.0
    points = np.stack(
        [
            layer_csd_points(
                values,
                conjugate,
                edges,
                settings.locations,
                signed=settings.fingerprint == "signed",
            )
            for values, conjugate in zip(normalised, conjugates)
        ],
        axis=1,
    )
    log_orders = np.broadcast_to(
        np.log(np.asarray(orders, float))[None, :, None], points.shape[:2] + (1,)
    )
    rows = [
        {
            "name": layer.name,
            "shape": list(layer.shape),
            "matrix_shape": list(layer.matrix_shape),
            "order": layer.order,
            "n_eigenvalues": int(layer.eigenvalues.size),
            "n_dropped": int(layer.n_dropped),
            "method": layer.method,
        }
        for layer in layer_spectra
    ]
    return Analysis(
        label,
        settings,
        rows,
        edges,
        p_net,
        p_circ_each.mean(axis=0),
        csd,
        decay_rate(edges, mean_csd, tail_start),
        float(tail_start),
        conjugacy,
        np.concatenate([points, log_orders], axis=2),
    )


# ---- distances ---------------------------------------------------------------------------


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """``sqrt(2 E|X - Y| - E|X - X'| - E|Y - Y'|)`` between two point clouds (rows)."""
    value = 2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean()
    return float(np.sqrt(max(value, 0.0)))


def _feature_scale(
    analyses: Sequence[Analysis], settings: Settings
) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale of the layer features over a set (method item 10): mean and standard
    deviation of the single-realisation points of every layer, the ``log n`` scale divided by
    its weight. Taking single realisations keeps a coordinate that carries only conjugate
    noise from being blown up by standardisation."""
    width = analyses[0].layer_points.shape[-1]
    stacked = np.concatenate([a.layer_points.reshape(-1, width) for a in analyses], axis=0)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    std[std == 0] = 1.0
    std[-1] /= settings.log_order_weight
    return mean, std


#: Bootstrap resamples of the realisations that give a distance its spread.
BOOTSTRAP = 32


def _level_values(a: Analysis, level: str, scale, realisations=None) -> np.ndarray:
    """What the distance compares, averaged over the chosen realisations: the mean CSD curve
    (pooled level) or the standardised mean layer cloud (layer level)."""
    chosen = slice(None) if realisations is None else realisations
    if level == "pooled":
        return a.csd[chosen].mean(axis=0)
    mean, std = scale
    return (a.layer_points[chosen].mean(axis=0) - mean) / std


def _distance(x: np.ndarray, y: np.ndarray, level: str) -> float:
    if level == "pooled":
        return float(np.abs(x - y).max())
    return energy_distance(x, y)


def _pair_distance(a: Analysis, b: Analysis, level: str, scale) -> tuple[float, tuple]:
    """Distance of the realisation means, and its bootstrap spread over realisations (the
    same resampled realisations for both networks), 2.5 to 97.5 percent."""
    distance = _distance(_level_values(a, level, scale), _level_values(b, level, scale), level)
    count = min(a.csd.shape[0], b.csd.shape[0])
    rng = np.random.default_rng(keyed_seed(a.settings.seed, 2**20))
    samples = [
        _distance(_level_values(a, level, scale, pick), _level_values(b, level, scale, pick), level)
        for pick in rng.integers(0, count, size=(BOOTSTRAP, count))
    ]
    low, high = np.quantile(samples, [0.025, 0.975])
    return distance, (float(min(low, distance)), float(max(high, distance)))


def _noise_floor(a: Analysis, level: str, scale) -> float:
    """Distance expected between two independent analyses of the same network: the distance
    between the means of the two halves of its realisations, divided by sqrt(2)."""
    count = a.csd.shape[0]
    if count < 2:
        return float("nan")
    half = count // 2
    first = _level_values(a, level, scale, slice(0, half))
    second = _level_values(a, level, scale, slice(half, 2 * half))
    return _distance(first, second, level) / np.sqrt(2.0)


def _check_level(level: str) -> str:
    if level not in LEVELS:
        raise InputError(f"unknown level {level!r}; use 'layer' or 'pooled'")
    return level


def _resolve_eps(eps, analyses, level, scale) -> tuple[float, str]:
    """The given eps, or the 95th percentile of the networks' noise floors (method item 11)."""
    if eps is not None:
        return float(eps), "given"
    floors = np.array([_noise_floor(a, level, scale) for a in analyses])
    if not np.isfinite(floors).all():
        raise InputError(
            "eps cannot be calibrated from a single realisation; give eps or realizations >= 2"
        )
    return float(np.quantile(floors, EPS_QUANTILE)), "calibrated"


def _analysed_set(
    sources, level, cache_dir, progress, n_jobs=None, **settings
) -> tuple[list, tuple]:
    """Analyses of the sources (each computed once) and the feature scale over them."""
    _check_level(level)
    chosen = _settings(**settings)
    analyses = _analyse_each(list(sources), chosen, cache_dir, progress, n_jobs)
    return analyses, _feature_scale(analyses, chosen)


@dataclass
class Verdict:
    """Equivalence of two networks at accuracy eps (method item 11)."""

    a: str
    b: str
    level: str
    distance: float
    spread: tuple[float, float]
    eps: float
    eps_source: str
    verdict: str

    def to_dict(self) -> dict:
        return {
            "a": self.a,
            "b": self.b,
            "level": self.level,
            "distance": self.distance,
            "spread": list(self.spread),
            "eps": self.eps,
            "eps_source": self.eps_source,
            "verdict": self.verdict,
        }


def decide(distance: float, spread: tuple[float, float], eps: float) -> str:
    """ "equivalent" (d <= eps), "not equivalent", or "undecided" when eps lies inside the
    spread of d over realisations."""
    low, high = spread
    if low <= eps < high:
        return "undecided"
    return "equivalent" if distance <= eps else "not equivalent"


def _analyse_each(
    sources, settings: Settings, cache_dir=None, progress: Callable | None = None, n_jobs=None
) -> list[Analysis]:
    """Analyses of the sources, each distinct source computed once; finished analyses are
    used as they are."""
    done: dict = {}
    out = []
    for index, source in enumerate(sources):
        if isinstance(source, Analysis):
            out.append(source)
            continue
        key = os.fspath(source) if isinstance(source, (str, os.PathLike)) else id(source)
        if key not in done:
            done[key] = analyze(source, settings=settings, cache_dir=cache_dir, n_jobs=n_jobs)
        out.append(done[key])
        if progress:
            progress(index + 1, len(sources), str(key))
    return out


def compare(
    a,
    b,
    level: str = "layer",
    eps: float | None = None,
    *,
    ensemble: str = "CUE",
    realizations: int = 10,
    seed: int = 0,
    cache_dir=None,
    n_jobs: int | None = None,
    **options,
) -> Verdict:
    """Decide whether two networks are equivalent (method items 9-11).

    Parameters
    ----------
    a, b : source or Analysis
        The networks (anything :func:`analyze` accepts, or finished analyses).
    level : {"layer", "pooled"}
        Layer-resolved energy distance of CSD clouds, or the paper's pooled sup distance.
    eps : float, optional
        Accuracy. When None it is calibrated: the 95th percentile, over the compared
        networks, of the distance expected between two independent analyses of the same
        network (half-split of its realisations, divided by sqrt 2).
    ensemble, realizations, seed, cache_dir, n_jobs, **options
        As for :func:`analyze`.

    Returns
    -------
    Verdict
        Distance of the realisation means, its bootstrap spread, eps and the verdict.
    """
    (first, second), scale = _analysed_set(
        [a, b],
        level,
        cache_dir,
        None,
        n_jobs,
        ensemble=ensemble,
        realizations=realizations,
        seed=seed,
        **options,
    )
    distance, spread = _pair_distance(first, second, level, scale)
    eps, eps_source = _resolve_eps(eps, [first, second], level, scale)
    return Verdict(
        first.source,
        second.source,
        level,
        distance,
        spread,
        eps,
        eps_source,
        decide(distance, spread, eps),
    )


def _distance_matrix(analyses, level, scale):
    count = len(analyses)
    distance = np.zeros((count, count))
    low = np.zeros((count, count))
    high = np.zeros((count, count))
    for i in range(count):
        for j in range(i + 1, count):
            value, (lo, hi) = _pair_distance(analyses[i], analyses[j], level, scale)
            distance[i, j] = distance[j, i] = value
            low[i, j] = low[j, i] = lo
            high[i, j] = high[j, i] = hi
    return distance, low, high


@dataclass
class Classes:
    """Equivalence classes of a set of networks (method item 12)."""

    models: list[str]
    level: str
    distance: np.ndarray
    spread_low: np.ndarray
    spread_high: np.ndarray
    eps: float
    eps_source: str
    classes: list[list[str]]
    linkage: np.ndarray

    def to_dict(self) -> dict:
        return {
            "models": self.models,
            "level": self.level,
            "distance": self.distance.tolist(),
            "spread": [self.spread_low.tolist(), self.spread_high.tolist()],
            "eps": self.eps,
            "eps_source": self.eps_source,
            "classes": self.classes,
            "linkage": self.linkage.tolist(),
        }


def _check_sources(sources) -> list:
    sources = list(sources)
    if not sources:
        raise InputError("no networks given: the set to compare is empty")
    return sources


def cluster(
    sources,
    eps: float | None = None,
    level: str = "layer",
    *,
    ensemble: str = "CUE",
    realizations: int = 10,
    seed: int = 0,
    cache_dir=None,
    progress: Callable | None = None,
    n_jobs: int | None = None,
    **options,
) -> Classes:
    """Sort networks into equivalence classes.

    The classes are the connected components of the graph ``d <= eps`` (a threshold is not
    transitive); the average-linkage tree of the distances shows the whole structure.
    Features are standardised over the set. ``eps=None`` calibrates it over the set as in
    :func:`compare`. Each source is analysed once.
    """
    analyses, scale = _analysed_set(
        _check_sources(sources),
        level,
        cache_dir,
        progress,
        n_jobs,
        ensemble=ensemble,
        realizations=realizations,
        seed=seed,
        **options,
    )
    distance, low, high = _distance_matrix(analyses, level, scale)
    eps, eps_source = _resolve_eps(eps, analyses, level, scale)
    names = [a.source for a in analyses]
    _, labels = connected_components(distance <= eps, directed=False)
    order = sorted(set(labels), key=lambda c: int(np.flatnonzero(labels == c)[0]))
    classes = [[names[i] for i in np.flatnonzero(labels == c)] for c in order]
    tree = (
        linkage(squareform(distance, checks=False), "average")
        if len(names) > 1
        else np.zeros((0, 4))
    )
    return Classes(names, level, distance, low, high, eps, eps_source, classes, tree)


@dataclass
class Match:
    path: str
    distance: float
    spread: tuple[float, float]


@dataclass
class Identification:
    """Library networks ranked by distance to a query, nearest first."""

    query: str
    level: str
    matches: list[Match]

    def to_dict(self) -> dict:
        return {
            "query": self.query,
            "level": self.level,
            "matches": [
                {"path": m.path, "distance": m.distance, "spread": list(m.spread)}
                for m in self.matches
            ],
        }


def identify(
    query,
    library,
    top: int = 5,
    level: str = "layer",
    *,
    ensemble: str = "CUE",
    realizations: int = 10,
    seed: int = 0,
    cache_dir=None,
    progress: Callable | None = None,
    n_jobs: int | None = None,
    **options,
) -> Identification:
    """Which known design is this checkpoint? Rank ``library`` by distance to ``query``.

    Features are standardised over the library and the query together.
    """
    if top < 1:
        raise InputError(f"top must be >= 1, got {top}")
    analyses, scale = _analysed_set(
        [query, *_check_sources(library)],
        level,
        cache_dir,
        progress,
        n_jobs,
        ensemble=ensemble,
        realizations=realizations,
        seed=seed,
        **options,
    )
    target = analyses[0]
    matches = []
    for candidate in analyses[1:]:
        distance, spread = _pair_distance(target, candidate, level, scale)
        matches.append(Match(candidate.source, distance, spread))
    matches.sort(key=lambda m: m.distance)
    return Identification(target.source, level, matches[:top])
