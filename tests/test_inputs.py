"""Inputs as users have them, through discovery and the command line: training-run folders,
tables beside networks, labels in text output, every source kind of every command, the index
that never loses an entry, ``--keep-going``, and inputs that try to reach outside what was
named (each case on files made here)."""

from __future__ import annotations

import io
import json
import os
import random
import zipfile

import numpy as np
import pytest
from _helpers import hub_cache, random_mlp, save_safetensors

from nnequiv.cli import main
from nnequiv.discovery import CONNECTOME, NETWORK, discover

torch = pytest.importorskip("torch")


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def found_and_notes(paths, **kwargs):
    notes = []
    return discover(paths, notes=notes.append, **kwargs), notes


def mlp(seed):
    return random_mlp([24, 18, 12, 6], seed=seed)


def trainer_checkpoint(folder, seed):
    """A Hugging Face Trainer checkpoint as ``Trainer.save_state`` leaves it, with DeepSpeed's
    state folder beside the weights."""
    save_safetensors(folder / "model.safetensors", mlp(seed))
    (folder / "config.json").write_text("{}")
    model = torch.nn.Linear(6, 4)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(3, 6)).sum().backward()
    optimizer.step()
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 3)
    torch.save(scheduler.state_dict(), folder / "scheduler.pt")
    rng = {"python": random.getstate(), "numpy": np.random.get_state()}  # noqa: NPY002 (as Trainer saves it)
    torch.save({**rng, "cpu": torch.get_rng_state()}, folder / "rng_state.pth")
    torch.save({"scale": torch.tensor(1024.0)}, folder / "scaler.pt")
    torch.save({"output_dir": "out", "learning_rate": 5e-5}, folder / "training_args.bin")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": seed}))
    deepspeed = folder / f"global_step{seed}"
    deepspeed.mkdir()
    torch.save(
        {"module": {k: torch.tensor(v) for k, v in mlp(seed).items()}},
        deepspeed / "mp_rank_00_model_states.pt",
    )
    torch.save(optimizer.state_dict(), deepspeed / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt")
    return folder


# --- Folders as users have them (issue 19, item 3) ----------------------------------------------


def test_a_trainer_checkpoint_is_one_network_and_a_run_one_per_checkpoint(tmp_path):
    run = tmp_path / "run"
    for step in (10, 20):
        trainer_checkpoint(run / f"checkpoint-{step}", step)
    found, notes = found_and_notes(run)
    assert [(f.label, f.kind) for f in found] == [
        ("run/checkpoint-10", NETWORK),
        ("run/checkpoint-20", NETWORK),
    ]
    assert [f.path.name for f in found] == ["model.safetensors"] * 2
    (one,), notes = found_and_notes(run / "checkpoint-10")
    assert one.label == "run/checkpoint-10"
    reasons = {n.split(": ")[0].rsplit("/", 1)[-1]: n.split(": ", 1)[1] for n in notes}
    assert "random generator state" in reasons["rng_state.pth"]
    assert "scheduler state" in reasons["scheduler.pt"]
    assert "optimizer state" in reasons["optimizer.pt"]
    assert "gradient scaler" in reasons["scaler.pt"]
    assert "trainer's state" in reasons["trainer_state.json"]
    assert "trainer's state" in reasons["training_args.bin"]
    assert "DeepSpeed" in reasons["global_step10"]


def test_trainer_checkpoints_on_the_command_line(capsys, tmp_path):
    run = tmp_path / "run"
    for step in (10, 20):
        trainer_checkpoint(run / f"checkpoint-{step}", step)
    code, out, err = run_cli(capsys, "analyze", run / "checkpoint-10", "--realizations", 2)
    assert code == 0 and out.startswith("run/checkpoint-10: 3 layers"), err
    code, out, err = run_cli(capsys, "cluster", run, "--realizations", 2)
    assert code == 0 and out.startswith("2 networks"), err
    assert "class" in out and "run/checkpoint-10" in out and "run/checkpoint-20" in out


def test_a_table_in_a_folder_is_a_connectome_only_when_shaped_like_one(tmp_path):
    folder = tmp_path / "models"
    save_safetensors(folder / "net.safetensors", mlp(0))
    (folder / "MANIFEST.csv").write_text("file,size\nnet.safetensors,1234\nconfig.json,12\n")
    (folder / "losses.csv").write_text("step,loss,lr\n1,0.9,0.1\n2,0.7,0.1\n3,0.6,0.1\n4,0.5,0.1\n")
    (folder / "edges.csv").write_text("pre,post,weight\nAVA,AVB,3\nAVB,AVA,1\n")
    for connectomes in (False, True):
        found, notes = found_and_notes(folder, connectomes=connectomes)
        assert [(f.label, f.kind) for f in found] == [
            ("edges.csv", CONNECTOME),
            ("net.safetensors", NETWORK),
        ]
        listed = " ".join(notes)
        assert "MANIFEST.csv" in listed and "losses.csv" in listed
    # named on its own with --connectome, a table is taken: the loader says what is wrong
    (one,), _ = found_and_notes(folder / "MANIFEST.csv", connectomes=True)
    assert one.kind == CONNECTOME


def test_text_output_uses_the_unique_labels(capsys, tmp_path):
    folders = []
    for name in "abcd":
        folder = tmp_path / name
        save_safetensors(folder / "model.safetensors", mlp(ord(name)))
        (folder / "config.json").write_text("{}")
        folders.append(folder)
    code, out, _ = run_cli(capsys, "cluster", *folders, "--realizations", 2)
    assert code == 0
    for name in "abcd":
        assert f" {name}/model.safetensors" in out
    code, out, _ = run_cli(capsys, "compare", folders[0], folders[1], "--realizations", 2)
    assert code == 0 and out.startswith("a/model.safetensors vs b/model.safetensors")
    code, out, _ = run_cli(
        capsys, "identify", folders[0], "--library", *folders[1:], "--realizations", 2
    )
    assert code == 0 and out.startswith("nearest designs to a/model.safetensors")
    assert "b/model.safetensors" in out


# --- Every source kind through every command (issue 19, item 7) ---------------------------------

R = 2  # realizations: enough for a calibrated eps


def shards(folder, state):
    """``state`` in two safetensors shards with their Hugging Face index."""
    names = list(state)
    weight_map = {}
    for i, part in enumerate([names[: len(names) // 2], names[len(names) // 2 :]]):
        name = f"model-{i + 1:05d}-of-00002.safetensors"
        save_safetensors(folder / name, {k: state[k] for k in part})
        weight_map.update(dict.fromkeys(part, name))
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


@pytest.fixture
def kinds(tmp_path, monkeypatch):
    """One network of each source kind, by the argument that names it, and its label."""
    from nnequiv.index import build_index

    np.savez(tmp_path / "net.npz", **mlp(1))
    save_safetensors(tmp_path / "folder" / "model.safetensors", mlp(2))
    (tmp_path / "folder" / "config.json").write_text("{}")
    shards(tmp_path / "sharded", mlp(3))
    hub_cache(tmp_path / "hub", mlp(4))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    try:
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    except ImportError:
        pass
    np.savez(tmp_path / "indexed.npz", **mlp(5))
    build_index([tmp_path / "indexed.npz"], tmp_path / "lib.sqlite", realizations=R)
    (tmp_path / "indexed.npz").unlink()  # an index serves without its networks
    np.savez(tmp_path / "other.npz", **mlp(6))
    monkeypatch.chdir(tmp_path)
    return {
        "file": ("net.npz", "net.npz"),
        "folder": ("folder", "model.safetensors"),
        "index.json": ("sharded/model.safetensors.index.json", "model.safetensors.index.json"),
        "hub id": ("acme/tiny-mlp", "acme/tiny-mlp"),
        "index": ("lib.sqlite", "indexed.npz"),
    }


KINDS = ["file", "folder", "index.json", "hub id", "index"]
#: What a command refuses, and a word of its one-line reason (compare takes an index of one
#: network as that network).
REFUSED = {
    ("analyze", "index"): "fingerprint index",
    ("report", "index"): "a report needs the network's whole analysis",
    ("index build", "index"): "fingerprint index",
    ("index add", "index"): "fingerprint index",
}


def command_line(command, given, tmp_path):
    return {
        "analyze": ["analyze", given],
        "compare": ["compare", given, "other.npz"],
        "cluster": ["cluster", given, "other.npz"],
        "identify": ["identify", given, "--library", "other.npz", "net.npz"],
        "identify --library": ["identify", "other.npz", "--library", given],
        "report": ["report", given, "other.npz", "-o", tmp_path / "r.html"],
        "index build": ["index", "build", given, "-o", tmp_path / "new.sqlite"],
        "index add": ["index", "add", "lib.sqlite", given],
    }[command]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "command",
    [
        "analyze",
        "compare",
        "cluster",
        "identify",
        "identify --library",
        "report",
        "index build",
        "index add",
    ],
)
def test_every_command_takes_every_source_kind(capsys, kinds, tmp_path, command, kind):
    given, label = kinds[kind]
    argv = command_line(command, given, tmp_path)
    json_output = [] if command == "report" else ["--json"]
    code, out, err = run_cli(capsys, *argv, "--realizations", R, *json_output)
    refused = REFUSED.get((command, kind))
    if refused:
        assert code == 1 and out == "" and err.count("\n") == 1, err
        assert refused in err and "Traceback" not in err
        return
    assert code == 0, err
    if command == "report":
        assert label in (tmp_path / "r.html").read_text()
        return
    payload = json.loads(out)
    named = {
        "analyze": lambda: [payload["source"]],
        "compare": lambda: [payload["a"]],
        "cluster": lambda: payload["models"],
        "identify": lambda: [payload["query"]],
        "identify --library": lambda: [m["path"] for m in payload["matches"]],
    }.get(command, lambda: [n["label"] for n in payload["networks"]])()
    assert label in named or any(name.endswith(label) for name in named), named


# --- The cache key covers every byte read (issue 20, item 1) ------------------------------------


def save_onnx_external(state, folder):
    """An ONNX model whose initializers lie in one external data file beside it."""
    import onnx
    from onnx import helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    initializers = [
        numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in state.items()
    ]
    out = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = helper.make_graph([], "g", [], [out], initializer=initializers)
    model = helper.make_model(graph)
    path = folder / "model.onnx"
    onnx.save(
        model, str(path), save_as_external_data=True, location="weights.data", size_threshold=0
    )
    return path


def rewrite_safetensors(path, seed):
    """The same tensor names and shapes, other values: only the bytes change."""
    from safetensors.numpy import load_file

    old = load_file(str(path))
    rng = np.random.default_rng(seed)
    save_safetensors(path, {k: rng.standard_normal(v.shape) for k, v in old.items()})


def analysis_numbers(source):
    import nnequiv

    analysis = nnequiv.analyze(source, realizations=R)
    return analysis.layer_points.tolist(), analysis.csd.tolist()


def fresh_numbers(source):
    import nnequiv

    analysis = nnequiv.analyze(source, realizations=R, cache_dir=False)
    return analysis.layer_points.tolist(), analysis.csd.tolist()


def test_a_changed_shard_changes_the_cached_result(tmp_path):
    index = shards(tmp_path / "sharded", mlp(7))
    before = analysis_numbers(index)
    assert analysis_numbers(index) == before  # a cache hit
    for shard in sorted(index.parent.glob("model-*.safetensors")):
        rewrite_safetensors(shard, seed=hash(shard.name) % 1000)
        after = analysis_numbers(index)
        assert after != before and after == fresh_numbers(index), shard.name
        before = after


def test_a_changed_shard_of_a_set_without_index_changes_the_cached_result(tmp_path):
    index = shards(tmp_path / "sharded", mlp(8))
    index.unlink()
    (found,) = discover(tmp_path / "sharded")
    before = analysis_numbers(found.source)
    last = sorted(index.parent.glob("model-*.safetensors"))[-1]
    rewrite_safetensors(last, seed=3)
    after = analysis_numbers(found.source)
    assert after != before and after == fresh_numbers(found.source)


def test_changed_onnx_external_data_changes_the_cached_result(tmp_path):
    pytest.importorskip("onnx")
    path = save_onnx_external(mlp(9), tmp_path / "onnx")
    before = analysis_numbers(path)
    data = tmp_path / "onnx" / "weights.data"
    values = np.frombuffer(data.read_bytes(), dtype=np.float32).copy()
    values[: values.size // 2] = np.random.default_rng(1).standard_normal(values.size // 2)
    data.write_bytes(values.tobytes())  # same size: only the bytes differ
    after = analysis_numbers(path)
    assert after != before and after == fresh_numbers(path)


def test_the_key_holds_the_settings_and_the_code(tmp_path, monkeypatch):
    from nnequiv import cache
    from nnequiv.settings import ConnectomeOptions, LoadOptions, Settings

    np.savez(tmp_path / "net.npz", **mlp(1))
    content, _ = cache.content_hash(tmp_path / "net.npz", LoadOptions(), ConnectomeOptions(), (), 0)
    key = cache.analysis_key(content, Settings(), LoadOptions(), ConnectomeOptions())
    assert key != cache.analysis_key(content, Settings(seed=1), LoadOptions(), ConnectomeOptions())
    monkeypatch.setattr(cache, "_CODE_DIGEST", "another reader")
    assert key != cache.analysis_key(content, Settings(), LoadOptions(), ConnectomeOptions())


# --- Discovery stays inside what was named (issue 20, items 2 and 5) ----------------------------


def test_links_to_folders_outside_are_not_followed_and_loops_are_searched_once(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    np.savez(outside / "elsewhere.npz", **mlp(1))
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    np.savez(root / "sub" / "net.npz", **mlp(2))
    os.symlink(outside, root / "to_outside")
    os.symlink("/", root / "to_slash")
    os.symlink(root, root / "sub" / "loop")
    os.symlink(root / "sub", root / "zz_inside")  # inside the root: a repeat, searched once
    found, notes = found_and_notes(root)
    assert [f.label for f in found] == ["net.npz"]
    listed = "\n".join(notes)
    assert f"to_outside: a symbolic link to a folder outside {root}" in listed
    assert "to_slash: a symbolic link to a folder outside" in listed
    assert "loop: folder already searched" in listed
    assert "zz_inside: folder already searched" in listed


def test_deep_folders_end_in_one_note_not_a_traceback(capsys, tmp_path):
    from nnequiv.discovery import MAX_DEPTH

    root = tmp_path / "deep"
    root.mkdir()
    np.savez(root / "top.npz", **mlp(1))
    folder = str(root)
    for _ in range(1200):  # one level at a time: pathlib's mkdir(parents=True) recurses
        folder = os.path.join(folder, "d")
        os.mkdir(folder)
    np.savez(os.path.join(folder, "bottom.npz"), **mlp(2))
    try:
        found, notes = found_and_notes(root)
        assert [f.label for f in found] == ["top.npz"]
        assert any(f"deeper than {MAX_DEPTH} levels" in n for n in notes)
        code, out, err = run_cli(capsys, "cluster", root, "--realizations", R)
        assert code == 0 and out.startswith("1 network") and "Traceback" not in err
    finally:  # bottom up: pytest's own clean-up (shutil.rmtree) recurses and would overflow
        os.unlink(os.path.join(folder, "bottom.npz"))
        while folder != str(root):
            os.rmdir(folder)
            folder = os.path.dirname(folder)


@pytest.fixture
def alarm():
    """Fail, not hang, should anything block on a FIFO."""
    import signal

    def expired(*_):
        raise AssertionError("blocked on a FIFO or device")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
@pytest.mark.parametrize(
    "command",
    [
        ["analyze", "{}"],
        ["compare", "{}", "net.npz"],
        ["cluster", "{}", "net.npz"],
        ["identify", "net.npz", "--library", "{}"],
        ["index", "build", "{}", "-o", "lib.sqlite"],
    ],
)
def test_fifos_and_devices_given_as_arguments_are_refused_unopened(
    capsys, tmp_path, monkeypatch, alarm, command, special
):
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "net.npz", **mlp(1))
    if special == "fifo":
        special = "pipe.npz"
        os.mkfifo(special)  # opening it would block
    argv = [part.replace("{}", special) for part in command]
    code, out, err = run_cli(capsys, *argv, "--realizations", R)
    assert code == 1 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"nnequiv: error: {special}: is a ") and "not a regular file" in err
    assert not (tmp_path / "lib.sqlite").exists()


# --- One line per failure, safe for a terminal (issue 20, item 5) -------------------------------


def test_deeply_nested_json_is_one_line_naming_the_input(capsys, tmp_path):
    folder = tmp_path / "sharded"
    index = shards(folder, mlp(3))
    index.write_text('{"weight_map": ' + "[" * 100_000 + "]" * 100_000 + "}")
    np.savez(tmp_path / "net.npz", **mlp(1))
    for argv in (["analyze", index], ["compare", index, tmp_path / "net.npz"], ["cluster", folder]):
        code, out, err = run_cli(capsys, *argv, "--realizations", R)
        assert code == 1 and out == "" and err.count("\n") == 1, err
        assert str(index) in err and "Traceback" not in err
    code, out, err = run_cli(capsys, "cluster", folder, tmp_path / "net.npz", "--keep-going")
    assert code == 0 and "1 network" in out
    assert err.startswith("nnequiv: skipped: model.safetensors.index.json: ")


def test_a_deeply_nested_cache_entry_is_recomputed(tmp_path, private_cache):
    import nnequiv
    from nnequiv.cache import analysis_from_bytes

    np.savez(tmp_path / "net.npz", **mlp(1))
    expected = nnequiv.analyze(tmp_path / "net.npz", realizations=R)
    (entry,) = private_cache.rglob("*.npz")
    buffer = io.BytesIO()
    with zipfile.ZipFile(entry) as old, zipfile.ZipFile(buffer, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename == "meta.npy":
                meta = io.BytesIO()
                np.save(meta, np.array("[" * 100_000 + "]" * 100_000))
                data = meta.getvalue()
            new.writestr(info, data)
    entry.write_bytes(buffer.getvalue())
    with pytest.raises(nnequiv.errors.FormatError, match="nested too deeply"):
        analysis_from_bytes(entry.read_bytes())
    again = nnequiv.analyze(tmp_path / "net.npz", realizations=R)
    assert again.layer_points.tolist() == expected.layer_points.tolist()


def test_control_characters_in_names_are_escaped_in_text_and_exact_in_json(capsys, tmp_path):
    folder = tmp_path / "nets"
    folder.mkdir()
    hostile = "evil\x1b[2J\x1b]0;title\x07\u202e.npz"
    np.savez(
        folder / hostile, **{"layer\x1b[31m.weight": np.random.default_rng(0).normal(size=(9, 7))}
    )
    np.savez(folder / "plain.npz", **mlp(1))
    (folder / "note\x1b[1m.txt").write_text("not a network")
    (folder / "broken\x1b[5m.npz").write_bytes(b"PK\x03\x04 not")
    code, out, err = run_cli(
        capsys, "cluster", folder, "--realizations", R, "--keep-going", "--verbose"
    )
    assert code == 0 and "\x1b" not in out + err and "\u202e" not in out + err
    assert "evil\\x1b[2J\\x1b]0;title\\x07\\u202e.npz" in out
    assert "note\\x1b[1m.txt" in err and "broken\\x1b[5m.npz" in err
    code, out, _ = run_cli(capsys, "cluster", folder, "--realizations", R, "--keep-going", "--json")
    payload = json.loads(out)
    assert hostile in payload["models"] and payload["skipped"][0]["input"] == "broken\x1b[5m.npz"
    code, out, err = run_cli(capsys, "analyze", folder / hostile, "--realizations", R)
    assert code == 0 and "\x1b" not in out and "layer\\x1b[31m.weight" in out
    code, out, err = run_cli(capsys, "analyze", folder / "broken\x1b[5m.npz")
    assert code == 1 and "\x1b" not in err and "broken\\x1b[5m.npz" in err


def test_onnx_external_data_linked_from_outside_is_not_hashed(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    from nnequiv import cache
    from nnequiv.settings import ConnectomeOptions, LoadOptions

    path = save_onnx_external(mlp(9), tmp_path / "onnx")
    secret = tmp_path / "secret.data"
    (tmp_path / "onnx" / "weights.data").rename(secret)
    os.symlink(secret, tmp_path / "onnx" / "weights.data")
    opened = []
    real = cache._file_digest
    monkeypatch.setattr(cache, "_file_digest", lambda p: opened.append(p) or real(p))
    content, _ = cache.content_hash(path, LoadOptions(), ConnectomeOptions(), (), 0)
    assert content is None and all("weights.data" not in str(p) for p in opened)
