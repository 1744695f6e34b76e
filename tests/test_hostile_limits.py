"""Hostile inputs, round two, for the readers: no crash, no hang, no unbounded work. Every
count a file declares has a limit a user can raise (``nnequiv.loading.LIMITS``), checked
before the work; a file that would decode to far more than its size is refused; failures
deep in a reader (recursion, memory, the HDF5 library) are one line naming the file."""

from __future__ import annotations

import json
import os
import pickle
import signal
import struct

import numpy as np
import pytest
from structured import encrypted_npz
from test_safety import op_global, op_int, op_str, op_tuple, tensor_pickle, torch_zip

from nnequiv.errors import FormatError, NNEquivError, ResourceLimitError
from nnequiv.loading import LIMITS, ReaderLimits, open_weights


def one_line(info, path) -> str:
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    return message


def read_all(path):
    return dict(open_weights(path).tensors())


@pytest.fixture
def limits(monkeypatch):
    """LIMITS with fields a test may lower (restored afterwards)."""
    for field in LIMITS.__dataclass_fields__:
        monkeypatch.setattr(LIMITS, field, getattr(LIMITS, field))
    return LIMITS


# ---- pickles -------------------------------------------------------------------------------


def test_deeply_nested_pickles_are_one_line_not_a_crash(tmp_path):
    depth = 100_000
    nested_lists = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    nested_key = b"\x80\x02}" + b"N\x85" * depth + b"N" + b"s."  # a 100,000-deep tuple as a key
    nested_dicts = b"\x80\x02" + (b"}" + op_str("a")) * depth + b"N" + b"s" * depth + b"."
    for name, data in [("lists", nested_lists), ("key", nested_key), ("dicts", nested_dicts)]:
        path = torch_zip(tmp_path / f"{name}.pt", data)
        with pytest.raises(FormatError) as info:
            open_weights(path)
        one_line(info, path)


def test_exponential_pickle_dags_cost_their_size(tmp_path):
    """60 levels of a dict holding the level below twice: 2^60 paths through 61 dicts."""
    level = b"}" + tensor_pickle(4, 0, (2, 2), (2, 1))[3:-2] + b"s"  # {"w": tensor}
    data = b"\x80\x02" + level + b"q\x00"
    for depth in range(1, 61):
        below = b"h" + bytes([depth - 1])
        data += b"}" + op_str("a") + below + b"s" + op_str("b") + below + b"s"
        data += b"q" + bytes([depth])
    data += b"."
    path = torch_zip(tmp_path / "dag.pt", data, {"0": np.ones(4, np.float32).tobytes()})
    tensors = read_all(path)
    assert list(tensors) == ["a." * 60 + "w"]  # the one tensor, found once


def test_zero_stride_view_over_a_storage_is_refused_before_it_is_made(tmp_path):
    data = tensor_pickle(1, 0, (2_000_000_000,), (0,))
    path = torch_zip(tmp_path / "stride.pt", data, {"0": bytes(4)})
    with pytest.raises(ResourceLimitError) as info:
        open_weights(path)
    assert "max_expansion" in one_line(info, path)


def views_pickle(count: int) -> bytes:
    """``count`` tensors viewing one storage at different offsets."""
    storage = op_tuple(
        op_str("storage"),
        op_global("torch", "FloatStorage"),
        op_str("0"),
        op_str("cpu"),
        op_int(64),
    )
    items = b""
    for index in range(count):
        args = op_tuple(
            storage + b"Q", op_int(index % 60), op_tuple(op_int(2)), op_tuple(op_int(1))
        )
        items += op_str(f"t{index}") + op_global("torch._utils", "_rebuild_tensor") + args + b"R"
    return b"\x80\x02}(" + items + b"u."


def test_views_of_one_storage_are_bounded_and_the_limit_can_be_raised(tmp_path, limits):
    path = torch_zip(tmp_path / "views.pt", views_pickle(50), {"0": bytes(256)})
    limits.max_storage_views = 40
    with pytest.raises(ResourceLimitError) as info:
        open_weights(path)
    assert "LIMITS.max_storage_views" in one_line(info, path)
    limits.max_storage_views = 50
    assert len(read_all(path)) == 50


def test_objects_a_pickle_builds_are_bounded(tmp_path, limits):
    limits.max_pickle_objects = 1000
    path = torch_zip(tmp_path / "many.pt", b"\x80\x02(" + b"N\x85\x94" * 2000 + b"l.")
    with pytest.raises(ResourceLimitError) as info:
        open_weights(path)
    assert "LIMITS.max_pickle_objects" in one_line(info, path)


# ---- headers, archives, indexes --------------------------------------------------------------


def test_duplicate_safetensors_keys_are_refused_in_linear_time(tmp_path):
    entry = '"t%d": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}'
    body = ", ".join(entry % i for i in range(50_000))
    header = ("{" + body + ", " + entry % 5 + "}").encode()
    path = tmp_path / "dup.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(FormatError) as info:
        open_weights(path)
    assert "duplicate key 't5'" in one_line(info, path)


def test_tensor_counts_are_bounded(tmp_path, limits):
    np.savez(tmp_path / "many.npz", **{f"w{i}": np.ones((2, 2)) for i in range(20)})
    limits.max_tensors = 10
    with pytest.raises(ResourceLimitError) as info:
        read_all(tmp_path / "many.npz")
    assert "LIMITS.max_tensors" in one_line(info, tmp_path / "many.npz")


def test_files_that_decode_to_far_more_than_their_size_are_refused(tmp_path, limits):
    np.savez_compressed(tmp_path / "zeros.npz", w=np.zeros((1000, 1000)))  # 8 MB in ~8 KB
    assert read_all(tmp_path / "zeros.npz")["w"].shape == (1000, 1000)  # under the floor
    limits.expansion_floor = 0
    with pytest.raises(ResourceLimitError) as info:
        read_all(tmp_path / "zeros.npz")
    assert "LIMITS.max_expansion" in one_line(info, tmp_path / "zeros.npz")
    limits.max_expansion = 10_000
    assert read_all(tmp_path / "zeros.npz")["w"].shape == (1000, 1000)


def test_encrypted_npz_member_is_one_line(tmp_path):
    path = encrypted_npz(tmp_path / "locked.npz")  # the member says it is encrypted
    with pytest.raises(FormatError) as info:
        read_all(path)
    assert "encrypted" in one_line(info, path)


def test_gguf_dimension_overflow_names_the_file(tmp_path):
    name = b"w"
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, 0)
    header += struct.pack("<Q", len(name)) + name + struct.pack("<I", 2)
    header += struct.pack("<QQ", 2**63 - 1, 2**63 - 1) + struct.pack("<IQ", 0, 0)
    path = tmp_path / "huge.gguf"
    path.write_bytes(header + bytes(64))
    with pytest.raises(NNEquivError) as info:
        read_all(path)
    one_line(info, path)


@pytest.mark.parametrize(
    "content",
    [
        '{"weight_map": {"w": "a.safetensors"}, "total": ' + "9" * 5000 + "}",
        '{"weight_map": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"weight_map": {"w": 12}}',
    ],
)
def test_shard_index_oddities_are_one_line_naming_the_index(tmp_path, content):
    (tmp_path / "a.safetensors").write_bytes(b"")
    path = tmp_path / "model.safetensors.index.json"
    path.write_text(content)
    with pytest.raises(FormatError) as info:
        open_weights(path)
    one_line(info, path)


def test_recursion_and_memory_errors_inside_a_reader_are_one_line(tmp_path, monkeypatch):
    from nnequiv.loading import _npz

    np.savez(tmp_path / "net.npz", w=np.ones((3, 3)))
    for error, kind in [(RecursionError, FormatError), (MemoryError, ResourceLimitError)]:
        monkeypatch.setattr(_npz, "_read_npy", lambda *args, e=error: (_ for _ in ()).throw(e()))
        with pytest.raises(kind) as info:
            read_all(tmp_path / "net.npz")
        one_line(info, tmp_path / "net.npz")


# ---- TFLite ------------------------------------------------------------------------------------


def test_tflite_subgraph_entries_are_bounded(tmp_path, limits):
    pytest.importorskip("tflite")
    from formats import write_tflite

    tensors = [
        {"name": f"w{i}", "shape": [2, 2], "type": 0, "data": np.ones(4, np.float32).tobytes()}
        for i in range(6)
    ]
    path = write_tflite(tmp_path / "net.tflite", tensors, [])
    limits.max_tensors = 5
    with pytest.raises(ResourceLimitError) as info:
        open_weights(path)
    assert "LIMITS.max_tensors" in one_line(info, path)
    limits.max_subgraphs = 0
    with pytest.raises(ResourceLimitError, match="LIMITS.max_subgraphs"):
        open_weights(path)


# ---- HDF5 --------------------------------------------------------------------------------------


def test_hdf5_nesting_chunks_and_fill_are_checked_before_data_is_read(tmp_path, limits):
    h5py = pytest.importorskip("h5py")
    deep = tmp_path / "deep.h5"
    with h5py.File(deep, "w") as handle:
        handle["/".join(["g"] * 80) + "/w"] = np.ones((3, 3))
    with pytest.raises(ResourceLimitError) as info:
        read_all(deep)
    assert "LIMITS.max_hdf5_depth" in one_line(info, deep)
    partial = tmp_path / "partial.h5"
    with h5py.File(partial, "w") as handle:
        dataset = handle.create_dataset("w", shape=(64, 64), chunks=(8, 8), dtype="f4")
        dataset[:8, :8] = 1.0  # one chunk of 64 written
    with pytest.raises(FormatError) as info:
        read_all(partial)
    assert "stores 1 of its 64 chunks" in one_line(info, partial)
    chunked = tmp_path / "chunked.h5"
    with h5py.File(chunked, "w") as handle:
        handle.create_dataset("w", data=np.ones((64, 64), "f4"), chunks=(8, 8))
    limits.max_hdf5_chunks = 10
    with pytest.raises(ResourceLimitError, match="LIMITS.max_hdf5_chunks"):
        read_all(chunked)


def test_a_crash_of_the_hdf5_library_is_one_line(tmp_path, monkeypatch):
    h5py = pytest.importorskip("h5py")
    from nnequiv.loading import _hdf5

    path = tmp_path / "net.h5"
    with h5py.File(path, "w") as handle:
        handle["w"] = np.ones((3, 3))
    monkeypatch.setattr(_hdf5, "_metadata", lambda *args: os.kill(os.getpid(), signal.SIGSEGV))
    with pytest.raises(FormatError) as info:
        read_all(path)
    assert "the HDF5 library failed on this file" in one_line(info, path)


def test_pickled_bytearray_of_a_size_is_refused(tmp_path):
    data = b"\x80\x02" + op_global("builtins", "bytearray") + op_tuple(op_int(10**12)) + b"R."
    path = torch_zip(tmp_path / "bomb.pt", data)
    with pytest.raises(FormatError) as info:
        open_weights(path)
    one_line(info, path)


def test_json_and_pickle_helpers_stay_exact():
    """Guard: the pickles built above are what they claim (a sanity check of the helpers)."""
    assert pickle.loads(b"\x80\x02" + b"]" * 3 + b"a" * 2 + b".") == [[[]]]
    assert json.loads("[" * 3 + "]" * 3) == [[[]]]


# ---- raising a limit: --limit NAME=VALUE and LoadOptions.limits ----------------------------------


def test_every_limit_can_be_set_on_the_command_line(limits):
    from nnequiv._cli_parser import build_parser

    for name in ReaderLimits.__dataclass_fields__:
        args = build_parser().parse_args(["analyze", "net.npz", "--limit", f"{name}=12345"])
        assert getattr(LIMITS, name) == 12345, name
        assert args.limits == [f"{name}=12345"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["analyze", "net.npz", "--limit", "max_tensorz=1"])


def run_cli(argv) -> int:
    from nnequiv.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


def test_the_limit_option_reaches_the_readers(tmp_path, limits, capsys):
    path = tmp_path / "many.npz"
    rng = np.random.default_rng(0)
    np.savez(path, **{f"w{i}": rng.standard_normal((6, 5)) for i in range(20)})
    assert run_cli(["analyze", str(path), "--no-cache", "--limit", "max_tensors=10"]) == 1
    assert "LIMITS.max_tensors" in capsys.readouterr().err
    limits.max_tensors = 10
    assert run_cli(["analyze", str(path), "--no-cache", "--limit", "max_tensors=20"]) == 0
    assert LIMITS.max_tensors == 20


def test_the_limits_option_of_the_library_is_applied(tmp_path, limits):
    from nnequiv import analyze

    path = tmp_path / "many.npz"
    rng = np.random.default_rng(0)
    np.savez(path, **{f"w{i}": rng.standard_normal((6, 5)) for i in range(20)})
    with pytest.raises(ResourceLimitError, match="LIMITS.max_tensors"):
        analyze(path, cache_dir=False, limits=("max_tensors=10",))
    analyze(path, cache_dir=False, limits=("max_tensors=20",))  # raised again: it loads


def test_the_folder_depth_limit_can_be_raised(tmp_path, limits, capsys):
    deep = tmp_path / "nets"
    for _ in range(5):
        deep = deep / "d"
    deep.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(deep / "a.npz", w1=rng.standard_normal((12, 8)), w2=rng.standard_normal((6, 12)))
    top = str(tmp_path / "nets")
    assert run_cli(["analyze", top, "--no-cache", "--limit", "max_folder_depth=2"]) == 1
    assert "no network found" in capsys.readouterr().err
    assert run_cli(["analyze", top, "--no-cache", "--limit", "max_folder_depth=10"]) == 0


def test_a_small_edge_list_naming_many_nodes_is_refused(tmp_path, limits):
    from nnequiv.connectomes import load_connectome

    path = tmp_path / "edges.csv"
    path.write_text("pre,post,weight\n" + "".join(f"N{i},N{i + 1},1\n" for i in range(300)))
    assert load_connectome(path).matrices["chemical"].shape == (301, 301)  # under the floor
    limits.expansion_floor = 0  # the 301 x 301 matrix is ~200 times the file's 3.6 KB
    with pytest.raises(ResourceLimitError) as info:
        load_connectome(path)
    assert "LIMITS.max_expansion" in one_line(info, path)
    limits.max_expansion = 1000
    assert load_connectome(path).matrices["chemical"].shape == (301, 301)


def test_a_loop_of_links_in_a_folder_is_noted_not_a_traceback(tmp_path):
    from nnequiv.discovery import discover

    root = tmp_path / "nets"
    root.mkdir()
    np.savez(root / "a.npz", w=np.ones((4, 4)))
    (root / "link").symlink_to(root / "loop")
    (root / "loop").symlink_to(root / "link")  # each resolves to the other: ELOOP
    notes = []
    found = discover(root, notes=notes.append)
    assert [f.path.name for f in found] == ["a.npz"]
    assert any("link" in note for note in notes), notes
