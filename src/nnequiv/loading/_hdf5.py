"""Keras / HDF5 weights (``.h5``, ``.hdf5``, ``.keras`` zips) through h5py.

The optimizer's variables a Keras model saves after training (``optimizer/vars/N`` in a
``.keras`` archive, ``optimizer_weights/...`` in an ``.h5`` file) are left out, as optimizer
states are in every format, and listed as skipped.

Nothing outside the file is read: external links, external storage and virtual datasets are
refused. Each dataset's declared size (shape x dtype) is checked before it is read, a dataset
without stored data is refused (it would read as fill values of any size), and every
deflate-compressed chunk is decompressed once with an output cap first, so a chunk that
expands past its declared size is refused before HDF5 allocates for it.

The metadata is checked before any data is read, in a forked worker process on Linux: the
visit of links and datasets stops past ``LIMITS.max_hdf5_depth`` nested groups or
``LIMITS.max_hdf5_objects`` objects (so the library never recurses far), chunk counts are
bounded (``LIMITS.max_hdf5_chunks``), a chunked dataset must store all its chunks (a partly
filled one would read as fill values), and the datasets together may decode to at most
``LIMITS.max_expansion`` times the file's size. Should the HDF5 library fail inside on a
crafted file, only the worker dies, and the file gets one line.
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnequiv._optional import optional_module
from nnequiv.errors import (
    FormatError,
    NNEquivError,
    ResourceLimitError,
    UnsafeFileError,
)
from nnequiv.loading._limits import (
    LIMITS,
    DecodeBudget,
    describe,
    reading,
    require_count,
    require_regular,
    shown,
    tensor_nbytes,
)
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


@dataclass(frozen=True)
class DatasetInfo:
    """A numeric dataset of an HDF5 file, as the checked metadata pass found it."""

    name: str
    shape: tuple[int, ...]
    kind: str


def iter_keras(
    path: Path, limit: int, archive: bool | None = None
) -> Iterator[tuple[str, np.ndarray | Dropped]]:
    """``(name, array)`` of every numeric dataset of an HDF5 file or ``.keras`` archive
    (``archive``; by default, from the suffix), after :func:`checked_datasets`."""
    h5py = _h5py(path)
    label = str(path)
    if archive is None:
        archive = path.suffix.lower() == ".keras"
    source, size = _hdf5_source(path, limit, archive)
    datasets = checked_datasets(source, label, limit, size)
    with reading(label, "not a readable HDF5 file"):
        opened = h5py.File(source, "r")
    with opened as handle:
        for info in datasets:
            if is_optimizer_name(info.name):
                yield info.name, Dropped(info.shape, OPTIMIZER_STATE)
                continue
            with reading(label, f"dataset '{shown(info.name)}' is truncated or corrupt"):
                array = handle[info.name][()]
            yield info.name, np.asarray(array)


def _h5py(path):
    return optional_module("h5py", "keras", f"reading {path}")


def checked_datasets(source, label: str, limit: int, size: int) -> list[DatasetInfo]:
    """The numeric datasets of an HDF5 file, its metadata checked first in a forked worker
    process (on Linux; elsewhere in-process): links, nesting depth and object count
    bounded while they are visited, external and virtual storage refused, each dataset's
    size checked against the limit and the file, its chunks counted and their index read
    (and deflated chunks inflated with a cap). If the HDF5 library itself fails on a
    crafted file, the worker dies and the file gets one line; the caller reads only what
    passed."""
    import multiprocessing
    import sys

    if not sys.platform.startswith("linux"):  # fork is safe to use on Linux only
        return _metadata(source, label, limit, size)  # pragma: no cover - in-process
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    worker = context.Process(target=_metadata_worker, args=(send, source, label, limit, size))
    worker.start()
    send.close()
    try:
        outcome = receive.recv() if receive.poll(None) else None
    except EOFError:
        outcome = None
    finally:
        receive.close()
        worker.join()
    if outcome is None:
        code = worker.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"status {code}"
        raise FormatError(
            f"{label}: the HDF5 library failed on this file (its reader ended with {how}); refused"
        )
    if outcome[0] == "ok":
        return outcome[1]
    kind = {cls.__name__: cls for cls in (FormatError, UnsafeFileError, ResourceLimitError)}
    raise kind.get(outcome[1], FormatError)(outcome[2])


def _metadata_worker(send, source, label, limit, size) -> None:
    import faulthandler

    faulthandler.disable()  # a crash of the library is reported in one line by the parent
    try:
        outcome = ("ok", _metadata(source, label, limit, size))
    except NNEquivError as exc:
        outcome = ("error", type(exc).__name__, str(exc))
    except BaseException as exc:  # noqa: BLE001 - anything else becomes one line
        outcome = ("error", "FormatError", f"{label}: not a readable HDF5 file ({describe(exc)})")
    send.send(outcome)
    send.close()


def _metadata(source, label: str, limit: int, size: int) -> list[DatasetInfo]:
    h5py = _h5py(label)
    with reading(label, "not a readable HDF5 file"):
        opened = h5py.File(source, "r")
    budget = DecodeBudget(label, size)
    chunks = [0]
    found = []
    with opened as handle:
        for name in _dataset_names(handle, label, h5py):
            with reading(label, f"dataset '{shown(name)}' is truncated or corrupt"):
                dataset = handle[name]
                if dataset.dtype.kind not in _NUMERIC_KINDS:
                    continue
                shape = tuple(int(d) for d in dataset.shape)
                if not is_optimizer_name(name):
                    _check_dataset(dataset, name, label, limit, size, chunks)
                    budget.take(
                        math.prod(shape) * dataset.dtype.itemsize, f"dataset '{shown(name)}'"
                    )
                found.append(DatasetInfo(name, shape, dataset.dtype.kind))
    return found


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
    """Names of the datasets in storage order; external links are refused, and the visit
    stops (and the file is refused) past ``LIMITS.max_hdf5_depth`` levels of groups or
    ``LIMITS.max_hdf5_objects`` objects, so the library never recurses far."""
    links: list[str] = []
    refusal: list[NNEquivError] = []

    def bounded(name, collect):
        depth = name.count("/") + 1
        if depth > LIMITS.max_hdf5_depth:
            refusal.append(_limit_error(label, "groups nested", depth, "max_hdf5_depth"))
            return True
        if len(links) + len(found) >= LIMITS.max_hdf5_objects:
            refusal.append(
                _limit_error(label, "objects", len(links) + len(found) + 1, "max_hdf5_objects")
            )
            return True
        collect(name)
        return None

    found: list[str] = []
    with reading(label, "not a readable HDF5 file"):
        handle.visit_links(lambda name: bounded(name, links.append))
        if refusal:
            raise refusal[0]
        for name in links:
            if isinstance(handle.get(name, getlink=True), h5py.ExternalLink):
                raise UnsafeFileError(
                    f"{label}: '{shown(name)}' is an external link to another file; refused"
                )
        links.clear()
        handle.visititems(
            lambda name, obj: bounded(name, found.append) if isinstance(obj, h5py.Dataset) else None
        )
        if refusal:
            raise refusal[0]
    return found


def _limit_error(label: str, what: str, count: int, limit_name: str) -> NNEquivError:
    try:
        require_count(label, what, count, limit_name)
    except NNEquivError as exc:
        return exc
    return FormatError(f"{label}: {what}")  # pragma: no cover - count is above the limit


def _check_dataset(dataset, name: str, label: str, limit: int, file_size: int, chunks) -> None:
    what = f"{label}: dataset '{shown(name)}'"
    if dataset.is_virtual:
        raise UnsafeFileError(f"{what} is a virtual dataset (data from other files); refused")
    if dataset.external:
        raise UnsafeFileError(f"{what} keeps its data in external files; refused")
    nbytes = tensor_nbytes(label, name, dataset.shape, dataset.dtype.itemsize, limit)
    if nbytes and dataset.id.get_storage_size() == 0:
        raise FormatError(f"{what} has no stored data")
    if dataset.chunks is not None and nbytes:
        _check_chunks(dataset, what, label, file_size, chunks)


def _check_chunks(dataset, what: str, label: str, file_size: int, chunks) -> None:
    plist = dataset.id.get_create_plist()
    pipeline = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    unknown = [code for code in pipeline if code not in _FILTERS]
    if unknown:
        raise FormatError(f"{what} uses HDF5 filter {unknown[0]}, which nnequiv does not read")
    stored = dataset.id.get_num_chunks()
    chunks[0] += stored
    require_count(label, "chunks in its datasets", chunks[0], "max_hdf5_chunks")
    grid = math.prod(-(-int(n) // int(c)) for n, c in zip(dataset.shape, dataset.chunks))
    if stored != grid:
        raise FormatError(
            f"{what} stores {stored} of its {grid} chunks (a partly filled dataset would be "
            "read as fill values); refused"
        )
    chunk_bytes = math.prod(dataset.chunks) * dataset.dtype.itemsize
    for info in _chunk_infos(dataset, stored):
        if info.size > file_size:
            raise FormatError(f"{what} has a chunk larger than the file")
        if _DEFLATE in pipeline:
            mask, raw = dataset.id.read_direct_chunk(info.chunk_offset)
            _inflated_size(raw, pipeline, mask, chunk_bytes, what)


def _chunk_infos(dataset, stored: int) -> list:
    """Where each stored chunk of ``dataset`` is, in one pass over its chunk index (finding
    chunk i by number walks the index from the start: quadratic in the chunks)."""
    if hasattr(dataset.id, "chunk_iter"):  # h5py >= 3.8 with HDF5 >= 1.13.2
        infos: list = []
        dataset.id.chunk_iter(infos.append)
        return infos
    return [dataset.id.get_chunk_info(index) for index in range(stored)]  # pragma: no cover


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
