"""Layer spectra: Gram eigenvalues against SVD, normalisation, cache; the real zoo."""

import csv

import numpy as np
import pytest
from _helpers import ZOO, random_mlp, require_shared

from nnequiv.layers import as_layer_matrix, layer_matrices
from nnequiv.spectra import (
    balancing_scales,
    canonical_form,
    canonical_matrix,
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


def zoo_rows():
    path = ZOO / "MANIFEST.csv"
    if not path.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{ZOO} not present"))]
    return list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))


@pytest.mark.slow
@pytest.mark.parametrize("row", zoo_rows(), ids=lambda r: r["file"] if r else "zoo")
def test_zoo_models_load_with_inferred_layout_and_match_svd(row):
    path = require_shared(ZOO) / row["file"]
    expected_layout = "hwio" if "TF.js" in row["loader"] else "oihw"
    spectra = network_spectra(path, canonical="raw")
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


def column_norms_of_balance(matrix):
    """Row and column norms the balanced form must have: every non-zero row 1, every non-zero
    column sqrt(N'/M') (method item 13)."""
    live_rows, live_columns = np.any(matrix != 0, axis=1), np.any(matrix != 0, axis=0)
    rows = live_rows.astype(float)
    columns = live_columns * np.sqrt(live_rows.sum() / live_columns.sum())
    return rows, columns


@pytest.mark.parametrize("shape", [(6, 9), (9, 6), (7, 7)])
def test_balanced_form_has_unit_rows_and_equal_columns(shape):
    rng = np.random.default_rng(sum(shape))
    matrix = rng.standard_t(3, shape)
    matrix[2] = 0.0  # a dead neuron and a dead input stay dead; the rest is balanced
    matrix[:, 1] = 0.0
    balanced, form = canonical_form(matrix, "balanced")
    assert form == "balanced" and balanced.dtype == np.float64
    rows, columns = column_norms_of_balance(matrix)
    np.testing.assert_allclose(np.linalg.norm(balanced, axis=1), rows, rtol=1e-9, atol=0)
    np.testing.assert_allclose(np.linalg.norm(balanced, axis=0), columns, rtol=1e-9, atol=0)
    # the balance is a positive diagonal scaling of W: the zero pattern and signs are kept
    assert np.array_equal(np.sign(balanced), np.sign(matrix))
    ratio = np.where(matrix != 0, balanced / np.where(matrix != 0, matrix, 1.0), 0.0)
    live = np.ix_(np.any(matrix != 0, axis=1), np.any(matrix != 0, axis=0))
    rank_one = ratio[live]  # r_i c_j: rank one
    assert np.linalg.svd(rank_one, compute_uv=False)[1] < 1e-9 * np.abs(rank_one).max()


def test_balanced_form_is_the_same_for_rescaled_rows_columns_and_the_transpose():
    rng = np.random.default_rng(11)
    matrix = rng.standard_t(3, (8, 12))
    rescaled = rng.uniform(0.1, 10, 8)[:, None] * matrix * rng.uniform(0.1, 10, 12)[None, :]
    reference = canonical_matrix(matrix, "balanced")
    np.testing.assert_allclose(canonical_matrix(rescaled, "balanced"), reference, rtol=1e-8)
    # W^T (12 x 8) has unit rows, so it is the transpose scaled by sqrt(12 / 8)
    transposed = canonical_matrix(matrix.T, "balanced")
    np.testing.assert_allclose(transposed, np.sqrt(12 / 8) * reference.T, rtol=1e-8)


def test_a_single_entry_is_balanced_to_one():
    matrix = np.zeros((3, 4))
    matrix[1, 2] = -7.5
    balanced, form = canonical_form(matrix, "balanced")
    assert form == "balanced" and balanced[1, 2] == pytest.approx(-1.0) and balanced.sum() == -1.0
    assert np.array_equal(canonical_matrix(np.zeros((3, 4)), "balanced"), np.zeros((3, 4)))


def test_factors_more_than_1e12_apart_fall_back_to_unit_rows():
    """Columns whose scales span 10^3 (squared factors 10^6 apart) are balanced; 10^7 (10^14
    apart, beyond BALANCE_RANGE = 10^12) get the rows form (method item 13)."""
    rng = np.random.default_rng(4)
    matrix = rng.standard_t(3, (8, 12))
    for span, expected in [(1e3, "balanced"), (1e7, "rows")]:
        spread = matrix * np.logspace(0, np.log10(span), 12)[None, :]
        form = canonical_form(spread, "balanced")[1]
        assert form == expected, span
    balanced = canonical_matrix(matrix * np.logspace(0, 3, 12)[None, :], "balanced")
    np.testing.assert_allclose(balanced, canonical_matrix(matrix, "balanced"), rtol=1e-7)


def test_a_zero_pattern_without_balance_falls_back_to_unit_rows():
    triangular = np.array([[2.0, 3.0, 1.0], [0.0, 4.0, 1.0], [0.0, 0.0, 5.0]])
    rows, form = canonical_form(triangular, "balanced")
    assert form == "rows"
    np.testing.assert_allclose(rows, canonical_matrix(triangular, "rows"), rtol=1e-15)


def test_rows_form_scales_each_row_to_unit_norm_and_raw_keeps_w():
    matrix = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1e-170, 0.0, -1e-170]])
    rows, form = canonical_form(matrix, "rows")
    assert form == "rows"
    root = np.sqrt(0.5)  # the last row's squares underflow unless it is scaled first
    np.testing.assert_allclose(rows, [[0.6, 0.8, 0.0], [0.0, 0.0, 0.0], [root, 0.0, -root]])
    raw, form = canonical_form(matrix.astype(np.float32), "raw")
    assert form == "raw" and raw.dtype == np.float64
    assert np.array_equal(raw, matrix.astype(np.float32).astype(np.float64))
    with pytest.raises(ValueError, match="canonical form"):
        canonical_form(matrix, "columns")


def test_gram_eigenvalues_scale_with_the_square_of_the_weights():
    matrix = np.random.default_rng(3).standard_normal((6, 10))
    reference, _, _ = gram_eigenvalues(matrix)
    for scale in (1e-4, 1.0, 1e5):
        values, dropped, method = gram_eigenvalues(scale * matrix)
        assert method == "gram" and dropped == 0
        np.testing.assert_allclose(values, scale**2 * reference, rtol=1e-10)


def spectrum_matrix(singular_values, rows=7, columns=9, seed=0):
    """A rows x columns matrix with the given singular values."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((rows, rows)))
    v, _ = np.linalg.qr(rng.standard_normal((columns, columns)))
    s = np.zeros((rows, columns))
    s[np.arange(len(singular_values)), np.arange(len(singular_values))] = singular_values
    return u @ s @ v.T


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e4])
def test_rtol_drops_eigenvalues_below_rtol_times_the_largest(scale):
    """Gram route: a rank-4 matrix keeps its 4 eigenvalues and drops the numerical zeros;
    SVD route (kept eigenvalues over 8 decades): the rtol boundary is rtol * max."""
    low_rank = scale * spectrum_matrix([3.0, 2.0, 1.0, 0.5])
    values, dropped, method = gram_eigenvalues(low_rank)
    assert method == "gram" and (values.size, dropped) == (4, 3)
    np.testing.assert_allclose(values, scale**2 * np.array([0.25, 1, 4, 9]), rtol=1e-10)
    graded = scale * spectrum_matrix([1.0, 1e-4, 1e-5, 1e-7])  # eigenvalues 1 ... 1e-14
    # kept down to 1e-8 * max: accurate on the Gram route; from 1e-10 * max on: SVD
    for rtol, kept, route in [(1e-12, 3, "svd"), (1e-13, 3, "svd"), (1e-15, 4, "svd"),
                              (1e-9, 2, "gram")]:  # fmt: skip
        values, dropped, method = gram_eigenvalues(graded, rtol=rtol)
        assert method == route and (values.size, dropped) == (kept, 7 - kept), rtol
        expected = scale**2 * np.array([1e-14, 1e-10, 1e-8, 1.0])[-kept:]
        np.testing.assert_allclose(values, expected, rtol=1e-6)


def test_normalisation_divides_by_the_median_or_the_mean():
    values = np.array([1.0, 2.0, 3.0, 10.0])
    assert normalize_spectrum(values, "median").tolist() == [0.4, 0.8, 1.2, 4.0]
    assert normalize_spectrum(values, "mean").tolist() == [0.25, 0.5, 0.75, 2.5]
    assert normalize_spectrum(values, "none").tolist() == values.tolist()
    assert normalize_spectrum(np.array([]), "median").size == 0
    assert normalize_spectrum(np.array([5.0]), "median").tolist() == [1.0]


def test_layer_order_is_the_smaller_dimension():
    state = {"tall": np.random.default_rng(0).standard_normal((12, 5))}
    (spectrum,) = layer_spectra(state)
    assert spectrum.matrix_shape == (12, 5) and spectrum.order == 5
    assert spectrum.eigenvalues.size == 5


def test_rtol_sets_the_numerical_zeros_dropped():
    rng = np.random.default_rng(6)
    state = {"w": rng.standard_normal((10, 3)) @ rng.standard_normal((3, 14))}
    runs = {rtol: layer_spectra(state, rtol=rtol)[0] for rtol in (1e-12, 1e-40)}
    assert runs[1e-12].n_dropped == 7 and runs[1e-40].n_dropped < 7


def test_cache_dir_is_deprecated_ignored_and_writes_nothing(tmp_path):
    state = random_mlp([12, 9, 5], seed=5)
    for spectra in (layer_spectra, network_spectra):  # the warning points at the caller
        with pytest.warns(DeprecationWarning, match="cache_dir of layer_spectra") as caught:
            spectra(state, cache_dir=tmp_path / "spectra")
        assert [w.filename for w in caught] == [__file__]
    with pytest.warns(DeprecationWarning, match="cache_dir of layer_spectra"):
        given = layer_spectra(state, cache_dir=tmp_path / "spectra")
    assert not (tmp_path / "spectra").exists()
    for a, b in zip(given, layer_spectra(state), strict=True):
        np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)


def test_balancing_scales_balance_rows_and_columns_or_give_none():
    w = np.random.default_rng(14).standard_normal((6, 9)) * np.arange(1, 10)
    w[2] = 0.0  # a zero row gets the factor 0
    r, c = balancing_scales(w)
    balanced = r[:, None] * w * c[None, :]
    rows, columns = np.linalg.norm(balanced, axis=1), np.linalg.norm(balanced, axis=0)
    np.testing.assert_allclose(np.delete(rows, 2), 1.0, rtol=1e-8)
    np.testing.assert_allclose(columns, np.sqrt(5 / 9), rtol=1e-8)
    assert r[2] == 0.0 and (np.delete(r, 2) > 0).all() and (c > 0).all()
    assert balancing_scales(np.array([[1.0, 1.0], [0.0, 1.0]])) is None  # no total support
