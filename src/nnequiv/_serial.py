"""How analyses and summaries are stored: the bytes of an analysis cache entry and the blobs
of a fingerprint index row, written and read back with every field checked.

An analysis is one ``.npz`` file (arrays, no pickle) with its metadata as a JSON string
inside it (:func:`analysis_to_bytes`, :func:`analysis_from_bytes`); a summary is a row of
little-endian arrays (:func:`summary_blobs`, :func:`summary_from_blobs`). Both are untrusted
on read: shapes, dtypes, finite values, layer orders and stream keys, and the settings are
checked, and a failed check is an :class:`Invalid` naming what failed. Both
:mod:`nnequiv.cache` and :mod:`nnequiv.index` read and write through this module.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import tokenize
import zipfile
from dataclasses import fields
from pathlib import Path

import numpy as np

from nnequiv._version import __version__
from nnequiv.analysis import Analysis, LayerRecord
from nnequiv.csd import DecayFit, log_grid
from nnequiv.distances import Summary
from nnequiv.errors import FormatError
from nnequiv.layers import SkippedTensor
from nnequiv.settings import Settings

__all__ = [
    "ENTRY_FORMAT",
    "Invalid",
    "require",
    "write_atomic",
    "analysis_to_bytes",
    "analysis_from_bytes",
    "stored_settings",
    "blob_array",
    "summary_blobs",
    "summary_from_blobs",
]

#: Version of the cache entry layout; part of every cache key.
ENTRY_FORMAT = "nnequiv-analysis-1"
#: The arrays of an entry, besides its JSON metadata.
ARRAYS = ("edges", "p_net", "p_circ", "csd", "layer_points")
#: An entry larger than this is not read (the largest real one is a few hundred KiB).
MAX_ENTRY_BYTES = 256 * 2**20


class Invalid(Exception):
    """Stored data that fails a check."""


def require(condition: bool, reason: str) -> None:
    """Raise :class:`Invalid` with ``reason`` unless ``condition`` holds."""
    if not condition:
        raise Invalid(reason)


# ---- analyses (the entries of the analysis cache) --------------------------------------


def analysis_to_bytes(analysis) -> bytes:
    """An analysis as the bytes of an ``.npz`` entry (arrays and a JSON string)."""
    meta = analysis.to_dict(curves=False)
    meta["format"] = ENTRY_FORMAT
    buffer = io.BytesIO()
    arrays = {name: np.ascontiguousarray(getattr(analysis, name), dtype=float) for name in ARRAYS}
    np.savez(buffer, meta=np.array(json.dumps(meta, allow_nan=True)), **arrays)
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place, so that a
    reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


#: What decoding a damaged entry raises (numpy parses an array's header with the tokenizer,
#: which raises TokenError or SyntaxError on a mangled one).
_DAMAGED = (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, MemoryError,
            tokenize.TokenError, SyntaxError)  # fmt: skip


def analysis_from_bytes(data: bytes, settings: Settings | None = None, label: str = "<bytes>"):
    """The analysis in the bytes of an entry (see :func:`nnequiv.cache.load_analysis`)."""
    try:
        return _decode(data, settings)
    except Invalid as exc:
        raise FormatError(f"{label}: not a valid stored analysis: {exc}") from None
    except RecursionError:
        raise FormatError(f"{label}: not a valid stored analysis: nested too deeply") from None
    except _DAMAGED as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise FormatError(f"{label}: not a valid stored analysis: {reason}") from None


def _read_npz(data: bytes) -> tuple[dict, dict]:
    """The JSON metadata and the float arrays of an entry, sizes checked before reading."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {info.filename: info for info in archive.infolist()}
        expected = {f"{name}.npy" for name in ("meta", *ARRAYS)}
        require(set(members) == expected, "unexpected members")
        require(
            all(info.file_size <= MAX_ENTRY_BYTES for info in members.values()), "member too large"
        )
    with np.load(io.BytesIO(data), allow_pickle=False) as stored:
        meta_array = stored["meta"]
        require(meta_array.dtype.kind == "U" and meta_array.ndim == 0, "metadata is not text")
        arrays = {name: stored[name] for name in ARRAYS}
    meta = json.loads(str(meta_array[()]))
    require(isinstance(meta, dict), "metadata is not an object")
    for name, array in arrays.items():
        require(array.dtype == np.float64, f"{name} is not float64")
        require(bool(np.isfinite(array).all()), f"{name} holds NaN or Inf")
    return meta, arrays


def _as_int(value, name: str, minimum: int = 0) -> int:
    require(isinstance(value, int) and not isinstance(value, bool), f"{name} is not an integer")
    require(value >= minimum, f"{name} is below {minimum}")
    return value


def _as_float(value, name: str) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    require(ok, f"{name} is not a number")
    return float(value)


def _as_str(value, name: str) -> str:
    require(isinstance(value, str), f"{name} is not text")
    return value


def _as_ints(value, name: str, length: int | None = None) -> tuple[int, ...]:
    require(isinstance(value, list), f"{name} is not a list")
    require(length is None or len(value) == length, f"{name} has the wrong length")
    return tuple(_as_int(v, name) for v in value)


def _as_floats(value, name: str) -> tuple[float, ...]:
    require(isinstance(value, list), f"{name} is not a list")
    return tuple(_as_float(v, name) for v in value)


def _layer_record(item):
    require(isinstance(item, dict), "a layer is not an object")
    names = [f.name for f in fields(LayerRecord)]
    require(sorted(item) == sorted(names), "a layer has unexpected fields")
    record = LayerRecord(
        _as_str(item["name"], "layer name"),
        _as_ints(item["shape"], "layer shape"),
        _as_ints(item["matrix_shape"], "matrix shape", 2),
        _as_int(item["order"], "order", 1),
        _as_int(item["n_eigenvalues"], "n_eigenvalues", 1),
        _as_int(item["n_dropped"], "n_dropped"),
        _as_str(item["method"], "method"),
        _as_str(item["canonical"], "canonical"),
        _as_ints(item["stream"], "stream", 2),
        _as_float(item["total_variation"], "total_variation"),
        _as_float(item["alpha"], "alpha"),
        _as_floats(item["point"], "layer point"),
    )
    require(min(record.matrix_shape) == record.order, "order is not min(N, M)")
    require(record.n_eigenvalues + record.n_dropped == record.order, "eigenvalue counts")
    require(record.stream[0] == record.order, "stream key does not start with the order")
    return record


def _decay(item):
    require(isinstance(item, dict), "decay is not an object")
    names = [f.name for f in fields(DecayFit)]
    require(sorted(item) == sorted(names), "decay has unexpected fields")
    values = {
        name: _as_float(item[name], name) for name in names if name not in ("n_points", "interval")
    }
    interval = item["interval"]
    require(isinstance(interval, list) and len(interval) == 2, "decay interval")
    return DecayFit(
        n_points=_as_int(item["n_points"], "n_points"),
        interval=(_as_float(interval[0], "interval"), _as_float(interval[1], "interval")),
        **values,
    )


def _skipped(item):
    require(isinstance(item, dict) and sorted(item) == ["name", "reason", "shape"], "skipped")
    return SkippedTensor(
        _as_str(item["name"], "skipped name"),
        _as_ints(item["shape"], "skipped shape"),
        _as_str(item["reason"], "skipped reason"),
    )


def stored_settings(item) -> Settings:
    """The :class:`Settings` of a stored analysis or index, every field present."""
    require(isinstance(item, dict), "settings are not an object")
    require(sorted(item) == sorted(f.name for f in fields(Settings)), "unexpected settings")
    return Settings(**item)


def _decode(data: bytes, settings: Settings | None):
    meta, arrays = _read_npz(data)
    require(meta.get("format") == ENTRY_FORMAT, "unknown entry format")
    require(meta.get("version") == __version__, "made by another nnequiv version")
    stored = stored_settings(meta.get("settings"))
    if settings is not None:
        differing = stored.differences(settings)
        require(not differing, f"made with other settings ({', '.join(differing)})")
    layers_meta = meta.get("layers")
    require(isinstance(layers_meta, list) and len(layers_meta) > 0, "no layers")
    layers = [_layer_record(item) for item in layers_meta]
    require(meta.get("n_layers") == len(layers), "layer count")
    require(all(len(layer.point) == len(stored.locations) for layer in layers), "layer points")
    path = meta.get("path")
    require(path is None or isinstance(path, str), "path is not a string")
    skipped_meta = meta.get("skipped")
    require(isinstance(skipped_meta, list), "skipped is not a list")
    bins, count = stored.grid[2], stored.realizations
    shapes = {
        "edges": (bins + 1,),
        "p_net": (bins,),
        "p_circ": (bins,),
        "csd": (count, bins),
        "layer_points": (count, len(layers), len(stored.locations)),
    }
    for name, shape in shapes.items():
        require(arrays[name].shape == shape, f"{name} has shape {arrays[name].shape}")
    require(np.array_equal(arrays["edges"], log_grid(*stored.grid)), "edges are not the grid")
    tail_start = _as_float(meta.get("tail_start"), "tail_start")
    conjugacy = _as_float(meta.get("conjugacy"), "conjugacy")
    require(math.isfinite(tail_start) and math.isfinite(conjugacy), "tail_start, conjugacy")
    return Analysis(
        source=_as_str(meta.get("source"), "source"),
        settings=stored,
        layers=layers,
        edges=arrays["edges"],
        p_net=arrays["p_net"],
        p_circ=arrays["p_circ"],
        csd=arrays["csd"],
        decay=_decay(meta.get("decay")),
        tail_start=tail_start,
        conjugacy=conjugacy,
        layer_points=arrays["layer_points"],
        layout=_as_str(meta.get("layout"), "layout"),
        skipped=[_skipped(item) for item in skipped_meta],
        version=__version__,
        path=path,
    )


# ---- summaries (the rows of a fingerprint index) ----------------------------------------


def blob_array(blob, dtype, shape: tuple, name: str) -> np.ndarray:
    """The array of ``shape`` in ``blob``, which must hold exactly its bytes."""
    require(isinstance(blob, bytes), f"{name} is not a blob")
    size = math.prod(shape) * np.dtype(dtype).itemsize
    require(len(blob) == size, f"{name} holds {len(blob)} bytes, expected {size}")
    return np.frombuffer(blob, dtype=dtype).reshape(shape)


def summary_blobs(summary: Summary) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """The orders, stream keys, layer points, structure and pooled CSD of a summary as
    little-endian blobs (int64, int64, float64, float64, float64)."""
    return (
        np.ascontiguousarray(summary.orders, dtype="<i8").tobytes(),
        np.ascontiguousarray(summary.streams, dtype="<i8").tobytes(),
        np.ascontiguousarray(summary.layer_points, dtype="<f8").tobytes(),
        np.ascontiguousarray(summary.structure, dtype="<f8").tobytes(),
        np.ascontiguousarray(summary.csd, dtype="<f8").tobytes(),
    )


def summary_from_blobs(
    label: str,
    settings: Settings,
    layers: int,
    blobs: tuple,
    *,
    path: str | None = None,
    index: str | None = None,
) -> Summary:
    """The :class:`Summary` that :func:`summary_blobs` wrote, every array checked (sizes,
    orders >= 1, stream keys that start with the order, finite values); the pooled CSD
    blob may be None (not read)."""
    orders, streams, points, structure, csd = blobs
    count, bins = settings.realizations, settings.grid[2]
    orders = blob_array(orders, "<i8", (layers,), "orders")
    streams = blob_array(streams, "<i8", (layers, 2), "streams")
    points = blob_array(points, "<f8", (count, layers, len(settings.locations)), "points")
    csd = None if csd is None else blob_array(csd, "<f8", (count, bins), "csd")
    structure = blob_array(structure, "<f8", (layers, 3), "structure")
    require(bool((orders >= 1).all()), f"{label}: an order below 1")
    require(np.array_equal(streams[:, 0], orders), f"{label}: stream keys do not match orders")
    require(bool((streams[:, 1] >= 0).all()), f"{label}: a negative stream rank")
    finite = np.isfinite(points).all() and np.isfinite(structure).all()
    finite = finite and (csd is None or np.isfinite(csd).all())
    require(bool(finite), f"{label}: NaN or Inf")
    return Summary(
        label, settings, points, orders, streams, csd, path, structure=structure, index=index
    )
