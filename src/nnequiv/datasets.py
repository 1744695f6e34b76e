"""Small synthetic networks, for examples, tests and trying nnequiv without a checkpoint.

A network here is what :func:`nnequiv.loading.open_weights` accepts as a dict: parameter
names mapped to weight matrices, shaped ``(out, in)`` as PyTorch stores linear layers.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np

from nnequiv._seeding import stream_seed
from nnequiv.errors import InputError

__all__ = ["random_network"]


def random_network(
    shapes: Sequence[tuple[int, int]], *, tail: float | None = None, seed: int | None = 0
) -> dict[str, np.ndarray]:
    """A network of independent random weights: ``layer0.weight``, ``layer1.weight``, ...

    Parameters
    ----------
    shapes : sequence of (int, int)
        The shape of each layer's matrix, ``(out, in)``, in order.
    tail : float, optional
        None for standard Gaussian entries (a network at initialisation); ``nu > 0`` for
        Student-t entries with ``nu`` degrees of freedom (heavy-tailed, as the layers of
        trained networks often are; the smaller ``nu``, the heavier).
    seed : int or None
        Fixes every entry (the random stream ``"random-network"``); None draws fresh
        entropy, so two calls differ.

    Returns
    -------
    dict of str to numpy.ndarray
        float64 matrices, in the order of ``shapes``.

    Examples
    --------
    >>> from nnequiv.datasets import random_network
    >>> network = random_network([(48, 32), (10, 48)], seed=0)
    >>> {name: matrix.shape for name, matrix in network.items()}
    {'layer0.weight': (48, 32), 'layer1.weight': (10, 48)}
    """
    real = isinstance(tail, (int, float, np.integer, np.floating)) and not isinstance(tail, bool)
    if tail is not None and not (real and np.isfinite(tail) and tail > 0):
        raise InputError(f"tail must be None or a degrees of freedom > 0, got {tail!r}")
    try:
        sizes = [tuple(operator.index(n) for n in shape) for shape in shapes]
    except TypeError:
        sizes = []
    if not sizes or any(len(shape) != 2 or min(shape) < 1 for shape in sizes):
        raise InputError(
            f"shapes must list a shape (out, in) of integer sizes >= 1 per layer, got {shapes!r}"
        )
    rng = np.random.default_rng(stream_seed(seed, "random-network"))
    if tail is None:
        return {f"layer{i}.weight": rng.standard_normal(shape) for i, shape in enumerate(sizes)}
    return {f"layer{i}.weight": rng.standard_t(tail, shape) for i, shape in enumerate(sizes)}
