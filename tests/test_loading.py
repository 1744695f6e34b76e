"""Loading weights from every format: same spectra everywhere, bad input refused clearly."""

from __future__ import annotations

import json
import pickle
import sys
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
from formats import save_h5, save_keras, save_onnx, save_safetensors, save_sharded  # noqa: E402
from nets import EXAMPLE_INPUTS, all_nets  # noqa: E402


def spectra_by_name(source, canonical="raw", **kwargs):
    """Eigenvalues of the stored matrices (raw: what the readers give, compared as such)."""
    return {s.name: s.eigenvalues for s in layer_spectra(source, canonical=canonical, **kwargs)}


def to_numpy_state(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


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


def test_objects_of_foreign_classes_are_inert_placeholders(tmp_path):
    """A class the file names is never imported or instantiated: its pickled state is read as
    data (tensors found in it); a function the pickle calls is refused."""
    foreign = Foreign()
    torch.save({"model": foreign}, tmp_path / "holder.pt")
    tensors = dict(open_weights(tmp_path / "holder.pt").tensors())
    np.testing.assert_array_equal(tensors["weight"], foreign.weight.numpy())
    with open(tmp_path / "plain.pkl", "wb") as handle:
        pickle.dump(Foreign(), handle)
    with pytest.raises(UnsafeFileError, match=r"plain\.pkl: refused: the pickle calls torch"):
        layer_spectra(tmp_path / "plain.pkl")  # a plain pickle of tensors calls torch code
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


# ---- PyTorch files are read as data, with torch's own names and values ----------------


def script_or_trace(module, net_name, how):
    if how == "script":
        return torch.jit.script(module)
    return torch.jit.trace(module, EXAMPLE_INPUTS[net_name](), check_trace=False)


@pytest.mark.parametrize("how", ["script", "trace"])
@pytest.mark.parametrize("net_name", ["cnn", "resblock", "lstm", "transformer"])
def test_torchscript_reads_like_torch_jit_load(tmp_path, net_name, how):
    module = all_nets(seed=1)[net_name].eval()
    script_or_trace(module, net_name, how).save(str(tmp_path / "m.pt"))
    expected = torch.jit.load(str(tmp_path / "m.pt")).state_dict()
    got = dict(open_weights(tmp_path / "m.pt").tensors())
    assert list(got) == list(expected)  # the same names, in state_dict order
    for name, tensor in expected.items():
        np.testing.assert_array_equal(got[name], tensor.numpy(), err_msg=name)
    assert dict(open_weights(tmp_path / "m.pt").shapes()) == {
        k: tuple(v.shape) for k, v in expected.items()
    }


def odd_state():
    """Tensors of every storage kind: views, transposes, shared storages, rarer dtypes."""
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(6, 6, generator=generator)
    return {
        "transposed": torch.randn(4, 5, generator=generator).t(),
        "strided": torch.randn(10, 10, generator=generator)[2:5, 1:9:2],
        "shared_a": base[:3],
        "shared_b": base[3:],
        "param": torch.nn.Parameter(torch.randn(3, 2, generator=generator)),
        "half": torch.randn(3, 3, generator=generator).half(),
        "bfloat16": torch.randn(4, 2, generator=generator).to(torch.bfloat16),
        "complex": torch.randn(3, 3, dtype=torch.complex64, generator=generator),
        "long": torch.arange(5),
        "empty": torch.zeros(0, 3),
    }


def as_expected(tensor):
    tensor = tensor.detach()
    if tensor.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2):
        tensor = tensor.float()  # widened exactly
    return tensor.numpy()


@pytest.mark.parametrize("legacy", [False, True])
def test_pytorch_storages_views_and_dtypes(tmp_path, legacy):
    state = odd_state()
    if not legacy:  # dtypes the legacy format cannot store
        every_code = torch.arange(256, dtype=torch.uint8)
        state["e4m3"] = every_code.view(torch.float8_e4m3fn)
        state["e5m2"] = every_code.view(torch.float8_e5m2)
    torch.save(
        {"epoch": 2, "state_dict": state},
        tmp_path / "m.pt",
        **({"_use_new_zipfile_serialization": False} if legacy else {}),
    )
    got = dict(open_weights(tmp_path / "m.pt").tensors())
    assert list(got) == list(state)
    for name, tensor in state.items():
        np.testing.assert_array_equal(got[name], as_expected(tensor), err_msg=name)


def test_big_endian_archive(tmp_path):
    state = {"w": torch.randn(3, 4), "b": torch.randn(4).to(torch.bfloat16)}
    torch.save(state, tmp_path / "little.pt")
    # rewrite the archive as a big-endian machine would have saved it
    with (
        zipfile.ZipFile(tmp_path / "little.pt") as source,
        zipfile.ZipFile(tmp_path / "big.pt", "w") as target,
    ):
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in info.filename and not info.filename.endswith(".pkl"):
                itemsize = 4 if info.filename.endswith("/0") else 2
                data = np.frombuffer(data, f"<u{itemsize}").astype(f">u{itemsize}").tobytes()
            target.writestr(info, data)
    got = dict(open_weights(tmp_path / "big.pt").tensors())
    for name, tensor in state.items():
        np.testing.assert_array_equal(got[name], as_expected(tensor))


# ---- safetensors headers are validated completely ---------------------------------------


def safetensors_bytes(header, data=b""):
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


GOOD = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}


@pytest.mark.parametrize(
    "header, message",
    [
        ([1, 2], "not a JSON object"),
        ({"w": [1]}, "needs an object with dtype, shape and data_offsets"),
        ({"w": {**GOOD, "dtype": "F128"}}, "unknown dtype 'F128'"),
        ({"w": {**GOOD, "dtype": ["F32"]}}, "unknown dtype list"),
        ({"w": {**GOOD, "shape": [2, -2]}}, "invalid shape"),
        ({"w": {**GOOD, "shape": [2.0, 2]}}, "invalid shape"),
        ({"w": {**GOOD, "shape": [True, 4]}}, "invalid shape"),
        ({"w": {**GOOD, "shape": "2x2"}}, "shape that is not a list"),
        ({"w": {**GOOD, "data_offsets": [-16, 0]}}, "invalid data offsets"),
        ({"w": {**GOOD, "data_offsets": [8, 0]}}, "invalid data offsets"),
        ({"w": {**GOOD, "data_offsets": [0, 16.0]}}, "two integers"),
        ({"w": {**GOOD, "data_offsets": [0, 32]}}, "past the end of the data region"),
        ({"w": {**GOOD, "data_offsets": [0, 12]}}, "holds 12 bytes but .* need 16"),
        (
            {"w": GOOD, "v": {**GOOD, "shape": [2], "data_offsets": [8, 16]}},
            "'w' and 'v' overlap",
        ),
        ({"__metadata__": {"a": 1}, "w": GOOD}, "must map strings to strings"),
    ],
)
def test_safetensors_header_errors(tmp_path, header, message):
    path = tmp_path / "x.safetensors"
    path.write_bytes(safetensors_bytes(header, bytes(16)))
    with pytest.raises(FormatError, match=message) as info:
        open_weights(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_safetensors_header_text_errors(tmp_path):
    cases = {
        "nested": b"[" * 100_000 + b"]" * 100_000,
        "duplicate": b'{"w": {}, "w": {}}',
        "binary": b"\xff\xfe{}",
        "huge_int": b'{"w": {"dtype": "F32", "shape": ['
        + b"9" * 5000
        + b'], "data_offsets": [0, 0]}}',
    }
    for name, text in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(len(text).to_bytes(8, "little") + text)
        with pytest.raises(FormatError) as info:
            open_weights(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value), name
    (tmp_path / "long.safetensors").write_bytes((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(FormatError, match="header of 1000000000 bytes in a file of 10"):
        open_weights(tmp_path / "long.safetensors")


def test_safetensors_metadata_zero_size_and_float8(tmp_path):
    codes = np.arange(256, dtype=np.uint8)
    header = {
        "__metadata__": {"format": "pt"},
        "empty": {"dtype": "F32", "shape": [0, 4], "data_offsets": [0, 0]},
        "e4m3": {"dtype": "F8_E4M3", "shape": [16, 16], "data_offsets": [0, 256]},
        "e5m2": {"dtype": "F8_E5M2", "shape": [16, 16], "data_offsets": [256, 512]},
    }
    path = tmp_path / "f8.safetensors"
    path.write_bytes(safetensors_bytes(header, codes.tobytes() * 2))
    got = dict(open_weights(path).tensors())
    assert got["empty"].shape == (0, 4)
    as_torch = torch.from_numpy(codes)
    for name, dtype in [("e4m3", torch.float8_e4m3fn), ("e5m2", torch.float8_e5m2)]:
        expected = as_torch.view(dtype).float().numpy().reshape(16, 16)
        np.testing.assert_array_equal(got[name], expected)


# ---- messages: one line, the file's name, no raw bytes ----------------------------------


def test_text_from_a_file_is_escaped_in_messages(tmp_path):
    name = "\x1b[31mred\nline\x00" + "\U0001f600" * 3
    path = tmp_path / "names.safetensors"
    path.write_bytes(safetensors_bytes({name: {**GOOD, "dtype": "\x1b[2J"}}, bytes(16)))
    with pytest.raises(FormatError) as info:
        open_weights(path)
    message = str(info.value)
    assert "\x1b" not in message and "\n" not in message and "\x00" not in message
    assert "\\x1b[31mred line\\x00" in message


@pytest.mark.parametrize("net_name", ["cnn", "resblock", "lstm", "transformer"])
@pytest.mark.parametrize("legacy", [False, True])
def test_whole_pickled_models_read_as_their_state_dict(tmp_path, net_name, legacy):
    """torch.save(model): parameters and persistent buffers, named and ordered as
    state_dict() names them, with no class of the model imported."""
    module = all_nets()[net_name]
    module.register_buffer("scratch", torch.ones(3), persistent=False)
    path = tmp_path / "model.pt"
    torch.save(module, path, _use_new_zipfile_serialization=not legacy)
    got = dict(open_weights(path).tensors())
    expected = to_numpy_state(module)
    assert list(got) == list(expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(got[name], values, err_msg=name)


def test_a_text_file_named_pt_is_not_a_pytorch_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("plain text, not weights\n")
    with pytest.raises(FormatError, match=r"notes\.pt: not a PyTorch file \(neither a zip"):
        open_weights(path)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npy_headers_of_every_version_are_read_as_literals(tmp_path, version):
    """The .npy header reader (public NumPy only, no private parser): every format version,
    in a .npy and in an .npz member; a header that is not a plain literal is refused."""
    import io
    import zipfile

    from nnequiv.loading._npy import npy_header

    weights = np.arange(12, dtype=np.float32).reshape(3, 4)
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, weights, version=version)
    (tmp_path / "w.npy").write_bytes(buffer.getvalue())
    with zipfile.ZipFile(tmp_path / "w.npz", "w") as archive:
        archive.writestr("w.npy", buffer.getvalue())
    for path in (tmp_path / "w.npy", tmp_path / "w.npz"):
        assert np.array_equal(dict(open_weights(path).tensors())["w"], weights)
    stream = io.BytesIO(buffer.getvalue())
    assert np.lib.format.read_magic(stream) == version
    assert npy_header(stream, version) == ((3, 4), False, np.dtype("<f4"))
    text = b"{'descr': '<f4', 'fortran_order': False, 'shape': __import__('os').getpid()}"
    forged = io.BytesIO(len(text).to_bytes(4, "little") + text)
    with pytest.raises(ValueError, match="not a literal"):
        npy_header(forged, (2, 0))


@pytest.mark.parametrize(
    ("module", "suffix", "extra"),
    [("onnx", ".onnx", "onnx"), ("h5py", ".h5", "keras"), ("gguf", ".gguf", "gguf")],
)
def test_a_missing_optional_dependency_names_the_extra(
    tmp_path, monkeypatch, module, suffix, extra
):
    from nnequiv.errors import MissingDependencyError

    path = tmp_path / f"model{suffix}"
    state = {"fc.weight": np.ones((3, 2), dtype=np.float32)}
    if suffix == ".onnx":
        save_onnx(state, path)
    elif suffix == ".h5":
        save_h5(state, path)
    else:
        path.write_bytes(b"GGUF" + bytes(20))
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(MissingDependencyError) as info:
        layer_spectra(path)
    assert str(info.value) == (
        f"reading {path} needs the '{module}' package: pip install 'nnequiv[{extra}]'"
    )
    assert isinstance(info.value.__cause__, ImportError)  # why the import failed is kept


def test_layer_spectra_passes_every_argument_on():
    state = {"fc1.weight": np.eye(4) * 2.0, "head.weight": np.ones((2, 4))}
    assert [s.name for s in layer_spectra(state, None, "head*")] == ["fc1.weight"]
    (raw,) = layer_spectra(state, "fc1*", canonical="raw")
    np.testing.assert_allclose(raw.eigenvalues, [4.0] * 4)
