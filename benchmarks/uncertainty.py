"""Do the reported intervals hold? Over the zoo: how often the spread of d(A, B) reported at
one seed covers the distance found at another seed, and how often the alpha interval of each
network covers the alpha found at another seed (docs/method.md items 8 and 11; both are
constructed to cover a repeated analysis 95 % of the time).

Run: ``python benchmarks/uncertainty.py [--zoo ../shared/zoo] [--seeds 4]``.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

from nnequiv import cluster
from nnequiv.equivalence import analyze_all


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default=str(root.parent / "shared" / "zoo"))
    parser.add_argument("--seeds", type=int, default=4, help="seeds 0..K-1 (default 4)")
    parser.add_argument("--level", default="layer", choices=["layer", "pooled"])
    args = parser.parse_args()
    start = time.perf_counter()
    runs = []
    for seed in range(args.seeds):
        analyses = analyze_all([args.zoo], seed=seed)
        runs.append((analyses, cluster(analyses, level=args.level)))
    count = len(runs[0][0])
    print(
        f"# {count} zoo networks, seeds 0..{args.seeds - 1}, {args.level} level, "
        f"{runs[0][0][0].settings.realizations} realizations ({time.perf_counter() - start:.0f} s)"
    )
    pairs = list(itertools.combinations(range(count), 2))
    print(f"{'reported at':>11} {'checked at':>10} {'d covered':>10} {'alpha covered':>14}")
    for (s, (analyses, classes)), (t, (others, other_classes)) in itertools.permutations(
        enumerate(runs), 2
    ):
        covered = [
            classes.spread_low[i, j] <= other_classes.distance[i, j] <= classes.spread_high[i, j]
            for i, j in pairs
        ]
        alphas = [
            a.decay.interval[0] <= b.decay.alpha <= a.decay.interval[1]
            for a, b in zip(analyses, others)
            if np.isfinite(b.decay.alpha)
        ]
        print(
            f"{s:11d} {t:10d} {np.mean(covered):10.3f} {np.mean(alphas):14.3f}"
            f"   ({len(pairs)} pairs, {len(alphas)} networks)"
        )


if __name__ == "__main__":
    main()
