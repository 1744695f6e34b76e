"""Layer-resolved CSD features with a fixed, set-independent scale (issue 10, points 1-3).

Emulates, outside the library, the changes proposed for the default analysis so that they
can be measured before they are made:

* a canonical form of the weights: every output row of a layer matrix scaled to unit L2 norm
  (invariance to per-output-channel scaling, e.g. BatchNorm folding);
* depthwise kernels stored as TensorFlow ``kh x kw x C x 1`` read as the C x kh*kw layer that
  PyTorch's ``C x 1 x kh x kw`` gives (today they are 1-row matrices, skipped);
* distances on the layer points with a fixed scale: the tail-mass coordinates in their natural
  unit (probabilities), times optional per-location weights, and ``log n`` times a fixed weight.

The curves are computed once per network, ensemble and seed on every grid edge from 1e-4 to
1e4, so that any choice of locations, fingerprint and scale is a cheap slice of them. With
the raw form, no depthwise conversion, the default locations and the default seed they equal
``nnequiv.analyze(...).layer_points`` and ``.csd`` exactly (checked by ``check_against_library``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.spatial.distance import cdist

from nnequiv.csd import DEFAULT_GRID, csd_curve, log_grid, spectral_density, survival_difference
from nnequiv.ensembles import conjugate_ensemble, half_cauchy_cdf
from nnequiv.layers import as_layer_matrix, layer_matrices, resolved_layout
from nnequiv.loading import OUT_LAST
from nnequiv.spectra import network_spectra, normalize_spectrum

#: Grid edges kept for the layer curves: 10^-4 .. 10^4 (20 edges per decade on the default grid).
STORED_RANGE = (1e-4, 1e4)


# ---- weights in the proposed forms ----------------------------------------------------------


@dataclass(frozen=True)
class WeightForm:
    """How the layer matrices are formed before their spectra are taken."""

    #: Scale every output row of a layer matrix to unit L2 norm.
    unit_rows: bool = False
    #: Read TensorFlow depthwise kernels ``kh x kw x C x 1`` as C x kh*kw layers.
    depthwise: bool = False

    @property
    def name(self) -> str:
        return ("rows" if self.unit_rows else "raw") + ("+dw" if self.depthwise else "")


def is_tf_depthwise(shape: tuple[int, ...], layout: str) -> bool:
    """A TensorFlow depthwise kernel ``kh x kw x C x 1`` in an out-last network."""
    return layout == OUT_LAST and len(shape) == 4 and shape[-1] == 1 and shape[2] >= 2


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` with every row scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def layer_dict(source, form: WeightForm) -> dict[str, np.ndarray]:
    """The N x M layer matrices (rows = output units) of ``source`` in ``form``, in file order.

    The eligible tensors and the layout are the library's (``nnequiv.layers``); with
    ``form.depthwise`` the TensorFlow depthwise kernels it skips are added as C x kh*kw.
    """
    weights, layout = resolved_layout(source)
    found = layer_matrices(weights, layout=layout)
    eligible = {layer.name: layer.matrix for layer in found.layers}
    wanted = set(eligible)
    if form.depthwise:
        wanted |= {s.name for s in found.skipped if is_tf_depthwise(s.shape, layout)}
    out = {}
    for name, array in weights.tensors():
        if name not in wanted:
            continue
        if name in eligible:
            matrix = np.asarray(eligible[name], dtype=np.float64)
        else:  # kh x kw x C x 1 -> C x 1 x kh x kw (PyTorch layout) -> C x kh*kw
            matrix = as_layer_matrix(np.transpose(array, (2, 3, 0, 1)), "oihw").astype(float)
        out[name] = unit_rows(matrix) if form.unit_rows else matrix
    return out


@lru_cache(maxsize=256)
def layer_spectra(source: str, form: WeightForm) -> tuple:
    """Layer spectra (``nnequiv.spectra.LayerSpectrum`` tuple) of the file ``source`` in
    ``form``, computed once per run (nnequiv keeps no per-layer spectrum cache)."""
    return tuple(network_spectra(layer_dict(source, form), canonical="raw").layers)


# ---- curves ---------------------------------------------------------------------------


@dataclass
class Curves:
    """A network's CSD curves against one conjugate ensemble draw.

    Attributes
    ----------
    label : str
    orders : numpy.ndarray
        Order n of each layer, shape ``(L,)``.
    shapes : numpy.ndarray
        ``(N, M)`` of each layer, shape ``(L, 2)``.
    locations : numpy.ndarray
        The stored grid edges, shape ``(G,)``.
    signed, absolute : numpy.ndarray
        Per realization and layer, the signed tail-mass difference and the CSD of the layer
        against its conjugate matrix at ``locations``, shape ``(R, L, G)``.
    pooled : numpy.ndarray
        Pooled CSD of each realization on the whole grid (method item 7), shape ``(R, bins)``.
    """

    label: str
    orders: np.ndarray
    shapes: np.ndarray
    locations: np.ndarray = field(repr=False)
    signed: np.ndarray = field(repr=False)
    absolute: np.ndarray = field(repr=False)
    pooled: np.ndarray = field(repr=False)


def network_curves(
    label: str, spectra, seed: int, realizations: int = 10, ensemble: str = "CUE"
) -> Curves:
    """The :class:`Curves` of median-normalised layer spectra (as ``analysis_from_spectra``)."""
    edges = log_grid(*DEFAULT_GRID)
    keep = (edges[:-1] >= STORED_RANGE[0] * (1 - 1e-9)) & (edges[:-1] <= STORED_RANGE[1] * 1.001)
    normalised = [normalize_spectrum(layer.eigenvalues, "median") for layer in spectra]
    orders = np.array([layer.order for layer in spectra])
    conjugates = conjugate_ensemble(orders.tolist(), ensemble, realizations, seed)
    p_layer = np.array([spectral_density(values, edges) for values in normalised])
    p_conj = np.array(
        [[spectral_density(row, edges) for row in layer] for layer in conjugates]
    ).transpose(1, 0, 2)
    p_net = spectral_density(np.concatenate(normalised), edges)
    p_circ = np.array(
        [
            spectral_density(np.concatenate([layer[r] for layer in conjugates]), edges)
            for r in range(realizations)
        ]
    )
    return Curves(
        label,
        orders,
        np.array([layer.matrix_shape for layer in spectra]),
        edges[:-1][keep],
        survival_difference(p_layer[None], p_conj)[..., keep],
        csd_curve(p_layer[None], p_conj)[..., keep],
        csd_curve(p_net, p_circ),
    )


def location_index(curves: Curves, locations) -> np.ndarray:
    """Indices of the stored edges nearest (in log x) to ``locations``; on the default grid
    this is the library's choice for the default locations."""
    log_stored = np.log10(curves.locations)
    log_wanted = np.log10(np.asarray(locations, float))
    index = np.abs(log_stored[None, :] - log_wanted[:, None]).argmin(axis=1)
    if np.any(np.abs(log_stored[index] - log_wanted) > 0.026):
        raise ValueError(f"locations outside the stored range {STORED_RANGE}: {locations}")
    return index


# ---- scales and distances ------------------------------------------------------------


def tail_mass_sd(locations) -> np.ndarray:
    """``sqrt(F (1 - F))`` at ``locations``, F the half-Cauchy CDF: the standard deviation of
    the conjugate ensemble's tail mass at x, per sqrt(n) (binomial fluctuation)."""
    cdf = half_cauchy_cdf(np.asarray(locations, float))
    return np.sqrt(cdf * (1 - cdf))


@dataclass(frozen=True)
class Scale:
    """A fixed scale of the layer points (set-independent unless ``standardise``).

    A layer point is ``(c_1 S(x_1), ..., c_K S(x_K), w log n)`` with S the signed (or
    absolute) tail-mass curve averaged over the realizations.

    Attributes
    ----------
    locations : tuple of float
        The K locations x_k.
    fingerprint : {"signed", "absolute"}
    order_weight : float
        w, the weight of ``log n``.
    coordinate : {"unit", "theory"}
        c_k = 1 (natural unit: probabilities), or ``c_k = mean_j s_j / s_k`` with
        ``s_k = sqrt(F(x_k)(1 - F(x_k)))`` the conjugate's own tail-mass fluctuation (weights
        normalised to mean 1, so w keeps its meaning).
    standardise : bool
        Today's scale (docs/method.md item 10): every coordinate standardised over the
        single-realization points of the compared set, ``log n`` then times ``order_weight``.
    layer_weight : {"equal", "sqrt_n", "n"}
        Mass of each layer point in its cloud: equal (today), or proportional to ``sqrt(n)``
        or ``n`` (a layer counts by its number of eigenvalues).
    """

    locations: tuple = tuple(np.logspace(-2, 2, 9))
    fingerprint: str = "signed"
    order_weight: float = 0.1
    coordinate: str = "unit"
    standardise: bool = False
    layer_weight: str = "equal"

    def layer_masses(self, orders: np.ndarray) -> np.ndarray:
        """Probability mass of each layer point of a network with layer ``orders``."""
        power = {"equal": 0.0, "sqrt_n": 0.5, "n": 1.0}[self.layer_weight]
        mass = np.asarray(orders, float) ** power
        return mass / mass.sum()

    def coordinate_weights(self) -> np.ndarray:
        if self.coordinate == "unit":
            return np.ones(len(self.locations))
        if self.coordinate == "theory":
            sd = tail_mass_sd(self.locations)
            return sd.mean() / sd
        raise ValueError(f"unknown coordinate weighting {self.coordinate!r}")


def raw_points(curves: Curves, scale: Scale, realizations=slice(None)) -> np.ndarray:
    """Unscaled layer points ``(S(x_1..x_K), log n)`` of the chosen realizations, shape
    ``(R', L, K + 1)``."""
    curve = curves.signed if scale.fingerprint == "signed" else curves.absolute
    values = curve[realizations][..., location_index(curves, scale.locations)]
    log_n = np.broadcast_to(np.log(curves.orders)[None, :, None], values.shape[:2] + (1,))
    return np.concatenate([values, log_n], axis=2)


def feature_scale(curve_set: list[Curves], scale: Scale) -> tuple[np.ndarray, np.ndarray]:
    """Centre and divisor of the layer coordinates: fixed (0 and 1/weights), or today's
    standardisation over the single-realization points of ``curve_set``."""
    weights = np.append(scale.coordinate_weights(), scale.order_weight)
    if not scale.standardise:
        with np.errstate(divide="ignore"):
            return np.zeros(len(weights)), 1.0 / weights
    stacked = np.concatenate(
        [raw_points(c, scale).reshape(-1, len(weights)) for c in curve_set], axis=0
    )
    std = stacked.std(axis=0)
    std[std == 0] = 1.0
    return stacked.mean(axis=0), std / weights


def cloud(curves: Curves, scale: Scale, centre_divisor, realizations=slice(None)) -> np.ndarray:
    """The scaled layer cloud: realization means of the layer points, shape ``(L, K + 1)``."""
    centre, divisor = centre_divisor
    return (raw_points(curves, scale, realizations).mean(axis=0) - centre) / divisor


def energy_distance(x: np.ndarray, y: np.ndarray, p=None, q=None) -> float:
    """``sqrt(2 E|X - Y| - E|X - X'| - E|Y - Y'|)`` between two point clouds (rows), with
    point masses ``p`` and ``q`` (default: equal)."""
    p = np.full(len(x), 1 / len(x)) if p is None else p
    q = np.full(len(y), 1 / len(y)) if q is None else q
    value = 2 * p @ cdist(x, y) @ q - p @ cdist(x, x) @ p - q @ cdist(y, y) @ q
    return float(np.sqrt(max(value, 0.0)))


def cloud_distance(a: Curves, b: Curves, scale: Scale, centre_divisor, picks=None) -> float:
    """Energy distance between the scaled layer clouds of two networks, the layer points
    weighted as ``scale.layer_weight`` says; ``picks`` chooses the realizations."""
    chosen = slice(None) if picks is None else picks
    return energy_distance(
        cloud(a, scale, centre_divisor, chosen),
        cloud(b, scale, centre_divisor, chosen),
        scale.layer_masses(a.orders),
        scale.layer_masses(b.orders),
    )


def layer_distance_matrix(curve_set: list[Curves], scale: Scale) -> np.ndarray:
    """Energy distances between the scaled layer clouds of every pair."""
    centre_divisor = feature_scale(curve_set, scale)
    return _pairwise(curve_set, lambda a, b: cloud_distance(a, b, scale, centre_divisor))


def pooled_distance_matrix(curve_set: list[Curves]) -> np.ndarray:
    """The paper's pooled distance ``max_x |CSD_A(x) - CSD_B(x)|`` of realization means."""
    means = [c.pooled.mean(axis=0) for c in curve_set]
    return _pairwise(means, lambda a, b: float(np.abs(a - b).max()))


def shape_distance_matrix(curve_set: list[Curves]) -> np.ndarray:
    """Energy distance between clouds of layer shapes ``(log N, log M)`` (natural log units):
    the architecture as written, no weight values."""
    return _pairwise([np.log(c.shapes) for c in curve_set], energy_distance)


def _pairwise(items: list, distance) -> np.ndarray:
    out = np.zeros((len(items), len(items)))
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            out[i, j] = out[j, i] = distance(items[i], items[j])
    return out


def noise_floor(curves: Curves, scale: Scale) -> float:
    """Distance expected between two independent analyses of one network (fixed scale):
    between the means of the two halves of its realizations, divided by sqrt(2)."""
    half = curves.signed.shape[0] // 2
    centre_divisor = feature_scale([curves], scale)
    first = cloud(curves, scale, centre_divisor, slice(0, half))
    second = cloud(curves, scale, centre_divisor, slice(half, 2 * half))
    mass = scale.layer_masses(curves.orders)
    return energy_distance(first, second, mass, mass) / np.sqrt(2.0)


def distance_spread(
    a: Curves, b: Curves, scale: Scale, seed: int = 0, resamples: int = 32
) -> tuple[float, float]:
    """2.5-97.5 % range of the layer distance over bootstrap resamples of the realizations
    (the same resample for both networks), widened to contain the distance (method item 11)."""
    centre_divisor = feature_scale([a, b], scale)
    distance = cloud_distance(a, b, scale, centre_divisor)
    count = min(a.signed.shape[0], b.signed.shape[0])
    picks = np.random.default_rng(seed).integers(0, count, size=(resamples, count))
    samples = [cloud_distance(a, b, scale, centre_divisor, p) for p in picks]
    low, high = np.quantile(samples, [0.025, 0.975])
    return float(min(low, distance)), float(max(high, distance))
