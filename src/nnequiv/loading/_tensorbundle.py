"""TensorFlow SavedModel variables and checkpoints (a TensorBundle: ``variables.index`` and
``variables.data-0000k-of-0000N``), read as data without TensorFlow and without running any
graph.

The index is a sorted string table (LevelDB's format): a footer locates the index block,
whose entries locate the data blocks, whose entries map each variable's name to a
``BundleEntryProto`` (dtype, shape, shard, offset, size); the entry under the empty key is
the ``BundleHeaderProto`` (shard count, byte order). Both are decoded here by a small
protobuf reader. Every length, offset and count is checked against the file before it is
used; compressed blocks and partitioned variables are refused with one line. A variable's
bytes are read from its shard only when it is asked for, checked against the shard's size
and ``max_tensor_bytes`` first.

Names lose their ``/.ATTRIBUTES/VARIABLE_VALUE`` suffix; optimizer variables (``optimizer/...``
and ``.OPTIMIZER_SLOT`` slots) are left out as optimizer states are in every format. Kernels
are TensorFlow's: the layout is ``"hwio"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnequiv.errors import FormatError, InputError
from nnequiv.loading._limits import (
    open_regular,
    read_tensor_bytes,
    require_count,
    require_regular,
    require_within,
    shown,
)
from nnequiv.loading._protobuf import Corrupt, fields, signed, varint
from nnequiv.loading._source import HWIO, OPTIMIZER_STATE, Dropped, WeightSource

#: Last 8 bytes of a table file.
TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_BYTES = 48
#: Largest index file read whole (real ones are kilobytes to a few MiB).
MAX_INDEX_BYTES = 256 << 20
_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
#: TensorFlow DataType ids -> NumPy dtypes (bfloat16 widened below).
_DTYPES = {
    1: "f4",
    2: "f8",
    3: "i4",
    4: "u1",
    5: "i2",
    6: "i1",
    8: "c8",
    9: "i8",
    10: "?",
    14: "u2",  # bfloat16
    17: "u2",
    18: "c16",
    19: "f2",
    22: "u4",
    23: "u8",
}
_BFLOAT16, _HALF = 14, 19


@dataclass(frozen=True)
class BundleEntry:
    """One variable: its dtype id, shape, shard, and the byte span of its data."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    sliced: bool


def _entry(name: str, data: bytes) -> BundleEntry:
    dtype = shard = offset = size = 0
    shape: list[int] = []
    sliced = False
    for number, wire, value in fields(data):
        if number == 1 and wire == 0:
            dtype = value
        elif number == 2 and wire == 2:
            for dim_number, dim_wire, dim in fields(value):
                if dim_number == 2 and dim_wire == 2:
                    size_of = [v for n, w, v in fields(dim) if n == 1 and w == 0]
                    shape.append(signed(size_of[-1]) if size_of else 0)
                elif dim_number == 3 and dim_wire == 0 and dim:
                    raise Corrupt(f"variable '{shown(name)}' has an unknown rank")
        elif number == 3 and wire == 0:
            shard = value
        elif number == 4 and wire == 0:
            offset = signed(value)
        elif number == 5 and wire == 0:
            size = signed(value)
        elif number == 7:
            sliced = True
    if any(d < 0 for d in shape) or offset < 0 or size < 0:
        raise Corrupt(f"variable '{shown(name)}' has a negative size or offset")
    return BundleEntry(name, dtype, tuple(shape), shard, offset, size, sliced)


def _block(data: bytes, handle: bytes, label: str) -> bytes:
    """The contents of the block a handle (offset, size varints) points to."""
    offset, pos = varint(handle, 0, len(handle))
    size, _ = varint(handle, pos, len(handle))
    if offset + size + 5 > len(data):
        raise Corrupt("a block past the end of the index")
    if data[offset + size] != 0:
        raise FormatError(
            f"{label}: compressed TensorBundle index blocks (type {data[offset + size]}) are "
            "not read"
        )
    return data[offset : offset + size]


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """``(key, value)`` of a table block, keys rebuilt from their shared prefixes."""
    if len(block) < 4:
        raise Corrupt("a block without restarts")
    restarts = int.from_bytes(block[-4:], "little")
    end = len(block) - 4 - 4 * restarts
    if restarts < 1 or end < 0:
        raise Corrupt("a block with an invalid restart count")
    pos, key = 0, b""
    while pos < end:
        shared, pos = varint(block, pos, end)
        own, pos = varint(block, pos, end)
        length, pos = varint(block, pos, end)
        if shared > len(key) or pos + own + length > end:
            raise Corrupt("a block entry past its block")
        key = key[:shared] + block[pos : pos + own]
        pos += own
        yield key, block[pos : pos + length]
        pos += length


def read_index(index: Path) -> tuple[dict, list[BundleEntry]]:
    """The header fields (``num_shards``, ``big_endian``) and the entries of an index file."""
    label = str(index)
    size = require_regular(index).st_size
    require_within(label, "TensorBundle index", size, MAX_INDEX_BYTES)
    with open_regular(index) as handle:
        data = handle.read()
    try:
        if len(data) < _FOOTER_BYTES:
            raise Corrupt("shorter than a table footer")
        footer = data[-_FOOTER_BYTES:]
        if int.from_bytes(footer[-8:], "little") != TABLE_MAGIC:
            raise Corrupt("no table magic number")
        _, pos = varint(footer, 0, 40)  # metaindex offset
        _, pos = varint(footer, pos, 40)  # metaindex size
        index_block = _block(data, footer[pos:40], label)
        header: dict = {"num_shards": 1, "big_endian": False}
        entries: list[BundleEntry] = []
        for _, handle_bytes in _block_entries(index_block):
            for key, value in _block_entries(_block(data, handle_bytes, label)):
                if key == b"":
                    for number, wire, field in fields(value):
                        if number == 1 and wire == 0:
                            header["num_shards"] = field
                        elif number == 2 and wire == 0:
                            header["big_endian"] = field == 1
                    continue
                require_count(label, "variables", len(entries) + 1, "max_tensors")
                name = key.decode("utf-8", errors="replace")
                entries.append(_entry(name, value))
    except Corrupt as exc:
        raise FormatError(f"{label}: corrupt TensorBundle index ({exc})") from None
    return header, entries


def bundle_prefix(path: Path) -> Path:
    """The prefix of a bundle from a SavedModel folder or an ``.index`` file."""
    if path.is_dir():
        prefix = path / "variables" / "variables"
        if not prefix.with_name("variables.index").is_file():
            raise InputError(f"{path}: a SavedModel folder without variables/variables.index")
        return prefix
    return path.with_name(path.name[: -len(".index")])


def _shown_name(name: str) -> str:
    return name[: -len(_SUFFIX)] if name.endswith(_SUFFIX) else name


def _is_optimizer(name: str) -> bool:
    return name.startswith("optimizer/") or "/.OPTIMIZER_SLOT/" in name


def _items(prefix: Path, label: str, limit: int):
    header, entries = read_index(prefix.with_name(prefix.name + ".index"))
    shards = header["num_shards"]
    order = ">" if header["big_endian"] else "<"
    handles: dict[int, object] = {}
    try:
        for entry in entries:
            name = _shown_name(entry.name)
            if entry.dtype not in _DTYPES:
                continue  # strings, resources, variants: never weights
            if _is_optimizer(entry.name):
                yield name, Dropped(entry.shape, OPTIMIZER_STATE)
                continue
            if entry.sliced:
                raise FormatError(
                    f"{label}: variable '{shown(name)}' is partitioned (saved in slices), "
                    "which nnequiv does not read"
                )
            dtype = np.dtype(_DTYPES[entry.dtype]).newbyteorder(order)
            if entry.size != math.prod(entry.shape) * dtype.itemsize:
                raise FormatError(
                    f"{label}: variable '{shown(name)}' holds {entry.size} bytes, its shape "
                    f"and dtype need {math.prod(entry.shape) * dtype.itemsize}"
                )
            if not 0 <= entry.shard < shards:
                raise FormatError(f"{label}: variable '{shown(name)}' names a missing shard")
            if entry.shard not in handles:
                shard = prefix.with_name(f"{prefix.name}.data-{entry.shard:05d}-of-{shards:05d}")
                handles[entry.shard] = open_regular(shard, f"{label}: data shard '{shard.name}'")
            handle = handles[entry.shard]
            if entry.offset + entry.size > handle.seek(0, 2):
                raise FormatError(
                    f"{label}: variable '{shown(name)}' ends past the end of its data file"
                )
            raw = read_tensor_bytes(
                handle, label, name, entry.shape, entry.offset, entry.size, 4, limit
            )
            values = raw.view(dtype).reshape(entry.shape)
            if entry.dtype == _BFLOAT16:
                values = (values.astype(np.uint32) << 16).view(np.float32)
            elif entry.dtype == _HALF:
                values = values.astype(np.float32)
            yield name, values
    finally:
        for handle in handles.values():
            handle.close()


def open_tensorbundle(path: Path, forced, limit: int) -> WeightSource:
    """The :class:`WeightSource` of a SavedModel folder or a checkpoint's ``.index`` file
    (the index checked now, variables read lazily)."""
    prefix = bundle_prefix(Path(path))
    label = str(path)
    read_index(prefix.with_name(prefix.name + ".index"))
    return WeightSource(label, forced or HWIO, lambda: _items(prefix, label, limit))
