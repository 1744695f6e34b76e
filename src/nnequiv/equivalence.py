"""Equivalence of networks (method items 11 and 12): verdicts, classes and ranked matches.

:func:`compare` decides a pair, :func:`cluster` sorts a set into classes and :func:`identify`
ranks a library by distance to a query. Every distance, spread and calibrated eps of a pair
depends on that pair alone (and the settings), whichever other networks are analysed with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform

from nnequiv._display import display_names, frame, html_table
from nnequiv._version import __version__
from nnequiv.analysis import Analysis, analyze
from nnequiv.discovery import discover
from nnequiv.distances import Fingerprint, check_comparable, distance_with_spread, fingerprint
from nnequiv.errors import InputError, NNEquivError
from nnequiv.explain import Explanation, explain
from nnequiv.settings import DistanceSettings, Settings, split_options

__all__ = [
    "analyze_all",
    "Verdict",
    "Classes",
    "Match",
    "Identification",
    "compare",
    "cluster",
    "identify",
    "decide",
    "pair_eps",
    "VERDICTS",
]

VERDICTS = ("equivalent", "not equivalent", "undecided")


def pair_eps(a: Fingerprint, b: Fingerprint) -> float:
    """The calibrated accuracy of a pair (method item 11): the larger of the two networks'
    noise floors."""
    return float(max(a.noise_floor, b.noise_floor))


def decide(distance: float, spread: tuple[float, float], eps: float) -> str:
    """ "undecided" when eps lies inside the spread of d (``low <= eps < high``); otherwise
    "equivalent" when ``d <= eps``, else "not equivalent"."""
    low, high = spread
    if low <= eps < high:
        return "undecided"
    return "equivalent" if distance <= eps else "not equivalent"


def check_eps(eps) -> float | None:
    """``eps`` as a float, or None; refuses negative, NaN and infinite values."""
    if eps is None:
        return None
    value = float(eps)
    if not np.isfinite(value) or value < 0:
        raise InputError(f"eps must be a finite number >= 0, got {eps!r}")
    return value


def _resolve_eps(eps: float | None, a: Fingerprint, b: Fingerprint) -> tuple[float, str]:
    if eps is not None:
        return eps, "given"
    value = pair_eps(a, b)
    if not np.isfinite(value):
        raise InputError(
            "eps cannot be calibrated from a single realisation; give eps or realizations >= 2"
        )
    return value, "calibrated"


@dataclass(repr=False)
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
    settings: Settings = field(default_factory=Settings)
    distance_settings: DistanceSettings = field(default_factory=DistanceSettings)
    explanation: Explanation | None = None
    version: str = __version__

    def __repr__(self) -> str:
        return (
            f"Verdict({self.a!r} vs {self.b!r}: {self.verdict}, d={self.distance:.4f} "
            f"[{self.spread[0]:.4f}, {self.spread[1]:.4f}], eps={self.eps:.4f})"
        )

    def _repr_html_(self) -> str:
        rows = [
            ("a", self.a),
            ("b", self.b),
            ("level", self.level),
            ("distance", self.distance),
            ("spread", f"[{self.spread[0]:.4f}, {self.spread[1]:.4f}]"),
            ("eps", f"{self.eps:.4f} ({self.eps_source})"),
            ("verdict", self.verdict),
        ]
        if self.explanation is not None:
            rows += [("because", line) for line in self.explanation.lines()]
        return html_table("Verdict", rows)

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
            "explanation": None if self.explanation is None else self.explanation.to_dict(),
            "settings": self.settings.to_dict(),
            "distance_settings": self.distance_settings.to_dict(),
            "version": self.version,
        }


@dataclass(repr=False)
class Classes:
    """Equivalence classes of a set of networks (method item 12).

    Attributes
    ----------
    models : list of str
        The networks (their names: discovery labels), in input order.
    paths : list of str or None
        The file of each network, where it has one.
    labels_ : numpy.ndarray
        Class index of each network (scikit-learn style), classes numbered by first member.
    distance, spread_low, spread_high, eps_pairs : numpy.ndarray
        Pairwise distance, its spread and the eps of each pair.
    verdicts : numpy.ndarray
        Pairwise verdict strings (the diagonal is "equivalent").
    eps : float
        Summary: the median eps over the pairs.
    classes : list of list of str
        Connected components of the pairs judged "equivalent".
    linkage : numpy.ndarray
        Average-linkage tree of the distances (SciPy format).
    """

    models: list[str]
    level: str
    distance: np.ndarray
    spread_low: np.ndarray
    spread_high: np.ndarray
    eps_pairs: np.ndarray
    verdicts: np.ndarray
    eps: float
    eps_source: str
    classes: list[list[str]]
    labels_: np.ndarray
    linkage: np.ndarray
    paths: list = field(default_factory=list)
    settings: Settings = field(default_factory=Settings)
    distance_settings: DistanceSettings = field(default_factory=DistanceSettings)
    version: str = __version__

    def __repr__(self) -> str:
        return (
            f"Classes({len(self.models)} networks, {len(self.classes)} "
            f"class{'es' if len(self.classes) != 1 else ''}, {self.level} level, "
            f"median eps={self.eps:.4f})"
        )

    def _repr_html_(self) -> str:
        body = [(m, int(label) + 1) for m, label in zip(self.models, self.labels_)]
        caption = f"{len(self.classes)} classes of {len(self.models)} networks ({self.level})"
        return html_table(caption, table=(["network", "class"], body))

    def to_frame(self):
        """One row per network (pandas DataFrame): its class and its distance to each."""
        return frame(
            [
                {"model": m, "class": int(label), **dict(zip(self.models, row))}
                for m, label, row in zip(self.models, self.labels_, self.distance)
            ],
            index="model",
        )

    def to_dict(self) -> dict:
        return {
            "models": self.models,
            "paths": self.paths,
            "level": self.level,
            "distance": self.distance.tolist(),
            "spread": [self.spread_low.tolist(), self.spread_high.tolist()],
            "eps": self.eps,
            "eps_pairs": self.eps_pairs.tolist(),
            "eps_source": self.eps_source,
            "verdicts": self.verdicts.tolist(),
            "classes": self.classes,
            "labels": self.labels_.tolist(),
            "linkage": self.linkage.tolist(),
            "settings": self.settings.to_dict(),
            "distance_settings": self.distance_settings.to_dict(),
            "version": self.version,
        }


@dataclass
class Match:
    """One library network and its distance to the query."""

    path: str
    distance: float
    spread: tuple[float, float]
    eps: float
    verdict: str

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "distance": self.distance,
            "spread": list(self.spread),
            "eps": self.eps,
            "verdict": self.verdict,
        }


@dataclass(repr=False)
class Identification:
    """Library networks ranked by distance to a query, nearest first."""

    query: str
    level: str
    matches: list[Match]
    eps_source: str = "calibrated"
    settings: Settings = field(default_factory=Settings)
    distance_settings: DistanceSettings = field(default_factory=DistanceSettings)
    version: str = __version__

    def __repr__(self) -> str:
        best = f", nearest {self.matches[0].path!r}" if self.matches else ""
        return f"Identification({self.query!r}, {len(self.matches)} matches{best})"

    def _repr_html_(self) -> str:
        header = ["rank", "network", "distance", "eps", "verdict"]
        body = [
            (rank, m.path, m.distance, m.eps, m.verdict) for rank, m in enumerate(self.matches, 1)
        ]
        return html_table(f"nearest to {self.query}", table=(header, body))

    def to_frame(self):
        """One row per match, nearest first (pandas DataFrame)."""
        rows = [{"rank": rank, **m.to_dict()} for rank, m in enumerate(self.matches, 1)]
        return frame(rows, index="rank")

    def to_dict(self) -> dict:
        return {
            "query": self.query,
            "level": self.level,
            "eps_source": self.eps_source,
            "matches": [m.to_dict() for m in self.matches],
            "settings": self.settings.to_dict(),
            "distance_settings": self.distance_settings.to_dict(),
            "version": self.version,
        }


# ---- analyses of a set -----------------------------------------------------------------


def analyze_all(
    sources,
    settings: Settings | None = None,
    *,
    cache_dir=None,
    progress: Callable | None = None,
    n_jobs: int | None = None,
    connectomes: bool = False,
    notes: Callable[[str], None] | None = None,
    on_error: Callable[[str, Exception], None] | None = None,
    **options,
) -> list[Analysis]:
    """The analyses of many sources, all checked to share their analysis settings.

    Files, folders, index files, Hugging Face caches and hub ids are found with
    :func:`nnequiv.discovery.discover` (``connectomes`` and ``notes`` are passed to it); each
    network found is analysed once and named by its discovery label (``Analysis.source``;
    ``Analysis.path`` keeps its file). Finished analyses are used as they are. Options as
    for :func:`compare`; ``progress(done, total, label)`` is called after each analysis.
    With ``on_error``, a network that cannot be analysed is passed to it with its error and
    left out; without, the error is raised.
    """
    return _analyse_each(
        list(sources), options, settings, cache_dir, progress, n_jobs,
        connectomes=connectomes, notes=notes, on_error=on_error,
    )[0]  # fmt: skip


def _discovered(sources: list, connectomes: bool, notes) -> list:
    """Each source as itself (a finished Analysis) or as the networks discovery finds in it,
    in order; labels made unique across all of them."""
    out = []
    for source in sources:
        if isinstance(source, Analysis):
            out.append(source)
        else:
            out += discover(source, connectomes=connectomes, notes=notes)
    found = [item for item in out if not isinstance(item, Analysis)]
    labels = [item.label for item in found]
    if len(set(labels)) < len(labels):
        unique = display_names([str(item.path or item.label) for item in found])
        relabelled = iter(replace(item, label=label) for item, label in zip(found, unique))
        out = [item if isinstance(item, Analysis) else next(relabelled) for item in out]
    return out


def _analyse_each(
    sources: Sequence,
    options: dict,
    settings: Settings | None,
    cache_dir=None,
    progress: Callable | None = None,
    n_jobs=None,
    *,
    connectomes: bool = False,
    notes=None,
    on_error=None,
) -> tuple[list[Analysis], DistanceSettings]:
    """Analyses of the sources (each distinct source computed once, finished analyses used as
    they are, all checked to share their settings), and the distance settings."""
    analysis_settings, distance_settings, *_ = split_options(options, base=settings)
    distance_names = {f.name for f in fields(DistanceSettings)}
    analysis_options = {k: v for k, v in options.items() if k not in distance_names}
    chosen_explicitly = settings is not None or any(
        k in {f.name for f in fields(Settings)} for k in options
    )
    items = _discovered(list(sources), connectomes, notes)
    done: dict = {}
    out = []
    for index, item in enumerate(items):
        if isinstance(item, Analysis):
            if chosen_explicitly:
                check_comparable([_Requested(analysis_settings), item])
            out.append(item)
        else:
            key = item.path or id(item.source)
            if key not in done:
                try:
                    analysis = analyze(
                        item.source,
                        analysis_settings,
                        cache_dir=cache_dir,
                        n_jobs=n_jobs,
                        **analysis_options,
                    )
                except NNEquivError as exc:
                    if on_error is None:
                        raise
                    on_error(item.label, exc)
                    continue
                analysis.source, analysis.path = item.label, item.path and str(item.path)
                done[key] = analysis
            out.append(done[key])
        if progress:
            progress(index + 1, len(items), out[-1].source)
    if not out:
        raise InputError("no network could be analysed")
    check_comparable(out)
    return out, distance_settings


@dataclass(frozen=True)
class _Requested:
    """The settings a caller asked for, in the shape :func:`check_comparable` reads."""

    settings: Settings
    source: str = "the settings requested"


def _check_sources(sources) -> list:
    sources = list(sources)
    if not sources:
        raise InputError("no networks given: the set to compare is empty")
    return sources


def _judge(a: Fingerprint, b: Fingerprint, eps: float | None) -> tuple:
    """Distance, spread, eps, eps source and verdict of one pair."""
    value, spread = distance_with_spread(a, b)
    pair, source = _resolve_eps(eps, a, b)
    return value, spread, pair, source, decide(value, spread, pair)


# ---- the three questions ---------------------------------------------------------------


def compare(
    a,
    b,
    *,
    eps: float | None = None,
    settings: Settings | None = None,
    cache_dir=None,
    n_jobs: int | None = None,
    **options,
) -> Verdict:
    """Decide whether two networks are equivalent (method items 9-11).

    Parameters
    ----------
    a, b : source or Analysis
        The networks (anything :func:`nnequiv.analyze` accepts, or finished analyses, which
        must share their analysis settings).
    eps : float, optional
        Accuracy. When None it is calibrated from the pair alone: the larger of the two
        networks' noise floors (the distance expected between two independent analyses of
        the same network).
    settings, cache_dir, n_jobs, **options
        As for :func:`nnequiv.analyze`; options also take the
        :class:`~nnequiv.settings.DistanceSettings` fields ``level`` ("layer" or "pooled")
        and ``order_weight``.

    Returns
    -------
    Verdict
        Distance of the realisation means, its spread (where the distance of an analysis
        with another seed falls, 95 %), eps, the verdict, and its explanation: the layers
        that contribute most to the distance (:func:`nnequiv.explain.explain`).
    """
    eps = check_eps(eps)
    (first, second), distance_settings = _analyse_each(
        [a, b], options, settings, cache_dir, None, n_jobs
    )
    fa, fb = fingerprint(first, distance_settings), fingerprint(second, distance_settings)
    value, spread, pair, source, verdict = _judge(fa, fb, eps)
    return Verdict(
        first.source,
        second.source,
        distance_settings.level,
        value,
        spread,
        pair,
        source,
        verdict,
        first.settings,
        distance_settings,
        explain(first, second, distance_settings),
    )


def cluster(
    sources,
    *,
    eps: float | None = None,
    settings: Settings | None = None,
    cache_dir=None,
    progress: Callable | None = None,
    n_jobs: int | None = None,
    **options,
) -> Classes:
    """Sort networks into equivalence classes (method item 12).

    The classes are the connected components of the pairs judged "equivalent" ("undecided"
    pairs do not join); the average-linkage tree of the distances shows the whole structure.
    Every pair gets its own eps, calibrated from its two networks as in :func:`compare`.
    Options as for :func:`compare`; ``progress(done, total, label)`` is called after each
    analysis.
    """
    eps = check_eps(eps)
    analyses, distance_settings = _analyse_each(
        _check_sources(sources), options, settings, cache_dir, progress, n_jobs
    )
    prints = [fingerprint(a, distance_settings) for a in analyses]
    count = len(prints)
    distance = np.zeros((count, count))
    low, high, pair_eps_matrix = (np.zeros_like(distance) for _ in range(3))
    verdicts = np.full((count, count), "equivalent", dtype=object)
    source = "given" if eps is not None else "calibrated"
    for i in range(count):
        pair_eps_matrix[i, i] = eps if eps is not None else prints[i].noise_floor
        for j in range(i + 1, count):
            value, (lo, hi), pair, source, verdict = _judge(prints[i], prints[j], eps)
            distance[i, j] = distance[j, i] = value
            low[i, j] = low[j, i] = lo
            high[i, j] = high[j, i] = hi
            pair_eps_matrix[i, j] = pair_eps_matrix[j, i] = pair
            verdicts[i, j] = verdicts[j, i] = verdict
    names = [a.source for a in analyses]
    _, labels = connected_components(verdicts == "equivalent", directed=False)
    first_member = {c: int(np.flatnonzero(labels == c)[0]) for c in set(labels)}
    order = sorted(first_member, key=first_member.get)
    renumber = {c: k for k, c in enumerate(order)}
    labels = np.array([renumber[c] for c in labels], dtype=int)
    classes = [[names[i] for i in np.flatnonzero(labels == k)] for k in range(len(order))]
    tree = linkage(squareform(distance, checks=False), "average") if count > 1 else np.zeros((0, 4))
    off_diagonal = pair_eps_matrix[~np.eye(count, dtype=bool)] if count > 1 else pair_eps_matrix
    return Classes(
        names,
        distance_settings.level,
        distance,
        low,
        high,
        pair_eps_matrix,
        verdicts.astype(str),
        float(np.median(off_diagonal)),
        source,
        classes,
        labels,
        tree,
        [a.path for a in analyses],
        analyses[0].settings,
        distance_settings,
    )


def identify(
    query,
    library,
    *,
    top: int = 5,
    eps: float | None = None,
    settings: Settings | None = None,
    cache_dir=None,
    progress: Callable | None = None,
    n_jobs: int | None = None,
    **options,
) -> Identification:
    """Which known design is this checkpoint? Rank ``library`` by distance to ``query``.

    Each match carries its distance, spread, eps and verdict, exactly as :func:`compare`
    would give them for that pair. Options as for :func:`compare`.
    """
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise InputError(f"top must be an integer >= 1, got {top!r}")
    eps = check_eps(eps)
    analyses, distance_settings = _analyse_each(
        [query, *_check_sources(library)], options, settings, cache_dir, progress, n_jobs
    )
    target = fingerprint(analyses[0], distance_settings)
    matches = []
    source = "given" if eps is not None else "calibrated"
    for candidate in analyses[1:]:
        value, spread, pair, source, verdict = _judge(
            target, fingerprint(candidate, distance_settings), eps
        )
        matches.append(Match(candidate.source, value, spread, pair, verdict))
    matches.sort(key=lambda m: m.distance)
    return Identification(
        analyses[0].source,
        distance_settings.level,
        matches[:top],
        source,
        analyses[0].settings,
        distance_settings,
    )
