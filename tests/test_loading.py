"""Loading weights from every format: same spectra everywhere, bad input refused clearly."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import numpy as np
import pytest

from nnequiv.errors import (
    FormatError,
    InputError,
    InvalidWeightsError,
    NNEquivError,
    NoLayersError,
    UnsafeFileError,
)
from nnequiv.loading import open_weights
from nnequiv.spectra import layer_spectra

torch = pytest.importorskip("torch")
from nets import EXAMPLE_INPUTS, all_nets  # noqa: E402


def spectra_by_name(source, **kwargs):
    return {s.name: s.eigenvalues for s in layer_spectra(source, **kwargs)}


def to_numpy_state(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


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


@pytest.mark.parametrize("net_name", ["cnn", "resblock", "lstm", "transformer"])
def test_spectra_agree_across_formats(tmp_path, net_name):
    module = all_nets()[net_name].eval()
    state = to_numpy_state(module)
    reference = spectra_by_name(state)
    assert reference, "the test network must have layers"

    torch.save(module.state_dict(), tmp_path / "m.pt")
    torch.save({"epoch": 3, "state_dict": module.state_dict()}, tmp_path / "ckpt.pth")
    torch.jit.trace(module, EXAMPLE_INPUTS[net_name](), check_trace=False).save(
        str(tmp_path / "m_script.pt")
    )
    np.savez(tmp_path / "m.npz", **state)
    save_safetensors(state, tmp_path / "m.safetensors")
    save_sharded(state, tmp_path / "sharded")
    save_onnx(state, tmp_path / "m.onnx")
    save_h5(state, tmp_path / "m.h5")
    save_keras(state, tmp_path / "m.keras", tmp_path)

    sources = {
        "module": module,
        "pt": tmp_path / "m.pt",
        "checkpoint": tmp_path / "ckpt.pth",
        "torchscript": tmp_path / "m_script.pt",
        "npz": tmp_path / "m.npz",
        "safetensors": tmp_path / "m.safetensors",
        "shards": tmp_path / "sharded",
        "onnx": tmp_path / "m.onnx",
        "h5": tmp_path / "m.h5",
        "keras": tmp_path / "m.keras",
    }
    for label, source in sources.items():
        got = spectra_by_name(source)
        if label in {"h5", "keras"}:  # Keras names: '/' separators, ':0' suffix
            got = {k.removesuffix(":0").replace("/", "."): v for k, v in got.items()}
        if label == "torchscript":  # tracing keeps parameters and buffers under their names
            got = {k: v for k, v in got.items() if k in reference}
        assert set(got) == set(reference), label
        for name, values in reference.items():
            np.testing.assert_allclose(got[name], values, rtol=1e-10, err_msg=f"{label}:{name}")


def test_oihw_and_hwio_give_the_same_spectra_once_layout_is_known():
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((6, 4, 3, 3))  # out x in x kh x kw
    a = spectra_by_name({"k": kernel}, layout="out-first")["k"]
    b = spectra_by_name({"k": kernel.transpose(2, 3, 1, 0)}, layout="out-last")["k"]
    np.testing.assert_allclose(a, b, rtol=1e-12)
    # and the layout is inferred from the kernel dims of bare arrays
    np.testing.assert_allclose(
        spectra_by_name({"k": kernel.transpose(2, 3, 1, 0)})["k"], a, rtol=1e-12
    )
    # a wrong layout gives a different matrix (6 x 36 versus 3 x 72 ... ) and spectrum
    wrong = spectra_by_name({"k": kernel.transpose(2, 3, 1, 0)}, layout="out-first")["k"]
    assert wrong.shape != a.shape or not np.allclose(wrong, a)


def test_module_and_dict_of_tensors(mlp_state):
    tensors = {k: torch.from_numpy(v) for k, v in mlp_state.items()}
    np.testing.assert_allclose(
        spectra_by_name(tensors)["fc0.weight"], spectra_by_name(mlp_state)["fc0.weight"], rtol=1e-12
    )


def test_bfloat16_safetensors_are_read(tmp_path):
    from safetensors.torch import save_file

    weight = torch.randn(8, 12).to(torch.bfloat16)
    save_file({"w": weight}, str(tmp_path / "b.safetensors"))
    expected = np.linalg.svd(weight.float().numpy().astype(np.float64), compute_uv=False) ** 2
    np.testing.assert_allclose(
        spectra_by_name(tmp_path / "b.safetensors")["w"], np.sort(expected), rtol=1e-9
    )


# ---- bad input -------------------------------------------------------------------------


class Foreign:
    """A class a safe loader must not instantiate."""

    def __init__(self):
        self.weight = torch.randn(4, 4)


def test_missing_unknown_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        layer_spectra(tmp_path / "absent.pt")
    (tmp_path / "model.xyz").write_text("hello")
    with pytest.raises(FormatError, match=r"model\.xyz.*unknown weight format"):
        layer_spectra(tmp_path / "model.xyz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        layer_spectra(tmp_path / "empty.npz")
    with pytest.raises(InputError, match="directory holds no"):
        layer_spectra(tmp_path)
    with pytest.raises(InputError, match="cannot read"):
        layer_spectra(42)
    with pytest.raises(InputError, match="layout"):
        layer_spectra({"w": np.ones((3, 3))}, layout="sideways")


@pytest.mark.parametrize("suffix", [".npz", ".safetensors", ".pt", ".onnx", ".h5"])
def test_truncated_files_raise_format_errors(tmp_path, suffix, mlp_state):
    full = tmp_path / f"full{suffix}"
    state = {k: v.astype(np.float32) for k, v in mlp_state.items()}
    {
        ".npz": lambda: np.savez(full, **state),
        ".safetensors": lambda: save_safetensors(state, full),
        ".pt": lambda: torch.save({k: torch.from_numpy(v) for k, v in state.items()}, full),
        ".onnx": lambda: save_onnx(state, full),
        ".h5": lambda: save_h5(state, full),
    }[suffix]()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(FormatError, match=f"cut{suffix}"):
        layer_spectra(cut)


def test_pickle_needing_foreign_code_is_refused(tmp_path):
    torch.save({"model": Foreign()}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeFileError, match=r"evil\.pt.*refused"):
        layer_spectra(tmp_path / "evil.pt")
    with open(tmp_path / "evil.pkl", "wb") as handle:
        pickle.dump(Foreign(), handle)
    with pytest.raises(UnsafeFileError):
        layer_spectra(tmp_path / "evil.pkl")
    np.savez(tmp_path / "objects.npz", w=np.array([Foreign()], dtype=object))
    with pytest.raises(UnsafeFileError, match="pickled object"):
        layer_spectra(tmp_path / "objects.npz")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_name_the_tensor(tmp_path, bad, mlp_state):
    mlp_state["fc1.weight"][2, 3] = bad
    np.savez(tmp_path / "bad.npz", **mlp_state)
    with pytest.raises(InvalidWeightsError, match=r"bad\.npz: tensor 'fc1\.weight' holds"):
        layer_spectra(tmp_path / "bad.npz")


def test_no_eligible_layer(tmp_path):
    np.savez(tmp_path / "biases.npz", b=np.ones(5), w=np.ones((1, 9)), i=np.ones((4, 4), int))
    with pytest.raises(NoLayersError, match=r"biases\.npz: no eligible layer"):
        layer_spectra(tmp_path / "biases.npz")


def test_checkpoint_without_tensors(tmp_path):
    torch.save({"epoch": 1, "lr": 0.1}, tmp_path / "meta.pt")
    with pytest.raises(FormatError, match="no state_dict"):
        layer_spectra(tmp_path / "meta.pt")


def test_every_error_is_one_line_and_an_nnequiv_error(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"\x00garbage" * 10)
    (tmp_path / "x.safetensors").write_bytes(b"\xff" * 16)
    for path in [tmp_path / "x.onnx", tmp_path / "x.safetensors"]:
        with pytest.raises(NNEquivError) as info:
            layer_spectra(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_open_weights_reads_lazily_from_headers(tmp_path, mlp_state):
    np.savez(tmp_path / "m.npz", **mlp_state)
    shapes = dict(open_weights(tmp_path / "m.npz").shapes())
    assert shapes == {k: v.shape for k, v in mlp_state.items()}
    buffer = io.BytesIO()
    np.save(buffer, np.ones(3))
