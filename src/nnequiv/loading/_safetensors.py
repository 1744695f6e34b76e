"""safetensors files and shard directories: own reader (header JSON + memory map), no
dependency."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from nnequiv.errors import FormatError, InputError
from nnequiv.loading._source import WeightSource

_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def _safetensors_header(path: Path) -> tuple[dict, int]:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise FormatError(f"{path}: truncated safetensors file (no header)")
        (length,) = struct.unpack("<Q", raw)
        if length > size - 8:
            raise FormatError(f"{path}: truncated or corrupt safetensors header")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FormatError(f"{path}: corrupt safetensors header ({exc})") from exc
    header.pop("__metadata__", None)
    data_size = size - 8 - length
    for name, info in header.items():
        start, end = info["data_offsets"]
        if end > data_size:
            raise FormatError(
                f"{path}: truncated safetensors file (tensor '{name}' ends past "
                "the end of the file)"
            )
    return header, 8 + length


def _iter_safetensors(paths):
    for path in paths:
        header, offset = _safetensors_header(path)
        mapped = np.memmap(path, dtype=np.uint8, mode="r")
        for name, info in header.items():
            dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
            if dtype is None:
                continue  # float8 and other types have no numpy equivalent
            start, end = info["data_offsets"]
            array = mapped[offset + start : offset + end].view(dtype).reshape(info["shape"])
            if info["dtype"] == "BF16":
                array = (array.astype(np.uint32) << 16).view(np.float32)
            yield name, array


def _safetensors_shapes(paths):
    for path in paths:
        header, _ = _safetensors_header(path)
        for name, info in header.items():
            yield name, tuple(info["shape"])


def _open_safetensors_dir(path: Path, forced) -> WeightSource:
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if indexes:
        try:
            weight_map = json.loads(indexes[0].read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise FormatError(f"{indexes[0]}: corrupt safetensors index ({exc})") from exc
        shards = [path / name for name in dict.fromkeys(weight_map.values())]
        missing = [str(shard) for shard in shards if not shard.exists()]
        if missing:
            raise InputError(f"{indexes[0]}: shard missing: {missing[0]}")
    else:
        shards = sorted(path.glob("*.safetensors"))
    if not shards:
        raise InputError(f"{path}: directory holds no safetensors weights")
    for shard in shards:
        _safetensors_header(shard)
    return WeightSource(
        str(path), forced, lambda: _iter_safetensors(shards), lambda: _safetensors_shapes(shards)
    )
