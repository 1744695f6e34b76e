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
import json
import os
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import platformdirs

from nnequiv._serial import (
    ENTRY_FORMAT,
    MAX_ENTRY_BYTES,
    analysis_from_bytes,
    analysis_to_bytes,
    write_atomic,
)
from nnequiv._sources import open_source
from nnequiv._version import __version__
from nnequiv.errors import FormatError, NNEquivError, UnsafeFileError
from nnequiv.loading import ShardSet, WeightSource
from nnequiv.loading._limits import inside, open_regular, reading, require_regular
from nnequiv.loading._onnx import _weight_tensors
from nnequiv.loading._shards import index_shards, is_index_path
from nnequiv.settings import ConnectomeOptions, LoadOptions, Settings, split_options

__all__ = [
    "CACHE_ENV",
    "cache_directory",
    "entry_path",
    "read_entry",
    "write_entry",
    "lookup",
    "store",
    "analysis_key",
    "content_hash",
    "file_content_hash",
    "weights_content_hash",
    "save_analysis",
    "load_analysis",
    "analysis_to_bytes",
    "analysis_from_bytes",
]

#: Environment variable naming the cache directory ("" turns the cache off).
CACHE_ENV = "NNEQUIV_CACHE_DIR"
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
        return Path(platformdirs.user_cache_dir("nnequiv"))
    return Path(os.fspath(cache_dir)).expanduser()


# ---- keys ------------------------------------------------------------------------------


def _file_digest(path: Path) -> bytes:
    """BLAKE2b of a file's bytes, remembered in this process while its size, modification
    and change times and inode stay the same. Only a regular file is opened (a FIFO or device is
    refused before it is)."""
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
    shards a ``*.index.json`` names, the external data files of an ONNX model, the data
    shards (``<name>.data-*``) beside a TensorFlow checkpoint's ``<name>.index``.

    Raises
    ------
    NNEquivError
        The index or model cannot be read (the analysis then gives its error).
    """
    if is_index_path(path):
        return list(index_shards(path)[0])
    if path.suffix.lower() == ".onnx":
        return _onnx_external_files(path)
    if path.name.endswith(".index"):
        stem = path.name[: -len(".index")]
        return sorted(p for p in path.parent.iterdir() if p.name.startswith(f"{stem}.data-"))
    return []


def _onnx_external_files(path: Path) -> list[Path]:
    """The external data files an ONNX model names (inside its folder; the reader refuses
    the others), parsed as the reader parses it. One that is a link to a file outside the
    folder is not opened here: the model is then not cached."""
    try:
        import onnx  # optional: only an ONNX model needs it
    except ImportError:
        return []  # the reader names the missing package

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


def file_content_hash(source):
    """``(hash, label)`` of a source read from files (a path, a :class:`ShardSet`): every
    byte that its reader reads (a file with the shards its index names or the external
    data of an ONNX model; every file of a set of shards or under a directory). ``hash`` is
    None where it cannot be hashed without analysing it (a path that does not exist, an
    unreadable index: the analysis reports it). None for a source that is not files."""
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
    return None


def weights_content_hash(weights: WeightSource) -> tuple[str, str]:
    """``(hash, label)`` of opened weights: the names, dtypes, shapes and bytes of their
    tensors."""
    digest = hashlib.blake2b(digest_size=32)
    digest.update(b"tensors" + weights.label.encode())
    _hash_tensors(weights, digest)
    return digest.hexdigest(), weights.label


def content_hash(source, load: LoadOptions, connectome: ConnectomeOptions, given, seed: int):
    """``(hash, label)`` of what ``source`` holds: :func:`file_content_hash` for files, else
    :func:`weights_content_hash` of the source opened (``hash`` None where it cannot be
    hashed)."""
    found = file_content_hash(source)
    if found is not None:
        return found
    return weights_content_hash(open_source(source, load, connectome, given, seed))


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


def save_analysis(analysis, path) -> None:
    """Write an analysis to ``path`` atomically (a temporary file renamed into place)."""
    write_atomic(Path(path), analysis_to_bytes(analysis))


def load_analysis(path, settings: Settings | None = None):
    """Read an analysis written by :func:`save_analysis`, checking every field
    (:func:`nnequiv._serial.analysis_from_bytes`).

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


# ---- the cache -------------------------------------------------------------------------


def entry_path(directory: Path, key: str) -> Path:
    """Where the entry of ``key`` lives under the cache ``directory``."""
    return directory / "analyses" / key[:2] / f"{key}.npz"


def read_entry(path: Path, settings: Settings, label: str):
    """The cached analysis at ``path`` named ``label``, or None (absent or invalid: it is
    then recomputed and rewritten)."""
    if not path.is_file():
        return None
    try:
        analysis = load_analysis(path, settings)
    except (FormatError, OSError):
        return None
    return replace(analysis, source=label)


def write_entry(path: Path | None, analysis) -> None:
    """Keep ``analysis`` at the entry ``path`` (None: no cache). A directory that cannot be
    written leaves the analysis uncached."""
    if path is None:
        return
    try:
        write_atomic(path, analysis_to_bytes(analysis))
    except OSError:
        pass


def lookup(source, settings: Settings, options: dict, cache_dir=None):
    """Deprecated (the look-up is :mod:`nnequiv._pipeline`'s; goes in the next release):
    ``(analysis or None, entry path or None)`` of ``source`` in the cache."""
    warnings.warn(
        "nnequiv.cache.lookup is deprecated (nnequiv.analyze looks analyses up); it will be "
        "removed in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    directory = cache_directory(cache_dir)
    if directory is None:
        return None, None
    _, _, load, connectome, given = split_options(options, base=settings)
    content, label = content_hash(source, load, connectome, given, settings.seed)
    if content is None:
        return None, None
    path = entry_path(directory, analysis_key(content, settings, load, connectome, given))
    return read_entry(path, settings, label), path


def store(path: Path | None, analysis) -> None:
    """Deprecated: :func:`write_entry` (goes in the next release)."""
    warnings.warn(
        "nnequiv.cache.store is deprecated; use nnequiv.cache.write_entry (store will be "
        "removed in the next release)",
        DeprecationWarning,
        stacklevel=2,
    )
    write_entry(path, analysis)
