"""Whole analyses stored once and reused: an on-disk cache keyed by content.

An entry is one ``.npz`` file (arrays, no pickle) with the analysis's metadata as a JSON
string inside it. Its key is a BLAKE2b hash of the source's content (the bytes of the file,
or of every file under a directory; the tensors of an in-memory network), the analysis
settings, the loading and connectome options and the nnequiv version, so a copied or renamed
file hits the same entry and any change of content or setting misses it. Writes are atomic
(a temporary file renamed into place), so concurrent processes never read half an entry.
Entries are untrusted on read: every field is checked (shapes, dtypes, finite values, the
settings asked for), and an entry that fails is recomputed and rewritten.

Where the cache lives (``cache_dir``): None for the default, ``$NNEQUIV_CACHE_DIR`` when set
(the empty string turns the cache off) or else the platform's user cache directory
(``platformdirs.user_cache_dir("nnequiv")``); False for no cache; a path for that directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
import zipfile
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from nnequiv._version import __version__
from nnequiv.errors import FormatError, UnsafeFileError
from nnequiv.settings import ConnectomeOptions, LoadOptions, Settings, split_options

__all__ = [
    "CACHE_ENV",
    "cache_directory",
    "lookup",
    "store",
    "analysis_key",
    "content_hash",
    "save_analysis",
    "load_analysis",
    "analysis_to_bytes",
    "analysis_from_bytes",
]

#: Environment variable naming the cache directory ("" turns the cache off).
CACHE_ENV = "NNEQUIV_CACHE_DIR"
#: Version of the entry layout; part of every key.
ENTRY_FORMAT = "nnequiv-analysis-1"
#: The arrays of an entry, besides its JSON metadata.
ARRAYS = ("edges", "p_net", "p_circ", "csd", "layer_points")
#: An entry larger than this is not read (the largest real one is a few hundred KiB).
MAX_ENTRY_BYTES = 256 * 2**20
_CHUNK = 2**20
_FILE_DIGESTS: dict = {}
_CODE_DIGEST: str | None = None
_MAX_REMEMBERED = 100_000


def cache_directory(cache_dir=None) -> Path | None:
    """The cache directory that ``cache_dir`` selects, or None for no cache.

    Parameters
    ----------
    cache_dir : path, None or False
        A directory; None for the default (``$NNEQUIV_CACHE_DIR`` when set, the empty
        string meaning no cache, else ``platformdirs.user_cache_dir("nnequiv")``); False for
        no cache.
    """
    if cache_dir is False:
        return None
    if cache_dir is None or cache_dir is True:
        configured = os.environ.get(CACHE_ENV)
        if configured is not None:
            return Path(configured).expanduser() if configured else None
        import platformdirs

        return Path(platformdirs.user_cache_dir("nnequiv"))
    return Path(os.fspath(cache_dir)).expanduser()


# ---- keys ------------------------------------------------------------------------------


def _file_digest(path: Path) -> bytes:
    """BLAKE2b of a file's bytes, remembered in this process while its size, modification
    and change times and inode stay the same. Only a regular file is opened (a FIFO or device is
    refused before it is)."""
    from nnequiv.loading._limits import open_regular, require_regular

    status = require_regular(path)
    times = (status.st_mtime_ns, status.st_ctime_ns)
    key = (str(path.resolve()), status.st_size, *times, status.st_ino)
    if key not in _FILE_DIGESTS:
        digest = hashlib.blake2b(digest_size=32)
        with open_regular(path) as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
        if len(_FILE_DIGESTS) >= _MAX_REMEMBERED:
            _FILE_DIGESTS.clear()
        _FILE_DIGESTS[key] = digest.digest()
    return _FILE_DIGESTS[key]


def _hash_file(path: Path, digest) -> None:
    digest.update(_file_digest(path))


def _hash_named(name: str, path: Path, digest) -> None:
    encoded = name.encode("utf-8", "surrogateescape")
    digest.update(len(encoded).to_bytes(8, "little") + encoded)
    _hash_file(path, digest)


def _hash_tree(path: Path, digest) -> None:
    """Names and bytes of every regular file under a directory, in sorted order (symbolic
    links to folders are not followed)."""
    files, folders = [], [path]
    while folders:  # a loop, not a recursion; links to folders are not followed
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
                elif entry.is_file():
                    files.append(Path(entry.path))
    for file in sorted(files):
        _hash_named(file.relative_to(path).as_posix(), file, digest)


def read_files(path: Path) -> list[Path]:
    """Every file a reader reads for the network at ``path`` besides ``path`` itself: the
    shards a ``*.index.json`` names, the external data files of an ONNX model.

    Raises
    ------
    NNEquivError
        The index or model cannot be read (the analysis then gives its error).
    """
    from nnequiv.loading._shards import index_shards, is_index_path

    if is_index_path(path):
        return list(index_shards(path)[0])
    if path.suffix.lower() == ".onnx":
        return _onnx_external_files(path)
    return []


def _onnx_external_files(path: Path) -> list[Path]:
    """The external data files an ONNX model names (inside its folder; the reader refuses
    the others), parsed as the reader parses it. One that is a link to a file outside the
    folder is not opened here: the model is then not cached."""
    try:
        import onnx
    except ImportError:
        return []  # the reader names the missing package
    from nnequiv.loading._limits import inside, open_regular, reading
    from nnequiv.loading._onnx import _weight_tensors

    with open_regular(path) as handle, reading(str(path), "not a readable ONNX model"):
        model = onnx.load_model_from_string(handle.read())
    files = {}
    folder = os.path.realpath(path.parent)
    for _, tensor in _weight_tensors(model, str(path)):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {entry.key: entry.value for entry in tensor.external_data}.get("location")
        target = inside(path.parent, location or "")
        if target is None:
            continue  # the reader refuses it
        resolved = os.path.realpath(target)
        if not resolved.startswith(folder.rstrip(os.sep) + os.sep):
            raise UnsafeFileError(f"{path}: external data links outside the model's folder")
        files.setdefault(resolved, target)
    return list(files.values())


def _hash_tensors(weights, digest) -> None:
    for name, array in weights.tensors():
        array = np.ascontiguousarray(array)
        header = json.dumps([name, array.dtype.str, list(array.shape)]).encode()
        digest.update(len(header).to_bytes(8, "little") + header)
        digest.update(memoryview(array).cast("B") if array.size else b"")


def _hash_source_files(main: Path, others, digest) -> None:
    """The main file's bytes, then each other file's name (relative to the main file's
    folder) and bytes."""
    _hash_file(main, digest)
    for other in others:
        _hash_named(os.path.relpath(other, main.parent), Path(other), digest)


def content_hash(source, load: LoadOptions, connectome: ConnectomeOptions, given, seed: int):
    """``(hash, label)`` of what ``source`` holds: every byte that its reader reads (a file
    with the shards its index names or the external data of an ONNX model; every file of a
    set of shards or under a directory), or the names, dtypes, shapes and bytes of an
    in-memory network's tensors.

    ``hash`` is None where the source cannot be hashed without analysing it (a path that
    does not exist, an unreadable index: the analysis reports it, or resolves it otherwise).
    """
    from nnequiv.errors import NNEquivError
    from nnequiv.loading import ShardSet

    digest = hashlib.blake2b(digest_size=32)
    try:
        if isinstance(source, ShardSet):
            paths = [Path(p) for p in source.paths]
            digest.update(b"shards")
            _hash_source_files(paths[0], paths[1:], digest)
            return digest.hexdigest(), source.label
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not os.path.lexists(path):
                return None, str(path)
            if path.is_dir():
                digest.update(b"tree")
                _hash_tree(path, digest)
            else:
                digest.update(b"file")
                _hash_source_files(path, read_files(path), digest)
            return digest.hexdigest(), str(path)
    except (NNEquivError, OSError, RecursionError, MemoryError):
        return None, str(getattr(source, "label", source))
    from nnequiv.sources import open_source

    weights = open_source(source, load, connectome, given, seed)
    digest.update(b"tensors" + weights.label.encode())
    _hash_tensors(weights, digest)
    return digest.hexdigest(), weights.label


def code_digest() -> str:
    """BLAKE2b of nnequiv's own code (every module's source): part of every key, so that an
    entry is never served to code that would compute it otherwise (a changed reader)."""
    global _CODE_DIGEST
    if _CODE_DIGEST is None:
        digest = hashlib.blake2b(digest_size=16)
        package = Path(__file__).resolve().parent
        for module in sorted(package.rglob("*.py")):
            _hash_named(module.relative_to(package).as_posix(), module, digest)
        _CODE_DIGEST = digest.hexdigest()
    return _CODE_DIGEST


def analysis_key(
    content: str,
    settings: Settings,
    load: LoadOptions,
    connectome: ConnectomeOptions,
    given=frozenset(),
) -> str:
    """The cache key of an analysis: content hash, every option that can change it, and the
    nnequiv version."""
    described = {
        "format": ENTRY_FORMAT,
        "version": __version__,
        "code": code_digest(),
        "content": content,
        "settings": settings.to_dict(),
        "load": {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in asdict(load).items()
            if k != "max_memory"  # sizes the blocks, not the result
        },
        "connectome": connectome.to_dict(),
        "connectome_given": sorted(given),
    }
    text = json.dumps(described, sort_keys=True).encode()
    return hashlib.blake2b(text, digest_size=32).hexdigest()


# ---- entries ---------------------------------------------------------------------------


def analysis_to_bytes(analysis) -> bytes:
    """An analysis as the bytes of an ``.npz`` entry (arrays and a JSON string)."""
    meta = analysis.to_dict(curves=False)
    meta["format"] = ENTRY_FORMAT
    buffer = io.BytesIO()
    arrays = {name: np.ascontiguousarray(getattr(analysis, name), dtype=float) for name in ARRAYS}
    np.savez(buffer, meta=np.array(json.dumps(meta, allow_nan=True)), **arrays)
    return buffer.getvalue()


def save_analysis(analysis, path) -> None:
    """Write an analysis to ``path`` atomically (a temporary file renamed into place)."""
    _write_atomic(Path(path), analysis_to_bytes(analysis))


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_analysis(path, settings: Settings | None = None):
    """Read an analysis written by :func:`save_analysis`, checking every field.

    Raises
    ------
    FormatError
        The file is not a valid entry, or (with ``settings``) was made with other settings.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise FormatError(f"{path}: cannot read the stored analysis ({exc.strerror})") from None
    if size > MAX_ENTRY_BYTES:
        raise FormatError(f"{path}: stored analysis is larger than {MAX_ENTRY_BYTES} bytes")
    return analysis_from_bytes(path.read_bytes(), settings, label=str(path))


def analysis_from_bytes(data: bytes, settings: Settings | None = None, label: str = "<bytes>"):
    """The analysis in the bytes of an entry (see :func:`load_analysis`)."""
    try:
        return _decode(data, settings)
    except _Invalid as exc:
        raise FormatError(f"{label}: not a valid stored analysis: {exc}") from None
    except RecursionError:
        raise FormatError(f"{label}: not a valid stored analysis: nested too deeply") from None
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, MemoryError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise FormatError(f"{label}: not a valid stored analysis: {reason}") from None


class _Invalid(Exception):
    """A stored analysis that fails a check."""


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise _Invalid(reason)


def _read_npz(data: bytes) -> tuple[dict, dict]:
    """The JSON metadata and the float arrays of an entry, sizes checked before reading."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {info.filename: info for info in archive.infolist()}
        expected = {f"{name}.npy" for name in ("meta", *ARRAYS)}
        _require(set(members) == expected, "unexpected members")
        _require(
            all(info.file_size <= MAX_ENTRY_BYTES for info in members.values()), "member too large"
        )
    with np.load(io.BytesIO(data), allow_pickle=False) as stored:
        meta_array = stored["meta"]
        _require(meta_array.dtype.kind == "U" and meta_array.ndim == 0, "metadata is not text")
        arrays = {name: stored[name] for name in ARRAYS}
    meta = json.loads(str(meta_array[()]))
    _require(isinstance(meta, dict), "metadata is not an object")
    for name, array in arrays.items():
        _require(array.dtype == np.float64, f"{name} is not float64")
        _require(bool(np.isfinite(array).all()), f"{name} holds NaN or Inf")
    return meta, arrays


def _as_int(value, name: str, minimum: int = 0) -> int:
    _require(isinstance(value, int) and not isinstance(value, bool), f"{name} is not an integer")
    _require(value >= minimum, f"{name} is below {minimum}")
    return value


def _as_float(value, name: str) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    _require(ok, f"{name} is not a number")
    return float(value)


def _as_str(value, name: str) -> str:
    _require(isinstance(value, str), f"{name} is not text")
    return value


def _as_ints(value, name: str, length: int | None = None) -> tuple[int, ...]:
    _require(isinstance(value, list), f"{name} is not a list")
    _require(length is None or len(value) == length, f"{name} has the wrong length")
    return tuple(_as_int(v, name) for v in value)


def _as_floats(value, name: str) -> tuple[float, ...]:
    _require(isinstance(value, list), f"{name} is not a list")
    return tuple(_as_float(v, name) for v in value)


def _layer_record(item):
    from nnequiv.analysis import LayerRecord

    _require(isinstance(item, dict), "a layer is not an object")
    names = [f.name for f in fields(LayerRecord)]
    _require(sorted(item) == sorted(names), "a layer has unexpected fields")
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
    _require(min(record.matrix_shape) == record.order, "order is not min(N, M)")
    _require(record.n_eigenvalues + record.n_dropped == record.order, "eigenvalue counts")
    _require(record.stream[0] == record.order, "stream key does not start with the order")
    return record


def _decay(item):
    from nnequiv.csd import DecayFit

    _require(isinstance(item, dict), "decay is not an object")
    names = [f.name for f in fields(DecayFit)]
    _require(sorted(item) == sorted(names), "decay has unexpected fields")
    values = {
        name: _as_float(item[name], name) for name in names if name not in ("n_points", "interval")
    }
    interval = item["interval"]
    _require(isinstance(interval, list) and len(interval) == 2, "decay interval")
    return DecayFit(
        n_points=_as_int(item["n_points"], "n_points"),
        interval=(_as_float(interval[0], "interval"), _as_float(interval[1], "interval")),
        **values,
    )


def _skipped(item):
    from nnequiv.layers import SkippedTensor

    _require(isinstance(item, dict) and sorted(item) == ["name", "reason", "shape"], "skipped")
    return SkippedTensor(
        _as_str(item["name"], "skipped name"),
        _as_ints(item["shape"], "skipped shape"),
        _as_str(item["reason"], "skipped reason"),
    )


def _stored_settings(item) -> Settings:
    _require(isinstance(item, dict), "settings are not an object")
    _require(sorted(item) == sorted(f.name for f in fields(Settings)), "unexpected settings")
    return Settings(**item)


def _decode(data: bytes, settings: Settings | None):
    from nnequiv.analysis import Analysis
    from nnequiv.csd import log_grid

    meta, arrays = _read_npz(data)
    _require(meta.get("format") == ENTRY_FORMAT, "unknown entry format")
    _require(meta.get("version") == __version__, "made by another nnequiv version")
    stored = _stored_settings(meta.get("settings"))
    if settings is not None:
        differing = stored.differences(settings)
        _require(not differing, f"made with other settings ({', '.join(differing)})")
    layers_meta = meta.get("layers")
    _require(isinstance(layers_meta, list) and len(layers_meta) > 0, "no layers")
    layers = [_layer_record(item) for item in layers_meta]
    _require(meta.get("n_layers") == len(layers), "layer count")
    _require(all(len(layer.point) == len(stored.locations) for layer in layers), "layer points")
    path = meta.get("path")
    _require(path is None or isinstance(path, str), "path is not a string")
    skipped_meta = meta.get("skipped")
    _require(isinstance(skipped_meta, list), "skipped is not a list")
    bins, count = stored.grid[2], stored.realizations
    shapes = {
        "edges": (bins + 1,),
        "p_net": (bins,),
        "p_circ": (bins,),
        "csd": (count, bins),
        "layer_points": (count, len(layers), len(stored.locations)),
    }
    for name, shape in shapes.items():
        _require(arrays[name].shape == shape, f"{name} has shape {arrays[name].shape}")
    _require(np.array_equal(arrays["edges"], log_grid(*stored.grid)), "edges are not the grid")
    tail_start = _as_float(meta.get("tail_start"), "tail_start")
    conjugacy = _as_float(meta.get("conjugacy"), "conjugacy")
    _require(math.isfinite(tail_start) and math.isfinite(conjugacy), "tail_start, conjugacy")
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


# ---- the cache -------------------------------------------------------------------------


def _entry_path(directory: Path, key: str) -> Path:
    return directory / "analyses" / key[:2] / f"{key}.npz"


def _read_entry(path: Path, settings: Settings, label: str):
    """The cached analysis at ``path`` relabelled ``label``, or None (absent or invalid)."""
    if not path.is_file():
        return None
    try:
        analysis = load_analysis(path, settings)
    except (FormatError, OSError):
        return None
    analysis.source = label
    return analysis


def lookup(source, settings: Settings, options: dict, cache_dir=None):
    """``(analysis or None, entry path or None)`` of ``source`` in the cache.

    ``options`` are the loading and connectome keyword options; an entry path comes back
    where the analysis can be stored (a cache is on and the source could be hashed).
    """
    directory = cache_directory(cache_dir)
    if directory is None:
        return None, None
    _, _, load, connectome, given = split_options(options, base=settings)
    content, label = content_hash(source, load, connectome, given, settings.seed)
    if content is None:
        return None, None
    path = _entry_path(directory, analysis_key(content, settings, load, connectome, given))
    return _read_entry(path, settings, label), path


def store(path: Path | None, analysis) -> None:
    """Keep ``analysis`` at the entry ``path`` (from :func:`lookup`; None: no cache). A
    directory that cannot be written leaves the analysis uncached."""
    if path is None:
        return
    try:
        _write_atomic(path, analysis_to_bytes(analysis))
    except OSError:
        pass
