"""Keras / HDF5 weights (``.h5``, ``.hdf5``, ``.keras`` zips) through h5py.

The optimizer's variables a Keras model saves after training (``optimizer/vars/N`` in a
``.keras`` archive, ``optimizer_weights/...`` in an ``.h5`` file) are left out, as optimizer
states are in every format, and listed as skipped.

Nothing outside the file is read: external links, external storage and virtual datasets are
refused. Each dataset's declared size (shape x dtype) is checked before it is read, a dataset
without stored data is refused (it would read as fill values of any size), and every
deflate-compressed chunk is decompressed once with an output cap first, so a chunk that
expands past its declared size is refused before HDF5 allocates for it.
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nnequiv.errors import FormatError, MissingDependencyError, UnsafeFileError
from nnequiv.loading._limits import reading, require_regular, shown, tensor_nbytes
from nnequiv.loading._source import OPTIMIZER_STATE, Dropped
from nnequiv.loading._zip import read_member, zip_archive

#: HDF5 filters read: deflate (its output capped here), shuffle and fletcher32 (which keep the
#: size) and h5py's lzf (which expands at most about 100 times its stored size). n-bit,
#: scale-offset, szip and plugins are refused: their output size comes from the file.
_DEFLATE, _SHUFFLE, _FLETCHER32, _LZF = 1, 2, 3, 32000
_FILTERS = {_DEFLATE, _SHUFFLE, _FLETCHER32, _LZF}
_NUMERIC_KINDS = set("biufc")
#: Top-level groups where Keras saves its optimizer's variables.
_OPTIMIZER_GROUPS = {"optimizer", "optimizer_weights"}


def iter_keras(
    path: Path, limit: int, archive: bool | None = None
) -> Iterator[tuple[str, np.ndarray | Dropped]]:
    """``(name, array)`` of every numeric dataset of an HDF5 file or ``.keras`` archive
    (``archive``; by default, from the suffix)."""
    try:
        import h5py
    except ImportError as exc:
        raise MissingDependencyError("h5py", "keras", f"reading {path}") from exc
    label = str(path)
    if archive is None:
        archive = path.suffix.lower() == ".keras"
    source, size = _hdf5_source(path, limit, archive)
    with reading(label, "not a readable HDF5 file"):
        opened = h5py.File(source, "r")
    with opened as handle:
        for name in _dataset_names(handle, label, h5py):
            with reading(label, f"dataset '{shown(name)}' is truncated or corrupt"):
                dataset = handle[name]
                if dataset.dtype.kind not in _NUMERIC_KINDS:
                    continue
                if is_optimizer_name(name):
                    yield name, Dropped(tuple(int(d) for d in dataset.shape), OPTIMIZER_STATE)
                    continue
                _check_dataset(dataset, name, label, limit, size)
                array = dataset[()]
            yield name, np.asarray(array)


def is_optimizer_name(name: str) -> bool:
    """A dataset of a Keras optimizer: ``optimizer/vars/N`` in a ``.keras`` archive (Keras 3),
    ``optimizer_weights/...`` in an ``.h5`` file (Keras 2)."""
    return name.split("/", 1)[0] in _OPTIMIZER_GROUPS


def _hdf5_source(path: Path, limit: int, archive: bool):
    """A path (``.h5``) or an in-memory copy of the weights member (a ``.keras`` archive),
    and its size in bytes."""
    if not archive:
        return str(path), require_regular(path).st_size
    with zip_archive(path, ".keras archive") as archive:
        members = [info for info in archive.infolist() if info.filename.endswith(".h5")]
        if not members:
            raise FormatError(f"{path}: .keras archive holds no weights file")
        data = read_member(archive, members[0], str(path), limit)
    return io.BytesIO(bytes(data)), len(data)


def _dataset_names(handle, label: str, h5py) -> list[str]:
    """Names of the datasets in storage order; external links are refused."""
    links = []
    with reading(label, "not a readable HDF5 file"):
        handle.visit_links(lambda name: links.append(name))
        for name in links:
            if isinstance(handle.get(name, getlink=True), h5py.ExternalLink):
                raise UnsafeFileError(
                    f"{label}: '{shown(name)}' is an external link to another file; refused"
                )
        found: list[str] = []
        handle.visititems(
            lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None
        )
    return found


def _check_dataset(dataset, name: str, label: str, limit: int, file_size: int) -> None:
    what = f"{label}: dataset '{shown(name)}'"
    if dataset.is_virtual:
        raise UnsafeFileError(f"{what} is a virtual dataset (data from other files); refused")
    if dataset.external:
        raise UnsafeFileError(f"{what} keeps its data in external files; refused")
    nbytes = tensor_nbytes(label, name, dataset.shape, dataset.dtype.itemsize, limit)
    if nbytes and dataset.id.get_storage_size() == 0:
        raise FormatError(f"{what} has no stored data")
    if dataset.chunks is not None:
        _check_chunks(dataset, what, file_size)


def _check_chunks(dataset, what: str, file_size: int) -> None:
    plist = dataset.id.get_create_plist()
    pipeline = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    unknown = [code for code in pipeline if code not in _FILTERS]
    if unknown:
        raise FormatError(f"{what} uses HDF5 filter {unknown[0]}, which nnequiv does not read")
    if _DEFLATE not in pipeline:
        return
    chunk_bytes = math.prod(dataset.chunks) * dataset.dtype.itemsize
    for index in range(dataset.id.get_num_chunks()):
        info = dataset.id.get_chunk_info(index)
        if info.size > file_size:
            raise FormatError(f"{what} has a chunk larger than the file")
        mask, raw = dataset.id.read_direct_chunk(info.chunk_offset)
        _inflated_size(raw, pipeline, mask, chunk_bytes, what)


def _inflated_size(raw: bytes, pipeline: list[int], mask: int, chunk_bytes: int, what: str):
    """Undo the size-changing filters of one chunk (in reverse order) with the output capped
    at the chunk's declared size."""
    data = raw
    for position in reversed(range(len(pipeline))):
        if mask & (1 << position):
            continue
        code = pipeline[position]
        if code == _FLETCHER32:
            data = data[:-4]
        elif code == _DEFLATE:
            inflater = zlib.decompressobj()
            data = inflater.decompress(data, chunk_bytes + 1)
            if len(data) > chunk_bytes:
                raise FormatError(f"{what} has a chunk that decompresses past its declared size")
        elif code == _LZF:
            return  # no lzf decoder here; its expansion is bounded by its format
