"""NumPy ``.npz`` archives, one array at a time, without pickles.

Each ``.npy`` member's header (shape, dtype) is read first; an object dtype (a pickle) is
refused, the array's size is checked against the limit and against the member's declared
size, and only then are exactly that many bytes decompressed.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nnequiv.errors import FormatError, UnsafeFileError
from nnequiv.loading._limits import (
    DecodeBudget,
    reading,
    require_count,
    shown,
    tensor_nbytes,
)
from nnequiv.loading._npy import NPY_VERSIONS, npy_header
from nnequiv.loading._zip import read_exact, require_end, require_plain, zip_archive


def iter_npz(path: Path, limit: int, names=None) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, array)`` for every ``.npy`` member (or only those in ``names``), in order."""
    label = str(path)
    budget = DecodeBudget(label, os.stat(path).st_size)
    with zip_archive(path, ".npz archive") as archive:
        for info in _npy_members(archive, label):
            name = info.filename[:-4]
            if names is None or name in names:
                yield name, _read_npy(archive, info, label, limit, budget)


def npz_shapes(path: Path, limit: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of every ``.npy`` member, from the headers alone."""
    label = str(path)
    with zip_archive(path, ".npz archive") as archive:
        for info in _npy_members(archive, label):
            with _member(archive, info, label) as stream:
                shape, _, _ = _npy_header(stream, info, label, limit)
            yield info.filename[:-4], shape


def _npy_members(archive: zipfile.ZipFile, label: str) -> list[zipfile.ZipInfo]:
    with reading(label, "not a readable .npz archive"):
        infos = archive.infolist()
    require_count(label, "archive members", len(infos), "max_tensors")
    return [info for info in infos if info.filename.endswith(".npy") and not info.is_dir()]


def _member(archive, info, label):
    require_plain(info, label, f"array '{shown(info.filename[:-4])}'")
    with reading(label, f"array '{shown(info.filename[:-4])}' is corrupt"):
        return archive.open(info)


def _npy_header(stream, info, label: str, limit: int):
    name = shown(info.filename[:-4])
    what = f"array '{name}' has a corrupt header"
    with reading(label, what):
        version = np.lib.format.read_magic(stream)
        if version not in NPY_VERSIONS:
            raise FormatError(f"{label}: array '{name}' uses .npy version {version}, not 1.0-3.0")
        shape, fortran_order, dtype = npy_header(stream, version)
        header_bytes = stream.tell()
    if dtype.hasobject:
        raise UnsafeFileError(f"{label}: array '{name}' is a pickled object; refusing to unpickle")
    nbytes = tensor_nbytes(label, info.filename[:-4], shape, dtype.itemsize, limit)
    if info.file_size != header_bytes + nbytes:
        raise FormatError(
            f"{label}: array '{name}' is corrupt: its member holds {info.file_size} bytes, "
            f"its header declares {header_bytes + nbytes}"
        )
    return tuple(shape), fortran_order, dtype


def _read_npy(archive, info, label: str, limit: int, budget: DecodeBudget) -> np.ndarray:
    name = shown(info.filename[:-4])
    with _member(archive, info, label) as stream:
        shape, fortran_order, dtype = _npy_header(stream, info, label, limit)
        count = math.prod(shape)
        budget.take(count * dtype.itemsize, f"array '{name}'")
        data = read_exact(stream, count * dtype.itemsize, label, f"array '{name}'")
        require_end(stream, label, f"array '{name}'")
    with reading(label, f"array '{name}' cannot be decoded"):
        flat = np.frombuffer(data, dtype=dtype, count=count) if count else np.empty(0, dtype)
        return flat.reshape(shape, order="F" if fortran_order else "C")
