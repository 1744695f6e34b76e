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

import ast
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

#: The ``.npy`` format versions read (3.0 is 2.0 with UTF-8 field names).
NPY_VERSIONS = ((1, 0), (2, 0), (3, 0))
#: Longest header read, as NumPy's own limit (a header is a few hundred bytes).
MAX_HEADER_BYTES = 10_000


def npy_header(stream, version: tuple[int, int]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` from the header that follows the magic string of
    ``version`` (one of :data:`NPY_VERSIONS`), parsed as NumPy documents the format: a
    little-endian length, then a Python literal dict with exactly the keys ``descr``,
    ``fortran_order`` and ``shape``, read as a literal (nothing is evaluated).

    Raises
    ------
    ValueError
        The header is too long, not such a literal, or describes no valid array.
    """
    width = 2 if version == (1, 0) else 4
    length = int.from_bytes(stream.read(width), "little")
    if length > MAX_HEADER_BYTES:
        raise ValueError(f"header of {length} bytes (at most {MAX_HEADER_BYTES} are read)")
    raw = stream.read(length)
    if len(raw) != length:
        raise ValueError("truncated header")
    try:
        fields = ast.literal_eval(raw.decode("latin1" if version < (3, 0) else "utf-8"))
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(f"header is not a literal dict ({type(exc).__name__})") from None
    if not isinstance(fields, dict) or set(fields) != {"descr", "fortran_order", "shape"}:
        raise ValueError("header is not a dict of descr, fortran_order and shape")
    shape, fortran_order = fields["shape"], fields["fortran_order"]
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise ValueError(f"shape {shape!r} is not a tuple of sizes")
    if not isinstance(fortran_order, bool):
        raise ValueError("fortran_order is not a boolean")
    return shape, fortran_order, np.lib.format.descr_to_dtype(fields["descr"])


def _header(handle, label: str):
    with reading(label, "not a readable .npy file (corrupt header)"):
        version = np.lib.format.read_magic(handle)
        if version not in NPY_VERSIONS:
            raise FormatError(f"{label}: .npy version {version} is not read")
        return npy_header(handle, version)


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
