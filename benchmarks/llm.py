"""Benchmark: `nnequiv analyze` against WeightWatcher 0.7.7 on LLM-sized models.

TinyLlama-1.1B shapes (bf16 safetensors in shards with a Hugging Face index, seeded) written by
``../shared/tools/gen_llama.py`` into ``bench-output/llama-<L>`` (reused when present): the
2-layer cut (438 MB) and the full 22 layers (2.2 GB). Each tool runs in its own process under
``/usr/bin/time -v`` (wall time, peak RSS: "Maximum resident set size", which counts mapped
pages), one run after the other, with the same BLAS/OpenMP thread count for both
(``--threads``, default 1: the machine is shared); with ``--jobs`` above 1, nnequiv's worker
processes count in "tree MiB", the summed RSS of the process tree sampled every 0.2 s
(``/usr/bin/time`` reports the largest single process). WeightWatcher reads the same folder
(``WeightWatcher(model=folder).analyze()``, its safetensors-directory reader).

Also, in this process: the square, ill-conditioned attention projections of the 2-layer model
(balanced form) through the refined route of method item 2 against the Gram route followed by
an SVD (what nnequiv did before) and a bare SVD, with the largest relative deviation of the
eigenvalues from the SVD's.

With ``--floor``: the time of the dense float64 kernels alone (each layer's smaller Gram
matrix and its ``eigvalsh``, on random matrices of the layer shapes) plus the conjugate
ensemble at the default settings: the least the method can take on one thread, whatever the
reading and the canonical form cost.

Run: ``python benchmarks/llm.py [--layers 2 22] [--repeats 3] [--threads 1] [--jobs 1]
[--floor]``
(``make bench`` installs WeightWatcher from requirements-bench.txt).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT.parent / "shared" / "tools" / "gen_llama.py"
WEIGHTWATCHER = (
    "import sys, weightwatcher as ww; "
    "details = ww.WeightWatcher(model=sys.argv[1]).analyze(); "
    "print(len(details), 'layers')"
)


def model_folder(output: Path, layers: int) -> Path:
    """The folder of the ``layers``-layer model, written by gen_llama.py unless present."""
    folder = output / f"llama-{layers}"
    if not (folder / "model.safetensors.index.json").exists():
        if not GENERATOR.exists():
            sys.exit(f"{GENERATOR} not found: the shared tools sit beside the checkout")
        print(f"writing {folder} ...", flush=True)
        subprocess.run([sys.executable, str(GENERATOR), str(folder), str(layers)], check=True)
    return folder


def measured(command: list[str], threads: int) -> tuple[float, float, float]:
    """Wall seconds and peak RSS (MiB) of ``command`` in its own process, and the peak of
    the summed RSS of its process tree (worker processes included), sampled every 0.2 s."""
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    process = subprocess.Popen(
        ["/usr/bin/time", "-v", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    tree = 0.0
    while process.poll() is None:
        tree = max(tree, tree_rss_mib(process.pid))
        time.sleep(0.2)
    stderr = process.stderr.read()
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", stderr)
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    seconds = 0.0
    for part in wall.group(1).split(":"):
        seconds = 60 * seconds + float(part)
    return seconds, int(peak.group(1)) / 1024, tree


def tree_rss_mib(root: int) -> float:
    """The summed resident memory (MiB) of a process and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        pending += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/status") as status:
                total += sum(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
        except OSError:
            continue
    return total / 1024


def medians(command: list[str], threads: int, repeats: int) -> tuple[float, float, float, str]:
    """Median wall seconds, peak RSS and peak process-tree RSS of ``repeats`` runs, and every
    run as text."""
    runs = [measured(command, threads) for _ in range(repeats)]
    wall, peak, tree = (statistics.median(r[k] for r in runs) for k in range(3))
    return wall, peak, tree, ", ".join(f"{s:.1f} s/{m:.0f} MiB" for s, m, _ in runs)


def row(layers: int, tool: str, wall: str, peak: str, tree: str = "", runs: str = "") -> None:
    print(f"{layers:2d} layers  {tool:34} {wall:>8} {peak:>9} {tree:>9}  {runs}", flush=True)


def projections(folder: Path) -> None:
    """Refined route against Gram + SVD on the square layers whose Gram route is inexact."""
    import numpy as np

    from nnequiv.layers import iter_layer_matrices
    from nnequiv.spectra import canonical_form, gram_eigenvalues

    print(f"\nsquare attention projections of {folder.name} (balanced form), seconds:")
    print(
        f"{'layer':42} {'route':8} {'refined':>8} {'Gram+SVD':>9} {'SVD':>6} {'max rel. dev.':>14}"
    )
    for layer in iter_layer_matrices(folder, include=["*q_proj*", "*o_proj*"]):
        w, _ = canonical_form(layer.matrix, "balanced")
        start = time.perf_counter()
        values, dropped, method = gram_eigenvalues(w)
        refined = time.perf_counter() - start
        start = time.perf_counter()
        np.linalg.eigvalsh(w @ w.T)
        svd = np.linalg.svd(w, compute_uv=False)
        before = time.perf_counter() - start
        start = time.perf_counter()
        np.linalg.svd(w, compute_uv=False)
        alone = time.perf_counter() - start
        reference = np.sort(svd**2)[dropped:]
        deviation = np.abs(values / reference - 1).max()
        print(f"{layer.name:42} {method:8} {refined:8.2f} {before:9.2f} {alone:6.2f} "
              f"{deviation:14.1e}", flush=True)  # fmt: skip


def dense_floor(folder: Path) -> float:
    """Seconds of the dense float64 kernels alone for every layer of ``folder``: the smaller
    Gram matrix and its ``eigvalsh``, on random matrices of each layer shape (median of 3),
    times the number of layers of that shape, and the conjugate ensemble at the default
    settings; no reading, canonical form or refinement."""
    from collections import Counter

    import numpy as np

    from nnequiv.layers import iter_layer_matrices

    shapes = Counter(layer.matrix_shape for layer in iter_layer_matrices(folder, stored=True))
    rng, total = np.random.default_rng(0), 0.0
    print(f"\ndense float64 kernels of {folder.name} (Gram + eigvalsh), seconds:")
    for (rows, columns), count in sorted(shapes.items()):
        w = rng.standard_normal((rows, columns))
        times = []
        for _ in range(3):
            start = time.perf_counter()
            np.linalg.eigvalsh(w.T @ w if rows >= columns else w @ w.T)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        total += count * seconds
        print(f"  {rows:6d} x {columns:<6d} x {count:3d} layers  {seconds:6.2f} each")
    print(f"  all layers {total:.1f}")
    from nnequiv import Settings, conjugate_ensemble

    orders = [min(shape) for shape, count in shapes.items() for _ in range(count)]
    defaults = Settings()
    start = time.perf_counter()
    conjugate_ensemble(orders, defaults.ensemble, defaults.realizations, seed=0)
    drawn = time.perf_counter() - start
    print(f"  conjugate ensemble ({defaults.ensemble}, {defaults.realizations} realizations, "
          f"{len(orders)} layers) {drawn:.1f}")  # fmt: skip
    print(f"  floor {total + drawn:.1f}", flush=True)
    return total + drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 22])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads, both")
    parser.add_argument("--jobs", type=int, default=1, help="nnequiv --jobs (worker processes)")
    parser.add_argument("--forms", nargs="+", default=["balanced", "rows", "raw"])
    parser.add_argument("--no-weightwatcher", action="store_true")
    parser.add_argument("--no-projections", action="store_true")
    parser.add_argument(
        "--floor", action="store_true", help="time the dense kernels alone (the time floor)"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench-output")
    args = parser.parse_args()
    print(
        f"threads {args.threads} (OPENBLAS/OMP/MKL_NUM_THREADS), nnequiv --jobs {args.jobs}, "
        f"medians of {args.repeats}"
    )
    print(f"{'model':10} {'tool':34} {'wall s':>8} {'peak MiB':>9} {'tree MiB':>9}  runs")
    for layers in args.layers:
        folder = model_folder(args.output, layers)
        forms = args.forms if layers == min(args.layers) else args.forms[:1]
        ours = []
        for form in forms:
            command = [sys.executable, "-m", "nnequiv.cli", "analyze", str(folder)]
            command += ["--canonical", form, "--jobs", str(args.jobs), "--no-cache"]
            wall, peak, tree, runs = medians(command, args.threads, args.repeats)
            ours.append((wall, peak))
            row(
                layers,
                f"nnequiv analyze ({form})",
                f"{wall:.1f}",
                f"{peak:.0f}",
                f"{tree:.0f}",
                runs,
            )
        if args.no_weightwatcher:
            continue
        command = [sys.executable, "-c", WEIGHTWATCHER, str(folder)]
        wall, peak, tree, runs = medians(command, args.threads, args.repeats)
        row(
            layers,
            "WeightWatcher 0.7.7 analyze()",
            f"{wall:.1f}",
            f"{peak:.0f}",
            f"{tree:.0f}",
            runs,
        )
        time_ratio, memory_ratio = wall / ours[0][0], peak / ours[0][1]
        row(
            layers,
            f"WeightWatcher / nnequiv ({forms[0]})",
            f"{time_ratio:.1f}x",
            f"{memory_ratio:.1f}x",
        )
    if args.floor:
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)  # before NumPy loads
        dense_floor(model_folder(args.output, max(args.layers)))
    if not args.no_projections:
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)  # before NumPy loads
        projections(model_folder(args.output, min(args.layers)))


if __name__ == "__main__":
    main()
