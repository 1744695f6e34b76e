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


def test_plain_npy_layer_stays_in_its_file_and_is_read_in_blocks(tmp_path):
    """A large .npy layer is analysed in blocks read from the file, as a safetensors one is;
    Fortran-order and big-endian arrays are read whole, with the same values."""
    from nnequiv.layers import StoredMatrix, iter_layer_matrices
    from nnequiv.spectra import layer_spectra

    rng = np.random.default_rng(1)
    w = rng.standard_normal((120, 80)) * rng.lognormal(0, 1, (120, 1))
    np.save(tmp_path / "layer.npy", w)
    np.save(tmp_path / "fortran.npy", np.asfortranarray(w))
    np.save(tmp_path / "big_endian.npy", w.astype(">f8"))
    layers = list(iter_layer_matrices(tmp_path / "layer.npy", stored=True))
    assert [type(layer.matrix) for layer in layers] == [StoredMatrix]
    whole = layer_spectra({"layer": w})[0].eigenvalues
    budget = 8 * 80 * 80 + 8 * 8 * 80 * 8 + 64 * 200 + 8 * 4 * 120 * 4  # several blocks only
    in_blocks = layer_spectra(tmp_path / "layer.npy", max_memory=budget)[0].eigenvalues
    np.testing.assert_allclose(in_blocks, whole, rtol=1e-10)
    for name in ("fortran", "big_endian"):
        assert_same(tensors(tmp_path / f"{name}.npy"), {name: w})


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


# ---- whole models as shipped: the attributes a trained model carries -------------------------


class OnDevice(torch.nn.Module):
    """A model that keeps the device it was trained on as an attribute (BeatNet's model)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(2, 4, 3)
        self.fc = torch.nn.Linear(4, 3)
        self.device = torch.device("cuda", 0)  # pickled as torch.device('cuda', 0)
        self.devices = [torch.device("cpu"), torch.device("cuda:1")]


@pytest.mark.parametrize("legacy", [False, True])
def test_whole_model_holding_devices_is_read(tmp_path, monkeypatch, legacy):
    foreign_module(monkeypatch, "model", OnDevice)
    module = OnDevice()
    path = tmp_path / "whole.pt"
    torch.save(module, path, _use_new_zipfile_serialization=not legacy)
    assert_same(tensors(path), state_of(module))


# ---- plain pickles of NumPy arrays ----------------------------------------------------------


def numpy_checkpoint() -> dict:
    rng = np.random.default_rng(3)
    return {
        "embedding.weight": rng.standard_normal((20, 6)).astype(np.float32),
        "lstm.weight_ih_l0": rng.standard_normal((16, 6)),
        "lstm.bias_ih_l0": rng.standard_normal(16).astype(np.float32),
        "fortran": np.asfortranarray(rng.standard_normal((5, 4)).astype(">f4")),
    }


@pytest.mark.parametrize(
    "protocol, core",
    [(2, "numpy.core"), (2, "numpy._core"), (3, "numpy.core"), (4, None), (5, None)],
)
def test_plain_pickle_of_numpy_arrays_is_read_as_data(tmp_path, protocol, core):
    """``pickle.dump`` of a dict of arrays (g2pM ships its weights so): the arrays are rebuilt
    from their bytes, whichever NumPy wrote them (``numpy.core`` before 2.0)."""
    weights = numpy_checkpoint()
    data = pickle.dumps(weights, protocol=protocol)
    if core is not None:  # module names as text lines: as the NumPy that wrote it names them
        for old in (b"numpy.core.", b"numpy._core."):
            data = data.replace(old, core.encode() + b".")
        assert core.encode() + b".multiarray\n_reconstruct" in data
    path = tmp_path / "np_ckpt.pkl"
    path.write_bytes(data)
    assert_same(tensors(path), weights)


def test_plain_pickles_that_are_not_arrays_get_one_line(tmp_path):
    from nnequiv.errors import ResourceLimitError

    weights = numpy_checkpoint()
    (tmp_path / "labels.pkl").write_bytes(pickle.dumps({"classes": ["cat", "dog"]}))
    with pytest.raises(FormatError, match=r"labels\.pkl: a pickle not written by torch\.save; "):
        open_weights(tmp_path / "labels.pkl")
    objects = {"w": np.array([None, "x"], dtype=object)}  # object arrays are never weights
    (tmp_path / "objects.pkl").write_bytes(pickle.dumps(objects, protocol=2))
    with pytest.raises(FormatError, match=r"objects\.pkl: a pickle not written by torch"):
        open_weights(tmp_path / "objects.pkl")
    data = pickle.dumps(weights, protocol=2)
    (tmp_path / "trailing.pkl").write_bytes(data + b"more")
    with pytest.raises(FormatError, match=r"trailing\.pkl: not a PyTorch file .* bytes follow"):
        open_weights(tmp_path / "trailing.pkl")
    (tmp_path / "big.pkl").write_bytes(data)
    with pytest.raises(ResourceLimitError, match=r"big\.pkl: .*\(20 x 6\)"):
        open_weights(tmp_path / "big.pkl", max_tensor_bytes=256)
    # a shape that does not match the bytes given: refused before anything is built
    wrong = data.replace(b"K\x14K\x06\x86", b"K\x15K\x06\x86", 1)  # (20, 6) -> (21, 6)
    assert wrong != data
    (tmp_path / "wrong.pkl").write_bytes(wrong)
    with pytest.raises(FormatError, match=r"wrong\.pkl: .*do not match its shape"):
        open_weights(tmp_path / "wrong.pkl")


def test_plain_pickle_of_arrays_found_in_a_folder(tmp_path):
    from nnequiv.discovery import discover

    (tmp_path / "np_ckpt.pkl").write_bytes(pickle.dumps(numpy_checkpoint()))
    (tmp_path / "vocab.pkl").write_bytes(pickle.dumps({"words": ["a", "b"]}))
    notes: list[str] = []
    assert [f.label for f in discover([tmp_path], notes=notes.append)] == ["np_ckpt.pkl"]
    assert len(notes) == 1 and "vocab.pkl" in notes[0] and "no tensors" in notes[0]


# ---- quantized ONNX: integer weights dequantized as data ------------------------------------


def quantized_onnx(path, rng):
    """An ONNX graph with a weight behind each kind of quantized node; the float weights
    (what the runtime computes from them) by the names nnequiv gives them."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def per_channel(shape, dtype, axis):
        q = rng.integers(-100, 100, shape).astype(dtype)
        channels = shape[axis]
        scale = rng.uniform(0.01, 0.1, channels).astype(np.float32)
        zero = rng.integers(-5, 5, channels).astype(dtype)
        view = [-1 if i == axis else 1 for i in range(len(shape))]
        value = (q.astype(np.float32) - zero.reshape(view).astype(np.float32)) * scale.reshape(view)
        return q, scale, zero, value

    init, expected, nodes = [], {}, []

    def add(name, array):
        init.append(numpy_helper.from_array(array, name))

    # DequantizeLinear, per tensor, uint8 with a zero point
    q = rng.integers(0, 255, (6, 5)).astype(np.uint8)
    add("dense_quantized", q)
    add("dense_scale", np.array(0.02, np.float32))
    add("dense_zero_point", np.array(128, np.uint8))
    nodes.append(
        helper.make_node(
            "DequantizeLinear", ["dense_quantized", "dense_scale", "dense_zero_point"], ["dense"]
        )
    )
    expected["dense"] = (q.astype(np.float32) - 128) * np.float32(0.02)
    # DequantizeLinear per axis (axis 0), int8
    q, scale, zero, value = per_channel((4, 3, 3, 3), np.int8, 0)
    for name, array in (("conv_q", q), ("conv_s", scale), ("conv_z", zero)):
        add(name, array)
    nodes.append(
        helper.make_node("DequantizeLinear", ["conv_q", "conv_s", "conv_z"], ["conv"], axis=0)
    )
    expected["conv_q"] = value
    # DequantizeLinear per block (blocks of 2 along axis 1)
    q = rng.integers(-50, 50, (3, 4)).astype(np.int8)
    scale = rng.uniform(0.01, 0.1, (3, 2)).astype(np.float32)
    for name, array in (("block_quantized", q), ("block_scale", scale)):
        add(name, array)
    nodes.append(
        helper.make_node(
            "DequantizeLinear", ["block_quantized", "block_scale"], ["b"], axis=1, block_size=2
        )
    )
    expected["block"] = q.astype(np.float32) * np.repeat(scale, 2, axis=1)
    # QLinearConv: the weight is input 3, per output channel
    q, scale, zero, value = per_channel((5, 4, 3, 3), np.int8, 0)
    for name, array in (("qconv_w", q), ("qconv_s", scale), ("qconv_z", zero)):
        add(name, array)
    for name in ("x_s", "y_s"):
        add(name, np.array(0.1, np.float32))
    for name in ("x_z", "y_z"):
        add(name, np.array(0, np.int8))
    nodes.append(
        helper.make_node(
            "QLinearConv",
            ["x", "x_s", "x_z", "qconv_w", "qconv_s", "qconv_z", "y_s", "y_z"],
            ["qconv_out"],
        )
    )
    expected["qconv_w"] = value
    # QLinearMatMul: the weight is input b, per column
    q, scale, zero, value = per_channel((7, 6), np.int8, 1)
    for name, array in (("mm_w", q), ("mm_s", scale), ("mm_z", zero)):
        add(name, array)
    nodes.append(
        helper.make_node(
            "QLinearMatMul", ["x", "x_s", "x_z", "mm_w", "mm_s", "mm_z", "y_s", "y_z"], ["mm"]
        )
    )
    expected["mm_w"] = value
    # MatMulInteger: the scale is the quantizer's '<name>_scale' beside '<name>_quantized'
    q = rng.integers(0, 255, (8, 6)).astype(np.uint8)
    add("fc_quantized", q)
    add("fc_zero_point", np.array(120, np.uint8))
    add("fc_scale", np.array(0.05, np.float32))
    nodes.append(
        helper.make_node(
            "MatMulInteger", ["x_q", "fc_quantized", "x_zq", "fc_zero_point"], ["fc_int"]
        )
    )
    expected["fc"] = (q.astype(np.float32) - 120) * np.float32(0.05)
    # ConvInteger: the scale is the factor its cast output is multiplied by
    q, scale, zero, value = per_channel((6, 2, 3, 3), np.int8, 0)
    add("ci_w", q)
    add("ci_zero", zero)
    add("ci_weight_scale", scale)
    nodes += [
        helper.make_node("ConvInteger", ["x_q", "ci_w", "x_zq", "ci_zero"], ["ci_int"]),
        helper.make_node("Cast", ["ci_int"], ["ci_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x_scale_dyn", "ci_weight_scale"], ["ci_scales"]),
        helper.make_node("Mul", ["ci_float", "ci_scales"], ["ci"]),
    ]
    expected["ci_w"] = value
    # an integer tensor that no quantized node reads stays as it is (not a weight)
    add("shape", np.array([1, 2, 3], np.int64))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph(nodes, "q", [], [out], initializer=init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    onnx.save(model, str(path))
    return expected


def test_quantized_onnx_weights_are_dequantized_as_the_runtime_does(tmp_path):
    expected = quantized_onnx(tmp_path / "q.onnx", np.random.default_rng(4))
    got = tensors(tmp_path / "q.onnx")
    weights = {name: got[name] for name in expected}
    for name, value in expected.items():
        assert weights[name].dtype == np.float32, name
        np.testing.assert_allclose(weights[name], value, rtol=1e-6, err_msg=name)
    assert got["shape"].dtype == np.int64  # untouched
    from nnequiv.layers import layer_matrices

    names = [layer.name for layer in layer_matrices(tmp_path / "q.onnx").layers]
    assert sorted(names) == sorted(expected)


def test_quantized_onnx_with_a_scale_that_fits_no_axis_gets_one_line(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    init = [
        numpy_helper.from_array(np.ones((4, 3), np.int8), "w_quantized"),
        numpy_helper.from_array(np.ones(5, np.float32), "w_scale"),  # 5 fits neither axis
    ]
    node = helper.make_node("DequantizeLinear", ["w_quantized", "w_scale"], ["w"], axis=0)
    out = helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3])
    onnx.save(
        helper.make_model(helper.make_graph([node], "g", [], [out], initializer=init)),
        str(tmp_path / "bad.onnx"),
    )
    with pytest.raises(FormatError, match=r"bad\.onnx: quantized tensor 'w' \(4 x 3\) has a"):
        tensors(tmp_path / "bad.onnx")


def test_quantized_onnx_block_size_larger_than_the_tensor_costs_the_tensor(tmp_path):
    """A block size of 2**40 is one block per row: the scale is taken per element index,
    never repeated block_size times."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    q = np.arange(12, dtype=np.int8).reshape(3, 4)
    scale = np.array([[0.5], [1.0], [2.0]], np.float32)
    init = [numpy_helper.from_array(q, "w_quantized"), numpy_helper.from_array(scale, "w_scale")]
    node = helper.make_node(
        "DequantizeLinear", ["w_quantized", "w_scale"], ["w"], axis=1, block_size=2**40
    )
    out = helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 4])
    graph = helper.make_graph([node], "g", [], [out], initializer=init)
    onnx.save(helper.make_model(graph), str(tmp_path / "blocks.onnx"))
    np.testing.assert_array_equal(tensors(tmp_path / "blocks.onnx")["w"], q * scale)
