"""The networks (and connectomes) in what a user gives: files, folders as users have them,
sharded checkpoints, Hugging Face caches and hub ids.

:func:`discover` gives every command the same meaning for its paths:

* **Folders** are searched recursively (symbolic links followed, loops refused). Hidden entries
  (``.git``, ``.cache``), FIFOs, sockets and devices are skipped with a note; nothing that is
  not a regular file is ever opened.
* **Files that are not networks** are skipped with one note each: text and other unknown
  suffixes (README, ``config.json``), a table such as ``MANIFEST.csv``, an optimizer state
  (``{'state': ..., 'param_groups': ...}``), a pickle without tensors (``training_args.bin``),
  a data set, and arrays of which none could be a layer (no float array with two or more
  dimensions both >= 2).
* A **data set** is recognised by its array names: an array of samples (``x``, ``data``,
  ``images``, ``inputs``, ``features``, ``samples``) beside an array of labels (``y``,
  ``labels``, ``label``, ``targets``, ``target``, ``classes``) of at most two dimensions with the
  same first (sample) dimension; ``train``/``test``/``val`` affixes are ignored (``x_train``,
  ``y_test``, ``train_images``). Network tensors are not named so, and never come in such pairs.
* **Connectomes**: an npz with a ``chemical`` matrix and GraphML files always; a CSV when
  ``connectomes=True`` and it is not a table (every cell after the first column numeric, or an
  edge list ``pre, post, weight`` in which some node is at both ends of edges), or without it
  when it parses entirely as a connectome. A table with text columns (a manifest) never is one.
* **One network in several files**: a ``*.index.json`` with the shards it names
  (``model.safetensors.index.json``, ``pytorch_model.bin.index.json``), or a complete set of
  ``name-0000k-of-0000N.ext`` shards without an index (safetensors, PyTorch bins, GGUF splits).
  Where one folder holds the same Hugging Face model in several formats (``model.safetensors``
  and ``pytorch_model.bin``), the first of safetensors, PyTorch and TensorFlow is taken and the
  others are noted.
* **Hugging Face**: a cache folder ``models--org--name`` is read at ``refs/main`` (its
  ``snapshots/<hash>``); a hub id ``org/name`` that is not a local path is looked up in the
  local cache (``huggingface_hub``'s, ``HF_HUB_CACHE``) and downloaded only where
  ``huggingface_hub`` is installed and ``HF_HUB_OFFLINE`` is not set.
* **Labels** are unique: the shortest trailing part of each path that tells it from the others
  (``a/model.safetensors`` and ``b/model.safetensors``); a Hugging Face model that is one network
  is labelled ``org/name``.

Sniffing reads headers only (zip directories, npy and safetensors headers, the first rows of a
CSV); PyTorch files are opened with ``torch.load(weights_only=True, mmap=True)``, which runs no
code from the file and maps, not reads, the tensors. A network file that is corrupt is still
found: the analysis gives its one-line error.
"""

from __future__ import annotations

import csv
import io
import math
import os
import pickletools
import re
import stat
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnequiv.errors import InputError, MissingDependencyError, NNEquivError
from nnequiv.settings import DEFAULT_MAX_TENSOR_BYTES

__all__ = ["Found", "discover", "NETWORK", "CONNECTOME", "hub_weight_files"]

NETWORK, CONNECTOME = "network", "connectome"

#: Hugging Face's names of one model's weights, preferred first (a folder holding several is
#: one model in several formats).
HF_WEIGHT_NAMES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
    "tf_model.h5",
)
_SAMPLE_NAMES = {"x", "data", "images", "image", "inputs", "input", "features", "samples"}
_LABEL_NAMES = {"y", "labels", "label", "targets", "target", "classes"}
_SPLIT_WORDS = {"train", "training", "test", "testing", "val", "valid", "validation", "dev"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_REPO_FOLDER = re.compile(r"^models--(?P<org>[^/]+?)--(?P<name>[^/]+)$")
#: Legacy (non-zip) PyTorch pickles up to this size are loaded whole to be sniffed; larger
#: ones are taken as networks unseen.
MAX_LEGACY_SNIFF_BYTES = 64 << 20
#: CSV files up to this size are parsed whole to decide whether they are connectomes.
MAX_CSV_PARSE_BYTES = 32 << 20
_CSV_SNIFF_ROWS = 50
#: The first value ``torch.save`` pickles in its legacy (non-zip) format.
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass(frozen=True)
class Found:
    """One network or connectome found by :func:`discover`.

    Attributes
    ----------
    label : str
        Short and unique among the results (shortest distinguishing trailing path).
    source : str or object
        What :func:`nnequiv.loading.open_weights` (networks) or
        :func:`nnequiv.connectomes.load_connectome` (connectomes) takes: a path, a
        :class:`nnequiv.loading.ShardSet`, or the object that was given.
    kind : {"network", "connectome"}
    path : pathlib.Path or None
        The main file (the file itself, the index, the first shard); None for objects.
    files : tuple of pathlib.Path
        Every file the network is read from (index and shards), e.g. for a content hash.
    """

    label: str
    source: object
    kind: str
    path: Path | None
    files: tuple[Path, ...] = ()


@dataclass
class _Candidate:
    parts: tuple[str, ...]
    source: object
    kind: str
    path: Path | None
    files: tuple[Path, ...]
    repo: int = 0  # parts[:repo] end with a Hugging Face model's org, name (0: none)
    min_parts: int = 1


def discover(
    paths, *, connectomes: bool = False, notes: Callable[[str], None] | None = None
) -> list[Found]:
    """The networks and connectomes in files, folders, Hugging Face caches and hub ids.

    Parameters
    ----------
    paths : path, object, or an iterable of them
        Files, folders, ``*.index.json`` files, Hugging Face cache folders (``models--org--name``)
        or hub ids (``org/name``); in-memory sources (dicts, torch modules, WeightSources,
        Connectomes) pass through.
    connectomes : bool
        Take CSV files that are not tables as connectomes (``--connectome``); without it a CSV
        is a connectome only when it parses entirely as one.
    notes : callable, optional
        Called with one line for each thing skipped and why (the CLI prints them on stderr).

    Returns
    -------
    list of Found
        In the order given, folders in name order (files before subfolders).

    Raises
    ------
    InputError
        A path that does not exist and is not a hub id, a hub id that cannot be resolved, or
        nothing found at all.
    MissingDependencyError
        A hub id not in the local cache, and ``huggingface_hub`` is not installed to fetch it.
    """
    single = isinstance(paths, (str, os.PathLike, Mapping)) or hasattr(paths, "state_dict")
    items = [paths] if single or not isinstance(paths, Iterable) else list(paths)
    search = _Search(connectomes, notes or (lambda _line: None))
    for group in _grouped(items):
        search.add(group)
    if not search.found:
        given = ", ".join(str(getattr(item, "label", item)) for item in items) or "<nothing>"
        skipped = f" ({search.skipped} skipped; see the notes)" if search.skipped else ""
        raise InputError(f"{given}: no network found{skipped}")
    return _labelled(search.found)


def _grouped(items) -> list:
    """Items in order, files given one by one gathered per folder (so that shards given as
    ``dir/*`` are grouped as in a folder), each group at its first member's place."""
    groups, by_folder = [], {}
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            path = Path(os.path.expanduser(os.fspath(item)))
            if os.path.lexists(path) and not path.is_dir():
                key = os.path.abspath(path.parent)
                if key not in by_folder:
                    by_folder[key] = []
                    groups.append(by_folder[key])
                by_folder[key].append(path)
                continue
            item = path
        groups.append(item)
    return groups


class _Search:
    """What has been found and searched so far."""

    def __init__(self, connectomes: bool, notes: Callable[[str], None]):
        self.connectomes, self.notes = connectomes, notes
        self.found: list[_Candidate] = []
        self.folders: set[tuple[int, int]] = set()
        self.files: dict[str, str] = {}
        self.skipped = 0

    def skip(self, path, reason: str) -> None:
        self.skipped += 1
        self.notes(f"skipped {path}: {reason}")

    def add(self, item) -> None:
        if isinstance(item, list):
            self.folder_files(item, *_virtual(Path(os.path.abspath(item[0].parent))))
        elif isinstance(item, Path):
            self.add_path(item)
        else:
            self.add_object(item)

    def add_object(self, item) -> None:
        from nnequiv.connectomes import Connectome, is_connectome

        label = getattr(item, "label", None) or f"<{type(item).__name__}>"
        if isinstance(item, Mapping):
            label = "<dict>"
        kind = CONNECTOME if isinstance(item, Connectome) or is_connectome(item) else NETWORK
        self.found.append(_Candidate((str(label),), item, kind, None, ()))

    def add_path(self, path: Path) -> None:
        if not os.path.lexists(path):
            if _could_be_hub_id(path):
                self.repo(_hub_folder(path.as_posix(), self.notes), ())
                return
            raise InputError(f"{path}: no such file or directory")
        if _REPO_FOLDER.match(path.name):
            self.repo(path, _virtual(Path(os.path.abspath(path.parent)))[0])
        else:
            self.folder(path, *_virtual(Path(os.path.abspath(path))))

    def repo(self, folder: Path, prefix: tuple[str, ...]) -> None:
        match = _REPO_FOLDER.match(folder.name)
        snapshot, reason = _repo_snapshot(folder)
        if snapshot is None:
            self.skip(folder, reason)
            return
        if reason:
            self.notes(f"{folder}: {reason}")
        self.folder(snapshot, (*prefix, match["org"], match["name"]), len(prefix) + 2)

    def folder(self, folder: Path, virtual: tuple[str, ...], repo: int = 0) -> None:
        try:
            info = folder.stat()
        except OSError as exc:
            self.skip(folder, f"cannot be read ({exc.strerror})")
            return
        if (info.st_dev, info.st_ino) in self.folders:
            self.skip(folder, "folder already searched (a symbolic link loop or a repeat)")
            return
        self.folders.add((info.st_dev, info.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as exc:
            self.skip(folder, f"folder cannot be listed ({exc.strerror})")
            return
        files, folders = [], []
        for entry in entries:
            path = folder / entry.name
            if entry.name.startswith("."):
                self.skip(path, "hidden, not searched")
            elif _REPO_FOLDER.match(entry.name) and entry.is_dir():
                folders.append((path, True))
            elif entry.name.startswith(("datasets--", "spaces--")) and entry.is_dir():
                self.skip(path, "a Hugging Face data set or space, not a model")
            elif entry.is_dir():
                folders.append((path, False))
            else:
                files.append(path)
        self.folder_files(files, virtual, repo)
        for path, is_repo in folders:
            if is_repo:
                self.repo(path, virtual)
            else:
                self.folder(path, (*virtual, path.name), repo)

    def folder_files(self, files: list[Path], virtual: tuple[str, ...], repo: int = 0) -> None:
        """Files of one folder: indexes and shard sets first, then one by one."""
        regular = []
        for path in files:
            reason = _not_regular(path)
            if reason:
                self.skip(path, reason)
            else:
                regular.append(path)
        groups, rest = _multi_file_networks(regular)
        kept, alternates = _one_format(groups, rest)
        for path, preferred in alternates:
            self.skip(path, f"the same model as {preferred.name}, in another format")
        for main, source, members in kept:
            self.take(
                _Candidate(
                    (*virtual, _display_name(source, main)),
                    source,
                    NETWORK,
                    main,
                    tuple(members),
                    repo,
                )
            )
        alternative = {path for path, _ in alternates}
        for path in rest:
            kind = None if path in alternative else self.classify(path)
            if kind is not None:
                self.take(_Candidate((*virtual, path.name), str(path), kind, path, (path,), repo))

    def classify(self, path: Path) -> str | None:
        """NETWORK, CONNECTOME, or None after a note saying why the file is skipped."""
        reason = _sniff(path, self.connectomes)
        if reason in (NETWORK, CONNECTOME):
            return reason
        self.skip(path, reason)
        return None

    def take(self, candidate: _Candidate) -> None:
        key = os.path.realpath(candidate.path)
        if key in self.files:
            self.skip(candidate.path, f"already found as {self.files[key]}")
            return
        self.files[key] = str(candidate.path)
        self.found.append(candidate)


def _display_name(source, main: Path) -> str:
    from nnequiv.loading import ShardSet

    return Path(source.label).name if isinstance(source, ShardSet) else main.name


def _virtual(path: Path) -> tuple[tuple[str, ...], int]:
    """A folder's parts, with ``models--org--name/snapshots/<hash>`` read as ``org/name``, and
    the number of parts up to that ``name`` (0 outside a Hugging Face cache)."""
    parts = list(path.parts)
    for i in range(len(parts) - 2):
        match = _REPO_FOLDER.match(parts[i])
        if match and parts[i + 1] == "snapshots":
            return (*parts[:i], match["org"], match["name"], *parts[i + 3 :]), i + 2
    return tuple(parts), 0


def _could_be_hub_id(path: Path) -> bool:
    """``org/name`` that is not a local path: no file suffix of ours, and no local folder
    ``org`` (where there is one, the path is a typo of a local file)."""
    from nnequiv.connectomes import CONNECTOME_SUFFIXES
    from nnequiv.loading import MODEL_SUFFIXES

    known = path.suffix.lower() in MODEL_SUFFIXES | CONNECTOME_SUFFIXES | {".json"}
    return bool(_HUB_ID.match(path.as_posix())) and not known and not path.parent.is_dir()


def _not_regular(path: Path) -> str | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return "broken symbolic link"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISREG(info.st_mode):
        return None
    kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a socket or device"
    return f"{kind}, not a regular file"


# --- Networks in several files ----------------------------------------------------------------


def _multi_file_networks(files: list[Path]) -> tuple[list[tuple], list[Path]]:
    """``(main, source, members)`` of each index and shard set among the files of one folder,
    and the files left."""
    from nnequiv.loading._shards import SHARD_NAME, index_shards, is_index_path, shard_set_of

    groups, used = [], set()
    for path in files:
        if not is_index_path(path):
            continue
        try:
            shards, _ = index_shards(path)
        except NNEquivError:  # a corrupt index is still a network: its error comes later
            shards = _named_like_index(path, files)
        groups.append((path, str(path), (path, *shards)))
        used.update([path, *shards])
    sets: dict[tuple, list[Path]] = {}
    for path in files:
        match = SHARD_NAME.match(path.name)
        if match and path not in used:
            key = (match["stem"], match["count"], match["ext"].lower())
            sets.setdefault(key, []).append(path)
    for members in sets.values():
        try:
            shard_set = shard_set_of(members)
        except NNEquivError:
            continue  # not one set after all: the files are taken one by one
        groups.append((members[0], shard_set, tuple(members)))
        used.update(members)
    return groups, [path for path in files if path not in used]


def _named_like_index(index: Path, files: list[Path]) -> list[Path]:
    """The shards an unreadable index would name, by the Hugging Face naming convention."""
    from nnequiv.loading._shards import SHARD_NAME

    stem, _, rest = index.name.lower().partition(".")
    ext = rest.split(".")[0]
    return [
        path
        for path in files
        if (match := SHARD_NAME.match(path.name))
        and match["stem"].lower() == stem
        and match["ext"].lower() == ext
    ]


def _one_format(groups, rest) -> tuple[list[tuple], list[tuple[Path, Path]]]:
    """Groups kept, and ``(path, preferred)`` for a Hugging Face model's other formats."""
    kept = list(groups)
    standard = []
    for main, source, members in groups:
        rank = _hf_rank(main, source)
        if rank is not None:
            standard.append((rank, main, (main, source, members)))
    for path in rest:
        rank = _hf_rank(path, None)
        if rank is not None:
            standard.append((rank, path, None))
    if len(standard) < 2:
        return kept, []
    standard.sort(key=lambda item: item[0])
    preferred = standard[0][1]
    alternates = []
    for _, main, group in standard[1:]:
        alternates.append((main, preferred))
        if group is not None:
            kept.remove(group)
            alternates += [(member, preferred) for member in group[2] if member != main]
    return kept, alternates


def _hf_rank(path: Path, source) -> int | None:
    from nnequiv.loading import ShardSet

    name = path.name.lower()
    if isinstance(source, ShardSet):  # shards without an index rank as their index would
        stem, ext = Path(source.label).name.lower().split("-")[0], path.suffix.lower()
        name = f"{stem}{ext}.index.json"
    return HF_WEIGHT_NAMES.index(name) if name in HF_WEIGHT_NAMES else None


# --- Sniffing one file --------------------------------------------------------------------------


def _sniff(path: Path, connectomes: bool) -> str:
    """NETWORK, CONNECTOME, or why the file is not one (headers only)."""
    from nnequiv.connectomes import CONNECTOME_SUFFIXES
    from nnequiv.loading import MODEL_SUFFIXES, TORCH_SUFFIXES

    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _sniff_npz(path)
    if suffix in TORCH_SUFFIXES:
        return _sniff_torch(path)
    if suffix == ".safetensors":
        return _sniff_safetensors(path)
    if suffix in {".h5", ".hdf5"}:
        return _sniff_hdf5(path)
    if suffix in MODEL_SUFFIXES:
        return NETWORK  # .onnx, .keras, .tflite, .gguf: their loaders give any error
    if suffix == ".csv":
        return _sniff_csv(path, connectomes)
    if suffix in CONNECTOME_SUFFIXES:
        return CONNECTOME
    return f"not a network file ({suffix or 'no suffix'})"


def _arrays_reason(names: list[str], header: Callable[[str], tuple[tuple, bool]]) -> str:
    """NETWORK, or why named arrays are not a network; ``header(name)`` gives an array's
    ``(shape, is_float)`` and is asked only as far as needed (the data-set names, then arrays
    until one could be a layer)."""
    roles = [n for n in names if _role(n) in _SAMPLE_NAMES | _LABEL_NAMES]
    pair = _data_set_pair([(n, *header(n)) for n in roles])
    if pair is not None:
        (x_name, x_shape), (y_name, y_shape) = pair
        return f"a data set ('{x_name}' {x_shape} with labels '{y_name}' {y_shape}), not a network"
    if not names:
        return "holds no arrays"
    if not any(_could_be_layer(*header(name)) for name in names):
        return "no array that could be a layer (a float array of 2 or more dimensions)"
    return NETWORK


def _listed_reason(arrays: list[tuple[str, tuple, bool]]) -> str:
    """:func:`_arrays_reason` of arrays already listed as ``(name, shape, is_float)``."""
    table = {name: (shape, is_float) for name, shape, is_float in arrays}
    return _arrays_reason(list(table), table.__getitem__)


def _could_be_layer(shape: tuple, is_float: bool) -> bool:
    """A float array whose matrix, with the output axis first or last, is at least 2 x 2."""
    if not is_float or len(shape) < 2 or 0 in shape:
        return False
    size = math.prod(shape)
    return min(shape[0], size // shape[0]) >= 2 or min(shape[-1], size // shape[-1]) >= 2


def _data_set_pair(arrays) -> tuple | None:
    """The first (samples, labels) pair of arrays, by name and sample count."""
    samples = [(n, s) for n, s, _ in arrays if _role(n) in _SAMPLE_NAMES and len(s) >= 1]
    labels = [(n, s) for n, s, _ in arrays if _role(n) in _LABEL_NAMES and 1 <= len(s) <= 2]
    for x_name, x_shape in samples:
        for y_name, y_shape in labels:
            if x_shape[0] == y_shape[0] >= 2:
                return (x_name, x_shape), (y_name, y_shape)
    return None


def _role(name: str) -> str:
    """An array name without its split words: ``x_train`` -> ``x``, ``train_images`` ->
    ``images``."""
    words = [w for w in re.split(r"[_\-./:]+", name.lower()) if w and w not in _SPLIT_WORDS]
    return "_".join(words)


def _sniff_npz(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            members = {
                i.filename[:-4]: i for i in archive.infolist() if i.filename.endswith(".npy")
            }
            if "chemical" in members:
                return CONNECTOME
            return _arrays_reason(list(members), lambda name: _npy_header(archive, members[name]))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return NETWORK  # corrupt: the loader gives the error


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple, bool]:
    with archive.open(info) as handle:
        major, _ = np.lib.format.read_magic(handle)
        if major == 1:
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    return tuple(shape), dtype.kind == "f"


def _sniff_safetensors(path: Path) -> str:
    from nnequiv.loading._safetensors import safetensors_header

    try:
        entries, _ = safetensors_header(path, DEFAULT_MAX_TENSOR_BYTES)
        arrays = [
            (entry.name, entry.shape, entry.element.name.startswith(("float", "bfloat")))
            for entry in entries
        ]
    except (NNEquivError, KeyError, TypeError, ValueError, AttributeError, OSError):
        return NETWORK
    return _listed_reason(arrays)


def _sniff_hdf5(path: Path) -> str:
    try:
        import h5py
    except ImportError:
        return NETWORK  # the loader names the missing package
    arrays = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            arrays.append((name, tuple(obj.shape), obj.dtype.kind == "f"))

    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(visit)
    except Exception:  # h5py raises many kinds on a corrupt file; the loader reports it
        return NETWORK
    return _listed_reason(arrays)


def _sniff_torch(path: Path) -> str:
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return NETWORK
        parts = [name.split("/") for name in names]
        if any(len(p) >= 2 and p[1] == "code" for p in parts):
            return NETWORK  # TorchScript
        if not any(len(p) == 3 and p[1] == "data" and not p[2].startswith(".") for p in parts):
            return "holds no tensor data (a pickled object without weights)"
        return _torch_object_reason(path, mmap=True)
    pickled = _legacy_torch_pickle(path)
    if pickled is False:
        return "a pickle not written by torch.save (plain pickles are not read: they can run code)"
    if pickled is None or path.stat().st_size > MAX_LEGACY_SNIFF_BYTES:
        return NETWORK  # not a pickle (corrupt?) or too large to sniff: the loader decides
    return _torch_object_reason(path, mmap=False)


def _legacy_torch_pickle(path: Path) -> bool | None:
    """Whether a pickle starts with the magic number of ``torch.save``'s legacy format (None:
    not a pickle). Read with :mod:`pickletools`, which parses opcodes and runs nothing."""
    try:
        with path.open("rb") as handle:
            head = handle.read(64)
        if not head.startswith(b"\x80"):
            return None
        for opcode, argument, _ in pickletools.genops(io.BytesIO(head)):
            if opcode.name not in {"PROTO", "FRAME"}:
                return opcode.name == "LONG1" and argument == _TORCH_MAGIC
    except (OSError, ValueError):
        return None
    return None


def _torch_object_reason(path: Path, mmap: bool) -> str:
    try:
        import torch
    except ImportError:
        return NETWORK  # the loader names the missing package
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except Exception:  # unsafe or corrupt: found, and the loader gives its one-line error
        return NETWORK
    arrays, optimizer = _tensors_in(obj)
    if optimizer and not any(_could_be_layer(shape, f) for _, shape, f in arrays):
        return "an optimizer state (state, param_groups), not a network"
    if not arrays:
        return "holds no tensors"
    return _listed_reason(arrays)


def _tensors_in(obj, limit: int = 100_000) -> tuple[list[tuple[str, tuple, bool]], bool]:
    """``(name, shape, is_float)`` of the tensors and arrays in a loaded checkpoint, outside
    optimizer states, and whether it holds an optimizer state."""
    arrays, optimizer, stack = [], False, [("", obj)]
    while stack and len(arrays) < limit:
        name, value = stack.pop()
        if isinstance(value, Mapping):
            if {"state", "param_groups"} <= set(value.keys()):
                optimizer = True
                continue
            stack += [(f"{name}.{k}" if name else str(k), v) for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            stack += [(f"{name}.{i}" if name else str(i), v) for i, v in enumerate(value)]
        elif hasattr(value, "shape") and hasattr(value, "dtype"):
            is_float = getattr(value.dtype, "is_floating_point", None)
            if is_float is None:
                is_float = np.dtype(value.dtype).kind == "f"
            arrays.append((name, tuple(value.shape), bool(is_float)))
    return arrays[::-1], optimizer


def _sniff_csv(path: Path, connectomes: bool) -> str:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            head = handle.read(1 << 20)
        rows = [r for r in csv.reader(io.StringIO(head)) if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error, OSError):
        return "not a text table"
    rows = rows[:_CSV_SNIFF_ROWS]
    if not rows:
        return "an empty table"
    if not _connectome_like(rows):
        return "a table with text columns (like a manifest), not a connectome"
    if connectomes:
        return CONNECTOME
    return _parses_as_connectome(path)


def _connectome_like(rows: list[list[str]]) -> bool:
    """Every cell after the first column numeric (an adjacency matrix, names in the first row
    and column), or an edge list ``pre, post, weight``: three columns ending in a number whose
    first two share node names (a three-column manifest lists each file once, never a node at
    both ends)."""
    body = rows[1:] if len(rows) > 1 else rows
    if all(_numeric(cell) or not cell.strip() for row in body for cell in row[1:]):
        return True
    if not all(len(row) == 3 and _numeric(row[2]) for row in body):
        return False
    pre, post = {row[0].strip() for row in body}, {row[1].strip() for row in body}
    return bool(pre & post)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parses_as_connectome(path: Path) -> str:
    from nnequiv.connectomes import load_connectome

    if path.stat().st_size > MAX_CSV_PARSE_BYTES:
        return "a numeric table too large to check as a connectome; give --connectome"
    try:
        load_connectome(path)
    except NNEquivError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        return f"a numeric table that is not a connectome ({reason})"
    return CONNECTOME


# --- Hugging Face -------------------------------------------------------------------------------


def _repo_snapshot(folder: Path) -> tuple[Path | None, str]:
    """The snapshot a cache folder ``models--org--name`` points at, and a note (or why not)."""
    snapshots = folder / "snapshots"
    ref = folder / "refs" / "main"
    if ref.is_file():
        commit = ref.read_text(errors="replace")[:256].strip()
        if re.fullmatch(r"[\w.-]+", commit) and commit not in {".", ".."}:
            if (snapshots / commit).is_dir():
                return snapshots / commit, ""
    candidates = (
        sorted(
            (p for p in snapshots.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
        )
        if snapshots.is_dir()
        else []
    )
    if not candidates:
        return None, "a Hugging Face cache folder without a snapshot"
    if len(candidates) == 1:
        return candidates[0], ""
    return candidates[-1], f"no usable refs/main; took the newest snapshot {candidates[-1].name}"


def _hub_cache() -> Path:
    """The Hugging Face hub cache folder (``huggingface_hub``'s, else from the environment)."""
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:
        pass
    env = os.environ
    if env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.path.expanduser(env.get("HF_HUB_CACHE") or env["HUGGINGFACE_HUB_CACHE"]))
    home = env.get("HF_HOME") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(os.path.expanduser(home)) / "hub"


def _hub_offline() -> bool:
    values = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    if any(str(v).strip().upper() in {"1", "ON", "YES", "TRUE"} for v in values if v):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _hub_folder(repo_id: str, notes: Callable[[str], None]) -> Path:
    """The local cache folder of a hub id, downloaded first where that is allowed."""
    org, name = repo_id.split("/")
    cache = _hub_cache()
    folder = cache / f"models--{org}--{name}"
    if folder.is_dir():
        return folder
    where = f"no such file or folder, and not in the Hugging Face cache {cache}"
    if _hub_offline():
        raise InputError(f"{repo_id}: {where} (HF_HUB_OFFLINE is set, so it is not downloaded)")
    try:
        import huggingface_hub
    except ImportError as exc:
        raise MissingDependencyError(
            "huggingface_hub", "hub", f"{repo_id}: {where}; downloading it"
        ) from exc
    notes(f"{repo_id}: not a local path nor in the cache; fetching it from the Hugging Face hub")
    try:
        files = huggingface_hub.HfApi().list_repo_files(repo_id)
        wanted = hub_weight_files(files, repo_id)
        if not wanted:
            raise InputError(f"{repo_id}: the hub repository holds no weights nnequiv reads")
        huggingface_hub.snapshot_download(repo_id, allow_patterns=wanted, cache_dir=cache)
    except NNEquivError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise InputError(f"{repo_id}: {where}, and downloading it failed ({first})") from exc
    return folder


def hub_weight_files(files: Iterable[str], repo_id: str = "the hub repository") -> list[str]:
    """Which files of a hub repository to download: the preferred Hugging Face weights (an
    index with its shards, or one file), else the one weight file at its top level.

    Raises
    ------
    InputError
        Several candidate files and none of Hugging Face's names (e.g. GGUF files of several
        quantisations): the user must pick one.
    """
    from nnequiv.loading import MODEL_SUFFIXES
    from nnequiv.loading._shards import SHARD_NAME

    files = [f for f in files if "/" not in f]
    for name in HF_WEIGHT_NAMES:
        if name in files:
            if name.endswith(".index.json"):
                stem, ext = name.split(".")[0], name.split(".")[1]
                return [
                    name,
                    *(
                        f
                        for f in files
                        if (m := SHARD_NAME.match(f)) and m["stem"] == stem and m["ext"] == ext
                    ),
                ]
            return [name]
    weights = [f for f in files if Path(f).suffix.lower() in MODEL_SUFFIXES]
    if len(weights) > 1:
        shown = ", ".join(weights[:5]) + (", ..." if len(weights) > 5 else "")
        raise InputError(
            f"{repo_id} holds {len(weights)} weight files ({shown}); download the one to "
            "analyse and give its path"
        )
    return weights


# --- Labels -------------------------------------------------------------------------------------


def _labelled(candidates: list[_Candidate]) -> list[Found]:
    """Each candidate with the shortest trailing part of its path that no other one shares."""
    repo_counts: dict[tuple[str, ...], int] = {}
    for c in candidates:
        if c.repo:
            repo_counts[c.parts[: c.repo]] = repo_counts.get(c.parts[: c.repo], 0) + 1
    for c in candidates:
        if c.repo and repo_counts[c.parts[: c.repo]] == 1:
            c.parts, c.min_parts = c.parts[: c.repo], 2
    lengths = [min(c.min_parts, len(c.parts)) for c in candidates]
    while True:
        labels = ["/".join(c.parts[-k:]) for c, k in zip(candidates, lengths)]
        counts = Counter(labels)
        grow = [
            i
            for i, label in enumerate(labels)
            if counts[label] > 1 and lengths[i] < len(candidates[i].parts)
        ]
        if not grow:
            break
        for i in grow:
            lengths[i] += 1
    seen: Counter = Counter()
    found = []
    for c, label in zip(candidates, labels):
        seen[label] += 1
        unique = label if counts[label] == 1 else f"{label}#{seen[label]}"
        found.append(Found(unique, c.source, c.kind, c.path, c.files))
    return found
