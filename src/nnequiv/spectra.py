"""Layer spectra (method items 2-3): eigenvalues of W W^T, normalisation, on-disk cache.

The n = min(N, M) eigenvalues of the smaller Gram matrix come from ``eigvalsh`` in float64
where that is accurate; when the kept eigenvalues span too many decades for the Gram route to
hold its relative accuracy, an SVD of W is used instead. Eigenvalues below ``rtol * max`` are
numerical zeros: dropped and counted.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnequiv.layers import (
    LayerMatrix,
    SkippedTensor,
    iter_layer_matrices,
    require_layers,
    resolved_layout,
)

__all__ = [
    "LayerSpectrum",
    "NetworkSpectra",
    "gram_eigenvalues",
    "layer_spectrum",
    "layer_spectra",
    "network_spectra",
    "normalize_spectrum",
    "DEFAULT_RTOL",
    "GRAM_RELATIVE_ACCURACY",
]

#: Eigenvalues below ``DEFAULT_RTOL * max`` are numerical zeros.
DEFAULT_RTOL = 1e-12
#: Relative accuracy the Gram route must guarantee for the smallest kept eigenvalue.
GRAM_RELATIVE_ACCURACY = 1e-6
NORMALIZATIONS = ("median", "mean", "none")


@dataclass
class LayerSpectrum:
    """The spectrum of one layer.

    Attributes
    ----------
    name : str
        Original tensor name.
    shape : tuple of int
        Original tensor shape.
    matrix_shape : tuple of int
        ``(N, M)`` of the layer matrix.
    eigenvalues : numpy.ndarray
        Non-zero eigenvalues of ``W W^T`` (squared singular values), float64, ascending.
    n_dropped : int
        Numerical zeros dropped (below ``rtol * max``).
    method : str
        ``"gram"`` or ``"svd"``.
    """

    name: str
    shape: tuple[int, ...]
    matrix_shape: tuple[int, int]
    eigenvalues: np.ndarray = field(repr=False)
    n_dropped: int = 0
    method: str = "gram"

    @property
    def order(self) -> int:
        """``n = min(N, M)``: the order of the layer's conjugate circular matrix."""
        return min(self.matrix_shape)


@dataclass
class NetworkSpectra:
    """All layer spectra of a network, with the tensors that were skipped."""

    source: str
    layout: str
    layers: list[LayerSpectrum]
    skipped: list[SkippedTensor]


def gram_eigenvalues(matrix: np.ndarray, rtol: float = DEFAULT_RTOL) -> tuple[np.ndarray, int, str]:
    """Non-zero eigenvalues of ``W W^T`` for an N x M matrix, ascending, in float64.

    Returns
    -------
    eigenvalues, n_dropped, method
        ``method`` is ``"gram"`` when ``eigvalsh`` of the smaller Gram matrix was accurate
        to :data:`GRAM_RELATIVE_ACCURACY` for every kept eigenvalue, else ``"svd"``.
    """
    w = np.asarray(matrix, dtype=np.float64)
    rows, cols = w.shape
    gram = w @ w.T if rows <= cols else w.T @ w
    values = np.linalg.eigvalsh(gram)
    top = values[-1] if values.size else 0.0
    if top <= 0:
        return np.empty(0), int(values.size), "gram"
    kept = values[values > rtol * top]
    # eigvalsh of the Gram matrix is accurate to about (N + M) eps * max in absolute terms
    if kept[0] < (rows + cols) * np.finfo(float).eps * top / GRAM_RELATIVE_ACCURACY:
        values = np.linalg.svd(w, compute_uv=False)[::-1] ** 2
        top = values[-1]
        kept = values[values > rtol * top]
        return kept, int(values.size - kept.size), "svd"
    return kept, int(values.size - kept.size), "gram"


def layer_spectrum(layer: LayerMatrix, rtol: float = DEFAULT_RTOL) -> LayerSpectrum:
    """The :class:`LayerSpectrum` of one layer matrix."""
    values, dropped, method = gram_eigenvalues(layer.matrix, rtol)
    return LayerSpectrum(layer.name, layer.shape, layer.matrix_shape, values, dropped, method)


def normalize_spectrum(eigenvalues: np.ndarray, method: str = "median") -> np.ndarray:
    """Divide a layer spectrum by its median or mean (method item 3), or leave it.

    The result does not change when the layer's weights are rescaled.
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {method!r}; expected one of {NORMALIZATIONS}")
    values = np.asarray(eigenvalues, dtype=np.float64)
    if method == "none" or values.size == 0:
        return values
    scale = np.median(values) if method == "median" else np.mean(values)
    return values / scale


# ---- cache ---------------------------------------------------------------------------


def _content_key(layer: LayerMatrix, rtol: float) -> str:
    digest = hashlib.blake2b(digest_size=20)
    matrix = np.ascontiguousarray(layer.matrix)
    digest.update(f"{matrix.dtype.str}|{matrix.shape}|{rtol!r}|v1".encode())
    digest.update(memoryview(matrix).cast("B"))
    return digest.hexdigest()


def _cache_read(path: Path, layer: LayerMatrix):
    try:
        with np.load(path, allow_pickle=False) as stored:
            values = stored["eigenvalues"]
            dropped = int(stored["n_dropped"])
            method = str(stored["method"])
        if (
            values.ndim != 1
            or values.size + dropped != layer.order
            or not np.all(np.isfinite(values))
        ):
            return None
        return values, dropped, method
    except Exception:  # a damaged entry is recomputed and rewritten
        return None


def _cache_write(path: Path, values, dropped, method) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, eigenvalues=values, n_dropped=dropped, method=method)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def cached_layer_spectrum(layer: LayerMatrix, rtol: float, cache_dir) -> LayerSpectrum:
    """:func:`layer_spectrum`, read from ``cache_dir`` when this tensor was seen before."""
    if cache_dir is None:
        return layer_spectrum(layer, rtol)
    path = Path(cache_dir) / f"{_content_key(layer, rtol)}.npz"
    hit = _cache_read(path, layer) if path.exists() else None
    if hit is None:
        hit = gram_eigenvalues(layer.matrix, rtol)
        _cache_write(path, *hit)
    return LayerSpectrum(layer.name, layer.shape, layer.matrix_shape, *hit)


def network_spectra(
    source,
    include=None,
    exclude=None,
    layout: str | None = None,
    *,
    rtol: float = DEFAULT_RTOL,
    cache_dir: str | os.PathLike | None = None,
) -> NetworkSpectra:
    """Spectra of every layer of a network, computed one layer at a time.

    Parameters are those of :func:`layer_spectra`.
    """
    weights, chosen = resolved_layout(source, layout)
    skipped: list[SkippedTensor] = []
    layers = [
        cached_layer_spectrum(layer, rtol, cache_dir)
        for layer in iter_layer_matrices(weights, include, exclude, chosen, skipped)
    ]
    require_layers(weights.label, layers, skipped)
    return NetworkSpectra(weights.label, chosen, layers, skipped)


def layer_spectra(
    source,
    include=None,
    exclude=None,
    layout: str | None = None,
    *,
    rtol: float = DEFAULT_RTOL,
    cache_dir: str | os.PathLike | None = None,
) -> list[LayerSpectrum]:
    """Raw spectra (method item 2) of every eligible layer of a network.

    Parameters
    ----------
    source : path, dict, torch module or WeightSource
        Anything :func:`nnequiv.loading.open_weights` accepts.
    include, exclude : str or list of str, optional
        Shell-style name patterns (see :func:`nnequiv.layers.layer_matrices`).
    layout : str, optional
        Force ``"out-first"`` or ``"out-last"``.
    rtol : float
        Eigenvalues below ``rtol * max`` are dropped as numerical zeros.
    cache_dir : path, optional
        Directory of cached spectra, keyed by a content hash of each tensor.

    Returns
    -------
    list of LayerSpectrum
        In the order the tensors are stored.
    """
    return network_spectra(source, include, exclude, layout, rtol=rtol, cache_dir=cache_dir).layers
