"""Helpers shared by the benchmark scripts: timing and the ResNet-50 topology."""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

# Benchmarks time uncached analyses and never read or write a user's analysis cache.
os.environ["NNEQUIV_CACHE_DIR"] = ""


def median_seconds(func, repeats: int = 3) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``func()``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def nearest_other(distance: np.ndarray, index: int) -> int:
    """The row of ``distance`` nearest to ``index``, other than ``index`` itself."""
    row = distance[index].copy()
    row[index] = np.inf
    return int(np.argmin(row))


def resnet50_layer_shapes() -> list[tuple[int, int]]:
    """(N, M) of the 54 weight matrices of a torchvision ResNet-50 (53 convs + fc)."""
    shapes = [(64, 3 * 7 * 7)]
    in_ch = 64
    for width, blocks in [(64, 3), (128, 4), (256, 6), (512, 3)]:
        for block in range(blocks):
            shapes += [(width, in_ch), (width, width * 9), (4 * width, width)]
            if block == 0:
                shapes.append((4 * width, in_ch))
            in_ch = 4 * width
    shapes.append((1000, 2048))
    return shapes
