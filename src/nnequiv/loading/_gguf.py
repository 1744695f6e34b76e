"""GGUF files (llama.cpp and its ecosystem): tensors dequantised to float32, names kept.

The header (metadata and tensor table) is read here with every length checked against the
file, so a crafted file cannot make the reader loop or allocate past it; the ``gguf`` package
supplies the block sizes of the GGML types and their dequantisation (F16, BF16, Q8_0, Q4_0,
the K-quants, ...).

GGML lists a tensor's dimensions innermost first (``ne[0]`` is the row length), so a PyTorch
``out x in`` weight is stored as ``ne = [in, out]`` and comes back here ``out x in``: the
layout is ``"oihw"``.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnequiv._optional import optional_module
from nnequiv.errors import FormatError
from nnequiv.loading._limits import (
    TableEntry,
    read_tensor_bytes,
    reading,
    require_count,
    shown,
    tensor_byte_limit,
)
from nnequiv.loading._source import OIHW, WeightSource, listed_source

GGUF_MAGIC = b"GGUF"
#: GGML keeps at most four dimensions; eight leaves room without trusting the file.
MAX_DIMS = 8
DEFAULT_ALIGNMENT = 32
#: Byte sizes of the GGUF metadata scalar types (value type id -> struct format).
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9
#: GGML types stored as plain numbers (type id -> numpy dtype); the rest are dequantised.
_PLAIN = {
    0: np.float32,
    1: np.float16,
    28: np.float64,
    24: np.int8,
    25: np.int16,
    26: np.int32,
    27: np.int64,
}


@dataclass(frozen=True)
class GGUFTensor(TableEntry):
    """One entry of the tensor table, with its GGML type."""

    ggml_type: int


def _gguf_module(path):
    optional_module("gguf.quants", "gguf", f"reading {path}")  # gguf.quants is used
    return optional_module("gguf", "gguf", f"reading {path}")


class _Cursor:
    """Reads little-endian values from a mapped file, refusing to run past its end."""

    def __init__(self, path: Path, data):
        self.path, self.data, self.pos, self.size = path, data, 0, len(data)

    def take(self, nbytes: int, what: str) -> int:
        start = self.pos
        if nbytes < 0 or start + nbytes > self.size:
            raise FormatError(f"{self.path}: truncated GGUF file ({what} runs past the end)")
        self.pos += nbytes
        return start

    def unpack(self, fmt: str, what: str):
        start = self.take(struct.calcsize("<" + fmt), what)
        return struct.unpack_from("<" + fmt, self.data, start)[0]

    def string(self, what: str) -> str:
        length = self.unpack("Q", what)
        start = self.take(length, what)
        return bytes(self.data[start : start + length]).decode("utf-8", errors="replace")

    def skip_value(self, value_type: int, key: str) -> object:
        if value_type in _SCALARS:
            return self.unpack(_SCALARS[value_type], f"metadata '{key}'")
        if value_type == _STRING:
            return self.string(f"metadata '{key}'")
        if value_type == _ARRAY:
            item_type = self.unpack("I", f"metadata '{key}'")
            count = self.unpack("Q", f"metadata '{key}'")
            if item_type in _SCALARS:
                self.take(count * struct.calcsize(_SCALARS[item_type]), f"metadata '{key}'")
            elif item_type == _STRING:
                for _ in range(count):  # each string takes >= 8 bytes: bounded by the file
                    self.take(self.unpack("Q", f"metadata '{key}'"), f"metadata '{key}'")
            else:
                raise FormatError(
                    f"{self.path}: metadata '{key}' is an array of unknown type {item_type}"
                )
            return None
        raise FormatError(f"{self.path}: metadata '{key}' has unknown type {value_type}")


def gguf_tensors(path: Path) -> list[GGUFTensor]:
    """The tensor table of a GGUF file, checked against the file's size.

    Raises
    ------
    FormatError
        Not a GGUF file, an unsupported version or byte order, or a header or tensor that
        runs past the end of the file.
    """
    gguf = _gguf_module(path)
    sizes = gguf.constants.GGML_QUANT_SIZES
    size = path.stat().st_size
    if size < 24:
        raise FormatError(f"{path}: too short for a GGUF file ({size} bytes)")
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        cursor = _Cursor(path, data)
        if bytes(data[:4]) != GGUF_MAGIC:
            raise FormatError(f"{path}: not a GGUF file (no 'GGUF' magic)")
        cursor.take(4, "magic")
        version = cursor.unpack("I", "version")
        if version not in (2, 3):
            order = " (a big-endian file?)" if version & 0xFFFF == 0 else ""
            raise FormatError(f"{path}: GGUF version {version} is not supported{order}")
        n_tensors = cursor.unpack("Q", "tensor count")
        n_keys = cursor.unpack("Q", "metadata count")
        if n_tensors > size // 24 or n_keys > size // 12:
            raise FormatError(f"{path}: corrupt GGUF header (counts larger than the file)")
        require_count(str(path), "tensors", n_tensors, "max_tensors")
        require_count(str(path), "metadata keys", n_keys, "max_tensors")
        alignment = DEFAULT_ALIGNMENT
        for _ in range(n_keys):
            key = cursor.string("metadata key")
            value = cursor.skip_value(cursor.unpack("I", f"metadata '{shown(key)}'"), shown(key))
            if key == "general.alignment":
                alignment = value
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise FormatError(f"{path}: GGUF alignment {alignment!r} is not a power of two")
        table = [_tensor_entry(cursor, sizes) for _ in range(n_tensors)]
        data_start = -(-cursor.pos // alignment) * alignment
    tensors = []
    for name, shape, ggml_type, offset, nbytes in table:
        if data_start + offset + nbytes > size:
            raise FormatError(
                f"{path}: truncated GGUF file (tensor '{shown(name)}' ends past the end of the "
                "file)"
            )
        tensors.append(GGUFTensor(name, shape, data_start + offset, nbytes, ggml_type))
    return tensors


def _tensor_entry(cursor: _Cursor, sizes) -> tuple:
    name = cursor.string("tensor name")
    what = f"tensor '{shown(name)}'"  # safe for a one-line message
    n_dims = cursor.unpack("I", what)
    if n_dims > MAX_DIMS:
        raise FormatError(f"{cursor.path}: {what} has {n_dims} dimensions")
    dims = [cursor.unpack("Q", what) for _ in range(n_dims)]
    ggml_type = cursor.unpack("I", what)
    offset = cursor.unpack("Q", what)
    block = _block(cursor.path, shown(name), ggml_type, sizes)
    block_size, type_size = block
    elements = int(np.prod(dims, dtype=object)) if dims else 1
    if dims and dims[0] % block_size:
        raise FormatError(
            f"{cursor.path}: {what} has rows of {dims[0]} values, not a multiple of "
            f"its quantisation block of {block_size}"
        )
    return (
        name,
        tuple(int(d) for d in reversed(dims)),
        ggml_type,
        offset,
        elements // block_size * type_size,
    )


def _block(path, name, ggml_type, sizes) -> tuple[int, int]:
    for qtype, block in sizes.items():
        if int(qtype) == ggml_type:
            return block
    raise FormatError(f"{path}: tensor '{name}' has unknown GGML type {ggml_type}")


def _decoded_itemsize(tensor: GGUFTensor) -> int:
    """Bytes a value of the decoded array: float32 for every float and quantised type."""
    dtype = np.dtype(_PLAIN.get(tensor.ggml_type, np.float32))
    return 4 if dtype == np.float16 else dtype.itemsize


def _decode(path: Path, tensor: GGUFTensor, raw: np.ndarray) -> np.ndarray:
    with reading(str(path), f"tensor '{shown(tensor.name)}' cannot be decoded"):
        return _decoded(path, tensor, raw)


def _decoded(path: Path, tensor: GGUFTensor, raw: np.ndarray) -> np.ndarray:
    if tensor.ggml_type in _PLAIN:
        array = raw.view(_PLAIN[tensor.ggml_type]).reshape(tensor.shape)
        return array.astype(np.float32) if array.dtype == np.float16 else array
    gguf = _gguf_module(path)
    qtype = gguf.constants.GGMLQuantizationType(tensor.ggml_type)
    rows = tensor.shape[:-1] if tensor.shape else ()
    try:
        packed = raw.reshape(*rows, -1) if rows else raw
        return gguf.quants.dequantize(packed, qtype).reshape(tensor.shape)
    except NotImplementedError as exc:
        raise FormatError(
            f"{path}: tensor '{shown(tensor.name)}' is {qtype.name}, a GGML type the gguf package "
            "cannot dequantise"
        ) from exc


def iter_gguf(path: Path, max_tensor_bytes: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, array)`` of every tensor, float types as float32, one tensor read at a time.

    Raises
    ------
    FormatError
        A tensor larger than ``max_tensor_bytes`` once decoded, or of a type that cannot be
        dequantised.
    """
    return iter_tensors(path, gguf_tensors(path), max_tensor_bytes)


def iter_tensors(
    path: Path, tensors: list[GGUFTensor], max_tensor_bytes: int | None = None
) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, array)`` of the listed tensors of a GGUF (or legacy GGML) file, one read
    at a time, dequantised."""
    limit = tensor_byte_limit(max_tensor_bytes)
    with open(path, "rb") as handle:
        for tensor in tensors:
            raw = read_tensor_bytes(handle, path, tensor, _decoded_itemsize(tensor), limit)
            yield tensor.name, _decode(path, tensor, raw)


def gguf_shapes(path: Path) -> Iterator[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of every tensor from the header alone."""
    for tensor in gguf_tensors(path):
        yield tensor.name, tensor.shape


def open_gguf(path: Path, forced=None, *, max_tensor_bytes: int | None = None) -> WeightSource:
    """The :class:`WeightSource` of a GGUF file (header checked now, tensors read lazily)."""
    path = Path(path)
    listed = [(tensor.name, tensor.shape) for tensor in gguf_tensors(path)]
    return listed_source(path, forced or OIHW, listed, lambda: iter_gguf(path, max_tensor_bytes))
