"""PyTorch pickles (``torch.load(weights_only=True)`` only) and TorchScript archives."""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from nnequiv.errors import FormatError, MissingDependencyError, UnsafeFileError
from nnequiv.loading._source import STATE_DICT_KEYS, _flatten


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
