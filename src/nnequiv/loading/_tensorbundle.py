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

A bundle is found from a SavedModel folder (``variables/variables.index``), a TensorFlow
checkpoint folder (``<name>.index`` beside ``<name>.data-00000-of-0000N``: the checkpoint its
``checkpoint`` file names, or its only one; ``<name>`` may be empty) or an ``.index`` file.

Names lose their ``/.ATTRIBUTES/VARIABLE_VALUE`` suffix; optimizer variables (``optimizer/...``,
``.OPTIMIZER_SLOT`` slots, and TensorFlow 1's ``<variable>/Adam``-style slots) are left out as
optimizer states are in every format. Kernels are TensorFlow's: the layout is ``"hwio"``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nnequiv.errors import FormatError, InputError
from nnequiv.loading._limits import (
    TableEntry,
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
class BundleEntry(TableEntry):
    """One variable: its name, shape and the byte span of its data, its dtype id, its data
    shard, and whether it is saved in slices."""

    dtype: int
    shard: int
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
    return BundleEntry(name, tuple(shape), offset, size, dtype, shard, sliced)


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


@dataclass(frozen=True)
class BundlePrefix:
    """Where a bundle's files lie: ``folder/<stem>.index`` and ``folder/<stem>.data-*``. The
    stem may be empty (a checkpoint saved under a folder name ending in ``/`` is the files
    ``.index`` and ``.data-00000-of-00001``)."""

    folder: Path
    stem: str

    def file(self, suffix: str) -> Path:
        return self.folder / f"{self.stem}{suffix}"


#: The ``checkpoint`` file of a TensorFlow checkpoint folder, and its largest size read.
CHECKPOINT_STATE = "checkpoint"
MAX_CHECKPOINT_STATE_BYTES = 1 << 20
_CHECKPOINT_PATH = re.compile(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"\s*$', re.MULTILINE)
_DATA_SHARD = re.compile(r"^(?P<stem>.*)\.data-\d{5}-of-\d{5}$")


def checkpoint_stems(folder: Path) -> list[str]:
    """The stems of the checkpoints in a TensorFlow checkpoint folder: each ``<stem>.index``
    with a ``<stem>.data-0000k-of-0000N`` beside it, sorted (listing the folder only)."""
    try:
        with os.scandir(folder) as listing:
            names = {entry.name for entry in listing if entry.is_file()}
    except OSError:
        return []
    data = {match["stem"] for name in names if (match := _DATA_SHARD.match(name))}
    return sorted(
        name[: -len(".index")]
        for name in names
        if name.endswith(".index") and name[: -len(".index")] in data
    )


def is_checkpoint_folder(folder: Path) -> bool:
    """Whether ``folder`` is a TensorFlow checkpoint folder (a ``<stem>.index`` beside its
    ``<stem>.data-*`` shards) or a SavedModel (``saved_model.pb`` or
    ``variables/variables.index``)."""
    return (
        (folder / "saved_model.pb").is_file()
        or (folder / "variables" / "variables.index").is_file()
        or bool(checkpoint_stems(folder))
    )


def _latest_stem(folder: Path, stems: list[str]) -> str | None:
    """The stem the folder's ``checkpoint`` file names as the latest (its
    ``model_checkpoint_path``, by its last path part), where it is one of ``stems``."""
    state = folder / CHECKPOINT_STATE
    try:
        if not state.is_file() or state.stat().st_size > MAX_CHECKPOINT_STATE_BYTES:
            return None
        with open_regular(state) as handle:
            text = handle.read(MAX_CHECKPOINT_STATE_BYTES).decode("utf-8", errors="replace")
    except (OSError, InputError):
        return None
    match = _CHECKPOINT_PATH.search(text)
    if match is None:
        return None
    named = match[1].replace("\\", "/").rsplit("/", 1)[-1]
    return named if named in stems else None


def bundle_prefix(path: Path) -> BundlePrefix:
    """The prefix of a bundle from a SavedModel folder, a checkpoint folder (the checkpoint
    its ``checkpoint`` file names, or its only one) or an ``.index`` file."""
    if not path.is_dir():
        return BundlePrefix(path.parent, path.name[: -len(".index")])
    if (path / "variables" / "variables.index").is_file():
        return BundlePrefix(path / "variables", "variables")
    if (path / "saved_model.pb").is_file():
        raise InputError(f"{path}: a SavedModel folder without variables/variables.index")
    stems = checkpoint_stems(path)
    if not stems:
        raise InputError(
            f"{path}: neither a SavedModel (variables/variables.index) nor a TensorFlow "
            "checkpoint folder (<name>.index beside <name>.data-00000-of-00001)"
        )
    latest = _latest_stem(path, stems)
    if latest is not None:
        return BundlePrefix(path, latest)
    if len(stems) > 1:
        listed = ", ".join(f"{shown(stem, 40)}.index" for stem in stems[:5])
        raise InputError(
            f"{path}: holds {len(stems)} TensorFlow checkpoints ({listed}) and no checkpoint "
            "file naming the latest; give one .index file"
        )
    return BundlePrefix(path, stems[0])


def _shown_name(name: str) -> str:
    return name[: -len(_SUFFIX)] if name.endswith(_SUFFIX) else name


#: The slots TensorFlow 1 optimizers add as ``<variable>/<slot>`` (``conv/kernel/Adam``).
TF1_SLOTS = frozenset(
    "Adam Adam_1 Momentum RMSProp RMSProp_1 Adagrad Adadelta Adadelta_1 Ftrl Ftrl_1 "
    "AdagradDA AdagradDA_1 ProximalAdagrad LazyAdam LazyAdam_1".split()
)


def _is_optimizer(name: str, names: frozenset[str] = frozenset()) -> bool:
    """An optimizer variable: TF2's ``optimizer/...`` and ``.OPTIMIZER_SLOT`` slots, and a
    TF1 slot ``<variable>/<slot>`` of a variable of the bundle."""
    if name.startswith("optimizer/") or "/.OPTIMIZER_SLOT/" in name:
        return True
    variable, _, slot = name.rpartition("/")
    return slot in TF1_SLOTS and variable in names


def _items(prefix: BundlePrefix, label: str, limit: int):
    header, entries = read_index(prefix.file(".index"))
    shards = header["num_shards"]
    order = ">" if header["big_endian"] else "<"
    handles: dict[int, object] = {}
    names = frozenset(entry.name for entry in entries)
    try:
        for entry in entries:
            name = _shown_name(entry.name)
            if entry.dtype not in _DTYPES:
                continue  # strings, resources, variants: never weights
            if _is_optimizer(entry.name, names):
                yield name, Dropped(entry.shape, OPTIMIZER_STATE)
                continue
            if entry.sliced:
                raise FormatError(
                    f"{label}: variable '{shown(name)}' is partitioned (saved in slices), "
                    "which nnequiv does not read"
                )
            dtype = np.dtype(_DTYPES[entry.dtype]).newbyteorder(order)
            if entry.nbytes != math.prod(entry.shape) * dtype.itemsize:
                raise FormatError(
                    f"{label}: variable '{shown(name)}' holds {entry.nbytes} bytes, its shape "
                    f"and dtype need {math.prod(entry.shape) * dtype.itemsize}"
                )
            if not 0 <= entry.shard < shards:
                raise FormatError(f"{label}: variable '{shown(name)}' names a missing shard")
            if entry.shard not in handles:
                shard = prefix.file(f".data-{entry.shard:05d}-of-{shards:05d}")
                handles[entry.shard] = open_regular(shard, f"{label}: data shard '{shard.name}'")
            handle = handles[entry.shard]
            if entry.offset + entry.nbytes > handle.seek(0, 2):
                raise FormatError(
                    f"{label}: variable '{shown(name)}' ends past the end of its data file"
                )
            raw = read_tensor_bytes(handle, label, replace(entry, name=name), 4, limit)
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
    read_index(prefix.file(".index"))
    return WeightSource(label, forced or HWIO, lambda: _items(prefix, label, limit))
