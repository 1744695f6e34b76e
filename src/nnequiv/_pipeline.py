"""How an analysis is obtained: look it up in the cache, else analyse, then store.

The one path from a source to its :class:`~nnequiv.analysis.Analysis`, for a network
analysed here (:func:`analyze`), and for the networks of a set analysed here, on local
worker processes or on a Dask cluster (:func:`analyze_sources`). The options are split once per
call (a :class:`Request`); an in-memory source or a connectome opened to hash it for the
cache is the one analysed here (its tensors read, and a connectome's ensemble drawn, once).
Cached analyses are read here, before anything is sent out; new ones are stored here when
they come back. Workers open and analyse, nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from nnequiv._pool import resolve_n_jobs, resolve_scheduler, run_tasks
from nnequiv._sources import open_source
from nnequiv.analysis import Analysis, analysis_of_weights
from nnequiv.cache import (
    analysis_key,
    cache_directory,
    entry_path,
    file_content_hash,
    read_entry,
    weights_content_hash,
    write_entry,
)
from nnequiv.errors import InputError, NNEquivError, ResourceLimitError
from nnequiv.loading import WeightSource
from nnequiv.settings import ConnectomeOptions, LoadOptions, Settings, split_options
from nnequiv.spectra import Progress

__all__ = ["Request", "request", "analyze", "analyze_sources", "require_analyses", "too_deep"]


@dataclass(frozen=True)
class Request:
    """What an analysis is asked for with: its settings, the loading and connectome
    options, and the connectome options given explicitly (refused for a network)."""

    settings: Settings
    load: LoadOptions
    connectome: ConnectomeOptions
    given: frozenset = frozenset()


def request(options: dict, settings: Settings | None = None, also=()) -> Request:
    """The :class:`Request` of keyword ``options`` over ``settings``; a distance setting is
    refused, and ``also`` names the caller's other keywords in the answer to an unknown one
    (:func:`nnequiv.settings.split_options`)."""
    chosen, _, load, connectome, given = split_options(
        options, base=settings, distances=False, also=also
    )
    return Request(chosen, load, connectome, given)


def _label_of(source) -> str:
    """How an error names a source: its path, or its label, or its type."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "label", None) or f"<{type(source).__name__}>")


def too_deep(name: str) -> ResourceLimitError:
    """One line for a RecursionError met while reading ``name`` (a MemoryError is
    :func:`analyze`'s to name)."""
    return ResourceLimitError(f"{name}: nested too deeply to be read (RecursionError)")


def _out_of_memory(source, exc: MemoryError) -> ResourceLimitError:
    """One line for a MemoryError (numpy's _ArrayMemoryError too) naming the input."""
    return ResourceLimitError(
        f"{_label_of(source)}: out of memory ({' '.join(str(exc).split()) or 'MemoryError'})"
        "; a smaller max_memory (--max-memory) computes large layers in smaller blocks"
    )


def _opened(source, wanted: Request) -> WeightSource:
    return open_source(source, wanted.load, wanted.connectome, wanted.given, wanted.settings.seed)


@dataclass(frozen=True)
class _Looked:
    """A source looked up in the cache: the analysis found (or None), the entry to store a
    new one at (None: no cache, or a source that cannot be hashed), and the weights opened
    to hash it (an in-memory source or a connectome; None for files)."""

    analysis: Analysis | None = None
    entry: Path | None = None
    weights: WeightSource | None = None


def _look_up(source, wanted: Request, directory: Path | None) -> _Looked:
    if directory is None:
        return _Looked()
    found = file_content_hash(source)
    weights = None
    if found is None:
        weights = _opened(source, wanted)
        found = weights_content_hash(weights)
    content, label = found
    if content is None:
        return _Looked()
    key = analysis_key(content, wanted.settings, wanted.load, wanted.connectome, wanted.given)
    entry = entry_path(directory, key)
    return _Looked(read_entry(entry, wanted.settings, label), entry, weights)


def _analyzed(
    source,
    wanted: Request,
    weights: WeightSource | None,
    n_jobs: int | None,
    progress: Progress | None,
) -> Analysis:
    """The analysis of ``source`` (opened here unless ``weights`` are already open)."""
    try:
        weights = weights if weights is not None else _opened(source, wanted)
        return analysis_of_weights(weights, wanted.settings, wanted.load, n_jobs, progress)
    except MemoryError as exc:
        raise _out_of_memory(source, exc) from None


def _obtained(
    source, wanted: Request, directory: Path | None, n_jobs, progress: Progress | None
) -> Analysis:
    """Look up, else analyse and store."""
    try:
        looked = _look_up(source, wanted, directory)
    except MemoryError as exc:
        raise _out_of_memory(source, exc) from None
    if looked.analysis is not None:
        return looked.analysis
    analysis = _analyzed(source, wanted, looked.weights, n_jobs, progress)
    write_entry(looked.entry, analysis)
    return analysis


def analyze(
    source,
    settings: Settings | None = None,
    *,
    cache_dir: str | os.PathLike | bool | None = None,
    n_jobs: int | None = None,
    progress: Progress | None = None,
    **options,
) -> Analysis:
    """Compare a network's Mixed Matrix Ensemble with its conjugate circular ensemble.

    Analyses are cached on disk (:mod:`nnequiv.cache`), keyed by the content of the source,
    every setting and option, and the nnequiv version: a cached analysis is bit-identical
    to a fresh one.

    Parameters
    ----------
    source : path, dict, torch module, WeightSource or Connectome
        The network (anything :func:`nnequiv.loading.open_weights` accepts) or a connectome
        (:func:`nnequiv.connectomes.load_connectome`).
    settings : Settings, optional
        The analysis settings; keyword options override single fields.
    cache_dir : path, None or False
        The analysis cache: None for the default (``$NNEQUIV_CACHE_DIR``, else the user
        cache directory), a directory, or False for none.
    n_jobs : int or None
        Worker processes for the layer spectra of header-listed checkpoints (safetensors) and
        for the conjugate ensemble (-1: every core). Does not change the result.
    progress : callable, optional
        ``progress(done, total, label)`` as the layer spectra are computed (not called for
        a cached analysis); see :data:`nnequiv.spectra.Progress`.
    **options
        Any field of :class:`~nnequiv.settings.Settings` (ensemble, realizations, seed,
        normalization, canonical, fingerprint, locations, grid, tail_quantile, rtol),
        :class:`~nnequiv.settings.LoadOptions` (include, exclude, layout, trust_code,
        max_tensor_bytes, max_memory) or, for connectomes,
        :class:`~nnequiv.settings.ConnectomeOptions` (mixture, submatrices, format).

    Returns
    -------
    Analysis

    Raises
    ------
    nnequiv.errors.NNEquivError
        Unreadable or unsafe input, a network with no layer, a bad option; a layer that does
        not fit ``max_memory``, or an allocation that fails (``MemoryError``), is a
        :class:`~nnequiv.errors.ResourceLimitError` naming the input.

    Examples
    --------
    >>> import nnequiv
    >>> from nnequiv.datasets import random_network
    >>> network = random_network([(48, 32), (10, 48)], seed=0)
    >>> analysis = nnequiv.analyze(network, realizations=4, seed=0, cache_dir=False)
    >>> [layer.name for layer in analysis.layers], analysis.orders.tolist()
    (['layer0.weight', 'layer1.weight'], [32, 10])
    """
    wanted = request(options, settings, also=("settings", "cache_dir", "n_jobs", "progress"))
    return _obtained(source, wanted, cache_directory(cache_dir), n_jobs, progress)


@dataclass(frozen=True)
class _Job:
    """One analysis to run: the source as the worker opens it, its label, and the weights
    already opened here (only for a task run here, never sent to a worker)."""

    source: object
    label: str | None
    weights: WeightSource | None = None


def _analyze_job(wanted: Request, n_jobs, errors: str, job: _Job):
    """The analysis of one job (no cache: looked up and stored by :func:`analyze_sources`), or
    with ``errors="return"`` its :class:`~nnequiv.errors.NNEquivError`."""
    try:
        try:
            analysis = _analyzed(job.source, wanted, job.weights, n_jobs, None)
        except RecursionError:
            raise too_deep(job.label or _label_of(job.source)) from None
    except NNEquivError as exc:
        if errors == "raise":
            raise
        return exc
    return analysis if job.label is None else replace(analysis, source=job.label)


def _job(source, looked: _Looked, remote: bool, sent: bool) -> _Job:
    """Paths travel to remote workers as absolute paths, labelled as given; weights opened
    here stay here."""
    if remote and isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.exists():
            return _Job(str(path.resolve()), str(path))
    return _Job(source, None, None if sent else looked.weights)


def analyze_sources(
    sources: Sequence,
    wanted: Request,
    *,
    cache_dir=None,
    scheduler=None,
    n_jobs: int | None = None,
    progress: Callable | None = None,
    errors: str = "raise",
) -> list:
    """The analyses of ``sources`` as ``wanted``: read from the cache where present, the
    rest run by :func:`nnequiv._pool.run_tasks` (one network per task) and stored.
    ``progress(done, total, label)`` follows the input order.

    With a scheduler, or ``n_jobs`` workers and several networks to analyse, networks run in
    parallel; otherwise they run here one after the other, each with ``n_jobs`` workers for
    its conjugate ensemble. With ``errors="return"`` a network that fails with an
    :class:`~nnequiv.errors.NNEquivError` gets that error in its place in the list (and is
    not cached); with ``"raise"`` the error is raised.
    """
    sources = list(sources)
    directory = cache_directory(cache_dir)
    looked = []
    for source in sources:
        try:
            looked.append(_look_up(source, wanted, directory))
        except MemoryError as exc:
            raise _out_of_memory(source, exc) from None
    found = [item.analysis for item in looked]
    missing = [index for index, analysis in enumerate(found) if analysis is None]
    chosen = resolve_scheduler(scheduler)
    across = chosen is not None or (len(missing) > 1 and resolve_n_jobs(n_jobs) > 1)
    announced = 0

    def announce() -> None:
        nonlocal announced
        while announced < len(found) and found[announced] is not None:
            announced += 1
            if progress:
                progress(announced, len(found), getattr(found[announced - 1], "source", ""))

    def arrived(position: int, analysis) -> None:
        index = missing[position]
        found[index] = analysis
        if not isinstance(analysis, Exception):
            write_entry(looked[index].entry, analysis)
        announce()

    announce()
    run_tasks(
        partial(_analyze_job, wanted, None if across else n_jobs, errors),
        [_job(sources[i], looked[i], chosen is not None, across) for i in missing],
        scheduler=chosen,
        n_jobs=n_jobs if across else None,
        done=arrived,
    )
    return found


def require_analyses(items: Sequence, needed_for: str) -> None:
    """Refuse, in one line naming the fingerprint index, a summary read from an index where
    ``needed_for`` (a report, the plots, the explanation) needs the whole analysis: an index
    keeps only what distances need."""
    for item in items:
        if not isinstance(item, Analysis):
            index = getattr(item, "index", None)
            where = f"the fingerprint index {index}" if index else "a fingerprint index"
            raise InputError(
                f"{getattr(item, 'source', item)}: {needed_for} needs the network's whole "
                f"analysis, and {where} keeps only what distances need; give the network's file"
            )
