"""Checkpoints as users have them, read as data: TorchScript and others by content whatever
the suffix, Lightning checkpoints whose hyper-parameters hold objects of foreign classes,
NumPy pickles of dicts of arrays; no class of a file is imported, no function called."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest

from nnequiv.errors import FormatError, UnsafeFileError
from nnequiv.loading import open_weights

torch = pytest.importorskip("torch")
from nets import SmallCNN  # noqa: E402

#: Every method of the foreign classes below records its call here: nothing may run.
CALLS: list[str] = []


def state_of(module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def tensors(path) -> dict[str, np.ndarray]:
    return dict(open_weights(path).tensors())


def assert_same(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(got[name], values, err_msg=name)


# ---- TorchScript and other formats by content --------------------------------------------


@pytest.mark.parametrize("name", ["model.jit", "model.torchscript", "weights"])
def test_torchscript_is_read_by_content_whatever_its_suffix(tmp_path, name):
    module = SmallCNN().eval()
    torch.jit.script(module).save(str(tmp_path / name))
    assert_same(tensors(tmp_path / name), state_of(module))


def test_formats_with_a_signature_are_read_by_content(tmp_path):
    from formats import save_h5, save_safetensors

    state = {"a.weight": np.arange(12.0).reshape(3, 4), "b.weight": np.ones((4, 2))}
    save_safetensors(state, tmp_path / "model.bin")  # a safetensors file named .bin
    np.savez(tmp_path / "arrays.dat", **state)
    (tmp_path / "arrays.dat.npz").rename(tmp_path / "arrays.dat")
    save_h5(state, tmp_path / "keras.weights")
    assert_same(tensors(tmp_path / "model.bin"), state)
    assert_same(tensors(tmp_path / "arrays.dat"), state)
    assert set(tensors(tmp_path / "keras.weights")) == {"a/weight:0", "b/weight:0"}


# ---- Lightning checkpoints: foreign classes as inert placeholders ---------------------------


def foreign_module(monkeypatch, module_name: str, *classes: type) -> None:
    """Make ``classes`` picklable under ``module_name`` (as if that package were installed)."""
    parts = module_name.split(".")
    for depth in range(1, len(parts)):
        parent = ".".join(parts[:depth])
        if parent not in sys.modules:
            monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
    module = types.ModuleType(module_name)
    for cls in classes:
        cls.__module__ = module_name
        setattr(module, cls.__name__, cls)
    monkeypatch.setitem(sys.modules, module_name, module)


class DictConfig:
    """Like omegaconf's: its own state, restored by __setstate__."""

    def __init__(self, content):
        self.content = content

    def __getstate__(self):
        return {"_content": self.content, "_metadata": Metadata("dict")}

    def __setstate__(self, state):
        CALLS.append("DictConfig.__setstate__")


class Metadata:
    def __init__(self, kind):
        self.kind = kind

    def __reduce__(self):
        return (Metadata, (self.kind,))


class AttributeDict(dict):
    """Like Lightning's hparams: a dict subclass."""

    def __setitem__(self, key, value):
        CALLS.append("AttributeDict.__setitem__")
        super().__setitem__(key, value)


def test_lightning_checkpoint_with_foreign_objects_loads_and_runs_nothing(tmp_path, monkeypatch):
    foreign_module(monkeypatch, "omegaconf.dictconfig", DictConfig, Metadata)
    foreign_module(monkeypatch, "lightning.fabric.utilities.data", AttributeDict)
    module = SmallCNN()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    module(torch.randn(1, 3, 8, 8)).sum().backward()
    optimizer.step()
    hparams = AttributeDict(cfg=DictConfig({"lr": 0.1, "layers": [3, 8]}))
    hparams["activation"] = torch.nn.functional.relu  # a function stored, never called
    checkpoint = {
        "epoch": 3,
        "state_dict": module.state_dict(),
        "optimizer_states": [optimizer.state_dict()],
        "hyper_parameters": hparams,
        "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.5)}},
        "loops": {"kth_value": np.float64(3.0), "history": np.arange(4)},
    }
    torch.save(checkpoint, tmp_path / "run.ckpt")
    torch.save(checkpoint, tmp_path / "legacy.ckpt", _use_new_zipfile_serialization=False)
    CALLS.clear()
    for name in ("run.ckpt", "legacy.ckpt"):
        assert_same(tensors(tmp_path / name), state_of(module))
    assert CALLS == []


def test_a_function_called_by_the_pickle_is_refused(tmp_path, monkeypatch):
    class Hook:
        def __reduce__(self):
            return (np.random.seed, (1,))  # a call of numpy.random code

    torch.save({"state_dict": {"w": torch.ones(3, 3)}, "hook": Hook()}, tmp_path / "hook.pt")
    with pytest.raises(UnsafeFileError, match=r"hook\.pt: refused: the pickle calls numpy"):
        open_weights(tmp_path / "hook.pt")


# ---- NumPy pickles --------------------------------------------------------------------------


def keras_port_weights() -> dict:
    rng = np.random.default_rng(0)
    return {
        "conv1": {
            "kernel": rng.standard_normal((3, 3, 2, 4)).astype(np.float32),
            "bias": rng.standard_normal(4),
        },
        "dense": [rng.standard_normal((8, 5)), np.ones(5)],
        "epochs": 3,
    }


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_npy_holding_a_pickled_dict_of_arrays(tmp_path, protocol):
    weights = keras_port_weights()
    path = tmp_path / "weights.npy"
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "|O", "fortran_order": False, "shape": ()}
        )
        pickle.dump(np.array(weights, dtype=object), handle, protocol=protocol)
    got = tensors(path)
    assert list(got) == ["conv1.kernel", "conv1.bias", "dense.0", "dense.1"]
    np.testing.assert_array_equal(got["conv1.kernel"], weights["conv1"]["kernel"])
    np.testing.assert_array_equal(got["dense.0"], weights["dense"][0])


def test_plain_npy_is_one_tensor_and_a_bad_one_one_line(tmp_path):
    array = np.arange(20.0).reshape(4, 5)
    np.save(tmp_path / "layer.npy", array)
    assert_same(tensors(tmp_path / "layer.npy"), {"layer": array})
    (tmp_path / "cut.npy").write_bytes((tmp_path / "layer.npy").read_bytes()[:-8])
    with pytest.raises(FormatError, match=r"cut\.npy: holds 152 bytes of data"):
        open_weights(tmp_path / "cut.npy")


def test_npy_pickle_that_calls_code_is_refused(tmp_path):
    path = tmp_path / "evil.npy"
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "|O", "fortran_order": False, "shape": ()}
        )
        handle.write(b"\x80\x02cos\nsystem\n(X\x05\x00\x00\x00touch" + b"tR.")
    with pytest.raises(UnsafeFileError, match=r"evil\.npy: refused: the pickle calls os\.system"):
        open_weights(path)


# ---- folders: the same readers decide what discovery finds ----------------------------------


def test_discovery_finds_new_formats_and_skips_what_is_not_a_network(tmp_path):
    from nnequiv.discovery import discover

    module = SmallCNN()
    torch.jit.script(module).save(str(tmp_path / "model.jit"))
    torch.save(module, tmp_path / "whole.pt")  # a whole model: read through placeholders
    optimizer = torch.optim.Adam(module.parameters())
    module(torch.randn(1, 3, 8, 8)).sum().backward()
    optimizer.step()
    torch.save(optimizer.state_dict(), tmp_path / "optimizer.pt")
    np.save(tmp_path / "images.npy", np.zeros((10, 8, 8), np.float32))
    np.save(tmp_path / "weights.npy", keras_port_weights(), allow_pickle=True)
    notes: list[str] = []
    found = discover([tmp_path], notes=notes.append)
    assert sorted(f.label for f in found) == ["model.jit", "weights.npy", "whole.pt"]
    assert any("optimizer.pt" in n and "optimizer state" in n for n in notes), notes
    assert any("images.npy" in n and "single array" in n for n in notes), notes
