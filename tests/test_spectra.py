"""Layer spectra: Gram eigenvalues against SVD, normalisation, cache; the real zoo."""

import csv

import numpy as np
import pytest
from conftest import ZOO, random_mlp, require_shared

from nnequiv.layers import as_layer_matrix, layer_matrices
from nnequiv.spectra import (
    gram_eigenvalues,
    layer_spectra,
    network_spectra,
    normalize_spectrum,
)


def svd_eigenvalues(matrix):
    return np.sort(np.linalg.svd(np.asarray(matrix, float), compute_uv=False) ** 2)


@pytest.mark.parametrize("shape", [(5, 9), (9, 5), (7, 7), (2, 300)])
def test_gram_eigenvalues_match_svd(shape):
    matrix = np.random.default_rng(1).standard_normal(shape)
    values, dropped, method = gram_eigenvalues(matrix)
    assert method == "gram" and dropped == 0 and values.size == min(shape)
    np.testing.assert_allclose(values, svd_eigenvalues(matrix), rtol=1e-10)


def test_rank_deficient_and_ill_conditioned_layers():
    rng = np.random.default_rng(2)
    low_rank = rng.standard_normal((10, 3)) @ rng.standard_normal((3, 12))
    values, dropped, _ = gram_eigenvalues(low_rank)
    assert values.size == 3 and dropped == 7
    np.testing.assert_allclose(values, svd_eigenvalues(low_rank)[-3:], rtol=1e-8)
    u, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    graded = u * np.logspace(0, -5, 8)  # singular values over 5 decades
    values, dropped, method = gram_eigenvalues(graded)
    assert method == "svd" and dropped == 0
    np.testing.assert_allclose(values, np.logspace(0, -10, 8)[::-1], rtol=1e-8)


def test_zero_matrix_has_no_spectrum():
    values, dropped, _ = gram_eigenvalues(np.zeros((3, 4)))
    assert values.size == 0 and dropped == 3


def test_rescaling_leaves_normalised_spectrum_unchanged():
    state = random_mlp([12, 9, 5], seed=4)
    scaled = {k: 37.5 * v for k, v in state.items()}
    for a, b in zip(layer_spectra(state), layer_spectra(scaled)):
        for method in ["median", "mean"]:
            np.testing.assert_allclose(
                normalize_spectrum(a.eigenvalues, method),
                normalize_spectrum(b.eigenvalues, method),
                rtol=1e-12,
            )
        assert np.median(normalize_spectrum(a.eigenvalues)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="normalisation"):
        normalize_spectrum(np.ones(3), "max")


def test_cache_reuses_and_repairs_entries(tmp_path):
    state = random_mlp([12, 9, 5], seed=5)
    first = layer_spectra(state, cache_dir=tmp_path)
    entries = sorted(tmp_path.glob("*.npz"))
    assert len(entries) == 2 and not list(tmp_path.glob("*.tmp"))
    entries[0].write_bytes(b"damaged")
    second = layer_spectra(state, cache_dir=tmp_path)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)
    assert np.load(entries[0])["eigenvalues"].size > 0  # rewritten


def zoo_rows():
    path = ZOO / "MANIFEST.csv"
    if not path.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{ZOO} not present"))]
    return list(csv.DictReader(path.open()))


@pytest.mark.parametrize("row", zoo_rows(), ids=lambda r: r["file"] if r else "zoo")
def test_zoo_models_load_with_inferred_layout_and_match_svd(row):
    path = require_shared(ZOO) / row["file"]
    expected_layout = "hwio" if "TF.js" in row["loader"] else "oihw"
    spectra = network_spectra(path)
    assert spectra.layout == expected_layout
    assert len(spectra.layers) + len(spectra.skipped) == int(row["n_tensors"])
    by_name = {layer.name: layer for layer in layer_matrices(path, layout=expected_layout).layers}
    assert [s.name for s in spectra.layers] == list(by_name)
    with np.load(path) as archive:
        for spectrum in spectra.layers:
            tensor = archive[spectrum.name]
            reference = svd_eigenvalues(as_layer_matrix(tensor, expected_layout))
            kept = reference[reference > 1e-12 * reference[-1]]
            assert spectrum.eigenvalues.size == kept.size, spectrum.name
            np.testing.assert_allclose(spectrum.eigenvalues, kept, rtol=1e-5, err_msg=spectrum.name)
