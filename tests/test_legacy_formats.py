"""Formats written by hand here from their specifications (their writers, llama.cpp's old
converters, TensorFlow and coremltools, are not installed): legacy GGML files, TensorFlow
SavedModel variables (a TensorBundle), Core ML packages. Each is read as data, or refused
with one line that names the format and what to do."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from nnequiv.errors import FormatError, InputError
from nnequiv.loading import open_weights

gguf = pytest.importorskip("gguf")
from formats import (  # noqa: E402
    llama_file,
    pb_bytes,
    pb_varint,
    whisper_file,
    write_bundle,
    write_mlpackage,
)


def tensors(path) -> dict[str, np.ndarray]:
    return dict(open_weights(path).tensors())


# ---- legacy GGML ---------------------------------------------------------------------------


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


def tf1_checkpoint_variables() -> dict:
    """A TensorFlow 1 checkpoint as ``tf.train.Saver`` writes it with Adam: each variable with
    its two ``/Adam`` slots, and the optimizer's power accumulators."""
    rng = np.random.default_rng(5)
    weights = {
        "conv2d/kernel": rng.standard_normal((3, 3, 1, 6)).astype(np.float32),
        "conv2d/bias": rng.standard_normal(6).astype(np.float32),
        "dense/kernel": rng.standard_normal((6, 4)).astype(np.float32),
    }
    variables = {"beta1_power": np.ones((), np.float32)}
    for name, value in weights.items():
        variables |= {name: value, f"{name}/Adam": value * 0.1, f"{name}/Adam_1": value * 0.2}
    return dict(sorted(variables.items())), weights


def test_tensorflow_checkpoint_folder_is_read_without_its_optimizer_slots(tmp_path):
    """A checkpoint saved under a folder name (musicnn's): the files are '.index' and
    '.data-00000-of-00001', and the 'checkpoint' file names a path of the machine it was
    trained on."""
    from nnequiv.layers import layer_matrices
    from nnequiv.loading import OPTIMIZER_STATE

    variables, weights = tf1_checkpoint_variables()
    folder = tmp_path / "MTT_musicnn"
    write_bundle(folder / "x", variables)
    for suffix in (".index", ".data-00000-of-00001"):  # saved under the prefix 'folder/'
        (folder / f"x{suffix}").rename(folder / suffix)
    (folder / "checkpoint").write_text(
        'model_checkpoint_path: "/home/someone/experiments/1562/"\n'
        'all_model_checkpoint_paths: "/home/someone/experiments/1562/"\n'
    )
    (folder / "config.json").write_text("{}")
    source = open_weights(folder)
    assert source.layout == "hwio"
    got = {n: v for n, v in source.tensors() if isinstance(v, np.ndarray)}
    assert sorted(got) == sorted([*weights, "beta1_power"])
    for name, value in weights.items():
        np.testing.assert_array_equal(got[name], value)
    skipped = {s.name: s.reason for s in layer_matrices(folder).skipped}
    assert skipped["dense/kernel/Adam"] == skipped["conv2d/kernel/Adam_1"] == OPTIMIZER_STATE
    assert sorted(tensors(folder / ".index")) == sorted(tensors(folder))


def test_checkpoint_folder_with_several_checkpoints_reads_the_latest_or_says_which(tmp_path):
    variables, weights = tf1_checkpoint_variables()
    later = {name: value + 1 for name, value in variables.items()}
    folder = tmp_path / "run"
    write_bundle(folder / "model.ckpt-1000", variables)
    write_bundle(folder / "model.ckpt-2000", later)
    with pytest.raises(InputError) as info:
        open_weights(folder)
    assert "run: holds 2 TensorFlow checkpoints (model.ckpt-1000.index" in str(info.value)
    assert "give one .index file" in str(info.value)
    (folder / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-2000"\n')
    np.testing.assert_array_equal(tensors(folder)["dense/kernel"], later["dense/kernel"])
    first = tensors(folder / "model.ckpt-1000.index")
    np.testing.assert_array_equal(first["dense/kernel"], weights["dense/kernel"])


# ---- Core ML ML programs --------------------------------------------------------------------


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


def test_checkpoint_index_is_cached_by_the_bytes_of_its_data_shards(tmp_path):
    """An ``.index`` given alone is read with the data shards beside it: the cache key covers
    them, so changed weights are never answered from the cache."""
    from nnequiv.cache import file_content_hash, read_files

    variables, _ = tf1_checkpoint_variables()
    write_bundle(tmp_path / "model.ckpt", variables)
    index = tmp_path / "model.ckpt.index"
    data = tmp_path / "model.ckpt.data-00000-of-00001"
    assert read_files(index) == [data]
    before, _ = file_content_hash(index)
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0xFF
    data.write_bytes(bytes(raw))
    after, _ = file_content_hash(index)
    assert before is not None and after is not None and before != after
