"""Reading weight tensors from every common format, lazily and safely.

:func:`open_weights` turns a path or an in-memory object into a :class:`WeightSource`: a
label, the layout its loader knows (``"out-first"`` or ``"out-last"``; None for bare arrays,
where :mod:`nnequiv.layers` infers it), and an iterator over ``(name, array)`` pairs that
reads one tensor at a time where the format allows it (npz, safetensors, HDF5, ONNX).

Pickles are loaded with ``torch.load(weights_only=True)`` only: a file that needs foreign
code is refused, never loaded unsafely.
"""

from __future__ import annotations

import json
import os
import struct
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnequiv.errors import FormatError, InputError, MissingDependencyError, UnsafeFileError

__all__ = ["WeightSource", "open_weights", "LAYOUTS", "canonical_layout", "MODEL_SUFFIXES"]

OUT_FIRST, OUT_LAST = "out-first", "out-last"
#: Accepted spellings of the two layouts.
LAYOUTS = {
    "out-first": OUT_FIRST,
    "oihw": OUT_FIRST,
    "pytorch": OUT_FIRST,
    "torch": OUT_FIRST,
    "onnx": OUT_FIRST,
    "paddle": OUT_FIRST,
    "out-last": OUT_LAST,
    "hwio": OUT_LAST,
    "tf": OUT_LAST,
    "tensorflow": OUT_LAST,
    "keras": OUT_LAST,
    "tfjs": OUT_LAST,
}
TORCH_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".pkl", ".tar"}
#: File endings recognised as networks when a directory is expanded.
MODEL_SUFFIXES = TORCH_SUFFIXES | {".npz", ".safetensors", ".onnx", ".h5", ".hdf5", ".keras"}
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
    """``"out-first"``, ``"out-last"`` or None from any accepted spelling."""
    if layout is None:
        return None
    key = str(layout).strip().lower()
    if key not in LAYOUTS:
        raise InputError(
            f"unknown layout {layout!r}; use 'out-first' (PyTorch/ONNX/Paddle) "
            "or 'out-last' (TensorFlow/Keras/TF.js)"
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


def _flatten(mapping: Mapping, prefix: str = "") -> dict:
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


# ---- NumPy ---------------------------------------------------------------------------


def _iter_npz(path: Path):
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise FormatError(f"{path}: not a readable .npz archive ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise FormatError(f"{path}: not an .npz archive of named arrays")
    with archive:
        for name in archive.files:
            try:
                value = archive[name]
            except ValueError as exc:
                if "pickle" in str(exc).lower():
                    raise UnsafeFileError(
                        f"{path}: array '{name}' is a pickled object; refusing to unpickle"
                    ) from exc
                raise FormatError(f"{path}: array '{name}' is corrupt ({exc})") from exc
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise FormatError(
                    f"{path}: array '{name}' is truncated or corrupt ({exc})"
                ) from exc
            yield name, value


def _npz_shapes(path: Path):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FormatError(f"{path}: not a readable .npz archive ({exc})") from exc
    with archive:
        for member in archive.namelist():
            if not member.endswith(".npy"):
                continue
            try:
                with archive.open(member) as handle:
                    version = np.lib.format.read_magic(handle)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, _ = read_header(handle)
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise FormatError(f"{path}: array '{member[:-4]}' is corrupt ({exc})") from exc
            yield member[:-4], tuple(shape)


# ---- safetensors (own reader: header json + memory map, no dependency) ---------------

_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def _safetensors_header(path: Path) -> tuple[dict, int]:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise FormatError(f"{path}: truncated safetensors file (no header)")
        (length,) = struct.unpack("<Q", raw)
        if length > size - 8:
            raise FormatError(f"{path}: truncated or corrupt safetensors header")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FormatError(f"{path}: corrupt safetensors header ({exc})") from exc
    header.pop("__metadata__", None)
    data_size = size - 8 - length
    for name, info in header.items():
        start, end = info["data_offsets"]
        if end > data_size:
            raise FormatError(
                f"{path}: truncated safetensors file (tensor '{name}' ends past "
                "the end of the file)"
            )
    return header, 8 + length


def _iter_safetensors(paths):
    for path in paths:
        header, offset = _safetensors_header(path)
        mapped = np.memmap(path, dtype=np.uint8, mode="r")
        for name, info in header.items():
            dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
            if dtype is None:
                continue  # float8 and other types have no numpy equivalent
            start, end = info["data_offsets"]
            array = mapped[offset + start : offset + end].view(dtype).reshape(info["shape"])
            if info["dtype"] == "BF16":
                array = (array.astype(np.uint32) << 16).view(np.float32)
            yield name, array


def _safetensors_shapes(paths):
    for path in paths:
        header, _ = _safetensors_header(path)
        for name, info in header.items():
            yield name, tuple(info["shape"])


def _open_safetensors_dir(path: Path, forced) -> WeightSource:
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if indexes:
        try:
            weight_map = json.loads(indexes[0].read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise FormatError(f"{indexes[0]}: corrupt safetensors index ({exc})") from exc
        shards = [path / name for name in dict.fromkeys(weight_map.values())]
        missing = [str(shard) for shard in shards if not shard.exists()]
        if missing:
            raise InputError(f"{indexes[0]}: shard missing: {missing[0]}")
    else:
        shards = sorted(path.glob("*.safetensors"))
    if not shards:
        raise InputError(f"{path}: directory holds no safetensors weights")
    for shard in shards:
        _safetensors_header(shard)
    return WeightSource(
        str(path), forced, lambda: _iter_safetensors(shards), lambda: _safetensors_shapes(shards)
    )


# ---- ONNX ----------------------------------------------------------------------------


def _iter_onnx(path: Path):
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise MissingDependencyError("onnx", "onnx", f"reading {path}") from exc
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise FormatError(f"{path}: not a readable ONNX model ({exc})") from exc
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for tensor in graph.initializer:
            yield tensor.name, numpy_helper.to_array(tensor)
        for node in graph.node:
            for attribute in node.attribute:
                if node.op_type == "Constant" and attribute.name == "value":
                    yield (node.output[0] or node.name), numpy_helper.to_array(attribute.t)
                graphs.extend(attribute.graphs)
                if attribute.HasField("g"):
                    graphs.append(attribute.g)


# ---- Keras / HDF5 --------------------------------------------------------------------


def _iter_keras(path: Path):
    try:
        import h5py
    except ImportError as exc:
        raise MissingDependencyError("h5py", "keras", f"reading {path}") from exc
    if path.suffix.lower() == ".keras":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise FormatError(f"{path}: not a readable .keras archive ({exc})") from exc
        with archive:
            members = [m for m in archive.namelist() if m.endswith(".h5")]
            if not members:
                raise FormatError(f"{path}: .keras archive holds no weights file")
            import io

            buffer = io.BytesIO(archive.read(members[0]))
        opened = h5py.File(buffer, "r")
    else:
        try:
            opened = h5py.File(path, "r")
        except OSError as exc:
            raise FormatError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with opened as handle:
        found = []
        handle.visititems(
            lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None
        )
        for name in found:
            try:
                yield name, handle[name][()]
            except OSError as exc:
                raise FormatError(f"{path}: dataset '{name}' is truncated or corrupt") from exc


# ---- PyTorch -------------------------------------------------------------------------


def _load_torch(path: Path) -> dict:
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", "torch", f"reading {path}") from exc
    if _is_torchscript(path):
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise FormatError(f"{path}: unreadable TorchScript archive ({exc})") from exc
        return dict(module.state_dict())
    try:
        with warnings.catch_warnings():
            # torch's advice on pickle protocols; the file either loads or gets a clear error
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc).strip()
        first = text.splitlines()[0][:160] if text else type(exc).__name__
        if "weights_only" in text or "Unsupported global" in text or "GLOBAL" in text:
            raise UnsafeFileError(
                f"{path}: pickle needs foreign code to load, refused (weights_only=True): {first}"
            ) from exc
        raise FormatError(f"{path}: not a readable PyTorch file ({first})") from exc
    return _find_state_dict(obj, path)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def _is_tensor(value) -> bool:
    return (
        type(value).__module__.startswith("torch")
        and hasattr(value, "dtype")
        or isinstance(value, np.ndarray)
    )


def _find_state_dict(obj, path: Path) -> dict:
    if isinstance(obj, Mapping):
        flat = _flatten(obj)
        tensors = {k: v for k, v in flat.items() if _is_tensor(v)}
        for key in STATE_DICT_KEYS:
            nested = obj.get(key)
            if isinstance(nested, Mapping) and any(
                _is_tensor(v) for v in _flatten(nested).values()
            ):
                return {k: v for k, v in _flatten(nested).items() if _is_tensor(v)}
        if tensors:
            return tensors
    elif _is_tensor(obj):
        return {"tensor": obj}
    raise FormatError(f"{path}: holds no state_dict of tensors")
