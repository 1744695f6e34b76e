"""Benchmark: circular ensembles, nnequiv (CMV model) against the scipy/numpy path.

The scipy path draws ``scipy.stats.unitary_group`` matrices (COE as U^T U, CSE as the
quaternion dual product of a 2n x 2n one) and takes ``numpy.linalg.eigvals``. nnequiv times
are medians of 3 runs of 20 realizations; the scipy path is timed per realization (median of
3) and scaled to 20, because 20 of its CSE matrices at n = 1024 take many minutes.

Run: ``python benchmarks/circular.py`` (``make bench``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import numpy as np
from scipy.stats import unitary_group
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(__file__))
from _common import median_seconds, resnet50_layer_shapes  # noqa: E402

from nnequiv.ensembles import (  # noqa: E402
    cayley_spectrum,
    circular_eigenphases,
    conjugate_ensemble,
)

KINDS = ["COE", "CUE", "CSE"]


def scipy_eigenvalues(kind: str, n: int, rng) -> np.ndarray:
    if kind == "CUE":
        return np.linalg.eigvals(unitary_group.rvs(n, random_state=rng))
    if kind == "COE":
        u = unitary_group.rvs(n, random_state=rng)
        return np.linalg.eigvals(u.T @ u)
    u = unitary_group.rvs(2 * n, random_state=rng)
    zero, eye = np.zeros((n, n)), np.eye(n)
    j = np.block([[zero, eye], [-eye, zero]])
    return np.linalg.eigvals(j @ u.T @ j.T @ u)


def scipy_seconds_per_realization(kind: str, n: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    return median_seconds(lambda: scipy_eigenvalues(kind, n, rng), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small orders only (smoke run)")
    parser.add_argument(
        "--part", choices=["all", "orders", "resnet50"], default="all", help="which table"
    )
    args = parser.parse_args()
    orders = [64, 128] if args.quick else [256, 1024]
    big = 256 if args.quick else 4096
    jobs = os.cpu_count()
    print(
        f"# circular ensembles: {platform.processor() or platform.machine()}, {jobs} cores, "
        f"numpy {np.__version__}"
    )
    if args.part in ("all", "orders"):
        orders_table(orders, big)
    if args.part in ("all", "resnet50"):
        resnet50_table()


def orders_table(orders: list[int], big: int) -> None:
    print("seconds for 20 realizations (median); ratio = scipy path / nnequiv")
    header = (
        f"{'kind':4} {'n':>5} {'scipy path':>11} {'eigenphases':>12} {'ratio':>7} "
        f"{'cayley n_jobs=1':>16} {'ratio':>7} {'cayley n_jobs=-1':>17} {'ratio':>7}"
    )
    print(header)
    for n in [*orders, big]:
        for kind in KINDS:
            if n == big:
                scipy_20 = float("nan")
                phases = float("nan")
            else:
                scipy_20 = 20 * scipy_seconds_per_realization(kind, n, 3)
                phases = median_seconds(lambda: circular_eigenphases(kind, n, 20, seed=0), 1)
            serial = median_seconds(lambda: cayley_spectrum(kind, n, 20, seed=0), 3)
            parallel = median_seconds(lambda: cayley_spectrum(kind, n, 20, seed=0, n_jobs=-1), 3)
            print(
                f"{kind:4} {n:5d} {scipy_20:11.3f} {phases:12.3f} {scipy_20 / phases:7.1f} "
                f"{serial:16.4f} {scipy_20 / serial:7.1f} {parallel:17.4f} "
                f"{scipy_20 / parallel:7.1f}",
                flush=True,
            )


def resnet50_table() -> None:
    shapes = resnet50_layer_shapes()
    orders = [min(shape) for shape in shapes]
    print(
        f"\n# conjugate ensemble of a ResNet-50 topology: {len(orders)} layers, "
        f"orders {min(orders)}..{max(orders)}, 10 realizations"
    )
    print(
        f"{'kind':4} {'scipy 1 thread':>14} {'nnequiv n_jobs=1':>17} {'ratio':>7} "
        f"{'scipy all':>10} {'nnequiv n_jobs=-1':>18} {'ratio':>7}"
    )
    for kind in KINDS:
        rng = np.random.default_rng(1)

        def scipy_topology():
            return [scipy_eigenvalues(kind, n, rng) for n in orders]

        with threadpool_limits(1):
            scipy_one = 10 * median_seconds(scipy_topology, 1)
        scipy_all = 10 * median_seconds(scipy_topology, 1)

        serial = median_seconds(lambda: conjugate_ensemble(orders, kind, 10, seed=0), 3)
        parallel = median_seconds(
            lambda: conjugate_ensemble(orders, kind, 10, seed=0, n_jobs=-1), 3
        )
        print(
            f"{kind:4} {scipy_one:14.2f} {serial:17.3f} {scipy_one / serial:7.1f} "
            f"{scipy_all:10.2f} {parallel:18.3f} {scipy_all / parallel:7.1f}",
            flush=True,
        )
    print(
        "(scipy path timed for 1 realization of every layer and scaled to 10; one core against "
        "one core, then every core against every core: BLAS threads for scipy, worker "
        "processes for nnequiv)"
    )


if __name__ == "__main__":
    main()
