"""A file's format from its content: the first bytes (and a zip archive's member names),
whatever its suffix. The readers choose by it (:func:`nnequiv.loading.open_weights`), and
so does the sniffing of folders (:mod:`nnequiv._sniffing`)."""

from __future__ import annotations

import io
import os
import pickletools
import zipfile
from pathlib import Path

__all__ = ["content_format", "legacy_torch_pickle", "GGML_MAGICS"]

#: The first value ``torch.save`` pickles in its legacy (non-zip) format.
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


def legacy_torch_pickle(path: Path) -> bool | None:
    """Whether a pickle starts with the magic number of ``torch.save``'s legacy format (None:
    not a pickle). Read with :mod:`pickletools`, which parses opcodes and runs nothing."""
    try:
        with path.open("rb") as handle:
            head = handle.read(64)
        if not head.startswith(b"\x80"):
            return None
        for opcode, argument, _ in pickletools.genops(io.BytesIO(head)):
            if opcode.name not in {"PROTO", "FRAME"}:
                return opcode.name == "LONG1" and argument == _TORCH_MAGIC
    except (OSError, ValueError):
        return None
    return None


# --- formats by content ---------------------------------------------------------------------

#: First bytes of each format that has a signature; ``content_format`` names the reader.
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NPY_MAGIC = b"\x93NUMPY"
#: Legacy GGML files (before GGUF): the magic as the little-endian uint32 they start with.
GGML_MAGICS = {b"lmgg": "ggml", b"fmgg": "ggmf", b"tjgg": "ggjt", b"algg": "ggla", b"ggsn": "ggsn"}
#: Core ML's weight blob files start with a 64-byte header, then a blob with this sentinel.
_COREML_SENTINEL = (0xDEADBEEF).to_bytes(4, "little")


def content_format(path: Path) -> str | None:
    """The format of a regular file from its first bytes (and a zip archive's member names),
    whatever its suffix: ``"torch"`` (a ``torch.save`` or TorchScript archive, a legacy torch
    pickle), ``"npz"``, ``"keras"``, ``"gguf"``, ``"ggml"``, ``"tflite"``, ``"hdf5"``,
    ``"npy"``, ``"safetensors"``, ``"coreml-weights"``; None where the content does not tell
    (ONNX, which has no signature, or anything else)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
            size = os.fstat(handle.fileno()).st_size
    except OSError:
        return None
    if head.startswith(b"PK\x03\x04"):
        return _zip_format(path)
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:4] in GGML_MAGICS:
        return "ggml"
    if head[4:8] == b"TFL3":
        return "tflite"
    if any(head[at : at + 8] == _HDF5_MAGIC for at in (0, 512, 1024, 2048)):
        return "hdf5"
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if len(head) >= 68 and head[64:68] == _COREML_SENTINEL:
        return "coreml-weights"
    if head.startswith(b"\x80") and legacy_torch_pickle(path):
        return "torch"
    return None


def _zip_format(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except Exception:  # noqa: BLE001 - zipfile raises many kinds on a crafted archive
        return None
    if any(name.endswith("/data.pkl") and name.count("/") == 1 for name in names):
        return "torch"
    if any(name.endswith(".h5") for name in names):
        return "keras"
    if names and all(name.endswith(".npy") for name in names if not name.endswith("/")):
        return "npz"
    return None
