"""NumPy ``.npy`` files: one array, or a pickled object (a dict of arrays, as some Keras ports
ship their weights) read through the restricted unpickler.

The header (version, shape, dtype) is read first. A numeric array's size is checked against
the limit and the file before it is read; it is one tensor, named after the file. A plain
little-endian array in C order stays in its file, as a safetensors tensor does: its layer is
read in blocks where it is large (method item 2), so a layer larger than the memory left is
still analysed. An object
array is a pickle: it is rebuilt by :mod:`nnequiv.loading._restricted`, which builds plain
numeric arrays from their bytes and nothing else (no class of the file is imported, no
function called), and the arrays found in it, in nested dicts, are the tensors, with dotted
names.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from nnequiv.errors import FormatError
from nnequiv.loading._limits import (
    open_regular,
    reading,
    require_depth,
    require_within,
    tensor_nbytes,
)
from nnequiv.loading._source import WeightSource, count_once

_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
    (3, 0): np.lib.format.read_array_header_2_0,
}


def _header(handle, label: str):
    with reading(label, "not a readable .npy file (corrupt header)"):
        version = np.lib.format.read_magic(handle)
        if version not in _HEADER_READERS:
            raise FormatError(f"{label}: .npy version {version} is not read")
        if version == (3, 0):
            return np.lib.format._read_array_header(handle, version)
        return _HEADER_READERS[version](handle)


def npy_arrays(path: Path, limit: int) -> dict[str, np.ndarray]:
    """The arrays of a ``.npy`` file by name (the file's stem for a plain array)."""
    from nnequiv.loading._restricted import unpickle

    label = str(path)
    with open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        shape, fortran, dtype = _header(handle, label)
        start = handle.tell()
        if dtype.hasobject:
            root = unpickle(handle, label, limit)
            return _arrays_in(root, label)
        nbytes = tensor_nbytes(label, path.stem, shape, dtype.itemsize, limit)
        if size - start != nbytes:
            raise FormatError(
                f"{label}: holds {size - start} bytes of data, its header declares {nbytes}"
            )
        require_within(label, f"array ({nbytes} bytes)", nbytes, limit)
        raw = handle.read(nbytes)
    count = math.prod(shape)
    with reading(label, "cannot be decoded"):
        flat = np.frombuffer(raw, dtype=dtype, count=count) if count else np.empty(0, dtype)
        return {path.stem: flat.reshape(shape, order="F" if fortran else "C")}


def _arrays_in(root, label: str) -> dict[str, np.ndarray]:
    """The numeric arrays in a pickled object: nested dicts (and lists) walked iteratively,
    each container once, names dotted."""
    if isinstance(root, np.ndarray) and root.dtype.kind in "biufc":
        return {"array": root}
    found: dict[str, np.ndarray] = {}
    stack = [("", root)]
    seen: set[int] = set()
    while stack:
        prefix, value = stack.pop()
        if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
            found[prefix.rstrip(".")] = value
        elif isinstance(value, (Mapping, list, tuple)) and id(value) not in seen:
            seen.add(id(value))
            require_depth(label, prefix.count(".") + 1)
            items = value.items() if isinstance(value, Mapping) else enumerate(value)
            stack.extend(reversed([(f"{prefix}{key}.", item) for key, item in items]))
    if not found:
        raise FormatError(f"{label}: the pickled object of this .npy file holds no arrays")
    return found


def stored_npy(path: Path, limit: int):
    """The array of a plain ``.npy`` file as a :class:`StoredTensor` (left in its file, read
    in blocks where it is large), or None where it cannot be: a pickle, Fortran order, a
    big-endian or unknown element type."""
    from nnequiv.loading._dtypes import ELEMENT_TYPES
    from nnequiv.loading._safetensors import StoredTensor

    label = str(path)
    with open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        shape, fortran, dtype = _header(handle, label)
        start = handle.tell()
    element = ELEMENT_TYPES.get(dtype.name)
    if dtype.hasobject or fortran or element is None or np.dtype(element.bits) != dtype:
        return None  # stored elements are little-endian: a big-endian array is read whole
    nbytes = tensor_nbytes(label, path.stem, shape, dtype.itemsize, limit)
    if size - start != nbytes:
        raise FormatError(
            f"{label}: holds {size - start} bytes of data, its header declares {nbytes}"
        )
    return StoredTensor(path, path.stem, element, tuple(shape), start)


def open_npy(path: Path, forced, limit: int) -> WeightSource:
    """The :class:`WeightSource` of a ``.npy`` file: a plain array stays in its file (its
    layer is read in blocks where it is large), a pickle is read whole now."""
    from nnequiv.loading._safetensors import StoredWeights

    stored = stored_npy(path, limit)
    if stored is not None:
        return StoredWeights(
            str(path),
            forced,
            lambda: iter([(stored.name, stored.read())]),
            lambda: iter([(stored.name, stored.shape)]),
            stored=lambda: iter([stored]),
        )
    arrays = npy_arrays(path, limit)
    return WeightSource(
        str(path),
        forced,
        lambda: count_once(arrays.items()),
        lambda: ((name, array.shape) for name, array in arrays.items()),
    )


def npy_names(path: Path, limit: int) -> Iterator[tuple[str, tuple, bool]]:
    """``(name, shape, is_float)`` of the arrays of a ``.npy`` file."""
    for name, array in npy_arrays(path, limit).items():
        yield name, array.shape, array.dtype.kind == "f"
