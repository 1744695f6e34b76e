"""Benchmark: pairwise distances per second on one core, with and without their spread.

Fingerprints of zoo-sized networks: ``--layers`` layers (default 40), 10 realizations,
9 locations, orders between 16 and 1024. The summaries are synthetic (the cost of a
distance depends on the sizes only); with ``--zoo DIR`` the real networks there are
analysed (10 realizations, private cache) and used instead. Every pair of ``--networks``
fingerprints is timed with ``distance`` and ``distance_with_spread`` (32 bootstrap
resamples), and ``cluster`` of the summaries (every pair's distance, spread, eps and
verdict), all with one BLAS thread. Rates are per second of the process's CPU time (one
core's worth, whatever else runs on the machine).

Run: ``python benchmarks/distances.py [--networks 40] [--layers 40] [--zoo ../shared/zoo]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np

os.environ["NNEQUIV_CACHE_DIR"] = ""  # never a user's cache

from nnequiv import cluster  # noqa: E402
from nnequiv.distances import (  # noqa: E402
    Summary,
    distance,
    distance_with_spread,
    fingerprint,
    summarize,
)
from nnequiv.scheduler import one_blas_thread  # noqa: E402
from nnequiv.settings import DistanceSettings, Settings  # noqa: E402


def synthetic_summary(seed: int, layers: int, settings: Settings) -> Summary:
    """A summary with the shapes of a real one: tail-mass points, orders, stream keys."""
    rng = np.random.default_rng(seed)
    orders = rng.choice([16, 32, 64, 128, 256, 512, 1024], size=layers)
    ranks = [int(np.sum(orders[:i] == n)) for i, n in enumerate(orders)]
    streams = np.column_stack([orders, ranks])
    count, bins = settings.realizations, settings.grid[2]
    base = rng.uniform(-0.5, 0.5, (1, layers, len(settings.locations)))
    points = base + 0.02 * rng.standard_normal((count, layers, len(settings.locations)))
    csd = np.cumsum(rng.uniform(0, 1e-3, (count, bins))[:, ::-1], axis=1)[:, ::-1]
    structure = np.column_stack([np.log(orders), np.log(orders), rng.uniform(0, 1, layers)])
    return Summary(f"synthetic{seed}", settings, points, orders, streams, csd, None, structure)


def zoo_summaries(directory: Path, count: int) -> list[Summary]:
    from nnequiv import analyze

    cache = Path(tempfile.mkdtemp(prefix="nnequiv-distance-bench-"))
    paths = sorted(directory.glob("*.npz"))
    paths = [p for p in paths if p.name != "MANIFEST.csv"][:count]
    with one_blas_thread():
        return [summarize(analyze(p, cache_dir=cache)) for p in paths]


def rate(func, pairs) -> float:
    """Pairs per second of this process's CPU time (what one core gives, whatever else runs
    on the machine)."""
    start = time.process_time()
    for a, b in pairs:
        func(a, b)
    return len(pairs) / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=40)
    parser.add_argument("--layers", type=int, default=40)
    parser.add_argument("--zoo", help="analyse the npz networks of this directory instead")
    args = parser.parse_args()
    settings = Settings()
    if args.zoo:
        summaries = zoo_summaries(Path(args.zoo), args.networks)
        sizes = [s.orders.size for s in summaries]
        pairs = [a * b for a, b in combinations(sizes, 2)]
        print(
            f"layers {min(sizes)}-{max(sizes)}; mean layers x layers of a pair {np.mean(pairs):.0f}"
        )
        described = f"{len(summaries)} zoo networks"
    else:
        summaries = [synthetic_summary(s, args.layers, settings) for s in range(args.networks)]
        described = f"{len(summaries)} synthetic networks"
    layers = np.mean([s.orders.size for s in summaries])
    print(f"# pairwise distances on one core: {described}, {layers:.1f} layers on average")
    print(f"{'level':<7} {'fingerprints/s':>14} {'distances/s':>12} {'with spread/s':>14} "
          f"{'cluster s':>10} {'pairs':>6}")  # fmt: skip
    with one_blas_thread():
        for level in ("layer", "pooled"):
            chosen = DistanceSettings(level=level)
            start = time.process_time()
            prints = [fingerprint(s, chosen) for s in summaries]
            per_print = len(prints) / (time.process_time() - start)
            pairs = list(combinations(prints, 2))
            plain = rate(distance, pairs)
            spread = rate(distance_with_spread, pairs)
            start = time.process_time()
            cluster(summaries, level=level)
            seconds = time.process_time() - start
            print(
                f"{level:<7} {per_print:>14.0f} {plain:>12.0f} {spread:>14.0f} "
                f"{seconds:>10.2f} {len(pairs):>6}"
            )


if __name__ == "__main__":
    main()
