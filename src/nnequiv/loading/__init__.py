"""Reading weight tensors from every common format, lazily and safely.

:func:`open_weights` turns a path or an in-memory object into a :class:`WeightSource`: a
label, the layout its loader knows (``"oihw"`` for PyTorch, ONNX and TorchScript, ``"hwio"``
for Keras/HDF5; None for bare arrays, where :mod:`nnequiv.layers` infers it), and an iterator
over ``(name, array)`` pairs that reads one tensor at a time.

Safe by construction (docs/security.md): no code from a file ever runs unless
``trust_code=True``: PyTorch pickles and TorchScript archives are read by a restricted
unpickler that rebuilds tensors and nothing else; every declared size is checked against
``max_tensor_bytes`` before anything is allocated, and decompression stops at the declared
size; nothing outside the file is read (HDF5 external links and storage, ONNX external data
outside the model's directory, FIFOs and devices are refused); a corrupt file gets one line
that names it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from nnequiv.errors import FormatError, InputError, NNEquivError
from nnequiv.loading._formats import content_format
from nnequiv.loading._hdf5 import iter_keras
from nnequiv.loading._limits import (
    LIMITS,
    ReaderLimits,
    apply_limit,
    apply_limits,
    check_limit,
    guarded,
    open_regular,
    require_regular,
    shown,
)
from nnequiv.loading._npz import iter_npz, npz_shapes
from nnequiv.loading._onnx import iter_onnx
from nnequiv.loading._pytorch import TorchFile, open_torch
from nnequiv.loading._safetensors import (
    open_safetensors,
    open_safetensors_directory,
    safetensors_header,
)
from nnequiv.loading._shards import ShardSet, is_index_path, open_index, open_shard_set
from nnequiv.loading._source import (
    DEFAULT_MAX_TENSOR_BYTES,
    HWIO,
    LAYOUTS,
    MODEL_SUFFIXES,
    OHWI,
    OIHW,
    OPTIMIZER_STATE,
    OUT_FIRST,
    OUT_LAST,
    TORCH_SUFFIXES,
    Dropped,
    WeightSource,
    canonical_layout,
    count_once,
    flatten,
)

__all__ = [
    "WeightSource",
    "Dropped",
    "LIMITS",
    "ReaderLimits",
    "apply_limits",
    "apply_limit",
    "OPTIMIZER_STATE",
    "open_weights",
    "LAYOUTS",
    "canonical_layout",
    "MODEL_SUFFIXES",
    "OUT_FIRST",
    "OUT_LAST",
    "DEFAULT_MAX_TENSOR_BYTES",
    "OIHW",
    "HWIO",
    "OHWI",
    "ShardSet",
]


def open_weights(
    source,
    layout: str | None = None,
    *,
    trust_code: bool = False,
    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
) -> WeightSource:
    """Open a network's weights from a path or an in-memory object.

    Parameters
    ----------
    source : str, os.PathLike, Mapping, torch.nn.Module, ShardSet or WeightSource
        A file (``.pt/.pth/.bin/.ckpt``, TorchScript, ``.safetensors``, ``.onnx``,
        ``.h5/.keras``, ``.npz``, ``.tflite``, ``.gguf``), a shard index
        (``*.index.json``) or a set of shards, a directory of safetensors shards, a dict of
        arrays or tensors, or a PyTorch module.
    layout : str, optional
        Force the layout of every tensor (see :data:`LAYOUTS`).
    trust_code : bool
        Load PyTorch files with ``torch.jit.load`` / ``torch.load(weights_only=False)``,
        which run code stored in the file. Only for files from a source you trust; by
        default nnequiv reads them as data and never runs their code.
    max_tensor_bytes : int
        Largest tensor a file may declare (also the largest zip member or storage read at
        once); larger ones are refused before anything is allocated. Default 8 GiB.

    Raises
    ------
    InputError, FormatError, UnsafeFileError, ResourceLimitError, MissingDependencyError
        Missing, unknown, corrupt, unsafe or oversized input, each with a one-line message.
    """
    forced = canonical_layout(layout)
    limit = check_limit(max_tensor_bytes)
    if isinstance(source, WeightSource):
        return source if forced is None else dataclasses.replace(source, layout=forced)
    if isinstance(source, Mapping):
        return WeightSource("<dict>", forced, lambda: count_once(flatten(source).items()))
    if hasattr(source, "state_dict") and callable(source.state_dict):
        return WeightSource(
            f"<{type(source).__name__}>",
            forced or OUT_FIRST,
            lambda: count_once(source.state_dict().items()),
        )
    if isinstance(source, ShardSet):  # shards without an index, as discovery groups them
        opened = open_shard_set(source, forced, limit)
        if config_ties_embeddings(Path(source.paths[0]).parent):
            opened = dataclasses.replace(opened, tied_embeddings=True)
        return opened
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(
            f"cannot read weights from a {type(source).__name__}; give a path, a "
            "dict of arrays or a torch module"
        )
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    with guarded(str(path)):
        if path.is_dir():
            opened = _open_folder(path, forced, limit)
        else:
            if require_regular(path).st_size == 0:
                raise FormatError(f"{path}: file is empty")
            opened = _open_file(path, forced, limit, trust_code)
    if config_ties_embeddings(path if path.is_dir() else path.parent):
        opened = dataclasses.replace(opened, tied_embeddings=True)
    return opened


def _open_folder(path: Path, forced: str | None, limit: int) -> WeightSource:
    """A folder: a TensorFlow SavedModel or checkpoint folder, a Core ML package, or
    safetensors shards."""
    from nnequiv.loading._tensorbundle import is_checkpoint_folder, open_tensorbundle

    if is_checkpoint_folder(path):
        return open_tensorbundle(path, forced, limit)
    if path.suffix.lower() == ".mlpackage" or (path / "Manifest.json").is_file():
        from nnequiv.loading._coreml import open_coreml

        return open_coreml(path, forced, limit)
    return open_safetensors_directory(path, forced, limit)


#: Largest ``config.json`` read for its ``tie_word_embeddings``.
MAX_CONFIG_BYTES = 1 << 20


def config_ties_embeddings(folder: Path) -> bool:
    """Whether the Hugging Face ``config.json`` in ``folder`` declares
    ``tie_word_embeddings: true``. A missing, oversized or unreadable config says nothing."""
    from nnequiv.loading._safetensors import parse_json

    config = folder / "config.json"
    try:
        if not config.is_file() or config.stat().st_size > MAX_CONFIG_BYTES:
            return False
        with open_regular(config) as handle:
            content = parse_json(handle.read(MAX_CONFIG_BYTES), str(config), "config")
    except (NNEquivError, OSError):
        return False
    return isinstance(content, dict) and content.get("tie_word_embeddings") is True


#: The reader of each file suffix, where the content does not say (see
#: :func:`nnequiv.loading._formats.content_format`, which wins where it does).
KIND_BY_SUFFIX = {
    ".tflite": "tflite",
    ".gguf": "gguf",
    ".npz": "npz",
    ".npy": "npy",
    ".safetensors": "safetensors",
    ".onnx": "onnx",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".keras": "keras",
    ".index": "tensorbundle",
    ".mlmodel": "coreml",
    **dict.fromkeys(TORCH_SUFFIXES, "torch"),
}


def _open_file(path: Path, forced: str | None, limit: int, trust_code: bool) -> WeightSource:
    label = str(path)
    suffix = path.suffix.lower()
    if is_index_path(path):
        return open_index(path, forced, limit)
    kind = content_format(path) or KIND_BY_SUFFIX.get(suffix)
    if kind is None and path.name.lower().endswith(".index"):  # a checkpoint's '.index'
        kind = "tensorbundle"
    if kind in {"tflite", "gguf", "ggml"}:
        from nnequiv.loading._ggml import open_ggml
        from nnequiv.loading._gguf import open_gguf
        from nnequiv.loading._tflite import open_tflite

        opener = {"tflite": open_tflite, "gguf": open_gguf, "ggml": open_ggml}[kind]
        return opener(path, forced, max_tensor_bytes=limit)
    if kind == "npz":
        return WeightSource(
            label, forced, lambda: iter_npz(path, limit), lambda: npz_shapes(path, limit)
        )
    if kind == "npy":
        from nnequiv.loading._npy import open_npy

        return open_npy(path, forced, limit)
    if kind == "safetensors":
        safetensors_header(path, limit)  # fail early on a bad header
        return open_safetensors(label, [path], forced, limit)
    if kind == "onnx":
        return WeightSource(label, forced or OUT_FIRST, lambda: iter_onnx(path, limit))
    if kind in {"hdf5", "keras"}:
        archive = kind == "keras"
        return WeightSource(label, forced or OUT_LAST, lambda: iter_keras(path, limit, archive))
    if kind == "tensorbundle":
        from nnequiv.loading._tensorbundle import open_tensorbundle

        return open_tensorbundle(path, forced, limit)
    if kind in {"coreml", "coreml-weights"}:
        from nnequiv.loading._coreml import open_coreml

        return open_coreml(path, forced, limit)
    if kind == "torch":
        loaded = open_torch(path, limit, trust_code)
        if isinstance(loaded, TorchFile):
            return WeightSource(label, forced or OUT_FIRST, loaded.tensors, loaded.shapes)
        return WeightSource(label, forced or OUT_FIRST, lambda: iter(loaded.items()))
    raise FormatError(
        f"{path}: unknown weight format '{shown(suffix or path.name, 40)}'; expected one of "
        f"{', '.join(sorted(MODEL_SUFFIXES))} or a directory of safetensors"
    )
