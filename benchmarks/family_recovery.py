"""Validation: recover the families of the real pretrained networks in ../shared/zoo.

For each level (layer, pooled), fingerprint and ensemble: leave-one-out nearest-neighbour
family accuracy over the models whose family has two members or more, and the adjusted Rand
index of average-linkage classes cut at the number of families, with the run time.

Run: ``python benchmarks/family_recovery.py [--zoo ../shared/zoo]`` (``make bench``).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import fcluster
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, os.path.dirname(__file__))
from _common import nearest_other  # noqa: E402

from nnequiv import cluster  # noqa: E402


def nearest_neighbours(distance: np.ndarray, labels: list[str]) -> list[tuple[int, int]]:
    """(model, its nearest other model) for every model whose label occurs at least twice."""
    return [
        (i, nearest_other(distance, i))
        for i, label in enumerate(labels)
        if labels.count(label) >= 2
    ]


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default=str(root.parent / "shared" / "zoo"))
    parser.add_argument("--quick", action="store_true", help="default settings only")
    args = parser.parse_args()
    zoo = Path(args.zoo)
    rows = list(csv.DictReader((zoo / "MANIFEST.csv").open()))
    paths = [str(zoo / row["file"]) for row in rows]
    families = [row["family"] for row in rows]
    n_families = len(set(families))
    print(
        f"# family recovery on {len(paths)} networks, {n_families} families, "
        f"{sum(families.count(f) >= 2 for f in families)} models in families of 2+"
    )
    runs = [("layer", "signed", "CUE"), ("layer", "absolute", "CUE"), ("pooled", "signed", "CUE")]
    if not args.quick:
        runs += [
            ("layer", "signed", "COE"),
            ("layer", "signed", "CSE"),
            ("pooled", "signed", "COE"),
            ("pooled", "signed", "CSE"),
        ]
    print(
        f"{'level':7} {'fingerprint':11} {'ensemble':8} {'1-NN acc':>8} {'ARI':>6} "
        f"{'seconds':>8}  misses"
    )
    for level, fingerprint, ensemble in runs:
        start = time.perf_counter()
        classes = cluster(
            paths, level=level, ensemble=ensemble, fingerprint=fingerprint, realizations=10, seed=0
        )
        seconds = time.perf_counter() - start
        pairs = nearest_neighbours(classes.distance, families)
        accuracy = np.mean([families[i] == families[j] for i, j in pairs])
        cut = fcluster(classes.linkage, n_families, "maxclust")
        ari = adjusted_rand_score(families, cut)
        misses = [
            f"{Path(paths[i]).stem}->{Path(paths[j]).stem}"
            for i, j in pairs
            if families[i] != families[j]
        ]
        fp = fingerprint if level == "layer" else "-"
        print(
            f"{level:7} {fp:11} {ensemble:8} {accuracy:8.3f} {ari:6.3f} {seconds:8.1f}  "
            f"{', '.join(misses)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
