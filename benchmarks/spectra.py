"""Benchmark: all layer spectra of every zoo model and of a ResNet-50-sized torch model.

Time (median of 3) and peak traced memory (tracemalloc, which sees NumPy's buffers) of
``nnequiv.layer_spectra``; side by side, WeightWatcher's ``analyze()`` on the same torch model
when the package is installed in this environment.

Run: ``python benchmarks/spectra.py [--zoo ../shared/zoo]`` (``make bench``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import median_seconds, resnet50_layer_shapes  # noqa: E402

from nnequiv import layer_spectra  # noqa: E402


def resnet50_sized_model():
    """A randomly initialised torch module with the 54 weight layers of a ResNet-50."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    layers = []
    for rows, cols in resnet50_layer_shapes():
        if (rows, cols) == (1000, 2048):
            layers.append(nn.Linear(cols, rows))
        elif cols == 3 * 49:
            layers.append(nn.Conv2d(3, rows, 7, bias=False))
        elif cols % 9 == 0 and cols // 9 in (64, 128, 256, 512):
            layers.append(nn.Conv2d(cols // 9, rows, 3, bias=False))
        else:
            layers.append(nn.Conv2d(cols, rows, 1, bias=False))
        layers.append(
            nn.BatchNorm1d(rows) if isinstance(layers[-1], nn.Linear) else nn.BatchNorm2d(rows)
        )
    return nn.Sequential(*layers)


def peak_megabytes(func) -> tuple[float, object]:
    """Peak traced memory of ``func()`` in MB, and its result."""
    tracemalloc.start()
    result = func()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, result


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default=str(root.parent / "shared" / "zoo"))
    args = parser.parse_args()
    zoo = Path(args.zoo)
    print(f"{'model':42} {'layers':>6} {'seconds':>8} {'peak MB':>8}")
    total = 0.0
    for path in sorted(zoo.glob("*.npz")):
        seconds = median_seconds(lambda: layer_spectra(path, canonical="raw"), 3)
        total += seconds
        peak, spectra = peak_megabytes(lambda: layer_spectra(path, canonical="raw"))
        print(f"{path.name:42} {len(spectra):6d} {seconds:8.3f} {peak:8.1f}", flush=True)
    print(f"{'all zoo models':42} {'':6} {total:8.2f}")

    model = resnet50_sized_model()
    ours = median_seconds(lambda: layer_spectra(model, canonical="raw"), 3)
    ours_mb, spectra = peak_megabytes(lambda: layer_spectra(model, canonical="raw"))
    print(f"\nResNet-50-sized torch model ({len(spectra)} layers):")
    print(f"  nnequiv.layer_spectra      {ours:8.3f} s  peak {ours_mb:8.1f} MB")
    try:
        start = time.perf_counter()
        import weightwatcher as ww

        imported = time.perf_counter() - start
    except ImportError:
        print(
            "  weightwatcher              not installed here: no side-by-side run "
            "(pip install weightwatcher into the bench environment to compare)"
        )
        return
    theirs = median_seconds(lambda: ww.WeightWatcher(model=model).analyze(), 3)
    theirs_mb, _ = peak_megabytes(lambda: ww.WeightWatcher(model=model).analyze())
    print(
        f"  WeightWatcher.analyze()    {theirs:8.3f} s  peak {theirs_mb:8.1f} MB "
        f"(import {imported:.1f} s)"
    )
    print(
        f"  ratio (WeightWatcher / nnequiv): time {theirs / ours:.1f}x, "
        f"memory {theirs_mb / ours_mb:.1f}x"
    )


if __name__ == "__main__":
    main()
