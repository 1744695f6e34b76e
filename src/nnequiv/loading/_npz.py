"""NumPy ``.npz`` archives, read one array at a time with ``allow_pickle=False``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from nnequiv.errors import FormatError, UnsafeFileError


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
