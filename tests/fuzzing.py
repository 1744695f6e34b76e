"""Mutation fuzzing of every format nnequiv reads (used by tests/test_fuzz.py and
benchmarks/fuzz.py).

Small valid seed files are mutated at fixed seeds: mutant ``i`` of a format comes from the
random stream ``(seed, format, i)`` alone, so any mutant can be rebuilt from its number.
Mutations are byte-level (bit flips, interesting integers, truncation, insertions, deletions,
copies) and structure-aware (a zip member mutated and re-zipped with valid checksums, a
safetensors header edited as JSON, an ONNX tensor's fields edited, CSV cells and GraphML
text replaced), so the readers see both broken containers and well-formed containers of
broken content.

Mutants run in worker processes (``python tests/fuzzing.py worker ...``) that print one line
per mutant; the parent kills a worker whose mutant takes longer than a deadline (a hang) and
goes on with the next mutant in a new worker. After every mutant the worker checks that its
working directory, HOME and mutant directory hold nothing new (a side effect).

Outcomes: ``loaded``; ``clean error`` (an ``nnequiv.errors`` exception whose message is one
line naming the file); ``unclean error`` (an ``nnequiv.errors`` exception with a message that
spans lines or does not name the file); ``traceback`` (any other exception); ``hang``;
``side effect``.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import signal
import subprocess
import sys
import threading
import time
import traceback
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMATS = (
    *("npz", "safetensors", "pt", "torchscript", "onnx", "h5", "keras", "csv", "graphml"),
    *("npy", "tflite", "gguf", "ggml", "tensorbundle", "coreml"),
)
SUFFIXES = {
    "npz": ".npz",
    "npy": ".npy",
    "tflite": ".tflite",
    "gguf": ".gguf",
    "ggml": ".bin",
    "tensorbundle": ".index",
    "coreml": ".mlmodel",
    "safetensors": ".safetensors",
    "pt": ".pt",
    "torchscript": ".pt",
    "onnx": ".onnx",
    "h5": ".h5",
    "keras": ".keras",
    "csv": ".csv",
    "graphml": ".graphml",
}
#: What ``--structured`` adds: a folder of shards and its index, a folder to search, a
#: fingerprint index, a cache entry (tests/structured.py builds every kind from scratch).
STRUCTURED_KINDS = (*FORMATS, "shards", "folder", "index", "cache")
OUTCOMES = (
    *("loaded", "clean error", "unclean error", "traceback", "crash", "hang", "side effect"),
)
#: Files a mutant may refer to, placed beside it (ONNX external data).
AUX_FILES = {"weights.bin": bytes(range(256)) * 16}
#: Files that go with each mutant of a format, copied from the seed's own (a TensorBundle's
#: data shard beside its index): the ending that replaces the seed's suffix.
COMPANIONS = {"tensorbundle": ".data-00000-of-00001"}
INTERESTING_INTS = [
    *(0, 1, -1, 2, 7, 8, 255, 256, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1),
    *(2**32, 2**40, 2**53, 2**62, 2**63 - 1, -(2**31), -(2**63)),
]
JSON_VALUES = [
    *(-1, 0, 1, 2**31, 2**64, 1.5, -0.0, 1e308, "x", "", "F32", "BF16", "F8_E4M3", None, True),
    *([], [-1], [2**40, 2**40], [1, "2"], {}, {"a": "b"}, [[[[]]]]),
]
#: How often each byte edit is chosen: bit flips, an interesting byte, an interesting integer,
#: truncation (rare: it stops most readers at once), deletion, insertion, copy, overwrite.
BYTE_EDIT_WEIGHTS = [0.3, 0.15, 0.2, 0.05, 0.075, 0.075, 0.075, 0.075]
CSV_CELLS = [
    *("", "nan", "inf", "-inf", "-1", "0", "1e400", "x", "a", "0x10", "1_0", '"', "\x00"),
    *("é", " ", "1,2", "9" * 5000, "x" * 200_000),
]


# ---- seed files -------------------------------------------------------------------------


def small_state(seed: int = 0) -> dict[str, np.ndarray]:
    """A small network: a convolution, two dense layers and their biases (PyTorch layout)."""
    rng = np.random.default_rng(seed)
    return {
        "conv.weight": rng.standard_normal((6, 3, 3, 3)).astype(np.float32),
        "conv.bias": rng.standard_normal(6).astype(np.float32),
        "fc1.weight": rng.standard_normal((12, 24)).astype(np.float32),
        "fc1.bias": rng.standard_normal(12).astype(np.float32),
        "fc2.weight": rng.standard_normal((5, 12)).astype(np.float32),
    }


def build_seeds(directory: Path) -> dict[str, list[Path]]:
    """Valid seed files of every format whose writer is installed, by format."""
    from formats import save_h5, save_keras, save_onnx, save_safetensors

    directory.mkdir(parents=True, exist_ok=True)
    state = small_state()
    seeds: dict[str, list[Path]] = {}

    def add(kind: str, name: str, write) -> None:
        path = directory / name
        try:
            write(path)
        except ImportError:
            return
        seeds.setdefault(kind, []).append(path)

    add("npz", "net.npz", lambda p: np.savez_compressed(p, **state))
    add("npz", "plain.npz", lambda p: np.savez(p, **state))
    add("safetensors", "net.safetensors", lambda p: save_safetensors(state, p))
    add("onnx", "net.onnx", lambda p: save_onnx(state, p))
    add("h5", "net.h5", lambda p: save_h5(state, p))
    add("keras", "net.keras", lambda p: save_keras(state, p, directory))
    add("pt", "net.pt", lambda p: _save_torch(state, p, legacy=False))
    add("pt", "legacy.pt", lambda p: _save_torch(state, p, legacy=True))
    add("torchscript", "script.pt", _save_torchscript)
    add("csv", "adjacency.csv", lambda p: _save_adjacency(p))
    add("csv", "edges.csv", lambda p: _save_edges(p))
    add("graphml", "net.graphml", _save_graphml)
    add("pt", "module.pt", _save_module)
    add("pt", "lightning.ckpt", lambda p: _save_lightning(state, p))
    add("npy", "pickled.npy", lambda p: _save_pickled_npy(state, p))
    add("pt", "arrays.pkl", lambda p: p.write_bytes(pickle.dumps(state, protocol=2)))
    add("onnx", "quantized.onnx", lambda p: _save_quantized_onnx(state, p))
    add("npy", "plain.npy", lambda p: np.save(p, state["fc1.weight"]))
    add("tflite", "net.tflite", lambda p: _save_tflite(state, p))
    add("gguf", "net.gguf", lambda p: _save_gguf(state, p))
    add("ggml", "ggjt.bin", lambda p: _save_ggml(state, p, b"tjgg", 3))
    add("ggml", "whisper.bin", lambda p: _save_whisper(state, p))
    add("tensorbundle", "variables.index", lambda p: _save_bundle(state, p))
    add("coreml", "model.mlmodel", lambda p: _save_coreml(state, p))
    return seeds


def _save_module(path: Path) -> None:
    import torch
    from nets import SmallCNN

    torch.manual_seed(0)
    torch.save(SmallCNN(), path)


def _save_lightning(state, path: Path) -> None:
    import argparse

    import torch

    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    hparams = argparse.Namespace(lr=0.1, layers=[3, 8])
    torch.save({"state_dict": tensors, "hyper_parameters": hparams, "epoch": 2}, path)


def _save_pickled_npy(state, path: Path) -> None:
    nested = {"conv": {"kernel": state["conv.weight"]}, "dense": [state["fc1.weight"]]}
    np.save(path, nested, allow_pickle=True)


def _save_quantized_onnx(state, path: Path) -> None:
    """Int8 weights behind DequantizeLinear (per output channel) and MatMulInteger (their
    scale beside them, as the quantizer names it)."""
    import onnx
    from onnx import helper, numpy_helper

    conv = np.clip(np.round(state["conv.weight"] * 40), -127, 127).astype(np.int8)
    dense = np.clip(np.round(state["fc1.weight"] * 40) + 128, 0, 255).astype(np.uint8)
    arrays = {
        "conv_quantized": conv,
        "conv_scale": np.full(conv.shape[0], 0.025, np.float32),
        "conv_zero_point": np.zeros(conv.shape[0], np.int8),
        "fc1_quantized": dense,
        "fc1_scale": np.array(0.025, np.float32),
        "fc1_zero_point": np.array(128, np.uint8),
    }
    nodes = [
        helper.make_node(
            "DequantizeLinear",
            ["conv_quantized", "conv_scale", "conv_zero_point"],
            ["conv"],
            axis=0,
        ),
        helper.make_node("MatMulInteger", ["x", "fc1_quantized", "", "fc1_zero_point"], ["y"]),
    ]
    out = helper.make_tensor_value_info("y", onnx.TensorProto.INT32, [1])
    initializers = [numpy_helper.from_array(value, name) for name, value in arrays.items()]
    graph = helper.make_graph(nodes, "q", [], [out], initializer=initializers)
    onnx.save(helper.make_model(graph), str(path))


def _save_tflite(state, path: Path) -> None:
    from formats import write_tflite

    tensors = [
        {"name": name, "shape": list(array.shape), "type": 0, "data": array.tobytes()}
        for name, array in state.items()
    ]
    dense = state["fc2.weight"].copy()
    dense[:, ::2] = 0
    segments, indices, values = [0], [], []
    for row in dense:
        nonzero = np.flatnonzero(row)
        indices += nonzero.tolist()
        values += row[nonzero].tolist()
        segments.append(len(indices))
    sparsity = {
        "traversal": [0, 1],
        "block_map": [],
        "levels": [("dense", 5), ("csr", segments, indices)],
    }
    tensors.append(
        {
            "name": "sparse",
            "shape": list(dense.shape),
            "type": 0,
            "data": np.asarray(values, np.float32).tobytes(),
            "sparsity": sparsity,
        }
    )
    write_tflite(path, tensors, [])


def _save_gguf(state, path: Path) -> None:
    import gguf
    from formats import write_gguf

    kinds = [gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16]
    weights = {"w1": np.ones((4, 32), np.float32), "w2": np.arange(64, dtype=np.float32)}
    write_gguf(
        path, {name: (array, kinds[i % 2]) for i, (name, array) in enumerate(weights.items())}
    )


def _save_ggml(state, path: Path, magic: bytes, version) -> None:
    from formats import llama_file

    llama_file(
        path, magic, version, {"fc1.weight": state["fc1.weight"], "fc1.bias": state["fc1.bias"]}
    )


def _save_whisper(state, path: Path) -> None:
    from formats import whisper_file

    whisper_file(path, {"fc1.weight": state["fc1.weight"]})


def _save_bundle(state, path: Path) -> None:
    from formats import write_bundle

    value = "/.ATTRIBUTES/VARIABLE_VALUE"
    variables = {f"{name.replace('.', '/')}{value}": array for name, array in state.items()}
    write_bundle(path.with_name(path.stem), variables)


def _save_coreml(state, path: Path) -> None:
    from formats import write_mlprogram

    write_mlprogram(path, state)


def _save_torch(state, path: Path, legacy: bool) -> None:
    import torch

    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    options = {"_use_new_zipfile_serialization": False} if legacy else {}
    torch.save({"epoch": 1, "state_dict": tensors}, path, **options)


def _save_torchscript(path: Path) -> None:
    import torch
    from nets import SmallCNN

    torch.manual_seed(0)
    torch.jit.script(SmallCNN().eval()).save(str(path))


def _connectome(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    matrix = rng.poisson(0.8, (10, 10)).astype(float)
    np.fill_diagonal(matrix, 0)
    return matrix


def _save_adjacency(path: Path) -> None:
    matrix = _connectome()
    names = [f"N{i}" for i in range(len(matrix))]
    rows = [",".join(["", *names])]
    rows += [",".join([n, *(f"{v:g}" for v in row)]) for n, row in zip(names, matrix)]
    path.write_text("\n".join(rows) + "\n")


def _save_edges(path: Path) -> None:
    matrix = _connectome(1)
    pre, post = np.nonzero(matrix)
    rows = ["pre,post,weight", *(f"N{a},N{b},{matrix[a, b]:g}" for a, b in zip(pre, post))]
    path.write_text("\n".join(rows) + "\n")


def _save_graphml(path: Path) -> None:
    import networkx as nx

    matrix = _connectome(2)
    graph = nx.DiGraph()
    graph.add_nodes_from(f"N{i}" for i in range(len(matrix)))
    pre, post = np.nonzero(matrix)
    graph.add_weighted_edges_from((f"N{a}", f"N{b}", matrix[a, b]) for a, b in zip(pre, post))
    nx.write_graphml(graph, path)


# ---- mutators ---------------------------------------------------------------------------


def _position(rng, size: int) -> int:
    """A byte position, biased to the first KiB where headers live."""
    if size <= 1:
        return 0
    if rng.random() < 0.5:
        return int(rng.integers(0, min(size, 1024)))
    return int(rng.integers(0, size))


def mutate_bytes(data: bytes, rng) -> bytes:
    """One to four random byte-level edits of ``data``."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        size = len(out)
        kind = int(rng.choice(8, p=BYTE_EDIT_WEIGHTS))
        at = _position(rng, size)
        if kind == 0 and size:  # flip a few bits
            for _ in range(int(rng.integers(1, 9))):
                spot = _position(rng, size)
                out[spot] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1 and size:  # an interesting byte
            out[at] = int(rng.choice([0, 1, 0x7F, 0x80, 0xFF, ord("{"), ord("["), ord('"')]))
        elif kind == 2 and size > 8:  # an interesting integer, 2/4/8 bytes, either endian
            width = int(rng.choice([2, 4, 8]))
            value = int(rng.choice(INTERESTING_INTS)) % (1 << (8 * width))
            order = "little" if rng.random() < 0.8 else "big"
            at = min(at, size - width)
            out[at : at + width] = value.to_bytes(width, order)
        elif kind == 3:  # truncate
            del out[at:]
        elif kind == 4:  # delete a range
            del out[at : at + int(rng.integers(1, 64))]
        elif kind == 5:  # insert random bytes
            out[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        elif kind == 6 and size:  # duplicate a range
            start = _position(rng, size)
            out[at:at] = out[start : start + int(rng.integers(1, 256))]
        elif kind == 7 and size:  # overwrite with another region
            start = _position(rng, size)
            piece = out[start : start + int(rng.integers(1, 64))]
            out[at : at + len(piece)] = piece
    return bytes(out)


def mutate_zip(data: bytes, rng) -> bytes:
    """One member of a zip archive mutated, the archive rebuilt with valid checksums."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        contents = [archive.read(info) for info in infos]
    weights = np.array([4.0 if _is_payload(i.filename) else 1.0 for i in infos])
    chosen = int(rng.choice(len(infos), p=weights / weights.sum()))
    name = infos[chosen].filename
    if name.endswith(".pkl") and rng.random() < 0.5:
        contents[chosen] = mutate_pickle_ints(contents[chosen], rng)
    elif name.endswith((".py", ".json", "byteorder", "version")) and rng.random() < 0.5:
        contents[chosen] = _mutate_text(contents[chosen].decode("utf-8", "replace"), rng).encode()
    else:
        contents[chosen] = mutate_bytes(contents[chosen], rng)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for info, content in zip(infos, contents):
            archive.writestr(info, content)
    return out.getvalue()


def mutate_pickle_ints(data: bytes, rng) -> bytes:
    """One integer of a pickle (a shape, stride, offset, size or memo index) replaced by an
    interesting value of the same width."""
    widths = {"BININT1": 1, "BININT2": 2, "BININT": 4, "BINGET": 1, "BINPUT": 1}
    try:
        spots = [
            (position + 1, widths[op.name])
            for op, _, position in pickletools.genops(data)
            if op.name in widths
        ]
    except Exception:  # noqa: BLE001 - an already broken pickle: edit its bytes instead
        return mutate_bytes(data, rng)
    if not spots:
        return mutate_bytes(data, rng)
    at, width = spots[int(rng.integers(0, len(spots)))]
    value = int(rng.choice(INTERESTING_INTS)) % (1 << (8 * width))
    return data[:at] + value.to_bytes(width, "little") + data[at + width :]


def _is_payload(name: str) -> bool:
    return name.endswith((".npy", ".pkl", ".h5", ".py")) or "/data/" in name


def mutate_safetensors(data: bytes, rng) -> bytes:
    """The JSON header edited (a field set to an odd value, an entry added or removed, the
    nesting deepened) and written back with its true length."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    body = data[8 + length :]
    names = [n for n in header if n != "__metadata__"]
    kind = int(rng.integers(0, 5))
    if kind == 0 and names:
        entry = header[names[int(rng.integers(0, len(names)))]]
        key = str(rng.choice(["dtype", "shape", "data_offsets"]))
        entry[key] = _json_value(rng)
    elif kind == 1 and names:
        entry = header[names[int(rng.integers(0, len(names)))]]
        key = str(rng.choice(["shape", "data_offsets"]))
        if entry[key]:
            spot = int(rng.integers(0, len(entry[key])))
            entry[key][spot] = _json_value(rng)
    elif kind == 2 and names:
        header.pop(names[int(rng.integers(0, len(names)))])
    elif kind == 3:
        header["__metadata__"] = _json_value(rng)
    else:
        depth = int(rng.choice([10, 1000, 100_000]))
        header[f"deep{depth}"] = json.loads("[" * depth + "]" * depth) if depth < 500 else None
        if depth >= 500:
            text = json.dumps(header).replace("null", "[" * depth + "]" * depth, 1)
            return len(text).to_bytes(8, "little") + text.encode() + body
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + body


def _json_value(rng):
    value = JSON_VALUES[int(rng.integers(0, len(JSON_VALUES)))]
    return json.loads(json.dumps(value))


def mutate_onnx(data: bytes, rng) -> bytes:
    """One tensor of the model edited: dims, element type, raw data, or external data."""
    import onnx

    model = onnx.load_model_from_string(data)
    tensors = list(model.graph.initializer) + [
        a.t for node in model.graph.node for a in node.attribute if a.HasField("t")
    ]
    tensor = tensors[int(rng.integers(0, len(tensors)))]
    kind = int(rng.integers(0, 5))
    if kind == 0 and len(tensor.dims):
        tensor.dims[int(rng.integers(0, len(tensor.dims)))] = int(rng.choice(INTERESTING_INTS))
    elif kind == 1:
        tensor.dims.append(int(rng.choice([0, 1, 2, 2**40])))
    elif kind == 2:
        tensor.data_type = int(rng.integers(0, 30))
    elif kind == 3:
        tensor.raw_data = tensor.raw_data[: int(rng.integers(0, len(tensor.raw_data) + 1))]
    else:
        tensor.data_location = onnx.TensorProto.EXTERNAL
        locations = ["weights.bin", "../weights.bin", "/etc/passwd", "", ".", "missing.bin"]
        entries = {
            "location": str(rng.choice([*locations, "a/../weights.bin"])),
            "offset": str(int(rng.choice([0, 16, -1, 2**40]))),
            "length": str(int(rng.choice([len(tensor.raw_data), 0, 1, 2**40]))),
        }
        for key, value in entries.items():
            if rng.random() < 0.85:
                tensor.external_data.add(key=key, value=value)
    return model.SerializeToString()


def _mutate_text(text: str, rng) -> str:
    """Text edits: a cell, token or line replaced, removed or repeated."""
    lines = text.split("\n")
    kind = int(rng.integers(0, 5))
    row = int(rng.integers(0, len(lines)))
    if kind == 0:
        cells = lines[row].split(",")
        cells[int(rng.integers(0, len(cells)))] = str(rng.choice(CSV_CELLS))
        lines[row] = ",".join(cells)
    elif kind == 1:
        del lines[row]
    elif kind == 2:
        lines.insert(row, lines[int(rng.integers(0, len(lines)))])
    elif kind == 3:
        lines[row] = lines[row] + "," + str(rng.choice(CSV_CELLS))
    else:
        lines[row] = lines[row].replace(",", str(rng.choice([";", "\t", ",,", '","'])))
    return "\n".join(lines)


def mutate_graphml(data: bytes, rng) -> bytes:
    """GraphML edits: an attribute type or value, a weight, a tag, an entity expansion."""
    text = data.decode()
    kind = int(rng.integers(0, 5))
    if kind == 0:
        kind_of_weight = rng.choice(["string", "int", "x"])
        text = text.replace('attr.type="double"', f'attr.type="{kind_of_weight}"')
    elif kind == 1:
        text = text.replace(">1.0<", f">{rng.choice(CSV_CELLS[:12])}<", int(rng.integers(1, 4)))
    elif kind == 2:
        tags = ["</edge>", "</node>", "<graph", "</graphml>", 'id="N1"', "<data"]
        text = text.replace(str(rng.choice(tags)), "", 1)
    elif kind == 3:
        levels = int(rng.integers(2, 12))  # ten times more text per level
        entities = ['<!ENTITY e0 "xxxxxxxxxx">']
        entities += [f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, levels)]
        text = text.replace("<graphml", f"<!DOCTYPE graphml [{''.join(entities)}]><graphml", 1)
        text = text.replace(">1.0<", f">&e{levels - 1};<", 1)
    else:
        nested = '<node id="N2"><graph id="g2"><node id="x"/></graph></node>'
        text = text.replace('<node id="N2" />', nested)
    return text.encode()


def mutate(kind: str, data: bytes, rng) -> bytes:
    """One mutant of a seed of format ``kind``: structure-aware half of the time."""
    if rng.random() < 0.5:
        return mutate_bytes(data, rng)
    if kind in ("npz", "pt", "torchscript", "keras") and data[:2] == b"PK":
        return mutate_zip(data, rng)
    if kind in ("pt", "npy") and b"\x80" in data[:256]:  # a legacy torch pickle, a .npy pickle
        start = data.index(b"\x80") if kind == "pt" else data.index(b"\n") + 1
        return data[:start] + mutate_pickle_ints(data[start:], rng)
    if kind == "safetensors":
        return mutate_safetensors(data, rng)
    if kind == "onnx":
        return mutate_onnx(data, rng)
    if kind == "csv":
        return _mutate_text(data.decode(), rng).encode()
    if kind == "graphml":
        return mutate_graphml(data, rng)
    return mutate_bytes(data, rng)


def build_structured_seeds(directory: Path) -> dict[str, list[Path]]:
    """The seeds of :func:`build_seeds` and those the structured kinds edit (an index and a
    cache entry; shards and folders are built from nothing, so their seed is a stand-in)."""
    import structured

    seeds = build_seeds(directory)
    seeds["index"] = [structured.build_index(directory / "index")]
    seeds["cache"] = [structured.build_cache_seed(directory / "cache")[1]]
    for kind in ("shards", "folder"):
        seeds[kind] = seeds["npz"][:1]
    return seeds


def structured_mutant(kind: str, seeds: list[Path], seed: int, index: int, folder: Path) -> Path:
    """Structured mutant ``index`` of ``kind``, written into ``folder``: a hostile input built
    by tests/structured.py, and half of the time a byte edit of its main file on top. A
    function of (seed, kind, index) alone; the path to load."""
    import structured

    rng = np.random.default_rng([seed, STRUCTURED_KINDS.index(kind), index, 1])
    source = seeds[int(rng.integers(0, len(seeds)))]
    path = structured.generate(kind, rng, folder, seed=source)
    if rng.random() < 0.5 and path.is_file() and not path.is_symlink():
        path.write_bytes(mutate_bytes(path.read_bytes(), rng))
    return path


def mutant(kind: str, seeds: list[Path], seed: int, index: int) -> bytes:
    """Mutant ``index`` of format ``kind``: a function of (seed, format, index) alone."""
    rng = np.random.default_rng([seed, FORMATS.index(kind), index])
    source = seeds[int(rng.integers(0, len(seeds)))]
    return mutate(kind, source.read_bytes(), rng)


# ---- one mutant in the worker -------------------------------------------------------------


def load(kind: str, path: Path) -> None:
    """Read a mutant the way a user's command would, through the public entry points."""
    if kind == "folder":
        from nnequiv.discovery import discover
        from nnequiv.spectra import layer_spectra

        for found in discover(path, notes=lambda _line: None):
            layer_spectra(found.source)
    elif kind == "index":
        from nnequiv.index import open_index

        open_index(path)
    elif kind == "cache":
        from nnequiv.cache import load_analysis

        load_analysis(path)
    elif kind in ("csv", "graphml"):
        from nnequiv.connectomes import load_connectome
        from nnequiv.loading import WeightSource
        from nnequiv.spectra import layer_spectra

        matrices = load_connectome(path).matrices  # as the analysis of a connectome reads it
        layer_spectra(WeightSource(str(path), "oihw", lambda: iter(matrices.items())))
    else:
        from nnequiv.spectra import layer_spectra

        layer_spectra(path)


def outcome_of(kind: str, path: Path) -> tuple[str, str]:
    """``(outcome, detail)`` of loading one mutant."""
    from nnequiv.errors import NNEquivError

    try:
        load(kind, path)
    except NNEquivError as exc:
        message = str(exc)
        if "\n" in message or str(path) not in message:
            return "unclean error", f"{type(exc).__name__}: {message!r}"[:2000]
        return "clean error", type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - every other exception is what we count
        frames = traceback.extract_tb(exc.__traceback__)[-3:]
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames))
        return "traceback", f"{type(exc).__name__}: {str(exc)[:300]!r} at {where}"
    return "loaded", ""


def _state(directories) -> dict[Path, tuple[int, int]]:
    """Size and modification time of every entry under ``directories``."""
    from structured import walk

    state = {}
    for directory in directories:
        for path in walk(directory):
            info = path.lstat()
            state[path] = (info.st_size, info.st_mtime_ns)
    return state


def _undo(before: dict, after: dict, mutants: Path) -> list[str]:
    """Names of entries created or changed since ``before``; created ones are removed and
    the auxiliary files rewritten, so the next mutant starts clean."""
    changed = sorted(str(p) for p in after if before.get(p) != after[p])
    from structured import remove_tree

    for path in sorted(set(after) - set(before), reverse=True):
        remove_tree(path)
    for name, data in AUX_FILES.items():
        (mutants / name).write_bytes(data)
    return changed


def worker(
    seeds_file: str,
    kind: str,
    seed: int,
    start: int,
    stop: int,
    run_dir: str,
    structured: bool = False,
) -> None:
    """Run mutants ``start..stop-1`` of ``kind``, one output line each."""
    seeds = [Path(p) for p in json.loads(Path(seeds_file).read_text())[kind]]
    mutants = Path(run_dir) / f"mutants-{kind}"
    watched = [Path.cwd(), Path(os.environ["HOME"]), mutants]
    for index in range(start, stop):
        if structured:
            folder = mutants / f"m{index}"
            path = structured_mutant(kind, seeds, seed, index, folder)
            before = _state(watched)
            result, detail = outcome_of(kind, path)
            changed = _undo(before, _state(watched), mutants)
            if changed:
                result, detail = "side effect", f"created or changed: {changed[:5]}"
            from structured import remove_tree

            for made in (folder, mutants / f"outside-m{index}"):
                remove_tree(made)
            print(f"{index}\t{result}\t{detail}", flush=True)
            continue
        path = mutants / f"mutant-{index}{SUFFIXES[kind]}"
        path.write_bytes(mutant(kind, seeds, seed, index))
        companion = None
        if kind in COMPANIONS:
            ending = COMPANIONS[kind]
            companion = path.with_name(path.stem + ending)
            companion.write_bytes(seeds[0].with_name(seeds[0].stem + ending).read_bytes())
        before = _state(watched)
        result, detail = outcome_of(kind, path)
        changed = _undo(before, _state(watched), mutants)
        if changed:
            result, detail = "side effect", f"created or changed: {changed[:5]}"
        path.unlink()
        if companion is not None:
            companion.unlink()
        print(f"{index}\t{result}\t{detail}", flush=True)


# ---- the parent: workers, deadlines, counts ---------------------------------------------------


@dataclass
class Report:
    """Counts per outcome and format, and the failures (format, index, outcome, detail)."""

    counts: dict[str, Counter] = field(default_factory=dict)
    failures: list[tuple[str, int, str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, kind: str, index: int, result: str, detail: str) -> None:
        self.counts.setdefault(kind, Counter())[result] += 1
        if result not in ("loaded", "clean error"):
            self.failures.append((kind, index, result, detail))


def run(
    seeds: dict[str, list[Path]],
    run_dir: Path,
    count: int | dict[str, int],
    seed: int = 0,
    formats=FORMATS,
    workers: int = 2,
    deadline: float = 60.0,
    structured: bool = False,
) -> Report:
    """``count`` mutants of every format in ``formats`` that has seeds (or ``count[format]``),
    ``workers`` worker processes at a time; a mutant still running after ``deadline``
    seconds is a hang. ``structured``: the mutants of :func:`structured_mutant` (formats
    from :data:`STRUCTURED_KINDS`)."""
    counts = count if isinstance(count, dict) else dict.fromkeys(formats, count)
    run_dir.mkdir(parents=True, exist_ok=True)
    seeds_file = run_dir / "seeds.json"
    seeds_file.write_text(json.dumps({k: [str(p) for p in v] for k, v in seeds.items()}))
    report = Report()
    lock = threading.Lock()
    todo = [kind for kind in formats if kind in seeds]
    started = time.perf_counter()

    def drive() -> None:
        while True:
            with lock:
                if not todo:
                    return
                kind = todo.pop(0)
            _run_format(
                kind, seeds_file, run_dir, counts[kind], seed, deadline, report, lock, structured
            )

    threads = [threading.Thread(target=drive) for _ in range(max(1, workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report.seconds = time.perf_counter() - started
    return report


def _run_format(
    kind, seeds_file, run_dir, count, seed, deadline, report, lock, structured=False
) -> None:
    """Mutants 0..count-1 of one format, restarting the worker after a hang."""
    for name in (f"mutants-{kind}", f"cwd-{kind}", f"home-{kind}"):
        (run_dir / name).mkdir(exist_ok=True)
    for name, data in AUX_FILES.items():
        (run_dir / f"mutants-{kind}" / name).write_bytes(data)
    env = {
        **os.environ,
        "HOME": str(run_dir / f"home-{kind}"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    tests = str(Path(__file__).resolve().parent)
    inherited = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([tests, *inherited])  # absolute: workers run elsewhere
    start = 0
    while start < count:
        arguments = [str(seeds_file), kind, str(seed), str(start), str(count), str(run_dir)]
        arguments.append("structured" if structured else "mutated")
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "worker", *arguments],
            cwd=run_dir / f"cwd-{kind}",
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a hang is ended with every process the worker started
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(process.stdout))
        reader.start()
        expected, last_progress = start, time.perf_counter()
        while True:
            reader.join(timeout=0.05)
            done = [line for line in list(lines) if line.strip()]
            for line in done[expected - start :]:
                index, result, detail = line.rstrip("\n").split("\t", 2)
                with lock:
                    report.add(kind, int(index), result, detail)
                expected, last_progress = int(index) + 1, time.perf_counter()
            if not reader.is_alive():
                break
            if time.perf_counter() - last_progress > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                reader.join()
                with lock:
                    report.add(kind, expected, "hang", f"no result after {deadline:.0f} s")
                expected += 1
                break
        process.wait()
        if expected == start and process.returncode not in (0, None):
            error = process.stderr.read()[-2000:]
            with lock:
                if process.returncode < 0:  # killed by a signal: the interpreter crashed
                    report.add(kind, expected, "crash", f"signal {-process.returncode}: {error!r}")
                else:
                    report.add(kind, expected, "traceback", f"worker died: {error!r}")
            expected += 1
        process.stdout.close()
        process.stderr.close()
        start = expected


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    seeds_file, kind, seed, start, stop, run_dir, mode = sys.argv[2:9]
    worker(seeds_file, kind, int(seed), int(start), int(stop), run_dir, mode == "structured")
