"""Demo: sort small networks trained here on scikit-learn's bundled digits into equivalence
classes, with nnequiv's command line, and write the figures.

Three designs, three seeds each, trained in seconds on the 8x8 digits shipped with
scikit-learn (no download): a wide shallow MLP, a narrow deep MLP, and a bottleneck MLP.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

DESIGNS = {"wide": (256,), "deep": (64, 64, 64, 64), "bottleneck": (128, 16, 128)}


def train_family(out: Path) -> list[Path]:
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    paths = []
    for name, hidden in DESIGNS.items():
        for seed in range(3):
            model = MLPClassifier(hidden_layer_sizes=hidden, max_iter=60, random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(x, y)
            # scikit-learn stores in x out matrices: the TensorFlow ("out-last") convention
            weights = {f"layer{i}.kernel": w for i, w in enumerate(model.coefs_)}
            path = out / f"{name}_seed{seed}.npz"
            np.savez(path, **weights)
            paths.append(path)
            print(f"trained {path.name}: accuracy {model.score(x, y):.3f}")
    return paths


def nnequiv(*arguments: str) -> None:
    """Show and run one ``nnequiv`` command."""
    print(f"\n$ nnequiv {shlex.join(arguments)}", flush=True)
    subprocess.run([sys.executable, "-m", "nnequiv.cli", *arguments], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo-output")
    args = parser.parse_args()
    out = Path(args.out)
    networks = out / "networks"
    networks.mkdir(parents=True, exist_ok=True)
    paths = {p.stem: str(p) for p in train_family(networks)}
    # scikit-learn stores in x out matrices: the TensorFlow layout ("hwio")
    layout = ("--layout", "hwio")
    print("\n# Two seeds of one design, then two designs: is each pair equivalent, and why?")
    nnequiv("compare", paths["wide_seed0"], paths["wide_seed2"], *layout)
    nnequiv("compare", paths["deep_seed0"], paths["deep_seed1"], *layout)
    figures = str(out / "figures")
    nnequiv("compare", paths["wide_seed0"], paths["deep_seed0"], *layout, "--plot", figures)
    print(
        "\n# The calibrated eps of a pair is the larger of the two networks' noise floors: how "
        "far two analyses of one network land apart. It shrinks with more realizations, so "
        "networks trained from different seeds are told apart where they differ; the tree "
        "below groups them by design all the same."
    )
    report = str(out / "report.html")
    nnequiv(
        "cluster", str(networks), *layout, "--realizations", "40",
        "--plot", figures, "--csv", str(out / "classes.csv"), "--report", report,
    )  # fmt: skip
    nnequiv("analyze", paths["wide_seed0"], *layout, "--plot", figures)
    print(f"\nreport: {report}\nfigures: {figures}\nclasses: {out / 'classes.csv'}")


if __name__ == "__main__":
    main()
