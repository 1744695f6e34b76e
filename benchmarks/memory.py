"""Benchmark: `nnequiv analyze` under an address-space limit (bounded memory, method item 2).

Writes large inputs into ``--workdir`` (default ``/tmp/nnequiv-memory``; reused when present):

* ``dense.npz`` and ``dense.safetensors``: one dense N x N float32 layer (N = ``--size``,
  default 12,000: 576 MB as stored, 1.1 GB as float64), standard normal, seeded;
* ``edges.csv``: an edge list over ``--nodes`` nodes (default 20,000; 10 edges a node);
* ``adjacency.csv``: a dense ``--adjacency`` x ``--adjacency`` adjacency matrix as text
  (default 3,000, one non-zero in ten);
* ``huge.safetensors``: a 30,000 x 30,000 float32 layer as a sparse file (3.6 GB of zeros
  on disk, none written): its 7.2 GB Gram matrix fits no budget under the limit;
* ``declared.safetensors``: a header declaring a 60,000 x 60,000 tensor with no data.

and runs ``prlimit --as=LIMIT python -m nnequiv analyze FILE --no-cache`` on each (LIMIT:
``--limit``, default 4,000,000,000 bytes; the CSV connectomes with two draws of p = 0.25
and two realizations, :data:`CONNECTOME_OPTIONS`), one after the other, printing for each: the exit
status, whether stderr holds a traceback, its number of lines and last line (or the
analysis's layer count), the peak RSS of the process (``ru_maxrss``) and the wall time.

Run: ``python benchmarks/memory.py [--size 12000] [--limit 4000000000] [--only dense.npz]``
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def dense_layer(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    layer = np.empty((size, size), dtype=np.float32)
    for start in range(0, size, 1000):
        layer[start : start + 1000] = rng.standard_normal((min(1000, size - start), size))
    return layer


def safetensors_header(name: str, shape, nbytes: int) -> bytes:
    header = {name: {"dtype": "F32", "shape": list(shape), "data_offsets": [0, nbytes]}}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def write_inputs(directory: Path, size: int, nodes: int, adjacency: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    dense_npz, dense_st = directory / "dense.npz", directory / "dense.safetensors"
    if not (dense_npz.exists() and dense_st.exists()):
        layer = dense_layer(size)
        np.savez(dense_npz, weight=layer)
        with dense_st.open("wb") as stream:
            stream.write(safetensors_header("weight", layer.shape, layer.nbytes))
            stream.write(layer.tobytes())
        del layer
    edges = directory / "edges.csv"
    if not edges.exists():
        rng = np.random.default_rng(1)
        pre = rng.integers(0, nodes, 10 * nodes)
        post = rng.integers(0, nodes, 10 * nodes)
        weight = rng.integers(1, 20, 10 * nodes)
        with edges.open("w") as stream:
            stream.write("pre,post,weight\n")
            stream.writelines(f"n{a},n{b},{w}\n" for a, b, w in zip(pre, post, weight))
    table = directory / "adjacency.csv"
    if not table.exists():
        rng = np.random.default_rng(2)
        with table.open("w") as stream:
            for _ in range(adjacency):
                row = np.where(rng.random(adjacency) < 0.1, rng.integers(1, 9, adjacency), 0)
                stream.write(",".join(map(str, row)) + "\n")
    huge = directory / "huge.safetensors"
    if not huge.exists():
        nbytes = 30000 * 30000 * 4
        with huge.open("wb") as stream:
            stream.write(safetensors_header("weight", (30000, 30000), nbytes))
            stream.truncate(stream.tell() + nbytes)  # a sparse file: nothing written
    declared = directory / "declared.safetensors"
    if not declared.exists():
        declared.write_bytes(safetensors_header("weight", (60000, 60000), 60000 * 60000 * 4))
    return [dense_npz, dense_st, edges, table, huge, declared]


#: Connectomes are analysed with a few small draws: the reading is what is measured here.
CONNECTOME_OPTIONS = ["--submatrices", "2", "--mixture", "0.25", "--realizations", "2"]


def run_one(path: Path, limit: int) -> dict:
    """One run under the limit: exit status, stderr, peak RSS (this child's ``ru_maxrss``)."""
    import tempfile

    command = ["prlimit", f"--as={limit}", sys.executable, "-m", "nnequiv", "analyze"]
    command += [str(path), "--no-cache"]
    if path.suffix == ".csv":
        command += CONNECTOME_OPTIONS
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=environment)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    lines = [line for line in stderr.splitlines() if line.strip()]
    layers = [line for line in stdout.splitlines() if " layer" in line][:1]
    return {
        "file": path.name,
        "exit": process.returncode,
        "traceback": "Traceback" in stderr,
        "stderr_lines": len(lines),
        "last": lines[-1] if lines else (layers[0].strip() if layers else ""),
        "peak_mib": usage.ru_maxrss / 1024,
        "wall_s": wall,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/nnequiv-memory")
    parser.add_argument("--size", type=int, default=12000)
    parser.add_argument("--nodes", type=int, default=20000)
    parser.add_argument("--adjacency", type=int, default=3000)
    parser.add_argument("--limit", type=int, default=4_000_000_000)
    parser.add_argument("--only", action="append", help="run only these files (repeatable)")
    parser.add_argument("--write-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write_only:
        write_inputs(Path(args.workdir), args.size, args.nodes, args.adjacency)
        return
    # written in a process of their own: a child inherits its parent's peak RSS
    subprocess.run([sys.executable, __file__, "--write-only", *(argv or sys.argv[1:])], check=True)
    inputs = write_inputs(Path(args.workdir), args.size, args.nodes, args.adjacency)
    print(f"prlimit --as={args.limit}: nnequiv analyze FILE --no-cache")
    print(f"{'file':<22} {'exit':>4} {'tb':>3} {'lines':>5} {'peak MiB':>9} {'wall s':>7}  outcome")
    for path in inputs:
        if args.only and path.name not in args.only:
            continue
        row = run_one(path, args.limit)
        print(
            f"{row['file']:<22} {row['exit']:>4} {'yes' if row['traceback'] else 'no':>3} "
            f"{row['stderr_lines']:>5} {row['peak_mib']:>9.0f} {row['wall_s']:>7.1f}  "
            f"{row['last'][:150]}",
            flush=True,
        )


if __name__ == "__main__":
    main()
