"""Writers of small weight files in every format the tests read (shared by the format,
safety and fuzz tests)."""

from __future__ import annotations

import json
import struct
import zipfile

import numpy as np


def out_last(array):
    """The TensorFlow layout of a PyTorch tensor: kernels kh x kw x in x out, dense in x out."""
    if array.ndim >= 3:
        return np.moveaxis(array, (0, 1), (-1, -2))
    if array.ndim == 2:
        return array.T
    return array


def save_safetensors(state, path):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path))


def save_sharded(state, directory):
    directory.mkdir()
    names = list(state)
    half = len(names) // 2
    weight_map = {}
    for index, part in enumerate([names[:half], names[half:]]):
        shard = f"model-{index + 1:05d}-of-00002.safetensors"
        save_safetensors({k: state[k] for k in part}, directory / shard)
        weight_map.update({k: shard for k in part})
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def save_onnx(state, path):
    """An ONNX graph carrying the weights as initializers and as Constant nodes."""
    import onnx
    from onnx import helper, numpy_helper

    names = list(state)
    initializers = [numpy_helper.from_array(state[k], k) for k in names[::2]]
    nodes = [
        helper.make_node("Constant", [], [k], value=numpy_helper.from_array(state[k], k))
        for k in names[1::2]
    ]
    out = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    nodes.append(helper.make_node("Identity", [names[0]], ["y"]))
    graph = helper.make_graph(nodes, "g", [], [out], initializer=initializers)
    onnx.save(helper.make_model(graph), str(path))


def save_h5(state, path):
    import h5py

    with h5py.File(path, "w") as handle:
        for name, array in state.items():
            handle.create_dataset(name.replace(".", "/") + ":0", data=out_last(array))


def save_keras(state, path, tmp_path):
    h5 = tmp_path / "model.weights.h5"
    save_h5(state, h5)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.write(h5, "model.weights.h5")


# ---- TFLite and GGUF --------------------------------------------------------------------


def _vector(builder, start, values, prepend):
    start(builder, len(values))
    for value in reversed(values):
        prepend(value)
    return builder.EndVector()


def write_tflite(path, tensors, operators, *, external=False):
    """A TFLite model of one subgraph.

    ``tensors``: dicts with ``name``, ``shape``, ``type`` and optionally ``data`` (bytes; no
    data makes an activation), ``scale``, ``zero_point``, ``axis``. ``operators``: ``(builtin
    code, inputs, outputs)``. ``external`` keeps the data after the flatbuffer (``offset`` and
    ``size`` as in models over 2 GiB).
    """
    import flatbuffers
    import tflite

    b = flatbuffers.Builder(1024)
    codes = sorted({op[0] for op in operators})
    blobs = [t.get("data") for t in tensors]
    appended, tail = [bytes(16)], 16  # data after a pad, so that no offset is 0 (the default)
    buffers = []
    for blob in [None, *[d for d in blobs if d is not None]]:
        data = None
        if blob is not None and not external:
            data = b.CreateNumpyVector(np.frombuffer(blob, dtype=np.uint8))
        tflite.BufferStart(b)
        if data is not None:
            tflite.BufferAddData(b, data)
        if blob is not None and external:
            appended.append(blob)
            tflite.BufferAddOffset(b, tail)  # patched below: relative to the flatbuffer's end
            tflite.BufferAddSize(b, len(blob))
            tail += len(blob)
        buffers.append(tflite.BufferEnd(b))
    built, index = [], 1
    for tensor, blob in zip(tensors, blobs):
        sparsity = _sparsity_table(b, tensor["sparsity"]) if "sparsity" in tensor else None
        name = b.CreateString(tensor["name"])
        shape = _vector(b, tflite.TensorStartShapeVector, list(tensor["shape"]), b.PrependInt32)
        quant = None
        if "scale" in tensor:
            scale = _vector(
                b, tflite.QuantizationParametersStartScaleVector, tensor["scale"], b.PrependFloat32
            )
            zero = _vector(
                b,
                tflite.QuantizationParametersStartZeroPointVector,
                tensor.get("zero_point", [0] * len(tensor["scale"])),
                b.PrependInt64,
            )
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, scale)
            tflite.QuantizationParametersAddZeroPoint(b, zero)
            tflite.QuantizationParametersAddQuantizedDimension(b, tensor.get("axis", 0))
            quant = tflite.QuantizationParametersEnd(b)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, tensor["type"])
        tflite.TensorAddName(b, name)
        if blob is not None:
            tflite.TensorAddBuffer(b, index)
            index += 1
        if quant is not None:
            tflite.TensorAddQuantization(b, quant)
        if sparsity is not None:
            tflite.TensorAddSparsity(b, sparsity)
        built.append(tflite.TensorEnd(b))
    ops = []
    for code, inputs, outputs in operators:
        ins = _vector(b, tflite.OperatorStartInputsVector, inputs, b.PrependInt32)
        outs = _vector(b, tflite.OperatorStartOutputsVector, outputs, b.PrependInt32)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, codes.index(code))
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        ops.append(tflite.OperatorEnd(b))
    tensor_vec = _vector(b, tflite.SubGraphStartTensorsVector, built, b.PrependUOffsetTRelative)
    op_vec = _vector(b, tflite.SubGraphStartOperatorsVector, ops, b.PrependUOffsetTRelative)
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensor_vec)
    tflite.SubGraphAddOperators(b, op_vec)
    graph = tflite.SubGraphEnd(b)
    opcodes = []
    for code in codes:
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, code)
        tflite.OperatorCodeAddBuiltinCode(b, code)
        opcodes.append(tflite.OperatorCodeEnd(b))
    graphs = _vector(b, tflite.ModelStartSubgraphsVector, [graph], b.PrependUOffsetTRelative)
    code_vec = _vector(b, tflite.ModelStartOperatorCodesVector, opcodes, b.PrependUOffsetTRelative)
    buffer_vec = _vector(b, tflite.ModelStartBuffersVector, buffers, b.PrependUOffsetTRelative)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, code_vec)
    tflite.ModelAddSubgraphs(b, graphs)
    tflite.ModelAddBuffers(b, buffer_vec)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    body = bytes(b.Output())
    if external:
        body = _shift_offsets(body, len(body), appended)
    path.write_bytes(body + b"".join(appended))
    return path


def _int32_vector(b, values):
    import tflite

    data = _vector(b, tflite.Int32VectorStartValuesVector, list(values), b.PrependInt32)
    tflite.Int32VectorStart(b)
    tflite.Int32VectorAddValues(b, data)
    return tflite.Int32VectorEnd(b)


def _sparsity_table(b, sparsity):
    """SparsityParameters from ``{"traversal", "block_map", "levels"}``; a level is
    ``("dense", size)`` or ``("csr", segments, indices)``."""
    import tflite

    levels = []
    for level in sparsity["levels"]:
        vectors = [_int32_vector(b, values) for values in level[1:]] if level[0] == "csr" else []
        tflite.DimensionMetadataStart(b)
        if level[0] == "dense":
            tflite.DimensionMetadataAddFormat(b, 0)
            tflite.DimensionMetadataAddDenseSize(b, level[1])
        else:
            tflite.DimensionMetadataAddFormat(b, 1)
            tflite.DimensionMetadataAddArraySegmentsType(b, 1)
            tflite.DimensionMetadataAddArraySegments(b, vectors[0])
            tflite.DimensionMetadataAddArrayIndicesType(b, 1)
            tflite.DimensionMetadataAddArrayIndices(b, vectors[1])
        levels.append(tflite.DimensionMetadataEnd(b))
    order = _vector(
        b, tflite.SparsityParametersStartTraversalOrderVector, sparsity["traversal"], b.PrependInt32
    )
    blocks = _vector(
        b, tflite.SparsityParametersStartBlockMapVector, sparsity["block_map"], b.PrependInt32
    )
    metadata = _vector(
        b, tflite.SparsityParametersStartDimMetadataVector, levels, b.PrependUOffsetTRelative
    )
    tflite.SparsityParametersStart(b)
    tflite.SparsityParametersAddTraversalOrder(b, order)
    tflite.SparsityParametersAddBlockMap(b, blocks)
    tflite.SparsityParametersAddDimMetadata(b, metadata)
    return tflite.SparsityParametersEnd(b)


def _shift_offsets(body: bytes, base: int, blobs) -> bytes:
    """Rewrite the buffers' relative offsets to absolute file offsets (base + relative)."""
    import tflite

    model = tflite.Model.GetRootAs(body, 0)
    data = bytearray(body)
    for i in range(1, model.BuffersLength()):
        table = model.Buffers(i)._tab
        field = table.Offset(6)
        position = table.Pos + field
        (relative,) = struct.unpack_from("<Q", data, position)
        struct.pack_into("<Q", data, position, base + relative)
    return bytes(data)


def write_gguf(path, tensors):
    """``tensors``: name -> (array, GGML type); quantised types are quantised here."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_token_list(["<s>", "</s>", "hello"])
    for name, (array, qtype) in tensors.items():
        if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            dtype = np.float32 if qtype == gguf.GGMLQuantizationType.F32 else np.float16
            writer.add_tensor(name, array.astype(dtype))
        else:
            packed = gguf.quants.quantize(array, qtype)
            writer.add_tensor(name, packed, raw_shape=packed.shape, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# ---- formats written by hand from their specifications ------------------------------------


def _gguf():
    import gguf

    return gguf


def ggml_record(name: str, array: np.ndarray, ggml_type: int, position: int, align: bool):
    """One tensor record: dims, name length, type, dims innermost first, name, data."""
    if ggml_type == 0:
        data = array.astype(np.float32).tobytes()
    elif ggml_type == 1:
        data = array.astype(np.float16).tobytes()
    else:
        data = _gguf().quants.quantize(array, _gguf().GGMLQuantizationType(ggml_type)).tobytes()
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


def write_mlprogram(path, weights) -> None:
    """An ML-program ``.mlmodel`` whose constants are inline float32 values."""
    operations = []
    for name, array in weights.items():
        raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
        floats = pb_bytes(1, pb_bytes(1, pb_bytes(1, raw)))
        operations.append(mil_const(name, 11, array.shape, pb_bytes(3, floats)))
    block = b"".join(pb_bytes(3, op) for op in operations)
    function = pb_bytes(2, b"CoreML5") + pb_bytes(3, pb_bytes(1, b"CoreML5") + pb_bytes(2, block))
    program = pb_varint(1, 1) + pb_bytes(2, pb_bytes(1, b"main") + pb_bytes(2, function))
    path.write_bytes(pb_varint(1, 7) + pb_bytes(502, program))
