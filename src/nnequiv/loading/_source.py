"""What every loader returns: a :class:`WeightSource`, and the layouts a loader can know."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
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
TORCH_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".pkl", ".tar", ".jit"}
#: File endings recognised as networks when a directory is expanded.
MODEL_SUFFIXES = TORCH_SUFFIXES | {
    *(".npz", ".npy", ".safetensors", ".onnx", ".h5", ".hdf5", ".keras"),
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


#: Why the state of an optimizer (Adam moments, Keras ``optimizer/vars``) is not read.
OPTIMIZER_STATE = "optimizer state, not a layer of the network"


@dataclass(frozen=True)
class Dropped:
    """A tensor a loader leaves out, with its shape and why (optimizer state, a second name
    of a tensor already given): it appears in the analysis's skipped list, never as a layer."""

    shape: tuple[int, ...]
    reason: str


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
        Pairs whose value is a :class:`Dropped` are tensors the loader leaves out.
    shape_reader : callable, optional
        Returns a fresh iterator of ``(name, shape)`` pairs without reading the tensors (the
        tensors kept only).
    tied_embeddings : bool
        The model's ``config.json`` declares ``tie_word_embeddings: true`` (see
        :mod:`nnequiv.layers`: identical tied embeddings are counted once).
    """

    label: str
    layout: str | None
    opener: Callable[[], Iterator[tuple[str, object]]]
    shape_reader: Callable[[], Iterator[tuple[str, tuple]]] | None = None
    tied_embeddings: bool = False

    def shapes(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        """Iterate ``(name, shape)`` pairs, from file headers where the format has them."""
        if self.shape_reader is not None:
            yield from self.shape_reader()
        else:
            for name, array in self.tensors():
                yield name, tuple(array.shape)

    def items(self) -> Iterator[tuple[str, np.ndarray | Dropped]]:
        """Iterate ``(name, numpy array)`` pairs, and ``(name, Dropped)`` for the tensors the
        loader leaves out, in the file's order."""
        from nnequiv.loading._limits import guarded

        with guarded(self.label):
            for name, value in self.opener():
                if isinstance(value, Dropped):
                    yield str(name), value
                else:
                    yield str(name), _to_numpy(value, name, self.label)

    def tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """Iterate ``(name, numpy array)`` pairs, one tensor in memory at a time."""
        for name, value in self.items():
            if not isinstance(value, Dropped):
                yield name, value


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


def alias_key(value) -> tuple | None:
    """What identifies the memory a tensor views: its storage, element type, offset, shape
    and strides (None for an empty tensor or a value that is not a tensor)."""
    from nnequiv.loading._restricted import TensorRef

    if isinstance(value, TensorRef):
        if not math.prod(value.shape):
            return None
        storage = value.storage
        return ("ref", storage.key, value.element.name, value.offset, value.shape, value.stride)
    if isinstance(value, np.ndarray):
        if not value.size:
            return None
        address = value.__array_interface__["data"][0]
        return ("numpy", address, value.dtype.str, value.shape, value.strides)
    if type(value).__module__.startswith("torch") and hasattr(value, "untyped_storage"):
        if not value.numel():
            return None
        storage = value.untyped_storage().data_ptr()
        offset = value.storage_offset()
        return ("torch", storage, str(value.dtype), offset, tuple(value.shape), value.stride())
    return None


def shared_reason(first: str) -> str:
    """Why a second name of the same stored tensor is not counted again."""
    return f"same storage as '{first}' (tied weights): counted once"


def count_once(items: Iterable[tuple[str, object]]) -> Iterator[tuple[str, object]]:
    """``items`` with every tensor that views the same storage, offset, shape and strides as
    an earlier one replaced by a :class:`Dropped` naming the first (GPT-2's ``lm_head.weight``
    is its ``wte.weight``)."""
    first: dict[tuple, str] = {}
    for name, value in items:
        key = alias_key(value)
        if key is None:
            yield name, value
        elif key in first:
            yield name, Dropped(tuple(value.shape), shared_reason(first[key]))
        else:
            first[key] = str(name)
            yield name, value


def listed_source(path, layout: str | None, listed: list, read: Callable) -> WeightSource:
    """The :class:`WeightSource` of a file whose table lists its tensors, checked already:
    ``listed`` holds their ``(name, shape)``, ``read()`` yields their ``(name, array)``
    pairs when they are asked for."""
    return WeightSource(str(path), layout, read, lambda: iter(listed))
