"""Layer matrices (method item 1): which tensors count as layers, and their N x M shape.

A float tensor with ``ndim >= 2`` becomes ``W`` with rows on the output axis and columns on
every other axis. The output axis is first for PyTorch/ONNX/Paddle and last for
TensorFlow/Keras/TF.js. For bare arrays (npz, dict) the layout is inferred once per network
by a vote of its kernels: small equal dimensions at one end mark the spatial axes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import numpy as np

from nnequiv.errors import InvalidWeightsError, NoLayersError
from nnequiv.loading import OUT_FIRST, OUT_LAST, WeightSource, open_weights

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


def kernel_vote(shape: Sequence[int]) -> str | None:
    """Layout suggested by one tensor's shape, or None when it does not tell.

    The ``ndim - 2`` spatial axes of a kernel are small and equal: at the end for out-first
    (``out x in x kh x kw``), at the start for out-last (``kh x kw x in x out``).
    """
    if len(shape) < 3:
        return None
    k = len(shape) - 2
    lead, trail = shape[:k], shape[-k:]

    def is_kernel(dims):
        return len(set(dims)) == 1 and dims[0] <= MAX_KERNEL

    if is_kernel(trail) and (not is_kernel(lead) or trail[0] < lead[0]):
        return OUT_FIRST
    if is_kernel(lead) and (not is_kernel(trail) or lead[0] < trail[0]):
        return OUT_LAST
    return None


def infer_layout(shapes: Sequence[Sequence[int]]) -> str:
    """Layout of a network from its tensor shapes: the majority of kernel votes.

    Ties and networks without kernels (only 2-D matrices, whose spectra do not depend on the
    layout) count as out-first.
    """
    votes = [kernel_vote(shape) for shape in shapes]
    return OUT_LAST if votes.count(OUT_LAST) > votes.count(OUT_FIRST) else OUT_FIRST


def matrix_shape(shape: Sequence[int], layout: str) -> tuple[int, int]:
    """``(N, M)``: output units and fan-in of a tensor of ``shape`` in ``layout``."""
    out = shape[-1] if layout == OUT_LAST else shape[0]
    return int(out), int(math.prod(shape) // out) if out else 0


def as_layer_matrix(array: np.ndarray, layout: str) -> np.ndarray:
    """The N x M matrix view of a weight tensor (no copy where the memory allows)."""
    if layout == OUT_LAST:
        out = array.shape[-1]
        return array.reshape(-1, out).T
    return array.reshape(array.shape[0], -1)


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
        return "filtered by name"
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
        raise NoLayersError(
            f"{label}: no eligible layer (float tensor with ndim >= 2 "
            f"and min(N, M) >= 2) among {len(skipped)} tensors"
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
        Force ``"out-first"`` or ``"out-last"`` (default: the loader's, or inferred).

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
