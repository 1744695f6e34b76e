"""Layer spectra (method items 2, 3 and 13): canonical form, eigenvalues of W W^T,
normalisation, on-disk cache.

The canonical form balances the rows and columns of W (``canonical="balanced"``), scales its
rows to unit norm (``"rows"``) or leaves W as stored (``"raw"``). The n = min(N, M)
eigenvalues of the smaller Gram matrix come from ``eigvalsh`` in float64 where that is
accurate; when the kept eigenvalues span too many decades for the Gram route to hold its
relative accuracy, an SVD of W is used instead. Eigenvalues below ``rtol * max`` are
numerical zeros: dropped and counted. A layer with no eigenvalue left (all zero, or all below
float64's range once squared) is skipped.
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
from nnequiv.settings import (
    CANONICAL_FORMS,
    DEFAULT_RTOL,
    NORMALIZATIONS,
    Settings,
    check_choice,
)

__all__ = [
    "LayerSpectrum",
    "NetworkSpectra",
    "gram_eigenvalues",
    "layer_spectrum",
    "layer_spectra",
    "network_spectra",
    "normalize_spectrum",
    "canonical_matrix",
    "canonical_form",
    "balancing_scales",
    "GRAM_RELATIVE_ACCURACY",
]

#: Why a layer without a spectrum is skipped.
ZERO_LAYER = "no singular value above zero in float64 (all zero or subnormal)"
#: Relative accuracy the Gram route must guarantee for the smallest kept eigenvalue.
GRAM_RELATIVE_ACCURACY = 1e-6


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
    canonical : str
        The canonical form applied (``"rows"`` where a balance was asked for but the zero
        pattern of W admits none).
    """

    name: str
    shape: tuple[int, ...]
    matrix_shape: tuple[int, int]
    eigenvalues: np.ndarray = field(repr=False)
    n_dropped: int = 0
    method: str = "gram"
    canonical: str = "raw"

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


def canonical_matrix(matrix: np.ndarray, form: str = Settings.canonical) -> np.ndarray:
    """The layer matrix in its canonical form (method item 13), as float64.

    ``"balanced"`` scales rows and columns by positive factors until every non-zero row has
    unit norm and every non-zero column the norm sqrt(N' / M') (N', M' the non-zero rows and
    columns): the form is the same for ``A W B`` with any positive diagonal A, B (folded
    BatchNorms before or after the layer, rescaled neurons of a ReLU network) and for
    ``W^T`` (any storage layout). Where the zero pattern of W admits no such balance (the
    factors diverge, as in sparse connectome blocks), the rows alone are scaled.
    ``"rows"`` scales every non-zero row to unit norm; ``"raw"`` keeps W.
    """
    return canonical_form(matrix, form)[0]


def canonical_form(matrix: np.ndarray, form: str = Settings.canonical) -> tuple[np.ndarray, str]:
    """:func:`canonical_matrix` and the form applied (``"rows"`` where a balance failed)."""
    check_choice("canonical form", form, CANONICAL_FORMS)
    if form == "raw":
        return np.asarray(matrix, dtype=np.float64), form
    w = np.array(matrix, dtype=np.float64)
    # divide by each row's largest entry first, so that squaring tiny rows cannot underflow
    peak = np.abs(w).max(axis=1, initial=0.0)
    w /= np.where(peak > 0, peak, 1.0)[:, None]
    if form == "balanced":
        scales = balancing_scales(w)
        if scales is not None:
            w *= scales[0][:, None]
            w *= scales[1][None, :]
            return w, form
    norms = np.sqrt(np.einsum("ij,ij->i", w, w))
    w /= np.where(norms > 0, norms, 1.0)[:, None]
    return w, "rows"


#: Sinkhorn balancing stops when every row norm is within this of 1 (relative, squared)...
BALANCE_TOLERANCE = 1e-10
#: ... and gives up after this many sweeps, or when its factors span more than
#: :data:`BALANCE_RANGE` (a zero pattern that admits no balance).
BALANCE_SWEEPS = 1000
BALANCE_RANGE = 1e12


def balancing_scales(w: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Positive row and column factors r, c that balance ``diag(r) W diag(c)``: every non-zero
    row of unit norm, every non-zero column of norm sqrt(N'/M') (Sinkhorn-Knopp on the squared
    entries). Zero rows and columns get the factor 0. None where no balance is reached."""
    squares = w * w
    live_rows, live_columns = squares.sum(axis=1) > 0, squares.sum(axis=0) > 0
    row_scale, column_scale = np.zeros(w.shape[0]), np.zeros(w.shape[1])
    a = squares[np.ix_(live_rows, live_columns)]
    rows, columns = a.shape
    if a.size == 0:
        return row_scale, column_scale
    c = np.ones(columns)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for _ in range(BALANCE_SWEEPS):
            r = 1.0 / (a @ c)
            c = (rows / columns) / (a.T @ r)
            if not (np.isfinite(c).all() and c.max() < BALANCE_RANGE * c.min()):
                return None
            if np.abs(r * (a @ c) - 1.0).max() < BALANCE_TOLERANCE:
                break
        else:
            return None
    row_scale[live_rows], column_scale[live_columns] = np.sqrt(r), np.sqrt(c)
    return row_scale, column_scale


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
    kept = values[values > rtol * top] if top > 0 else values[:0]
    if not kept.size:
        return np.empty(0), int(values.size), "gram"
    # eigvalsh of the Gram matrix is accurate to about (N + M) eps * max in absolute terms
    if kept[0] < (rows + cols) * np.finfo(float).eps * top / GRAM_RELATIVE_ACCURACY:
        values = np.linalg.svd(w, compute_uv=False)[::-1] ** 2
        top = values[-1]
        kept = values[values > rtol * top]
        return kept, int(values.size - kept.size), "svd"
    return kept, int(values.size - kept.size), "gram"


def _spectrum_of(matrix, rtol: float, canonical: str) -> tuple[np.ndarray, int, str, str]:
    w, applied = canonical_form(matrix, canonical)
    return (*gram_eigenvalues(w, rtol), applied)


def layer_spectrum(
    layer: LayerMatrix, rtol: float = DEFAULT_RTOL, canonical: str = "raw"
) -> LayerSpectrum:
    """The :class:`LayerSpectrum` of one layer matrix in the ``canonical`` form."""
    return LayerSpectrum(
        layer.name, layer.shape, layer.matrix_shape, *_spectrum_of(layer.matrix, rtol, canonical)
    )


def normalize_spectrum(eigenvalues: np.ndarray, method: str = Settings.normalization) -> np.ndarray:
    """Divide a layer spectrum by its median or mean (method item 3), or leave it.

    The result does not change when the layer's weights are rescaled.
    """
    check_choice("normalisation", method, NORMALIZATIONS)
    values = np.asarray(eigenvalues, dtype=np.float64)
    if method == "none" or values.size == 0:
        return values
    scale = np.median(values) if method == "median" else np.mean(values)
    return values / scale


# ---- cache ---------------------------------------------------------------------------


def _content_key(layer: LayerMatrix, rtol: float, canonical: str) -> str:
    digest = hashlib.blake2b(digest_size=20)
    matrix = np.ascontiguousarray(layer.matrix)
    digest.update(f"{matrix.dtype.str}|{matrix.shape}|{rtol!r}|{canonical}|v3".encode())
    digest.update(memoryview(matrix).cast("B"))
    return digest.hexdigest()


def _cache_read(path: Path, layer: LayerMatrix):
    try:
        with np.load(path, allow_pickle=False) as stored:
            values = stored["eigenvalues"]
            dropped = int(stored["n_dropped"])
            method = str(stored["method"])
            applied = str(stored["canonical"])
        if (
            values.ndim != 1
            or values.size + dropped != layer.order
            or not np.all(np.isfinite(values))
        ):
            return None
        return values, dropped, method, applied
    except Exception:  # a damaged entry is recomputed and rewritten
        return None


def _cache_write(path: Path, values, dropped, method, applied) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(
                stream, eigenvalues=values, n_dropped=dropped, method=method, canonical=applied
            )
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def cached_layer_spectrum(
    layer: LayerMatrix, rtol: float, canonical: str, cache_dir
) -> LayerSpectrum:
    """:func:`layer_spectrum`, read from ``cache_dir`` when this tensor was seen before."""
    if cache_dir is None:
        return layer_spectrum(layer, rtol, canonical)
    path = Path(cache_dir) / f"{_content_key(layer, rtol, canonical)}.npz"
    hit = _cache_read(path, layer) if path.exists() else None
    if hit is None:
        hit = _spectrum_of(layer.matrix, rtol, canonical)
        _cache_write(path, *hit)
    return LayerSpectrum(layer.name, layer.shape, layer.matrix_shape, *hit)


def network_spectra(
    source,
    include=None,
    exclude=None,
    layout: str | None = None,
    *,
    rtol: float = DEFAULT_RTOL,
    canonical: str = "raw",
    cache_dir: str | os.PathLike | None = None,
) -> NetworkSpectra:
    """Spectra of every layer of a network, computed one layer at a time.

    Parameters are those of :func:`layer_spectra`. A layer with no eigenvalue above
    ``rtol * max`` (all zero, or all too small to square in float64) is skipped.
    """
    weights, chosen = resolved_layout(source, layout)
    skipped: list[SkippedTensor] = []
    layers = []
    for layer in iter_layer_matrices(weights, include, exclude, chosen, skipped):
        spectrum = cached_layer_spectrum(layer, rtol, canonical, cache_dir)
        if spectrum.eigenvalues.size:
            layers.append(spectrum)
        else:
            skipped.append(SkippedTensor(layer.name, layer.shape, ZERO_LAYER))
    require_layers(weights.label, layers, skipped)
    return NetworkSpectra(weights.label, chosen, layers, skipped)


def layer_spectra(
    source,
    include=None,
    exclude=None,
    layout: str | None = None,
    *,
    rtol: float = DEFAULT_RTOL,
    canonical: str = "raw",
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
        Force ``"oihw"``, ``"hwio"`` or ``"ohwi"``.
    rtol : float
        Eigenvalues below ``rtol * max`` are dropped as numerical zeros.
    canonical : {"raw", "balanced", "rows"}
        ``"raw"``: the spectra of the stored matrices (default here); ``"balanced"`` or
        ``"rows"``: of a canonical form (method item 13; :func:`nnequiv.analyze` uses
        ``"balanced"`` by default).
    cache_dir : path, optional
        Directory of cached spectra, keyed by a content hash of each tensor.

    Returns
    -------
    list of LayerSpectrum
        In the order the tensors are stored.
    """
    return network_spectra(
        source, include, exclude, layout, rtol=rtol, canonical=canonical, cache_dir=cache_dir
    ).layers
