"""Core ML models: the weights of an ML program (an ``.mlpackage`` folder, or an
``.mlmodel`` of the ML-program type) read as data, without coremltools.

An ML program's ``model.mlmodel`` is a protobuf ``Model`` whose ``mlProgram`` (field 502)
holds functions, blocks and operations. Every ``const`` operation is a tensor: its output's
name, and its ``val`` attribute's type (data type and shape) and value, either inline (floats
or raw bytes) or a reference to a blob of a weight file in the package
(``@model_path/weights/weight.bin`` and a byte offset). A weight file is a 64-byte header,
then for each blob a 64-byte record (the sentinel ``0xDEADBEEF``, the blob's data type, size
and offset) and its data. Every offset and size is checked against the file before anything
is read, and a blob must match its tensor's shape and type.

Models of the older neural-network type keep their weights inside their layers' own
messages; they, and a weight file given alone (it holds no names or shapes), are refused with
one line that says what to do. MIL weights are output-first (``out x in x kh x kw``): the
layout is ``"oihw"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnequiv.errors import FormatError
from nnequiv.loading._limits import (
    inside,
    open_regular,
    require_count,
    require_regular,
    require_within,
    shown,
)
from nnequiv.loading._protobuf import Corrupt, fields
from nnequiv.loading._source import OIHW, WeightSource

#: Largest model.mlmodel read whole (an ML program's graph, not its weights).
MAX_SPEC_BYTES = 512 << 20
_SENTINEL = 0xDEADBEEF
_BLOB_DTYPES = {1: "<f2", 2: "<f4", 3: "u1", 4: "i1"}
#: MIL DataType ids -> NumPy dtypes.
_MIL_DTYPES = {
    1: "?",
    10: "<f2",
    11: "<f4",
    12: "<f8",
    21: "i1",
    22: "<i2",
    23: "<i4",
    24: "<i8",
    31: "u1",
    32: "<u2",
    33: "<u4",
    34: "<u8",
}
WHAT_TO_DO = (
    "analyse the model it was converted from (PyTorch, ONNX, TFLite), or convert it "
    "to an ML program (.mlpackage) with coremltools"
)


@dataclass(frozen=True)
class CoreMLTensor:
    """A constant of an ML program: inline bytes, or a blob of a weight file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    inline: bytes | None = None
    blob_file: str = ""
    blob_offset: int = 0


def _one(message: bytes, number: int) -> bytes | None:
    found = None
    for field, wire, value in fields(message):
        if field == number and wire == 2:
            found = value
    return found


def _map_values(message: bytes, number: int) -> Iterator[tuple[str, bytes]]:
    """The entries of a ``map<string, Message>`` field."""
    for field, wire, entry in fields(message):
        if field == number and wire == 2:
            key = _one(entry, 1) or b""
            yield key.decode("utf-8", errors="replace"), _one(entry, 2) or b""


def _tensor_type(value: bytes) -> tuple[int, tuple[int, ...]] | None:
    value_type = _one(value, 2)
    tensor_type = _one(value_type, 1) if value_type else None
    if tensor_type is None:
        return None
    dtype, shape = 0, []
    for field, wire, item in fields(tensor_type):
        if field == 1 and wire == 0:
            dtype = item
        elif field == 3 and wire == 2:
            constant = _one(item, 1)
            if constant is None:
                return None  # an unknown dimension: not a weight
            sizes = [v for n, w, v in fields(constant) if n == 1 and w == 0]
            shape.append(sizes[-1] if sizes else 0)
    return dtype, tuple(shape)


def _constant(name: str, value: bytes) -> CoreMLTensor | None:
    typed = _tensor_type(value)
    if typed is None or typed[0] not in _MIL_DTYPES:
        return None
    dtype, shape = _MIL_DTYPES[typed[0]], typed[1]
    blob = _one(value, 5)
    if blob is not None:
        file_name = (_one(blob, 1) or b"").decode("utf-8", errors="replace")
        offsets = [v for n, w, v in fields(blob) if n == 2 and w == 0]
        return CoreMLTensor(name, dtype, shape, None, file_name, offsets[-1] if offsets else 0)
    immediate = _one(value, 3)
    tensor = _one(immediate, 1) if immediate else None
    if tensor is None:
        return None
    floats, raw = _one(tensor, 1), _one(tensor, 7)
    if floats is not None and dtype == "<f4":
        return CoreMLTensor(name, dtype, shape, _one(floats, 1) or b"")
    if raw is not None:
        return CoreMLTensor(name, dtype, shape, _one(raw, 1) or b"")
    return None


def program_constants(spec: bytes, label: str) -> list[CoreMLTensor]:
    """The constants of an ML program, in the order of its operations (blocks walked
    iteratively)."""
    try:
        program = _one(spec, 502)
        if program is None:
            kind = "a pipeline or another model type"
            if _one(spec, 500) is not None:
                kind = "the neural-network type (weights inside its layers)"
            raise FormatError(
                f"{label}: a Core ML model of {kind}, which nnequiv does not read; {WHAT_TO_DO}"
            )
        blocks = [
            block
            for _, function in _map_values(program, 2)
            for _, block in _map_values(function, 3)
        ]
        found, seen = [], 0
        while blocks:
            block = blocks.pop(0)
            for field, wire, operation in fields(block):
                if field != 3 or wire != 2:
                    continue
                seen += 1
                require_count(label, "operations", seen, "max_tensors")
                blocks += [v for n, w, v in fields(operation) if n == 4 and w == 2]
                if (_one(operation, 1) or b"") != b"const":
                    continue
                output = _one(operation, 3)
                name = (_one(output, 1) or b"").decode("utf-8", errors="replace") if output else ""
                value = dict(_map_values(operation, 5)).get("val")
                constant = _constant(name, value) if value else None
                if constant is not None:
                    found.append(constant)
    except Corrupt as exc:
        raise FormatError(f"{label}: corrupt Core ML model ({exc})") from None
    return found


def _spec_path(path: Path) -> Path:
    if path.is_dir():
        spec = path / "Data" / "com.apple.CoreML" / "model.mlmodel"
        if not spec.is_file():
            raise FormatError(
                f"{path}: a Core ML package without Data/com.apple.CoreML/model.mlmodel"
            )
        return spec
    return path


def _blob(folder: Path, tensor: CoreMLTensor, label: str, limit: int) -> np.ndarray:
    relative = tensor.blob_file.removeprefix("@model_path/")
    target = inside(folder, relative)
    what = f"{label}: tensor '{shown(tensor.name)}'"
    if target is None:
        raise FormatError(f"{what} names a weight file outside the package ('{shown(relative)}')")
    count = math.prod(tensor.shape)
    with open_regular(target, f"{what}: weight file '{shown(relative)}'") as handle:
        size = handle.seek(0, 2)
        if tensor.blob_offset + 64 > size:
            raise FormatError(f"{what} points past the end of its weight file")
        handle.seek(tensor.blob_offset)
        record = handle.read(64)
        sentinel, blob_type = (
            int.from_bytes(record[:4], "little"),
            int.from_bytes(record[4:8], "little"),
        )
        nbytes, offset = (
            int.from_bytes(record[8:16], "little"),
            int.from_bytes(record[16:24], "little"),
        )
        if sentinel != _SENTINEL:
            raise FormatError(f"{what} points at no blob of its weight file")
        if blob_type not in _BLOB_DTYPES:
            raise FormatError(f"{what} is a blob of type {blob_type}, which nnequiv does not read")
        dtype = np.dtype(_BLOB_DTYPES[blob_type])
        if nbytes != count * dtype.itemsize or offset + nbytes > size:
            raise FormatError(f"{what}: its blob does not match its shape or lies past the file")
        require_within(
            label, f"tensor '{shown(tensor.name)}'", count * max(dtype.itemsize, 4), limit
        )
        handle.seek(offset)
        raw = handle.read(nbytes)
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(tensor.shape)


def _arrays(path: Path, label: str, limit: int):
    spec_path = _spec_path(path)
    folder = spec_path.parent
    for tensor in coreml_tensors(path, label, limit):
        if tensor.inline is not None:
            dtype = np.dtype(tensor.dtype)
            count = math.prod(tensor.shape)
            if len(tensor.inline) != count * dtype.itemsize:
                raise FormatError(
                    f"{label}: tensor '{shown(tensor.name)}' holds {len(tensor.inline)} bytes, "
                    f"its shape and type need {count * dtype.itemsize}"
                )
            values = np.frombuffer(tensor.inline, dtype=dtype, count=count).reshape(tensor.shape)
        else:
            values = _blob(folder, tensor, label, limit)
        yield tensor.name, values.astype(np.float32) if values.dtype == np.float16 else values


def coreml_tensors(path: Path, label: str, limit: int) -> list[CoreMLTensor]:
    spec_path = _spec_path(path)
    size = require_regular(spec_path).st_size
    require_within(label, "Core ML model description", size, max(limit, MAX_SPEC_BYTES))
    with open_regular(spec_path) as handle:
        spec = handle.read()
    return program_constants(spec, label)


def open_coreml(path: Path, forced, limit: int) -> WeightSource:
    """The :class:`WeightSource` of a Core ML package or ``.mlmodel`` (its program read now,
    weights lazily); a weight file alone is refused with one line."""
    path = Path(path)
    label = str(path)
    if path.is_file() and path.suffix.lower() != ".mlmodel":
        raise FormatError(
            f"{label}: the weight file of a Core ML package, which holds no tensor names or "
            "shapes; give the .mlpackage folder instead"
        )
    coreml_tensors(path, label, limit)
    return WeightSource(label, forced or OIHW, lambda: _arrays(path, label, limit))
