"""Are the results bit-identical to the golden snapshots? And why one distance kernel cannot
make them so.

Part 1 recomputes the golden snapshots (tests/test_golden.py) with this checkout and compares
every number with tests/golden/*.json to the bit: how many are equal, how many differ, by how
much (relative), and under which keys. Part 2 measures the Euclidean kernels nnequiv has used
on the same points: the einsum of ``_mean_pair_distance`` before 0.4 (realization means),
the coordinate-by-coordinate sum of ``_point_distances`` (small bootstrap clouds) and SciPy's
``cdist`` (large clouds before 0.4; every cloud since): the share of point pairs where two of
them give different bits. Where einsum and the coordinate sum disagree, no single kernel can
reproduce the bits of both.

Run: ``python benchmarks/golden_bits.py``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy.spatial.distance import cdist

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_golden import GOLDEN, UNPINNED, snapshots  # noqa: E402


def numbers(value, key=""):
    """Every number of a JSON payload with its key path."""
    if isinstance(value, dict):
        for name, item in value.items():
            if name not in UNPINNED:
                yield from numbers(item, f"{key}.{name}" if key else name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from numbers(item, f"{key}[{index}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield key, float(value)


def compare_snapshots() -> None:
    fresh = json.loads(json.dumps(snapshots()))  # as the snapshot files hold them
    equal, moved = 0, []
    for command, payload in fresh.items():
        pinned = json.loads((GOLDEN / f"{command}.json").read_text())
        for (key, got), (_, want) in zip(numbers(payload, command), numbers(pinned, command)):
            if got == want or (math.isnan(got) and math.isnan(want)):
                equal += 1
            else:
                moved.append((abs(got - want) / max(abs(want), 1e-300), key))
    print(f"golden numbers equal to the bit: {equal} of {equal + len(moved)}")
    if moved:
        print(f"differing: {len(moved)}, largest relative difference {max(moved)[0]:.1e}")
        keys = sorted({key.split("[")[0] for _, key in moved})
        print("under the keys: " + ", ".join(keys))


def kernel_bits(rows: int = 40, repeats: int = 20) -> None:
    rng = np.random.default_rng(0)
    print("\n| coordinates | einsum != coordinate sum | cdist != coordinate sum | pairs |")
    print("|---|---|---|---|")
    for dims in (3, 5, 9, 17):
        einsum_differs = cdist_differs = 0
        for _ in range(repeats):
            x, y = rng.standard_normal((rows, dims)), rng.standard_normal((rows, dims))
            difference = x[:, None, :] - y[None, :, :]
            einsum = np.sqrt(np.einsum("ijk,ijk->ij", difference, difference))
            total = np.zeros((rows, rows))
            for k in range(dims):
                step = x[:, None, k] - y[None, :, k]
                total += step * step
            summed = np.sqrt(total)
            einsum_differs += int(np.count_nonzero(einsum != summed))
            cdist_differs += int(np.count_nonzero(cdist(x, y, "euclidean") != summed))
        pairs = repeats * rows * rows
        print(f"| {dims} | {einsum_differs / pairs:.1%} | {cdist_differs / pairs:.1%} | {pairs} |")


if __name__ == "__main__":
    compare_snapshots()
    kernel_bits()
