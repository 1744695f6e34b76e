"""Equivalence that means design (issue 18): the calibrated design tolerance, judged.

Calibration data (made or held here, every number below leave-one-family-out):

* the zoo (../shared/zoo, 29 real networks, MANIFEST.csv families);
* the design sets of ``benchmarks/design_families.py``: four designs of identical layer
  shapes (plain or residual, ReLU or tanh) trained on scikit-learn's digits, at widths
  32/64/128 (3 block convolutions) and at depths 2/3/4/6 (width 64), two seeds, two
  optimisers (Adam; SGD with momentum and weight decay).

Judged, never calibrated on: the validation set of real networks from packages that ship
weights (``benchmarks/validation/MANIFEST.csv``, fetched by ``benchmarks/validation/fetch.py``).

It prints, with the library's own functions (``nnequiv.cluster`` and the calibration module):

1. the calibration fitted on all calibration sets (``--write-calibration FILE`` writes it),
   and its leave-one-family-out (LOFO) error rates per set; the file shipped in the package
   is fitted on the zoo alone (``nnequiv calibrate ../shared/zoo --families
   ../shared/zoo/MANIFEST.csv``), since the design sets' designs are not separable by the
   distance (section 3), and the sections after this one use it;
2. zoo: own classes (no number given) ARI at every fold's tolerance, same-family pairs
   "equivalent" and different-family pairs "equivalent" or "undecided" (LOFO verdicts),
   1-NN, and the null check (entry-shuffled and Gaussian copies, an untrained network
   against a trained one);
3. design sets: nearest network of another size has the same design (1-NN) and pair AUC,
   for width and depth separately, per optimiser and conjugate seed, against the
   shapes-only baseline;
4. the validation set: own-classes ARI and family 1-NN with the shipped calibration.

Run: ``OPENBLAS_NUM_THREADS=1 python benchmarks/design_equivalence.py`` (analyses cached
under ``--out``; the first run trains the design networks, about 40 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score, roc_auc_score

import nnequiv
import nnequiv.errors
from nnequiv.calibration import (
    Calibration,
    fit_tolerance,
    leave_one_family_out,
    load_calibration,
)
from nnequiv.distances import design_part_matrices, design_prints

sys.path.insert(0, os.path.dirname(__file__))
from design_families import (  # noqa: E402
    RECIPES,
    design_set,
    null_copies,
)
from design_families import nearest_label_accuracy as nearest_same  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def analyses_of(paths, cache: Path, seed: int) -> list:
    return nnequiv.analyze_all([str(p) for p in paths], seed=seed, cache_dir=cache)


def parts(analyses) -> tuple[np.ndarray, np.ndarray]:
    return design_part_matrices(design_prints(analyses))


def pair_auc(distance: np.ndarray, labels, sizes) -> float:
    """Chance that a same-design pair of different sizes is nearer than an other-design
    pair of different sizes."""
    i, j = np.triu_indices(len(labels), 1)
    other_size = np.array([sizes[a] != sizes[b] for a, b in zip(i, j)])
    same = np.array([labels[a] == labels[b] for a, b in zip(i, j)])
    values = distance[i, j][other_size]
    return float(roc_auc_score(same[other_size], -values))


def read_zoo(zoo: Path):
    rows = list(csv.DictReader((zoo / "MANIFEST.csv").open()))
    return [zoo / row["file"] for row in rows], [row["family"] for row in rows]


def calibration_sets(args, seed: int) -> dict:
    """name -> (analyses, labels, sizes) of every calibration set at conjugate seed ``seed``."""
    cache, out = Path(args.out) / "cache", Path(args.out)
    sets = {}
    paths, families = read_zoo(Path(args.zoo))
    sets["zoo"] = (analyses_of(paths, cache, seed), families, list(range(len(paths))))
    for recipe in args.recipes:
        members = design_set(out, RECIPES[recipe])
        sets[f"width-{recipe}"] = (
            analyses_of([m.path for m in members], cache, seed),
            [m.label for m in members],
            [m.width for m in members],
        )
        members = design_set(out, RECIPES[recipe], widths=(64,), depths=(2, 3, 4, 6))
        sets[f"depth-{recipe}"] = (
            analyses_of([m.path for m in members], cache, seed),
            [m.label for m in members],
            [m.depth for m in members],
        )
    return sets


def joint_matrices(sets: dict):
    """The part matrices of each set placed on one block diagonal, with set names."""
    blocks = {name: parts(analyses) for name, (analyses, _, _) in sets.items()}
    total = sum(len(labels) for _, labels, _ in sets.values())
    spectral, structural = np.zeros((total, total)), np.zeros((total, total))
    labels, set_of, start = [], [], 0
    for name, (_, members, _) in sets.items():
        stop = start + len(members)
        spectral[start:stop, start:stop], structural[start:stop, start:stop] = blocks[name]
        labels += list(members)
        set_of += [name] * len(members)
        start = stop
    return spectral, structural, np.array(labels), np.array(set_of), blocks


def verdict_rates(classes, labels) -> dict:
    """Shares of same-family pairs judged "same network" or "equivalent", and of
    different-family pairs judged anything but "not equivalent" ("undecided" counts against
    both)."""
    i, j = np.triu_indices(len(labels), 1)
    verdicts = classes.verdicts[i, j]
    same = np.array([labels[a] == labels[b] for a, b in zip(i, j)])
    yes = np.isin(verdicts, ["same network", "equivalent"])
    return {
        "same-family equivalent": float(yes[same].mean()),
        "different-family not refused": float((verdicts[~same] != "not equivalent").mean()),
        "undecided": float((verdicts == "undecided").mean()),
    }


def report_calibration(sets: dict, args) -> Calibration:
    spectral, structural, labels, set_of, _ = joint_matrices(sets)
    weight, eps, rates = fit_tolerance(spectral, structural, labels, set_of)
    checked = leave_one_family_out(spectral, structural, labels, set_of)
    print(f"\n# calibration on {len(labels)} networks of {len(sets)} sets")
    print(f"fitted: structure weight {weight:g}, eps_design {eps:.4f}; on its own data:")
    print(f"  same-family pairs within: {rates['true_rate']:.3f} (mean over sets)")
    print(f"  different-family pairs within: {rates['false_rate']:.4f} (mean over sets)")
    print("leave-one-family-out (tolerance fitted without the judged family):")
    print(f"{'set':12} {'same within':>11} {'of':>5} {'different within':>16} {'of':>6}")
    for name, row in checked["sets"].items():
        print(
            f"{name:12} {row['true_rate']:11.3f} {row['same_family_pairs']:5d} "
            f"{row['false_rate']:16.4f} {row['different_family_judgements']:6d}"
        )
    folds = {(f["structure_weight"], round(f["eps"], 4)) for f in checked["folds"]}
    print(f"fold (weight, eps) values: {sorted(folds)}")
    provenance = {
        "data": "zoo (../shared/zoo MANIFEST.csv families) and the design sets of "
        "benchmarks/design_families.py (widths 32/64/128, depths 2/3/4/6, seeds 0-1, "
        "Adam and SGD), seed 0, default analysis settings",
        "sets": {name: len(members) for name, (_, members, _) in sets.items()},
        "families": int(len(set(zip(set_of, labels)))),
        "fitted": rates,
        "script": "benchmarks/design_equivalence.py --write-calibration",
        "version": nnequiv.__version__,
        "settings": nnequiv.Settings().to_dict(),
    }
    calibration = Calibration(
        eps, weight, "all calibration sets", provenance, {"leave_one_family_out": checked["sets"]}
    )
    if args.write_calibration:
        calibration.save(args.write_calibration)
        print(f"wrote {args.write_calibration}")
    return calibration, checked


def zoo_report(sets: dict, checked: dict, calibration: Calibration, args) -> None:
    analyses, families, _ = sets["zoo"]
    print("\n# zoo: own classes and verdicts, leave-one-family-out")
    folds = [f for f in checked["folds"] if f["set"] == "zoo"]
    aris, memo = [], {}
    judged_same, judged_diff = [], []
    i, j = np.triu_indices(len(families), 1)
    for fold in folds:
        key = (fold["structure_weight"], fold["eps"])
        if key not in memo:
            memo[key] = nnequiv.cluster(
                analyses, calibration=Calibration(fold["eps"], fold["structure_weight"])
            )
        classes = memo[key]
        aris.append(adjusted_rand_score(families, classes.labels_))
        held = np.array([f == fold["family"] for f in families])
        for a, b in zip(i, j):
            if not (held[a] or held[b]):
                continue
            verdict = classes.verdicts[a, b]
            if families[a] == families[b]:
                judged_same.append(verdict in ("same network", "equivalent"))
            else:
                judged_diff.append(verdict != "not equivalent")
    design = memo[next(iter(memo))].design_distance
    count = len(families)
    nn = nearest_same(
        design,
        families,
        lambda k: [m for m in range(count) if m != k] if families.count(families[k]) > 1 else [],
    )
    print(f"own-classes ARI at each fold's tolerance: median {np.median(aris):.3f}, "
          f"range {min(aris):.3f}-{max(aris):.3f} ({len(aris)} folds)")  # fmt: skip
    print(f"same-family pairs 'same network' or 'equivalent': {np.mean(judged_same):.3f} "
          f"({sum(judged_same)} of {len(judged_same)})")  # fmt: skip
    print(f"different-family judgements not 'not equivalent': {np.mean(judged_diff):.4f} "
          f"({sum(judged_diff)} of {len(judged_diff)})")  # fmt: skip
    print(f"family 1-NN (design distance): {nn:.3f}")
    shipped = nnequiv.cluster(analyses, calibration=calibration)
    print(f"with the shipped calibration: {len(shipped.classes)} classes, ARI "
          f"{adjusted_rand_score(families, shipped.labels_):.3f}")  # fmt: skip
    for k, members in enumerate(shipped.classes, 1):
        print(f"  class {k}: {', '.join(Path(m).stem for m in members)}")


def null_report(sets: dict, calibration: Calibration, args) -> None:
    print("\n# null check (shipped calibration): trained against copies")
    paths, _ = read_zoo(Path(args.zoo))
    out = Path(args.out)
    analyses = sets["zoo"][0]
    failures, total = 0, 0
    from design_families import Member

    for path, analysis in zip(paths, analyses):
        copies = null_copies(Member(path, ""), out)
        copy_analyses = analyses_of([c.path for c in copies], out / "cache", 0)
        for copy in copy_analyses:
            verdict = nnequiv.compare(analysis, copy, calibration=calibration).verdict
            total += 1
            failures += verdict != "not equivalent"
    print(f"zoo network vs entry-shuffled / Gaussian copy not 'not equivalent': "
          f"{failures} of {total}")  # fmt: skip
    untrained = init_networks(out)
    trained = [m.path for m in design_set(out, RECIPES["adam"], widths=(32, 64, 128))]
    init_analyses = analyses_of(untrained, out / "cache", 0)
    trained_analyses = analyses_of(trained, out / "cache", 0)
    bad = 0
    for init, path in zip(init_analyses, untrained):
        for other, other_path in zip(trained_analyses, trained):
            if Path(path).stem.split("-init")[0] == Path(other_path).stem.rsplit("-s", 1)[0]:
                verdict = nnequiv.compare(init, other, calibration=calibration).verdict
                bad += verdict != "not equivalent"
    print(f"untrained network vs the trained one of its design and width, not "
          f"'not equivalent': {bad} of {2 * len(untrained)}")  # fmt: skip


def precision_copies(path: Path, out: Path) -> list[Path]:
    """fp16 and int8 (symmetric, one scale per tensor) copies of a network's float tensors."""
    folder = out / "precision"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in ("fp16", "int8"):
        target = folder / f"{path.stem}-{kind}.npz"
        if not target.exists():
            arrays = {}
            with np.load(path, allow_pickle=False) as stored:
                for name in stored.files:
                    array = stored[name]
                    if np.issubdtype(array.dtype, np.floating):
                        if kind == "fp16":
                            array = array.astype(np.float16)
                        else:
                            scale = float(np.abs(array).max()) / 127 or 1.0
                            array = (np.round(array / scale) * scale).astype(np.float32)
                    arrays[name] = array
            np.savez(target, **arrays)
        written.append(target)
    return written


def precision_report(sets: dict, calibration: Calibration, args) -> None:
    print("\n# the same weights in another precision (shipped calibration)")
    paths, _ = read_zoo(Path(args.zoo))
    out = Path(args.out)
    counts: dict = {}
    for path, analysis in zip(paths, sets["zoo"][0]):
        copies = precision_copies(path, out)
        for kind, copy in zip(("fp16", "int8"), analyses_of(copies, out / "cache", 0)):
            verdict = nnequiv.compare(analysis, copy, calibration=calibration).verdict
            counts.setdefault(kind, {}).setdefault(verdict, []).append(path.stem)
    for kind, verdicts in counts.items():
        summary = ", ".join(f"{v} {len(n)}" for v, n in sorted(verdicts.items()))
        print(f"zoo vs its {kind} copy: {summary}")
        for verdict, names in verdicts.items():
            if verdict not in ("same network", "equivalent"):
                print(f"  {verdict}: {', '.join(names)}")


def init_networks(out: Path) -> list[Path]:
    """Untrained (initial) weights of every design at every width, seed 0."""
    import torch
    from design_families import DESIGNS, WIDTHS, design_network

    folder = out / "untrained"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for width in WIDTHS:
        for design in DESIGNS:
            path = folder / f"{design}-w{width}-init.npz"
            if not path.exists():
                torch.manual_seed(0)
                net = design_network(design, width)
                np.savez(path, **{k: v.detach().numpy() for k, v in net.state_dict().items()})
            paths.append(path)
    return paths


def design_report(all_seeds: dict, calibration: Calibration) -> None:
    print("\n# designs of identical shapes: nearest network of another size, pair AUC")
    print(f"{'set':12} {'seed':>4} {'1-NN':>6} {'AUC':>6} {'shapes 1-NN':>11} "
          f"{'shapes AUC':>10} {'spectral 1-NN':>13}")  # fmt: skip
    worst: dict = {}
    for seed, sets in all_seeds.items():
        for name, (analyses, labels, sizes) in sets.items():
            if name == "zoo":
                continue
            spectral, structural = parts(analyses)
            design = np.hypot(spectral, calibration.structure_weight * structural)

            def other_size(i, sizes=sizes):
                return [j for j in range(len(sizes)) if sizes[j] != sizes[i]]

            row = (
                nearest_same(design, labels, other_size),
                pair_auc(design, labels, sizes),
                nearest_same(structural, labels, other_size),
                pair_auc(structural, labels, sizes),
                nearest_same(spectral, labels, other_size),
            )
            kind = name.split("-")[0]
            worst[kind] = [min(a, b) for a, b in zip(worst.get(kind, row), row)]
            print(f"{name:12} {seed:4d} " + " ".join(
                f"{v:{w}.3f}" for v, w in zip(row, (6, 6, 11, 10, 13))))  # fmt: skip
    for kind, row in worst.items():
        print(f"worst {kind}: 1-NN {row[0]:.3f}, AUC {row[1]:.3f} (shapes only: "
              f"{row[2]:.3f} / {row[3]:.3f})")  # fmt: skip


def validation_report(args, calibration: Calibration) -> None:
    folder = Path(args.validation)
    manifest = ROOT / "benchmarks" / "validation" / "MANIFEST.csv"
    if not manifest.exists() or not folder.exists():
        print(f"\n# validation set: {folder} or {manifest} missing; run "
              "benchmarks/validation/fetch.py first")  # fmt: skip
        return
    sys.path.insert(0, str(manifest.parent))
    from fetch import target_path  # the file or folder fetch.py wrote for a manifest row

    rows = list(csv.DictReader(manifest.open()))
    name_of = {}  # path -> manifest name: a name may hold dots, a suffix two (.pth.tar)
    paths, families = [], []
    for row in rows:
        path = target_path(folder, row)
        if not path.exists():
            print(f"  missing: {row['name']}")
            continue
        name_of[str(path)] = row["name"]
        paths.append(path)
        families.append(row["family"])
    errors, analyses = [], []
    for path in paths:
        try:
            analyses += nnequiv.analyze_all([str(path)], cache_dir=Path(args.out) / "cache")
        except nnequiv.errors.NNEquivError as error:
            errors.append((path.name, str(error)))
    kept = {str(a.path) for a in analyses}
    families = [f for p, f in zip(paths, families) if str(p) in kept]
    for label, error in errors:
        print(f"  not analysed: {label}: {error}")
    classes = nnequiv.cluster(analyses, calibration=calibration)
    count = len(families)
    nn = nearest_same(
        classes.design_distance,
        families,
        lambda k: [m for m in range(count) if m != k] if families.count(families[k]) > 1 else [],
    )
    rates = verdict_rates(classes, families)
    print(f"\n# validation set ({count} networks, {len(set(families))} families; never "
          "calibrated on), shipped calibration")  # fmt: skip
    print(
        f"own classes: {len(classes.classes)}, ARI "
        f"{adjusted_rand_score(families, classes.labels_):.3f}; family 1-NN {nn:.3f}"
    )
    print("  " + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))
    for k, members in enumerate(classes.classes, 1):
        print(f"  class {k}: {', '.join(Path(m).stem for m in members)}")
    print("same weights in two files (manifest 'same_weights_as'):")
    index = {name_of[str(a.path)]: k for k, a in enumerate(analyses)}
    precision = {row["name"]: row["precision"] for row in rows}
    for row in rows:
        other = row.get("same_weights_as")
        if not other or row["name"] not in index or other not in index:
            continue
        i, j = index[row["name"]], index[other]
        print(f"  {row['name']} ({precision[row['name']]}) vs {other} ({precision[other]}): "
              f"{classes.verdicts[i, j]} (d {classes.distance[i, j]:.4f}, eps "
              f"{classes.eps_pairs[i, j]:.4f}; D {classes.design_distance[i, j]:.4f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench-output" / "designs"))
    parser.add_argument("--zoo", default=str(ROOT.parent / "shared" / "zoo"))
    parser.add_argument(
        "--validation", default=str(ROOT / "bench-output" / "validation"),
        help="folder written by benchmarks/validation/fetch.py",
    )  # fmt: skip
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--write-calibration", metavar="FILE")
    parser.add_argument("--skip", nargs="*", default=[], choices=["null", "validation"])
    args = parser.parse_args()
    start = time.perf_counter()
    print(f"# nnequiv {nnequiv.__version__}, design equivalence (issue 18)")
    all_seeds = {seed: calibration_sets(args, seed) for seed in args.seeds}
    report_calibration(all_seeds[args.seeds[0]], args)
    calibration = load_calibration()
    zoo_analyses, families, _ = all_seeds[args.seeds[0]]["zoo"]
    checked = leave_one_family_out(*parts(zoo_analyses), families)
    for fold in checked["folds"]:
        fold["set"] = "zoo"
    print(
        f"\n# shipped calibration ({calibration.provenance.get('data', '')[:60]}...): "
        f"eps_design {calibration.eps_design:.4f}, weight {calibration.structure_weight:g}"
    )
    zoo_report(all_seeds[args.seeds[0]], checked, calibration, args)
    design_report(all_seeds, calibration)
    if "null" not in args.skip:
        null_report(all_seeds[args.seeds[0]], calibration, args)
        precision_report(all_seeds[args.seeds[0]], calibration, args)
    if "validation" not in args.skip:
        validation_report(args, calibration)
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
