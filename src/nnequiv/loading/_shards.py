"""One network in several files: a ``*.index.json`` with its shards, or a complete
``name-0000k-of-0000N.ext`` set without an index (safetensors, PyTorch bins, GGUF splits).

An index is untrusted input: its size is bounded, its ``weight_map`` must map tensor names to
plain file names in the index's own folder (no ``..``, no absolute paths), and every tensor it
lists must be present in its shard.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nnequiv.errors import FormatError, InputError, UnsafeFileError
from nnequiv.loading._limits import (
    linked_inside,
    open_regular,
    require_count,
    shown,
    tensor_byte_limit,
)
from nnequiv.loading._safetensors import parse_json

#: Largest index file read (real ones are a few hundred KiB, even for 400-billion-parameter
#: models).
MAX_INDEX_BYTES = 64 << 20
#: ``model-00001-of-00004.safetensors``: stem, shard number, shard count, extension.
SHARD_NAME = re.compile(
    r"^(?P<stem>.+)-(?P<part>\d+)-of-(?P<count>\d+)\.(?P<ext>safetensors|bin|pt|pth|gguf)$",
    re.IGNORECASE,
)
SHARD_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".gguf"}


@dataclass(frozen=True)
class ShardSet:
    """The shards of one network that has no index: ``paths`` in shard order, ``count`` the
    number the names announce (``-of-0000N``)."""

    paths: tuple[str, ...]
    count: int

    @property
    def label(self) -> str:
        """``folder/stem-*-of-0000N.ext``: the set as one name."""
        first = Path(self.paths[0])
        match = SHARD_NAME.match(first.name)
        if match is None:  # pragma: no cover - ShardSets are built from matching names
            return str(first)
        name = f"{match['stem']}-*-of-{match['count']}.{match['ext']}"
        return str(first.with_name(name))


def is_index_path(path) -> bool:
    """True for a ``*.index.json`` file name (``model.safetensors.index.json``,
    ``pytorch_model.bin.index.json``)."""
    return Path(path).name.lower().endswith(".index.json")


def index_shards(index: Path) -> tuple[list[Path], dict[Path, list[str]]]:
    """The shard files an index names, in order of first mention, and the tensors of each.

    Raises
    ------
    FormatError
        Oversized, non-JSON or malformed index, a shard name that leaves the folder, or one of
        a format nnequiv does not read in shards.
    InputError
        A shard named by the index is missing.
    """
    return _by_shard(index_weight_map(index))


def _by_shard(weight_map: dict[str, Path]) -> tuple[list[Path], dict[Path, list[str]]]:
    tensors: dict[Path, list[str]] = {}
    for name, path in weight_map.items():
        tensors.setdefault(path, []).append(name)
    return list(tensors), tensors


def index_weight_map(index: Path) -> dict[str, Path]:
    """Every tensor an index lists, in the index's order, with the shard that holds it
    (checked as :func:`index_shards` says)."""
    size = index.stat().st_size
    if size > MAX_INDEX_BYTES:
        raise FormatError(
            f"{index}: index file is {size} bytes, more than the {MAX_INDEX_BYTES} an index "
            "can reasonably hold"
        )
    with open_regular(index) as handle:
        content = parse_json(handle.read(MAX_INDEX_BYTES), str(index), "index")
    weight_map = content.get("weight_map") if isinstance(content, dict) else None
    if weight_map is None:
        raise FormatError(f"{index}: index has no 'weight_map' of tensor names")
    if not isinstance(weight_map, dict) or not weight_map:
        raise FormatError(f"{index}: 'weight_map' is not a non-empty mapping of tensor names")
    require_count(str(index), "tensors in 'weight_map'", len(weight_map), "max_tensors")
    located: dict[str, Path] = {}
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not _plain_file_name(shard):
            shard_text = shown(shard, 60) if isinstance(shard, str) else type(shard).__name__
            raise FormatError(
                f"{index}: tensor '{shown(name)}' maps to '{shard_text}', not a file name in "
                "the index's folder"
            )
        path = linked_inside(index.parent, shard)
        if path is None:  # a link out of the folder
            raise UnsafeFileError(
                f"{index}: names a shard outside its directory ('{shown(shard)}'); refused"
            )
        if path.suffix.lower() not in SHARD_SUFFIXES:
            raise FormatError(
                f"{index}: shard '{shown(shard)}' is not a safetensors or PyTorch file"
            )
        located[str(name)] = path
    suffixes = {_family(path) for path in located.values()}
    if len(suffixes) > 1:
        raise FormatError(f"{index}: shards mix formats ({', '.join(sorted(suffixes))})")
    missing = [path for path in dict.fromkeys(located.values()) if not path.is_file()]
    if missing:
        raise InputError(f"{index}: shard missing: {shown(missing[0].name)}")
    return located


def _plain_file_name(name: str) -> bool:
    return (
        bool(name)
        and name not in {".", ".."}
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
    )


def _family(path: Path) -> str:
    suffix = path.suffix.lower()
    return "PyTorch" if suffix in {".bin", ".pt", ".pth"} else suffix[1:]


def shard_set_of(paths) -> ShardSet:
    """The :class:`ShardSet` of shard files that belong together (same folder, stem, count and
    extension). Whether the set is complete is checked when it is opened, so that an incomplete
    download is still found and then refused in one line.

    Raises
    ------
    FormatError
        The names do not form one set (other sets, repeated or out-of-range numbers).
    """
    paths = [Path(p) for p in paths]
    matches = [SHARD_NAME.match(p.name) for p in paths]
    if not paths or any(m is None for m in matches):
        raise FormatError(
            f"{paths[0] if paths else '<none>'}: not a set of 'name-0000k-of-0000N' shards"
        )
    keys = {
        (p.parent, m["stem"], int(m["count"]), m["ext"].lower()) for p, m in zip(paths, matches)
    }
    if len(keys) > 1:
        raise FormatError(f"{paths[0]}: shards of different sets given as one network")
    count = next(iter(keys))[2]
    numbered = sorted((int(m["part"]), str(p)) for p, m in zip(paths, matches))
    numbers = [number for number, _ in numbered]
    if len(set(numbers)) != len(numbers) or not 1 <= numbers[0] <= numbers[-1] <= count:
        raise FormatError(f"{paths[0]}: shard numbers {numbers} do not fit '-of-{count}'")
    return ShardSet(tuple(path for _, path in numbered), count)


def missing_shards(shards: ShardSet) -> list[int]:
    """Shard numbers 1..N that the set lacks (an incomplete download)."""
    have = {int(SHARD_NAME.match(Path(p).name)["part"]) for p in shards.paths}
    return [k for k in range(1, shards.count + 1) if k not in have]


def open_index(index: Path, forced, max_tensor_bytes: int | None = None):
    """The :class:`WeightSource` of an index and its shards (safetensors or PyTorch bins);
    safetensors tensors come in the index's order."""
    weight_map = index_weight_map(index)
    shards, tensors = _by_shard(weight_map)
    return _open_parts(index, shards, tensors, forced, max_tensor_bytes, list(weight_map))


def open_shard_set(shards: ShardSet, forced, max_tensor_bytes: int | None = None):
    """The :class:`WeightSource` of a complete shard set without an index."""
    lacking = missing_shards(shards)
    if lacking:
        raise InputError(
            f"{shards.label}: shard {lacking[0]} of {shards.count} is missing "
            f"({len(shards.paths)} of {shards.count} present)"
        )
    paths = [Path(p) for p in shards.paths]
    return _open_parts(shards.label, paths, None, forced, max_tensor_bytes)


def _open_parts(label, shards: list[Path], listed, forced, max_tensor_bytes, order=()):
    from nnequiv.loading._source import OUT_FIRST, WeightSource

    limit = tensor_byte_limit(max_tensor_bytes)
    suffix = shards[0].suffix.lower()
    if suffix == ".safetensors":
        from nnequiv.loading._safetensors import open_safetensors, safetensors_header

        for shard in shards:
            entries, _ = safetensors_header(shard, limit)
            present = {entry.name for entry in entries}
            _check_listed(label, shard, (listed or {}).get(shard, ()), present)
        return open_safetensors(str(label), shards, forced, limit, order)
    if suffix == ".gguf":
        from nnequiv.loading._gguf import gguf_shapes, gguf_tensors, iter_gguf

        for shard in shards:
            gguf_tensors(shard)  # every header checked now
        return WeightSource(
            str(label),
            forced or OUT_FIRST,
            lambda: (item for shard in shards for item in iter_gguf(shard, max_tensor_bytes)),
            lambda: (item for shard in shards for item in gguf_shapes(shard)),
        )
    return WeightSource(
        str(label), forced or OUT_FIRST, lambda: _iter_torch_shards(label, shards, listed, limit)
    )


def _iter_torch_shards(label, shards: list[Path], listed, limit) -> Iterator[tuple[str, object]]:
    from nnequiv.loading._pytorch import open_torch

    for shard in shards:
        torch_file = open_torch(shard, limit)
        _check_listed(label, shard, (listed or {}).get(shard, ()), torch_file.refs)
        yield from torch_file.tensors()


def _check_listed(label, shard: Path, names, present) -> None:
    for name in names:
        if name not in present:
            raise FormatError(
                f"{label}: tensor '{name}' is listed in the index but missing from {shard.name}"
            )
