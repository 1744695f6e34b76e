"""Where work runs: here, on local worker processes, or on a Dask cluster.

The one process pool of nnequiv: the conjugate ensembles (over realizations), the layer
spectra of header-listed checkpoints (over layers) and the analyses of a set (over networks)
all run through :func:`ordered_map` or :func:`run_tasks`. Every task runs with one BLAS
thread (``threadpoolctl``), so worker processes never oversubscribe the cores, and results
come back in the order of the items, so serial, process-pool and Dask runs give the same
bits (each item carries its own random stream).

A Dask cluster is named by its scheduler address (``scheduler="tcp://host:8786"``, the
``--scheduler`` option or ``$NNEQUIV_SCHEDULER``) or given as a ``distributed.Client``.
"""

from __future__ import annotations

import multiprocessing
import numbers
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from functools import partial

from threadpoolctl import threadpool_limits

from nnequiv._optional import optional_module
from nnequiv.errors import InputError

__all__ = [
    "SCHEDULER_ENV",
    "resolve_n_jobs",
    "resolve_scheduler",
    "one_blas_thread",
    "one_blas_thread_per_process",
    "ordered_map",
    "map_ordered",
    "run_tasks",
]

#: Environment variable with the address of a Dask scheduler ("" for none).
SCHEDULER_ENV = "NNEQUIV_SCHEDULER"
#: How long to wait for a Dask scheduler to answer.
CONNECT_TIMEOUT = "10s"


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Number of workers for ``n_jobs`` (None: 1; negative: cores + 1 + n_jobs)."""
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise InputError(f"n_jobs must be a non-zero integer or None, got {n_jobs!r}")
    n_jobs = int(n_jobs)
    if n_jobs < 0:
        return max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    return n_jobs


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


def one_blas_thread_per_process() -> None:
    """Hold this worker process to one BLAS thread, so that parallel workers do not
    oversubscribe the cores."""
    threadpool_limits(limits=1)


@contextmanager
def one_blas_thread():
    """Hold every BLAS and OpenMP pool of this process to one thread inside the block."""
    with threadpool_limits(limits=1):
        yield


def ordered_map(func: Callable, items: Sequence, workers: int, chunksize: int = 1) -> Iterator:
    """``func`` over ``items`` on ``workers`` forked processes (one BLAS thread each),
    results in the order of the items as they come. An error, an interrupt or a caller
    that stops reading cancels the tasks not yet started. ``func`` must be picklable."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=one_blas_thread_per_process
    )
    try:
        yield from pool.map(func, items, chunksize=chunksize)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def map_ordered(func: Callable, items: Sequence, n_jobs: int | None = None) -> list:
    """``[func(item) for item in items]``, on ``n_jobs`` worker processes (-1: every core).

    The result order and values never depend on ``n_jobs``: each item carries its own
    random stream, so serial and parallel runs give identical bits.
    """
    items = list(items)
    workers = min(resolve_n_jobs(n_jobs), len(items))
    if workers <= 1:
        return [func(item) for item in items]
    return list(ordered_map(func, items, workers, max(1, len(items) // (4 * workers))))


def _one_thread_call(func: Callable, item):
    with one_blas_thread():
        return func(item)


def _worker_call(func: Callable, item):
    """``func(item)`` in a worker process, held to one BLAS thread for good (a Dask worker
    may run several tasks at once in threads, which a scoped limit would undo)."""
    one_blas_thread_per_process()
    return func(item)


def _dask(func: Callable, items: Sequence, scheduler):
    """``func`` over ``items`` on a Dask cluster, results in order as they come."""
    with _client(scheduler) as client:
        for future in client.map(func, items, pure=False):
            yield future.result()


@contextmanager
def _client(scheduler):
    """A ``distributed.Client`` for ``scheduler``; one made here is closed on exit."""
    Client = optional_module("distributed", "dask", "--scheduler (Dask)").Client
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
    items = list(items)
    chosen = resolve_scheduler(scheduler)
    workers = min(resolve_n_jobs(n_jobs), len(items))
    if chosen is not None and items:
        results = _dask(partial(_worker_call, func), items, chosen)
    elif workers > 1:
        results = ordered_map(func, items, workers)
    else:
        results = (_one_thread_call(func, item) for item in items)
    out = []
    for index, result in enumerate(results):
        out.append(result)
        if done:
            done(index, result)
    return out
