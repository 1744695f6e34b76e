"""What a file is, from its headers alone: a network, a connectome, or something to skip
and why (the sniffing behind :func:`nnequiv.discovery.discover`)."""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nnequiv.errors import NNEquivError
from nnequiv.loading._formats import legacy_torch_pickle
from nnequiv.loading._npy import npy_header
from nnequiv.settings import DEFAULT_MAX_TENSOR_BYTES

NETWORK, CONNECTOME = "network", "connectome"
_SAMPLE_NAMES = {"x", "data", "images", "image", "inputs", "input", "features", "samples"}
_LABEL_NAMES = {"y", "labels", "label", "targets", "target", "classes"}
_SPLIT_WORDS = {"train", "training", "test", "testing", "val", "valid", "validation", "dev"}
#: Legacy (non-zip) PyTorch pickles up to this size are loaded whole to be sniffed; larger
#: ones are taken as networks unseen.
MAX_LEGACY_SNIFF_BYTES = 64 << 20
#: CSV files up to this size are parsed whole to decide whether they are connectomes.
MAX_CSV_PARSE_BYTES = 32 << 20
_CSV_SNIFF_ROWS = 50


def sniff(path: Path, connectomes: bool) -> str:
    """NETWORK, CONNECTOME, or why the file is not one (headers only)."""
    from nnequiv.connectomes import CONNECTOME_SUFFIXES
    from nnequiv.loading import MODEL_SUFFIXES, TORCH_SUFFIXES

    suffix = path.suffix.lower()
    if path.name.lower().endswith(".index"):
        return _sniff_bundle_index(path)
    if suffix == ".npz":
        return _sniff_npz(path)
    if suffix in TORCH_SUFFIXES:
        return _sniff_torch(path)
    if suffix == ".safetensors":
        return _sniff_safetensors(path)
    if suffix in {".h5", ".hdf5"}:
        return _sniff_hdf5(path)
    if suffix == ".npy":
        return _sniff_npy(path)
    if suffix in MODEL_SUFFIXES:
        return NETWORK  # .onnx, .keras, .tflite, .gguf: their loaders give any error
    if suffix == ".csv":
        return _sniff_csv(path, connectomes)
    if suffix in CONNECTOME_SUFFIXES:
        return CONNECTOME
    return f"not a network file ({suffix or 'no suffix'})"


def _sniff_bundle_index(path: Path) -> str:
    """A TensorFlow checkpoint's ``<name>.index`` is a network where its data shards lie
    beside it (``<name>.data-0000k-of-0000N``)."""
    stem = path.name[: -len(".index")]
    try:
        shards = [p for p in path.parent.iterdir() if p.name.startswith(f"{stem}.data-")]
    except OSError:
        shards = []
    return NETWORK if shards else "an .index file without TensorFlow data shards beside it"


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
    except Exception:  # noqa: BLE001 - corrupt or encrypted: the loader gives the error
        return NETWORK


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple, bool]:
    with archive.open(info) as handle:
        shape, _, dtype = npy_header(handle, np.lib.format.read_magic(handle))
    return tuple(shape), dtype.kind == "f"


def _sniff_npy(path: Path) -> str:
    """A plain array is not a network; a pickled object of arrays is looked into (through
    the restricted unpickler, which runs nothing)."""
    try:
        with path.open("rb") as handle:
            _, _, dtype = npy_header(handle, np.lib.format.read_magic(handle))
    except (OSError, ValueError, EOFError):
        return NETWORK  # corrupt: the loader gives the error
    if not dtype.hasobject:
        return "a single array (.npy), not a network"
    from nnequiv.loading._npy import npy_names

    try:
        arrays = list(npy_names(path, DEFAULT_MAX_TENSOR_BYTES))
    except NNEquivError:
        return NETWORK
    return _listed_reason(arrays)


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
    """The datasets from the loader's checked metadata pass (bounded, in a worker process),
    optimizer variables left out."""
    try:
        import h5py  # noqa: F401
    except ImportError:
        return NETWORK  # the loader names the missing package
    from nnequiv.loading._hdf5 import checked_datasets, is_optimizer_name

    try:
        datasets = checked_datasets(
            str(path), str(path), DEFAULT_MAX_TENSOR_BYTES, path.stat().st_size
        )
    except (NNEquivError, OSError):
        return NETWORK  # corrupt or refused: the loader reports it
    arrays = [(d.name, d.shape, d.kind == "f") for d in datasets if not is_optimizer_name(d.name)]
    return _listed_reason(arrays)


def _sniff_torch(path: Path) -> str:
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except Exception:  # noqa: BLE001 - corrupt: the loader gives the error
            return NETWORK
        parts = [name.split("/") for name in names]
        if any(len(p) >= 2 and p[1] == "code" for p in parts):
            return NETWORK  # TorchScript
        if not any(len(p) == 3 and p[1] == "data" and not p[2].startswith(".") for p in parts):
            return "holds no tensor data (a pickled object without weights)"
        return _torch_object_reason(path)
    pickled = legacy_torch_pickle(path)
    if pickled is None or path.stat().st_size > MAX_LEGACY_SNIFF_BYTES:
        return NETWORK  # not a pickle (corrupt?) or too large to sniff: the loader decides
    return _torch_object_reason(path)


def _torch_object_reason(path: Path) -> str:
    """Read through nnequiv's own restricted unpickler (no code runs, no tensor data is
    read): the tensors outside optimizer states, or why there are none."""
    from nnequiv.errors import FormatError
    from nnequiv.loading._pytorch import NO_TENSORS, OPTIMIZER_ONLY, open_torch
    from nnequiv.loading._restricted import TensorRef

    try:
        loaded = open_torch(path, DEFAULT_MAX_TENSOR_BYTES)
    except FormatError as exc:
        if str(exc).endswith(OPTIMIZER_ONLY):
            return "an optimizer state (state, param_groups), not a network"
        if str(exc).endswith(NO_TENSORS):
            return "holds no tensors"
        return NETWORK  # corrupt or unsafe: found, and the loader gives its one-line error
    except NNEquivError:
        return NETWORK
    floats = ("float", "bfloat")
    arrays = [
        (name, ref.shape, ref.element.name.startswith(floats))
        for name, ref in loaded.refs.items()
        if isinstance(ref, TensorRef)
    ]
    arrays += [  # a plain pickle's NumPy arrays
        (name, ref.shape, ref.dtype.kind == "f")
        for name, ref in loaded.refs.items()
        if isinstance(ref, np.ndarray)
    ]
    return _listed_reason(arrays)


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
