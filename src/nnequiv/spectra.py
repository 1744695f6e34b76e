"""Layer spectra (method items 2, 3 and 13): canonical form, eigenvalues of W W^T,
normalisation.

The canonical form balances the rows and columns of W (``canonical="balanced"``), scales its
rows to unit norm (``"rows"``) or leaves W as stored (``"raw"``). The n = min(N, M)
eigenvalues of the smaller Gram matrix come from ``eigvalsh`` in float64 where that is
accurate; where the smallest kept eigenvalues lie below what the Gram route resolves, they
are computed again by inverse iteration ("refined") or, for many of them, from an SVD.
Eigenvalues below ``rtol * max`` are numerical zeros: dropped and counted. A layer with no
eigenvalue left (all zero, or all below float64's range once squared) is skipped.

Large layers are computed from blocks of rows or columns in bounded memory, read from the
file where the loader allows it (see :mod:`nnequiv._blockwise`); the result is the same as
from the matrix in memory, up to rounding. Each layer's working memory is estimated before
anything is allocated and held to a budget (``max_memory``, by default what the process can
still allocate; :mod:`nnequiv._memory`): smaller blocks where the default ones would not fit,
a one-line :class:`~nnequiv.errors.ResourceLimitError` naming the layer where even one row at
a time would not, and the same line where an allocation fails all the same.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from nnequiv._blockwise import (
    BALANCE_RANGE,
    BALANCE_SWEEPS,
    BALANCE_TOLERANCE,
    BLOCK_BYTES,
    GRAM_RELATIVE_ACCURACY,
    SQUARES_CACHE_BYTES,
    ArrayBlocks,
    Scaling,
    canonical_scaling,
    matrix_spectrum,
    plan_blocks,
    whole_bytes,
    working_bytes,
)
from nnequiv._memory import format_gib, memory_budget
from nnequiv._pool import ordered_map, resolve_n_jobs
from nnequiv._signatures import arguments_of
from nnequiv.errors import ResourceLimitError
from nnequiv.layers import (
    LayerMatrix,
    LayerShape,
    SkippedTensor,
    StoredMatrix,
    iter_layer_matrices,
    require_layers,
    resolved_layout,
)
from nnequiv.loading._safetensors import StoredWeights
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
    "BLOCK_BYTES",
    "BALANCE_TOLERANCE",
    "BALANCE_SWEEPS",
    "BALANCE_RANGE",
]

#: Why a layer without a spectrum is skipped.
ZERO_LAYER = "no singular value above zero in float64 (all zero or subnormal)"
#: ``progress(done, total, label)``: layers done, layers in all (None where the source does
#: not say before it is read) and the layer being computed, with its stage for large ones.
Progress = Callable[[int, "int | None", str], None]


@dataclass
class LayerSpectrum(LayerShape):
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
        ``"gram"``, ``"refined"`` (the smallest eigenvalues computed again by inverse
        iteration) or ``"svd"`` (method item 2).
    canonical : str
        The canonical form applied (``"rows"`` where a balance was asked for but the zero
        pattern of W admits none).
    """

    eigenvalues: np.ndarray = field(repr=False)
    n_dropped: int = 0
    method: str = "gram"
    canonical: str = "raw"


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
    blocks = ArrayBlocks(matrix)
    size = whole_bytes(blocks.shape)
    scaling = canonical_scaling(blocks, form, block_bytes=size, cache_bytes=size)
    whole = np.array(matrix, dtype=np.float64)
    return scaling.apply(whole, 0, blocks.shape[0], 0), scaling.form


def balancing_scales(w: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Positive row and column factors r, c that balance ``diag(r) W diag(c)``: every non-zero
    row of unit norm, every non-zero column of norm sqrt(N'/M') (Sinkhorn-Knopp on the squared
    entries). Zero rows and columns get the factor 0. None where no balance is reached."""
    blocks = ArrayBlocks(w)
    size = whole_bytes(blocks.shape)
    scaling = canonical_scaling(blocks, "balanced", block_bytes=size, cache_bytes=size)
    if scaling.form != "balanced":
        return None
    return scaling.rows / scaling.peak, scaling.columns


def gram_eigenvalues(matrix: np.ndarray, rtol: float = DEFAULT_RTOL) -> tuple[np.ndarray, int, str]:
    """Non-zero eigenvalues of ``W W^T`` for an N x M matrix, ascending, in float64.

    Returns
    -------
    eigenvalues, n_dropped, method
        ``method`` is ``"gram"`` when ``eigvalsh`` of the smaller Gram matrix was accurate
        to :data:`GRAM_RELATIVE_ACCURACY` for every kept eigenvalue; ``"refined"`` when the
        smallest ones were computed again by inverse iteration to that accuracy; ``"svd"``
        when they came from an SVD of W.
    """
    blocks = ArrayBlocks(matrix)
    return matrix_spectrum(blocks, Scaling("raw"), rtol, block_bytes=whole_bytes(blocks.shape))


def _spectrum_of(
    matrix,
    rtol: float,
    canonical: str,
    block_bytes: int | None = None,
    stage=None,
    *,
    budget: int | None = None,
    where: str = "layer",
) -> tuple[np.ndarray, int, str, str]:
    """Eigenvalues, numerical zeros, method and canonical form applied, from blocks of the
    matrix (one block where it fits ``block_bytes``; ``stage`` hears the stages of larger
    ones). With a ``budget`` (bytes), smaller blocks where the working memory would pass it,
    and a :class:`ResourceLimitError` naming ``where`` where no block size fits."""
    blocks = matrix if isinstance(matrix, StoredMatrix) else ArrayBlocks(matrix)
    size = BLOCK_BYTES if block_bytes is None else block_bytes
    cache = SQUARES_CACHE_BYTES
    if budget is not None:
        plan = plan_blocks(blocks.shape, budget, size, cache)
        if plan is None:
            rows, columns = blocks.shape
            needed = working_bytes(blocks.shape, 8 * max(rows, columns), 0)
            raise ResourceLimitError(
                f"{where} ({rows} x {columns}) needs {format_gib(needed)} of working memory "
                f"even in blocks, above the {format_gib(budget)} available "
                "(max_memory, --max-memory)"
            )
        size, cache = plan
    large = whole_bytes(blocks.shape) > size
    report = stage if stage is not None and large else (lambda text: None)
    scaling = canonical_scaling(
        blocks, canonical, block_bytes=size, cache_bytes=cache, stage=report
    )
    spectrum = matrix_spectrum(blocks, scaling, rtol, block_bytes=size, stage=report, budget=budget)
    return (*spectrum, scaling.form)


def layer_spectrum(
    layer: LayerMatrix, rtol: float = DEFAULT_RTOL, canonical: str = Settings.canonical
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


def _bounded_layer_spectrum(
    layer: LayerMatrix,
    rtol: float,
    canonical: str,
    *,
    block_bytes: int | None = None,
    stage=None,
    max_memory: int | None = None,
    label: str = "",
) -> LayerSpectrum:
    """:func:`layer_spectrum` of a layer matrix (in memory or stored), its working memory
    held to ``max_memory`` bytes (None: what the process can still allocate); a layer that
    does not fit, or whose allocation fails, is a :class:`ResourceLimitError` naming
    ``label`` and the layer."""
    where = f"{label}: layer '{layer.name}'" if label else f"layer '{layer.name}'"
    budget = memory_budget(max_memory)
    try:
        found = _spectrum_of(
            layer.matrix, rtol, canonical, block_bytes, stage, budget=budget, where=where
        )
    except MemoryError as exc:  # numpy's _ArrayMemoryError too
        rows, columns = layer.matrix_shape
        raise ResourceLimitError(
            f"{where} ({rows} x {columns}): out of memory ({' '.join(str(exc).split())}); "
            f"the budget was {format_gib(budget)} (max_memory, --max-memory)"
        ) from None
    return LayerSpectrum(layer.name, layer.shape, layer.matrix_shape, *found)


def _no_spectrum_cache(cache_dir, stacklevel: int = 3) -> None:
    """Warn that the per-layer spectrum cache is gone (``cache_dir`` given), at the line
    ``stacklevel`` frames up (3: the caller of the function that calls this)."""
    if cache_dir is not None:
        warnings.warn(
            "cache_dir of layer_spectra and network_spectra is deprecated and ignored (the "
            "per-layer spectrum cache is gone; nnequiv.analyze caches whole analyses); it "
            "will be removed in the next release",
            DeprecationWarning,
            stacklevel=stacklevel,
        )


def network_spectra(
    source,
    include=None,
    exclude=None,
    layout: str | None = None,
    *,
    rtol: float = DEFAULT_RTOL,
    canonical: str = Settings.canonical,
    cache_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
    block_bytes: int | None = None,
    n_jobs: int | None = None,
    max_memory: int | None = None,
) -> NetworkSpectra:
    """Spectra (method item 2) of every eligible layer of a network, in the canonical form,
    computed one layer at a time.

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
        The canonical form (method item 13), by default the one of
        :class:`~nnequiv.settings.Settings` (``"balanced"``, as :func:`nnequiv.analyze`);
        ``"raw"``: the spectra of the stored matrices (the default before 0.4).
    cache_dir : None
        Deprecated and ignored (the per-layer spectrum cache is gone; :func:`nnequiv.analyze`
        caches whole analyses); giving it warns, and it goes in the next release.
    progress : callable, optional
        ``progress(done, total, label)`` before and after every layer, and at every stage of
        a layer computed in blocks (``label`` is then ``"name: stage"``); ``total`` is None
        where the source does not list its layers before they are read.
    block_bytes : int, optional
        Largest block of a layer matrix held at once as float64 (default
        :data:`BLOCK_BYTES`); a larger layer is read and computed in blocks. Changes memory
        and time, not the result (beyond rounding).
    n_jobs : int or None
        Worker processes over the layers (-1: every core), for sources that list their
        tensors from headers (safetensors files, shards, indexes; others are computed in
        turn; :mod:`nnequiv._pool`). Each worker holds one layer's working memory and uses
        one BLAS thread; stages are not reported from workers. Does not change the result.
    max_memory : int or None
        Bytes one layer's computation may take (shared among the workers); None: the
        smallest of the available RAM, the room under ``RLIMIT_AS`` and the cgroup limit.
        A layer whose default blocks would pass it is computed in smaller blocks (the same
        result up to rounding); one that needs more even so is refused with a
        :class:`~nnequiv.errors.ResourceLimitError` that names it and the GiB it needs.

    Returns
    -------
    NetworkSpectra
        The network's label and layout, its layer spectra in the model's order (the order of
        a shard index, else the order in which the file stores the tensors), and the tensors
        skipped with the reason. A layer with no eigenvalue above ``rtol * max`` (all zero,
        or all too small to square in float64) is skipped.
    """
    _no_spectrum_cache(cache_dir)
    weights, chosen = resolved_layout(source, layout)
    skipped: list[SkippedTensor] = []
    matrices = iter_layer_matrices(weights, include, exclude, chosen, skipped, stored=True)
    total, workers = None, 1
    if isinstance(weights, StoredWeights):  # chosen from the headers: nothing read yet
        matrices = list(matrices)
        total = len(matrices)
        workers = min(resolve_n_jobs(n_jobs), total)
    report = progress or (lambda done, total, label: None)
    options = {"rtol": rtol, "canonical": canonical}
    options.update(label=weights.label, max_memory=max_memory)
    layers = []
    if workers > 1:  # each worker has its share of the budget
        share = memory_budget(max_memory) // workers
        task = partial(
            _bounded_layer_spectrum, **{**options, "max_memory": share}, block_bytes=block_bytes
        )
        spectra = ordered_map(task, matrices, workers)
    else:
        spectra = _in_turn(matrices, report, total, options, block_bytes)
    for done, spectrum in enumerate(spectra):
        if spectrum.eigenvalues.size:
            layers.append(spectrum)
        else:
            skipped.append(SkippedTensor(spectrum.name, spectrum.shape, ZERO_LAYER))
        report(done + 1, total, spectrum.name)
    require_layers(weights.label, layers, skipped)
    return NetworkSpectra(weights.label, chosen, layers, skipped)


def _in_turn(matrices, report, total, options, block_bytes):
    """The spectrum of every layer, one after the other, reporting each layer's start and the
    stages of large ones."""
    for done, layer in enumerate(matrices):
        report(done, total, layer.name)

        def stage(text: str, done=done, name=layer.name) -> None:
            report(done, total, f"{name}: {text}")

        yield _bounded_layer_spectrum(layer, **options, block_bytes=block_bytes, stage=stage)


@arguments_of(network_spectra)
def layer_spectra(source, *args, **options) -> list[LayerSpectrum]:
    """The layer spectra of :func:`nnequiv.spectra.network_spectra`, whose arguments it
    takes (documented there), as a list in the model's order.

    Examples
    --------
    >>> from nnequiv.datasets import random_network
    >>> spectra = layer_spectra(random_network([(6, 4), (3, 6)]))
    >>> [(layer.name, layer.eigenvalues.size) for layer in spectra]
    [('layer0.weight', 4), ('layer1.weight', 3)]
    """
    _no_spectrum_cache(options.pop("cache_dir", None), stacklevel=4)  # the caller's line
    return network_spectra(source, *args, **options).layers
