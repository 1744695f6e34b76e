"""Safe by construction (docs/security.md): hostile and oversized files.

Hostile files are loaded in a subprocess (a harness guard: a hang fails the test at a
generous timeout, and nothing the loader does can touch the test process), with its working
directory and HOME inside the test's temporary directory. Every payload targets a file in
that directory, which is compared before and after: nothing may be created, changed or
removed. Each TorchScript payload is shown to be real by running it with trust_code=True.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from structured import torch_zip

from nnequiv.errors import (
    FormatError,
    InputError,
    NNEquivError,
    ResourceLimitError,
    UnsafeFileError,
)
from nnequiv.loading import DEFAULT_MAX_TENSOR_BYTES, open_weights
from nnequiv.spectra import layer_spectra

#: Harness guard for one subprocess of hostile files; a load takes well under a second.
GUARD_SECONDS = 120

RUNNER = r"""
import json, sys
from nnequiv.errors import NNEquivError
from nnequiv.loading import open_weights
trust = sys.argv[1] == "trust"
results = {}
for path in sys.argv[2:]:
    print("loading", path, flush=True)  # a hang shows which file
    try:
        weights = open_weights(path, trust_code=trust)
        results[path] = ["loaded", {k: v.tolist() for k, v in weights.tensors()}]
    except NNEquivError as exc:
        results[path] = [type(exc).__name__, str(exc)]
print("RESULT " + json.dumps(results))
"""


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` (symlinks and FIFOs as such) with its content hash."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            files[str(path)] = "link:" + os.readlink(path)
        elif path.is_fifo():
            files[str(path)] = "fifo"
        elif path.is_file():
            files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def load_isolated(tmp_path: Path, paths, trust_code=False, check_unchanged=True) -> dict:
    """Load ``paths`` in a subprocess confined to ``tmp_path``; the outcome per path."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir(exist_ok=True)
    cwd.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    before = snapshot(tmp_path)
    command = [sys.executable, "-c", RUNNER, "trust" if trust_code else "data", *map(str, paths)]
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=GUARD_SECONDS
    )
    assert done.returncode == 0, done.stderr[-3000:]
    if check_unchanged:
        assert snapshot(tmp_path) == before, "a file in the test's directory was touched"
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return {Path(k).name: v for k, v in json.loads(line[len("RESULT ") :]).items()}


def assert_refused(outcome, path_name, kind="UnsafeFileError", message=""):
    assert outcome[0] == kind, outcome
    assert path_name in outcome[1] and "\n" not in outcome[1] and message in outcome[1], outcome


# ---- TorchScript: the archive's code never runs -------------------------------------------


def hostile_archives(directory: Path) -> dict[str, object]:
    """TorchScript archives whose __setstate__ writes, creates or reads a file, or loops
    forever; each module's own weight (what nnequiv must read) by archive name."""
    torch = pytest.importorskip("torch")
    from torch import nn

    class Payload(nn.Module):
        """A layer whose pickled state is (weight, path, training)."""

        def __init__(self, path: str):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 4))
            self.path = path
            self.scratch = torch.zeros(1)

        def forward(self, x):
            return x @ self.weight

        @torch.jit.export
        def __getstate__(self):
            return (self.weight, self.path, self.training)

    class Writer(Payload):  # overwrites (or creates) the file at `path`
        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, str, bool]):
            self.weight, self.path, self.training = state
            self.scratch = torch.from_file(self.path, shared=True, size=8, dtype=torch.uint8)
            self.scratch.fill_(65)

    class Reader(Payload):  # reads the file at `path` into the weights
        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, str, bool]):
            _, self.path, self.training = state
            self.scratch = torch.from_file(self.path, size=16, dtype=torch.uint8)
            self.weight = self.scratch.float().reshape(4, 4)

    class Looper(Payload):  # never returns
        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, str, bool]):
            self.weight, self.path, self.training = state
            self.scratch = torch.zeros(1)
            i = 0
            while i >= 0:
                i = (i + 1) % 7

    class Host(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.fc = nn.Linear(5, 4)
            self.inner = inner

        def forward(self, x):
            return self.fc(x)

    (directory / "victim.txt").write_text("original")
    (directory / "secret.txt").write_text("SECRETSECRETSECR")
    inners = {
        "writer": Writer(str(directory / "victim.txt")),
        "creator": Writer(str(directory / "created.txt")),
        "reader": Reader(str(directory / "secret.txt")),
        "looper": Looper(""),
    }
    weights = {}
    for name, inner in inners.items():
        host = Host(inner)
        torch.jit.script(host).save(str(directory / f"{name}.pt"))
        weights[name] = (host.fc.weight.detach().numpy(), inner.weight.detach().numpy())
    return weights


def test_torchscript_setstate_never_runs(tmp_path):
    weights = hostile_archives(tmp_path)
    outcomes = load_isolated(tmp_path, [tmp_path / f"{name}.pt" for name in weights])
    for name, (fc_weight, inner_weight) in weights.items():
        status, tensors = outcomes[f"{name}.pt"]
        assert status == "loaded", (name, tensors)
        np.testing.assert_array_equal(tensors["fc.weight"], fc_weight)
        # a module with its own __getstate__: its tensors, as stored, under __state__
        np.testing.assert_array_equal(tensors["inner.__state__.0"], inner_weight)
    assert (tmp_path / "victim.txt").read_text() == "original"
    assert not (tmp_path / "created.txt").exists()


@pytest.mark.slow
def test_trust_code_runs_the_archive_code(tmp_path):
    """The opt-in does what it says (and the payloads above are real)."""
    hostile_archives(tmp_path)
    paths = [tmp_path / "writer.pt", tmp_path / "creator.pt", tmp_path / "reader.pt"]
    outcomes = load_isolated(tmp_path, paths, trust_code=True, check_unchanged=False)
    assert (tmp_path / "victim.txt").read_text() == "AAAAAAAA"
    assert (tmp_path / "created.txt").exists()
    secret = np.frombuffer(b"SECRETSECRETSECR", np.uint8).reshape(4, 4).astype(np.float32)
    np.testing.assert_array_equal(outcomes["reader.pt"][1]["inner.weight"], secret)


# ---- pickles that name code are refused -------------------------------------------------


def op_str(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def op_int(value: int) -> bytes:
    raw = pickle.encode_long(value)
    if len(raw) < 256:
        return b"\x8a" + bytes([len(raw)]) + raw  # LONG1
    return b"\x8b" + struct.pack("<I", len(raw)) + raw  # LONG4


def op_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def op_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def call(module: str, name: str, *args: bytes) -> bytes:
    return op_global(module, name) + op_tuple(*args) + b"R"


def tensor_pickle(numel, offset, shape, stride, storage="FloatStorage") -> bytes:
    """A state dict ``{"w": tensor}`` as torch.save pickles it, with any numbers."""
    storage_id = op_tuple(
        op_str("storage"), op_global("torch", storage), op_str("0"), op_str("cpu"), op_int(numel)
    )
    tensor = call(
        "torch._utils",
        "_rebuild_tensor_v2",
        storage_id + b"Q",
        op_int(offset),
        op_tuple(*map(op_int, shape)),
        op_tuple(*map(op_int, stride)),
        b"\x89",
        call("collections", "OrderedDict"),
    )
    return b"\x80\x02}" + op_str("w") + tensor + b"s."


def test_pickles_that_name_code_are_refused(tmp_path):
    target = str(tmp_path / "created.txt")
    touch = call("os", "system", op_str(f"touch {target}"))
    payloads = {
        "system.pkl": b"\x80\x02" + touch + b".",
        "protocol0.pkl": f"(ios\nsystem\nS'touch {target}'\ntR.".encode(),
        "exec.pt": b"\x80\x02" + call("builtins", "exec", op_str(f"open('{target}','w')")) + b".",
        "popen.pt": b"\x80\x02" + call("subprocess", "Popen", op_tuple(op_str("touch"))) + b".",
        "getattr.pt": b"\x80\x02" + call("builtins", "getattr", op_str("x"), op_str("y")) + b".",
        "numpy.pt": b"\x80\x02" + call("numpy", "load", op_str(target)) + b".",
    }
    paths = []
    for name, data in payloads.items():
        path = tmp_path / name
        if name.endswith(".pt"):
            torch_zip(path, data)
        else:
            path.write_bytes(data)
        paths.append(path)
    # the same call hidden in a TorchScript archive, and in a legacy torch pickle
    script = b"\x80\x02" + op_global("__torch__", "M") + b")\x81}" + op_str("x") + touch + b"sb."
    paths.append(torch_zip(tmp_path / "script.pt", script, code="class M(Module):\n  pass\n"))
    legacy = b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {}))
    (tmp_path / "legacy.pt").write_bytes(legacy + b"\x80\x02" + touch + b".")
    paths.append(tmp_path / "legacy.pt")
    outcomes = load_isolated(tmp_path, paths)
    for path in paths:
        assert_refused(outcomes[path.name], path.name, message="never runs code from a file")
    assert not (tmp_path / "created.txt").exists()


def test_pickle_tricks_are_corrupt_not_run(tmp_path):
    cases = {
        # BUILD on an allowed function (would set its attributes)
        "build.pt": b"\x80\x02"
        + op_global("torch._utils", "_rebuild_tensor_v2")
        + b"}"
        + op_str("__doc__")
        + op_str("x")
        + b"sb.",
        # TorchScript classes are records only inside TorchScript archives
        "record.pt": b"\x80\x02" + op_global("__torch__", "M") + b")\x81}b.",
        "codec.pt": b"\x80\x02" + call("_codecs", "encode", op_str("x"), op_str("rot13")) + b".",
        "memo.pt": b"\x80\x02N" + b"r" + struct.pack("<I", 2**32 - 1) + b"0h\xff.",
        "extension.pt": b"\x80\x02\x82\x7f.",
    }
    for name, data in cases.items():
        path = torch_zip(tmp_path / name, data)
        with pytest.raises(NNEquivError) as info:
            open_weights(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value), name


# ---- nothing outside the file is read -------------------------------------------------------


def test_hdf5_links_external_storage_and_virtual_datasets_are_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    (tmp_path / "secret.bin").write_bytes(np.arange(12.0).tobytes())
    os.mkfifo(tmp_path / "pipe")
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle["secret"] = np.arange(12.0).reshape(3, 4)
    with h5py.File(tmp_path / "link.h5", "w") as handle:
        handle["good"] = np.ones((3, 4))
        handle["ext"] = h5py.ExternalLink("other.h5", "/secret")
    for name, source in [("storage.h5", "secret.bin"), ("fifo.h5", "pipe")]:
        with h5py.File(tmp_path / name, "w") as handle:
            handle.create_dataset(
                "w", shape=(3, 4), dtype="f8", external=[(str(tmp_path / source), 0, 96)]
            )
    with h5py.File(tmp_path / "virtual.h5", "w") as handle:
        layout = h5py.VirtualLayout(shape=(3, 4), dtype="f8")
        layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "secret", shape=(3, 4))
        handle.create_virtual_dataset("w", layout)
    names = ["link.h5", "storage.h5", "fifo.h5", "virtual.h5"]
    outcomes = load_isolated(tmp_path, [tmp_path / n for n in names])
    assert_refused(outcomes["link.h5"], "link.h5", message="external link")
    assert_refused(outcomes["storage.h5"], "storage.h5", message="external files")
    assert_refused(outcomes["fifo.h5"], "fifo.h5", message="external files")
    assert_refused(outcomes["virtual.h5"], "virtual.h5", message="virtual dataset")


def onnx_with_external(directory: Path, location: str, length=None) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    tensor = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "w")
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entries = {"location": location, "offset": "0", "length": str(length or 48)}
    for key, value in entries.items():
        tensor.external_data.add(key=key, value=value)
    out = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])], "g", [], [out], [tensor]
    )
    path = directory / f"model_{hashlib.md5(location.encode()).hexdigest()[:6]}.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.mark.slow
def test_onnx_external_data_stays_beside_the_model(tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "weights.bin").write_bytes(np.arange(12, dtype=np.float32).tobytes())
    (tmp_path / "secret.bin").write_bytes(np.ones(12, dtype=np.float32).tobytes())
    os.mkfifo(model_dir / "pipe.bin")
    good = onnx_with_external(model_dir, "weights.bin")
    monkeypatch.chdir(tmp_path)  # resolved beside the model, not in the working directory
    weights = dict(open_weights(good).tensors())
    np.testing.assert_array_equal(weights["w"], np.arange(12).reshape(3, 4))
    hostile = {
        "../secret.bin": ("UnsafeFileError", "outside the model's directory"),
        str(tmp_path / "secret.bin"): ("UnsafeFileError", "outside the model's directory"),
        "sub/../../secret.bin": ("UnsafeFileError", "outside the model's directory"),
        "pipe.bin": ("UnsafeFileError", "FIFO"),
        "missing.bin": ("InputError", "no such file"),
    }
    paths = {location: onnx_with_external(model_dir, location) for location in hostile}
    wrong_length = onnx_with_external(model_dir, "weights.bin", length=40)
    outcomes = load_isolated(tmp_path, [*paths.values(), wrong_length])
    for location, (kind, message) in hostile.items():
        assert_refused(outcomes[paths[location].name], paths[location].name, kind, message)
    assert_refused(outcomes[wrong_length.name], wrong_length.name, "FormatError", "need 48")


def test_fifos_devices_and_paths_outside_a_shard_directory_are_refused(tmp_path):
    os.mkfifo(tmp_path / "model.npz")
    os.symlink("/dev/zero", tmp_path / "zero.safetensors")
    fifo_shards = tmp_path / "fifo_shards"
    fifo_shards.mkdir()
    os.mkfifo(fifo_shards / "model.safetensors")
    escaping = tmp_path / "escaping"
    escaping.mkdir()
    (tmp_path / "outside.safetensors").write_bytes(b"")
    index = {"weight_map": {"w": "../outside.safetensors"}}
    (escaping / "model.safetensors.index.json").write_text(json.dumps(index))
    absolute = tmp_path / "absolute"
    absolute.mkdir()
    index = {"weight_map": {"w": "/etc/passwd"}}
    (absolute / "model.safetensors.index.json").write_text(json.dumps(index))
    paths = ["model.npz", "zero.safetensors", "fifo_shards", "escaping", "absolute"]
    outcomes = load_isolated(tmp_path, [tmp_path / p for p in paths])
    assert_refused(outcomes["model.npz"], "model.npz", message="FIFO")
    assert_refused(outcomes["zero.safetensors"], "zero.safetensors", message="character device")
    assert_refused(outcomes["fifo_shards"], "fifo_shards", message="FIFO")
    assert_refused(outcomes["escaping"], "escaping", message="outside its directory")
    assert_refused(outcomes["absolute"], "absolute", message="outside its directory")


# ---- sizes are checked before anything is allocated -------------------------------------


def npy_header(shape, descr="<f8") -> bytes:
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def raw_zip(path: Path, name: str, stored: bytes, declared_size: int, method=8) -> Path:
    """A zip of one member whose header declares ``declared_size`` uncompressed bytes,
    whatever ``stored`` inflates to (zipfile always writes the true size)."""
    raw = name.encode()
    fields = (20, 0, method, 0, 0, 0, len(stored), declared_size, len(raw), 0)
    local = struct.pack("<4s5HIIIHH", b"PK\x03\x04", *fields[:5], 0, *fields[6:]) + raw
    central = (
        struct.pack(
            "<4s6HIIIHHHHHII", b"PK\x01\x02", 20, *fields[:5], 0, *fields[6:], 0, 0, 0, 0, 0
        )
        + raw
    )
    end = struct.pack(
        "<4s4HIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(stored), 0
    )
    path.write_bytes(local + stored + central + end)
    return path


def inflating_to(size: int) -> bytes:
    """A raw deflate stream of ``size`` zero bytes (a multiple of 16 MiB), built cheaply by
    repeating one fully flushed block."""
    block_size = 16 << 20
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(block_size)) + compressor.flush(zlib.Z_FULL_FLUSH)
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    return block * (size // block_size) + final


def test_declared_sizes_above_the_limit_are_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    big = (50_000, 50_000)  # 20 GB of float64, declared by a file of a few kilobytes
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("w.npy", npy_header(big) + bytes(1000))
    with h5py.File(tmp_path / "bomb.h5", "w") as handle:
        dataset = handle.create_dataset(
            "w", shape=big, dtype="f4", chunks=(100, 100), compression="gzip"
        )
        dataset[:100, :100] = 0.0
    header = {"w": {"dtype": "F64", "shape": list(big), "data_offsets": [0, 8]}}
    text = json.dumps(header).encode()
    (tmp_path / "bomb.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + bytes(8))
    torch_zip(tmp_path / "storage.pt", tensor_pickle(10**10, 0, [10], [1]), {"0": bytes(40)})
    torch_zip(tmp_path / "stride.pt", tensor_pickle(1, 0, list(big), [0, 0]), {"0": bytes(4)})
    # sizes too large for a float, or to print in full
    header = {"w": {"dtype": "F32", "shape": [10**300, 10**300], "data_offsets": [0, 0]}}
    text = json.dumps(header).encode()
    (tmp_path / "huge.safetensors").write_bytes(len(text).to_bytes(8, "little") + text)
    torch_zip(tmp_path / "huge.pt", tensor_pickle(10**3000, 0, [10], [1]), {"0": bytes(40)})
    names = ["bomb.npz", "bomb.h5", "bomb.safetensors", "storage.pt", "stride.pt"]
    for name in [*names, "huge.safetensors", "huge.pt"]:
        with pytest.raises(ResourceLimitError, match="above the limit of 8.0 GiB") as info:
            layer_spectra(tmp_path / name)
        assert name in str(info.value) and "\n" not in str(info.value)
    # the limit is a parameter, checked the same way
    np.savez(tmp_path / "small.npz", w=np.ones((64, 64)))
    with pytest.raises(ResourceLimitError, match=r"'w' \(64 x 64\) declares 32.0 KiB"):
        layer_spectra(open_weights(tmp_path / "small.npz", max_tensor_bytes=32767))
    assert layer_spectra(open_weights(tmp_path / "small.npz", max_tensor_bytes=32768))
    for bad in [0, -1, "8G", 2.5, True]:
        with pytest.raises(InputError, match="max_tensor_bytes"):
            open_weights(tmp_path / "small.npz", max_tensor_bytes=bad)


def test_tensors_outside_their_storage_are_corrupt(tmp_path):
    torch_zip(tmp_path / "past.pt", tensor_pickle(10, 4, [3, 3], [3, 1]), {"0": bytes(40)})
    torch_zip(tmp_path / "short.pt", tensor_pickle(10, 0, [10], [1]), {"0": bytes(39)})
    torch_zip(tmp_path / "missing.pt", tensor_pickle(10, 0, [10], [1]))
    torch_zip(tmp_path / "negative.pt", tensor_pickle(10, 0, [-2, 5], [5, 1]), {"0": bytes(40)})
    torch_zip(tmp_path / "fine.pt", tensor_pickle(10, 1, [3, 3], [3, 1]), {"0": bytes(40)})
    for name, message in [
        ("past.pt", "reaches past its storage"),
        ("short.pt", "holds 39 bytes, its header declares 40"),
        ("missing.pt", "storage '0' is missing"),
        ("negative.pt", "invalid offset, shape or stride"),
    ]:
        with pytest.raises(FormatError, match=message):
            open_weights(tmp_path / name)
    assert dict(open_weights(tmp_path / "fine.pt").shapes()) == {"w": (3, 3)}


@pytest.mark.slow
def test_llm_sized_tensor_passes_the_default_limit(tmp_path):
    shape = [16384, 8192]  # 512 MiB of float32, as in a 7B language model
    header = {"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 4 * 16384 * 8192]}}
    text = json.dumps(header).encode()
    path = tmp_path / "llm.safetensors"
    with open(path, "wb") as handle:
        handle.write(len(text).to_bytes(8, "little") + text)
        handle.truncate(8 + len(text) + 4 * 16384 * 8192)  # sparse: no disk, no memory
    assert 4 * 16384 * 8192 < DEFAULT_MAX_TENSOR_BYTES
    name, array = next(open_weights(path).tensors())
    assert name == "w" and array.shape == tuple(shape)


MEMORY_PROBE = r"""
import sys
from nnequiv.errors import NNEquivError
from nnequiv.loading import open_weights
try:
    list(open_weights(sys.argv[1]).tensors())
    print("loaded")
except NNEquivError as exc:
    print(type(exc).__name__, exc)
status = open("/proc/self/status").read().split("VmHWM:")[1]
print(int(status.split()[0]) // 1024)  # peak resident memory of this process image, MiB
"""


def peak_memory_loading(path: Path) -> tuple[str, int]:
    """The outcome and peak resident memory (MiB) of loading ``path`` in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=GUARD_SECONDS,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome, peak = done.stdout.strip().rsplit("\n", 1)
    return outcome, int(peak)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_decompression_stops_at_the_declared_size(tmp_path):
    """A member that declares 128 bytes but inflates to 1 GiB is refused while inflating:
    the process never holds more than a few MiB of it."""
    bomb = inflating_to(1 << 30)
    npz = raw_zip(tmp_path / "liar.npz", "w.npy", bomb, len(npy_header((2, 2))) + 32)
    outcome, peak = peak_memory_loading(npz)
    assert outcome.startswith("FormatError") and "liar.npz" in outcome, outcome
    assert peak < 400, f"{peak} MiB"
    keras = raw_zip(tmp_path / "liar.keras", "model.weights.h5", bomb, 4096)
    outcome, peak = peak_memory_loading(keras)
    assert outcome.startswith("FormatError") and "liar.keras" in outcome, outcome
    assert peak < 400, f"{peak} MiB"


def test_hdf5_chunk_that_inflates_past_its_size_is_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "chunk.h5"
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset(
            "w", shape=(64, 64), dtype="f4", chunks=(64, 64), compression="gzip"
        )
        dataset.id.write_direct_chunk((0, 0), zlib.compress(bytes(64 * 64 * 4 * 100)))
    with pytest.raises(FormatError, match="decompresses past its declared size"):
        layer_spectra(path)
    with h5py.File(tmp_path / "unwritten.h5", "w") as handle:
        handle.create_dataset("w", shape=(3000, 3000), dtype="f8")
    with pytest.raises(FormatError, match="'w' has no stored data"):
        layer_spectra(tmp_path / "unwritten.h5")


# ---- degenerate networks ----------------------------------------------------------------


DEGENERATE = {
    "zeros": np.zeros((8, 6)),
    "subnormal": np.full((8, 6), 1e-310),
}


@pytest.mark.parametrize("kind", sorted(DEGENERATE))
def test_degenerate_layers_load(tmp_path, kind):
    np.savez(tmp_path / "net.npz", w=DEGENERATE[kind])
    try:
        spectra = layer_spectra(tmp_path / "net.npz", canonical="raw")
    except NNEquivError as exc:
        assert "net.npz" in str(exc) and "\n" not in str(exc)
    else:
        assert len(spectra) == 1 and spectra[0].eigenvalues.size == 0


def test_degenerate_networks_analyse_or_fail_cleanly(tmp_path):
    """All zero: no layer, one clean line. All subnormal: a constant matrix in the scale-free
    canonical form (rank 1, docs/method.md item 2), analysed like any other."""
    from nnequiv import analyze
    from nnequiv.errors import NoLayersError

    for kind, values in DEGENERATE.items():
        np.savez(tmp_path / f"{kind}.npz", w=values)
    with pytest.raises(NoLayersError, match=r"zeros\.npz: no eligible layer") as info:
        analyze(tmp_path / "zeros.npz", realizations=2)
    assert "\n" not in str(info.value)
    tiny = analyze(tmp_path / "subnormal.npz", realizations=2)
    assert tiny.layers[0].n_eigenvalues == 1 and tiny.layers[0].n_dropped == 5


def test_links_named_by_a_file_stay_inside_its_folder(tmp_path):
    """External data and shards that are symbolic links are read only when the link's target
    lies inside the model's folder (or, in a Hugging Face cache, inside the repository
    folder whose snapshots link into its blobs)."""
    from formats import save_sharded

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(12, dtype=np.float32).tobytes())
    os.symlink(secret, model_dir / "linked.bin")
    (model_dir / "weights.bin").write_bytes(secret.read_bytes())
    os.symlink(model_dir / "weights.bin", model_dir / "inner.bin")
    linked_out = onnx_with_external(model_dir, "linked.bin")
    linked_in = onnx_with_external(model_dir, "inner.bin")
    with pytest.raises(UnsafeFileError, match="outside the model's directory"):
        dict(open_weights(linked_out).tensors())
    assert dict(open_weights(linked_in).tensors())["w"].shape == (3, 4)
    # a shard index whose shard links out of its folder, and the same in a Hugging Face cache
    state = {"w": np.ones((4, 4), np.float32), "v": np.ones((3, 4), np.float32)}
    shards = tmp_path / "shards"
    save_sharded(state, shards)
    last = sorted(shards.glob("*.safetensors"))[-1]
    last.rename(tmp_path / "moved.safetensors")
    os.symlink(tmp_path / "moved.safetensors", last)
    (index,) = shards.glob("*.index.json")
    with pytest.raises(UnsafeFileError, match="outside its directory"):
        dict(open_weights(index).tensors())
    repo = tmp_path / "hub" / "models--org--net"
    snapshot = repo / "snapshots" / "abc"
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in shards.iterdir():
        blob = repo / "blobs" / file.name
        blob.write_bytes(file.read_bytes())
        os.symlink(os.path.relpath(blob, snapshot), snapshot / file.name)
    assert set(dict(open_weights(snapshot / index.name).tensors())) == {"w", "v"}
