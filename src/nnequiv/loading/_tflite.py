"""TensorFlow Lite flatbuffers (``.tflite``), parsed with the ``tflite`` package's schema.

Every tensor that owns data (a constant: weights, biases, quantisation tables) is read; tensors
without a buffer are activations and are left out. Kernels are OHWI (``out x kh x kw x in``,
dense ``out x in``): the layout is ``"ohwi"``. A depthwise kernel is stored ``1 x kh x kw x C``;
it is given back as ``C x kh x kw x 1``, so that its layer matrix is ``C x kh*kw`` as in PyTorch
(whose depthwise kernel is ``C x 1 x kh x kw``). float16 and bfloat16 tensors come back as
float32; int8/uint8/int16/int32/int4 tensors with a quantisation scale are dequantised,
``(q - zero_point) * scale``, per tensor or per channel along the quantised dimension.
Sparse tensors (pruned weights, as some shipped detectors store them) are densified as the
TFLite runtime does: their levels (dense, or compressed as CSR segments and indices) walk the
block-expanded dimensions in the traversal order, each stored value put in its place and zero
elsewhere; the layout is checked first, so each element is visited at most once.

Every buffer is checked against the file's size and ``max_tensor_bytes`` before it is read;
data is read from the file one tensor at a time (not kept mapped).
"""

from __future__ import annotations

import math
import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnequiv._optional import optional_module
from nnequiv.errors import FormatError, NNEquivError
from nnequiv.loading._limits import (
    DecodeBudget,
    TableEntry,
    describe,
    read_tensor_bytes,
    require_count,
    shown,
    tensor_byte_limit,
)
from nnequiv.loading._source import OHWI, WeightSource, listed_source

IDENTIFIER = b"TFL3"
#: TFLite TensorType ids -> numpy dtypes (little-endian); INT4 is packed two per byte.
_DTYPES = {
    0: "<f4",  # FLOAT32
    1: "<f2",  # FLOAT16
    2: "<i4",  # INT32
    3: "u1",  # UINT8
    4: "<i8",  # INT64
    7: "<i2",  # INT16
    9: "i1",  # INT8
    10: "<f8",  # FLOAT64
    12: "<u8",  # UINT64
    15: "<u4",  # UINT32
    16: "<u2",  # UINT16
    18: "<u2",  # BFLOAT16, widened below
}
_INT4, _FLOAT16, _BFLOAT16 = 17, 1, 18
_DEPTHWISE_CONV_2D, _DEQUANTIZE = 4, 6


@dataclass(frozen=True)
class Level:
    """One level of a sparse tensor's traversal: dense (``size`` positions) or compressed
    (CSR: ``segments`` into ``indices``)."""

    dense: bool
    size: int
    segments: tuple[int, ...] = ()
    indices: tuple[int, ...] = ()


@dataclass(frozen=True)
class Sparsity:
    """A sparse tensor's layout: the order its levels traverse the (block-expanded)
    dimensions, which dimensions are blocked, and each level."""

    traversal: tuple[int, ...]
    block_map: tuple[int, ...]
    levels: tuple[Level, ...]


@dataclass(frozen=True)
class TFLiteTensor(TableEntry):
    """A constant tensor of a TFLite model: where its data lies and how to decode it."""

    tensor_type: int
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    axis: int = 0
    depthwise: bool = False
    sparsity: Sparsity | None = None

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The shape given back (a depthwise kernel ``1 x kh x kw x C`` as ``C x kh x kw x 1``)."""
        if self.depthwise and len(self.shape) == 4:
            return (self.shape[3], self.shape[1], self.shape[2], self.shape[0])
        return self.shape


def _tflite_module(path):
    return optional_module("tflite", "tflite", f"reading {path}")


def tflite_tensors(path: Path) -> list[TFLiteTensor]:
    """The constant tensors of a TFLite file, their data located and checked, none read.

    Raises
    ------
    FormatError
        Not a TFLite flatbuffer, a corrupt table, a buffer that runs past the end of the file,
        a sparse tensor, or a buffer whose size does not match its tensor's shape.
    """
    tflite = _tflite_module(path)
    size = path.stat().st_size
    if size < 8:
        raise FormatError(f"{path}: too short for a TFLite file ({size} bytes)")
    with open(path, "rb") as handle:
        data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    if bytes(data[4:8]) != IDENTIFIER:
        raise FormatError(f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier)")
    try:
        return _constant_tensors(path, tflite.Model.GetRootAs(data, 0), size)
    except NNEquivError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, OverflowError) as exc:
        raise FormatError(f"{path}: corrupt TFLite flatbuffer ({describe(exc)})") from exc


def _constant_tensors(path: Path, model, size: int) -> list[TFLiteTensor]:
    codes = [
        max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        for code in (model.OperatorCodes(i) for i in range(model.OperatorCodesLength()))
    ]
    n_buffers = model.BuffersLength()
    label = str(path)
    require_count(label, "subgraphs", model.SubgraphsLength(), "max_subgraphs")
    found, seen, listed = [], set(), 0
    budget = DecodeBudget(label, size)
    for index in range(model.SubgraphsLength()):
        graph = model.Subgraphs(index)
        # subgraphs may repeat one table: the entries of all of them count together
        listed += graph.TensorsLength() + graph.OperatorsLength()
        require_count(label, "tensors and operators in its subgraphs", listed, "max_tensors")
        prefix = "" if index == 0 else f"{_text(graph.Name()) or f'subgraph{index}'}/"
        depthwise = _depthwise_kernels(graph, codes)
        for position in range(graph.TensorsLength()):
            tensor = graph.Tensors(position)
            buffer = tensor.Buffer()
            if buffer == 0 or buffer in seen:
                continue  # an activation (no data), or a buffer already read
            if buffer >= n_buffers:
                raise FormatError(f"{path}: tensor {position} refers to a missing buffer")
            name = prefix + (_text(tensor.Name()) or f"tensor{position}")
            offset, nbytes = _buffer_span(model.Buffers(buffer))
            if nbytes == 0 or tensor.Type() not in _DTYPES and tensor.Type() != _INT4:
                continue  # empty, or strings / booleans / resources: never weights
            if offset + nbytes > size:
                raise FormatError(
                    f"{path}: tensor '{shown(name)}' declares {nbytes} bytes past the end of "
                    "the file"
                )
            seen.add(buffer)
            entry = _entry(path, tensor, name, offset, nbytes, position in depthwise)
            wide = np.dtype(_DTYPES.get(entry.tensor_type, "i1")).itemsize == 8
            budget.take(math.prod(entry.shape) * (8 if wide else 4), f"tensor '{shown(name)}'")
            found.append(entry)
    return found


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value or ""


def _depthwise_kernels(graph, codes) -> set[int]:
    """Tensor indices used as depthwise kernels, through a DEQUANTIZE (fp16 models) too."""
    kernels, dequantized_from = set(), {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = codes[op.OpcodeIndex()] if op.OpcodeIndex() < len(codes) else None
        if code == _DEPTHWISE_CONV_2D and op.InputsLength() > 1:
            kernels.add(int(op.Inputs(1)))
        elif code == _DEQUANTIZE and op.InputsLength() and op.OutputsLength():
            dequantized_from[int(op.Outputs(0))] = int(op.Inputs(0))
    return {dequantized_from.get(k, k) for k in kernels}


def _buffer_span(buffer) -> tuple[int, int]:
    """``(file offset, byte count)`` of a buffer's data: inline, or after the flatbuffer
    (models over 2 GiB keep ``offset``/``size`` instead; an offset of 0 or 1 means none)."""
    table = buffer._tab
    field = table.Offset(4)
    if field:
        return table.Vector(field), table.VectorLen(field)
    if buffer.Offset() > 1:
        return buffer.Offset(), buffer.Size()
    return 0, 0


def _entry(path, tensor, name, offset, nbytes, depthwise) -> TFLiteTensor:
    shape = () if tensor.ShapeIsNone() else tuple(int(d) for d in tensor.ShapeAsNumpy())
    if any(d < 0 for d in shape):
        raise FormatError(f"{path}: tensor '{shown(name)}' has a negative dimension {shape}")
    kind = tensor.Type()
    sparsity = None
    if tensor.Sparsity() is not None:
        if kind == _INT4:
            raise FormatError(f"{path}: tensor '{shown(name)}' is sparse int4, which is not read")
        sparsity = _sparsity(path, name, tensor.Sparsity(), shape)
        scale, zero_point, axis = _quantization(path, name, tensor.Quantization(), shape)
        itemsize = np.dtype(_DTYPES[kind]).itemsize
        if nbytes % itemsize or nbytes // itemsize > math.prod(shape):
            raise FormatError(
                f"{path}: tensor '{shown(name)}' holds {nbytes} bytes of sparse values, more "
                f"than its shape {shape} has elements, or not whole elements"
            )
        return TFLiteTensor(
            name, shape, offset, nbytes, kind, scale, zero_point, axis, depthwise, sparsity
        )
    elements = int(np.prod(shape, dtype=object))
    expected = (elements + 1) // 2 if kind == _INT4 else elements * np.dtype(_DTYPES[kind]).itemsize
    if expected != nbytes:
        raise FormatError(
            f"{path}: tensor '{shown(name)}' holds {nbytes} bytes but its shape {shape} "
            f"needs {expected}"
        )
    scale, zero_point, axis = _quantization(path, name, tensor.Quantization(), shape)
    return TFLiteTensor(name, shape, offset, nbytes, kind, scale, zero_point, axis, depthwise)


#: Most compressed indices a sparse tensor may list per level.
_INDEX_VECTORS = {1: "Int32Vector", 2: "Uint16Vector", 3: "Uint8Vector"}


def _index_vector(path, name, kind: int, table) -> tuple[int, ...]:
    """The values of one of a dimension's index vectors (a flatbuffer union)."""
    if table is None or kind == 0:
        return ()
    if kind not in _INDEX_VECTORS:
        raise FormatError(
            f"{path}: tensor '{shown(name)}' has a sparse index vector of type {kind}"
        )
    tflite = _tflite_module(path)
    vector = getattr(tflite, _INDEX_VECTORS[kind])()
    vector.Init(table.Bytes, table.Pos)
    return () if vector.ValuesIsNone() else tuple(int(v) for v in vector.ValuesAsNumpy())


def _sparsity(path, name, params, shape) -> Sparsity:
    """The sparse layout of a tensor, checked so that densifying it visits each element of
    ``shape`` at most once and never indexes past an array."""
    what = f"{path}: tensor '{shown(name)}' has an invalid sparse layout"
    traversal = (
        () if params.TraversalOrderIsNone() else tuple(map(int, params.TraversalOrderAsNumpy()))
    )
    block_map = () if params.BlockMapIsNone() else tuple(map(int, params.BlockMapAsNumpy()))
    rank, total = len(shape), len(traversal)
    if (
        params.DimMetadataLength() != total
        or total != rank + len(block_map)
        or sorted(traversal) != list(range(total))
        or sorted(traversal[:rank]) != list(range(rank))
        or len(set(block_map)) != len(block_map)
        or not all(0 <= d < rank for d in block_map)
    ):
        raise FormatError(f"{what} (traversal order, block map and levels do not agree)")
    levels = []
    for index in range(total):
        meta = params.DimMetadata(index)
        dense = meta.Format() == 0
        segments = _index_vector(path, name, meta.ArraySegmentsType(), meta.ArraySegments())
        indices = _index_vector(path, name, meta.ArrayIndicesType(), meta.ArrayIndices())
        levels.append(Level(dense, int(meta.DenseSize()), segments, indices))
    block_size = [levels[traversal[rank + k]].size for k in range(len(block_map))]
    if any(size <= 0 for size in block_size):
        raise FormatError(f"{what} (a block of size zero)")
    expanded = list(shape)
    for k, dim in enumerate(block_map):
        if shape[dim] % block_size[k]:
            raise FormatError(f"{what} (dimension {dim} is not whole blocks)")
        expanded[dim] = shape[dim] // block_size[k]
    expanded += block_size
    for index, level in enumerate(levels):
        extent = expanded[traversal[index]]
        if level.dense and level.size != extent:
            raise FormatError(f"{what} (level {index} has {level.size} positions, not {extent})")
        if not level.dense and (
            any(b < a for a, b in zip(level.segments, level.segments[1:]))
            or (
                level.segments
                and (level.segments[0] < 0 or level.segments[-1] > len(level.indices))
            )
            or any(not 0 <= i < extent for i in level.indices)
        ):
            raise FormatError(f"{what} (level {index} has indices outside its dimension)")
    return Sparsity(traversal, block_map, tuple(levels))


def densify(values: np.ndarray, shape: tuple[int, ...], sparsity: Sparsity, label, name):
    """The dense tensor of ``shape`` holding the sparse ``values`` where the layout puts
    them, zero elsewhere, as the TFLite runtime densifies (its FormatConverter); iterative,
    each element visited at most once."""
    rank = len(shape)
    traversal, levels = sparsity.traversal, sparsity.levels
    block_size = [levels[traversal[rank + k]].size for k in range(len(sparsity.block_map))]
    dense = np.zeros(math.prod(shape), dtype=values.dtype)
    strides = [math.prod(shape[d + 1 :]) for d in range(rank)]
    coordinate = [0] * len(traversal)
    taken = 0

    def children(level: int, parent: int):
        spec = levels[level]
        if spec.dense:
            return ((i, parent * spec.size + i) for i in range(spec.size))
        if parent + 1 >= len(spec.segments):
            return iter(())
        span = range(spec.segments[parent], spec.segments[parent + 1])
        return ((spec.indices[i], i) for i in span)

    stack = [(0, children(0, 0))] if traversal else []
    while stack:
        level, pending = stack[-1]
        step = next(pending, None)
        if step is None:
            stack.pop()
            continue
        coordinate[level] = step[0]
        if level + 1 < len(traversal):
            stack.append((level + 1, children(level + 1, step[1])))
            continue
        if taken >= values.size:
            raise FormatError(
                f"{label}: tensor '{shown(name)}' lists more sparse positions than values"
            )
        position = [0] * rank
        for at in range(rank):
            position[traversal[at]] = coordinate[at]
        for at in range(rank, len(traversal)):
            block = traversal[at] - rank
            dim = sparsity.block_map[block]
            position[dim] = position[dim] * block_size[block] + coordinate[at]
        dense[sum(p * s for p, s in zip(position, strides))] = values[taken]
        taken += 1
    return dense.reshape(shape)


def _quantization(path, name, quant, shape) -> tuple[tuple, tuple, int]:
    if quant is None or quant.ScaleLength() == 0:
        return (), (), 0
    scale = tuple(float(quant.Scale(i)) for i in range(quant.ScaleLength()))
    zero_point = tuple(int(quant.ZeroPoint(i)) for i in range(quant.ZeroPointLength()))
    axis = int(quant.QuantizedDimension())
    channels = shape[axis] if 0 <= axis < len(shape) else None
    if len(scale) > 1 and len(scale) != channels:
        raise FormatError(
            f"{path}: tensor '{shown(name)}' has {len(scale)} quantisation scales for dimension "
            f"{axis} of shape {shape}"
        )
    if zero_point and len(zero_point) not in (1, len(scale)):
        raise FormatError(
            f"{path}: tensor '{shown(name)}' has {len(zero_point)} zero points for "
            f"{len(scale)} scales"
        )
    return scale, zero_point, axis


def _decode(entry: TFLiteTensor, raw: np.ndarray, label: str = "") -> np.ndarray:
    if entry.sparsity is not None:
        values = raw.view(_DTYPES[entry.tensor_type])
        values = densify(values, entry.shape, entry.sparsity, label, entry.name)
    elif entry.tensor_type == _INT4:
        values = _unpack_int4(raw, int(np.prod(entry.shape, dtype=np.int64))).reshape(entry.shape)
    else:
        values = raw.view(_DTYPES[entry.tensor_type]).reshape(entry.shape)
    if entry.tensor_type == _BFLOAT16:
        values = (values.astype(np.uint32) << 16).view(np.float32)
    elif entry.tensor_type == _FLOAT16:
        values = values.astype(np.float32)
    elif entry.scale and np.issubdtype(values.dtype, np.integer):
        values = _dequantize(values, entry)
    if entry.depthwise and values.ndim == 4:
        values = np.ascontiguousarray(values.transpose(3, 1, 2, 0))
    return values


def _unpack_int4(raw: np.ndarray, count: int) -> np.ndarray:
    """Signed 4-bit values packed two per byte, low nibble first."""
    nibbles = np.empty(raw.size * 2, dtype=np.int8)
    nibbles[0::2] = (raw & 0x0F).astype(np.int8)
    nibbles[1::2] = (raw >> 4).astype(np.int8)
    nibbles[nibbles > 7] -= 16
    return nibbles[:count]


def _dequantize(values: np.ndarray, entry: TFLiteTensor) -> np.ndarray:
    scale = np.asarray(entry.scale, dtype=np.float32)
    zero_point = np.asarray(entry.zero_point or (0,), dtype=np.float32)
    if scale.size > 1:
        axes = [1] * values.ndim
        axes[entry.axis] = scale.size
        scale = scale.reshape(axes)
        zero_point = zero_point.reshape(axes) if zero_point.size > 1 else zero_point
    return (values.astype(np.float32) - zero_point) * scale


def iter_tflite(
    path: Path, max_tensor_bytes: int | None = None
) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, array)`` of every constant tensor, one read from the file at a time.

    Raises
    ------
    FormatError
        A tensor larger than ``max_tensor_bytes`` once decoded.
    """
    limit = tensor_byte_limit(max_tensor_bytes)
    tensors = tflite_tensors(path)
    with open(path, "rb") as handle:
        for entry in tensors:
            wide = np.dtype(_DTYPES.get(entry.tensor_type, "i1")).itemsize == 8
            raw = read_tensor_bytes(handle, path, entry, 8 if wide else 4, limit)
            yield entry.name, _decode(entry, raw, str(path))


def open_tflite(path: Path, forced=None, *, max_tensor_bytes: int | None = None) -> WeightSource:
    """The :class:`WeightSource` of a TFLite file (tables checked now, tensors read lazily)."""
    path = Path(path)
    listed = [(entry.name, entry.output_shape) for entry in tflite_tensors(path)]
    return listed_source(path, forced or OHWI, listed, lambda: iter_tflite(path, max_tensor_bytes))
