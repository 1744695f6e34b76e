"""Layer matrices (method item 1): which tensors count as layers, and their N x M shape.

A float tensor with ``ndim >= 2`` becomes ``W`` with rows on the output axis and columns on
every other axis. Three kernel layouts are known: OIHW (PyTorch, ONNX, Paddle), HWIO
(TensorFlow, Keras, TF.js) and OHWI (TFLite). A kernel with a single output channel (a
depthwise kernel in HWIO or OHWI, or a one-output convolution) is the C x (kh*kw) matrix of
its per-channel filters in every layout. For bare arrays (npz, dict) the layout is inferred
once per network by a vote of its kernels: the small equal dimensions mark the spatial axes.

Where a loader knows its tensors from headers (safetensors files, shard sets and indexes),
the name filters and the eligibility (dtype, ndim, min(N, M)) are decided before any tensor
is read, and a layer can stay in its file as a :class:`StoredMatrix`, read in blocks.

Each stored function is counted once (every omission is listed as skipped, with its reason):

* the loaders leave out optimizer states and second names of one stored tensor (the same
  storage, offset, shape and strides: GPT-2's ``lm_head.weight`` saved with its ``wte``);
* two tensors with identical dtype, shape and bytes are one layer only when the model ties
  them: both names are in :data:`TIED_NAMES`, or the model's ``config.json`` says
  ``tie_word_embeddings: true`` and the names are those of embeddings, heads or outputs.
  Identical bytes alone never merge layers (two zero-initialised layers are two layers);
* a layer followed by its BatchNorm (a sibling module ``P`` with ``P.weight`` and
  ``P.running_var``) whose scale is all zero is zero once the norm is folded into it, as
  ONNX exporters fold it: it is skipped as the all-zero layer of the exported file is.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import numpy as np

from nnequiv.errors import InvalidWeightsError, NoLayersError
from nnequiv.loading import HWIO, OHWI, OIHW, Dropped, WeightSource, open_weights
from nnequiv.loading._safetensors import StoredTensor, StoredWeights

__all__ = [
    "LayerShape",
    "LayerMatrix",
    "StoredMatrix",
    "SkippedTensor",
    "LayerMatrices",
    "layer_matrices",
    "iter_layer_matrices",
    "infer_layout",
    "kernel_vote",
    "matrix_shape",
    "as_layer_matrix",
    "layer_structure",
    "STRUCTURE_COORDINATES",
]

#: Largest spatial kernel extent that the layout inference recognises.
MAX_KERNEL = 15
#: Why a tensor left out by the include/exclude patterns is skipped.
FILTERED = "filtered by name"
#: Names of the matrices models tie (an input embedding that is also the output layer, an
#: embedding shared by encoder and decoder): identical copies under two of them count once.
TIED_NAMES = (
    "*lm_head.weight",
    "*wte.weight",
    "*embed_tokens.weight",
    "*word_embeddings.weight",
    "*tok_embeddings.weight",
    "*embed_in.weight",
    "*embed_out.weight",
    "shared.weight",
    "*.shared.weight",
    "*lm_head.decoder.weight",
    "*predictions.decoder.weight",
    "token_embd.weight",
    "output.weight",
)
#: Words of the names compared when ``config.json`` ties the word embeddings.
_TIE_WORDS = ("embed", "head", "output", "shared", "wte")


@dataclass
class LayerShape:
    """A layer's tensor name and shape, and the shape ``(N, M)`` of its matrix: what a
    :class:`LayerMatrix` and a :class:`~nnequiv.spectra.LayerSpectrum` both carry."""

    name: str
    shape: tuple[int, ...]
    matrix_shape: tuple[int, int]

    @property
    def order(self) -> int:
        """``n = min(N, M)``: the number of eigenvalues of the layer spectrum, and the order
        of the layer's conjugate circular matrix."""
        return min(self.matrix_shape)


@dataclass
class LayerMatrix(LayerShape):
    """One eligible tensor as a matrix: ``matrix`` is N x M, rows are output units (an array,
    or a :class:`StoredMatrix` still in its file where that was asked for)."""

    matrix: np.ndarray = field(repr=False)


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


#: The coordinates of a layer's structural point (method item 15).
STRUCTURE_COORDINATES = ("channel ratio", "kernel area", "per-channel")


def layer_structure(shape: Sequence[int], layout: str) -> tuple[float, float, float]:
    """The structural point of a tensor of ``shape`` in ``layout`` (method item 15).

    ``(|log(out / in)|, log(kernel area), per_channel)``: the channel ratio, the number of
    spatial taps of a kernel (1 for a dense matrix) and 1 for a per-channel kernel, whose
    matrix is C x (kh*kw) and whose ratio is 0: one input or one output channel per filter
    (a depthwise kernel in any layout, or a convolution of a one-channel input, which
    PyTorch stores in the same shape). A width multiplier leaves every layer
    between two hidden widths where it was, and more or fewer repeated blocks add or remove
    copies of the same points. The absolute value makes a dense matrix and its transpose (as
    another framework stores it) the same point.
    """
    shape = tuple(int(d) for d in shape)
    layout = layout if layout in (OIHW, HWIO, OHWI) else OIHW
    if len(shape) == 2:
        rows, columns = shape
        return (abs(math.log(rows / columns)), 0.0, 0.0)
    area = float(math.log(math.prod(_spatial_axes(shape, layout))))
    out, channels = _channels(shape, layout)
    if out == 1 or channels == 1:
        return (0.0, area, 1.0)
    return (abs(math.log(out / channels)), area, 0.0)


def stored_matrix_shape(shape: Sequence[int], layout: str) -> tuple[int, int, bool]:
    """``(P, Q, transposed)``: the layer matrix of a tensor of ``shape`` in ``layout`` is its
    row-major ``P x Q`` reshape S (``transposed`` False) or S^T (True)."""
    rows, _ = matrix_shape(shape, layout)
    size = math.prod(int(d) for d in shape)
    transposed = layout == HWIO or (_per_channel(shape, layout) and layout != OIHW)
    other = size // rows if rows else 0
    return (other, rows, True) if transposed else (rows, other, False)


def as_layer_matrix(array: np.ndarray, layout: str) -> np.ndarray:
    """The N x M matrix view of a weight tensor (no copy where the memory allows)."""
    rows, columns, transposed = stored_matrix_shape(array.shape, layout)
    flat = array.reshape(rows, columns)
    return flat.T if transposed else flat


@dataclass(frozen=True)
class StoredMatrix:
    """The N x M layer matrix of a tensor still in its file: the tensor's row-major ``P x Q``
    reshape S, or S^T. Read whole (``np.asarray``) or in blocks of rows or columns, each
    checked for NaN and Inf."""

    tensor: StoredTensor
    label: str
    layout: str

    @property
    def _view(self) -> tuple[int, int, bool]:
        return stored_matrix_shape(self.tensor.shape, self.layout)

    @property
    def shape(self) -> tuple[int, int]:
        rows, columns, transposed = self._view
        return (columns, rows) if transposed else (rows, columns)

    @property
    def dtype(self) -> np.dtype:
        return self.tensor.dtype

    def read(self) -> np.ndarray:
        """The whole matrix, decoded."""
        array = self.tensor.read()
        require_finite(array, self.label, self.tensor.name)
        return as_layer_matrix(array, self.layout)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self.read()
        return array if dtype is None else array.astype(dtype, copy=False)

    def blocks(self, axis: int, step: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(start, stop, float64 block)`` of consecutive row (0) or column (1) blocks of W;
        blocks of rows of S are one read each, blocks of its columns are read in bands of
        whole rows."""
        rows, columns, transposed = self._view
        along_rows = (axis == 0) != transposed
        with self.tensor.open() as handle:
            for start in range(0, self.shape[axis], step):
                stop = min(start + step, self.shape[axis])
                if along_rows:
                    flat = self.tensor.read_span(handle, start * columns, (stop - start) * columns)
                    part = flat.reshape(stop - start, columns)
                else:
                    part = self.tensor.read_columns(handle, columns, start, stop)
                require_finite(part, self.label, self.tensor.name)
                # a fresh buffer for every block: the caller may scale it in place
                yield start, stop, np.asarray(part.T if transposed else part, dtype=np.float64)

    def raw_chunks(self, chunk_bytes: int) -> Iterator[bytes]:
        """The tensor's stored bytes, in chunks."""
        with self.tensor.open() as handle:
            yield from self.tensor.raw_chunks(handle, chunk_bytes)


def require_finite(array: np.ndarray, label: str, name: str) -> None:
    """Raise :class:`InvalidWeightsError` when ``array`` holds NaN or Inf."""
    if not np.all(np.isfinite(array)):
        bad = "NaN" if np.isnan(array).any() else "Inf"
        raise InvalidWeightsError(f"{label}: tensor '{name}' holds {bad} values")


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
    *,
    stored: bool = False,
) -> Iterator[LayerMatrix]:
    """Yield the layer matrices of ``source`` one at a time (streaming).

    Parameters are those of :func:`layer_matrices`; skipped tensors are appended to
    ``skipped`` when a list is given. Where the source describes its tensors from headers
    (safetensors files, shard sets, indexes), tensors are chosen before any is read, and with
    ``stored=True`` each layer's ``matrix`` is a :class:`StoredMatrix` left in its file.
    A layer is held back until the tensors after it show whether a zeroed BatchNorm follows
    it (at most one layer more in memory).
    """
    weights, chosen = resolved_layout(source, layout)
    include, exclude = _as_patterns(include), _as_patterns(exclude)
    skipped = [] if skipped is None else skipped
    ties = _Ties(weights.tied_embeddings)
    pending: _Pending | None = None
    for name, tensor in _tensors(weights):
        if isinstance(tensor, Dropped):
            skipped.append(SkippedTensor(name, tensor.shape, tensor.reason))
            continue
        if pending is not None and pending.sees(name, tensor):
            if pending.zeroed:
                skipped.append(pending.skipped())
            else:
                yield pending.layer
            pending = None
        reason = _skip_reason(name, tensor, chosen, include, exclude)
        reason = reason or ties.duplicate(name, tensor)
        if reason:
            skipped.append(SkippedTensor(name, tuple(tensor.shape), reason))
            continue
        if isinstance(tensor, StoredTensor):
            in_file = StoredMatrix(tensor, weights.label, chosen)
            matrix = in_file if stored else in_file.read()
        else:
            require_finite(tensor, weights.label, name)
            matrix = as_layer_matrix(tensor, chosen)
        shape = matrix_shape(tensor.shape, chosen)
        layer = LayerMatrix(name, tuple(tensor.shape), shape, matrix)
        if pending is not None:
            yield pending.layer
        pending = _Pending(layer, _channels(tensor.shape, chosen)[0])
    if pending is not None:
        if pending.zeroed:
            skipped.append(pending.skipped())
        else:
            yield pending.layer


def _module_of(name: str) -> tuple[str, str]:
    """``(module path, its parent)`` of a parameter name: ``a.b.conv.weight`` ->
    ``("a.b.conv", "a.b")``."""
    module = name.rpartition(".")[0]
    return module, module.rpartition(".")[0]


class _Pending:
    """A layer held until the tensors after it show whether a BatchNorm with an all-zero
    scale follows it (a sibling module ``P``: ``P.weight`` of the layer's output size, then
    ``P.running_var``)."""

    def __init__(self, layer: LayerMatrix, outputs: int):
        self.layer, self.outputs = layer, outputs
        self.module, self.parent = _module_of(layer.name)
        self.scales: dict[str, bool] = {}  # norm module -> its scale is all zero
        self.zeroed_by: str | None = None

    @property
    def zeroed(self) -> bool:
        return self.zeroed_by is not None

    def sees(self, name: str, tensor) -> bool:
        """Take in the next tensor; True when the layer can be released."""
        module, parent = _module_of(name)
        if len(tensor.shape) >= 2 or parent != self.parent or module == self.module:
            return len(tensor.shape) >= 2
        leaf = name.rpartition(".")[2]
        if leaf == "weight" and tuple(tensor.shape) == (self.outputs,):
            values = np.asarray(tensor)
            self.scales[module] = bool(values.size) and not np.any(values)
        elif leaf == "running_var" and module in self.scales:
            if self.scales[module]:
                self.zeroed_by = module
            return True
        return False

    def skipped(self) -> SkippedTensor:
        reason = (
            f"zero once BatchNorm '{self.zeroed_by}' (all-zero scale) is folded into it, "
            "as exporters fold it"
        )
        return SkippedTensor(self.layer.name, self.layer.shape, reason)


class _Ties:
    """Which layers are identical copies of a tied matrix seen before (see the module)."""

    def __init__(self, config_ties: bool):
        self.config_ties = config_ties
        self.first: dict[tuple, str] = {}

    def _candidate(self, name: str) -> str | None:
        if any(fnmatchcase(name, pattern) for pattern in TIED_NAMES):
            return "a documented tie"
        if self.config_ties and any(word in name.lower() for word in _TIE_WORDS):
            return "tie_word_embeddings in config.json"
        return None

    def duplicate(self, name: str, tensor) -> str | None:
        """Why ``tensor`` is not counted again, or None (it is recorded if it may be tied)."""
        why = self._candidate(name)
        if why is None:
            return None
        key = (tuple(tensor.shape), str(tensor.dtype), _digest(tensor))
        if key in self.first:
            return f"identical to '{self.first[key]}', tied ({why}): counted once"
        self.first[key] = name
        return None


def _digest(tensor) -> bytes:
    """A hash of a tensor's stored bytes (read in chunks for a tensor still in its file)."""
    digest = hashlib.blake2b(digest_size=32)
    if isinstance(tensor, StoredTensor):
        with tensor.open() as handle:
            for chunk in tensor.raw_chunks(handle, 16 << 20):
                digest.update(chunk)
    else:
        digest.update(np.ascontiguousarray(tensor).tobytes())
    return digest.digest()


def _tensors(weights: WeightSource) -> Iterator[tuple[str, object]]:
    """``(name, tensor)``: :class:`StoredTensor` descriptions where the source has them (read
    later, if at all), else arrays; :class:`~nnequiv.loading.Dropped` for tensors the loader
    leaves out."""
    if isinstance(weights, StoredWeights) and weights.stored is not None:
        return ((tensor.name, tensor) for tensor in weights.stored())
    return weights.items()


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
