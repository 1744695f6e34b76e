"""Benchmark: identify latency against fingerprint indexes of 100, 1,000 and 10,000 networks.

The library networks are seeded random MLPs of 3-6 dense layers of widths 16-256 (heavy
tailed weights), written as npz files and analysed once (into a private cache, two worker
processes). An index larger than the number analysed is filled with copies of the analysed
networks' rows under other labels (the time of a query does not depend on the values).
The query is a copy of one library file under another name; each query runs as a new
process (``python -m nnequiv.cli identify QUERY --library LIB --no-cache --json``), so its
time includes Python's start, the imports, the query's own analysis (not cached) and
reading the index. Median of ``--repeats`` runs.

Run: ``python benchmarks/index.py [--sizes 100 1000 10000] [--analysed 1000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ["NNEQUIV_CACHE_DIR"] = ""  # never a user's cache; set per call below

from nnequiv.index import build_index  # noqa: E402


def library_network(seed: int) -> dict[str, np.ndarray]:
    """A dense network of 3-6 layers of widths 16-256 with Student-t weights."""
    rng = np.random.default_rng(seed)
    depth = int(rng.integers(3, 7))
    widths = rng.integers(16, 257, size=depth + 1)
    return {
        f"fc{i}.weight": rng.standard_t(3, (widths[i + 1], widths[i])) / np.sqrt(widths[i])
        for i in range(depth)
    }


def write_networks(directory: Path, count: int) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(count):
        path = directory / f"net{seed:05d}.npz"
        if not path.exists():
            np.savez(path, **library_network(seed))
        paths.append(str(path))
    return paths


def fill_with_copies(index: Path, size: int) -> None:
    """Grow an index to ``size`` rows with copies of its rows under other labels."""
    connection = sqlite3.connect(index)
    columns = "path, content_hash, version, n_layers, orders, streams, points, csd"
    with connection:
        originals = rows = connection.execute("SELECT COUNT(*) FROM networks").fetchone()[0]
        copy = 0
        while rows < size:
            take = min(originals, size - rows)
            connection.execute(
                f"INSERT INTO networks (label, {columns}) SELECT label || '#copy{copy}', "
                f"{columns} FROM networks WHERE label NOT LIKE '%#copy%' LIMIT {take}"
            )
            rows += take
            copy += 1
    connection.close()


def query_seconds(query: str, index: Path, repeats: int) -> tuple[float, dict]:
    command = [
        sys.executable, "-m", "nnequiv.cli", "identify", query, "--library", str(index),
        "--no-cache", "--json", "--top", "3",
    ]  # fmt: skip
    times, payload = [], {}
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        payload = json.loads(result.stdout)
    return statistics.median(times), payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--analysed", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=-1, help="worker processes for the build")
    parser.add_argument("--workdir", help="keep the networks and indexes here")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="nnequiv-index-bench-"))
    cache = work / "cache"
    analysed = min(args.analysed, max(args.sizes))
    paths = write_networks(work / "nets", analysed)
    query = work / "query.npz"
    shutil.copyfile(paths[7], query)
    print(f"# identify latency against fingerprint indexes ({os.cpu_count()} cores)")
    print("networks: 3-6 dense layers, widths 16-256; query: a copy of net00007 (not cached)")
    print(f"{'index':>7} {'write s':>8} {'MB':>6} {'query s':>8}  nearest (distance)")
    for size in sorted(args.sizes):
        index = work / f"lib{size}.sqlite"
        start = time.perf_counter()
        build_index(paths[: min(size, analysed)], index, cache_dir=cache, n_jobs=args.jobs)
        built = time.perf_counter() - start
        if size > analysed:
            fill_with_copies(index, size)
        seconds, payload = query_seconds(str(query), index, args.repeats)
        best = payload["matches"][0]
        megabytes = index.stat().st_size / 2**20
        print(
            f"{size:>7} {built:>8.1f} {megabytes:>6.1f} {seconds:>8.2f}  "
            f"{Path(best['path']).name} ({best['distance']:.4f})"
        )
    print(
        "(write s: build_index with the analyses already cached, plus the copies; "
        f"{analysed} networks analysed in all, larger indexes filled with copies)"
    )


if __name__ == "__main__":
    main()
