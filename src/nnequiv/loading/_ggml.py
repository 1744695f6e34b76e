"""Legacy GGML files (before GGUF): llama.cpp's ``ggml``/``ggmf``/``ggjt`` v1-3 and
whisper.cpp's ``ggml`` models, read as data; any other GGML layout gets one line naming it.

A legacy file is a magic number (and for ``ggmf``/``ggjt`` a version), the model's
hyper-parameters, its vocabulary, then tensor records to the end of the file: dimension
count, name length, GGML type, the dimensions (innermost first), the name, then (``ggjt``
only) padding to 32 bytes and the data. Which hyper-parameters and vocabulary precede the
tensors depends on the program that wrote the file; the layouts of llama.cpp and whisper.cpp
are known here and a layout is accepted only when its tensor records end exactly at the end
of the file. Quantised blocks are read as the ``gguf`` package dequantises them, which is the
layout of ``ggjt`` v3 (and of whisper.cpp files of quantisation version 2); older quantised
layouts are refused with one line. Every length is checked against the file first.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from nnequiv.errors import FormatError
from nnequiv.loading._gguf import MAX_DIMS, GGUFTensor, _gguf_module, iter_tensors
from nnequiv.loading._limits import require_count, require_regular, shown
from nnequiv.loading._source import OIHW, WeightSource, listed_source

MAGICS = {b"lmgg": "ggml", b"fmgg": "ggmf", b"tjgg": "ggjt"}
#: GGML type ids that are plain floats (read in every version).
_FLOATS = {0, 1}
#: Alignment of tensor data in ``ggjt`` files.
_ALIGNMENT = 32
#: whisper.cpp stores ``ftype + 1000 * quantisation version`` in its header.
_QUANT_VERSION_FACTOR = 1000
CONVERT_HINT = "convert it to GGUF with llama.cpp's conversion scripts"


class _Layout(Exception):
    """The bytes do not follow the layout being tried."""


class _Reader:
    def __init__(self, data, size: int):
        self.data, self.size, self.pos = data, size, 0

    def take(self, count: int) -> int:
        if count < 0 or self.pos + count > self.size:
            raise _Layout("runs past the end")
        start = self.pos
        self.pos += count
        return start

    def u32(self) -> int:
        return struct.unpack_from("<I", self.data, self.take(4))[0]

    def i32s(self, count: int) -> tuple[int, ...]:
        return struct.unpack_from(f"<{count}i", self.data, self.take(4 * count))

    def skip_vocab(self, count: int, scores: bool) -> None:
        if count < 0 or count * 4 > self.size - self.pos:
            raise _Layout("vocabulary larger than the file")
        for _ in range(count):
            self.take(self.u32())
            if scores:
                self.take(4)


def legacy_kind(data) -> tuple[str, int]:
    """``(magic name, version)`` of a legacy GGML file (version 0 for unversioned ``ggml``)."""
    name = MAGICS[bytes(data[:4])]
    version = 0 if name == "ggml" else struct.unpack_from("<I", data, 4)[0]
    return name, version


def ggml_tensors(path: Path) -> list[GGUFTensor]:
    """The tensor table of a legacy GGML file, checked against the file's size.

    Raises
    ------
    FormatError
        Not a legacy GGML file, a version or layout nnequiv does not read, or quantised
        tensors in a block layout older than ``ggjt`` v3.
    """
    gguf = _gguf_module(path)
    sizes = {int(k): v for k, v in gguf.constants.GGML_QUANT_SIZES.items()}
    size = require_regular(path).st_size
    if size < 8:
        raise FormatError(f"{path}: too short for a GGML file ({size} bytes)")
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if bytes(data[:4]) not in MAGICS:
            raise FormatError(f"{path}: not a legacy GGML file (no ggml/ggmf/ggjt magic)")
        name, version = legacy_kind(data)
        known = {"ggml": {0}, "ggmf": {1}, "ggjt": {1, 2, 3}}[name]
        if version not in known:
            raise FormatError(
                f"{path}: a legacy GGML file ('{name}' version {version}), a version nnequiv "
                f"does not read; {CONVERT_HINT}"
            )
        layouts = [_whisper, _llama] if name == "ggml" else [_llama]
        for layout in layouts:
            try:
                return layout(path, _Reader(data, size), name, version, sizes)
            except _Layout:
                continue
    what = f"'{name}' version {version}" if version else f"'{name}'"
    raise FormatError(
        f"{path}: a legacy GGML file ({what}) whose layout is neither llama.cpp's nor "
        f"whisper.cpp's, which nnequiv does not read; {CONVERT_HINT}"
    )


def _llama(path, reader: _Reader, name: str, version: int, sizes) -> list[GGUFTensor]:
    reader.take(4 if name == "ggml" else 8)
    n_vocab, *_ = reader.i32s(7)  # n_vocab, n_embd, n_mult, n_head, n_layer, n_rot, ftype
    reader.skip_vocab(n_vocab, scores=name != "ggml")
    current = name == "ggjt" and version >= 3
    return _records(path, reader, sizes, aligned=name == "ggjt", current_blocks=current)


def _whisper(path, reader: _Reader, name: str, version: int, sizes) -> list[GGUFTensor]:
    reader.take(4)
    hparams = reader.i32s(11)  # n_vocab, audio ctx/state/head/layer, text ..., n_mels, ftype
    n_mels, ftype = hparams[9], hparams[10]
    mel, fft = reader.i32s(2)
    if mel != n_mels or not 0 < fft < 1 << 16:
        raise _Layout("no mel filters")
    reader.take(4 * mel * fft)
    (n_vocab,) = reader.i32s(1)
    reader.skip_vocab(n_vocab, scores=False)
    current = ftype // _QUANT_VERSION_FACTOR >= 2
    return _records(path, reader, sizes, aligned=False, current_blocks=current)


def _records(path, reader: _Reader, sizes, aligned: bool, current_blocks: bool):
    tensors = []
    while reader.pos < reader.size:
        n_dims, length, ggml_type = reader.i32s(3)
        if not 1 <= n_dims <= MAX_DIMS or not 0 < length <= 4096 or ggml_type not in sizes:
            raise _Layout("not a tensor record")
        dims = reader.i32s(n_dims)
        if any(d <= 0 for d in dims):
            raise _Layout("a tensor with a dimension below one")
        start = reader.take(length)
        try:
            name = bytes(reader.data[start : start + length]).decode("utf-8")
        except UnicodeDecodeError:
            raise _Layout("a tensor name that is not text") from None
        if aligned:
            reader.take(-reader.pos % _ALIGNMENT)
        block, type_size = sizes[ggml_type]
        if dims[0] % block:
            raise _Layout("rows that are not whole quantisation blocks")
        elements = 1
        for d in dims:
            elements *= d
        nbytes = elements // block * type_size
        offset = reader.take(nbytes)
        if ggml_type not in _FLOATS and not current_blocks:
            raise FormatError(
                f"{path}: tensor '{shown(name)}' is quantised in a GGML block layout older "
                f"than ggjt v3, which nnequiv does not read; {CONVERT_HINT}"
            )
        tensors.append(GGUFTensor(name, tuple(reversed(dims)), offset, nbytes, ggml_type))
        require_count(str(path), "tensors", len(tensors), "max_tensors")
    if not tensors:
        raise _Layout("no tensors")
    return tensors


def open_ggml(path: Path, forced=None, *, max_tensor_bytes: int | None = None) -> WeightSource:
    """The :class:`WeightSource` of a legacy GGML file (table checked now, tensors read
    lazily, dequantised to float32 as GGUF tensors are)."""
    path = Path(path)
    listed = [(tensor.name, tensor.shape) for tensor in ggml_tensors(path)]
    return listed_source(
        path,
        forced or OIHW,
        listed,
        lambda: iter_tensors(path, ggml_tensors(path), max_tensor_bytes),
    )
