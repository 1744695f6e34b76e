"""One network against its conjugate circular ensemble (method items 6-8 and 10).

:func:`analysis_of_weights` computes the layer spectra of a network (or a connectome's Mixed
Matrix Ensemble) in canonical form, draws the conjugate ensemble and returns an
:class:`Analysis`: the pooled densities and CSD curves, the decay rate with its interval, and
the layer-resolved points that the distances of :mod:`nnequiv.distances` compare. The
computation only: :func:`nnequiv.analyze` (:mod:`nnequiv._pipeline`) opens the source and
looks the analysis up in the cache first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnequiv._display import frame, html_table
from nnequiv._version import __version__
from nnequiv.csd import (
    DecayFit,
    bin_counts,
    bootstrap_indices,
    csd_from_counts,
    decay_rate,
    decay_with_interval,
    layer_csd_curves,
    log_grid,
    sample_curves,
)
from nnequiv.ensembles import conjugate_ensemble
from nnequiv.layers import SkippedTensor
from nnequiv.loading import WeightSource
from nnequiv.settings import LoadOptions, Settings
from nnequiv.spectra import LayerSpectrum, Progress, network_spectra, normalize_spectrum

__all__ = [
    "Analysis",
    "LayerRecord",
    "analysis_of_weights",
    "analysis_from_spectra",
    "stream_keys",
]


@dataclass(frozen=True)
class LayerRecord:
    """One layer of an analysis.

    Attributes
    ----------
    name : str
        Tensor name in the file.
    shape : tuple of int
        Tensor shape as stored.
    matrix_shape : tuple of int
        ``(N, M)`` of the layer matrix.
    order : int
        ``n = min(N, M)``, the order of its conjugate circular matrix.
    n_eigenvalues, n_dropped : int
        Eigenvalues kept, and numerical zeros dropped.
    method : str
        ``"gram"`` or ``"svd"`` (method item 2).
    canonical : str
        The canonical form applied (method item 13; ``"rows"`` where a balance was asked for
        but the layer's zero pattern admits none).
    stream : tuple of int
        ``(n, rank)``: the key of its conjugate draws (method item 14).
    total_variation : float
        The layer's CSD at the start of the grid, mean over realizations: the total variation
        distance between its normalised spectrum and its conjugate matrix's.
    alpha : float
        Decay rate of the layer's own mean CSD, fitted like the network's (item 8) from the
        tail quantile of the layer's spectrum; NaN where fewer than 3 bins remain.
    point : tuple of float
        The layer's point: its curve (signed tail-mass difference or absolute CSD, per the
        fingerprint) at each location, mean over the realizations (item 10).
    """

    name: str
    shape: tuple[int, ...]
    matrix_shape: tuple[int, int]
    order: int
    n_eigenvalues: int
    n_dropped: int
    method: str
    canonical: str
    stream: tuple[int, int]
    total_variation: float
    alpha: float
    point: tuple[float, ...] = ()

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "matrix_shape": list(self.matrix_shape),
            "order": self.order,
            "n_eigenvalues": self.n_eigenvalues,
            "n_dropped": self.n_dropped,
            "method": self.method,
            "canonical": self.canonical,
            "stream": list(self.stream),
            "total_variation": self.total_variation,
            "alpha": self.alpha,
            "point": list(self.point),
        }


@dataclass(frozen=True, repr=False)
class Analysis:
    """A network's Mixed Matrix Ensemble against its conjugate circular ensemble.

    Attributes
    ----------
    source : str
        Where the network came from.
    settings : Settings
        The analysis settings (all of them change numbers).
    layers : list of LayerRecord
        The layers, in the order the file stores them.
    edges : numpy.ndarray
        Shared log-spaced bin edges; CSD index k sits at ``edges[k]``.
    p_net, p_circ : numpy.ndarray
        Pooled network density and mean conjugate density (mass per bin).
    csd : numpy.ndarray
        CSD of each realization, shape ``(R, bins)``.
    decay : DecayFit
        Tail decay of the mean CSD, with its interval.
    tail_start : float
        The ``tail_quantile`` quantile of the pooled normalised spectrum.
    conjugacy : float
        Largest mean CSD from the 99th percentile of the pooled spectrum on.
    layer_points : numpy.ndarray
        Layer-resolved curve values at the settings' locations, shape ``(R, layers,
        locations)`` (method item 10; the order enters at the distance).
    layout : str
        Kernel layout the tensors were read in.
    skipped : list of SkippedTensor
        Tensors that are not layers, with the reason.
    version : str
        The nnequiv version that computed it.
    path : str or None
        The file it was read from, where discovery found one (``source`` is then its label).

    An analysis is frozen: a relabelled one is a copy (``dataclasses.replace``).
    """

    source: str
    settings: Settings
    layers: list[LayerRecord]
    edges: np.ndarray
    p_net: np.ndarray
    p_circ: np.ndarray
    csd: np.ndarray
    decay: DecayFit
    tail_start: float
    conjugacy: float
    layer_points: np.ndarray
    layout: str = ""
    skipped: list[SkippedTensor] = field(default_factory=list)
    version: str = __version__
    path: str | None = None

    @property
    def orders(self) -> np.ndarray:
        """The order n of every layer."""
        return np.array([layer.order for layer in self.layers], dtype=int)

    @property
    def csd_mean(self) -> np.ndarray:
        return self.csd.mean(axis=0)

    @property
    def csd_band(self) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise minimum and maximum of the CSD over realizations."""
        return self.csd.min(axis=0), self.csd.max(axis=0)

    def __repr__(self) -> str:
        low, high = self.decay.interval
        return (
            f"Analysis({self.source!r}, {len(self.layers)} layers, {self.settings.ensemble} x "
            f"{self.settings.realizations}, alpha={self.decay.alpha:.3f} "
            f"[{low:.3f}, {high:.3f}], conjugacy={self.conjugacy:.3f})"
        )

    def _repr_html_(self) -> str:
        low, high = self.decay.interval
        summary = [
            ("source", self.source),
            ("layers", len(self.layers)),
            ("conjugate", f"{self.settings.ensemble} x {self.settings.realizations}"),
            ("alpha", f"{self.decay.alpha:.4f} [{low:.4f}, {high:.4f}]"),
            ("tail start", self.tail_start),
            ("conjugacy", self.conjugacy),
            ("nnequiv", self.version),
        ]
        header = ["layer", "N x M", "n", "TV", "alpha"]
        body = [
            (r.name, f"{r.matrix_shape[0]} x {r.matrix_shape[1]}", r.order)
            + (r.total_variation, r.alpha)
            for r in self.layers[:20]
        ]
        more = f" (first 20 of {len(self.layers)})" if len(self.layers) > 20 else ""
        return html_table("Analysis", summary) + html_table(f"layers{more}", table=(header, body))

    def layers_frame(self):
        """One row per layer (pandas DataFrame): name, shapes, order, counts, method,
        canonical form, stream key, total variation and alpha (method items 1, 2, 8, 13)."""
        return frame([layer.to_dict() for layer in self.layers], index="name")

    def to_dict(self, curves: bool = True) -> dict:
        """Everything as JSON-ready values (``curves=False`` leaves out the curves)."""
        out = {
            "source": self.source,
            "path": self.path,
            "version": self.version,
            "settings": self.settings.to_dict(),
            "layout": self.layout,
            "n_layers": len(self.layers),
            "n_eigenvalues": int(sum(layer.n_eigenvalues for layer in self.layers)),
            "decay": self.decay.to_dict(),
            "tail_start": float(self.tail_start),
            "conjugacy": float(self.conjugacy),
            "layers": [layer.to_dict() for layer in self.layers],
            "skipped": [
                {"name": s.name, "shape": list(s.shape), "reason": s.reason} for s in self.skipped
            ],
        }
        if curves:
            low, high = self.csd_band
            out["curves"] = {
                "x": self.edges[:-1].tolist(),
                "p_net": self.p_net.tolist(),
                "p_circ": self.p_circ.tolist(),
                "csd_mean": self.csd_mean.tolist(),
                "csd_low": low.tolist(),
                "csd_high": high.tolist(),
            }
        return out


def analysis_of_weights(
    weights: WeightSource,
    settings: Settings,
    load: LoadOptions,
    n_jobs: int | None = None,
    progress: Progress | None = None,
) -> Analysis:
    """The :class:`Analysis` of opened weights (:func:`nnequiv._sources.open_source`): their
    layer spectra (chosen and read with ``load``), then :func:`analysis_from_spectra`."""
    spectra = network_spectra(
        weights, load.include, load.exclude, load.layout, rtol=settings.rtol,
        canonical=settings.canonical,
        n_jobs=n_jobs, progress=progress, max_memory=load.max_memory,
    )  # fmt: skip
    return analysis_from_spectra(
        spectra.source,
        spectra.layers,
        settings,
        n_jobs,
        layout=spectra.layout,
        skipped=spectra.skipped,
    )


def stream_keys(normalised: list[np.ndarray], orders) -> list[tuple[int, int]]:
    """``(n, rank)`` of every layer: its rank among the layers of the same order n, sorted by
    the sum and then the sum of squares of their normalised spectra (ties by position).

    The keys do not depend on the order in which a file lists its layers, and equal spectra
    get equal keys in every network, so equal layers meet equal circular matrices.
    """
    statistic = [(float(np.sum(v)), float(np.sum(v * v))) for v in normalised]
    ranked = sorted(range(len(orders)), key=lambda i: (int(orders[i]), statistic[i]))
    keys: list[tuple[int, int]] = [(0, 0)] * len(orders)
    rank: dict[int, int] = {}
    for i in ranked:
        n = int(orders[i])
        keys[i] = (n, rank.get(n, 0))
        rank[n] = rank.get(n, 0) + 1
    return keys


def analysis_from_spectra(
    label: str,
    layer_spectra: list[LayerSpectrum],
    settings: Settings,
    n_jobs: int | None = None,
    *,
    layout: str = "",
    skipped: list[SkippedTensor] | None = None,
) -> Analysis:
    """The :class:`Analysis` of already computed layer spectra (read in ``layout``, with the
    tensors ``skipped`` that are not layers)."""
    edges = log_grid(*settings.grid)
    normalised = [
        normalize_spectrum(layer.eigenvalues, settings.normalization) for layer in layer_spectra
    ]
    orders = [layer.order for layer in layer_spectra]
    keys = stream_keys(normalised, orders)
    conjugates = conjugate_ensemble(
        orders, settings.ensemble, settings.realizations, settings.seed, keys=keys, n_jobs=n_jobs
    )
    pooled = np.concatenate(normalised)
    counts_net = bin_counts(pooled, edges)
    counts_circ = np.array(
        [
            bin_counts(np.concatenate([layer[r] for layer in conjugates]), edges)
            for r in range(settings.realizations)
        ]
    )
    csd = csd_from_counts(counts_net, counts_circ)
    p_net = counts_net / pooled.size
    tail_start, far_start = np.quantile(pooled, [settings.tail_quantile, 0.99])
    far_tail = edges[:-1] >= far_start
    conjugacy = float(csd.mean(axis=0)[far_tail].max()) if far_tail.any() else 0.0
    resamples = bootstrap_indices(settings.seed, settings.realizations)
    points, records = [], []
    for spectrum, values, conjugate, key in zip(layer_spectra, normalised, conjugates, keys):
        absolute = layer_csd_curves(values, conjugate, edges)
        curves = (
            layer_csd_curves(values, conjugate, edges, signed=True)
            if settings.fingerprint == "signed"
            else absolute
        )
        points.append(sample_curves(curves, edges, settings.locations))
        mean_absolute = absolute.mean(axis=0)
        point = tuple(float(v) for v in points[-1].mean(axis=0))
        own_tail = float(np.quantile(values, settings.tail_quantile))
        records.append(
            LayerRecord(
                spectrum.name,
                tuple(int(d) for d in spectrum.shape),
                tuple(int(d) for d in spectrum.matrix_shape),
                spectrum.order,
                int(spectrum.eigenvalues.size),
                int(spectrum.n_dropped),
                spectrum.method,
                spectrum.canonical,
                key,
                float(mean_absolute[0]),
                decay_rate(edges, mean_absolute, own_tail).alpha,
                point,
            )
        )
    return Analysis(
        source=label,
        settings=settings,
        layers=records,
        edges=edges,
        p_net=p_net,
        p_circ=(counts_circ / counts_circ.sum(axis=1, keepdims=True)).mean(axis=0),
        csd=csd,
        decay=decay_with_interval(edges, csd, float(tail_start), resamples),
        tail_start=float(tail_start),
        conjugacy=conjugacy,
        layer_points=np.stack(points, axis=1),
        layout=layout,
        skipped=list(skipped or []),
    )
