"""safetensors files and shard directories: own reader (header JSON + positioned reads), no
dependency.

The header is validated completely before any tensor is read: a JSON object whose entries
have a known dtype, a shape of non-negative integers, and integer data offsets inside the
data region whose length is exactly shape x dtype size, not overlapping another tensor;
``__metadata__``, if present, maps strings to strings.

Every tensor is first a :class:`StoredTensor`: its name, shape and dtype from the header and
its place in the file. Nothing is read until it is asked for, whole or in blocks of rows or
columns, with positioned reads into fresh buffers; no file stays memory-mapped, so memory
holds only what is being computed on. Tensors come in the model's order: the order of the
shard index where there is one, else the order of the data in each file.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnequiv.errors import FormatError, InputError, UnsafeFileError
from nnequiv.loading._dtypes import ELEMENT_TYPES, ElementType
from nnequiv.loading._limits import (
    describe,
    format_bytes,
    linked_inside,
    open_regular,
    reading,
    require_count,
    shown,
    tensor_nbytes,
)
from nnequiv.loading._source import WeightSource

#: Largest header (and shard index) read, as in the safetensors library.
MAX_HEADER_BYTES = 100_000_000
#: Columns of a tensor are read in bands of whole rows of about this many bytes.
BAND_BYTES = 4 << 20
_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E8M0": "float8_e8m0fnu",
    "C64": "complex64",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}


@dataclass(frozen=True)
class _Entry:
    name: str
    element: ElementType
    shape: tuple[int, ...]
    begin: int
    end: int


def safetensors_header(path: Path, limit: int) -> tuple[list[_Entry], int]:
    """The validated tensor entries of one file and the offset of its data region."""
    label = str(path)
    with open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise FormatError(f"{label}: truncated safetensors file (no header)")
        (length,) = struct.unpack("<Q", prefix)
        if length > size - 8:
            raise FormatError(
                f"{label}: truncated or corrupt safetensors file (header of {length} bytes "
                f"in a file of {size})"
            )
        if length > MAX_HEADER_BYTES:
            raise FormatError(
                f"{label}: safetensors header of {format_bytes(length)} is larger than "
                f"{format_bytes(MAX_HEADER_BYTES)}"
            )
        raw = handle.read(length)
    header = parse_json(raw, label, "safetensors header")
    return _entries(header, size - 8 - length, label, limit), 8 + length


def parse_json(raw: bytes, label: str, what: str):
    """JSON text from a file: strict UTF-8, no duplicate keys, nesting errors as one line."""
    with reading(label, f"{what} is not UTF-8 text", (UnicodeDecodeError,)):
        text = raw.decode("utf-8")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise FormatError(f"{label}: corrupt {what} (nested too deeply)") from None
    except ValueError as exc:
        raise FormatError(f"{label}: corrupt {what} ({describe(exc)})") from exc


def _unique_keys(pairs):
    found = dict(pairs)
    if len(found) != len(pairs):  # a duplicate: find the first, in one pass
        seen = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"duplicate key '{shown(duplicate)}'")
    return found


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _entries(header, data_size: int, label: str, limit: int) -> list[_Entry]:
    if not isinstance(header, dict):
        raise FormatError(f"{label}: safetensors header is not a JSON object")
    require_count(label, "tensors in the header", len(header), "max_tensors")
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            _check_metadata(info, label)
        else:
            entries.append(_entry(name, info, data_size, label, limit))
    occupied = sorted((e for e in entries if e.end > e.begin), key=lambda e: e.begin)
    for before, after in zip(occupied, occupied[1:]):
        if after.begin < before.end:
            raise FormatError(
                f"{label}: tensors '{shown(before.name)}' and '{shown(after.name)}' overlap "
                "in the data region"
            )
    return entries


def _check_metadata(info, label: str) -> None:
    if not isinstance(info, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in info.items()
    ):
        raise FormatError(f"{label}: safetensors '__metadata__' must map strings to strings")


def _entry(name: str, info, data_size: int, label: str, limit: int) -> _Entry:
    what = f"{label}: tensor '{shown(name)}'"
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise FormatError(f"{what} needs an object with dtype, shape and data_offsets")
    dtype = info["dtype"]
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        shown_dtype = f"'{shown(dtype, 40)}'" if isinstance(dtype, str) else type(dtype).__name__
        raise FormatError(f"{what} has an unknown dtype {shown_dtype}")
    element = ELEMENT_TYPES[_DTYPES[dtype]]
    shape = info["shape"]
    if not isinstance(shape, list):
        raise FormatError(f"{what} has a shape that is not a list")
    nbytes = tensor_nbytes(label, name, shape, element.itemsize, limit)
    offsets = info["data_offsets"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))):
        raise FormatError(f"{what} needs data_offsets of two integers")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise FormatError(f"{what} has invalid data offsets [{begin}, {end}]")
    if end > data_size:
        raise FormatError(
            f"{what} ends at byte {end}, past the end of the data region ({data_size} bytes): "
            "truncated or corrupt file"
        )
    if end - begin != nbytes:
        raise FormatError(f"{what} holds {end - begin} bytes but its shape and dtype need {nbytes}")
    return _Entry(name, element, tuple(shape), begin, end)


@dataclass(frozen=True)
class StoredTensor:
    """A tensor stored as raw little-endian bytes at an offset of a file (a safetensors
    tensor, a plain ``.npy`` array), known from the header and read only when asked for.

    Attributes
    ----------
    path : Path
        The file.
    name : str
        Tensor name.
    element : ElementType
        How its elements are stored.
    shape : tuple of int
        Tensor shape.
    offset : int
        Byte offset of its first element in the file.
    """

    path: Path
    name: str
    element: ElementType
    shape: tuple[int, ...]
    offset: int

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype the tensor decodes to (float32 for bfloat16 and float8)."""
        if self.element.widen is not None:
            return np.dtype(np.float32)
        return np.dtype(self.element.bits).newbyteorder("=")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def open(self):
        """The file, open for reading (a context manager)."""
        return open_regular(self.path)

    def read(self) -> np.ndarray:
        """The whole tensor, decoded."""
        with self.open() as handle:
            return self.read_span(handle, 0, self.size).reshape(self.shape)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self.read()
        return array if dtype is None else array.astype(dtype, copy=False)

    def read_span(self, handle, first: int, count: int) -> np.ndarray:
        """Elements ``first .. first + count - 1`` (flat, in storage order), decoded."""
        raw = np.empty(count, dtype=self.element.bits)
        self._read_into(handle, raw, first)
        return self._decode(raw)

    def read_columns(self, handle, columns: int, start: int, stop: int) -> np.ndarray:
        """Columns ``start .. stop - 1`` of the tensor seen as a ``rows x columns`` matrix
        (flat storage order), decoded: read in bands of whole rows, of which the columns are
        kept."""
        rows = self.size // columns if columns else 0
        raw = np.empty((rows, stop - start), dtype=self.element.bits)
        band = max(1, BAND_BYTES // max(columns * self.element.itemsize, 1))
        buffer = np.empty((min(band, rows), columns), dtype=self.element.bits)
        for first in range(0, rows, band):
            part = buffer[: min(band, rows - first)]
            self._read_into(handle, part.reshape(-1), first * columns)
            raw[first : first + len(part)] = part[:, start:stop]
        return self._decode(raw)

    def raw_chunks(self, handle, chunk_bytes: int) -> Iterator[bytes]:
        """The stored bytes of the tensor, in chunks of at most ``chunk_bytes``."""
        itemsize = self.element.itemsize
        step = max(1, chunk_bytes // itemsize)
        for first in range(0, self.size, step):
            raw = np.empty(min(step, self.size - first), dtype=self.element.bits)
            self._read_into(handle, raw, first)
            yield raw.tobytes()

    def _read_into(self, handle, raw: np.ndarray, first: int) -> None:
        view = memoryview(raw).cast("B")
        position = self.offset + first * self.element.itemsize
        done = 0
        while done < len(view):
            count = _read_at(handle, view[done:], position + done)
            if not count:
                raise FormatError(
                    f"{self.path}: truncated file (tensor '{shown(self.name)}' ends past the "
                    "end of the file)"
                )
            done += count

    def _decode(self, raw: np.ndarray) -> np.ndarray:
        return self.element.widen(raw) if self.element.widen is not None else raw


def _read_at(handle, view: memoryview, position: int) -> int:
    """Read into ``view`` from byte ``position`` of the file; the count read."""
    if hasattr(os, "preadv"):
        return os.preadv(handle.fileno(), [view], position)
    handle.seek(position)  # pragma: no cover - platforms without preadv
    return handle.readinto(view) or 0  # pragma: no cover


@dataclass
class StoredWeights(WeightSource):
    """A :class:`~nnequiv.loading.WeightSource` whose tensors are known from their headers
    before anything is read: ``stored()`` yields :class:`StoredTensor` descriptions in the
    model's order, so that tensors can be chosen, and large ones read in blocks, without
    decoding the rest."""

    stored: Callable[[], Iterator[StoredTensor]] | None = None


def stored_tensors(paths, limit: int, order: Sequence[str] = ()) -> list[StoredTensor]:
    """Every tensor of the files: those named in ``order`` first, in that order, then the
    others file by file in the order of their data."""
    tensors = []
    for path in paths:
        entries, start = safetensors_header(path, limit)
        for e in sorted(entries, key=lambda e: e.begin):
            tensors.append(StoredTensor(path, e.name, e.element, e.shape, start + e.begin))
    rank = {name: index for index, name in enumerate(order)}
    return sorted(tensors, key=lambda tensor: rank.get(tensor.name, len(rank)))


def open_safetensors(label: str, paths, layout, limit: int, order: Sequence[str] = ()):
    """The :class:`StoredWeights` of safetensors files (a file or the shards of one network);
    ``order`` is the tensor order of a shard index."""
    paths, order = list(paths), list(order)

    def stored() -> Iterator[StoredTensor]:
        return iter(stored_tensors(paths, limit, order))

    return StoredWeights(
        label,
        layout,
        lambda: ((tensor.name, tensor.read()) for tensor in stored()),
        lambda: ((tensor.name, tensor.shape) for tensor in stored()),
        stored=stored,
    )


def iter_safetensors(paths, limit: int) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, array)`` of every tensor of the files, in the order of their data."""
    for tensor in stored_tensors(paths, limit):
        yield tensor.name, tensor.read()


def safetensors_shapes(paths, limit: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of every tensor, from the headers alone."""
    for tensor in stored_tensors(paths, limit):
        yield tensor.name, tensor.shape


def safetensors_shards(path: Path, limit: int) -> list[Path]:
    """The shard files of a directory (from its ``*.safetensors.index.json`` when there is
    one), each a regular file inside the directory with a valid header."""
    return safetensors_directory(path, limit)[0]


def safetensors_directory(path: Path, limit: int) -> tuple[list[Path], list[str]]:
    """:func:`safetensors_shards` and the tensor order of the directory's index (empty
    without an index)."""
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if indexes:
        shards, order = _indexed_shards(indexes[0], path)
    else:
        shards, order = sorted(path.glob("*.safetensors")), []
    if not shards:
        raise InputError(f"{path}: directory holds no safetensors weights")
    for shard in shards:
        safetensors_header(shard, limit)
    return shards, order


def open_safetensors_directory(path: Path, layout, limit: int) -> StoredWeights:
    """The :class:`StoredWeights` of a directory of safetensors shards, in its index's order."""
    shards, order = safetensors_directory(path, limit)
    return open_safetensors(str(path), shards, layout, limit, order)


def _indexed_shards(index: Path, directory: Path) -> tuple[list[Path], list[str]]:
    label = str(index)
    with open_regular(index) as handle:
        raw = handle.read(MAX_HEADER_BYTES + 1)
    if len(raw) > MAX_HEADER_BYTES:
        raise FormatError(
            f"{label}: safetensors index larger than {format_bytes(MAX_HEADER_BYTES)}"
        )
    content = parse_json(raw, label, "safetensors index")
    weight_map = content.get("weight_map") if isinstance(content, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise FormatError(
            f"{label}: corrupt safetensors index (needs a 'weight_map' of file names)"
        )
    shards = []
    for name in dict.fromkeys(weight_map.values()):
        shard = linked_inside(directory, name)
        if shard is None:
            raise UnsafeFileError(
                f"{label}: names a shard outside its directory ('{shown(name)}'); refused"
            )
        if not shard.exists():
            raise InputError(f"{label}: shard missing: '{shown(name)}'")
        shards.append(shard)
    return shards, list(weight_map)
