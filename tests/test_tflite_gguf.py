"""TFLite and GGUF files, written here: tensors come back with their values, OHWI kernels and
depthwise kernels as PyTorch would see them, quantised tensors dequantised, bad files refused
in one line."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from nnequiv.errors import FormatError, ResourceLimitError
from nnequiv.layers import layer_matrices
from nnequiv.loading import open_weights
from nnequiv.spectra import layer_spectra

tflite = pytest.importorskip("tflite")
flatbuffers = pytest.importorskip("flatbuffers")
gguf = pytest.importorskip("gguf")
from formats import write_gguf, write_tflite  # noqa: E402

CONV, DEPTHWISE, DEQUANTIZE, DENSE = 3, 4, 6, 9
FLOAT32, FLOAT16, INT32, UINT8, INT8, INT4 = 0, 1, 2, 3, 9, 17


@pytest.fixture
def weights():
    rng = np.random.default_rng(7)
    return {
        "conv": rng.standard_normal((8, 3, 3, 4)).astype(np.float32),  # OHWI
        "depthwise": rng.standard_normal((1, 3, 3, 8)).astype(np.float32),  # 1 x kh x kw x C
        "dense": rng.standard_normal((10, 8)).astype(np.float32),  # out x in
        "bias": rng.standard_normal(10).astype(np.float32),
    }


def float_model(path, weights, dtype=np.float32, type_id=FLOAT32, **kwargs):
    """input -> conv -> depthwise -> dense, weights stored as ``dtype`` (fp16 through
    DEQUANTIZE ops, as the TFLite converter writes them)."""
    names = ["conv", "depthwise", "dense", "bias"]
    tensors = [{"name": "input", "shape": [1, 6, 6, 4], "type": FLOAT32}]
    for name in names:
        tensors.append(
            {
                "name": name,
                "shape": list(weights[name].shape),
                "type": type_id,
                "data": weights[name].astype(dtype).tobytes(),
            }
        )
    kernel = {name: 1 + i for i, name in enumerate(names)}
    operators = []
    if type_id == FLOAT16:
        for name in names:
            tensors.append(
                {"name": f"{name}_dequantized", "shape": tensors[kernel[name]]["shape"], "type": 0}
            )
            operators.append((DEQUANTIZE, [kernel[name]], [len(tensors) - 1]))
            kernel[name] = len(tensors) - 1
    acts = len(tensors)
    tensors += [
        {"name": "conv_out", "shape": [1, 6, 6, 8], "type": FLOAT32},
        {"name": "dw_out", "shape": [1, 6, 6, 8], "type": FLOAT32},
        {"name": "logits", "shape": [1, 10], "type": FLOAT32},
    ]
    operators += [
        (CONV, [0, kernel["conv"]], [acts]),
        (DEPTHWISE, [acts, kernel["depthwise"]], [acts + 1]),
        (DENSE, [acts + 1, kernel["dense"], kernel["bias"]], [acts + 2]),
    ]
    return write_tflite(path, tensors, operators, **kwargs)


def read(path, **kwargs):
    source = open_weights(path, **kwargs)
    return source, dict(source.tensors())


@pytest.mark.parametrize("external", [False, True])
def test_tflite_float32_kernels_come_back_ohwi_and_depthwise_as_pytorch(
    tmp_path, weights, external
):
    path = float_model(tmp_path / "net.tflite", weights, external=external)
    source, arrays = read(path)
    assert source.layout == "ohwi"
    assert sorted(arrays) == ["bias", "conv", "dense", "depthwise"]  # no activations
    np.testing.assert_array_equal(arrays["conv"], weights["conv"])
    np.testing.assert_array_equal(arrays["dense"], weights["dense"])
    np.testing.assert_array_equal(arrays["depthwise"], weights["depthwise"].transpose(3, 1, 2, 0))
    assert dict(source.shapes())["depthwise"] == (8, 3, 3, 1)


def test_tflite_layer_spectra_equal_the_pytorch_layout(tmp_path, weights):
    path = float_model(tmp_path / "net.tflite", weights)
    torch_layout = {
        "conv": weights["conv"].transpose(0, 3, 1, 2),  # OHWI -> OIHW
        "depthwise": weights["depthwise"].transpose(3, 0, 1, 2),  # -> C x 1 x kh x kw
        "dense": weights["dense"],
    }
    shapes = {layer.name: layer.matrix_shape for layer in layer_matrices(path).layers}
    assert shapes == {"conv": (8, 36), "depthwise": (8, 9), "dense": (10, 8)}
    got = {s.name: s.eigenvalues for s in layer_spectra(path)}
    want = {s.name: s.eigenvalues for s in layer_spectra(torch_layout, layout="oihw")}
    for name in torch_layout:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6)


def test_tflite_float16_weights_are_widened_through_their_dequantize_ops(tmp_path, weights):
    path = float_model(tmp_path / "half.tflite", weights, np.float16, FLOAT16)
    _, arrays = read(path)
    assert sorted(arrays) == ["bias", "conv", "dense", "depthwise"]
    assert all(a.dtype == np.float32 for a in arrays.values())
    half = {k: v.astype(np.float16).astype(np.float32) for k, v in weights.items()}
    np.testing.assert_array_equal(arrays["conv"], half["conv"])
    np.testing.assert_array_equal(arrays["depthwise"], half["depthwise"].transpose(3, 1, 2, 0))


def test_tflite_int8_and_uint8_dequantised_per_channel_and_per_tensor(tmp_path):
    rng = np.random.default_rng(3)
    conv_q = rng.integers(-127, 128, (6, 3, 3, 2), dtype=np.int8)
    conv_scale = rng.uniform(0.01, 0.1, 6).astype(np.float32)
    dw_q = rng.integers(-127, 128, (1, 3, 3, 6), dtype=np.int8)
    dw_scale = rng.uniform(0.01, 0.1, 6).astype(np.float32)
    dense_q = rng.integers(0, 256, (4, 6), dtype=np.uint8)
    bias_q = rng.integers(-1000, 1000, 4, dtype=np.int32)
    tensors = [
        {"name": "input", "shape": [1, 5, 5, 2], "type": INT8, "scale": [0.5], "zero_point": [3]},
        {"name": "conv", "shape": [6, 3, 3, 2], "type": INT8, "data": conv_q.tobytes(),
         "scale": conv_scale.tolist(), "axis": 0},
        {"name": "dw", "shape": [1, 3, 3, 6], "type": INT8, "data": dw_q.tobytes(),
         "scale": dw_scale.tolist(), "axis": 3},
        {"name": "dense", "shape": [4, 6], "type": UINT8, "data": dense_q.tobytes(),
         "scale": [0.02], "zero_point": [128]},
        {"name": "bias", "shape": [4], "type": INT32, "data": bias_q.tobytes(), "scale": [1e-3]},
        {"name": "shape_const", "shape": [2], "type": INT32, "data": np.int32([1, 6]).tobytes()},
        {"name": "a1", "shape": [1, 5, 5, 6], "type": INT8},
        {"name": "a2", "shape": [1, 5, 5, 6], "type": INT8},
        {"name": "a3", "shape": [1, 4], "type": INT8},
    ]  # fmt: skip
    operators = [(CONV, [0, 1], [6]), (DEPTHWISE, [6, 2], [7]), (DENSE, [7, 3, 4], [8])]
    path = write_tflite(tmp_path / "int8.tflite", tensors, operators)
    _, arrays = read(path)
    assert sorted(arrays) == ["bias", "conv", "dense", "dw", "shape_const"]
    np.testing.assert_allclose(arrays["conv"], conv_q * conv_scale[:, None, None, None], rtol=1e-6)
    want_dw = (dw_q * dw_scale).transpose(3, 1, 2, 0)
    np.testing.assert_allclose(arrays["dw"], want_dw, rtol=1e-6)
    np.testing.assert_allclose(
        arrays["dense"], (dense_q.astype(np.float32) - 128) * 0.02, rtol=1e-6
    )
    np.testing.assert_allclose(arrays["bias"], bias_q * 1e-3, rtol=1e-6)
    assert arrays["shape_const"].dtype == np.int32  # no scale: left as integers, not a layer


def test_tflite_int4_unpacked_low_nibble_first(tmp_path):
    values = np.array([[-8, 7, -1, 0], [1, 2, -3, 5]], dtype=np.int8)
    flat = (values.reshape(-1) & 0x0F).astype(np.uint8)
    packed = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8).tobytes()
    tensors = [{"name": "w", "shape": [2, 4], "type": INT4, "data": packed, "scale": [0.25]}]
    path = write_tflite(tmp_path / "int4.tflite", tensors, [])
    _, arrays = read(path)
    np.testing.assert_array_equal(arrays["w"], values * 0.25)


def sparse_rows(dense: np.ndarray, block: int = 1):
    """A dense out x in matrix as TFLite stores it sparse: rows dense, then the non-zero
    blocks of ``block`` columns of each row (CSR), then (for blocks) the block's values."""
    rows, columns = dense.shape
    blocked = dense.reshape(rows, columns // block, block)
    segments, indices, values = [0], [], []
    for row in blocked:
        for index, part in enumerate(row):
            if np.any(part):
                indices.append(index)
                values.extend(part if block > 1 else part[:1])
        segments.append(len(indices))
    levels = [("dense", rows), ("csr", segments, indices)]
    if block > 1:
        levels.append(("dense", block))
    sparsity = {
        "traversal": list(range(len(levels))),
        "block_map": [1] if block > 1 else [],
        "levels": levels,
    }
    return np.asarray(values, dtype=dense.dtype), sparsity


@pytest.mark.parametrize("block", [1, 4])
def test_tflite_sparse_weights_are_densified_as_the_runtime_does(tmp_path, block):
    rng = np.random.default_rng(3)
    dense = rng.standard_normal((6, 8)).astype(np.float32)
    dense[rng.random((6, 8)) < 0.6] = 0  # pruned elements
    dense[2] = 0  # an empty row
    if block > 1:  # pruned in whole blocks of 4
        dense[:, 4:] *= np.array([1, 0, 1, 0, 1, 0])[:, None]
    values, sparsity = sparse_rows(dense, block)
    tensor = {"name": "fc", "shape": [6, 8], "type": FLOAT32, "sparsity": sparsity}
    path = write_tflite(tmp_path / "sparse.tflite", [{**tensor, "data": values.tobytes()}], [])
    _, arrays = read(path)
    np.testing.assert_array_equal(arrays["fc"], dense)
    # a layout that points outside the tensor, or lists more positions than values: one line
    bad = dict(sparsity, levels=[("dense", 6), ("csr", sparsity["levels"][1][1], [99] * 40)])
    path = write_tflite(
        tmp_path / "bad.tflite", [{**tensor, "sparsity": bad, "data": values.tobytes()}], []
    )
    with pytest.raises(FormatError, match=r"bad\.tflite: tensor 'fc' has an invalid sparse layout"):
        read(path)
    short = {**tensor, "data": values[:-1].tobytes()}
    path = write_tflite(tmp_path / "short.tflite", [short], [])
    with pytest.raises(
        FormatError, match=r"short\.tflite: tensor 'fc' lists more sparse positions"
    ):
        read(path)


def test_tflite_bad_files_refused_in_one_line(tmp_path, weights):
    good = float_model(tmp_path / "net.tflite", weights).read_bytes()
    cases = {
        "notflite.tflite": b"\x00" * 64,
        "truncated.tflite": good[: len(good) // 3],
        "garbage.tflite": good[:8]
        + bytes(np.random.default_rng(0).integers(0, 256, 200, np.uint8)),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(FormatError) as info:
            read(tmp_path / name)
        message = str(info.value)
        assert name in message and "\n" not in message


def test_tflite_buffer_past_the_end_and_over_the_limit_refused(tmp_path, weights):
    path = float_model(tmp_path / "ext.tflite", weights, external=True)
    data = path.read_bytes()
    path.write_bytes(data[:-8])  # the last buffer now ends past the end of the file
    with pytest.raises(FormatError, match="past the end"):
        read(path)
    from nnequiv.loading._tflite import iter_tflite

    path = float_model(tmp_path / "net.tflite", weights)
    with pytest.raises(ResourceLimitError, match="'conv'.*limit of 100 bytes"):
        list(iter_tflite(path, max_tensor_bytes=100))


# --- GGUF ---------------------------------------------------------------------------------------


@pytest.fixture
def llm_weights():
    rng = np.random.default_rng(11)
    return {
        "blk.0.attn_q.weight": rng.standard_normal((32, 64)).astype(np.float32),  # out x in
        "blk.0.ffn_up.weight": rng.standard_normal((96, 64)).astype(np.float32),
        "blk.0.ffn_down.weight": rng.standard_normal((64, 96)).astype(np.float32),
        "blk.0.attn_norm.weight": rng.standard_normal(64).astype(np.float32),
    }


def test_gguf_f32_f16_q8_0_come_back_out_by_in(tmp_path, llm_weights):
    T = gguf.GGMLQuantizationType
    types = {
        "blk.0.attn_q.weight": T.F32,
        "blk.0.ffn_up.weight": T.F16,
        "blk.0.ffn_down.weight": T.Q8_0,
        "blk.0.attn_norm.weight": T.F32,
    }
    path = write_gguf(tmp_path / "m.gguf", {k: (llm_weights[k], types[k]) for k in types})
    # GGML lists dimensions innermost first: the torch "out x in" weight is ne = [in, out]
    ne = {t.name: list(map(int, t.shape)) for t in gguf.GGUFReader(str(path)).tensors}
    assert ne["blk.0.attn_q.weight"] == [64, 32]
    source, arrays = read(path)
    assert source.layout == "oihw"
    assert list(arrays) == list(types)
    for name, array in llm_weights.items():
        assert arrays[name].shape == array.shape and arrays[name].dtype == np.float32
    np.testing.assert_array_equal(arrays["blk.0.attn_q.weight"], llm_weights["blk.0.attn_q.weight"])
    half = llm_weights["blk.0.ffn_up.weight"].astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(arrays["blk.0.ffn_up.weight"], half)
    down = llm_weights["blk.0.ffn_down.weight"]
    want = gguf.quants.dequantize(gguf.quants.quantize(down, T.Q8_0), T.Q8_0)
    np.testing.assert_array_equal(arrays["blk.0.ffn_down.weight"], want)
    assert np.abs(arrays["blk.0.ffn_down.weight"] - down).max() < 0.02 * np.abs(down).max()
    assert dict(source.shapes())["blk.0.ffn_up.weight"] == (96, 64)


def test_gguf_q4_0_and_bf16_dequantised(tmp_path, llm_weights):
    T = gguf.GGMLQuantizationType
    w = llm_weights["blk.0.ffn_up.weight"]
    path = write_gguf(tmp_path / "q.gguf", {"q4": (w, T.Q4_0), "bf": (w, T.BF16)})
    _, arrays = read(path)
    for name, qtype in (("q4", T.Q4_0), ("bf", T.BF16)):
        want = gguf.quants.dequantize(gguf.quants.quantize(w, qtype), qtype)
        np.testing.assert_array_equal(arrays[name], want)
        assert arrays[name].shape == w.shape


def test_gguf_spectra_equal_those_of_the_same_float_weights(tmp_path, llm_weights):
    matrices = {k: v for k, v in llm_weights.items() if v.ndim == 2}
    path = write_gguf(
        tmp_path / "f.gguf", {k: (v, gguf.GGMLQuantizationType.F32) for k, v in matrices.items()}
    )
    got = {s.name: s.eigenvalues for s in layer_spectra(path)}
    want = {s.name: s.eigenvalues for s in layer_spectra(matrices, layout="oihw")}
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10)


def test_gguf_bad_files_refused_in_one_line(tmp_path, llm_weights):
    good = write_gguf(
        tmp_path / "good.gguf",
        {k: (v, gguf.GGMLQuantizationType.F32) for k, v in llm_weights.items()},
    ).read_bytes()
    # an array of 2**60 tokens in the metadata: must fail at once, not loop
    huge = bytearray(good)
    key = b"tokenizer.ggml.tokens"
    at = huge.index(key) + len(key) + 4 + 4  # key, value type ARRAY, item type STRING
    huge[at : at + 8] = struct.pack("<Q", 1 << 60)
    cases = {
        "magic.gguf": b"GGUX" + good[4:],
        "truncated.gguf": good[: len(good) - 100],
        "header.gguf": good[:40],
        "huge_array.gguf": bytes(huge),
        "version.gguf": good[:4] + struct.pack("<I", 99) + good[8:],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(FormatError) as info:
            read(tmp_path / name)
        assert name in str(info.value) and "\n" not in str(info.value)
    from nnequiv.loading._gguf import iter_gguf

    with pytest.raises(ResourceLimitError, match="limit of 1000 bytes"):
        list(iter_gguf(tmp_path / "good.gguf", max_tensor_bytes=1000))


def test_gguf_split_files_are_one_network(tmp_path, llm_weights):
    T = gguf.GGMLQuantizationType
    names = list(llm_weights)
    write_gguf(tmp_path / "m-00001-of-00002.gguf", {n: (llm_weights[n], T.F32) for n in names[:2]})
    write_gguf(tmp_path / "m-00002-of-00002.gguf", {n: (llm_weights[n], T.F32) for n in names[2:]})
    from nnequiv.discovery import discover

    (found,) = discover([tmp_path])
    arrays = dict(open_weights(found.source).tensors())
    assert list(arrays) == names
    assert found.label == "m-*-of-00002.gguf"


def test_gguf_tensor_names_in_errors_are_escaped_and_bad_shapes_are_one_line(tmp_path):
    """Structured fuzzing found a name printed raw (escape sequences, kilobytes of it) and a
    zero-sized tensor of a huge shape that failed in numpy's reshape with a traceback."""
    name = "w\x1b[31mred"
    data = write_gguf(
        tmp_path / "n.gguf", {name: (np.ones((4, 8), np.float32), gguf.GGMLQuantizationType.F32)}
    ).read_bytes()
    at = data.index(name.encode()) + len(name)  # the tensor's dimension count follows its name
    many = data[:at] + struct.pack("<I", 2_021_161_080) + data[at + 4 :]
    (tmp_path / "many.gguf").write_bytes(many)
    with pytest.raises(FormatError) as info:
        read(tmp_path / "many.gguf")
    message = str(info.value)
    assert "\x1b" not in message and "\\x1b[31mred" in message and "\n" not in message
    dims = struct.pack("<QQ", 0, 1 << 62)  # 0 x 2**62 values: zero bytes, no array shape
    empty = data[:at] + struct.pack("<I", 2) + dims + data[at + 4 + 16 :]
    (tmp_path / "empty.gguf").write_bytes(empty)
    with pytest.raises(FormatError) as info:
        read(tmp_path / "empty.gguf")
    assert str(tmp_path / "empty.gguf") in str(info.value) and "\n" not in str(info.value)
