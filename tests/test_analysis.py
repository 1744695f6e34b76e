"""One network against its conjugate ensemble: fields, every analysis option, invariances of
the canonical form, stream keys, the decay interval."""

import numpy as np
import pytest
from _helpers import ZOO, random_mlp, require_shared
from transforms import reversed_order, to_hwio, to_ohwi

from nnequiv import analyze
from nnequiv.analysis import stream_keys
from nnequiv.csd import bootstrap_indices, decay_rate, layer_csd_curves, sample_curves
from nnequiv.ensembles import conjugate_ensemble
from nnequiv.errors import InputError
from nnequiv.settings import Settings
from nnequiv.spectra import layer_spectra, normalize_spectrum

NET = random_mlp([60, 50, 40, 30], seed=1)
CANONICAL = Settings().canonical


def small(**options):
    return analyze(NET, **{"realizations": 4, "seed": 2, **options})


def cnn_state(seed=0):
    """A small CNN in PyTorch layout, with a depthwise kernel and a dense head."""
    rng = np.random.default_rng(seed)
    return {
        "conv1.weight": rng.standard_t(3, (16, 3, 3, 3)),
        "dw.weight": rng.standard_normal((16, 1, 3, 3)),
        "pw.weight": rng.standard_t(4, (24, 16, 1, 1)),
        "conv2.weight": rng.standard_normal((32, 24, 3, 3)),
        "fc.weight": rng.standard_t(3, (10, 32)),
    }


def test_fields_json_and_reproducibility():
    analysis = small()
    assert len(analysis.layers) == 3 and analysis.csd.shape == (4, 240)
    assert analysis.layer_points.shape == (4, 3, 9)
    assert np.isfinite(analysis.decay.alpha) and 0 <= analysis.decay.r2 <= 1
    assert analysis.p_net.sum() == pytest.approx(1.0) and analysis.p_circ.sum() == pytest.approx(1)
    layer = analysis.layers[0]
    assert layer.matrix_shape == (50, 60) and layer.order == 50 and layer.stream[0] == 50
    assert 0 < layer.total_variation <= 2
    payload = analysis.to_dict()
    assert payload["decay"]["alpha"] == analysis.decay.alpha and len(payload["curves"]["x"]) == 240
    assert payload["version"] == analysis.version and payload["settings"]["seed"] == 2
    assert payload["layers"][0]["name"] == "fc0.weight"
    assert len(repr(analysis)) < 200 and "3 layers" in repr(analysis)
    assert np.array_equal(small().csd, analysis.csd)  # one seed fixes every number


def test_pooled_curves_follow_the_definitions():
    analysis = small()
    values = [normalize_spectrum(s.eigenvalues) for s in layer_spectra(NET, canonical=CANONICAL)]
    pooled = np.concatenate(values)
    assert analysis.tail_start == pytest.approx(np.quantile(pooled, 0.9))
    mean = analysis.csd.mean(axis=0)
    assert analysis.decay.alpha == decay_rate(analysis.edges, mean, analysis.tail_start).alpha
    far = analysis.edges[:-1] >= np.quantile(pooled, 0.99)
    assert analysis.conjugacy == pytest.approx(mean[far].max())


def test_layer_points_and_per_layer_numbers():
    analysis = small()
    spectra = layer_spectra(NET, canonical=CANONICAL)
    values = [normalize_spectrum(s.eigenvalues) for s in spectra]
    keys = stream_keys(values, [s.order for s in spectra])
    conjugates = conjugate_ensemble([s.order for s in spectra], "CUE", 4, 2, keys=keys)
    for index, (own, conjugate) in enumerate(zip(values, conjugates)):
        signed = layer_csd_curves(own, conjugate, analysis.edges, signed=True)
        expected = sample_curves(signed, analysis.edges, Settings().locations)
        np.testing.assert_array_equal(analysis.layer_points[:, index], expected)
        absolute = layer_csd_curves(own, conjugate, analysis.edges).mean(axis=0)
        record = analysis.layers[index]
        assert record.total_variation == absolute[0]
        expected_alpha = decay_rate(analysis.edges, absolute, np.quantile(own, 0.9)).alpha
        assert record.alpha == pytest.approx(expected_alpha, nan_ok=True)


@pytest.mark.parametrize(
    "option,value,changed",
    [
        ("ensemble", "COE", "csd"),
        ("seed", 3, "csd"),
        ("normalization", "mean", "tail_start"),
        ("normalization", "none", "tail_start"),
        ("canonical", "raw", "tail_start"),
        ("fingerprint", "absolute", "layer_points"),
        ("tail_quantile", 0.5, "tail_start"),
        ("locations", (0.1, 1.0, 10.0), "layer_points"),
        ("grid", (1e-4, 1e4, 100), "csd"),
    ],
)
def test_every_analysis_option_changes_the_numbers(option, value, changed):
    default, other = small(), small(**{option: value})
    before, after = getattr(default, changed), getattr(other, changed)
    assert np.shape(before) != np.shape(after) or not np.allclose(before, after)
    assert getattr(other.settings, option) == getattr(Settings(**{option: value}), option)


def test_fingerprints_signed_and_absolute():
    signed, absolute = small().layer_points, small(fingerprint="absolute").layer_points
    assert (absolute >= 0).all() and (signed < 0).any()
    assert np.all(np.abs(signed) <= absolute + 1e-12)


def test_rtol_decides_what_counts_as_zero():
    rng = np.random.default_rng(4)
    low_rank = {"w": rng.standard_normal((30, 3)) @ rng.standard_normal((3, 40))}
    assert analyze(low_rank, realizations=2).layers[0].n_dropped == 27
    assert analyze(low_rank, realizations=2, rtol=1e-40).layers[0].n_dropped < 27


def test_realizations_and_jobs():
    assert small(realizations=6).csd.shape == (6, 240)
    serial = analyze(cnn_state(), realizations=3)
    for jobs in (2, -1):  # -1: every core
        parallel = analyze(cnn_state(), realizations=3, n_jobs=jobs, cache_dir=False)
        assert np.array_equal(serial.csd, parallel.csd)
        assert np.array_equal(serial.layer_points, parallel.layer_points)


def row_scaled(state, seed=0):
    """Every output channel multiplied by its own positive factor (a folded BatchNorm)."""
    rng = np.random.default_rng(seed)
    return {
        k: v * rng.uniform(0.1, 10, v.shape[0]).reshape((-1,) + (1,) * (v.ndim - 1))
        for k, v in state.items()
    }


def test_canonical_form_ignores_output_channel_scales_and_raw_does_not():
    state, scaled = cnn_state(), row_scaled(cnn_state())
    rows = [analyze(s, realizations=3) for s in (state, scaled)]
    raw = [analyze(s, realizations=3, canonical="raw") for s in (state, scaled)]
    np.testing.assert_array_equal(rows[0].layer_points, rows[1].layer_points)
    np.testing.assert_array_equal(rows[0].csd, rows[1].csd)
    assert not np.array_equal(raw[0].layer_points, raw[1].layer_points)


@pytest.mark.parametrize("rewrite", [to_hwio, to_ohwi, reversed_order])
def test_layouts_and_layer_order_give_the_same_layers(rewrite):
    state = cnn_state()
    reference, other = analyze(state, realizations=3), analyze(rewrite(state), realizations=3)
    assert [r.matrix_shape for r in reference.layers] == [
        r.matrix_shape for r in sorted(other.layers, key=lambda r: list(state).index(r.name))
    ]
    by_name = {r.name: r for r in other.layers}
    for record in reference.layers:
        assert by_name[record.name].stream == record.stream
        assert by_name[record.name].total_variation == pytest.approx(record.total_variation)
    assert other.layout == {to_hwio: "hwio", to_ohwi: "ohwi", reversed_order: "oihw"}[rewrite]
    np.testing.assert_allclose(other.csd, reference.csd, atol=1e-12)


def test_stream_keys_do_not_depend_on_layer_order():
    values = [np.array([1.0, 2.0]), np.array([3.0, 1.0]), np.array([1.0, 1.0, 5.0])]
    orders = [2, 2, 3]
    keys = stream_keys(values, orders)
    assert keys == [(2, 0), (2, 1), (3, 0)]
    assert stream_keys(values[::-1], orders[::-1]) == keys[::-1]


def test_decay_interval_is_a_replicate_interval():
    analysis = small()
    d = analysis.decay
    low, high = d.interval
    assert low < d.alpha < high and d.realisation_sd > 0
    # Student t 97.5 % quantile with R - 1 = 3 degrees of freedom, times sqrt(2)
    assert (high - low) / 2 == pytest.approx(3.18245 * np.sqrt(2) * d.realisation_sd, rel=1e-5)
    resamples = bootstrap_indices(2, 4)
    replicates = [
        decay_rate(analysis.edges, analysis.csd[p].mean(0), analysis.tail_start).alpha
        for p in resamples
    ]
    assert d.realisation_sd == pytest.approx(np.std(replicates, ddof=1) * np.sqrt(4 / 3))


def test_bad_options_are_refused():
    for options, message in [
        ({"realizations": 0}, "realizations"),
        ({"ensemble": "GOE"}, "ensemble"),
        ({"seed": -1}, "seed"),
        ({"canonical": "columns"}, "canonical"),
        ({"tail_quantile": 1.5}, "tail_quantile"),
        ({"locations": (-1.0,)}, "locations"),
        ({"colour": "red"}, "unknown option 'colour'"),
        ({"realisations": 3}, r"unknown option 'realisations' \(did you mean 'realizations'\?\)"),
        ({"n_job": 2}, r"did you mean 'n_jobs'\?"),  # the keywords beside the options too
        ({"level": "pooled"}, "'level' is a distance setting"),
        ({"mixture": 0.3}, "connectomes only"),
        ({"n_jobs": "x"}, "n_jobs must be a non-zero integer or None, got 'x'"),
        ({"settings": {"realizations": 3}}, "settings must be a nnequiv.Settings, got dict"),
    ]:
        with pytest.raises(InputError, match=message):
            small(**options)


def test_zero_and_subnormal_layers():
    """An all-zero layer has no spectrum and is skipped; a subnormal one is a layer like any
    other in the scale-free canonical form, and skipped in the raw form, where its squares
    underflow."""
    state = dict(NET, dead=np.zeros((20, 30)), tiny=np.full((20, 30), 1e-320))
    analysis = analyze(state, realizations=2)
    reasons = {s.name: s.reason for s in analysis.skipped}
    assert "all zero or subnormal" in reasons["dead"] and "tiny" not in reasons
    tiny = next(layer for layer in analysis.layers if layer.name == "tiny")
    assert tiny.n_eigenvalues == 1 and tiny.n_dropped == 19  # a constant matrix: rank 1
    raw = analyze(state, realizations=2, canonical="raw")
    assert "all zero or subnormal" in {s.name: s.reason for s in raw.skipped}["tiny"]
    with pytest.raises(InputError, match="no eligible layer"):
        analyze({"dead": np.zeros((20, 30))}, realizations=2)


@pytest.mark.slow
def test_alpha_interval_covers_other_seeds_on_the_cifar_resnets():
    """At least 8 of seeds 0-9 give an alpha inside the interval reported at seed 0."""
    zoo = require_shared(ZOO)
    for name in ("resnet20_cifar10", "resnet44_cifar10", "resnet56_cifar10"):
        first = analyze(zoo / f"{name}.npz", seed=0)
        low, high = first.decay.interval
        alphas = [first.decay.alpha] + [
            analyze(zoo / f"{name}.npz", seed=seed).decay.alpha for seed in range(1, 10)
        ]
        inside = sum(low <= alpha <= high for alpha in alphas)
        assert inside >= 8, (name, low, high, alphas)


def test_layers_frame_and_notebook_view():
    pandas = pytest.importorskip("pandas")
    analysis = small()
    table = analysis.layers_frame()
    assert isinstance(table, pandas.DataFrame) and list(table.index) == [
        "fc0.weight",
        "fc1.weight",
        "fc2.weight",
    ]
    assert table.loc["fc1.weight", "order"] == 40
    assert table.loc["fc0.weight", "total_variation"] == analysis.layers[0].total_variation
    assert set(table.columns) >= {"alpha", "canonical", "stream", "matrix_shape"}
    view = analysis._repr_html_()
    assert view.startswith("<table>") and "fc2.weight" in view and "alpha" in view
    hostile = analyze({"<script>x</script>": NET["fc0.weight"]}, realizations=2)
    assert "<script>" not in hostile._repr_html_()


def test_stream_keys_break_equal_sums_by_the_sum_of_squares():
    flat, spread = np.array([2.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0])  # both sum to 6
    assert stream_keys([spread, flat], [3, 3]) == [(3, 1), (3, 0)]
    assert stream_keys([flat, spread], [3, 3]) == [(3, 0), (3, 1)]
    assert stream_keys([spread, spread, flat], [3, 4, 3]) == [(3, 1), (4, 0), (3, 0)]


def orthogonal_network(seed=0):
    """Signed permutation layers: every normalised eigenvalue is exactly 1."""
    rng = np.random.default_rng(seed)
    return {
        f"p{n}": 3.0 * rng.choice([-1.0, 1.0], n)[:, None] * np.eye(n)[rng.permutation(n)]
        for n in (20, 30, 40)
    }


def test_conjugacy_counts_the_location_at_the_99th_percentile():
    """Every normalised eigenvalue is 1 = e_120, so the 99th percentile lies on that edge and
    the conjugacy is the largest mean CSD from x = 1 on, that bin included."""
    analysis = analyze(orthogonal_network(), realizations=3)
    assert analysis.tail_start == 1.0 and analysis.edges[120] == 1.0
    mean = analysis.csd.mean(axis=0)
    assert analysis.conjugacy == mean[120:].max() == mean[120] > 1
    assert analysis.p_net[120] == 1.0


def test_conjugacy_is_zero_where_no_location_lies_beyond_the_99th_percentile():
    net = {k: 1e7 * v for k, v in NET.items()}  # raw eigenvalues far above the grid
    analysis = analyze(net, realizations=2, canonical="raw", normalization="none")
    assert analysis.tail_start > analysis.edges[-2] and analysis.conjugacy == 0.0


def test_the_notebook_view_shows_shapes_and_the_first_20_layers():
    rng = np.random.default_rng(0)
    many = {f"layer{i:02d}": rng.standard_normal((6, 9)) for i in range(21)}
    view = analyze(many, realizations=2)._repr_html_()
    assert "<td>layer00</td><td>6 x 9</td><td>6</td>" in view
    assert "layers (first 20 of 21)" in view and "layer19" in view and "layer20" not in view
    twenty = analyze(dict(list(many.items())[:20]), realizations=2)._repr_html_()
    assert "first 20" not in twenty and "layer19" in twenty


def test_mean_conjugate_density_and_band_follow_the_realizations():
    analysis = small()
    assert analysis.csd_band[0].tolist() == analysis.csd.min(axis=0).tolist()
    assert analysis.csd_band[1].tolist() == analysis.csd.max(axis=0).tolist()
    assert np.array_equal(analysis.csd_mean, analysis.csd.mean(axis=0))
    curves = analysis.to_dict()["curves"]
    assert curves["csd_low"] == analysis.csd_band[0].tolist()
    assert curves["csd_mean"] == analysis.csd_mean.tolist()
    # p_circ is the mean of the R conjugate densities: the CSD at e_0 of each realization is
    # its total variation from p_net, so the mean density is within their mean of p_net
    assert np.abs(analysis.p_circ - analysis.p_net).sum() <= analysis.csd[:, 0].mean() + 1e-12


def test_layer_total_variation_counts_eigenvalues_below_the_grid():
    """A layer with normalised eigenvalues below e_0 = 1e-6 (counted in the first bin): its
    total variation is its mean CSD at e_0, which includes that bin."""
    rng = np.random.default_rng(5)
    u, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    v, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    singular = np.concatenate([np.linspace(0.5, 2.0, 30), np.linspace(1e-5, 3e-5, 10)])
    graded = {"graded": u @ np.diag(singular) @ v.T}  # 10 eigenvalues near 1e-10 of the median
    analysis = analyze(graded, realizations=3, canonical="raw")
    (spectrum,) = layer_spectra(graded, canonical="raw")
    own = normalize_spectrum(spectrum.eigenvalues)
    assert (own < analysis.edges[0]).sum() == 10
    (conjugate,) = conjugate_ensemble([40], "CUE", 3, 0, keys=[(40, 0)])
    curves = layer_csd_curves(own, conjugate, analysis.edges)
    record = analysis.layers[0]
    assert record.total_variation == curves.mean(axis=0)[0] > curves.mean(axis=0)[1]


def test_progress_follows_the_layers_and_is_silent_for_a_cached_analysis(tmp_path):
    rng = np.random.default_rng(3)
    network = {"first": rng.standard_normal((12, 9)), "second": rng.standard_normal((9, 7))}
    calls = []
    analyze(network, realizations=3, cache_dir=tmp_path, progress=lambda *a: calls.append(a))
    assert calls[-1] == (2, None, "second") and (1, None, "first") in calls
    calls.clear()
    analyze(network, realizations=3, cache_dir=tmp_path, progress=lambda *a: calls.append(a))
    assert calls == []
