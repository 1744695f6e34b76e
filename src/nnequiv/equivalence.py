"""Equivalence of networks (method items 11 and 12): verdicts, classes and ranked matches.

:func:`compare` decides a pair, :func:`cluster` sorts a set into classes and :func:`identify`
ranks a library by distance to a query. Every distance, spread and calibrated eps of a pair
depends on that pair alone (and the settings), whichever other networks are analysed with it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from nnequiv._display import display_names
from nnequiv.analysis import Analysis
from nnequiv.discovery import discover
from nnequiv.distances import (
    Fingerprint,
    Summary,
    check_comparable,
    distances_with_spread,
    fingerprint,
    fingerprints,
)
from nnequiv.errors import InputError
from nnequiv.explain import explain
from nnequiv.results import Classes, Identification, Match, Verdict
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


# ---- analyses of a set -----------------------------------------------------------------


def analyze_all(
    sources,
    settings: Settings | None = None,
    *,
    cache_dir=None,
    progress: Callable | None = None,
    n_jobs: int | None = None,
    scheduler=None,
    connectomes: bool = False,
    notes: Callable[[str], None] | None = None,
    on_error: Callable[[str, Exception], None] | None = None,
    **options,
) -> list:
    """The analyses of many sources, all checked to share their analysis settings.

    Files, folders, index files, Hugging Face caches and hub ids are found with
    :func:`nnequiv.discovery.discover` (``connectomes`` and ``notes`` are passed to it); each
    network found is analysed once (or read from the cache, :mod:`nnequiv.cache`) and named
    by its discovery label (``Analysis.source``; ``Analysis.path`` keeps its file). Finished
    analyses, and the networks of a fingerprint index (:mod:`nnequiv.index`), are used as
    they are. Options as for :func:`compare`; ``scheduler`` as in
    :func:`nnequiv.scheduler.analyse_all`; ``progress(done, total, label)`` is called as
    analyses arrive. With ``on_error``, a network that cannot be analysed is passed to it
    with its error and left out; without, the error is raised.
    """
    return _analyse_each(
        list(sources), options, settings, cache_dir, progress, n_jobs, scheduler,
        connectomes=connectomes, notes=notes, on_error=on_error,
    )[0]  # fmt: skip


def _expand_libraries(sources: Sequence, level: str) -> tuple[list, list]:
    """Sources with every fingerprint index (a :class:`~nnequiv.index.Library` or the path
    of an index file, read with its curves for the pooled level) replaced by its networks'
    summaries, and the indexes."""
    from nnequiv.index import Library, is_index, open_index

    out, libraries = [], []
    for source in sources:
        if not isinstance(source, Library) and is_index(source):
            source = open_index(source, curves=level == "pooled")
        if isinstance(source, Library):
            libraries.append(source)
            out += source.summaries
        else:
            out.append(source)
    return out, libraries


def _discovered(sources: list, connectomes: bool, notes, on_error=None) -> list:
    """Each source as itself (a finished Analysis or Summary) or as the networks discovery
    finds in it, in order; labels made unique across all of them."""
    out = []
    for source in sources:
        if isinstance(source, (Analysis, Summary)):
            out.append(source)
        else:
            out += discover(source, connectomes=connectomes, notes=notes, on_error=on_error)
    found = [item for item in out if not isinstance(item, (Analysis, Summary))]
    labels = [item.label for item in found]
    if len(set(labels)) < len(labels):
        unique = display_names([str(item.path or item.label) for item in found])
        relabelled = iter(replace(item, label=label) for item, label in zip(found, unique))
        out = [item if isinstance(item, (Analysis, Summary)) else next(relabelled) for item in out]
    return out


def _analyse_each(
    sources: Sequence,
    options: dict,
    settings: Settings | None,
    cache_dir=None,
    progress: Callable | None = None,
    n_jobs=None,
    scheduler=None,
    *,
    connectomes: bool = False,
    notes=None,
    on_error=None,
) -> tuple[list, DistanceSettings]:
    """Analyses of the sources (each distinct network computed once, or read from the cache;
    finished analyses, summaries and fingerprint indexes used as they are, all checked to
    share their settings), and the distance settings."""
    from nnequiv.index import check_index_settings
    from nnequiv.scheduler import analyse_all

    analysis_settings, distance_settings, *_ = split_options(options, base=settings)
    distance_names = {f.name for f in fields(DistanceSettings)}
    analysis_options = {k: v for k, v in options.items() if k not in distance_names}
    chosen_explicitly = settings is not None or any(
        k in {f.name for f in fields(Settings)} for k in options
    )
    sources, libraries = _expand_libraries(sources, distance_settings.level)
    items = _discovered(sources, connectomes, notes, on_error)
    finished = [isinstance(item, (Analysis, Summary)) for item in items]
    if chosen_explicitly or not all(finished):
        for library in libraries:
            check_index_settings(library, analysis_settings)
    if not items:
        raise InputError("no networks given: the set to compare is empty")
    positions: dict = {}
    for item, done in zip(items, finished):
        if not done:
            positions.setdefault(_source_key(item), item)
    results = analyse_all(
        [item.source for item in positions.values()],
        analysis_settings,
        analysis_options,
        cache_dir=cache_dir,
        scheduler=scheduler,
        n_jobs=n_jobs,
        progress=progress,
        errors="return" if on_error is not None else "raise",
    )
    analysed = {}
    for (key, item), result in zip(positions.items(), results):
        if isinstance(result, Exception):
            on_error(item.label, result)
            continue
        result.source, result.path = item.label, item.path and str(Path(item.path).resolve())
        analysed[key] = result
    out = []
    for item, done in zip(items, finished):
        if done:
            if chosen_explicitly:
                check_comparable([_Requested(analysis_settings), item])
            out.append(item)
        elif _source_key(item) in analysed:
            out.append(analysed[_source_key(item)])
    if not out:
        raise InputError("no network could be analysed")
    check_comparable(out)
    return out, distance_settings


def _source_key(item):
    """One key per distinct network: its file, or the object it was given as."""
    path = getattr(item, "path", None)
    if path is not None:
        return os.fspath(path)
    source = getattr(item, "source", item)
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else id(source)


@dataclass(frozen=True)
class _Requested:
    """The settings a caller asked for, in the shape :func:`check_comparable` reads."""

    settings: Settings
    source: str = "the settings requested"


def _check_sources(sources) -> list:
    from nnequiv.index import Library

    if isinstance(sources, (str, os.PathLike, Library)):
        sources = [sources]
    sources = list(sources)
    if not sources:
        raise InputError("no networks given: the set to compare is empty")
    return sources


def _judge(a: Fingerprint, others: Sequence[Fingerprint], eps: float | None) -> list[tuple]:
    """Distance, spread, eps, eps source and verdict of ``a`` with each of ``others``."""
    judged = []
    for b, (value, spread) in zip(others, distances_with_spread(a, others)):
        pair, source = _resolve_eps(eps, a, b)
        judged.append((value, spread, pair, source, decide(value, spread, pair)))
    return judged


# ---- the three questions ---------------------------------------------------------------


def compare(
    a,
    b,
    *,
    eps: float | None = None,
    settings: Settings | None = None,
    cache_dir=None,
    n_jobs: int | None = None,
    scheduler=None,
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
    settings, n_jobs, **options
        As for :func:`nnequiv.analyze`; options also take the
        :class:`~nnequiv.settings.DistanceSettings` fields ``level`` ("layer" or "pooled")
        and ``order_weight``.
    cache_dir : path, None or False
        The analysis cache (:func:`nnequiv.cache.cache_directory`): None for the default
        (``$NNEQUIV_CACHE_DIR`` or the user cache directory), False for none.
    scheduler : str or distributed.Client, optional
        Run the analyses on this Dask cluster (default ``$NNEQUIV_SCHEDULER``; see
        :mod:`nnequiv.scheduler`). The numbers do not change.

    Returns
    -------
    Verdict
        Distance of the realisation means, its spread (where the distance of an analysis
        with another seed falls, 95 %), eps, the verdict, and its explanation: the layers
        that contribute most to the distance (:func:`nnequiv.explain.explain`).
    """
    eps = check_eps(eps)
    (first, second), distance_settings = _analyse_each(
        [a, b], options, settings, cache_dir, None, n_jobs, scheduler
    )
    fa, fb = fingerprint(first, distance_settings), fingerprint(second, distance_settings)
    ((value, spread, pair, source, verdict),) = _judge(fa, [fb], eps)
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
    scheduler=None,
    **options,
) -> Classes:
    """Sort networks into equivalence classes (method item 12).

    The classes are the connected components of the pairs judged "equivalent" ("undecided"
    pairs do not join); the average-linkage tree of the distances shows the whole structure.
    Every pair gets its own eps, calibrated from its two networks as in :func:`compare`.
    ``sources`` may hold finished analyses and fingerprint indexes (paths of index files or
    :class:`~nnequiv.index.Library` objects), whose networks join the set. Options as for
    :func:`compare`; ``progress(done, total, label)`` is called after each analysis.
    """
    eps = check_eps(eps)
    analyses, distance_settings = _analyse_each(
        _check_sources(sources), options, settings, cache_dir, progress, n_jobs, scheduler
    )
    prints = fingerprints(analyses, distance_settings)
    count = len(prints)
    distance = np.zeros((count, count))
    low, high, pair_eps_matrix = (np.zeros_like(distance) for _ in range(3))
    verdicts = np.full((count, count), "equivalent", dtype=object)
    source = "given" if eps is not None else "calibrated"
    for i in range(count):
        pair_eps_matrix[i, i] = eps if eps is not None else prints[i].noise_floor
        row = _judge(prints[i], prints[i + 1 :], eps)
        for j, (value, (lo, hi), pair, _, verdict) in enumerate(row, start=i + 1):
            distance[i, j] = distance[j, i] = value
            low[i, j] = low[j, i] = lo
            high[i, j] = high[j, i] = hi
            pair_eps_matrix[i, j] = pair_eps_matrix[j, i] = pair
            verdicts[i, j] = verdicts[j, i] = verdict
    from scipy.cluster.hierarchy import linkage
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial.distance import squareform

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
        [getattr(a, "path", None) for a in analyses],
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
    scheduler=None,
    **options,
) -> Identification:
    """Which known design is this checkpoint? Rank ``library`` by distance to ``query``.

    Each match carries its distance, spread, eps and verdict, exactly as :func:`compare`
    would give them for that pair. ``library`` is a list of sources, a fingerprint index
    (the path of an index file or a :class:`~nnequiv.index.Library`), or a list mixing
    them; an index is used only with the analysis settings it was built with. Options as for
    :func:`compare`.
    """
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise InputError(f"top must be an integer >= 1, got {top!r}")
    eps = check_eps(eps)
    analyses, distance_settings = _analyse_each(
        [query, *_check_sources(library)],
        options,
        settings,
        cache_dir,
        progress,
        n_jobs,
        scheduler,
    )
    target = fingerprint(analyses[0], distance_settings)
    matches = []
    source = "given" if eps is not None else "calibrated"
    candidates = fingerprints(analyses[1:], distance_settings)
    for candidate, judged in zip(candidates, _judge(target, candidates, eps)):
        value, spread, pair, _, verdict = judged
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
