"""Formats written by hand here from their specifications (their writers, llama.cpp's old
converters, TensorFlow and coremltools, are not installed): legacy GGML files, TensorFlow
SavedModel variables (a TensorBundle), Core ML packages. Each is read as data, or refused
with one line that names the format and what to do."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from nnequiv.errors import FormatError
from nnequiv.loading import open_weights

gguf = pytest.importorskip("gguf")


def tensors(path) -> dict[str, np.ndarray]:
    return dict(open_weights(path).tensors())


# ---- legacy GGML ---------------------------------------------------------------------------


def ggml_record(name: str, array: np.ndarray, ggml_type: int, position: int, align: bool):
    """One tensor record: dims, name length, type, dims innermost first, name, data."""
    if ggml_type == 0:
        data = array.astype(np.float32).tobytes()
    elif ggml_type == 1:
        data = array.astype(np.float16).tobytes()
    else:
        data = gguf.quants.quantize(array, gguf.GGMLQuantizationType(ggml_type)).tobytes()
    raw = name.encode()
    dims = list(reversed(array.shape))
    head = struct.pack(f"<3i{len(dims)}i", len(dims), len(raw), ggml_type, *dims) + raw
    pad = -(position + len(head)) % 32 if align else 0
    return head + bytes(pad) + data


def vocabulary(words, scores: bool) -> bytes:
    out = b""
    for word in words:
        out += struct.pack("<I", len(word)) + word + (struct.pack("<f", 0.5) if scores else b"")
    return out


def llama_file(path, magic: bytes, version, weights, ggml_type=0):
    words = [b"<s>", b"</s>", b"hi"]
    head = magic + (struct.pack("<I", version) if version is not None else b"")
    head += struct.pack("<7i", len(words), 64, 256, 4, 1, 16, 1)
    head += vocabulary(words, scores=magic != b"lmgg")
    body = head
    for name, array in weights.items():
        kind = ggml_type if array.ndim == 2 else 0
        body += ggml_record(name, array, kind, len(body), align=magic == b"tjgg")
    path.write_bytes(body)
    return path


def whisper_file(path, weights, ggml_type=1):
    words = [b"a", b"b"]
    head = b"lmgg" + struct.pack("<11i", len(words), 1500, 64, 2, 1, 448, 64, 2, 1, 4, 1001)
    head += struct.pack("<2i", 4, 3) + np.zeros(12, np.float32).tobytes()  # mel filters
    head += struct.pack("<i", len(words)) + vocabulary(words, scores=False)
    body = head
    for name, array in weights.items():
        body += ggml_record(name, array, ggml_type, len(body), align=False)
    path.write_bytes(body)
    return path


@pytest.fixture
def llm():
    rng = np.random.default_rng(5)
    return {
        "tok_embeddings.weight": rng.standard_normal((3, 64)).astype(np.float32),
        "layers.0.attention.wq.weight": rng.standard_normal((64, 64)).astype(np.float32),
        "norm.weight": rng.standard_normal(64).astype(np.float32),
    }


@pytest.mark.parametrize(
    "magic, version", [(b"lmgg", None), (b"fmgg", 1), (b"tjgg", 1), (b"tjgg", 2), (b"tjgg", 3)]
)
def test_llama_cpp_legacy_files_are_read(tmp_path, llm, magic, version):
    path = llama_file(tmp_path / "ggml-model-f32.bin", magic, version, llm)
    source = open_weights(path)
    assert source.layout == "oihw"
    got = dict(source.tensors())
    assert list(got) == list(llm)
    for name, array in llm.items():
        np.testing.assert_array_equal(got[name], array)


def test_ggjt_v3_quantised_blocks_are_dequantised_older_ones_refused(tmp_path, llm):
    path = llama_file(tmp_path / "q8.bin", b"tjgg", 3, llm, ggml_type=8)  # Q8_0
    got = tensors(path)
    weight = llm["layers.0.attention.wq.weight"]
    np.testing.assert_allclose(got["layers.0.attention.wq.weight"], weight, atol=0.05)
    old = llama_file(tmp_path / "old.bin", b"tjgg", 2, llm, ggml_type=8)
    with pytest.raises(FormatError, match=r"old\.bin: tensor .* older than ggjt v3.*GGUF"):
        open_weights(old)


def test_whisper_cpp_model_is_read(tmp_path):
    rng = np.random.default_rng(6)
    weights = {
        "encoder.conv1.weight": rng.standard_normal((64, 4, 3)).astype(np.float32),
        "encoder.blocks.0.attn.query.weight": rng.standard_normal((64, 64)).astype(np.float32),
    }
    path = whisper_file(tmp_path / "ggml-tiny.bin", weights)
    got = tensors(path)
    for name, array in weights.items():
        np.testing.assert_array_equal(got[name], array.astype(np.float16).astype(np.float32))


def test_other_ggml_layouts_and_versions_get_one_line(tmp_path, llm):
    gpt2 = b"lmgg" + struct.pack("<6i", 3, 1024, 64, 4, 1, 0) + b"\x00" * 40  # ggml's gpt-2
    (tmp_path / "gpt2.bin").write_bytes(gpt2)
    (tmp_path / "future.bin").write_bytes(b"tjgg" + struct.pack("<I", 9) + bytes(64))
    for name, message in [("gpt2.bin", "neither llama.cpp's nor"), ("future.bin", "version 9")]:
        with pytest.raises(FormatError) as info:
            open_weights(tmp_path / name)
        text = str(info.value)
        assert name in text and "legacy GGML" in text and message in text and "\n" not in text
    renamed = llama_file(tmp_path / "model.gguf", b"tjgg", 3, llm)  # a GGML file named .gguf
    assert list(tensors(renamed)) == list(llm)


# ---- TensorFlow SavedModel variables (TensorBundle) -------------------------------------------


def varint(value: int) -> bytes:
    out = b""
    while True:
        byte, value = value & 0x7F, value >> 7
        out += bytes([byte | (0x80 if value else 0)])
        if not value:
            return out


def pb_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def pb_bytes(number: int, data: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(data)) + data


def table_block(entries) -> bytes:
    """A table block with a restart point at every entry (no shared key prefixes)."""
    out, restarts = b"", []
    for key, value in entries:
        restarts.append(len(out))
        out += varint(0) + varint(len(key)) + varint(len(value)) + key + value
    restarts = restarts or [0]
    return out + b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))


def sstable(entries) -> bytes:
    """A sorted string table as TensorFlow's TensorBundle writer makes it (uncompressed)."""
    data = table_block(sorted(entries))
    file = data + bytes(5)  # type 0 (no compression) and a checksum
    meta_offset, meta = len(file), table_block([])
    file += meta + bytes(5)
    index_offset, index = (
        len(file),
        table_block([(max(k for k, _ in entries), varint(0) + varint(len(data)))]),
    )
    file += index + bytes(5)
    footer = varint(meta_offset) + varint(len(meta)) + varint(index_offset) + varint(len(index))
    return file + footer + bytes(40 - len(footer)) + struct.pack("<Q", 0xDB4775248B80FB57)


def write_bundle(prefix, variables, big_endian=False):
    """``variables``: name -> array (float32 unless given otherwise), or a TF dtype id and
    shape for a string."""
    data, entries = b"", [(b"", pb_varint(1, 1) + pb_varint(2, int(big_endian)))]
    for name, array in variables.items():
        if isinstance(array, tuple):  # a string variable: no numeric data
            dtype, shape, raw = array[0], array[1], b"xx"
        else:
            dtype = {np.dtype("float32"): 1, np.dtype("int64"): 9}[array.dtype]
            shape, raw = (
                array.shape,
                array.astype(array.dtype.newbyteorder(">" if big_endian else "<")).tobytes(),
            )
        dims = b"".join(pb_bytes(2, pb_varint(1, d)) for d in shape)
        proto = (
            pb_varint(1, dtype)
            + pb_bytes(2, dims)
            + pb_varint(4, len(data))
            + pb_varint(5, len(raw))
        )
        entries.append((name.encode(), proto))
        data += raw
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_name(prefix.name + ".index").write_bytes(sstable(entries))
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(data)


@pytest.fixture
def tf_variables():
    rng = np.random.default_rng(8)
    value = "/.ATTRIBUTES/VARIABLE_VALUE"
    return {
        f"layer_with_weights-0/kernel{value}": rng.standard_normal((3, 3, 2, 4)).astype(np.float32),
        f"layer_with_weights-0/bias{value}": rng.standard_normal(4).astype(np.float32),
        f"layer_with_weights-1/kernel{value}": rng.standard_normal((4, 5)).astype(np.float32),
        f"layer_with_weights-1/kernel/.OPTIMIZER_SLOT/optimizer/m{value}": rng.standard_normal(
            (4, 5)
        ).astype(np.float32),
        f"optimizer/iter{value}": np.array(7, dtype=np.int64),
        "_CHECKPOINTABLE_OBJECT_GRAPH": (7, ()),
    }


@pytest.mark.parametrize("big_endian", [False, True])
def test_savedmodel_variables_are_read_from_the_tensor_bundle(tmp_path, tf_variables, big_endian):
    from nnequiv.layers import layer_matrices
    from nnequiv.loading import OPTIMIZER_STATE

    folder = tmp_path / "saved"
    write_bundle(folder / "variables" / "variables", tf_variables, big_endian)
    (folder / "saved_model.pb").write_bytes(b"\x0a\x00")
    source = open_weights(folder)
    assert source.layout == "hwio"
    got = dict(source.tensors())
    assert sorted(got) == [
        "layer_with_weights-0/bias",
        "layer_with_weights-0/kernel",
        "layer_with_weights-1/kernel",
    ]
    value = "/.ATTRIBUTES/VARIABLE_VALUE"
    np.testing.assert_array_equal(
        got["layer_with_weights-0/kernel"], tf_variables[f"layer_with_weights-0/kernel{value}"]
    )
    skipped = {s.name: s.reason for s in layer_matrices(folder).skipped}
    assert skipped["layer_with_weights-1/kernel/.OPTIMIZER_SLOT/optimizer/m"] == OPTIMIZER_STATE
    # a checkpoint's .index file is the same bundle
    assert sorted(tensors(folder / "variables" / "variables.index")) == sorted(got)


def test_corrupt_tensor_bundles_get_one_line(tmp_path, tf_variables):
    write_bundle(tmp_path / "ckpt", tf_variables)
    index = tmp_path / "ckpt.index"
    good = index.read_bytes()
    index.write_bytes(good[:-8] + bytes(8))
    with pytest.raises(
        FormatError, match=r"ckpt\.index: corrupt TensorBundle index \(no table magic"
    ):
        open_weights(index)
    index.write_bytes(good)
    data = tmp_path / "ckpt.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:-130])  # into the last layer
    with pytest.raises(FormatError, match=r"ckpt\.index: variable .* ends past the end"):
        dict(open_weights(index).tensors())


# ---- Core ML ML programs --------------------------------------------------------------------


def mil_tensor_type(dtype: int, shape) -> bytes:
    dims = b"".join(pb_bytes(3, pb_bytes(1, pb_varint(1, d))) for d in shape)
    return pb_bytes(1, pb_varint(1, dtype) + pb_varint(2, len(shape)) + dims)


def mil_const(name: str, dtype: int, shape, value: bytes) -> bytes:
    """A ``const`` operation whose ``val`` is ``value`` (a Value's payload field)."""
    val = pb_bytes(2, mil_tensor_type(dtype, shape)) + value
    attribute = pb_bytes(1, b"val") + pb_bytes(2, val)
    output = pb_bytes(1, name.encode()) + pb_bytes(2, mil_tensor_type(dtype, shape))
    return pb_bytes(1, b"const") + pb_bytes(3, output) + pb_bytes(5, attribute)


def weight_file(arrays) -> tuple[bytes, list[int]]:
    """A Core ML blob storage file of float16 blobs, and each blob's metadata offset."""
    out, offsets = bytearray(struct.pack("<II", len(arrays), 2) + bytes(56)), []
    for array in arrays:
        raw = array.astype(np.float16).tobytes()
        offsets.append(len(out))
        out += struct.pack("<IIQQ", 0xDEADBEEF, 1, len(raw), len(out) + 64) + bytes(40)
        out += raw + bytes(-len(raw) % 64)
    return bytes(out), offsets


def write_mlpackage(folder, weights, bias):
    blob, offsets = weight_file(list(weights.values()))
    operations = [
        mil_const(
            name,
            10,
            array.shape,
            pb_bytes(5, pb_bytes(1, b"@model_path/weights/weight.bin") + pb_varint(2, at)),
        )
        for (name, array), at in zip(weights.items(), offsets)
    ]
    floats = pb_bytes(1, pb_bytes(1, pb_bytes(1, bias.astype("<f4").tobytes())))
    operations.append(mil_const("fc_bias", 11, bias.shape, pb_bytes(3, floats)))
    operations.append(pb_bytes(1, b"linear"))
    block = b"".join(pb_bytes(3, op) for op in operations)
    function = pb_bytes(2, b"CoreML5") + pb_bytes(3, pb_bytes(1, b"CoreML5") + pb_bytes(2, block))
    program = pb_varint(1, 1) + pb_bytes(2, pb_bytes(1, b"main") + pb_bytes(2, function))
    data = folder / "Data" / "com.apple.CoreML"
    (data / "weights").mkdir(parents=True)
    (data / "model.mlmodel").write_bytes(pb_varint(1, 7) + pb_bytes(502, program))
    (data / "weights" / "weight.bin").write_bytes(blob)
    (folder / "Manifest.json").write_text("{}")
    return folder


def test_coreml_ml_program_weights_are_read(tmp_path):
    rng = np.random.default_rng(9)
    weights = {
        "conv_weight_to_fp16": rng.standard_normal((8, 3, 3, 3)).astype(np.float16),
        "fc_weight_to_fp16": rng.standard_normal((10, 8)).astype(np.float16),
    }
    bias = rng.standard_normal(10).astype(np.float32)
    package = write_mlpackage(tmp_path / "Net.mlpackage", weights, bias)
    source = open_weights(package)
    assert source.layout == "oihw"
    got = dict(source.tensors())
    assert list(got) == [*weights, "fc_bias"]
    for name, array in weights.items():
        np.testing.assert_array_equal(got[name], array.astype(np.float32))
    np.testing.assert_array_equal(got["fc_bias"], bias)


def test_coreml_files_nnequiv_cannot_read_get_one_line_saying_what_to_do(tmp_path):
    rng = np.random.default_rng(9)
    package = write_mlpackage(
        tmp_path / "Net.mlpackage", {"w": rng.standard_normal((4, 4))}, np.ones(4)
    )
    weight_bin = package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    old = tmp_path / "old.mlmodel"
    old.write_bytes(pb_varint(1, 4) + pb_bytes(500, pb_bytes(1, b"")))  # a neural network
    cases = {
        weight_bin: "give the .mlpackage folder",
        old: "neural-network type",
    }
    for path, message in cases.items():
        with pytest.raises(FormatError) as info:
            open_weights(path)
        text = str(info.value)
        assert str(path) in text and message in text and "\n" not in text
    blob = weight_bin.read_bytes()
    weight_bin.write_bytes(blob[:64] + b"\x00" * 4 + blob[68:])  # the blob's sentinel broken
    with pytest.raises(FormatError, match=r"Net\.mlpackage: tensor 'w' points at no blob"):
        dict(open_weights(package).tensors())
