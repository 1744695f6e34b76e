"""Benchmark: `nnequiv analyze` against WeightWatcher 0.7.7 on LLM-sized models.

TinyLlama-1.1B shapes (bf16 safetensors in shards with a Hugging Face index, seeded) written by
``../shared/tools/gen_llama.py`` into ``bench-output/llama-<L>`` (reused when present): the
2-layer cut (438 MB) and the full 22 layers (2.2 GB). Each tool runs in its own process under
``/usr/bin/time -v`` (wall time, peak RSS: "Maximum resident set size", which counts mapped
pages), one run after the other, with the same BLAS/OpenMP thread count for both
(``--threads``, default 1: the machine is shared). WeightWatcher reads the same folder
(``WeightWatcher(model=folder).analyze()``, its safetensors-directory reader).

Run: ``python benchmarks/llm.py [--layers 2 22] [--repeats 3] [--threads 1] [--jobs 1]``
(``make bench`` installs WeightWatcher from requirements-bench.txt).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
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


def measured(command: list[str], threads: int) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of ``command`` in its own process."""
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    result = subprocess.run(
        ["/usr/bin/time", "-v", *command], capture_output=True, text=True, env=env
    )
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", result.stderr)
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    seconds = 0.0
    for part in wall.group(1).split(":"):
        seconds = 60 * seconds + float(part)
    return seconds, int(peak.group(1)) / 1024


def medians(command: list[str], threads: int, repeats: int) -> tuple[float, float, str]:
    """Median wall seconds and peak RSS of ``repeats`` runs, and every run as text."""
    runs = [measured(command, threads) for _ in range(repeats)]
    wall = statistics.median(r[0] for r in runs)
    peak = statistics.median(r[1] for r in runs)
    return wall, peak, ", ".join(f"{s:.1f} s/{m:.0f} MiB" for s, m in runs)


def row(layers: int, tool: str, wall: str, peak: str, runs: str = "") -> None:
    print(f"{layers:2d} layers  {tool:34} {wall:>8} {peak:>9}  {runs}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 22])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads, both")
    parser.add_argument("--jobs", type=int, default=1, help="nnequiv --jobs (worker processes)")
    parser.add_argument("--forms", nargs="+", default=["balanced", "rows", "raw"])
    parser.add_argument("--no-weightwatcher", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "bench-output")
    args = parser.parse_args()
    print(
        f"threads {args.threads} (OPENBLAS/OMP/MKL_NUM_THREADS), nnequiv --jobs {args.jobs}, "
        f"medians of {args.repeats}"
    )
    print(f"{'model':10} {'tool':34} {'wall s':>8} {'peak MiB':>9}  runs")
    for layers in args.layers:
        folder = model_folder(args.output, layers)
        forms = args.forms if layers == min(args.layers) else args.forms[:1]
        ours = []
        for form in forms:
            command = [sys.executable, "-m", "nnequiv.cli", "analyze", str(folder)]
            command += ["--canonical", form, "--jobs", str(args.jobs)]
            wall, peak, runs = medians(command, args.threads, args.repeats)
            ours.append((wall, peak))
            row(layers, f"nnequiv analyze ({form})", f"{wall:.1f}", f"{peak:.0f}", runs)
        if args.no_weightwatcher:
            continue
        command = [sys.executable, "-c", WEIGHTWATCHER, str(folder)]
        wall, peak, runs = medians(command, args.threads, args.repeats)
        row(layers, "WeightWatcher 0.7.7 analyze()", f"{wall:.1f}", f"{peak:.0f}", runs)
        time_ratio, memory_ratio = wall / ours[0][0], peak / ours[0][1]
        row(
            layers,
            f"WeightWatcher / nnequiv ({forms[0]})",
            f"{time_ratio:.1f}x",
            f"{memory_ratio:.1f}x",
        )


if __name__ == "__main__":
    main()
