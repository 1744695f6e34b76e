"""Where the analyses of a set run: here, in local worker processes, or on a Dask cluster.

Every task runs with one BLAS thread (``threadpoolctl``), so worker processes never
oversubscribe the cores, and the numbers are those of a serial run whatever runs them. Each
analysis carries its own random streams, so serial, process-pool and Dask runs give the same
bits. Cached analyses are read here, before anything is sent out; new ones are stored here
when they come back.

A Dask cluster is named by its scheduler address (``scheduler="tcp://host:8786"``, the
``--scheduler`` option or ``$NNEQUIV_SCHEDULER``) or given as a ``distributed.Client``.
Its workers must see the files under the same paths (relative paths are made absolute before
they are sent) and run the same nnequiv version.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from nnequiv._seeding import one_blas_thread_per_process
from nnequiv.errors import InputError, MissingDependencyError

__all__ = ["SCHEDULER_ENV", "resolve_scheduler", "one_blas_thread", "run_tasks", "analyse_all"]

#: Environment variable with the address of a Dask scheduler ("" for none).
SCHEDULER_ENV = "NNEQUIV_SCHEDULER"
#: How long to wait for a Dask scheduler to answer.
CONNECT_TIMEOUT = "10s"


def resolve_scheduler(scheduler=None):
    """The scheduler that ``scheduler`` selects: an address or a ``distributed.Client``, or
    None to run here. None reads ``$NNEQUIV_SCHEDULER``; False or "" is none."""
    if scheduler is False:
        return None
    if scheduler is None:
        scheduler = os.environ.get(SCHEDULER_ENV) or None
    if isinstance(scheduler, str):
        scheduler = scheduler.strip() or None
    return scheduler


@contextmanager
def one_blas_thread():
    """Hold every BLAS and OpenMP pool of this process to one thread inside the block."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def _one_thread_call(func: Callable, item):
    with one_blas_thread():
        return func(item)


def _worker_call(func: Callable, item):
    """``func(item)`` in a worker process, held to one BLAS thread for good (a Dask worker
    may run several tasks at once in threads, which a scoped limit would undo)."""
    one_blas_thread_per_process()
    return func(item)


def _local_pool(func: Callable, items: Sequence, workers: int):
    """``func`` over ``items`` on ``workers`` forked processes, results in order as they come."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=one_blas_thread_per_process
    ) as pool:
        yield from pool.map(func, items)


def _dask(func: Callable, items: Sequence, scheduler):
    """``func`` over ``items`` on a Dask cluster, results in order as they come."""
    with _client(scheduler) as client:
        for future in client.map(func, items, pure=False):
            yield future.result()


@contextmanager
def _client(scheduler):
    """A ``distributed.Client`` for ``scheduler``; one made here is closed on exit."""
    try:
        from distributed import Client
    except ImportError:
        raise MissingDependencyError("distributed", "dask", "--scheduler (Dask)") from None
    if isinstance(scheduler, Client):
        yield scheduler
        return
    try:
        client = Client(str(scheduler), timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {reason}") from None
    try:
        yield client
    finally:
        client.close()


def run_tasks(
    func: Callable,
    items: Sequence,
    *,
    scheduler=None,
    n_jobs: int | None = None,
    done: Callable | None = None,
) -> list:
    """``[func(item) for item in items]`` with one BLAS thread per task: on the Dask cluster
    ``scheduler`` (see :func:`resolve_scheduler`), else on ``n_jobs`` local worker processes
    (-1: every core), else here. ``func`` must be picklable (a module-level function or a
    ``functools.partial`` of one). ``done(index, result)`` is called here for each result,
    in order.

    The results and their order never depend on where the tasks ran.
    """
    from nnequiv._seeding import resolve_n_jobs

    items = list(items)
    chosen = resolve_scheduler(scheduler)
    workers = min(resolve_n_jobs(n_jobs), len(items))
    if chosen is not None and items:
        results = _dask(partial(_worker_call, func), items, chosen)
    elif workers > 1:
        results = _local_pool(func, items, workers)
    else:
        results = (_one_thread_call(func, item) for item in items)
    out = []
    for index, result in enumerate(results):
        out.append(result)
        if done:
            done(index, result)
    return out


@dataclass(frozen=True)
class _Job:
    """One analysis to run: the source as the worker opens it, and its label."""

    source: object
    label: str | None


def _analyse(settings, options: dict, n_jobs, errors: str, job: _Job):
    from nnequiv.analysis import analyze
    from nnequiv.errors import NNEquivError

    try:
        try:
            analysis = analyze(job.source, settings, cache_dir=False, n_jobs=n_jobs, **options)
        except RecursionError:
            raise too_deep(job.label or _name(job.source)) from None
    except NNEquivError as exc:
        if errors == "raise":
            raise
        return exc
    if job.label is not None:
        analysis.source = job.label
    return analysis


def too_deep(name: str):
    """One line for a RecursionError met while reading ``name`` (a MemoryError is
    :func:`nnequiv.analyze`'s to name)."""
    from nnequiv.errors import ResourceLimitError

    return ResourceLimitError(f"{name}: nested too deeply to be read (RecursionError)")


def _name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "label", None) or f"<{type(source).__name__}>")


def _job(source, remote: bool) -> _Job:
    """Paths travel to remote workers as absolute paths, labelled as given."""
    if remote and isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.exists():
            return _Job(str(path.resolve()), str(path))
    return _Job(source, None)


def analyse_all(
    sources: Sequence,
    settings,
    options: dict,
    *,
    cache_dir=None,
    scheduler=None,
    n_jobs: int | None = None,
    progress: Callable | None = None,
    errors: str = "raise",
) -> list:
    """The analyses of ``sources`` with ``settings`` and the loading and connectome
    ``options``: read from the cache where present, the rest run by :func:`run_tasks` (one
    network per task) and stored. ``progress(done, total, label)`` follows the input order.

    With a scheduler, or ``n_jobs`` workers and several networks to analyse, networks run in
    parallel; otherwise they run here one after the other, each with ``n_jobs`` workers for
    its conjugate ensemble. With ``errors="return"`` a network that fails with an
    :class:`~nnequiv.errors.NNEquivError` gets that error in its place in the list (and is
    not cached); with ``"raise"`` the error is raised.
    """
    from nnequiv._seeding import resolve_n_jobs
    from nnequiv.cache import lookup, store

    sources = list(sources)
    looked = [lookup(source, settings, options, cache_dir) for source in sources]
    found = [analysis for analysis, _ in looked]
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
            store(looked[index][1], analysis)
        announce()

    announce()
    run_tasks(
        partial(_analyse, settings, options, None if across else n_jobs, errors),
        [_job(sources[index], remote=chosen is not None) for index in missing],
        scheduler=chosen,
        n_jobs=n_jobs if across else None,
        done=arrived,
    )
    return found
