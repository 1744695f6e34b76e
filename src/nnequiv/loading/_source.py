"""What every loader returns: a :class:`WeightSource`, and the layouts a loader can know."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from nnequiv.errors import FormatError, InputError

#: The three kernel layouts: output axis first, spatial axes last (PyTorch, ONNX, Paddle);
#: spatial axes first, output axis last (TensorFlow, Keras, TF.js); output axis first,
#: spatial axes in the middle, input axis last (TFLite).
OIHW, HWIO, OHWI = "oihw", "hwio", "ohwi"
OUT_FIRST, OUT_LAST = OIHW, HWIO
#: Accepted spellings of the layouts.
LAYOUTS = {
    **dict.fromkeys(("oihw", "out-first", "pytorch", "torch", "onnx", "paddle"), OIHW),
    **dict.fromkeys(("hwio", "out-last", "tf", "tensorflow", "keras", "tfjs"), HWIO),
    **dict.fromkeys(("ohwi", "tflite"), OHWI),
}
TORCH_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".pkl", ".tar"}
#: File endings recognised as networks when a directory is expanded.
MODEL_SUFFIXES = TORCH_SUFFIXES | {".npz", ".safetensors", ".onnx", ".h5", ".hdf5", ".keras"}
#: Read through the optional ``tflite`` and ``gguf`` packages.
MODEL_SUFFIXES = MODEL_SUFFIXES | {".tflite", ".gguf"}
STATE_DICT_KEYS = (
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "network",
    "weights",
    "params",
    "module",
)


def canonical_layout(layout: str | None) -> str | None:
    """``"oihw"``, ``"hwio"``, ``"ohwi"`` or None from any accepted spelling."""
    if layout is None:
        return None
    key = str(layout).strip().lower()
    if key not in LAYOUTS:
        raise InputError(
            f"unknown layout {layout!r}; use 'oihw' (PyTorch/ONNX/Paddle), "
            "'hwio' (TensorFlow/Keras/TF.js) or 'ohwi' (TFLite)"
        )
    return LAYOUTS[key]


@dataclass
class WeightSource:
    """Named tensors of one network, read on demand.

    Attributes
    ----------
    label : str
        Where the tensors come from (a path or ``"<dict>"``), used in messages.
    layout : str or None
        ``"out-first"``, ``"out-last"``, or None when it must be inferred per file.
    opener : callable
        Returns a fresh iterator of ``(name, array-like)`` pairs.
    """

    label: str
    layout: str | None
    opener: Callable[[], Iterator[tuple[str, object]]]
    shape_reader: Callable[[], Iterator[tuple[str, tuple]]] | None = None

    def shapes(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        """Iterate ``(name, shape)`` pairs, from file headers where the format has them."""
        if self.shape_reader is not None:
            yield from self.shape_reader()
        else:
            for name, array in self.tensors():
                yield name, tuple(array.shape)

    def tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """Iterate ``(name, numpy array)`` pairs, one tensor in memory at a time."""
        for name, value in self.opener():
            yield str(name), _to_numpy(value, name, self.label)


def _to_numpy(value, name, label) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    module = type(value).__module__
    if module.startswith("torch"):
        tensor = value.detach()
        if tensor.dtype.is_floating_point and tensor.dtype not in _numpy_float_torch_dtypes():
            tensor = tensor.float()  # bfloat16 / float8 have no numpy dtype
        return tensor.cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise FormatError(
            f"{label}: tensor '{name}' is not an array ({type(value).__name__})"
        ) from exc


def _numpy_float_torch_dtypes():
    import torch

    return {torch.float16, torch.float32, torch.float64}


def _flatten(mapping: Mapping, prefix: str = "") -> dict:
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


# --- Bounded reads of one tensor's bytes (the TFLite and GGUF readers) ----------------------


def tensor_byte_limit(max_tensor_bytes: int | None = None) -> int:
    """``max_tensor_bytes``, or the package default (8 GiB where none is set)."""
    if max_tensor_bytes is not None:
        return int(max_tensor_bytes)
    return int(globals().get("DEFAULT_MAX_TENSOR_BYTES", 8 << 30))


def read_tensor_bytes(handle, label, name, shape, offset, nbytes, itemsize, limit) -> np.ndarray:
    """The ``nbytes`` raw bytes of tensor ``name`` at ``offset`` of an open file, refused
    before reading when the decoded array (``itemsize`` bytes a value) would pass ``limit``."""
    decoded = int(np.prod(shape, dtype=object)) * itemsize
    if max(decoded, nbytes) > limit:
        raise FormatError(
            f"{label}: tensor '{name}' {tuple(shape)} would take {decoded} bytes, more than "
            f"the limit of {limit}"
        )
    handle.seek(offset)
    raw = np.fromfile(handle, dtype=np.uint8, count=nbytes)
    if raw.size != nbytes:
        raise FormatError(f"{label}: truncated file (tensor '{name}' ends past the end)")
    return raw
