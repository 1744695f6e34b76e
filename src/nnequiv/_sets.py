"""Analyses of a set of networks (the first step of :func:`nnequiv.compare`,
:func:`~nnequiv.cluster`, :func:`~nnequiv.identify` and :func:`~nnequiv.calibrate`): what
the user named found (files, folders, fingerprint indexes, finished analyses), each distinct
network analysed once or read from the cache, all checked to share their settings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from nnequiv._display import display_names
from nnequiv._pipeline import Request, analyze_sources
from nnequiv.analysis import Analysis
from nnequiv.discovery import discover
from nnequiv.distances import Summary, check_comparable
from nnequiv.errors import InputError
from nnequiv.index import Library, check_index_settings, is_index, open_index
from nnequiv.settings import DistanceSettings, Settings, split_options

__all__ = ["analyze_all", "analyze_each", "check_sources", "RUN_KEYWORDS"]


#: The keywords of :func:`analyze_all` that say how and where networks are analysed; compare,
#: cluster, identify and calibrate take them among their ``**options``.
RUN_KEYWORDS = ("settings", "cache_dir", "progress", "n_jobs", "scheduler")


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
    they are.

    Parameters
    ----------
    sources : sequence
        The networks: anything :func:`nnequiv.analyze` accepts, finished analyses, summaries,
        and fingerprint indexes (index files or :class:`~nnequiv.index.Library` objects).
    settings, **options
        As for :func:`nnequiv.analyze`.
    cache_dir : path, None or False
        The analysis cache (:func:`nnequiv.cache.cache_directory`): None for the default
        (``$NNEQUIV_CACHE_DIR`` or the user cache directory), False for none.
    progress : callable, optional
        ``progress(done, total, label)``, called as analyses arrive.
    n_jobs : int or None
        Worker processes (-1: every core). The numbers do not change.
    scheduler : str or distributed.Client, optional
        Run the analyses on this Dask cluster (default ``$NNEQUIV_SCHEDULER``; see
        :mod:`nnequiv.scheduler`). The numbers do not change.
    connectomes, notes
        Passed to :func:`nnequiv.discovery.discover`.
    on_error : callable, optional
        ``on_error(label, error)`` for a network that cannot be analysed, which is left out;
        without it, the error is raised.

    Returns
    -------
    list
        An :class:`~nnequiv.analysis.Analysis` or :class:`~nnequiv.distances.Summary` per
        network, in the order found.
    """
    run = dict(zip(RUN_KEYWORDS, (settings, cache_dir, progress, n_jobs, scheduler)))
    return analyze_each(
        list(sources), {**options, **run},
        connectomes=connectomes, notes=notes, on_error=on_error, curves=True, distances=False,
    )[0]  # fmt: skip


def _expand_libraries(sources: Sequence, curves: bool) -> tuple[list, list]:
    """Sources with every fingerprint index (a :class:`~nnequiv.index.Library` or the path
    of an index file, read with its pooled CSD curves where ``curves``) replaced by its
    networks' summaries, and the indexes."""
    out, libraries = [], []
    for source in sources:
        if not isinstance(source, Library) and is_index(source):
            source = open_index(source, curves=curves)
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


def analyze_each(
    sources: Sequence,
    options: dict,
    *,
    connectomes: bool = False,
    notes=None,
    on_error=None,
    curves: bool | None = None,
    distances: bool = True,
) -> tuple[list, DistanceSettings]:
    """Analyses of the sources (each distinct network computed once, or read from the cache;
    finished analyses, summaries and fingerprint indexes used as they are, all checked to
    share their settings), and the distance settings. ``options`` holds the
    :data:`RUN_KEYWORDS` and the analysis, loading and (where ``distances``) distance
    options. Indexes are read with their pooled curves where ``curves`` (None: where the
    pooled level is asked for)."""
    options = dict(options)
    settings, cache_dir, progress, n_jobs, scheduler = (options.pop(k, None) for k in RUN_KEYWORDS)
    analysis_settings, distance_settings, load, connectome, given = split_options(
        options, base=settings, distances=distances, also=RUN_KEYWORDS
    )
    chosen_explicitly = settings is not None or any(
        k in {f.name for f in fields(Settings)} for k in options
    )
    if curves is None:
        curves = distance_settings.level == "pooled"
    sources, libraries = _expand_libraries(sources, curves)
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
    results = analyze_sources(
        [item.source for item in positions.values()],
        Request(analysis_settings, load, connectome, given),
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
        path = item.path and str(Path(item.path).resolve())
        analysed[key] = replace(result, source=item.label, path=path)
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


def check_sources(sources) -> list:
    if isinstance(sources, (str, os.PathLike, Library)):
        sources = [sources]
    sources = list(sources)
    if not sources:
        raise InputError("no networks given: the set to compare is empty")
    return sources
