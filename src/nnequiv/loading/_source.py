"""What every loader returns: a :class:`WeightSource`, and the layouts a loader can know."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from nnequiv.errors import FormatError, InputError
from nnequiv.settings import DEFAULT_MAX_TENSOR_BYTES  # noqa: F401 (exported)

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
MODEL_SUFFIXES = TORCH_SUFFIXES | {
    *(".npz", ".safetensors", ".onnx", ".h5", ".hdf5", ".keras"),
    *(".tflite", ".gguf"),  # through the optional tflite and gguf packages
}
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
        ``"oihw"``, ``"hwio"``, ``"ohwi"``, or None when it must be inferred per file.
    opener : callable
        Returns a fresh iterator of ``(name, array-like)`` pairs.
    shape_reader : callable, optional
        Returns a fresh iterator of ``(name, shape)`` pairs without reading the tensors.
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


def flatten(mapping: Mapping) -> dict:
    """Nested mappings as one dict with dotted keys (``{"a": {"b": x}}`` -> ``{"a.b": x}``).

    Iterative, and each mapping is entered once, so a deep or self-referencing structure from
    a file cannot exhaust the stack.
    """
    flat = {}
    stack = [("", iter(mapping.items()))]
    seen = {id(mapping)}
    while stack:
        prefix, items = stack[-1]
        for key, value in items:
            name = f"{prefix}{key}"
            if not isinstance(value, Mapping):
                flat[name] = value
            elif id(value) not in seen:
                seen.add(id(value))
                stack.append((name + ".", iter(value.items())))
                break
        else:
            stack.pop()
    return flat
