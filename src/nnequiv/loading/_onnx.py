"""ONNX models: initializers and weight-carrying Constant nodes, in every subgraph.

Each tensor's declared size (dims x element size) is checked before it is converted.
External data is read by nnequiv itself: its location is taken relative to the model file's
directory and may not leave it (no absolute path, no ``..``), the file must be a regular
file, and the declared offset and length must lie inside it and match the tensor's size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nnequiv.errors import FormatError, MissingDependencyError, UnsafeFileError
from nnequiv.loading._limits import (
    linked_inside,
    open_regular,
    reading,
    shown,
    tensor_nbytes,
)

#: ONNX element types NumPy lacks, widened to float32 (through ml_dtypes) to be analysed.
_WIDENED = {"bfloat16", "float8_e4m3fn", "float8_e5m2"}
#: Element types packed two to a byte.
_PACKED_4BIT = {"int4", "uint4", "float4_e2m1fn"}


def iter_onnx(path: Path, limit: int) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, array)`` of every initializer and Constant-node tensor."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise MissingDependencyError("onnx", "onnx", f"reading {path}") from exc
    label = str(path)
    with open_regular(path) as handle:
        with reading(label, "not a readable ONNX model"):
            model = onnx.load_model_from_string(handle.read())
    for name, tensor in _weight_tensors(model, label):
        yield name, _to_array(tensor, name, path, limit, onnx, numpy_helper)


def _weight_tensors(model, label: str):
    with reading(label, "not a readable ONNX model"):
        graphs = [model.graph]
        while graphs:
            graph = graphs.pop()
            for tensor in graph.initializer:
                yield tensor.name, tensor
            for node in graph.node:
                for attribute in node.attribute:
                    if node.op_type == "Constant" and attribute.name == "value":
                        yield (node.output[0] if node.output else node.name), attribute.t
                    graphs.extend(attribute.graphs)
                    if attribute.HasField("g"):
                        graphs.append(attribute.g)


def _to_array(tensor, name: str, path: Path, limit: int, onnx, numpy_helper) -> np.ndarray:
    label = str(path)
    what = f"tensor '{shown(name)}'"
    with reading(label, f"{what} has an unknown element type", (KeyError, ValueError)):
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
    dims = list(tensor.dims)
    if dtype.name in _PACKED_4BIT and all(d >= 0 for d in dims):
        stored = tensor_nbytes(label, name, [-(-math.prod(dims) // 2)], 1, limit)
    else:
        stored = tensor_nbytes(label, name, dims, dtype.itemsize, limit)
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        tensor = _with_external_data(tensor, name, path, stored, onnx)
    with reading(label, f"{what} cannot be decoded"):
        array = numpy_helper.to_array(tensor)
        if array.dtype.name in _WIDENED:
            array = array.astype(np.float32)
    return array


def _with_external_data(tensor, name: str, path: Path, stored: int, onnx):
    """A copy of ``tensor`` holding its ``stored`` external bytes as raw data."""
    what = f"{path}: tensor '{shown(name)}'"
    entries = {entry.key: entry.value for entry in tensor.external_data}
    location = entries.get("location", "")
    if not location:
        raise FormatError(f"{what} has external data without a location")
    target = linked_inside(path.parent, location)
    if target is None:
        raise UnsafeFileError(
            f"{what} names external data outside the model's directory "
            f"('{shown(location)}'); refused"
        )
    try:
        offset = int(entries.get("offset", "0"))
        length = int(entries["length"]) if "length" in entries else None
    except ValueError:
        raise FormatError(f"{what} has a non-integer external data offset or length") from None
    with open_regular(target, f"{what}: external data '{shown(location)}'") as handle:
        size = handle.seek(0, 2)
        available = size - offset if length is None else length
        if offset < 0 or available < 0 or offset + available > size:
            raise FormatError(
                f"{what}: external data [{offset}, {offset + available}) lies outside "
                f"'{shown(location)}' ({size} bytes)"
            )
        if available != stored:
            raise FormatError(
                f"{what}: external data holds {available} bytes, its dims and type need {stored}"
            )
        handle.seek(offset)
        raw = handle.read(stored)
    loaded = onnx.TensorProto()
    loaded.CopyFrom(tensor)
    loaded.raw_data = raw
    loaded.data_location = onnx.TensorProto.DEFAULT
    del loaded.external_data[:]
    return loaded
