"""PyTorch files read without running code: ``torch.save`` zip archives, TorchScript archives
and the legacy (pre-1.6) pickle format, through the restricted unpickler.

A plain pickle (``pickle.dump`` of a dict of NumPy arrays) is read through the same restricted
unpickler, which rebuilds its arrays as data: they are its tensors.

Objects of classes the file names (a Lightning checkpoint's hyper-parameters, a whole model
saved with ``torch.save(model)``) are inert placeholders. A pickled ``torch.nn.Module`` gives
its parameters and persistent buffers named as its ``state_dict()`` would name them, from
the ``_parameters``, ``_buffers`` and ``_modules`` of each module in its pickled state.

The pickle is read when the file is opened (so a bad file fails early); tensors are read one
at a time afterwards, each from its storage's bytes. With ``trust_code=True`` the file goes
to ``torch.jit.load`` or ``torch.load(weights_only=False)`` instead, which run the file's
code: only for files from a trusted source.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnequiv._optional import optional_module
from nnequiv.errors import FormatError
from nnequiv.loading._limits import (
    DecodeBudget,
    open_regular,
    reading,
    require_count,
    require_depth,
    require_within,
    shown,
    walk_modules,
)
from nnequiv.loading._restricted import Placeholder, StorageRef, TensorRef, unpickle
from nnequiv.loading._source import OPTIMIZER_STATE, STATE_DICT_KEYS, Dropped, count_once
from nnequiv.loading._torchscript import class_lookup, script_state_dict
from nnequiv.loading._zip import read_exact, read_member, zip_archive

#: Why a file without a network's tensors is not read.
NO_TENSORS = "holds no state_dict of tensors"
OPTIMIZER_ONLY = "holds only an optimizer state (state, param_groups), not a network"
#: First value of a legacy PyTorch pickle, and its protocol number.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


@dataclass
class TorchFile:
    """The tensors of a PyTorch file, described; :meth:`tensors` reads them."""

    path: Path
    refs: dict[str, TensorRef | Dropped | np.ndarray]  # arrays: a plain pickle's, rebuilt
    limit: int
    byteorder: str = "<"
    #: zip archives: the archive's folder; legacy files: storage key -> byte offset.
    prefix: str | None = None
    offsets: dict[str, int] = field(default_factory=dict)

    def shapes(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        for name, ref in self.refs.items():
            if not isinstance(ref, Dropped):
                yield name, ref.shape

    def tensors(self) -> Iterator[tuple[str, np.ndarray | Dropped]]:
        """``(name, array)`` of every tensor, and ``(name, Dropped)`` for those left out."""
        label = str(self.path)
        with self._storages() as read:
            cached: tuple[str, bytes] | None = None
            for name, ref in self.refs.items():
                if isinstance(ref, (Dropped, np.ndarray)):  # a plain pickle's arrays
                    yield name, ref
                    continue
                if cached is None or cached[0] != ref.storage.key:
                    cached = (ref.storage.key, read(ref.storage))
                if len(cached[1]) < ref.storage.nbytes:
                    raise FormatError(f"{label}: storage of tensor '{shown(name)}' is truncated")
                with reading(label, f"tensor '{shown(name)}' cannot be decoded"):
                    array = ref.array(cached[1], self.byteorder)
                yield name, array

    @contextmanager
    def _storages(self):
        """A function from a storage to its bytes, valid inside the context."""
        label = str(self.path)
        if self.prefix is not None:
            with zip_archive(self.path, "PyTorch archive") as archive:

                def read_record(storage: StorageRef):
                    name = f"{self.prefix}data/{storage.key}"
                    with reading(label, f"storage '{shown(storage.key)}' is missing"):
                        info = archive.getinfo(name)
                    return read_member(archive, info, label, self.limit)

                yield read_record
        else:
            with open_regular(self.path) as handle:

                def read_span(storage: StorageRef):
                    handle.seek(self.offsets[storage.key])
                    return read_exact(
                        handle, storage.nbytes, label, f"storage '{shown(storage.key)}'"
                    )

                yield read_span


def open_torch(path: Path, limit: int, trust_code: bool = False):
    """A :class:`TorchFile` (or, with ``trust_code``, a dict of torch tensors)."""
    if trust_code:
        return _trusted_load(path, limit)
    if _is_zip(path):
        return _zip_file(path, limit)
    return _legacy_file(path, limit)


def _is_zip(path: Path) -> bool:
    """Whether ``path`` starts as a zip archive does (as torch itself decides)."""
    with open_regular(path) as handle:
        return handle.read(4) == b"PK\x03\x04"


def _zip_file(path: Path, limit: int) -> TorchFile:
    label = str(path)
    with zip_archive(path, "PyTorch archive") as archive:
        records = {info.filename: info for info in archive.infolist()}
        prefix = _archive_folder(records, label)

        def storage(reference: StorageRef) -> StorageRef:
            info = records.get(f"{prefix}data/{reference.key}")
            if info is None:
                raise FormatError(f"{label}: storage '{shown(reference.key)}' is missing")
            if info.file_size != reference.nbytes:
                raise FormatError(
                    f"{label}: storage '{shown(reference.key)}' holds {info.file_size} bytes, "
                    f"its header declares {reference.nbytes}"
                )
            return reference

        def text(name: str) -> str | None:
            info = records.get(prefix + name)
            if info is None:
                return None
            data = read_member(archive, info, label, limit)
            with reading(label, f"'{shown(name)}' is not UTF-8 text", (UnicodeDecodeError,)):
                return bytes(data).decode("utf-8")

        byteorder = (text("byteorder") or "little").strip()
        if byteorder not in ("little", "big"):
            raise FormatError(f"{label}: unknown byte order '{shown(byteorder, 20)}'")
        data = read_member(archive, records[prefix + "data.pkl"], label, limit)
        is_script = any(name.startswith(prefix + "code/") for name in records)
        root = unpickle(data, label, limit, storage, script_classes=is_script)
        if is_script:
            tensors = script_state_dict(root, class_lookup(text, label), label)
            refs = dict(count_once(tensors.items()))
        else:
            refs = find_state_dict(root, label)
    check_views(refs, label, os.stat(path).st_size)
    return TorchFile(path, refs, limit, "<" if byteorder == "little" else ">", prefix)


def _archive_folder(records: Mapping[str, zipfile.ZipInfo], label: str) -> str:
    """The top folder of a PyTorch archive (``"archive/"``), the one holding ``data.pkl``."""
    folders = [name[: -len("data.pkl")] for name in records if name.endswith("/data.pkl")]
    folders = [folder for folder in folders if folder.count("/") == 1]
    if len(folders) != 1:
        raise FormatError(f"{label}: not a PyTorch archive (no single data.pkl)")
    return folders[0]


class _Bounded:
    """A binary stream that never asks for more than what is left of the file."""

    def __init__(self, handle, size: int):
        self.handle, self.size = handle, size

    def read(self, count: int = -1) -> bytes:
        left = self.size - self.handle.tell()
        return self.handle.read(left if count < 0 else min(count, left))

    def readline(self) -> bytes:
        return self.handle.readline()


def _legacy_file(path: Path, limit: int) -> TorchFile:
    label = str(path)
    storages: dict[str, StorageRef] = {}

    def storage(reference: StorageRef) -> StorageRef:
        known = storages.setdefault(reference.key, reference)
        if known != reference:
            raise FormatError(f"{label}: storage '{shown(reference.key)}' is declared twice")
        return known

    with open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        stream = _Bounded(handle, size)
        try:
            magic = unpickle(stream, label, limit)
        except FormatError as error:
            if type(error) is not FormatError:  # an unsafe pickle is said to be one
                raise
            handle.seek(0)
            if handle.read(1) == b"\x80":  # a pickle (protocol 2 or later): what is wrong
                raise
            raise FormatError(
                f"{label}: not a PyTorch file (neither a zip archive nor a pickle as torch.save "
                "writes them)"
            ) from None
        if magic != LEGACY_MAGIC:
            return _plain_pickle(path, magic, stream, label)
        if unpickle(stream, label, limit) != LEGACY_PROTOCOL:
            raise FormatError(f"{label}: unsupported legacy PyTorch protocol")
        system = unpickle(stream, label, limit)
        little = not isinstance(system, dict) or system.get("little_endian", True) is not False
        root = unpickle(stream, label, limit, storage)
        keys = unpickle(stream, label, limit)
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            raise FormatError(f"{label}: corrupt legacy PyTorch file (no storage list)")
        offsets = _legacy_offsets(handle, size, keys, storages, "<" if little else ">", label)
    refs = find_state_dict(root, label)
    check_views(refs, label, size)
    return TorchFile(path, refs, limit, "<" if little else ">", None, offsets)


def _plain_pickle(path: Path, root, stream: _Bounded, label: str) -> TorchFile:
    """A pickle not written by ``torch.save`` (``pickle.dump`` of a dict of NumPy arrays, as
    some packages ship their weights): its NumPy arrays, rebuilt as data by the restricted
    unpickler, are the tensors. One that holds no arrays, holds torch storages (which only
    ``torch.save``'s own framing gives bytes to) or goes on after its pickle is not read."""
    not_torch = f"{label}: not a PyTorch file (neither a zip archive nor a torch pickle)"
    if stream.read(1):
        raise FormatError(f"{not_torch}; bytes follow its pickle")
    try:
        refs = find_state_dict(root, label)
    except FormatError as error:
        if str(error).endswith(OPTIMIZER_ONLY):
            raise
        raise FormatError(f"{label}: a pickle not written by torch.save; {NO_TENSORS}") from None
    if not all(isinstance(ref, (np.ndarray, Dropped)) for ref in refs.values()):
        raise FormatError(f"{not_torch}; its tensors have no data")
    return TorchFile(path, refs, 0)


def _legacy_offsets(handle, size, keys, storages, byteorder, label) -> dict[str, int]:
    """Where each storage's bytes start: each is an int64 element count, then the bytes."""
    offsets = {}
    position = handle.tell()
    for key in keys:
        reference = storages.get(key)
        handle.seek(position)
        count_bytes = handle.read(8)
        if reference is None or len(count_bytes) < 8:
            raise FormatError(f"{label}: corrupt legacy PyTorch file (storage '{shown(key)}')")
        (count,) = struct.unpack(f"{byteorder}q", count_bytes)
        untyped = reference.element.itemsize == 1
        matches = count == reference.numel or (
            untyped and count > 0 and reference.nbytes % count == 0
        )
        if not matches:
            raise FormatError(f"{label}: storage '{shown(key)}' has an inconsistent size")
        offsets[key] = position + 8
        position += 8 + reference.nbytes
        if position > size:
            raise FormatError(f"{label}: truncated legacy PyTorch file")
    if set(storages) - set(offsets):
        raise FormatError(f"{label}: corrupt legacy PyTorch file (a storage has no data)")
    return offsets


def check_views(refs: Mapping, label: str, file_size: int) -> None:
    """Bound the work the tensors of a file ask for before any is read: their number, the
    views of any one storage, and the bytes they decode to against the file's size (a
    zero-stride view over a storage, or many views of it, would otherwise cost far more
    than the file holds)."""
    tensors = [(name, ref) for name, ref in refs.items() if isinstance(ref, TensorRef)]
    require_count(label, "tensors", len(refs), "max_tensors")
    views = Counter(ref.storage.key for _, ref in tensors)
    if views:
        key, most = views.most_common(1)[0]
        require_count(
            label, f"tensors viewing storage '{shown(key, 40)}'", most, "max_storage_views"
        )
    budget = DecodeBudget(label, file_size)
    for name, ref in tensors:
        itemsize = 4 if ref.element.widen is not None else ref.element.itemsize
        budget.take(math.prod(ref.shape) * itemsize, f"tensor '{shown(name)}'")


def _is_tensor(value) -> bool:
    if isinstance(value, (TensorRef, np.ndarray)):
        return True
    return type(value).__module__.startswith("torch") and hasattr(value, "dtype")


def _is_optimizer_state(value) -> bool:
    """An optimizer's ``state_dict()``: ``{'state': ..., 'param_groups': ...}``."""
    return isinstance(value, Mapping) and {"state", "param_groups"} <= set(value.keys())


def _is_module(value) -> bool:
    """A pickled ``torch.nn.Module`` (read as a :class:`Placeholder`): its state holds
    ``_parameters`` and ``_modules`` mappings."""
    state = value.state if isinstance(value, Placeholder) else None
    return (
        isinstance(state, dict)
        and isinstance(state.get("_parameters"), Mapping)
        and isinstance(state.get("_modules"), Mapping)
    )


def module_state_dict(root: Placeholder, label: str = "") -> dict:
    """The parameters and buffers of a pickled module tree, named and ordered as
    ``state_dict()`` names them (non-persistent buffers left out); a module reached twice is
    read once."""
    tensors: dict = {}

    def visit(prefix: str, module) -> list:
        state = module.state
        transient = state.get("_non_persistent_buffers_set")
        transient = transient if isinstance(transient, (set, frozenset)) else set()
        buffers = state.get("_buffers")
        buffers = buffers if isinstance(buffers, Mapping) else {}
        for name, value in state["_parameters"].items():
            if isinstance(name, str) and isinstance(value, TensorRef):
                tensors[prefix + name] = value
        for name, value in buffers.items():
            if isinstance(name, str) and isinstance(value, TensorRef) and name not in transient:
                tensors[prefix + name] = value
        return [
            (key, child)
            for key, child in state["_modules"].items()
            if isinstance(key, str) and _is_module(child)
        ]

    walk_modules(root, label, visit)
    return tensors


def _contents(value, label: str = "") -> Mapping | None:
    """What to look into for tensors: a mapping; a pickled module's state dict; the state
    (or the dict items) of another placeholder."""
    if isinstance(value, Mapping):
        return value
    if _is_module(value):
        return module_state_dict(value, label)
    if isinstance(value, Placeholder):
        if isinstance(value.state, dict):
            return value.state
        return value.items or None
    return None


def _tensors_of(mapping: Mapping, label: str) -> dict:
    """The tensors under ``mapping`` by dotted name, in order; those inside an optimizer state
    as :class:`Dropped`. Iterative, each mapping entered once, at most ``LIMITS.max_depth``
    levels deep."""
    found: dict = {}
    stack = [("", iter(mapping.items()), _is_optimizer_state(mapping))]
    seen = {id(mapping)}
    while stack:
        prefix, items, optimizer = stack[-1]
        for key, value in items:
            name = f"{prefix}{key}"
            if _is_tensor(value):
                found[name] = Dropped(tuple(value.shape), OPTIMIZER_STATE) if optimizer else value
                continue
            inside = _contents(value, label) if id(value) not in seen else None
            if inside is not None:
                seen.add(id(value))
                inner = optimizer or _is_optimizer_state(inside)
                require_depth(label, len(stack) + 1)
                stack.append((name + ".", iter(inside.items()), inner))
                break
        else:
            stack.pop()
    return found


def find_state_dict(obj, label: str) -> dict:
    """The tensors of a checkpoint: a state dict, or one under a usual key (``state_dict``,
    ``model``, ...), flattened to dotted names. Tensors of an optimizer state, and second
    names of a tensor already listed (the same storage, offset, shape and strides), are
    :class:`Dropped`."""
    if _is_module(obj):  # a whole model, torch.save(model)
        return dict(count_once(module_state_dict(obj, label).items()))
    obj = _contents(obj, label) or obj
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            nested = _contents(obj.get(key), label)
            if isinstance(nested, Mapping) and not _is_optimizer_state(nested):
                tensors = _tensors_of(nested, label)
                if _any_kept(tensors):
                    return dict(count_once(tensors.items()))
        tensors = _tensors_of(obj, label)
        if _any_kept(tensors):
            return dict(count_once(tensors.items()))
        if tensors:  # every tensor is in an optimizer state
            raise FormatError(f"{label}: {OPTIMIZER_ONLY}")
    elif _is_tensor(obj):
        return {"tensor": obj}
    raise FormatError(f"{label}: {NO_TENSORS}")


def _any_kept(tensors: dict) -> bool:
    return any(not isinstance(value, Dropped) for value in tensors.values())


def _trusted_load(path: Path, limit: int) -> dict:
    """Load with torch itself, running the file's code (``trust_code=True`` only)."""
    torch = optional_module("torch", "torch", f"reading {path}")
    label = str(path)
    if _is_zip(path):
        with zip_archive(path, "PyTorch archive") as archive:
            for info in archive.infolist():
                require_within(label, f"member '{shown(info.filename)}'", info.file_size, limit)
            is_script = any("/code/" in f"/{name}" for name in archive.namelist())
    else:
        is_script = False
    with reading(label, "could not be loaded by torch"):
        if is_script:
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
        if hasattr(obj, "state_dict") and callable(obj.state_dict):
            obj = obj.state_dict()
    return find_state_dict(obj, label)
