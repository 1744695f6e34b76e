"""Where the analyses of a set run: here, in local worker processes, or on a Dask cluster.

Every task runs with one BLAS thread (``threadpoolctl``), so worker processes never
oversubscribe the cores, and the numbers are those of a serial run whatever runs them. Each
analysis carries its own random streams, so serial, process-pool and Dask runs give the same
bits. Cached analyses are read before anything is sent out; new ones are stored when they
come back (:mod:`nnequiv._pipeline`). The pool itself is :mod:`nnequiv._pool`; this module
is its public face.

A Dask cluster is named by its scheduler address (``scheduler="tcp://host:8786"``, the
``--scheduler`` option or ``$NNEQUIV_SCHEDULER``) or given as a ``distributed.Client``.
Its workers must see the files under the same paths (relative paths are made absolute before
they are sent) and run the same nnequiv version.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from nnequiv import _pipeline
from nnequiv._pool import SCHEDULER_ENV, one_blas_thread, resolve_scheduler, run_tasks

__all__ = ["SCHEDULER_ENV", "resolve_scheduler", "one_blas_thread", "run_tasks", "analyse_all"]


def analyse_all(sources: Sequence, settings, options: dict, **keywords) -> list:
    """Deprecated: use :func:`nnequiv.analyze_all` (one spelling); goes in the next release.

    The analyses of ``sources`` with ``settings`` and the loading and connectome
    ``options``; ``keywords`` (``cache_dir``, ``scheduler``, ``n_jobs``, ``progress``,
    ``errors``) as for :func:`nnequiv._pipeline.analyze_sources`.
    """
    warnings.warn(
        "nnequiv.scheduler.analyse_all is deprecated; use nnequiv.analyze_all (it will be "
        "removed in the next release)",
        DeprecationWarning,
        stacklevel=2,
    )
    return _pipeline.analyze_sources(sources, _pipeline.request(options, settings), **keywords)
