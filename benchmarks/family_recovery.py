"""Validation: recover the families of the real pretrained networks in ../shared/zoo.

For each level (layer, pooled), fingerprint and ensemble: leave-one-out nearest-neighbour
family accuracy over the models whose family has two members or more, and the adjusted Rand
index of average-linkage classes cut at the number of families, with the run time. Then the
default settings at several seeds, to show how much the scores move with the random draws, and
the rank of each model's nearest family member under the layer and pooled distances and under
a distance of the layer shapes alone (no weights), which shows which misses the family labels
themselves make unavoidable for the 1-NN score.

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

from nnequiv import Analysis, analyze, cluster  # noqa: E402
from nnequiv.distances import energy_distance  # noqa: E402
from nnequiv.settings import DEFAULT_ORDER_WEIGHT  # noqa: E402


def nearest_neighbours(distance: np.ndarray, labels: list[str]) -> list[tuple[int, int]]:
    """(model, its nearest other model) for every model whose label occurs at least twice."""
    return [
        (i, nearest_other(distance, i))
        for i, label in enumerate(labels)
        if labels.count(label) >= 2
    ]


def partner_ranks(distance: np.ndarray, labels: list[str]) -> dict[int, int]:
    """For every model whose label occurs twice or more, the rank of its nearest other model
    with the same label: 1 + the number of other models strictly nearer."""
    ranks = {}
    for i, label in enumerate(labels):
        same = [j for j, other in enumerate(labels) if other == label and j != i]
        if same:
            row = np.delete(distance[i], i)
            ranks[i] = 1 + int(np.sum(row < distance[i, same].min()))
    return ranks


def shape_distance(analyses) -> np.ndarray:
    """Energy distance between the clouds of standardised (log N, log M) layer shapes: the
    architecture as written, with no weight values and no conjugate ensemble."""
    clouds = [np.log([layer.matrix_shape for layer in a.layers]) for a in analyses]
    stacked = np.concatenate(clouds)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    clouds = [(cloud - mean) / std for cloud in clouds]
    distance = np.zeros((len(clouds), len(clouds)))
    for i in range(len(clouds)):
        for j in range(i + 1, len(clouds)):
            distance[i, j] = distance[j, i] = energy_distance(clouds[i], clouds[j])
    return distance


def default_analyses(paths: list[str], seed: int = 0) -> list:
    """The analyses of the zoo with the default settings; the order weight only changes the
    feature scale, so one analysis per network serves every weight."""
    return [analyze(path, realizations=10, seed=seed) for path in paths]


def reach(paths: list[str], families: list[str], analyses: list) -> None:
    """Print the rank of each model's nearest family member under three distances, and the
    1-NN accuracy that the models missed by all three leave at most."""
    distances = {
        "layer": cluster(analyses).distance,
        "pooled": cluster(analyses, level="pooled").distance,
        "shapes": shape_distance(analyses),
    }
    ranks = {name: partner_ranks(distance, families) for name, distance in distances.items()}
    others = len(paths) - 1
    print(f"\n# rank of the nearest family member among the {others} other networks (1 = nearest)")
    print(f"{'network':36} {'family':20} " + " ".join(f"{name:>6}" for name in distances))
    for i in ranks["layer"]:
        print(
            f"{Path(paths[i]).stem:36} {families[i]:20} "
            + " ".join(f"{ranks[name][i]:6d}" for name in distances)
        )
    missed = [i for i in ranks["layer"] if all(ranks[name][i] > 1 for name in distances)]
    total = len(ranks["layer"])
    print(
        f"missed by every distance above: {len(missed)} of {total} "
        f"({', '.join(Path(paths[i]).stem for i in missed)}); "
        f"with these missed, 1-NN accuracy <= {(total - len(missed)) / total:.3f}"
    )


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default=str(root.parent / "shared" / "zoo"))
    parser.add_argument("--quick", action="store_true", help="default settings only")
    parser.add_argument(
        "--seeds", type=int, default=None, help="default settings at seeds 0..K-1 (full: 5)"
    )
    args = parser.parse_args()
    if args.seeds is None:
        args.seeds = 0 if args.quick else 5
    zoo = Path(args.zoo)
    rows = list(csv.DictReader((zoo / "MANIFEST.csv").open()))
    paths = [str(zoo / row["file"]) for row in rows]
    families = [row["family"] for row in rows]
    n_families = len(set(families))
    print(
        f"# family recovery on {len(paths)} networks, {n_families} families, "
        f"{sum(families.count(f) >= 2 for f in families)} models in families of 2+"
    )
    # (level, fingerprint, ensemble, order weight, canonical form)
    w = DEFAULT_ORDER_WEIGHT
    runs = [
        ("layer", "signed", "CUE", w, "balanced"),
        ("layer", "absolute", "CUE", w, "balanced"),
        ("pooled", "signed", "CUE", w, "balanced"),
    ]
    if not args.quick:
        runs += [
            ("layer", "signed", "CUE", 0.0, "balanced"),
            ("layer", "signed", "CUE", 1.0, "balanced"),
            ("layer", "signed", "CUE", w, "rows"),
            ("layer", "signed", "CUE", w, "raw"),
            ("layer", "signed", "COE", w, "balanced"),
            ("layer", "signed", "CSE", w, "balanced"),
            ("pooled", "signed", "COE", w, "balanced"),
            ("pooled", "signed", "CSE", w, "balanced"),
        ]
    print(
        f"{'level':7} {'fingerprint':11} {'w':>4} {'canonical':9} {'ensemble':8} "
        f"{'1-NN acc':>8} {'ARI':>6} {'seconds':>8}  misses"
    )
    for level, fingerprint, ensemble, weight, canonical in runs:
        accuracy, ari, misses, seconds = recovery(
            paths,
            families,
            level=level,
            ensemble=ensemble,
            fingerprint=fingerprint,
            order_weight=weight,
            canonical=canonical,
        )
        fp, shown = (fingerprint, f"{weight:g}") if level == "layer" else ("-", "-")
        print(
            f"{level:7} {fp:11} {shown:>4} {canonical:9} {ensemble:8} {accuracy:8.3f} "
            f"{ari:6.3f} {seconds:8.1f}  {', '.join(misses)}",
            flush=True,
        )
    if args.seeds:
        print(
            f"\n# layer level, signed, CUE at seeds 0..{args.seeds - 1}: default order weight and 1"
        )
        print(f"{'seed':>4} {'1-NN acc':>8} {'ARI':>6} {'1-NN w=1':>9} {'ARI w=1':>8}")
        scores = []
        for seed in range(args.seeds):
            analyses = default_analyses(paths, seed)
            if seed == 0:
                seed0 = analyses
            default = recovery(analyses, families)[:2]
            plain = recovery(analyses, families, order_weight=1.0)[:2]
            scores.append(default + plain)
            print(f"{seed:4d} {default[0]:8.3f} {default[1]:6.3f} {plain[0]:9.3f} {plain[1]:8.3f}")
        low, high = np.min(scores, axis=0), np.max(scores, axis=0)
        for name, column in (("default", 0), ("w=1", 2)):
            print(
                f"range {name}: 1-NN {low[column]:.3f}-{high[column]:.3f}, "
                f"ARI {low[column + 1]:.3f}-{high[column + 1]:.3f}"
            )
    reach(paths, families, seed0 if args.seeds else default_analyses(paths))


def recovery(sources: list, families: list[str], **options):
    """1-NN family accuracy, ARI, misses and seconds of one :func:`nnequiv.cluster` run on
    paths (analysed in the run) or on finished analyses."""
    if not any(isinstance(s, Analysis) for s in sources):
        options = {"realizations": 10, "seed": 0, **options}
    start = time.perf_counter()
    classes = cluster(sources, **options)
    seconds = time.perf_counter() - start
    pairs = nearest_neighbours(classes.distance, families)
    accuracy = float(np.mean([families[i] == families[j] for i, j in pairs]))
    cut = fcluster(classes.linkage, len(set(families)), "maxclust")
    ari = adjusted_rand_score(families, cut)
    misses = [
        f"{Path(classes.models[i]).stem}->{Path(classes.models[j]).stem}"
        for i, j in pairs
        if families[i] != families[j]
    ]
    return accuracy, ari, misses, seconds


if __name__ == "__main__":
    main()
