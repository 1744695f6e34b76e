"""Architecture, not size: do networks group by design or by width? (issue 10, point 3)

Trains small CNNs on scikit-learn's digits (bundled, no download) in four designs whose layer
shapes are identical: plain or residual blocks, ReLU or tanh. Every design is trained at three
widths (32, 64, 128) with two seeds, by two recipes (design sets): Adam (lr 1e-3, 20 epochs)
and SGD with momentum 0.9 and weight decay 5e-4 (lr 0.02, 40 epochs), batch 32, one torch
thread; every network reaches 91-99 % test accuracy. Every network has the layer matrices

    stem 1->w 3x3 (w x 9), stride-2 conv w->w 3x3 (w x 9w), 3 block convs w->w 3x3 (w x 9w),
    linear w->10 (10 x w),

and differs from the other designs only in what it computes (skip connections, activation).
For each variant of the distance it reports

* on the design set: the 1-NN design accuracy among networks of *other* widths, and the ARI of
  the average-linkage tree cut at the number of designs;
* on the zoo (../shared/zoo): the leave-one-out 1-NN family accuracy over the networks whose
  family has two members or more, and the ARI of the average-linkage tree cut at the number of
  families;

at the layer level (for each scale), the pooled level and a shapes-only baseline, at every
seed of the conjugate ensemble (scores per variant and seed also go to ``--out``/variants.csv).
Then, for the design sets, the mean distance by (design, width) relation, which shows why the
average-linkage tree groups by width. ``--grid`` runs the full factorial of layer-level
variants instead (1218 variants, about 5 minutes once cached). With ``--null-check`` it also
checks that every zoo network is "not equivalent" to an entry-shuffled and to a Gaussian copy
of itself at the per-pair eps = max(noise floors), for the recommended setting.

First it scores the library itself (``nnequiv.cluster`` with its default settings, layer and
pooled level). The variants after it emulate the computation of nnequiv 0.1 with the changes
then proposed (benchmarks/_features.py; checked equal to nnequiv 0.1 at commit 1c4150d): a
fixed, set-independent scale of the layer points instead of the set-wide standardisation, a
canonical form with unit-norm output rows, TensorFlow depthwise kernels read as C x kh*kw.
They are the record of every setting tried before 0.2's defaults were chosen.

Run: ``OPENBLAS_NUM_THREADS=1 python benchmarks/design_families.py [--null-check] [--grid]``
(``--out bench-output/designs`` by default; trained weights and curves are cached there and
reused, spectra within a run: the first run trains 48 networks, about 16 minutes on 2 busy cores, a
cached run takes about 90 s).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.metrics import adjusted_rand_score

from nnequiv import __version__

sys.path.insert(0, os.path.dirname(__file__))
from _features import (  # noqa: E402
    Curves,
    Scale,
    WeightForm,
    distance_spread,
    layer_distance_matrix,
    layer_spectra,
    network_curves,
    noise_floor,
    pooled_distance_matrix,
    shape_distance_matrix,
)

from nnequiv.equivalence import decide  # noqa: E402
from nnequiv.spectra import normalize_spectrum  # noqa: E402

#: design name -> (residual blocks, activation name)
DESIGNS = {
    "plain-relu": (False, "relu"),
    "residual-relu": (True, "relu"),
    "plain-tanh": (False, "tanh"),
    "residual-tanh": (True, "tanh"),
}
WIDTHS = (32, 64, 128)
TRAIN_SEEDS = (0, 1)
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Recipe:
    """How every design network is trained (the same for all designs and widths)."""

    optimiser: str = "adam"  # "adam" or "sgd" (momentum 0.9)
    learning_rate: float = 1e-3
    epochs: int = 20
    batch: int = 32
    weight_decay: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.optimiser}-lr{self.learning_rate:g}-e{self.epochs}-wd{self.weight_decay:g}"


RECIPES = {
    "adam": Recipe(),
    "sgd": Recipe("sgd", learning_rate=0.02, epochs=40, weight_decay=5e-4),
}


# ---- the design set -----------------------------------------------------------------


def digits_split():
    """Digits images (N x 1 x 8 x 8, in [0, 1]) and labels, split 80/20 with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    images = (images / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    return train_test_split(
        images, labels, test_size=TEST_FRACTION, random_state=0, stratify=labels
    )


def design_network(design: str, width: int, depth: int = 3):
    """A small CNN of ``design``, ``width`` and ``depth`` block convolutions; every design has
    the same layer shapes."""
    import torch
    from torch import nn

    residual, activation = DESIGNS[design]
    act = {"relu": torch.relu, "tanh": torch.tanh}[activation]

    class DesignNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, width, 3, padding=1)
            self.down = nn.Conv2d(width, width, 3, stride=2, padding=1)
            self.blocks = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(depth))
            self.head = nn.Linear(width, 10)

        def forward(self, x):
            h = act(self.down(act(self.stem(x))))
            for conv in self.blocks:
                h = h + act(conv(h)) if residual else act(conv(h))
            return self.head(h.mean(dim=(2, 3)))

    return DesignNet()


def train_design(
    design: str, width: int, seed: int, data, recipe: Recipe = RECIPES["adam"], depth: int = 3
) -> tuple[dict, float]:
    """Train one network on one torch thread; its weights and test accuracy."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    x_train, x_test, y_train, y_test = (torch.as_tensor(part) for part in data)
    net = design_network(design, width, depth)
    if recipe.optimiser == "adam":
        optimiser = torch.optim.Adam(
            net.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay
        )
    else:
        optimiser = torch.optim.SGD(
            net.parameters(),
            lr=recipe.learning_rate,
            momentum=0.9,
            weight_decay=recipe.weight_decay,
        )
    for _ in range(recipe.epochs):
        order = torch.randperm(len(y_train))
        for start in range(0, len(order), recipe.batch):
            batch = order[start : start + recipe.batch]
            loss = torch.nn.functional.cross_entropy(net(x_train[batch]), y_train[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        accuracy = float((net(x_test).argmax(dim=1) == y_test).float().mean())
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}, accuracy


@dataclass
class Member:
    """One network of a compared set, with its label (design or family)."""

    path: Path
    label: str
    width: int = 0
    depth: int = 3


def design_set(
    out: Path, recipe: Recipe = RECIPES["adam"], widths=WIDTHS, seeds=TRAIN_SEEDS, depths=(3,)
) -> list[Member]:
    """The trained design networks, trained now or read from ``out/weights-<recipe>``: every
    design at every width and depth (number of block convolutions) and seed."""
    folder = out / f"weights-{recipe.name}"
    folder.mkdir(parents=True, exist_ok=True)
    data = None
    members = []
    for width in widths:
        for depth in depths:
            for design in DESIGNS:
                for seed in seeds:
                    name = f"{design}-w{width}" + ("" if depth == 3 else f"-d{depth}")
                    path = folder / f"{name}-s{seed}.npz"
                    meta = path.with_suffix(".json")
                    if not (path.exists() and meta.exists()):
                        data = data if data is not None else digits_split()
                        start = time.perf_counter()
                        weights, accuracy = train_design(design, width, seed, data, recipe, depth)
                        seconds = time.perf_counter() - start
                        np.savez(path, **weights)
                        meta.write_text(json.dumps({"test_accuracy": accuracy, "seconds": seconds}))
                    members.append(Member(path, design, width, depth))
    return members


def zoo_set(zoo: Path) -> list[Member]:
    rows = list(csv.DictReader((zoo / "MANIFEST.csv").open()))
    return [Member(zoo / row["file"], row["family"]) for row in rows]


# ---- analyses (cached) ----------------------------------------------------------------


@dataclass(frozen=True)
class CurveSettings:
    """What the layer points depend on: the weight form, the ensemble, the seed."""

    form: WeightForm = WeightForm()
    ensemble: str = "CUE"
    seed: int = 0
    realizations: int = 10


def set_curves(
    members: list[Member], analysis: CurveSettings, out: Path, tag: str, memo: dict
) -> list[Curves]:
    """The curves of every member under ``analysis``: from memory, from ``out/curves``, or
    computed (each network's spectra once per run)."""
    key = (tag, analysis)
    if key in memo:
        return memo[key]
    a = analysis
    path = out / "curves" / f"{tag}-{a.form.name}-{a.ensemble}-s{a.seed}-r{a.realizations}.npz"
    names = [str(m.path) for m in members]
    if path.exists():
        with np.load(path, allow_pickle=False) as stored:
            if list(stored["names"]) == names:
                memo[key] = [
                    Curves(
                        name,
                        *(stored[f"{i}/{part}"] for part in ("orders", "shapes", "locations")),
                        *(stored[f"{i}/{part}"] for part in ("signed", "absolute", "pooled")),
                    )
                    for i, name in enumerate(names)
                ]
                return memo[key]
    curves = [
        network_curves(
            name,
            layer_spectra(str(name), a.form),
            a.seed,
            a.realizations,
            a.ensemble,
        )
        for name in names
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"names": np.array(names)}
    for i, c in enumerate(curves):
        for part in ("orders", "shapes", "locations", "signed", "absolute", "pooled"):
            arrays[f"{i}/{part}"] = getattr(c, part)
    np.savez(path, **arrays)
    memo[key] = curves
    return curves


# ---- scores -----------------------------------------------------------------------------


def nearest_label_accuracy(distance: np.ndarray, labels, candidates) -> float:
    """Mean, over the rows i with candidates, of the fraction of i's nearest candidates (ties
    share the credit) whose label is i's. ``candidates(i)`` lists the allowed columns."""
    scores = []
    for i in range(len(labels)):
        allowed = np.asarray(candidates(i), dtype=int)
        if allowed.size == 0:
            continue
        row = distance[i, allowed]
        nearest = allowed[row <= row.min() + 1e-12 * max(row.min(), 1e-300)]
        scores.append(np.mean([labels[j] == labels[i] for j in nearest]))
    return float(np.mean(scores))


def tree_ari(distance: np.ndarray, labels) -> float:
    """ARI of the average-linkage tree cut at the number of distinct labels."""
    tree = linkage(squareform(distance, checks=False), "average")
    return float(adjusted_rand_score(labels, fcluster(tree, len(set(labels)), "maxclust")))


def design_scores(distance: np.ndarray, members: list[Member]) -> tuple[float, float]:
    """1-NN design accuracy among networks of other widths, and tree ARI."""
    labels = [m.label for m in members]
    widths = np.array([m.width for m in members])
    accuracy = nearest_label_accuracy(
        distance, labels, lambda i: np.flatnonzero(widths != widths[i])
    )
    return accuracy, tree_ari(distance, labels)


def zoo_scores(distance: np.ndarray, members: list[Member]) -> tuple[float, float]:
    """Leave-one-out 1-NN family accuracy over families of 2+, and tree ARI."""
    labels = [m.label for m in members]
    count = len(labels)
    accuracy = nearest_label_accuracy(
        distance,
        labels,
        lambda i: [j for j in range(count) if j != i] if labels.count(labels[i]) > 1 else [],
    )
    return accuracy, tree_ari(distance, labels)


# ---- variants ---------------------------------------------------------------------------


def log_locations(low: float, high: float, step: float) -> tuple:
    """Locations ``10^low, 10^(low + step), ..., 10^high``."""
    return tuple(10 ** np.round(np.arange(low, high + 1e-9, step), 6))


#: Location sets tried, by name: count and range in decades.
LOCATIONS = {
    "9:-2..2": log_locations(-2, 2, 0.5),  # today's default
    "17:-2..2": log_locations(-2, 2, 0.25),
    "41:-2..2": log_locations(-2, 2, 0.1),
    "13:-3..3": log_locations(-3, 3, 0.5),
    "21:-1..1": log_locations(-1, 1, 0.1),
    "51:-1..1.5": log_locations(-1, 1.5, 0.05),
    "5:1..2": log_locations(1, 2, 0.25),
}
#: Windows of locations in quarter decades, 10^low .. 10^high (grid only, without log n).
WINDOWS = {
    f"{int(round((high - low) / 0.25)) + 1}:{low:g}..{high:g}": log_locations(low, high, 0.25)
    for low in (-1, -0.5, 0, 0.25, 0.5, 0.75, 1)
    for high in (0.5, 1, 1.5, 2)
    if high - low >= 0.5
}
CANONICAL = WeightForm(unit_rows=True, depthwise=True)
RAW = WeightForm()


@dataclass(frozen=True)
class Variant:
    """One distance: a level, the analysis settings it needs and, at the layer level, a scale."""

    level: str = "layer"  # "layer", "pooled" or "shapes"
    form: WeightForm = CANONICAL
    ensemble: str = "CUE"
    scale: Scale = Scale()
    locations_name: str = "9:-2..2"

    @property
    def name(self) -> str:
        if self.level != "layer":
            return f"{self.level}, {self.form.name}" if self.level == "pooled" else "shapes only"
        s = self.scale
        scale = f"standardised w={s.order_weight:g}" if s.standardise else f"w={s.order_weight:g}"
        parts = [scale, self.form.name, s.fingerprint, self.locations_name]
        parts += [] if s.coordinate == "unit" else [f"coord={s.coordinate}"]
        parts += [] if s.layer_weight == "equal" else [f"mass={s.layer_weight}"]
        parts += [] if self.ensemble == "CUE" else [self.ensemble]
        return ", ".join(parts)

    def distance(self, curves: list[Curves]) -> np.ndarray:
        if self.level == "pooled":
            return pooled_distance_matrix(curves)
        if self.level == "shapes":
            return shape_distance_matrix(curves)
        return layer_distance_matrix(curves, self.scale)


def layer_variant(
    weight: float,
    form: WeightForm = CANONICAL,
    locations: str = "9:-2..2",
    ensemble: str = "CUE",
    **scale,
) -> Variant:
    """A layer-level variant with a fixed scale (unless ``standardise=True``)."""
    return Variant(
        "layer",
        form,
        ensemble,
        Scale(locations={**LOCATIONS, **WINDOWS}[locations], order_weight=weight, **scale),
        locations,
    )


TODAY = layer_variant(3.0, RAW, standardise=True)
#: The recommended default: canonical form (unit rows, depthwise as C x kh*kw), signed tail
#: masses at the 9 default locations in their natural unit, log n with weight 2.
RECOMMENDED = layer_variant(2.0)


def main_variants() -> list[Variant]:
    """Today's default, the baselines, the fixed-scale grid of log-n weights, and one change
    at a time from the recommended setting."""
    variants = [
        TODAY,
        layer_variant(3.0, CANONICAL, standardise=True),
        Variant("shapes", RAW),
        Variant("pooled", RAW),
        Variant("pooled", CANONICAL),
    ]
    variants += [layer_variant(w) for w in (0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 1.5, 2, 3, 5)]
    for w in (0, 2):
        variants += [
            layer_variant(w, RAW),
            layer_variant(w, WeightForm(depthwise=True)),
            layer_variant(w, WeightForm(unit_rows=True)),
            layer_variant(w, fingerprint="absolute"),
            layer_variant(w, coordinate="theory"),
            layer_variant(w, layer_weight="sqrt_n"),
            layer_variant(w, layer_weight="n"),
            layer_variant(w, ensemble="COE"),
            layer_variant(w, ensemble="CSE"),
        ]
        variants += [layer_variant(w, locations=name) for name in list(LOCATIONS)[1:]]
    variants += [layer_variant(w, coordinate="theory") for w in (0.5, 0.7, 1)]
    return variants


def grid_variants() -> list[Variant]:
    """The full factorial explored at the layer level (canonical and raw form), then windows
    of locations (10^lo .. 10^hi, quarter decades) without log n."""
    variants = [
        layer_variant(w, form, name, fingerprint=fp, coordinate=coord, layer_weight=mass)
        for form in (CANONICAL, WeightForm(depthwise=True))
        for name in LOCATIONS
        for fp in ("signed", "absolute")
        for coord in ("unit", "theory")
        for mass in ("equal", "sqrt_n", "n")
        for w in (0, 0.05, 0.1, 0.3, 1, 2, 3)
    ]
    variants += [
        layer_variant(0, locations=name, coordinate=coord)
        for name in WINDOWS
        for coord in ("unit", "theory")
    ]
    return variants


SCORES = ("design 1-NN", "design ARI", "zoo 1-NN", "zoo ARI")


def evaluate(variants, design_sets: dict, zoo, seeds, out, realizations, memo) -> list[dict]:
    """Scores of every variant at every seed on every design set and the zoo, printed as they
    come. Each row: variant, seed, and per design set (recipe) its 1-NN and ARI."""
    recipes = list(design_sets)
    header = " ".join(f"{r[:10] + ' 1-NN':>15} {r[:10] + ' ARI':>14}" for r in recipes)
    print(f"{'variant':64} {'seed':>4} {header} {'zoo 1-NN':>8} {'zoo ARI':>7}")
    rows = []
    for variant in variants:
        for seed in seeds:
            analysis = CurveSettings(variant.form, variant.ensemble, seed, realizations)
            row = {"variant": variant.name, "seed": seed}
            for recipe, members in design_sets.items():
                curves = set_curves(members, analysis, out, f"designs-{recipe}", memo)
                nn, ari = design_scores(variant.distance(curves), members)
                row[f"{recipe} 1-NN"], row[f"{recipe} ARI"] = nn, ari
            nn = ari = float("nan")
            if zoo:
                nn, ari = zoo_scores(
                    variant.distance(set_curves(zoo, analysis, out, "zoo", memo)), zoo
                )
            row["zoo 1-NN"], row["zoo ARI"] = nn, ari
            rows.append(row)
            values = [row[f"{r} {k}"] for r in recipes for k in ("1-NN", "ARI")]
            print(
                f"{variant.name:64} {seed:4d} "
                + " ".join(f"{v:{15 if i % 2 == 0 else 14}.3f}" for i, v in enumerate(values))
                + f" {nn:8.3f} {ari:7.3f}",
                flush=True,
            )
    return rows


def write_rows(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def distance_groups(distance: np.ndarray, members: list[Member]) -> dict[str, float]:
    """Mean distance between pairs of networks of the same or another design, at the same or
    another width: the tree groups by design only if 'same design, other width' is smaller
    than 'other design, same width'."""
    groups: dict[str, list] = {}
    for i in range(len(members)):
        for j in range(i + 1, len(members)):
            design = "same design" if members[i].label == members[j].label else "other design"
            width = "same width" if members[i].width == members[j].width else "other width"
            groups.setdefault(f"{design}, {width}", []).append(distance[i, j])
    return {key: float(np.mean(values)) for key, values in sorted(groups.items())}


# ---- null check ------------------------------------------------------------------------


def null_copies(member: Member, out: Path, seed: int = 0) -> list[Member]:
    """An entry-shuffled and a Gaussian copy (same shapes, same per-tensor std) of a network,
    written under ``out/null``."""
    folder = out / "null"
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for kind in ("shuffled", "gaussian"):
        path = folder / f"{member.path.stem}-{kind}.npz"
        if not path.exists():
            rng = np.random.default_rng(seed)
            arrays = {}
            with np.load(member.path, allow_pickle=False) as stored:
                for name in stored.files:
                    array = stored[name]
                    if np.issubdtype(array.dtype, np.floating) and array.ndim >= 2:
                        if kind == "shuffled":
                            array = rng.permutation(array.ravel()).reshape(array.shape)
                        else:
                            array = rng.normal(0.0, array.std(), array.shape).astype(array.dtype)
                    arrays[name] = array
            np.savez(path, **arrays)
        copies.append(Member(path, f"{member.label}:{kind}"))
    return copies


def null_check(zoo, variant: Variant, seed: int, out: Path, realizations: int, memo) -> None:
    """Verdicts of trained vs shuffled vs Gaussian copies at eps = max(noise floors)."""
    analysis = CurveSettings(variant.form, variant.ensemble, seed, realizations)
    print(f"\n# null check, {variant.name}, seed {seed}: d, eps = max(noise floors), verdict")
    pairs = ("trained-shuffled", "trained-gaussian", "shuffled-gaussian")
    print(f"{'network':36} " + " ".join(f"{pair:>29}" for pair in pairs))
    failures = 0
    for member in zoo:
        group = [member, *null_copies(member, out)]
        curves = set_curves(group, analysis, out, f"null-{member.path.stem}", memo)
        floors = [noise_floor(c, variant.scale) for c in curves]
        cells = []
        for i, j in ((0, 1), (0, 2), (1, 2)):
            distance = float(layer_distance_matrix([curves[i], curves[j]], variant.scale)[0, 1])
            spread = distance_spread(curves[i], curves[j], variant.scale, seed)
            eps = max(floors[i], floors[j])
            verdict = decide(distance, spread, eps)
            if (i, j) != (1, 2) and verdict != "not equivalent":
                failures += 1
            cells.append(f"{distance:6.3f} {eps:6.3f} {verdict:>14}")
        print(f"{member.path.stem:36} " + " ".join(cells), flush=True)
    print(f"trained vs copy not judged 'not equivalent': {failures} of {2 * len(zoo)}")


# ---- main -------------------------------------------------------------------------------


def aligned_quantile_distance(members: list[Member], form: WeightForm, out: Path) -> np.ndarray:
    """Outside the method, for reference: Euclidean distance between the concatenated
    20 quantiles of the log normalised spectrum of every layer, layer by layer (needs the
    same layer list in every network; uses what the cloud distance throws away: the order)."""
    levels = np.linspace(0.05, 1.0, 20)
    features = np.array(
        [
            np.concatenate(
                [
                    np.log(np.quantile(normalize_spectrum(layer.eigenvalues), levels))
                    for layer in layer_spectra(str(m.path), form)
                ]
            )
            for m in members
        ]
    )
    return np.sqrt(((features[:, None] - features[None]) ** 2).sum(axis=-1))


def describe_design_set(recipe: str, members: list[Member]) -> None:
    accuracies = [json.loads(m.path.with_suffix(".json").read_text()) for m in members]
    test = [a["test_accuracy"] for a in accuracies]
    worst = members[int(np.argmin(test))].path.stem
    print(
        f"# design set '{recipe}' ({RECIPES[recipe].name}): {len(members)} networks "
        f"({len(DESIGNS)} designs x {len(WIDTHS)} widths x {len(TRAIN_SEEDS)} seeds), "
        f"test accuracy {min(test):.3f} ({worst}) to {max(test):.3f}, median "
        f"{np.median(test):.3f}; training {sum(a['seconds'] for a in accuracies):.0f} s in all"
    )


def diagnose(design_sets: dict, seed: int, out: Path, realizations: int, memo) -> None:
    """Why the tree groups by width: mean distances by (design, width) relation, and the
    scores of an order-aware quantile fingerprint outside the method."""
    for recipe, members in design_sets.items():
        print(f"\n# design set '{recipe}', seed {seed}: mean distance by relation")
        for variant in (TODAY, layer_variant(0.0), RECOMMENDED):
            curves = set_curves(
                members,
                CurveSettings(variant.form, variant.ensemble, seed, realizations),
                out,
                f"designs-{recipe}",
                memo,
            )
            groups = distance_groups(variant.distance(curves), members)
            print(f"{variant.name:64} " + "; ".join(f"{k} {v:.3f}" for k, v in groups.items()))
        for form in (RAW, CANONICAL):
            nn, ari = design_scores(aligned_quantile_distance(members, form, out), members)
            print(
                f"outside the method, layer-aligned spectrum quantiles, {form.name}: "
                f"1-NN {nn:.3f}, ARI {ari:.3f}"
            )


def library_null_check(zoo, out: Path, seed: int, realizations: int) -> None:
    """nnequiv itself, default settings: every zoo network against its entry-shuffled and
    its Gaussian copy (same shapes, same per-tensor std), at the calibrated per-pair eps."""
    from nnequiv import compare

    print(f"\n# null check, nnequiv {__version__} default settings, seed {seed}")
    failures = 0
    for member in zoo:
        verdicts = [
            compare(member.path, copy.path, seed=seed, realizations=realizations).verdict
            for copy in null_copies(member, out, seed)
        ]
        failures += sum(v != "not equivalent" for v in verdicts)
        print(f"{member.path.stem:36} " + "  ".join(verdicts), flush=True)
    print(f"trained vs copy not judged 'not equivalent': {failures} of {2 * len(zoo)}")


def library_scores(design_sets: dict, zoo, seeds, realizations: int) -> None:
    """The scores of nnequiv itself, default settings, at the layer and pooled levels."""
    from nnequiv import cluster

    print(f"\n# nnequiv {__version__} default settings: {SCORES}")
    sets = {f"designs {recipe}": (m, design_scores) for recipe, m in design_sets.items()}
    if zoo:
        sets["zoo"] = (zoo, zoo_scores)
    for seed in seeds:
        for level in ("layer", "pooled"):
            for name, (members, score) in sets.items():
                paths = [str(m.path) for m in members]
                classes = cluster(paths, seed=seed, realizations=realizations, level=level)
                nn, ari = score(classes.distance, members)
                print(f"seed {seed} {level:6} {name:14} 1-NN {nn:.3f}  ARI {ari:.3f}", flush=True)


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(root / "bench-output" / "designs"))
    parser.add_argument("--zoo", default=str(root.parent / "shared" / "zoo"))
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--realizations", type=int, default=10)
    parser.add_argument("--grid", action="store_true", help="the full factorial (slow)")
    parser.add_argument("--null-check", action="store_true", help="also the zoo null check")
    args = parser.parse_args()
    out = Path(args.out)
    start = time.perf_counter()
    design_sets = {recipe: design_set(out, RECIPES[recipe]) for recipe in args.recipes}
    for recipe, members in design_sets.items():
        describe_design_set(recipe, members)
    zoo_path = Path(args.zoo)
    zoo = zoo_set(zoo_path) if (zoo_path / "MANIFEST.csv").exists() else []
    if not zoo:
        print(f"# no zoo at {zoo_path}: zoo columns are NaN")
    library_scores(design_sets, zoo, args.seeds, args.realizations)
    memo: dict = {}
    variants = grid_variants() if args.grid else main_variants()
    rows = evaluate(variants, design_sets, zoo, args.seeds, out, args.realizations, memo)
    table = out / ("variants-grid.csv" if args.grid else "variants.csv")
    write_rows(rows, table)
    print(f"# scores written to {table}")
    diagnose(design_sets, args.seeds[0], out, args.realizations, memo)
    if args.null_check and zoo:
        library_null_check(zoo, out, args.seeds[0], args.realizations)
        null_check(zoo, RECOMMENDED, args.seeds[0], out, args.realizations, memo)
    print(f"# total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
