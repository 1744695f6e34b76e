"""Zip archives (npz, ``.keras``, PyTorch): members read with their declared size checked first
and decompression capped while it runs.

A member is read in chunks of at most :data:`CHUNK` bytes, each decompressed with that
output limit, and never past its declared size; a member whose data does not match its
declared size or checksum is corrupt.
"""

from __future__ import annotations

import zipfile
from contextlib import contextmanager
from pathlib import Path

from nnequiv.errors import FormatError
from nnequiv.loading._limits import open_regular, reading, require_within, shown

#: Largest piece decompressed at once.
CHUNK = 1 << 20


@contextmanager
def zip_archive(path: Path, kind: str):
    """An open :class:`zipfile.ZipFile` of the regular file ``path``; a file that is not a
    readable zip archive gets a :class:`FormatError` naming ``kind``."""
    with open_regular(path) as handle:
        with reading(str(path), f"not a readable {kind}"):
            archive = zipfile.ZipFile(handle)
        with archive:
            yield archive


def read_exact(stream, count: int, label: str, what: str) -> bytearray:
    """Exactly ``count`` bytes from ``stream`` in capped chunks; fewer is a truncation."""
    buffer = bytearray()
    with reading(label, f"{what} is corrupt"):
        while len(buffer) < count:
            chunk = stream.read(min(CHUNK, count - len(buffer)))
            if not chunk:
                break
            buffer += chunk
    if len(buffer) < count:
        raise FormatError(f"{label}: {what} is truncated ({len(buffer)} of {count} bytes)")
    return buffer


def require_plain(info: zipfile.ZipInfo, label: str, what: str) -> None:
    """Refuse an encrypted member (it needs a password nnequiv does not have)."""
    if info.flag_bits & 0x1:
        raise FormatError(f"{label}: {what} is encrypted; nnequiv reads no encrypted archives")


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, limit: int):
    """The whole of one member, refused above ``limit`` by its declared size."""
    what = f"member '{shown(info.filename)}'"
    require_plain(info, label, what)
    require_within(label, what, info.file_size, limit)
    with reading(label, f"{what} is corrupt"):
        stream = archive.open(info)
    with stream:
        data = read_exact(stream, info.file_size, label, what)
        require_end(stream, label, what)
    return data


def require_end(stream, label: str, what: str) -> None:
    """Check that ``stream`` has nothing left (which also verifies the member's checksum)."""
    with reading(label, f"{what} is corrupt"):
        extra = stream.read(1)
    if extra:
        raise FormatError(f"{label}: {what} holds more data than it declares")
