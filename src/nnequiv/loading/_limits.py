"""Guards every reader shares: regular files only, sizes checked before allocating, and
library errors turned into one clean line.

Text that comes from a file (tensor names, member names, a library's error message) is shown
through :func:`shown`: printable characters only, one line, bounded length, so a message
never carries raw bytes or terminal escapes.
"""

from __future__ import annotations

import math
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnequiv.errors import (
    FormatError,
    InputError,
    NNEquivError,
    ResourceLimitError,
    UnsafeFileError,
    shown,
)
from nnequiv.settings import (  # noqa: F401 - ReaderLimits re-exported: the readers' limits
    DEFAULT_MAX_TENSOR_BYTES,
    LIMITS,
    ReaderLimits,
    parse_limit,
)


def apply_limits(settings) -> None:
    """Set fields of :data:`LIMITS` from ``NAME=VALUE`` texts (the ``--limit`` option), for
    the rest of the process."""
    for text in settings or ():
        name, number = parse_limit(text)
        setattr(LIMITS, name, number)


def apply_limit(text: str) -> str:
    """:func:`apply_limits` of one ``NAME=VALUE``, returned as ``name=value`` (the command
    line applies it as it is parsed, before any folder is searched)."""
    name, number = parse_limit(text)
    setattr(LIMITS, name, number)
    return f"{name}={number}"


def require_depth(label: str, depth: int) -> None:
    """Refuse nesting deeper than ``LIMITS.max_depth``."""
    if depth > LIMITS.max_depth:
        raise FormatError(
            f"{label}: nested more than {LIMITS.max_depth} levels deep "
            "(nnequiv.loading.LIMITS.max_depth; --limit max_depth=N)"
        )


def walk_modules(root, label: str, visit) -> None:
    """Visit a tree of pickled modules depth first, in order, each module once (a module
    reached twice, shared or in a cycle of a hostile file, is visited once), at most
    ``LIMITS.max_depth`` levels deep. ``visit(prefix, module)`` reads a module whose
    names start with ``prefix`` (``""``, ``"encoder."``, ...) and gives its child modules as
    ``(name, child)`` pairs."""
    stack = [("", root)]
    seen: set[int] = set()
    while stack:
        prefix, module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        children = [(f"{prefix}{name}.", child) for name, child in visit(prefix, module)]
        if children:
            require_depth(label, prefix.count(".") + 1)
        stack.extend(reversed(children))


def require_count(label: str, what: str, count: int, limit_name: str) -> None:
    """Refuse a declared count above the named field of :data:`LIMITS`."""
    limit = getattr(LIMITS, limit_name)
    if count > limit:
        raise ResourceLimitError(
            f"{label}: {what} ({format_count(count)}) above the limit of {limit:,} "
            f"(nnequiv.loading.LIMITS.{limit_name}; --limit {limit_name}=N)"
        )


class DecodeBudget:
    """The bytes a file's tensors may decode to: ``max_expansion`` times its size on disk,
    at least ``expansion_floor``; :meth:`take` refuses a tensor that would pass it."""

    def __init__(self, label: str, file_size: int):
        self.label = label
        self.left = max(LIMITS.max_expansion * file_size, LIMITS.expansion_floor)
        self.total = self.left

    def take(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise ResourceLimitError(
                f"{self.label}: {what} would make its tensors decode to more than "
                f"{format_bytes(self.total)}, {LIMITS.max_expansion} times the file's size "
                "(nnequiv.loading.LIMITS.max_expansion; --limit max_expansion=N)"
            )
        self.left -= nbytes


@contextmanager
def guarded(label: str):
    """Turn a RecursionError or MemoryError while reading a file into one line naming it."""
    try:
        yield
    except RecursionError:
        raise FormatError(f"{label}: nested too deeply to read") from None
    except MemoryError:
        raise ResourceLimitError(
            f"{label}: not enough memory to read it (lower max_tensor_bytes to refuse "
            "such tensors first, or free memory)"
        ) from None


def describe(exc: BaseException) -> str:
    """A library exception as a short phrase: its message made safe, prefixed by its type
    where the message alone is a bare value (KeyError, IndexError)."""
    text = shown(exc)
    if not text or isinstance(exc, (KeyError, IndexError)):
        return f"{type(exc).__name__} {text}".strip()
    return text


def format_count(count: int) -> str:
    """An integer from a file as text, ``~2^k`` when it is too long to print."""
    return str(count) if count < 10**18 else f"~2^{count.bit_length() - 1}"


def format_shape(dims) -> str:
    """``"3 x 4"`` (``"scalar"`` for no dimensions)."""
    return " x ".join(map(format_count, dims)) or "scalar"


def format_bytes(count: int) -> str:
    """``count`` bytes in binary units (``"8.0 GiB"``), however large."""
    if count >= 1024**6:
        return f"{format_count(count)} bytes"
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"


def check_limit(max_tensor_bytes) -> int:
    """``max_tensor_bytes`` as a positive int, or an :class:`InputError`."""
    if isinstance(max_tensor_bytes, bool) or not isinstance(max_tensor_bytes, int):
        raise InputError(f"max_tensor_bytes must be an integer, got {max_tensor_bytes!r}")
    if max_tensor_bytes < 1:
        raise InputError(f"max_tensor_bytes must be >= 1, got {max_tensor_bytes}")
    return max_tensor_bytes


def require_within(label: str, what: str, nbytes: int, limit: int) -> None:
    """Refuse a declared size above ``limit`` before anything is allocated."""
    if nbytes > limit:
        raise ResourceLimitError(
            f"{label}: {what} declares {format_bytes(nbytes)}, above the limit of "
            f"{format_bytes(limit)} per tensor (max_tensor_bytes, --max-tensor-bytes)"
        )


def tensor_nbytes(label: str, name: str, shape, itemsize: int, limit: int) -> int:
    """Bytes of a tensor of ``shape`` and ``itemsize``, refused above ``limit``.

    ``shape`` must be a sequence of non-negative ints (checked here, since it comes from a
    file header).
    """
    dims = list(shape)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise FormatError(
            f"{label}: tensor '{shown(name)}' has an invalid shape "
            "(dimensions must be non-negative integers)"
        )
    nbytes = math.prod(dims) * itemsize
    require_within(label, f"tensor '{shown(name)}' ({format_shape(dims)})", nbytes, limit)
    return nbytes


def require_regular(path: Path, label: str | None = None) -> os.stat_result:
    """The ``stat`` of ``path`` if it is a regular file (symlinks followed); FIFOs, devices,
    sockets and directories are refused before anything opens them."""
    label = label or str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except OSError as exc:
        raise InputError(f"{label}: cannot be read ({describe(exc)})") from exc
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFileError(
            f"{label}: is a {_file_kind(info.st_mode)}, not a regular file; refused"
        )
    return info


def open_regular(path: Path, label: str | None = None):
    """Open ``path`` for binary reading if it is a regular file.

    The file is opened without blocking and checked again on the open descriptor, so a FIFO
    swapped in after the first check cannot make the open hang.
    """
    label = label or str(path)
    require_regular(path, label)
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise InputError(f"{label}: cannot be read ({describe(exc)})") from exc
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafeFileError(f"{label}: is a {_file_kind(mode)}, not a regular file; refused")
        if hasattr(os, "set_blocking"):
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _file_kind(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "special file")


@contextmanager
def reading(label: str, what: str, errors=(Exception,)):
    """Turn an exception of a third-party reader into a :class:`FormatError`:
    ``"{label}: {what} ({reason})"``. nnequiv's own errors pass through unchanged."""
    try:
        yield
    except NNEquivError:
        raise
    except errors as exc:
        raise FormatError(f"{label}: {what} ({describe(exc)})") from exc


def inside(directory: Path, relative: str) -> Path | None:
    """``directory / relative`` when the text ``relative`` stays inside ``directory`` (not
    absolute, no ``..`` that leaves it); None otherwise. See :func:`linked_inside` for the
    targets of symbolic links."""
    if not relative or "\x00" in relative or os.path.isabs(relative) or Path(relative).drive:
        return None
    normal = os.path.normpath(relative)
    if normal == ".." or normal.startswith(".." + os.sep):
        return None
    return directory / normal


def linked_inside(directory: Path, relative: str) -> Path | None:
    """:func:`inside`, and where the file is a symbolic link, its target inside ``directory``
    too (or, in a Hugging Face cache, inside the repository folder whose ``snapshots/`` link
    into its ``blobs/``); None otherwise."""
    target = inside(directory, relative)
    if target is None or not _links_stay_inside(directory, target):
        return None
    return target


def _links_stay_inside(directory: Path, target: Path) -> bool:
    """Whether ``target`` (under ``directory``) resolves inside ``directory``, or inside the
    Hugging Face repository folder (``models--org--name``) that ``directory`` is a snapshot of."""
    try:
        real = os.path.realpath(target)
        roots = [os.path.realpath(directory)]
        parts = Path(os.path.abspath(directory)).parts
    except (OSError, ValueError):
        return False
    for at, part in enumerate(parts[:-1]):
        if part.startswith(("models--", "datasets--")) and parts[at + 1] == "snapshots":
            roots.append(os.path.realpath(Path(*parts[: at + 1])))
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def tensor_byte_limit(max_tensor_bytes: int | None = None) -> int:
    """``max_tensor_bytes`` checked, or the default where None."""
    return DEFAULT_MAX_TENSOR_BYTES if max_tensor_bytes is None else check_limit(max_tensor_bytes)


@dataclass(frozen=True)
class TableEntry:
    """A tensor as the table of a file lists it: its name, its shape (NumPy order), and
    where its data lies (``nbytes`` bytes from ``offset``). Formats add their own fields."""

    name: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int


def read_tensor_bytes(handle, label, entry: TableEntry, itemsize: int, limit: int) -> np.ndarray:
    """The raw bytes of a tensor of an open file (``entry``), refused before reading when
    they, or the decoded array (``itemsize`` bytes a value), would pass ``limit``."""
    decoded = math.prod(int(d) for d in entry.shape) * itemsize
    what = f"tensor '{shown(entry.name)}' ({format_shape(entry.shape)})"
    require_within(label, what, max(decoded, entry.nbytes), limit)
    handle.seek(entry.offset)
    raw = np.fromfile(handle, dtype=np.uint8, count=entry.nbytes)
    if raw.size != entry.nbytes:
        raise FormatError(f"{label}: truncated file ({what} ends past the end of the file)")
    return raw
