"""Benchmark: the 17 C. elegans connectomes in ../shared/connectomes.

For each dataset: decay rate, distance and verdict against its own degree-preserving null,
and its nearest other dataset; then the equivalence classes of all 17.

Run: ``python benchmarks/connectomes.py [--data ../shared/connectomes]`` (``make bench``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import nearest_other  # noqa: E402

from nnequiv import analyze, cluster, compare  # noqa: E402
from nnequiv.connectomes import null_model, save_connectome  # noqa: E402


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(root.parent / "shared" / "connectomes"))
    parser.add_argument("--realizations", type=int, default=10)
    args = parser.parse_args()
    paths = sorted(str(p) for p in Path(args.data).glob("*.npz"))
    start = time.perf_counter()
    analyses = [analyze(path, realizations=args.realizations) for path in paths]
    classes = cluster(analyses)
    names = [Path(p).stem for p in paths]
    nulls_rejected = 0
    witvliet_ok = 0
    print(
        f"{'dataset':24} {'alpha':>7} {'d(null)':>8} {'eps':>6} {'verdict vs null':16} "
        f"{'nearest other':24} {'d':>6}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        for index, path in enumerate(paths):
            null_path = Path(scratch) / f"{names[index]}_null.npz"
            save_connectome(null_model(path, seed=0), null_path)
            verdict = compare(analyses[index], null_path, realizations=args.realizations)
            alpha = analyses[index].decay.alpha
            nearest = nearest_other(classes.distance, index)
            nulls_rejected += verdict.verdict == "not equivalent"
            if names[index].startswith("witvliet"):
                witvliet_ok += names[nearest].startswith("witvliet")
            print(
                f"{names[index]:24} {alpha:7.3f} {verdict.distance:8.3f} {verdict.eps:6.3f} "
                f"{verdict.verdict:16} {names[nearest]:24} {classes.distance[index, nearest]:6.3f}",
                flush=True,
            )
    print(
        f"\nnot equivalent to own null: {nulls_rejected}/{len(paths)}; Witvliet stages whose "
        f"nearest other dataset is a Witvliet stage: {witvliet_ok}/8"
    )
    print(f"classes at eps = {classes.eps:.3f} ({classes.eps_source}):")
    for members in classes.classes:
        print("  " + ", ".join(Path(m).stem for m in members))
    print(f"time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
