"""Layer matrices (method item 1): which tensors count as layers, and their N x M shape.

A float tensor with ``ndim >= 2`` becomes ``W`` with rows on the output axis and columns on
every other axis. Three kernel layouts are known: OIHW (PyTorch, ONNX, Paddle), HWIO
(TensorFlow, Keras, TF.js) and OHWI (TFLite). A kernel with a single output channel (a
depthwise kernel in HWIO or OHWI, or a one-output convolution) is the C x (kh*kw) matrix of
its per-channel filters in every layout. For bare arrays (npz, dict) the layout is inferred
once per network by a vote of its kernels: the small equal dimensions mark the spatial axes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import numpy as np

from nnequiv.errors import InvalidWeightsError, NoLayersError
from nnequiv.loading import HWIO, OHWI, OIHW, WeightSource, open_weights

__all__ = [
    "LayerMatrix",
    "SkippedTensor",
    "LayerMatrices",
    "layer_matrices",
    "iter_layer_matrices",
    "infer_layout",
    "kernel_vote",
    "matrix_shape",
    "as_layer_matrix",
]

#: Largest spatial kernel extent that the layout inference recognises.
MAX_KERNEL = 15
#: Why a tensor left out by the include/exclude patterns is skipped.
FILTERED = "filtered by name"


@dataclass
class LayerMatrix:
    """One eligible tensor as a matrix: ``matrix`` is N x M, rows are output units."""

    name: str
    shape: tuple[int, ...]
    matrix_shape: tuple[int, int]
    matrix: np.ndarray = field(repr=False)

    @property
    def order(self) -> int:
        """``n = min(N, M)``, the number of eigenvalues of the layer spectrum."""
        return min(self.matrix_shape)


@dataclass
class SkippedTensor:
    """A tensor that is not a layer matrix, and why."""

    name: str
    shape: tuple[int, ...]
    reason: str


@dataclass
class LayerMatrices:
    """Every eligible layer of a network, and every skipped tensor with its reason."""

    source: str
    layout: str
    layers: list[LayerMatrix]
    skipped: list[SkippedTensor]


def _spatial_axes(shape: Sequence[int], layout: str) -> tuple[int, ...]:
    """The dims of the spatial axes of a kernel of ``shape`` in ``layout``."""
    k = len(shape) - 2
    return {OIHW: tuple(shape[2:]), HWIO: tuple(shape[:k]), OHWI: tuple(shape[1:-1])}[layout]


def kernel_vote(shape: Sequence[int]) -> str | None:
    """Layout suggested by one tensor's shape, or None when it does not tell.

    The ``ndim - 2`` spatial axes of a kernel are small and equal: last in OIHW
    (``out x in x kh x kw``), first in HWIO (``kh x kw x in x out``), in the middle in OHWI
    (``out x kh x kw x in``). Where several positions qualify the smaller kernel wins; a tie
    abstains.
    """
    if len(shape) < 3:
        return None
    extents = {}
    for layout in (OIHW, HWIO, OHWI):
        dims = _spatial_axes(shape, layout)
        if len(set(dims)) == 1 and dims[0] <= MAX_KERNEL:
            extents[layout] = dims[0]
    if not extents:
        return None
    smallest = min(extents.values())
    winners = [layout for layout, extent in extents.items() if extent == smallest]
    return winners[0] if len(winners) == 1 else None


def infer_layout(shapes: Sequence[Sequence[int]]) -> str:
    """Layout of a network from its tensor shapes: the majority of kernel votes.

    Ties go to OIHW, then HWIO; networks without kernels (only 2-D matrices, whose spectra
    do not depend on the layout) count as OIHW.
    """
    votes = [kernel_vote(shape) for shape in shapes]
    return max((OIHW, HWIO, OHWI), key=votes.count)


def _channels(shape: Sequence[int], layout: str) -> tuple[int, int]:
    """``(out, in)`` channel counts of a tensor of ``shape`` in ``layout``."""
    if len(shape) == 2:
        return (int(shape[1]), int(shape[0])) if layout == HWIO else (int(shape[0]), int(shape[1]))
    if layout == OIHW:
        return int(shape[0]), int(shape[1])
    if layout == HWIO:
        return int(shape[-1]), int(shape[-2])
    return int(shape[0]), int(shape[-1])


def _per_channel(shape: Sequence[int], layout: str) -> bool:
    """A kernel with one output channel: taken as the C x (kh*kw) matrix of its filters."""
    out, channels = _channels(shape, layout)
    return len(shape) >= 3 and out == 1 and channels >= 2


def matrix_shape(shape: Sequence[int], layout: str) -> tuple[int, int]:
    """``(N, M)``: output units and fan-in of a tensor of ``shape`` in ``layout``.

    A kernel with a single output channel (a depthwise kernel ``kh x kw x C x 1`` in HWIO,
    ``1 x kh x kw x C`` in OHWI; a one-output convolution) gives ``(C, kh*kw)``, the same
    matrix as PyTorch's depthwise ``C x 1 x kh x kw``.
    """
    out, channels = _channels(shape, layout)
    if _per_channel(shape, layout):
        return channels, int(math.prod(_spatial_axes(shape, layout)))
    return out, int(math.prod(shape) // out) if out else 0


def as_layer_matrix(array: np.ndarray, layout: str) -> np.ndarray:
    """The N x M matrix view of a weight tensor (no copy where the memory allows)."""
    rows, _ = matrix_shape(array.shape, layout)
    if array.ndim == 2:
        return array.T if layout == HWIO else array
    if _per_channel(array.shape, layout):
        # the single output axis has size 1: only the channel axis and the spatial axes remain
        if layout == OIHW:
            return array.reshape(rows, -1)
        return array.reshape(-1, rows).T
    if layout == HWIO:
        return array.reshape(-1, rows).T
    return array.reshape(rows, -1)


def _excluded(name: str, include, exclude) -> bool:
    if include and not any(fnmatchcase(name, pattern) for pattern in include):
        return True
    return bool(exclude) and any(fnmatchcase(name, pattern) for pattern in exclude)


def _as_patterns(patterns) -> list[str]:
    if patterns is None:
        return []
    return [patterns] if isinstance(patterns, str) else list(patterns)


def iter_layer_matrices(
    source,
    include=None,
    exclude=None,
    layout: str | None = None,
    skipped: list | None = None,
) -> Iterator[LayerMatrix]:
    """Yield the layer matrices of ``source`` one at a time (streaming).

    Parameters are those of :func:`layer_matrices`; skipped tensors are appended to
    ``skipped`` when a list is given.
    """
    weights, chosen = resolved_layout(source, layout)
    include, exclude = _as_patterns(include), _as_patterns(exclude)
    for name, array in weights.tensors():
        reason = _skip_reason(name, array, chosen, include, exclude)
        if reason:
            if skipped is not None:
                skipped.append(SkippedTensor(name, tuple(array.shape), reason))
            continue
        if not np.all(np.isfinite(array)):
            bad = "NaN" if np.isnan(array).any() else "Inf"
            raise InvalidWeightsError(f"{weights.label}: tensor '{name}' holds {bad} values")
        rows, cols = matrix_shape(array.shape, chosen)
        yield LayerMatrix(name, tuple(array.shape), (rows, cols), as_layer_matrix(array, chosen))


def _skip_reason(name, array, layout, include, exclude) -> str | None:
    if _excluded(name, include, exclude):
        return FILTERED
    if not np.issubdtype(array.dtype, np.floating):
        return f"not a float tensor ({array.dtype})"
    if array.ndim < 2:
        return f"{array.ndim}-D tensor"
    rows, cols = matrix_shape(array.shape, layout)
    if min(rows, cols) < 2:
        return f"matrix {rows} x {cols} has min(N, M) < 2"
    return None


def resolved_layout(source, layout: str | None = None) -> tuple[WeightSource, str]:
    """The opened source and the layout used for it (given, known or inferred)."""
    weights = open_weights(source, layout)
    return weights, weights.layout or infer_layout([shape for _, shape in weights.shapes()])


def require_layers(label: str, layers: list, skipped: list) -> None:
    """Raise :class:`NoLayersError` when a network gave no eligible layer."""
    if not layers:
        filtered = sum(s.reason == FILTERED for s in skipped)
        hint = (
            f", {filtered} of them filtered by name (include/exclude patterns match whole "
            "names: '*conv*' keeps names containing 'conv')"
            if filtered
            else ""
        )
        raise NoLayersError(
            f"{label}: no eligible layer (float tensor with ndim >= 2 "
            f"and min(N, M) >= 2) among {len(skipped)} tensors{hint}"
        )


def layer_matrices(source, include=None, exclude=None, layout: str | None = None) -> LayerMatrices:
    """Every eligible layer matrix of a network (method item 1).

    Parameters
    ----------
    source : path, dict, torch module or WeightSource
        Anything :func:`nnequiv.loading.open_weights` accepts.
    include, exclude : str or list of str, optional
        Shell-style patterns on tensor names (``fnmatch``): keep only names matching an
        ``include`` pattern, then drop names matching an ``exclude`` pattern.
    layout : str, optional
        Force ``"oihw"``, ``"hwio"`` or ``"ohwi"`` (default: the loader's, or inferred).

    Raises
    ------
    NoLayersError
        No tensor qualifies.
    """
    weights, chosen = resolved_layout(source, layout)
    skipped: list[SkippedTensor] = []
    layers = list(iter_layer_matrices(weights, include, exclude, chosen, skipped))
    require_layers(weights.label, layers, skipped)
    return LayerMatrices(weights.label, chosen, layers, skipped)
