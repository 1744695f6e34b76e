"""discover(): folders as users have them. Every rule on a folder built here, then the shared
zoo and connectomes."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _helpers import CONNECTOMES, ZOO, hub_cache, random_mlp, require_shared, save_safetensors

from nnequiv.discovery import CONNECTOME, NETWORK, discover, hub_weight_files
from nnequiv.errors import FormatError, InputError, UnsafeFileError
from nnequiv.loading import ShardSet, open_weights
from nnequiv.spectra import layer_spectra

torch = pytest.importorskip("torch")


def run(paths, **kwargs):
    """discover() and the notes it gave."""
    notes = []
    found = discover(paths, notes=notes.append, **kwargs)
    return found, notes


def noted(notes, name):
    """The notes about one file name."""
    return [n for n in notes if os.path.basename(n.split(":")[0].removeprefix("skipped ")) == name]


def save_npz(path, state):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **state)
    return path


def torch_state(state):
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in state.items()}


def spectra(source):
    return {s.name: s.eigenvalues for s in layer_spectra(source)}


def shard(state, folder, fmt):
    """Write ``state`` in two shards with a Hugging Face index (fmt: safetensors or bin)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(state)
    stem = "model" if fmt == "safetensors" else "pytorch_model"
    weight_map = {}
    for i, part in enumerate([names[: len(names) // 2], names[len(names) // 2 :]]):
        name = f"{stem}-{i + 1:05d}-of-00002.{fmt}"
        if fmt == "safetensors":
            save_safetensors(folder / name, {k: state[k] for k in part})
        else:
            torch.save(torch_state({k: state[k] for k in part}), folder / name)
        weight_map.update(dict.fromkeys(part, name))
    index = folder / f"{stem}.{fmt}.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


class Foreign:
    """An object whose pickle calls a function: loading it would run foreign code."""

    def __reduce__(self):
        return (print, ("loaded",))


@pytest.fixture
def state():
    return random_mlp([12, 10, 8, 4], seed=5)


# --- folders and files that are not networks ---------------------------------------------------


def test_nested_folders_found_and_non_networks_skipped_with_one_note_each(tmp_path, state):
    save_npz(tmp_path / "top.npz", state)
    save_npz(tmp_path / "a" / "b" / "deep.npz", state)
    save_safetensors(tmp_path / "a" / "net.safetensors", state)
    (tmp_path / "MANIFEST.csv").write_text("file,family,license\ntop.npz,mlp,MIT\n")
    (tmp_path / "README.md").write_text("# my networks\n")
    (tmp_path / "a" / "config.json").write_text("{}")
    found, notes = run([tmp_path])
    assert [f.label for f in found] == ["top.npz", "net.safetensors", "deep.npz"]
    assert {f.kind for f in found} == {NETWORK}
    assert found[2].source == str(tmp_path / "a" / "b" / "deep.npz")
    assert len(notes) == 3
    assert "manifest" in noted(notes, "MANIFEST.csv")[0]
    assert "not a network file (.md)" in noted(notes, "README.md")[0]
    assert len(noted(notes, "config.json")) == 1


@pytest.mark.slow
def test_optimizer_states_and_pickles_without_tensors_skipped_checkpoints_found(tmp_path, state):
    model = torch.nn.Linear(6, 4)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(3, 6)).sum().backward()
    optimizer.step()
    torch.save(optimizer.state_dict(), tmp_path / "optimizer.pt")
    torch.save({"lr": 0.1, "epochs": [1, 2]}, tmp_path / "lr_schedule.pt")
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3},
        tmp_path / "checkpoint.pth",
    )
    torch.save({"optimizer": optimizer.state_dict(), "epoch": 3}, tmp_path / "opt_only.ckpt")
    legacy = {"_use_new_zipfile_serialization": False}
    torch.save(optimizer.state_dict(), tmp_path / "legacy_optimizer.pt", **legacy)
    torch.save(model.state_dict(), tmp_path / "legacy_model.pt", **legacy)
    with open(tmp_path / "encoder.pkl", "wb") as handle:
        pickle.dump({"classes": ["cat", "dog"]}, handle)
    found, notes = run([tmp_path])
    assert [f.label for f in found] == ["checkpoint.pth", "legacy_model.pt"]
    for name in ("optimizer.pt", "opt_only.ckpt", "legacy_optimizer.pt"):
        assert "optimizer state" in noted(notes, name)[0]
    assert "no tensor" in noted(notes, "lr_schedule.pt")[0]
    assert "no tensor" in noted(notes, "encoder.pkl")[0]
    assert len(notes) == 5


def test_hdf5_data_set_skipped_keras_weights_found(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "train.h5", "w") as handle:
        handle["X"] = np.zeros((30, 8), np.float32)
        handle["y"] = np.zeros(30, np.int64)
    with h5py.File(tmp_path / "model.h5", "w") as handle:
        handle["model_weights/dense/dense/kernel:0"] = np.ones((8, 4), np.float32)
        handle["model_weights/dense/dense/bias:0"] = np.zeros(4, np.float32)
    found, notes = run([tmp_path])
    assert [f.label for f in found] == ["model.h5"]
    assert "a data set ('X' (30, 8) with labels 'y' (30,))" in noted(notes, "train.h5")[0]


@pytest.mark.parametrize(
    "arrays",
    [
        {"X": np.zeros((50, 8)), "y": np.arange(50) % 3},
        {
            "x_train": np.zeros((40, 4, 4)),
            "y_train": np.zeros(40, np.int64),
            "x_test": np.zeros((10, 4, 4)),
            "y_test": np.zeros(10, np.int64),
        },
        {"train_images": np.zeros((30, 28, 28), np.uint8), "train_labels": np.zeros(30)},
        {"data": np.ones((20, 5)), "target": np.ones((20, 1))},
    ],
    ids=["X-y", "keras-splits", "images-labels", "data-target"],
)
def test_data_sets_skipped(tmp_path, arrays):
    save_npz(tmp_path / "data.npz", arrays)
    save_npz(tmp_path / "net.npz", random_mlp([5, 4, 3]))
    found, notes = run([tmp_path])
    assert [f.label for f in found] == ["net.npz"]
    (note,) = notes
    assert "data.npz" in note and "a data set" in note


def test_arrays_with_no_layer_skipped_but_networks_with_odd_names_found(tmp_path):
    save_npz(tmp_path / "vectors.npz", {"mean": np.zeros(10), "counts": np.ones((4, 4), np.int64)})
    save_npz(tmp_path / "y_only.npz", {"y": np.zeros((6, 6)), "w": np.ones((6, 3))})
    save_npz(tmp_path / "unmatched.npz", {"x": np.zeros((6, 6)), "y": np.zeros(5)})
    found, notes = run([tmp_path])
    assert [f.label for f in found] == ["unmatched.npz", "y_only.npz"]
    (note,) = notes
    assert "vectors.npz" in note and "no array that could be a layer" in note


def test_corrupt_and_unsafe_network_files_are_found_for_the_analysis_to_refuse(tmp_path, state):
    (tmp_path / "garbage.pt").write_bytes(b"not a pickle at all" * 10)
    good = save_safetensors(tmp_path / "good.safetensors", state).read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(good[: len(good) // 2])
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 broken")
    torch.save({"model": Foreign(), "w": torch.ones(3, 3)}, tmp_path / "unsafe.pt")
    found, notes = run([tmp_path])
    assert notes == []
    assert sorted(f.label for f in found) == [
        "broken.npz",
        "garbage.pt",
        "good.safetensors",
        "truncated.safetensors",
        "unsafe.pt",
    ]
    with pytest.raises(UnsafeFileError, match="unsafe.pt"):
        spectra(tmp_path / "unsafe.pt")
    with pytest.raises(FormatError, match="truncated.safetensors"):
        spectra(tmp_path / "truncated.safetensors")


def test_fifo_and_symlink_loop_noted_never_opened(tmp_path, state):
    save_npz(tmp_path / "net.npz", state)
    os.mkfifo(tmp_path / "pipe.npz")  # opening it would block
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path, tmp_path / "sub" / "loop")
    os.symlink(tmp_path / "missing.pt", tmp_path / "dangling.pt")
    found, notes = run([tmp_path])
    assert [f.label for f in found] == ["net.npz"]
    assert "FIFO" in noted(notes, "pipe.npz")[0]
    assert "loop" in noted(notes, "loop")[0]
    assert "broken symbolic link" in noted(notes, "dangling.pt")[0]
    assert len(notes) == 3


def test_hidden_entries_noted_and_not_searched(tmp_path, state):
    save_npz(tmp_path / ".git" / "objects" / "net.npz", state)
    save_npz(tmp_path / "net.npz", state)
    found, notes = run([tmp_path])
    assert [f.label for f in found] == ["net.npz"]
    assert notes == [f"skipped {tmp_path / '.git'}: hidden, not searched"]


# --- several files, one network -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_sharded_checkpoint_with_its_index_is_one_network(tmp_path, state, fmt):
    index = shard(state, tmp_path / "llm", fmt)
    save_npz(tmp_path / "other.npz", state)
    found, notes = run([tmp_path])
    assert notes == []
    assert [f.label for f in found] == ["other.npz", index.name]
    (network,) = [f for f in found if f.path == index]
    assert network.source == str(index) and len(network.files) == 3
    assert spectra(network.source).keys() == spectra(state).keys()
    for name, values in spectra(state).items():
        np.testing.assert_allclose(spectra(network.source)[name], values, rtol=1e-5)


def test_index_path_given_directly_and_a_bad_index_refused(tmp_path, state):
    index = shard(state, tmp_path, "safetensors")
    (found,), notes = run([index])
    assert found.path == index and notes == []
    arrays = dict(open_weights(index).tensors())
    assert arrays.keys() == state.keys()
    escape = tmp_path / "escape.safetensors.index.json"
    escape.write_text(json.dumps({"weight_map": {"w": "../../etc/passwd.safetensors"}}))
    with pytest.raises(FormatError, match="not a file name in the index's folder"):
        open_weights(escape)
    listed = json.loads(index.read_text())
    listed["weight_map"]["ghost.weight"] = "model-00001-of-00002.safetensors"
    index.write_text(json.dumps(listed))
    with pytest.raises(FormatError, match="'ghost.weight' is listed in the index but missing"):
        open_weights(index)


def test_shards_given_one_by_one_are_one_network(tmp_path, state):
    shard(state, tmp_path, "safetensors")
    shards = sorted(tmp_path.glob("*.safetensors"))
    (found,), _ = run(shards)
    assert isinstance(found.source, ShardSet) and found.label == "model-*-of-00002.safetensors"
    assert dict(open_weights(found.source).tensors()).keys() == state.keys()
    (found,), _ = run(sorted(tmp_path.iterdir()))  # index given too: the index wins
    assert found.path.name == "model.safetensors.index.json"


def test_incomplete_shard_set_found_then_refused(tmp_path, state):
    for k in (1, 3):
        save_safetensors(tmp_path / f"model-{k:05d}-of-00003.safetensors", state)
    (found,), _ = run([tmp_path])
    with pytest.raises(InputError, match="shard 2 of 3 is missing"):
        open_weights(found.source)


def test_same_model_in_two_formats_is_one_network(tmp_path, state):
    save_safetensors(tmp_path / "model.safetensors", state)
    torch.save(torch_state(state), tmp_path / "pytorch_model.bin")
    found, notes = run([tmp_path])
    assert [f.label for f in found] == ["model.safetensors"]
    assert "same model as model.safetensors" in noted(notes, "pytorch_model.bin")[0]


# --- Hugging Face -------------------------------------------------------------------------------


def test_the_fake_cache_is_one_huggingface_hub_reads(tmp_path, state):
    hub = pytest.importorskip("huggingface_hub")
    hub_cache(tmp_path / "hub", state, older_snapshot=True)
    info = hub.scan_cache_dir(tmp_path / "hub")
    (repo,) = info.repos
    assert repo.repo_id == "acme/tiny-mlp" and repo.repo_type == "model"
    assert {r.commit_hash: r.refs for r in repo.revisions}["a" * 40] == frozenset({"main"})


def test_hugging_face_cache_folder_read_at_refs_main(tmp_path, state):
    folder = hub_cache(tmp_path / "hub", state, older_snapshot=True)
    (tmp_path / "hub" / "datasets--acme--corpus").mkdir()
    for given in ([folder], [tmp_path / "hub"]):
        found, notes = run(given)
        assert [f.label for f in found] == ["acme/tiny-mlp"]
        assert found[0].source.endswith(os.path.join("a" * 40, "model.safetensors"))
        assert spectra(found[0].source).keys() == spectra(state).keys()
    assert any("datasets--acme--corpus" in n and "data set or space" in n for n in notes)


def test_networks_keep_their_discovery_labels_in_a_comparison(tmp_path, state):
    """A hub network is named by its id, not by its weight file's name."""
    from nnequiv import cluster

    folder = hub_cache(tmp_path / "hub", state, older_snapshot=True)
    other = save_npz(tmp_path / "other.npz", random_mlp([12, 10, 8, 4], seed=6))
    result = cluster([folder, other], realizations=3)
    assert result.models == ["acme/tiny-mlp", "other.npz"]
    assert os.path.isabs(result.paths[0]) and result.paths[1] == str(other.resolve())


def test_hub_id_resolved_offline_from_the_local_cache(tmp_path, state, monkeypatch):
    hub_cache(tmp_path / "hub", state, older_snapshot=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    try:
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    except ImportError:
        pass
    monkeypatch.chdir(tmp_path)
    (found,), _ = run(["acme/tiny-mlp"])
    assert found.label == "acme/tiny-mlp" and found.kind == NETWORK
    with pytest.raises(InputError, match="HF_HUB_OFFLINE is set"):
        discover(["acme/absent"])
    with pytest.raises(InputError, match="runs/model.pt: no such file"):
        discover(["runs/model.pt"])  # a missing file, not a hub id
    (tmp_path / "data").mkdir()
    with pytest.raises(InputError, match="data/nets: no such file"):
        discover(["data/nets"])  # "data" is a local folder: a typo, not a hub id


def test_hub_id_in_a_new_process_as_a_user_runs_it(tmp_path, state):
    hub_cache(tmp_path / "hub", state, older_snapshot=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    code = textwrap.dedent(
        """
        from nnequiv.discovery import discover
        print([(f.label, f.kind) for f in discover(["acme/tiny-mlp"])])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[('acme/tiny-mlp', 'network')]"


def test_hub_weight_files_prefer_safetensors_and_take_the_shards_of_the_index():
    files = [
        "config.json",
        "pytorch_model.bin",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "onnx/model.onnx",
    ]
    assert hub_weight_files(files) == files[2:5]
    assert hub_weight_files(["README.md", "pytorch_model.bin"]) == ["pytorch_model.bin"]
    assert hub_weight_files(["README.md", "tiny.Q8_0.gguf"]) == ["tiny.Q8_0.gguf"]
    with pytest.raises(InputError, match="2 weight files"):
        hub_weight_files(["tiny.Q4_K_M.gguf", "tiny.Q8_0.gguf"])


# --- labels, connectomes, objects, errors ---------------------------------------------------


def test_labels_are_the_shortest_distinguishing_paths(tmp_path, state):
    save_safetensors(tmp_path / "a" / "model.safetensors", state)
    save_safetensors(tmp_path / "b" / "model.safetensors", state)
    save_npz(tmp_path / "c" / "x" / "net.npz", state)
    save_npz(tmp_path / "d" / "x" / "net.npz", state)
    save_npz(tmp_path / "d" / "solo.npz", state)
    found, _ = run([tmp_path])
    assert sorted(f.label for f in found) == [
        "a/model.safetensors",
        "b/model.safetensors",
        "c/x/net.npz",
        "d/x/net.npz",
        "solo.npz",
    ]
    found, notes = run([tmp_path / "a", tmp_path / "a" / "model.safetensors"])
    assert len(found) == 1 and "already found" in notes[0]


def write_adjacency(path, matrix):
    names = [f"n{i}" for i in range(len(matrix))]
    rows = [",".join(["", *names])]
    rows += [",".join([names[i], *map(str, row)]) for i, row in enumerate(matrix)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_connectome_csvs_only_where_asked_or_parsing_as_one_never_a_manifest(tmp_path):
    rng = np.random.default_rng(0)
    write_adjacency(tmp_path / "worm.csv", rng.integers(0, 5, (6, 6)))
    bad = rng.integers(0, 5, (6, 6))
    bad[2, 3] = -1
    write_adjacency(tmp_path / "negative.csv", bad)
    (tmp_path / "edges.csv").write_text("pre,post,weight\nAVA,AVB,3\nAVB,PVC,1\nPVC,AVA,2\n")
    (tmp_path / "MANIFEST.csv").write_text("file,source,n\nworm.csv,white 1986,6\n")
    found, notes = run([tmp_path])
    assert [(f.label, f.kind) for f in found] == [
        ("edges.csv", CONNECTOME),
        ("worm.csv", CONNECTOME),
    ]
    assert "negative entries" in noted(notes, "negative.csv")[0]
    assert "manifest" in noted(notes, "MANIFEST.csv")[0]
    found, notes = run([tmp_path], connectomes=True)
    assert [f.label for f in found] == ["edges.csv", "negative.csv", "worm.csv"]
    assert len(notes) == 1 and "MANIFEST.csv" in notes[0]


def test_objects_pass_through_and_missing_or_empty_input_refused(tmp_path, state):
    (found,), _ = run([state])
    assert found.label == "<dict>" and found.source is state and found.path is None
    sequential = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    (found,), _ = run(sequential)  # a module is one network, though it is iterable
    assert found.source is sequential and found.label == "<Sequential>"
    save_npz(tmp_path / "nets" / "a.npz", state)
    assert [f.label for f in discover(p for p in [tmp_path / "nets" / "a.npz"])] == ["a.npz"]
    with pytest.raises(InputError, match="no such file or directory"):
        discover([tmp_path / "absent.npz"])
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no network found .1 skipped"):
        discover([tmp_path / "text"])


# --- the shared data --------------------------------------------------------------------------


def test_shared_zoo_holds_29_networks_and_two_notes():
    zoo = require_shared(ZOO)
    found, notes = run([zoo])
    assert len(found) == 29 and {f.kind for f in found} == {NETWORK}
    assert len({f.label for f in found}) == 29
    assert sorted(os.path.basename(n.split(":")[0]) for n in notes) == ["MANIFEST.csv", "README.md"]


def test_shared_connectomes_are_17():
    folder = require_shared(CONNECTOMES)
    found, notes = run([folder], connectomes=True)
    assert len(found) == 17 and {f.kind for f in found} == {CONNECTOME}
    assert len(notes) == 2


def test_folders_that_are_one_network_are_taken_whole(tmp_path):
    """A TensorFlow SavedModel, a TensorFlow checkpoint folder and a Core ML package are each
    one network, labelled by their folder; nothing inside them is searched or skipped."""
    from formats import write_bundle, write_mlpackage

    rng = np.random.default_rng(6)
    weights = {"dense/kernel": rng.standard_normal((6, 4)).astype(np.float32)}
    saved = tmp_path / "models" / "saved"
    write_bundle(saved / "variables" / "variables", weights)
    (saved / "saved_model.pb").write_bytes(b"\x0a\x00")
    (saved / "assets").mkdir()
    (saved / "assets" / "vocab.txt").write_text("a\nb\n")
    checkpoint = tmp_path / "models" / "MTT_musicnn"
    write_bundle(checkpoint / "x", weights)
    for suffix in (".index", ".data-00000-of-00001"):  # saved under the prefix 'MTT_musicnn/'
        (checkpoint / f"x{suffix}").rename(checkpoint / suffix)
    (checkpoint / "checkpoint").write_text('model_checkpoint_path: "/home/someone/run/"\n')
    (checkpoint / "train_log.tsv").write_text("epoch\tloss\n1\t0.5\n")
    write_mlpackage(tmp_path / "models" / "Net.mlpackage", {"w": rng.standard_normal((5, 4))},
                    np.ones(5))  # fmt: skip
    save_npz(tmp_path / "models" / "other.npz", random_mlp([8, 6, 4]))
    found, notes = run([tmp_path])
    assert [(f.label, f.kind) for f in found] == [
        ("other.npz", NETWORK),
        ("MTT_musicnn", NETWORK),
        ("Net.mlpackage", NETWORK),
        ("saved", NETWORK),
    ]
    assert notes == []
    for f in found[1:]:
        assert f.source == str(f.path) and f.path.is_dir()
        assert dict(open_weights(f.source).tensors())
    for folder in (saved, checkpoint, tmp_path / "models" / "Net.mlpackage"):
        assert [f.label for f in run([folder])[0]] == [folder.name]


def test_a_checkpoint_index_is_a_network_only_beside_its_data(tmp_path):
    from formats import write_bundle

    write_bundle(tmp_path / "model.ckpt-500", {"dense/kernel": np.ones((4, 3), np.float32)})
    (tmp_path / "faiss.index").write_bytes(b"IxF2" + bytes(60))  # another tool's index
    found, notes = run([tmp_path / "model.ckpt-500.index", tmp_path / "faiss.index"])
    assert [f.label for f in found] == ["model.ckpt-500.index"]
    assert "without TensorFlow data shards" in noted(notes, "faiss.index")[0]
