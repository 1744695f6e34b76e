"""Benchmark: analyses per second here, on local worker processes and on Dask workers, and
cluster time against the number of networks.

Part 1 builds a fingerprint index of ``--networks`` networks without a cache: serially, on
2 local worker processes (``n_jobs=2``), and on a ``distributed.LocalCluster`` of 1 and 2
worker processes (one thread each; started and warmed up before the clock runs). Every run
must give the same index rows as the serial one (checked). Part 2 times ``cluster`` of N
networks read from an index (distances, spreads, eps and verdicts of every pair, no
analysis), and from files with a cold cache, a warm cache, and as a new process with
``OPENBLAS_NUM_THREADS`` unset and set to 1 (the oversubscription of issue 13).

The networks are those of ``benchmarks/index.py`` (3-6 dense layers, widths 16-256).

Run: ``python benchmarks/scale.py [--networks 60] [--sizes 50 100 200 400]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ["NNEQUIV_CACHE_DIR"] = ""  # never a user's cache

sys.path.insert(0, os.path.dirname(__file__))
from index import write_networks  # noqa: E402

from nnequiv import cluster  # noqa: E402
from nnequiv.index import build_index, open_index  # noqa: E402


def same_rows(first, second) -> bool:
    return all(
        a.label == b.label
        and np.array_equal(a.summary.layer_points, b.summary.layer_points)
        and np.array_equal(a.summary.csd, b.summary.csd)
        for a, b in zip(first.entries, second.entries)
    )


def timed(func):
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def warm_up(client) -> None:
    """Import nnequiv on every worker, so that the clock measures analyses."""
    client.run(lambda: __import__("nnequiv.analysis"))


def analyses_per_second(paths: list[str], work: Path) -> None:
    from distributed import Client, LocalCluster

    count = len(paths)
    print(f"# analyses per second: fingerprint index of {count} networks, no cache")
    print(f"{'where':<28} {'seconds':>8} {'analyses/s':>11}  same rows")
    seconds, serial = timed(lambda: build_index(paths, work / "serial.sqlite", cache_dir=False))
    print(f"{'here, serial':<28} {seconds:>8.2f} {count / seconds:>11.1f}  -")
    seconds, local = timed(
        lambda: build_index(paths, work / "local.sqlite", cache_dir=False, n_jobs=2)
    )
    print(f"{'2 local processes':<28} {seconds:>8.2f} {count / seconds:>11.1f}  "
          f"{same_rows(local, serial)}")  # fmt: skip
    for workers in (1, 2):
        with (
            LocalCluster(
                n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=None
            ) as local_cluster,
            Client(local_cluster) as client,
        ):
            warm_up(client)
            seconds, remote = timed(
                lambda: build_index(
                    paths, work / f"dask{workers}.sqlite", cache_dir=False, scheduler=client
                )
            )
        label = f"Dask, {workers} worker{'s' if workers > 1 else ''}"
        print(f"{label:<28} {seconds:>8.2f} {count / seconds:>11.1f}  "
              f"{same_rows(open_index(remote.path), serial)}")  # fmt: skip


def cluster_times(paths: list[str], sizes: list[int], work: Path) -> None:
    print("# cluster time against the number of networks")
    print(f"{'N':>5} {'pairs':>7} {'from index s':>13} {'pairs/s':>8}")
    for size in sizes:
        index = work / f"cluster{size}.sqlite"
        build_index(paths[:size], index, cache_dir=work / "cache", n_jobs=2)
        seconds, _ = timed(lambda: cluster(str(index)))
        pairs = size * (size - 1) // 2
        print(f"{size:>5} {pairs:>7} {seconds:>13.2f} {pairs / seconds:>8.0f}")
    small = paths[:10]
    fresh = Path(tempfile.mkdtemp(prefix="cache-", dir=work))
    cold, _ = timed(lambda: cluster(small, cache_dir=fresh))
    warm, _ = timed(lambda: cluster(small, cache_dir=fresh))
    print(f"cluster of 10 files: {cold:.2f} s with a cold cache, {warm:.2f} s with a warm one")
    command = [sys.executable, "-m", "nnequiv.cli", "cluster", *small, "--no-cache"]
    times: dict = {None: [], "1": []}
    for _ in range(3):
        for threads in times:
            environment = dict(os.environ)
            environment.pop("OPENBLAS_NUM_THREADS", None)
            if threads:
                environment["OPENBLAS_NUM_THREADS"] = threads
            seconds, _ = timed(
                lambda: subprocess.run(command, env=environment, capture_output=True, check=True)
            )
            times[threads].append(seconds)
    for threads, seconds in times.items():
        print(f"nnequiv cluster (10 files, new process, --no-cache), "
              f"OPENBLAS_NUM_THREADS={threads or 'unset'}: {statistics.median(seconds):.2f} s "
              "(median of 3)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=60)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--workdir", help="keep the networks here")
    parser.add_argument("--part", choices=["all", "workers", "cluster"], default="all")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="nnequiv-scale-bench-"))
    paths = write_networks(work / "nets", max(args.networks, *args.sizes))
    print(f"({os.cpu_count()} cores)")
    if args.part in ("all", "workers"):
        analyses_per_second(paths[: args.networks], work)
    if args.part in ("all", "cluster"):
        cluster_times(paths, sorted(args.sizes), work)


if __name__ == "__main__":
    main()
