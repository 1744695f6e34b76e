"""Reading weight tensors from every common format, lazily and safely.

:func:`open_weights` turns a path or an in-memory object into a :class:`WeightSource`: a
label, the layout its loader knows (``"out-first"`` or ``"out-last"``; None for bare arrays,
where :mod:`nnequiv.layers` infers it), and an iterator over ``(name, array)`` pairs that
reads one tensor at a time where the format allows it (npz, safetensors, HDF5, ONNX).

Pickles are loaded with ``torch.load(weights_only=True)`` only: a file that needs foreign
code is refused, never loaded unsafely.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from nnequiv.errors import FormatError, InputError
from nnequiv.loading._hdf5 import _iter_keras
from nnequiv.loading._npz import _iter_npz, _npz_shapes
from nnequiv.loading._onnx import _iter_onnx
from nnequiv.loading._pytorch import _load_torch
from nnequiv.loading._safetensors import (
    _iter_safetensors,
    _open_safetensors_dir,
    _safetensors_header,
    _safetensors_shapes,
)
from nnequiv.loading._shards import ShardSet, is_index_path, open_index, open_shard_set
from nnequiv.loading._source import (
    HWIO,
    LAYOUTS,
    MODEL_SUFFIXES,
    OHWI,
    OIHW,
    OUT_FIRST,
    OUT_LAST,
    TORCH_SUFFIXES,
    WeightSource,
    _flatten,
    canonical_layout,
)

__all__ = [
    "WeightSource",
    "open_weights",
    "LAYOUTS",
    "canonical_layout",
    "MODEL_SUFFIXES",
    "OIHW",
    "HWIO",
    "OHWI",
    "OUT_FIRST",
    "OUT_LAST",
    "ShardSet",
]


def open_weights(source, layout: str | None = None) -> WeightSource:
    """Open a network's weights from a path or an in-memory object.

    Parameters
    ----------
    source : str, os.PathLike, Mapping, torch.nn.Module or WeightSource
        A file (``.pt/.pth/.bin/.ckpt``, ``.safetensors``, ``.onnx``, ``.h5/.keras``,
        ``.npz``), a directory of safetensors shards, a dict of arrays or tensors, or a
        PyTorch module.
    layout : str, optional
        Force the layout of every tensor (see :data:`LAYOUTS`).

    Raises
    ------
    InputError, FormatError, UnsafeFileError, MissingDependencyError
        Missing, unknown, corrupt or unsafe input, each with a one-line message.
    """
    forced = canonical_layout(layout)
    if isinstance(source, WeightSource):
        return source if forced is None else WeightSource(source.label, forced, source.opener)
    if isinstance(source, Mapping):
        return WeightSource("<dict>", forced, lambda: iter(_flatten(source).items()))
    if hasattr(source, "state_dict") and callable(source.state_dict):
        return WeightSource(
            f"<{type(source).__name__}>",
            forced or OUT_FIRST,
            lambda: iter(source.state_dict().items()),
        )
    if isinstance(source, ShardSet):  # shards without an index, as discovery groups them
        return open_shard_set(source, forced)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(
            f"cannot read weights from a {type(source).__name__}; give a path, a "
            "dict of arrays or a torch module"
        )
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        return _open_safetensors_dir(path, forced)
    if path.stat().st_size == 0:
        raise FormatError(f"{path}: file is empty")
    suffix = path.suffix.lower()
    # formats and multi-file networks of nnequiv.discovery (_shards, _tflite, _gguf)
    if is_index_path(path):
        return open_index(path, forced)
    if suffix in {".tflite", ".gguf"}:
        from nnequiv.loading._gguf import open_gguf
        from nnequiv.loading._tflite import open_tflite

        return (open_tflite if suffix == ".tflite" else open_gguf)(path, forced)
    if suffix == ".npz":
        return WeightSource(str(path), forced, lambda: _iter_npz(path), lambda: _npz_shapes(path))
    if suffix == ".safetensors":
        _safetensors_header(path)  # fail early on a bad header
        return WeightSource(
            str(path),
            forced,
            lambda: _iter_safetensors([path]),
            lambda: _safetensors_shapes([path]),
        )
    if suffix == ".onnx":
        return WeightSource(str(path), forced or OUT_FIRST, lambda: _iter_onnx(path))
    if suffix in {".h5", ".hdf5", ".keras"}:
        return WeightSource(str(path), forced or OUT_LAST, lambda: _iter_keras(path))
    if suffix in TORCH_SUFFIXES:
        tensors = _load_torch(path)
        return WeightSource(str(path), forced or OUT_FIRST, lambda: iter(tensors.items()))
    raise FormatError(
        f"{path}: unknown weight format '{suffix or path.name}'; expected one of "
        f"{', '.join(sorted(MODEL_SUFFIXES))} or a directory of safetensors"
    )
