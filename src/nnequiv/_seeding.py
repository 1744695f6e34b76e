"""Seed handling: one seed fixes every draw, independently of how work is split."""

from __future__ import annotations

import numpy as np

from nnequiv.errors import InputError


def as_seed_sequence(seed) -> np.random.SeedSequence:
    """Turn an int, SeedSequence, Generator or None into a SeedSequence.

    A Generator contributes its own seed sequence (children spawned from it advance its
    spawn counter, so two calls with the same Generator draw different numbers).
    """
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):
        seq = seed.bit_generator.seed_seq
        if not isinstance(seq, np.random.SeedSequence):  # pragma: no cover - exotic bitgens
            return np.random.SeedSequence(seed.integers(0, 2**63))
        return seq.spawn(1)[0]
    if seed is None or isinstance(seed, (int, np.integer)):
        if seed is not None and seed < 0:
            raise InputError(f"seed must be non-negative, got {seed}")
        return np.random.SeedSequence(None if seed is None else int(seed))
    raise TypeError(
        f"seed must be an int, numpy SeedSequence, numpy Generator or None, not {type(seed)!r}"
    )


def realization_seeds(seed, size: int) -> list[np.random.SeedSequence]:
    """One independent child SeedSequence per realization, in order."""
    return as_seed_sequence(seed).spawn(size)


#: Every random stream of nnequiv, each with its own namespace: the first element of the spawn
#: key. Two streams never share a key, because their namespaces differ (docs/method.md item 14).
STREAMS = {
    "conjugate": 1,  # (n, rank among same-order layers, realization): a layer's circular matrix
    "bootstrap": 2,  # resamples of the realizations: spreads of d and alpha
    "connectome-submatrix": 3,  # (matrix, draw): a connectome's principal submatrices
    "null-model": 4,  # (matrix,): the edge swaps of a null connectome
    "random-network": 5,  # (): the weights of nnequiv.datasets.random_network
}


def keyed_seed(seed: int | None, *key: int) -> np.random.SeedSequence:
    """The SeedSequence of the stream addressed by ``key`` under the integer ``seed``.

    Equivalent to spawning children of ``SeedSequence(seed)`` along the path ``key``, but
    needs no shared state, so any worker can build the stream of any (layer, realization).
    """
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(
            seed.entropy, spawn_key=tuple(seed.spawn_key) + tuple(int(k) for k in key)
        )
    return np.random.SeedSequence(seed, spawn_key=tuple(int(k) for k in key))


def stream_seed(seed: int | None, stream: str, *key: int) -> np.random.SeedSequence:
    """The SeedSequence of item ``key`` of the named ``stream`` (one of :data:`STREAMS`)."""
    return keyed_seed(seed, STREAMS[stream], *key)
