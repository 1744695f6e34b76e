"""Each stored function is counted once: optimizer states left out in every format, tied
weights (shared storage, or identical bytes under a documented or declared tie) counted once,
a layer zeroed by its folded BatchNorm skipped as its exported copy is, and every omission
listed with its reason."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from nnequiv.layers import layer_matrices
from nnequiv.loading import OPTIMIZER_STATE
from nnequiv.spectra import ZERO_LAYER, network_spectra

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")


def kept_and_skipped(source):
    result = layer_matrices(source)
    return [layer.name for layer in result.layers], {s.name: s.reason for s in result.skipped}


def spectra_names(source):
    result = network_spectra(source)
    return [layer.name for layer in result.layers], {s.name: s.reason for s in result.skipped}


# ---- optimizer states ------------------------------------------------------------------


def test_keras_optimizer_variables_are_skipped_in_keras_and_h5(tmp_path):
    rng = np.random.default_rng(0)
    kernel, moment = rng.standard_normal((8, 5)), rng.standard_normal((8, 5))
    weights = tmp_path / "model.weights.h5"
    with h5py.File(weights, "w") as handle:
        handle["layers/dense/vars/0"] = kernel
        handle["optimizer/vars/0"] = np.array(3.0)
        handle["optimizer/vars/1"] = moment
        handle["optimizer/vars/2"] = moment * 2
    with zipfile.ZipFile(tmp_path / "trained.keras", "w") as archive:
        archive.writestr("config.json", "{}")
        archive.write(weights, "model.weights.h5")
    with h5py.File(tmp_path / "trained.h5", "w") as handle:
        handle["model_weights/dense/dense/kernel:0"] = kernel
        handle["optimizer_weights/Adam/dense/kernel/m:0"] = moment
    for name, layer in [("trained.keras", "layers/dense/vars/0"), ("trained.h5", None)]:
        kept, skipped = kept_and_skipped(tmp_path / name)
        assert kept == [layer or "model_weights/dense/dense/kernel:0"], name
        optimizer = [k for k in skipped if k.startswith("optimizer")]
        assert optimizer and all(skipped[k] == OPTIMIZER_STATE for k in optimizer), skipped


def test_pytorch_optimizer_state_beside_the_weights_is_skipped(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Linear(4, 3))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 6)).sum().backward()
    optimizer.step()
    torch.save({"encoder": model.state_dict(), "adam": optimizer.state_dict()}, tmp_path / "c.pt")
    kept, skipped = kept_and_skipped(tmp_path / "c.pt")
    assert kept == ["encoder.0.weight", "encoder.1.weight"]
    assert skipped["adam.state.0.exp_avg"] == OPTIMIZER_STATE


# ---- tied weights ----------------------------------------------------------------------


class TinyLM(torch.nn.Module):
    """GPT-2's tie: the output layer is the token embedding."""

    def __init__(self):
        super().__init__()
        self.wte = torch.nn.Embedding(11, 6)
        self.mlp = torch.nn.Linear(6, 6)
        self.lm_head = torch.nn.Linear(6, 11, bias=False)
        self.lm_head.weight = self.wte.weight


@pytest.mark.parametrize("how", ["zip", "legacy", "module", "torchscript"])
def test_tensors_sharing_storage_count_once(tmp_path, how):
    model = TinyLM()
    path = tmp_path / "lm.pt"
    if how == "zip":
        torch.save(model.state_dict(), path)
    elif how == "legacy":
        torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
    elif how == "torchscript":
        torch.jit.script(model).save(str(path))
    source = model if how == "module" else path
    kept, skipped = kept_and_skipped(source)
    assert kept == ["wte.weight", "mlp.weight"]
    assert "same storage as 'wte.weight'" in skipped["lm_head.weight"]


def test_equal_bytes_alone_never_merge_layers_but_documented_ties_do(tmp_path):
    rng = np.random.default_rng(1)
    embedding = rng.standard_normal((11, 6))
    zeros = {"a.weight": np.full((5, 5), 0.5), "b.weight": np.full((5, 5), 0.5)}
    kept, _ = kept_and_skipped(zeros)
    assert kept == ["a.weight", "b.weight"]  # identical layers, not tied: two layers
    np.savez(tmp_path / "tied.npz", **{"wte.weight": embedding, "lm_head.weight": embedding})
    kept, skipped = kept_and_skipped(tmp_path / "tied.npz")
    assert kept == ["wte.weight"]
    assert "identical to 'wte.weight', tied (a documented tie)" in skipped["lm_head.weight"]
    np.savez(tmp_path / "untied.npz", **{"wte.weight": embedding, "lm_head.weight": -embedding})
    assert kept_and_skipped(tmp_path / "untied.npz")[0] == ["wte.weight", "lm_head.weight"]


def test_config_json_tie_merges_identical_embeddings(tmp_path):
    from formats import save_safetensors

    embedding = np.random.default_rng(2).standard_normal((11, 6)).astype(np.float32)
    state = {"body.embedding.weight": embedding, "body.proj.weight": embedding[:6].copy()}
    state["out_head.weight"] = embedding.copy()
    folder = tmp_path / "model"
    folder.mkdir()
    save_safetensors(state, folder / "model.safetensors")
    assert len(kept_and_skipped(folder)[0]) == 3  # no config: three layers
    (folder / "config.json").write_text(json.dumps({"tie_word_embeddings": True}))
    for source in (folder, folder / "model.safetensors"):
        kept, skipped = kept_and_skipped(source)
        assert kept == ["body.embedding.weight", "body.proj.weight"]
        assert "tie_word_embeddings in config.json" in skipped["out_head.weight"]


# ---- a layer zeroed by its BatchNorm, as exporters fold it --------------------------------


def block_state(zero_gamma: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    gamma = np.zeros(6) if zero_gamma else rng.uniform(0.5, 1.5, 6)
    return {
        "block.conv1.weight": rng.standard_normal((6, 3, 3, 3)),
        "block.bn1.weight": rng.uniform(0.5, 1.5, 6),
        "block.bn1.bias": rng.standard_normal(6),
        "block.bn1.running_mean": rng.standard_normal(6),
        "block.bn1.running_var": rng.uniform(0.5, 1.5, 6),
        "block.conv2.weight": rng.standard_normal((6, 6, 3, 3)),
        "block.bn2.weight": gamma,
        "block.bn2.bias": rng.standard_normal(6),
        "block.bn2.running_mean": rng.standard_normal(6),
        "block.bn2.running_var": rng.uniform(0.5, 1.5, 6),
        "fc.weight": rng.standard_normal((4, 6)),
    }


def folded(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The weights as an exporter writes them: each BatchNorm folded into its convolution."""
    out = {}
    for conv, norm in [("block.conv1", "block.bn1"), ("block.conv2", "block.bn2")]:
        scale = state[f"{norm}.weight"] / np.sqrt(state[f"{norm}.running_var"] + 1e-5)
        out[f"{conv}.weight"] = state[f"{conv}.weight"] * scale[:, None, None, None]
    out["fc.weight"] = state["fc.weight"]
    return out


def test_layer_zeroed_by_its_batchnorm_is_skipped_as_in_the_exported_file(tmp_path):
    state = block_state(zero_gamma=True)
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "net.pt")
    np.savez(tmp_path / "exported.npz", **folded(state))
    original, skipped = spectra_names(tmp_path / "net.pt")
    exported, exported_skipped = spectra_names(tmp_path / "exported.npz")
    assert original == exported == ["block.conv1.weight", "fc.weight"]
    assert "BatchNorm 'block.bn2' (all-zero scale)" in skipped["block.conv2.weight"]
    assert exported_skipped["block.conv2.weight"] == ZERO_LAYER
    # a norm with a non-zero scale changes nothing
    assert kept_and_skipped(block_state(zero_gamma=False))[0] == [
        "block.conv1.weight",
        "block.conv2.weight",
        "fc.weight",
    ]


def test_zero_scale_of_a_norm_elsewhere_zeroes_nothing():
    state = block_state(zero_gamma=True)
    state["other.bn2.weight"] = state.pop("block.bn2.weight")  # not a sibling of the conv
    kept, _ = kept_and_skipped(state)
    assert "block.conv2.weight" in kept
