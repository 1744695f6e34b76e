"""safetensors files and shard directories: own reader (header JSON + memory map), no
dependency.

The header is validated completely before any tensor is read: a JSON object whose entries
have a known dtype, a shape of non-negative integers, and integer data offsets inside the
data region whose length is exactly shape x dtype size, not overlapping another tensor;
``__metadata__``, if present, maps strings to strings.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnequiv.errors import FormatError, InputError, UnsafeFileError
from nnequiv.loading._dtypes import ELEMENT_TYPES, ElementType
from nnequiv.loading._limits import (
    describe,
    format_bytes,
    inside,
    open_regular,
    reading,
    shown,
    tensor_nbytes,
)

#: Largest header (and shard index) read, as in the safetensors library.
MAX_HEADER_BYTES = 100_000_000
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
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"duplicate key '{shown(duplicate)}'")
    return dict(pairs)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _entries(header, data_size: int, label: str, limit: int) -> list[_Entry]:
    if not isinstance(header, dict):
        raise FormatError(f"{label}: safetensors header is not a JSON object")
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


def iter_safetensors(paths, limit: int) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, array)`` of every tensor of the files, read through a memory map."""
    for path in paths:
        entries, start = safetensors_header(path, limit)
        if not entries:
            continue
        with open_regular(path) as handle:
            with reading(str(path), "cannot be mapped into memory", (OSError, ValueError)):
                mapped = np.memmap(handle, dtype=np.uint8, mode="r")
        for entry in entries:
            count = (entry.end - entry.begin) // entry.element.itemsize
            flat = entry.element.array(mapped, count, start + entry.begin)
            yield entry.name, flat.reshape(entry.shape)


def safetensors_shapes(paths, limit: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of every tensor, from the headers alone."""
    for path in paths:
        entries, _ = safetensors_header(path, limit)
        for entry in entries:
            yield entry.name, entry.shape


def safetensors_shards(path: Path, limit: int) -> list[Path]:
    """The shard files of a directory (from its ``*.safetensors.index.json`` when there is
    one), each a regular file inside the directory with a valid header."""
    indexes = sorted(path.glob("*.safetensors.index.json"))
    shards = _indexed_shards(indexes[0], path) if indexes else sorted(path.glob("*.safetensors"))
    if not shards:
        raise InputError(f"{path}: directory holds no safetensors weights")
    for shard in shards:
        safetensors_header(shard, limit)
    return shards


def _indexed_shards(index: Path, directory: Path) -> list[Path]:
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
        shard = inside(directory, name)
        if shard is None:
            raise UnsafeFileError(
                f"{label}: names a shard outside its directory ('{shown(name)}'); refused"
            )
        if not shard.exists():
            raise InputError(f"{label}: shard missing: '{shown(name)}'")
        shards.append(shard)
    return shards
