"""Keras / HDF5 weights (``.h5``, ``.hdf5``, ``.keras`` zips) through h5py."""

from __future__ import annotations

import zipfile
from pathlib import Path

from nnequiv.errors import FormatError, MissingDependencyError


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
