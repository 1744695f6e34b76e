"""Structure-aware hostile inputs of every kind nnequiv reads (used by tests/fuzzing.py's
``--structured`` mutants, benchmarks/fuzz.py and benchmarks/attack.py).

Each generator writes one input into a fresh folder, built from the format's own structure
with one *attack* turned up: nesting depth, counts of tensors / keys / members / chunks,
aliases (many tensors over one storage, buffer, region or dataset), symbolic links, names
with control characters or escape sequences, and declared sizes. An attack and its value
are chosen by the random stream (a fuzz mutant) or given (one input per failure class,
benchmarks/attack.py). Half of the fuzz mutants then get a byte edit on top.

``generate(kind, rng, folder, attack=None, value=None) -> Path`` returns what to load.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import sqlite3
import struct
import zipfile
from pathlib import Path

import numpy as np

#: Names a file may give its tensors, members, shards, nodes and labels.
NAMES = [
    *("w", "\x1b[31mred\x1b[0m", "a\nb", "\u202eevil", "", "../../etc/passwd", "x" * 5000),
    *("\x00nul", "\r\x08\x07", "a.b." * 50, "é/ü", "/abs", "."),
]
#: Sizes, counts and offsets a file may declare.
DECLARED = [0, 1, 2, 7, 2**16, 2**31 - 1, 2**31, 2**32, 2**40, 2**53, 2**62, 2**63 - 1]
#: The attacks of every kind and the values each is tried with.
DEPTHS = [2, 64, 257, 1000, 100_000]
COUNTS = [0, 1, 3, 2_000, 20_000]
#: (Aliases that are layers each take their own spectrum: 5,000 of them take seconds.)
ALIASES = [2, 512, 5_000]


def walk(top: Path) -> list[Path]:
    """Every entry under ``top``, links not followed, in a loop (folders 1,200 levels deep
    overflow ``os.walk`` and ``Path.rglob``)."""
    found, stack = [], [Path(top)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            found.append(Path(entry.path))
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    return found


def remove_tree(top: Path) -> None:
    """``shutil.rmtree`` in a loop (see :func:`walk`); what cannot be removed stays."""
    if not os.path.lexists(top):
        return
    if os.path.islink(top) or not os.path.isdir(top):
        os.unlink(top)
        return
    entries = walk(top)
    for path in reversed(entries):  # a folder's entries come after it
        try:
            os.rmdir(path) if path.is_dir() and not path.is_symlink() else os.unlink(path)
        except OSError:
            pass
    try:
        os.rmdir(top)
    except OSError:
        pass


def _pick(rng, values):
    return values[int(rng.integers(0, len(values)))]


def _names(rng, count: int) -> list[str]:
    """``count`` names, each a hostile one or a plain one."""
    return [_pick(rng, NAMES) + (str(i) if rng.random() < 0.7 else "") for i in range(count)]


# ---- pickles (PyTorch zip archives, legacy files, pickled .npy) ----------------------------


def op_str(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(raw)) + raw


def op_int(value: int) -> bytes:
    raw = pickle.encode_long(value)
    if len(raw) < 256:
        return b"\x8a" + bytes([len(raw)]) + raw
    return b"\x8b" + struct.pack("<I", len(raw)) + raw


def op_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def op_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def tensor_ops(key: str, numel: int, offset: int, shape, stride, kind="FloatStorage") -> bytes:
    """The opcodes that rebuild one tensor over storage ``key``, with any numbers."""
    storage = op_tuple(
        op_str("storage"), op_global("torch", kind), op_str(key), op_str("cpu"), op_int(numel)
    )
    args = op_tuple(
        storage + b"Q",
        op_int(offset),
        op_tuple(*map(op_int, shape)),
        op_tuple(*map(op_int, stride)),
        b"\x89",
        op_global("collections", "OrderedDict") + b")R",
    )
    return op_global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def state_dict(items: list[tuple[str, bytes]]) -> bytes:
    """A pickled dict of name -> value opcodes."""
    body = b"".join(op_str(name) + value for name, value in items)
    return b"\x80\x02}(" + body + b"u."


def nested(inner: bytes, depth: int, lists: bool) -> bytes:
    """``inner`` (opcodes of one value) inside ``depth`` dicts or lists."""
    if lists:
        return b"\x80\x02" + b"]" * depth + inner + b"a" * depth + b"."
    return b"\x80\x02" + (b"}" + op_str("m")) * depth + inner + b"s" * depth + b"."


def torch_zip(path: Path, data_pkl: bytes, records=None, code=None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/version", "3\n")
        for key, data in (records or {}).items():
            archive.writestr(f"archive/data/{key}", data)
        if code is not None:
            archive.writestr("archive/code/__torch__.py", code)
    return path


def encrypted_npz(path: Path) -> Path:
    """An .npz whose one member says it is encrypted (the flag bit of its local and central
    headers set), which nnequiv refuses in one line."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        with archive.open("w.npy", "w") as member:
            np.save(member, np.ones((3, 3)))
    data = bytearray(buffer.getvalue())
    for signature, flags_at in [(b"PK\x03\x04", 6), (b"PK\x01\x02", 8)]:
        data[data.index(signature) + flags_at] |= 0x1
    path.write_bytes(bytes(data))
    return path


def pickle_data(rng, attack: str, value) -> tuple[bytes, dict]:
    """(data.pkl, storage records) of a state dict with ``attack`` turned up to ``value``."""
    one = tensor_ops("0", 16, 0, (4, 4), (4, 1))
    records = {"0": np.ones(16, np.float32).tobytes()}
    if attack == "depth":
        return nested(b"}" + op_str("w") + one + b"s", value, lists=False), records
    if attack == "list_depth":
        return nested(one, value, lists=True), records
    if attack == "count":
        items = [(f"t{i}", tensor_ops(str(i), 4, 0, (2, 2), (2, 1))) for i in range(value)]
        return state_dict(items), {str(i): bytes(16) for i in range(value)}
    if attack == "aliases":
        items = [(f"t{i}", tensor_ops("0", 16, i % 12, (2, 2), (2, 1))) for i in range(value)]
        return state_dict(items), records
    if attack == "names":
        names = _names(rng, value)
        return state_dict([(n, tensor_ops("0", 16, 0, (4, 4), (4, 1))) for n in names]), records
    if attack == "sizes":
        numbers = [_pick(rng, DECLARED) if rng.random() < 0.4 else n for n in (16, 0, 4, 4, 4, 1)]
        numel, offset, rows, cols, s0, s1 = numbers
        item = tensor_ops("0", numel, offset, (rows, cols), (s0, s1))
        return state_dict([("w", item)]), records
    if attack == "dag":
        data = b"\x80\x02}" + op_str("w") + one + b"sq\x00"
        for level in range(1, value + 1):
            below = b"h" + bytes([(level - 1) % 256])
            data += b"}" + op_str("a") + below + b"s" + op_str("b") + below + b"s"
            data += b"q" + bytes([level % 256])
        return data + b".", records
    if attack == "bytearray":
        call = op_global("builtins", "bytearray") + op_tuple(op_int(value)) + b"R"
        return state_dict([("w", one), ("blob", call)]), records
    raise ValueError(attack)


PICKLE_ATTACKS = {
    "depth": DEPTHS,
    "list_depth": DEPTHS,
    "count": COUNTS,
    "aliases": [2, 512, 100_000],
    "names": [1, 5, 50],
    "sizes": [0],
    "dag": [8, 60, 255],
    "bytearray": [16, 2**31, 10**12],
}


def gen_pt(rng, folder: Path, attack: str, value) -> Path:
    data, records = pickle_data(rng, attack, value)
    if rng.random() < 0.15:  # the legacy (pre-1.6) layout: the pickle alone
        path = folder / "legacy.pt"
        path.write_bytes(data)
        return path
    return torch_zip(folder / "net.pt", data, records)


def gen_npy(rng, folder: Path, attack: str, value) -> Path:
    """A pickled .npy (an object array holding nested containers), or a header attack."""
    path = folder / "net.npy"
    if attack == "header":
        shape = tuple(_pick(rng, DECLARED) for _ in range(int(rng.integers(1, 4))))
        descr = _pick(rng, ["<f4", "<f8", ">f8", "|O", "<c16", "V8", "<U1000000"])
        header = repr({"descr": descr, "fortran_order": False, "shape": shape})
        if rng.random() < 0.3:
            header = header.replace("(", "(" * value, 1).replace(")", ")" * value, 1)
        header = (header + " " * (-(len(header) + 11) % 64) + "\n").encode()
        if len(header) > 0xFFFF:  # version 2 has a 4-byte header length
            magic = b"\x93NUMPY\x02\x00" + struct.pack("<I", len(header))
        else:
            magic = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header))
        path.write_bytes(magic + header + bytes(64))
        return path
    inner = pickle.dumps(np.ones((4, 4), np.float32), protocol=2)[2:-1]
    if attack in ("depth", "list_depth"):
        data = nested(
            inner if attack == "list_depth" else b"}" + op_str("w") + inner + b"s",
            value,
            lists=attack == "list_depth",
        )
    elif attack == "names":
        data = state_dict([(n, inner) for n in _names(rng, value)])
    else:  # count
        data = state_dict(
            [(f"t{i}", pickle.dumps(np.ones(2), protocol=2)[2:-1]) for i in range(value)]
        )
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (), }"
    header = (header + " " * (-(len(header) + 11) % 64) + "\n").encode()
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data)
    return path


NPY_ATTACKS = {
    "header": [1, 200, 100_000],
    "depth": DEPTHS,
    "list_depth": DEPTHS,
    "names": [1, 5, 50],
    "count": COUNTS,
}


def gen_torchscript(rng, folder: Path, attack: str, value, seed: Path) -> Path:
    """The seed TorchScript archive with its code and records edited."""
    with zipfile.ZipFile(seed) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    code_names = [n for n in members if "/code/" in n and n.endswith(".py")]
    target = _pick(rng, code_names)
    if attack == "newlines":
        members[target] = members[target] + b"\n" * value
    elif attack == "parameters":
        names = ", ".join(json.dumps(n) for n in _names(rng, value))
        members[target] = members[target].replace(
            b"__parameters__ = [", f"__parameters__ = [{names}, ".encode(), 1
        )
    elif attack == "brackets":
        members[target] = members[target].replace(
            b"__parameters__ = [", b"__parameters__ = " + b"[" * value, 1
        )
    elif attack == "class_depth":
        lines = "".join(f"{'  ' * i}class C{i}(Module):\n" for i in range(value))
        members[target] = lines.encode() + members[target]
    else:  # members: many records or code files
        for i in range(value):
            members[f"{target.rsplit('/', 1)[0]}/x{i}.py"] = b"class X(Module):\n  pass\n"
    path = folder / "script.pt"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


TORCHSCRIPT_ATTACKS = {
    "newlines": [10, 100_000, 3_000_000],
    "parameters": [1, 50, 20_000],
    "brackets": [10, 1000, 100_000],
    "class_depth": [10, 300, 3000],
    "members": [10, 2000],
}


# ---- safetensors and shard indexes -----------------------------------------------------------


def safetensors_bytes(rng, attack: str, value) -> bytes:
    entries = ['"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}']
    body = np.ones(16, np.float32).tobytes()
    if attack == "count":
        entries += [
            f'"t{i}": {{"dtype": "F32", "shape": [1], "data_offsets": [{64 + 4 * i}, '
            f"{68 + 4 * i}]}}"
            for i in range(value)
        ]
        body += bytes(4 * value)
    elif attack == "duplicates":
        entries += ['"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}'] * value
    elif attack == "aliases":
        entries += [
            f'"a{i}": {{"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}'
            for i in range(value)
        ]
    elif attack == "names":
        entries += [
            json.dumps(n) + ': {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}'
            for n in _names(rng, value)
        ]
    elif attack == "depth":
        entries.append('"__metadata__": {"a": ' + "[" * value + "]" * value + "}")
    else:  # sizes
        shape = [_pick(rng, DECLARED) for _ in range(int(rng.integers(0, 4)))]
        offsets = [_pick(rng, [0, 64, *DECLARED]) for _ in range(2)]
        dtype = _pick(rng, ["F32", "F64", "BF16", "F8_E4M3", "I64", "BOOL"])
        entries.append(f'"s": {{"dtype": "{dtype}", "shape": {shape}, "data_offsets": {offsets}}}')
    header = ("{" + ", ".join(entries) + "}").encode()
    if attack == "declared_length":
        return struct.pack("<Q", _pick(rng, DECLARED)) + header + body
    return struct.pack("<Q", len(header)) + header + body


SAFETENSORS_ATTACKS = {
    "count": COUNTS,
    "duplicates": [1, 50_000],
    "aliases": ALIASES,
    "names": [1, 5, 50],
    "depth": DEPTHS,
    "sizes": [0],
    "declared_length": [0],
}


def gen_safetensors(rng, folder: Path, attack: str, value) -> Path:
    path = folder / "net.safetensors"
    path.write_bytes(safetensors_bytes(rng, attack, value))
    return path


def gen_shards(rng, folder: Path, attack: str, value) -> Path:
    """A folder of safetensors shards and their ``model.safetensors.index.json``."""
    shard = safetensors_bytes(rng, "count", 2)
    (folder / "model-1.safetensors").write_bytes(shard)
    weight_map: dict = {"w": "model-1.safetensors", "t0": "model-1.safetensors"}
    outside = folder.parent / f"outside-{folder.name}"
    if attack == "count":
        weight_map.update({f"x{i}": "model-1.safetensors" for i in range(value)})
    elif attack == "shards":  # many shard files, or many names of one file
        for i in range(value):
            name = f"model-{i + 2}.safetensors"
            if rng.random() < 0.5:
                (folder / name).write_bytes(shard)
            weight_map[f"x{i}"] = name
    elif attack == "names":
        for name in _names(rng, value):
            weight_map[name] = _pick(rng, ["model-1.safetensors", *NAMES])
    elif attack == "symlink":
        outside.mkdir(exist_ok=True)
        (outside / "secret.safetensors").write_bytes(shard)
        target = _pick(
            rng,
            [
                outside / "secret.safetensors",
                Path("/dev/zero"),
                Path("/"),
                folder / "loop.safetensors",
                Path("/etc/passwd"),
            ],
        )
        (folder / "linked.safetensors").symlink_to(target)
        weight_map["t1"] = "linked.safetensors"
    elif attack == "fifo":
        os.mkfifo(folder / "pipe.safetensors")
        weight_map["t1"] = "pipe.safetensors"
    text = json.dumps({"metadata": {"total_size": 64}, "weight_map": weight_map})
    if attack == "depth":
        text = text.replace(
            '"metadata": {', '"metadata": {"d": ' + "[" * value + "]" * value + ", ", 1
        )
    elif attack == "number":
        text = text.replace('"total_size": 64', '"total_size": ' + "9" * value, 1)
    path = folder / "model.safetensors.index.json"
    path.write_text(text)
    return path


SHARD_ATTACKS = {
    "count": COUNTS,
    "shards": [2, 500],
    "names": [1, 5, 50],
    "symlink": [0],
    "fifo": [0],
    "depth": DEPTHS,
    "number": [20, 5000, 100_000],
}


# ---- npz -------------------------------------------------------------------------------------


def npy_bytes(shape, descr="<f4", data=None) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    header = (header + " " * (-(len(header) + 11) % 64) + "\n").encode()
    body = data if data is not None else bytes(4 * int(np.prod(shape, dtype=object)))
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


def gen_npz(rng, folder: Path, attack: str, value) -> Path:
    path = folder / "net.npz"
    method = zipfile.ZIP_DEFLATED if rng.random() < 0.5 else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as archive:
        archive.writestr("w.npy", npy_bytes((4, 4)))
        if attack == "count":
            for i in range(value):
                archive.writestr(f"t{i}.npy", npy_bytes((1,)))
        elif attack == "names":
            for name in _names(rng, value):
                try:
                    archive.writestr(name + ".npy", npy_bytes((2, 2)))
                except (IndexError, ValueError):  # a name zipfile cannot write
                    pass
        elif attack == "duplicates":
            for _ in range(value):
                archive.writestr("w.npy", npy_bytes((4, 4)))
        elif attack == "sizes":
            shape = [_pick(rng, DECLARED) for _ in range(int(rng.integers(1, 4)))]
            archive.writestr("s.npy", npy_bytes(shape, data=bytes(64)))
        elif attack == "bomb":
            archive.writestr("z.npy", npy_bytes((value,), "<f8", bytes(8 * value)))
    return path


NPZ_ATTACKS = {
    "count": COUNTS,
    "names": [1, 5, 50],
    "duplicates": [2, 1000],
    "sizes": [0],
    "bomb": [1000, 20_000_000],
}


# ---- HDF5 and Keras --------------------------------------------------------------------------


def h5_file(rng, path: Path, attack: str, value) -> Path:
    import h5py

    with h5py.File(path, "w") as handle:
        handle["w"] = np.ones((4, 4), np.float32)
        if attack == "depth":
            handle["/".join(["g"] * value) + "/w"] = np.ones((2, 2), np.float32)
        elif attack == "count":
            group = handle.create_group("many")
            for i in range(value):
                group.create_group(f"g{i}") if i % 2 else group.create_dataset(f"d{i}", data=[1.0])
        elif attack == "aliases":
            for i in range(value):
                handle[f"alias{i}"] = handle["w"]  # hard links to one dataset
        elif attack == "names":
            for name in _names(rng, value):
                name = name.replace("/", "|").replace("\x00", "0").replace(".", "d") or "e"
                if name not in handle:
                    handle[name] = np.ones((2, 2), np.float32)
        elif attack == "chunks":
            handle.create_dataset(
                "c",
                data=np.ones((value, 4), "f4"),
                chunks=(1, 1),
                compression=_pick(rng, [None, "gzip"]),
            )
        elif attack == "partial":
            dataset = handle.create_dataset("p", shape=(value, value), chunks=(8, 8), dtype="f4")
            dataset[:8, :8] = 1.0
        elif attack == "sizes":
            shape = tuple(_pick(rng, [1, 2, 2**20, 2**31]) for _ in range(2))
            try:
                handle.create_dataset("s", shape=shape, dtype="f4")  # no data: fill values
            except ValueError:  # larger than HDF5 itself allows
                pass
        elif attack == "links":
            target = _pick(rng, ["/w", "/loop", "/", "missing"])
            handle["soft"] = h5py.SoftLink(target)
            handle["loop"] = h5py.SoftLink("/loop")
            handle["ext"] = h5py.ExternalLink("/etc/passwd", "/x")
    return path


H5_ATTACKS = {
    "depth": [2, 60, 70, 1000],
    "count": [0, 10, 3000],
    "aliases": [2, 512],
    "names": [1, 5, 50],
    "chunks": [4, 300, 30_000],
    "partial": [16, 4096],
    "sizes": [0],
    "links": [0],
}


def gen_h5(rng, folder: Path, attack: str, value) -> Path:
    return h5_file(rng, folder / "net.h5", attack, value)


def gen_keras(rng, folder: Path, attack: str, value, seed: Path) -> Path:
    """The seed .keras archive with its weights file replaced by a hostile one."""
    weights = h5_file(rng, folder / "weights.tmp", attack, value)
    path = folder / "net.keras"
    with zipfile.ZipFile(seed) as source, zipfile.ZipFile(path, "w") as archive:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith(".h5"):
                data = weights.read_bytes()
            archive.writestr(info.filename, data)
    weights.unlink()
    return path


# ---- ONNX ------------------------------------------------------------------------------------


def gen_onnx(rng, folder: Path, attack: str, value) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    initializers = [numpy_helper.from_array(np.ones((4, 4), np.float32), "w")]
    nodes = []
    (folder / "weights.bin").write_bytes(np.ones(64, np.float32).tobytes())
    outside = folder.parent / f"outside-{folder.name}"

    def external(name, location, offset=0, length=64):
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[4, 4])
        tensor.data_location = TensorProto.EXTERNAL
        for key, item in (("location", location), ("offset", offset), ("length", length)):
            tensor.external_data.add(key=key, value=str(item))
        return tensor

    if attack == "count":
        initializers += [
            numpy_helper.from_array(np.ones(1, np.float32), f"t{i}") for i in range(value)
        ]
    elif attack == "names":
        initializers += [
            numpy_helper.from_array(np.ones((2, 2), np.float32), n) for n in _names(rng, value)
        ]
    elif attack == "aliases":
        initializers += [external(f"a{i}", "weights.bin") for i in range(value)]
    elif attack == "sizes":
        dims = [_pick(rng, DECLARED) for _ in range(int(rng.integers(1, 4)))]
        initializers.append(
            TensorProto(name="s", data_type=TensorProto.FLOAT, dims=dims, raw_data=bytes(64))
        )
    elif attack == "symlink":
        outside.mkdir(exist_ok=True)
        (outside / "secret.bin").write_bytes(bytes(256))
        target = _pick(
            rng,
            [outside / "secret.bin", Path("/dev/zero"), Path("/etc/passwd"), folder / "loop.bin"],
        )
        (folder / "linked.bin").symlink_to(target)
        initializers.append(external("x", "linked.bin"))
    elif attack == "external":
        location = _pick(
            rng,
            [
                "weights.bin",
                "../weights.bin",
                "/etc/passwd",
                "",
                ".",
                "a\x1b[2J.bin",
                "weights.bin\x00x",
            ],
        )
        initializers.append(
            external("x", location, _pick(rng, [0, -1, 2**62]), _pick(rng, [64, 0, 2**62]))
        )
    elif attack == "depth":  # If nodes nested in each other's then-branches
        leaf = helper.make_graph([], "leaf", [], [])
        graph = leaf
        for level in range(value):
            node = helper.make_node("If", ["c"], [f"o{level}"], then_branch=graph, else_branch=leaf)
            try:
                graph = helper.make_graph([node], f"g{level}", [], [])
            except Exception:  # noqa: BLE001 - protobuf's own depth limit: as deep as it goes
                break
        nodes.append(helper.make_node("If", ["c"], ["out"], then_branch=graph, else_branch=leaf))
    try:
        graph = helper.make_graph(nodes, "net", [], [], initializer=initializers)
    except Exception:  # noqa: BLE001 - nested past protobuf's own depth limit
        graph = helper.make_graph([], "net", [], [], initializer=initializers)
    model = helper.make_model(graph)
    path = folder / "net.onnx"
    try:
        path.write_bytes(model.SerializeToString())
    except Exception:  # noqa: BLE001 - protobuf refuses to serialise: a plain model then
        path.write_bytes(helper.make_model(helper.make_graph([], "n", [], [])).SerializeToString())
    return path


ONNX_ATTACKS = {
    "count": COUNTS,
    "names": [1, 5, 50],
    "aliases": ALIASES,
    "sizes": [0],
    "symlink": [0],
    "external": [0],
    "depth": [5, 90, 200],
}


# ---- TFLite, GGUF, GGML, TensorBundle, Core ML ----------------------------------------------


def gen_tflite(rng, folder: Path, attack: str, value) -> Path:
    from formats import write_tflite

    def tensor(name, shape=(2, 2), data=True):
        blob = np.ones(int(np.prod(shape)), np.float32).tobytes() if data else None
        return {"name": name, "shape": list(shape), "type": 0, "data": blob}

    tensors = [tensor("w", (4, 4))]
    operators = []
    if attack == "count":
        tensors += [tensor(f"t{i}", (1,)) for i in range(value)]
    elif attack == "names":
        tensors += [tensor(n) for n in _names(rng, value)]
    elif attack == "operators":
        tensors.append(tensor("x", data=False))
        operators = [(0, [1, 0], [1])] * value
    elif attack == "sizes":
        shape = [_pick(rng, [*DECLARED[:7], -1, 2**31 - 1]) for _ in range(int(rng.integers(1, 4)))]
        tensors.append(
            {"name": "s", "shape": shape, "type": int(rng.integers(0, 20)), "data": bytes(64)}
        )
    path = folder / "net.tflite"
    try:
        write_tflite(path, tensors, operators)
    except (struct.error, OverflowError, ValueError, TypeError):  # not representable
        write_tflite(path, tensors[:1], [])
    return path


TFLITE_ATTACKS = {"count": COUNTS, "names": [1, 5, 50], "operators": [1, 5_000], "sizes": [0]}


def gguf_string(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return struct.pack("<Q", len(raw)) + raw


def gguf_array(depth: int, count: int) -> bytes:
    """A metadata value (type 9: array) of arrays ``depth`` deep, ``count`` items at the bottom."""
    inner = struct.pack("<IQ", 4, count) + bytes(4 * min(count, 1 << 20))  # uint32 items
    return struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * depth + inner


def gen_gguf(rng, folder: Path, attack: str, value) -> Path:
    kvs = [gguf_string("general.architecture") + struct.pack("<I", 8) + gguf_string("llama")]
    tensors = [("w", [4, 4], 0, 0)]
    if attack == "depth":
        kvs.append(gguf_string("deep") + gguf_array(value, 1))
    elif attack == "kv_count":
        kvs += [gguf_string(f"k{i}") + struct.pack("<II", 4, i) for i in range(value)]
    elif attack == "array_count":
        kvs.append(gguf_string("big") + gguf_array(0, value))
    elif attack == "count":
        tensors += [(f"t{i}", [1], 0, 64 + 32 * i) for i in range(value)]
    elif attack == "aliases":
        tensors += [(f"a{i}", [4, 4], 0, 0) for i in range(value)]
    elif attack == "names":
        tensors += [(n, [2, 2], 0, 0) for n in _names(rng, value)]
    elif attack == "sizes":
        dims = [_pick(rng, DECLARED) for _ in range(int(rng.integers(1, 5)))]
        tensors.append(("s", dims, int(_pick(rng, [0, 1, 2, 8, 30, 99])), _pick(rng, DECLARED)))
    infos = b"".join(
        gguf_string(name)
        + struct.pack("<I", len(dims))
        + struct.pack(f"<{len(dims)}Q", *[d % 2**64 for d in dims])
        + struct.pack("<IQ", kind, offset % 2**64)
        for name, dims, kind, offset in tensors
    )
    declared = len(tensors) if attack != "declared" else _pick(rng, DECLARED)
    header = b"GGUF" + struct.pack("<IQQ", 3, declared, len(kvs)) + b"".join(kvs) + infos
    data = np.ones(16 + 8 * len(tensors), np.float32).tobytes()
    path = folder / "net.gguf"
    path.write_bytes(header + bytes(-len(header) % 32) + data)
    return path


GGUF_ATTACKS = {
    "depth": DEPTHS,
    "kv_count": COUNTS,
    "array_count": [0, 10, 2**40],
    "count": COUNTS,
    "aliases": ALIASES,
    "names": [1, 5, 50],
    "sizes": [0],
    "declared": [0],
}


def gen_ggml(rng, folder: Path, attack: str, value) -> Path:
    from formats import llama_file

    path = folder / "ggjt.bin"
    weights = {"w": np.ones((4, 4), np.float32)}
    if attack == "count":
        weights.update({f"t{i}": np.ones(2, np.float32) for i in range(value)})
    elif attack == "names":
        weights.update({n.replace("\x00", "0"): np.ones(2, np.float32) for n in _names(rng, value)})
    llama_file(path, b"tjgg", 3, weights)
    if attack == "sizes":  # a record with declared dims and type
        dims = [_pick(rng, [*DECLARED[:7], 2**31 - 1]) for _ in range(int(rng.integers(0, 5)))]
        record = struct.pack("<3i", len(dims), 1, int(_pick(rng, [0, 1, 2, 8, 99])))
        record += struct.pack(f"<{len(dims)}I", *[d % 2**32 for d in dims]) + b"s"
        path.write_bytes(path.read_bytes() + record + bytes(64))
    return path


GGML_ATTACKS = {"count": COUNTS, "names": [1, 5, 50], "sizes": [0]}


def gen_tensorbundle(rng, folder: Path, attack: str, value) -> Path:
    from formats import pb_bytes, pb_varint, sstable

    value_suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
    entries = [(b"", pb_varint(1, 1) + pb_varint(2, 0))]
    data = np.ones(16, np.float32).tobytes()

    def entry(name, shape, offset=0, size=None, dtype=1):
        dims = b"".join(pb_bytes(2, pb_varint(1, d % 2**64)) for d in shape)
        size = 4 * int(np.prod(shape, dtype=object)) if size is None else size
        proto = pb_varint(1, dtype) + pb_bytes(2, dims) + pb_varint(4, offset % 2**64)
        return (name.encode("utf-8", "surrogatepass"), proto + pb_varint(5, size % 2**64))

    names = ["w" + value_suffix]
    if attack == "count":
        names += [f"t{i:06d}{value_suffix}" for i in range(value)]
    elif attack == "names":
        names += [n + value_suffix for n in _names(rng, value)]
    for name in sorted(set(names), key=lambda n: n.encode("utf-8", "surrogatepass")):
        entries.append(entry(name, (4, 4) if name.startswith("w/") else (1,)))
    if attack == "aliases":
        extra = [entry(f"a{i:06d}{value_suffix}", (4, 4)) for i in range(value)]
        entries = [entries[0], *sorted(extra + entries[1:])]
    elif attack == "sizes":
        shape = [_pick(rng, DECLARED) for _ in range(int(rng.integers(0, 4)))]
        extra = entry(
            "zz" + value_suffix,
            shape,
            _pick(rng, DECLARED),
            _pick(rng, DECLARED),
            int(_pick(rng, [1, 2, 7, 14, 19, 99])),
        )
        entries.append(extra)
    (folder / "variables.data-00000-of-00001").write_bytes(data)
    path = folder / "variables.index"
    path.write_bytes(sstable(entries))
    return path


TENSORBUNDLE_ATTACKS = {"count": COUNTS, "names": [1, 5, 50], "aliases": ALIASES, "sizes": [0]}


def gen_coreml(rng, folder: Path, attack: str, value) -> Path:
    from formats import mil_const, pb_bytes, pb_varint

    def const(name, shape, raw=None):
        if raw is None:
            raw = np.ones(int(np.prod(shape, dtype=object)), "<f4").tobytes()
        floats = pb_bytes(1, pb_bytes(1, pb_bytes(1, raw)))
        return mil_const(name, 11, shape, pb_bytes(3, floats))

    operations = [const("w", (4, 4))]
    if attack == "count":
        operations += [const(f"t{i}", (1,)) for i in range(value)]
    elif attack == "names":
        operations += [const(n, (2, 2)) for n in _names(rng, value)]
    elif attack == "sizes":
        shape = [_pick(rng, DECLARED) % 2**63 for _ in range(int(rng.integers(0, 4)))]
        operations.append(const("s", shape, raw=bytes(64)))
    elif attack == "depth":  # blocks nested in operations
        block = b"".join(pb_bytes(3, op) for op in operations)
        for _ in range(value):
            block = pb_bytes(3, pb_bytes(1, b"cond") + pb_bytes(6, pb_bytes(2, block)))
        operations = [block]
    block = b"".join(pb_bytes(3, op) for op in operations)
    function = pb_bytes(2, b"CoreML5") + pb_bytes(3, pb_bytes(1, b"CoreML5") + pb_bytes(2, block))
    program = pb_varint(1, 1) + pb_bytes(2, pb_bytes(1, b"main") + pb_bytes(2, function))
    path = folder / "model.mlmodel"
    path.write_bytes(pb_varint(1, 7) + pb_bytes(502, program))
    return path


COREML_ATTACKS = {"count": COUNTS, "names": [1, 5, 50], "sizes": [0], "depth": [5, 90, 3000]}


# ---- connectomes -----------------------------------------------------------------------------


def gen_csv(rng, folder: Path, attack: str, value) -> Path:
    path = folder / "edges.csv"
    rows = ["pre,post,weight", "N0,N1,1", "N1,N2,2", "N2,N0,1"]
    if attack == "nodes":  # an edge list whose nodes make an N x N matrix
        rows += [f"N{i},N{i + 1},1" for i in range(value)]
    elif attack == "duplicates":
        rows += ["N0,N1,1"] * value
    elif attack == "names":
        rows += [
            f"{json.dumps(a)},{json.dumps(b)},1"
            for a, b in zip(_names(rng, value), _names(rng, value))
        ]
    elif attack == "ids":
        rows += [f"{_pick(rng, DECLARED)},{_pick(rng, DECLARED)},1" for _ in range(value)]
    elif attack == "adjacency":
        path = folder / "adjacency.csv"
        rows = ["," + ",".join(f"N{i}" for i in range(value))]
        rows += [
            f"N{i}," + ",".join("1" if j == i + 1 else "0" for j in range(value))
            for i in range(min(value, 50))
        ]
    path.write_text("\n".join(rows) + "\n")
    return path


CSV_ATTACKS = {
    "nodes": [10, 2_000, 20_000],
    "duplicates": [10, 200_000],
    "names": [1, 5, 50],
    "ids": [5, 500],
    "adjacency": [10, 20_000],
}


def gen_graphml(rng, folder: Path, attack: str, value) -> Path:
    path = folder / "net.graphml"
    head = (
        '<?xml version="1.0"?><graphml xmlns="http://graphml.graphdrawing.org/xmlns">'
        '<key id="d0" for="edge" attr.name="weight" attr.type="double"/>'
        '<graph edgedefault="directed">'
    )
    nodes = ['<node id="a"/>', '<node id="b"/>']
    edges = ['<edge source="a" target="b"><data key="d0">1.0</data></edge>']
    if attack == "nodes":
        nodes += [f'<node id="n{i}"/>' for i in range(value)]
        edges += [f'<edge source="n{i}" target="n{i + 1}"/>' for i in range(value - 1)]
    elif attack == "depth":
        nodes.append('<node id="d"><graph>' * value + "</graph></node>" * value)
    elif attack == "names":
        from xml.sax.saxutils import quoteattr

        for name in _names(rng, value):
            safe = "".join(c for c in name if c in "\t\n\r" or ord(c) >= 32)
            nodes.append(f"<node id={quoteattr(safe)}/>")
    path.write_text(head + "".join(nodes + edges) + "</graph></graphml>")
    return path


GRAPHML_ATTACKS = {"nodes": [10, 2_000, 20_000], "depth": [10, 1000, 100_000], "names": [1, 5, 50]}


# ---- folders, the index and the cache --------------------------------------------------------


def gen_folder(rng, folder: Path, attack: str, value) -> Path:
    """A folder of networks with deep subfolders, links, FIFOs, odd names or many files."""
    root = folder / "nets"
    root.mkdir()
    np.savez(root / "a.npz", w=np.ones((4, 4)))
    outside = folder.parent / f"outside-{folder.name}"
    if attack == "depth":
        deep = root
        for _ in range(value):  # one level at a time (pathlib's mkdir recurses)
            deep = deep / "d"
            deep.mkdir()
        np.savez(deep / "b.npz", w=np.ones((4, 4)))
    elif attack == "count":
        for i in range(value):
            (root / f"f{i}.npz").write_bytes(b"PK")
    elif attack == "symlink":
        outside.mkdir(exist_ok=True)
        np.savez(outside / "secret.npz", w=np.ones((4, 4)))
        target = _pick(
            rng,
            [
                Path("/"),
                outside,
                root,
                root / "loop",
                Path("/dev"),
                outside / "secret.npz",
                Path("/dev/zero"),
            ],
        )
        (root / "link").symlink_to(target)
        (root / "loop").symlink_to(root / "link")
    elif attack == "fifo":
        os.mkfifo(root / "pipe.npz")
        os.mkfifo(root / "model.safetensors")
    elif attack == "names":
        for name in _names(rng, value):
            name = name.replace("/", "|").replace("\x00", "0")[:200] or "e"
            try:
                np.savez(root / (name + ".npz"), w=np.ones((2, 2)))
            except OSError:
                pass
    return root


FOLDER_ATTACKS = {
    "depth": [2, 99, 150, 1200],
    "count": [0, 3, 2000],
    "symlink": [0],
    "fifo": [0],
    "names": [1, 5, 30],
}


def build_index(directory: Path) -> Path:
    """A valid fingerprint index of two small networks (the seed of the index mutants)."""
    from nnequiv.index import build_index as build

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        np.savez(
            directory / f"{name}.npz",
            w1=rng.standard_normal((24, 16)),
            w2=rng.standard_normal((12, 24)),
        )
    path = directory / "lib.nnequiv"
    build([directory / "a.npz", directory / "b.npz"], path, cache_dir=False)
    return path


def gen_index(rng, folder: Path, attack: str, value, seed: Path) -> Path:
    path = folder / "lib.nnequiv"
    shutil.copyfile(seed, path)
    connection = sqlite3.connect(path)
    try:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(networks)")]
        if attack == "view":
            connection.execute("ALTER TABLE networks RENAME TO stored")
            connection.execute(
                "CREATE VIEW networks AS WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL "
                "SELECT x + 1 FROM r) SELECT stored.* FROM stored, r"
            )
        elif attack == "trigger":
            connection.execute(
                "CREATE TRIGGER t AFTER INSERT ON networks BEGIN DELETE FROM meta; END"
            )
        elif attack == "rows":
            for _ in range(value):
                connection.execute(
                    f"INSERT INTO networks ({', '.join(columns[1:])}) "
                    f"SELECT {', '.join(columns[1:])} FROM networks LIMIT 1"
                )
        elif attack == "blob":
            column = _pick(rng, [c for c in columns if c != "id"])
            connection.execute(
                f"UPDATE networks SET {column} = zeroblob(?)", (_pick(rng, [0, 7, 2**20, 2**30]),)
            )
        elif attack == "labels":
            name = _pick(
                rng, [c for c in columns if c in ("label", "source", "name")] or [columns[1]]
            )
            connection.execute(f"UPDATE networks SET {name} = ?", (_pick(rng, NAMES),))
        elif attack == "settings":
            keys = [row[0] for row in connection.execute("SELECT key FROM meta")]
            key = _pick(rng, keys)
            deep = "[" * value + "]" * value if rng.random() < 0.5 else "9" * value
            connection.execute("UPDATE meta SET value = ? WHERE key = ?", (deep, key))
        elif attack == "numbers":
            column = _pick(rng, [c for c in columns if c != "id"])
            connection.execute(
                f"UPDATE networks SET {column} = ?",
                (_pick(rng, [-1, 2**63 - 1, 1e308, float("nan"), "x"]),),
            )
        elif attack == "wal":
            connection.execute("PRAGMA journal_mode=wal")
        connection.commit()
    except sqlite3.Error:
        pass
    finally:
        connection.close()
    return path


INDEX_ATTACKS = {
    "view": [0],
    "trigger": [0],
    "rows": [1, 12],
    "blob": [0],
    "labels": [0],
    "settings": [10, 100_000],
    "numbers": [0],
    "wal": [0],
}


def build_cache_seed(directory: Path) -> tuple[Path, Path]:
    """A small network and its cache entry: (network, entry)."""
    from nnequiv import analyze

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    network = directory / "net.npz"
    np.savez(network, w1=rng.standard_normal((24, 16)), w2=rng.standard_normal((12, 24)))
    analyze(network, cache_dir=directory / "cache")
    (entry,) = (directory / "cache").rglob("*.npz")
    return network, entry


def gen_cache(rng, folder: Path, attack: str, value, seed: Path) -> Path:
    """A copy of a cache entry whose metadata is edited (written back as a valid npz)."""
    with np.load(seed, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    meta = json.loads(str(arrays["meta"][()]))
    text = json.dumps(meta)
    keys = sorted(meta)
    key = _pick(rng, keys)
    if attack == "depth":
        meta[key] = None
        text = json.dumps(meta).replace("null", "[" * value + "]" * value, 1)
    elif attack == "number":
        meta[key] = None
        text = json.dumps(meta).replace("null", "9" * value, 1)
    elif attack == "value":
        meta[key] = json.loads(
            json.dumps(_pick(rng, [-1, 2**64, 1e308, "x", [], {}, None, [1, "2"], NAMES[1]]))
        )
        text = json.dumps(meta)
    elif attack == "array":
        name = _pick(rng, [n for n in arrays if n != "meta"])
        arrays[name] = _pick(
            rng,
            [
                np.zeros(0),
                np.full(3, np.nan),
                np.ones((2, 2, 2)),
                np.array(["x"]),
                arrays[name][:1],
            ],
        )
    arrays["meta"] = np.array(text)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = folder / "entry.npz"
    path.write_bytes(buffer.getvalue())
    return path


CACHE_ATTACKS = {"depth": [10, 100_000], "number": [20, 5000], "value": [0], "array": [0]}


# ---- the registry ------------------------------------------------------------------------------

GENERATORS = {
    "npz": (gen_npz, NPZ_ATTACKS),
    "safetensors": (gen_safetensors, SAFETENSORS_ATTACKS),
    "pt": (gen_pt, PICKLE_ATTACKS),
    "torchscript": (gen_torchscript, TORCHSCRIPT_ATTACKS),
    "onnx": (gen_onnx, ONNX_ATTACKS),
    "h5": (gen_h5, H5_ATTACKS),
    "keras": (gen_keras, H5_ATTACKS),
    "csv": (gen_csv, CSV_ATTACKS),
    "graphml": (gen_graphml, GRAPHML_ATTACKS),
    "npy": (gen_npy, NPY_ATTACKS),
    "tflite": (gen_tflite, TFLITE_ATTACKS),
    "gguf": (gen_gguf, GGUF_ATTACKS),
    "ggml": (gen_ggml, GGML_ATTACKS),
    "tensorbundle": (gen_tensorbundle, TENSORBUNDLE_ATTACKS),
    "coreml": (gen_coreml, COREML_ATTACKS),
    "shards": (gen_shards, SHARD_ATTACKS),
    "folder": (gen_folder, FOLDER_ATTACKS),
    "index": (gen_index, INDEX_ATTACKS),
    "cache": (gen_cache, CACHE_ATTACKS),
}
#: Kinds whose generator edits a seed file (passed as ``seed``).
FROM_SEED = {"torchscript", "keras", "index", "cache"}


def choose(kind: str, rng) -> tuple[str, object]:
    """An attack of ``kind`` and its value, from the random stream."""
    attacks = GENERATORS[kind][1]
    attack = _pick(rng, sorted(attacks))
    return attack, _pick(rng, attacks[attack])


def generate(kind: str, rng, folder: Path, attack=None, value=None, seed: Path | None = None):
    """Write one hostile input of ``kind`` into ``folder`` (created); the path to load."""
    folder.mkdir(parents=True, exist_ok=True)
    if attack is None:
        attack, value = choose(kind, rng)
    generator = GENERATORS[kind][0]
    if kind in FROM_SEED:
        return generator(rng, folder, attack, value, seed)
    return generator(rng, folder, attack, value)
