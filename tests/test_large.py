"""Large layers: block algorithms equal to the in-memory ones, tensors chosen from headers
before any is read, the model's order, the refined route for ill-conditioned layers, progress
and Ctrl-C. Small matrices with tiny blocks stand in for LLM-sized ones
(benchmarks/llm.py runs the real sizes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from nnequiv._blockwise import ArrayBlocks, canonical_scaling, matrix_spectrum, ritz_error
from nnequiv.errors import FormatError, InvalidWeightsError
from nnequiv.layers import StoredMatrix, as_layer_matrix, iter_layer_matrices
from nnequiv.loading import open_weights
from nnequiv.loading._safetensors import StoredTensor
from nnequiv.spectra import (
    _spectrum_of,
    canonical_form,
    gram_eigenvalues,
    layer_spectra,
    network_spectra,
)

FORMS = ["balanced", "rows", "raw"]
#: bytes of a float64 block of 3 rows or columns of a matrix at most 40 wide
TINY = 8 * 3 * 40


def rough_matrix(shape, seed=0):
    """Rows and columns on very different scales (many Sinkhorn sweeps), one zero row and one
    zero column."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape) * rng.lognormal(0, 2, (shape[0], 1))
    w *= rng.lognormal(0, 2, (1, shape[1]))
    w[3] = 0.0
    w[:, 5] = 0.0
    return w


def reference_spectrum(w, form, rtol=1e-12):
    """The in-memory route: the whole canonical matrix, then its Gram eigenvalues."""
    canonical, applied = canonical_form(w, form)
    return (*gram_eigenvalues(canonical, rtol), applied)


@pytest.mark.parametrize("shape", [(37, 11), (11, 37), (23, 23)])
@pytest.mark.parametrize("form", FORMS)
def test_block_spectra_equal_the_in_memory_ones(shape, form):
    w = rough_matrix(shape)
    values, dropped, method, applied = reference_spectrum(w, form)
    got = _spectrum_of(w, 1e-12, form, block_bytes=TINY)
    np.testing.assert_allclose(got[0], values, rtol=1e-10)
    assert got[1:] == (dropped, method, applied) and applied == form


@pytest.mark.parametrize("form", ["balanced", "rows"])
@pytest.mark.parametrize("cache_bytes", [0, 1 << 20])
def test_block_canonical_form_equals_the_in_memory_one(form, cache_bytes):
    w = rough_matrix((29, 17), seed=1)
    scaling = canonical_scaling(ArrayBlocks(w), form, block_bytes=TINY, cache_bytes=cache_bytes)
    blocked = scaling.apply(np.array(w), 0, w.shape[0], 0)
    expected, applied = canonical_form(w, form)
    assert scaling.form == applied == form
    np.testing.assert_allclose(blocked, expected, rtol=1e-10, atol=1e-300)
    if form == "balanced":  # the balance itself: unit rows, columns of norm sqrt(N'/M')
        live = np.abs(blocked).sum(axis=1) > 0
        np.testing.assert_allclose(np.linalg.norm(blocked[live], axis=1), 1.0, rtol=1e-9)
        norms = np.linalg.norm(blocked, axis=0)
        np.testing.assert_allclose(norms[norms > 0], np.sqrt(28 / 16), rtol=1e-9)


def test_a_pattern_without_balance_falls_back_to_rows_in_blocks_too():
    w = np.triu(np.ones((9, 9))) + np.diag(np.arange(9.0))  # no total support: no balance
    values, dropped, method, applied = reference_spectrum(w, "balanced")
    got = _spectrum_of(w, 1e-12, "balanced", block_bytes=8 * 2 * 9)
    assert applied == got[3] == "rows"
    np.testing.assert_allclose(got[0], values, rtol=1e-10)


# ---- tensors in their file ----------------------------------------------------------------


def bf16_bits(array: np.ndarray) -> np.ndarray:
    return (np.asarray(array, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def write_safetensors(path, tensors):
    """A safetensors file with the data in the given order and the header sorted by name (as
    the safetensors library writes it): ``tensors`` is a list of (name, dtype, array)."""
    header, blobs, offset = {}, [], 0
    for name, dtype, array in tensors:
        raw = (bf16_bits(array) if dtype == "BF16" else np.ascontiguousarray(array)).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, sort_keys=True).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))
    return path


def decoded(dtype, array):
    """What a tensor of ``dtype`` decodes to."""
    if dtype == "BF16":
        return (bf16_bits(array).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(array)


def llm_like_tensors(rng):
    return [
        ("z.embed", "BF16", rng.standard_normal((40, 6))),
        ("a.norm", "F32", rng.standard_normal(6).astype(np.float32)),
        ("m.conv", "F16", rng.standard_normal((5, 3, 3, 3)).astype(np.float16)),
        ("b.down", "F32", rng.standard_normal((6, 30)).astype(np.float32)),
        ("c.steps", "I64", np.arange(12).reshape(3, 4)),
        ("d.head", "BF16", rng.standard_normal((40, 6))),
    ]


@pytest.mark.parametrize("layout", ["oihw", "hwio", "ohwi"])
def test_stored_blocks_are_the_layer_matrix(tmp_path, monkeypatch, layout):
    monkeypatch.setattr("nnequiv.loading._safetensors.BAND_BYTES", 50)  # columns: 2-row bands
    rng = np.random.default_rng(2)
    tensors = llm_like_tensors(rng)
    path = write_safetensors(tmp_path / "m.safetensors", tensors)
    arrays = {name: decoded(dtype, array) for name, dtype, array in tensors}
    layers = list(iter_layer_matrices(path, layout=layout, stored=True))
    assert [layer.name for layer in layers] == ["z.embed", "m.conv", "b.down", "d.head"]
    for layer in layers:
        assert isinstance(layer.matrix, StoredMatrix)
        expected = as_layer_matrix(arrays[layer.name], layout)
        assert layer.matrix.shape == expected.shape == layer.matrix_shape
        np.testing.assert_array_equal(np.asarray(layer.matrix), expected)
        for axis in (0, 1):
            parts = [block for _, _, block in layer.matrix.blocks(axis, 4)]
            np.testing.assert_array_equal(np.concatenate(parts, axis=axis), expected)


@pytest.mark.parametrize("form", FORMS)
def test_stored_spectra_equal_the_in_memory_ones(tmp_path, form):
    rng = np.random.default_rng(3)
    tensors = llm_like_tensors(rng)
    path = write_safetensors(tmp_path / "m.safetensors", tensors)
    state = {name: decoded(dtype, array) for name, dtype, array in tensors}
    expected = network_spectra(state, canonical=form)
    got = network_spectra(path, canonical=form, block_bytes=8 * 3 * 30)
    assert [s.name for s in got.layers] == ["z.embed", "m.conv", "b.down", "d.head"]
    by_name = {s.name: s for s in expected.layers}
    for spectrum in got.layers:
        reference = by_name[spectrum.name]
        np.testing.assert_allclose(spectrum.eigenvalues, reference.eigenvalues, rtol=1e-10)
        assert (spectrum.n_dropped, spectrum.canonical) == (
            reference.n_dropped,
            reference.canonical,
        )


def test_tensors_are_chosen_from_headers_before_any_is_read(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    path = write_safetensors(tmp_path / "m.safetensors", llm_like_tensors(rng))
    read = []
    original = StoredTensor._read_into

    def recording(self, handle, raw, first):
        read.append(self.name)
        return original(self, handle, raw, first)

    monkeypatch.setattr(StoredTensor, "_read_into", recording)
    spectra = network_spectra(path, exclude="*.head", block_bytes=8 * 3 * 30)
    assert [s.name for s in spectra.layers] == ["z.embed", "m.conv", "b.down"]
    assert set(read) == {"z.embed", "m.conv", "b.down"}  # not the filtered, 1-D or int ones
    reasons = {s.name: s.reason for s in spectra.skipped}
    assert reasons == {
        "a.norm": "1-D tensor",
        "c.steps": "not a float tensor (int64)",
        "d.head": "filtered by name",
    }


def test_layers_come_in_the_model_order(tmp_path):
    """Index order for shards, data order for one file; never the sorted header's order."""
    rng = np.random.default_rng(5)
    names = ["model.embed", "layers.2.q", "layers.10.q", "layers.1.q", "lm_head"]
    tensors = [(name, "F32", rng.standard_normal((6, 4)).astype(np.float32)) for name in names]
    single = write_safetensors(tmp_path / "one.safetensors", tensors)
    assert [s.name for s in layer_spectra(single)] == names
    folder = tmp_path / "sharded"
    folder.mkdir()
    # shards hold the tensors in another order than the index lists them
    write_safetensors(folder / "model-00001-of-00002.safetensors", [tensors[4], tensors[1]])
    write_safetensors(folder / "model-00002-of-00002.safetensors", tensors[3:1:-1] + tensors[:1])
    weight_map = {name: "model-00001-of-00002.safetensors" for name in ("lm_head", "layers.2.q")}
    weight_map.update(
        dict.fromkeys(("layers.1.q", "layers.10.q"), "model-00002-of-00002.safetensors")
    )
    weight_map["model.embed"] = "model-00002-of-00002.safetensors"
    ordered = {name: weight_map[name] for name in names}
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": ordered}))
    for source in (folder, index):
        assert [s.name for s in layer_spectra(source)] == names
        assert [name for name, _ in open_weights(source).shapes()] == names


def test_nan_in_a_block_and_a_truncated_file_are_one_line_errors(tmp_path):
    w = np.random.default_rng(6).standard_normal((30, 8)).astype(np.float32)
    w[17, 3] = np.nan
    path = write_safetensors(tmp_path / "nan.safetensors", [("w", "F32", w)])
    with pytest.raises(InvalidWeightsError, match=r"nan\.safetensors: tensor 'w' holds NaN"):
        network_spectra(path, block_bytes=8 * 4 * 8)
    good = write_safetensors(tmp_path / "cut.safetensors", [("w", "F32", np.ones((30, 8), "f4"))])
    (layer,) = iter_layer_matrices(good, stored=True)
    with open(good, "r+b") as handle:  # the file shrinks after its header was checked
        handle.truncate(good.stat().st_size - 100)
    with pytest.raises(FormatError, match=r"cut\.safetensors: truncated file \(tensor 'w'"):
        list(layer.matrix.blocks(0, 10))


def test_progress_reports_layers_and_the_stages_of_block_layers(tmp_path):
    rng = np.random.default_rng(8)
    path = write_safetensors(tmp_path / "m.safetensors", llm_like_tensors(rng))
    calls = []
    network_spectra(
        path,
        canonical="balanced",
        block_bytes=8 * 3 * 30,
        progress=lambda done, total, label: calls.append((done, total, label)),
    )
    assert calls[0] == (0, 4, "z.embed") and calls[-1] == (4, 4, "d.head")
    stages = [label for _, _, label in calls if ": " in label]
    assert "z.embed: balancing, sweep 1" in stages
    assert any(label.startswith("z.embed: Gram matrix, block 1 of") for label in stages)
    done = [d for d, _, _ in calls]
    assert done == sorted(done)
    in_memory = []
    network_spectra({"w": rng.standard_normal((5, 4))}, progress=lambda *a: in_memory.append(a))
    assert in_memory == [(0, None, "w"), (1, None, "w")]


# ---- the refined route -------------------------------------------------------------------


def graded_matrix(rows, columns, small, seed=0):
    """Random singular vectors; singular values 1..10, and ``small`` values below."""
    rng = np.random.default_rng(seed)
    order = min(rows, columns)
    values = np.concatenate([np.logspace(1, 0, order - len(small)), small])
    left = np.linalg.qr(rng.standard_normal((rows, order)))[0]
    right = np.linalg.qr(rng.standard_normal((columns, order)))[0]
    return (left * values) @ right.T


def svd_kept(matrix, rtol=1e-12):
    values = np.sort(np.linalg.svd(matrix, compute_uv=False) ** 2)
    return values[values > rtol * values[-1]]


#: singular values over 11 decades below the bulk: the last three are numerical zeros
SMALL = [1e-2, 1e-3, 1e-4, 3e-5, 1e-8, 1e-9, 1e-10]


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(384, 384), (480, 384), (384, 480)])
@pytest.mark.parametrize("block_bytes", [None, 8 * 50 * 480])
def test_refined_eigenvalues_match_an_svd(shape, block_bytes):
    w = graded_matrix(*shape, SMALL)
    blocks = ArrayBlocks(w)
    size = block_bytes or 8 * w.size
    values, dropped, method = matrix_spectrum(blocks, canonical_scaling(blocks, "raw"), 1e-12, size)
    assert method == "refined" and dropped == 3
    reference = svd_kept(w)
    np.testing.assert_allclose(values, reference, rtol=1e-8)
    # the Gram route alone misses the smallest kept eigenvalue by far more than 1e-6
    gram = np.linalg.eigvalsh(w @ w.T if shape[0] <= shape[1] else w.T @ w)
    assert abs(gram[3] / reference[0] - 1) > 1e-6


def test_many_unresolved_eigenvalues_go_to_an_svd():
    small = list(np.logspace(-2, -4.5, 80))  # too many for the refinement's subspace
    w = graded_matrix(320, 320, small, seed=1)
    values, dropped, method = gram_eigenvalues(w)
    assert method == "svd" and dropped == 0
    np.testing.assert_allclose(values, svd_kept(w), rtol=1e-8)


@pytest.mark.slow
def test_rank_deficient_square_layer_drops_its_null_space():
    w = graded_matrix(384, 384, [1e-3, 1e-4], seed=2)
    w[:, 7] = w[:, 8]  # a column repeated: one singular value exactly 0 in exact arithmetic
    values, dropped, method = gram_eigenvalues(w)
    assert dropped == 1 and method in {"refined", "svd"}
    np.testing.assert_allclose(values, svd_kept(w), rtol=1e-8)


def test_ritz_error_uses_the_gap_where_it_is_wide():
    values, residuals = np.array([1.0, 2.0, 2.0 + 1e-9]), np.array([1e-6, 1e-3, 1e-3])
    bound = ritz_error(values, residuals)
    assert bound[0] == pytest.approx(1e-12 / (2 * (1.0 - 1e-3)))  # isolated: quadratic
    np.testing.assert_array_equal(bound[1:], residuals[1:])  # a cluster: the residual itself


# ---- Ctrl-C ------------------------------------------------------------------------------


def wait_for_cpu_seconds(pid: int, seconds: float, patience: float = 120.0) -> None:
    """Return once process ``pid`` has used ``seconds`` of CPU time (however loaded the
    machine is), or after ``patience`` seconds of wall time."""
    ticks = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        if (int(fields[11]) + int(fields[12])) / ticks >= seconds:  # utime + stime
            return
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux's /proc")
def test_ctrl_c_during_a_large_layer_ends_with_one_line(tmp_path):
    """A rank-one 3000 x 3000 layer (a 100 KB npz) goes to a long SVD; SIGINT ends it."""
    rng = np.random.default_rng(10)
    column, row = rng.standard_normal((3000, 1)), rng.standard_normal((1, 3000))
    path = tmp_path / "big.npz"
    np.savez_compressed(path, w=np.round(column) @ np.round(row))
    process = subprocess.Popen(
        [sys.executable, "-m", "nnequiv.cli", "analyze", str(path), "--no-cache"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell that starts the suite in the background makes SIGINT ignored, and the
        # child would inherit that: give it the default a user's terminal gives
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for_cpu_seconds(process.pid, 3.0)  # past the imports, inside the computation
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()  # nothing left behind, whatever happened
    assert process.returncode == 130, (out, err)
    assert err == "nnequiv: interrupted\n" and out == ""


def test_worker_processes_give_the_same_spectra_in_order(tmp_path):
    rng = np.random.default_rng(11)
    path = write_safetensors(tmp_path / "m.safetensors", llm_like_tensors(rng))
    calls = []
    serial = network_spectra(path, canonical="balanced", block_bytes=8 * 3 * 30)
    parallel = network_spectra(
        path,
        canonical="balanced",
        block_bytes=8 * 3 * 30,
        n_jobs=2,
        progress=lambda *call: calls.append(call),
    )
    assert [s.name for s in parallel.layers] == [s.name for s in serial.layers]
    for a, b in zip(serial.layers, parallel.layers):
        np.testing.assert_allclose(a.eigenvalues, b.eigenvalues, rtol=1e-10)
    assert calls == [(k + 1, 4, s.name) for k, s in enumerate(parallel.layers)]


def test_stored_layers_are_never_read_whole(tmp_path, monkeypatch):
    """Layers chosen from the headers reach their spectra as blocks read from the file."""
    rng = np.random.default_rng(12)
    path = write_safetensors(tmp_path / "m.safetensors", llm_like_tensors(rng))
    expected = network_spectra(path, block_bytes=8 * 3 * 30)

    def refuse(self):
        raise AssertionError("a stored layer was read whole")

    monkeypatch.setattr(StoredMatrix, "read", refuse)
    again = network_spectra(path, block_bytes=8 * 3 * 30)
    assert [s.name for s in again.layers] == [s.name for s in expected.layers]
    for a, b in zip(again.layers, expected.layers):
        np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)


def test_stages_are_reported_only_for_layers_larger_than_a_block():
    w = np.random.default_rng(13).standard_normal((4, 5))
    for block_bytes, staged in ((w.size * 8, False), (w.size * 8 - 1, True)):
        calls = []
        network_spectra(
            {"w": w}, canonical="balanced", block_bytes=block_bytes,
            progress=lambda *a: calls.append(a),
        )  # fmt: skip
        assert any(": " in label for _, _, label in calls) == staged, block_bytes
