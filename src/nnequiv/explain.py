"""Why two networks are at their distance: each layer's share of the layer-level distance and
where the pooled curves differ most (docs/method.md, "Explaining a verdict").

The squared energy distance of two clouds splits exactly into one term per point:
``E = 2 mean|X - Y| - mean|X - X'| - mean|Y - Y'| = sum_i a_i + sum_j b_j`` with
``a_i = (mean_j |x_i - y_j| - mean_k |x_i - x_k|) / L_A`` and the same for the points of B.
A layer far from every layer of the other network, and near its own, has a large share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnequiv.analysis import Analysis
from nnequiv.distances import _point_distances as _pairwise
from nnequiv.distances import layer_cloud
from nnequiv.settings import DistanceSettings

__all__ = ["LayerContribution", "Explanation", "explain"]


@dataclass(frozen=True, kw_only=True)
class LayerContribution:
    """One layer's part in a layer-level distance.

    Attributes
    ----------
    network : str
        ``"a"`` or ``"b"``.
    layer : str
        Its tensor name.
    share : float
        Its term of the squared distance, as a fraction of it (the shares of all layers of
        both networks sum to 1; a negative share pulls the networks together).
    coordinate : str
        The coordinate where it lies farthest from the other network's layers (their
        median): ``"S(x=...)"`` (the tail-mass difference to its conjugate matrix at a
        location) or ``"log n"``.
    value, other : float
        That coordinate for this layer, and its median over the other network's layers.
    nearest : str
        The nearest layer of the other network (in layer-point space).
    """

    network: str
    layer: str
    share: float
    coordinate: str
    value: float
    other: float
    nearest: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def sentence(self) -> str:
        if self.coordinate == "log n":
            orders = np.exp([self.value, self.other])
            what = f"order n = {orders[0]:.0f}, the other network's layers {orders[1]:.0f}"
        else:
            what = (
                f"tail mass beyond x = {self.coordinate[4:-1]} minus its conjugate's "
                f"{self.value:+.3f}, the other network's layers {self.other:+.3f}"
            )
        # a negative share: the layer lies nearer the other network's layers than its own
        closer = ", brings the networks closer" if self.share < 0 else ""
        return (
            f"{self.layer} ({self.share:.0%} of d^2{closer}): {what} (median); nearest there: "
            f"{self.nearest}"
        )


@dataclass(frozen=True, kw_only=True)
class Explanation:
    """The largest contributions to a distance, largest first (layer level), or the location
    of the largest difference of the mean CSD curves (pooled level)."""

    level: str
    contributions: tuple[LayerContribution, ...] = ()
    location: float = float("nan")
    csd_a: float = float("nan")
    csd_b: float = float("nan")

    def to_dict(self) -> dict:
        if self.level == "pooled":
            return {"level": self.level, "location": self.location, "csd": [self.csd_a, self.csd_b]}
        return {"level": self.level, "layers": [c.to_dict() for c in self.contributions]}

    def lines(self) -> list[str]:
        """One sentence per contribution (or one for the pooled level)."""
        if self.level == "pooled":
            return [
                f"largest CSD difference at x = {self.location:.3g}: "
                f"{self.csd_a:.4f} against {self.csd_b:.4f}"
            ]
        return [f"{c.network}: {c.sentence()}" for c in self.contributions]


def _named_cloud(analysis: Analysis, order_weight: float) -> tuple[list[str], np.ndarray]:
    points = analysis.layer_points.mean(axis=0)
    return [layer.name for layer in analysis.layers], layer_cloud(
        points, analysis.orders, order_weight
    )


def explain(
    a: Analysis, b: Analysis, distance_settings: DistanceSettings | None = None, top: int = 3
) -> Explanation:
    """The ``top`` layers of each network that contribute most to ``d(A, B)`` at the layer
    level, or where the pooled curves differ most. Empty where the distance is 0."""
    chosen = distance_settings or DistanceSettings()
    if chosen.level == "pooled":
        gap = np.abs(a.csd_mean - b.csd_mean)
        k = int(np.argmax(gap))
        return Explanation(
            level="pooled",
            location=float(a.edges[k]),
            csd_a=float(a.csd_mean[k]),
            csd_b=float(b.csd_mean[k]),
        )
    labels = [f"S(x={x:.3g})" for x in a.settings.locations] + ["log n"]
    unit = np.ones(len(labels))
    unit[-1] = chosen.order_weight or 1.0  # report log n itself, not its weighted value
    names_a, cloud_a = _named_cloud(a, chosen.order_weight)
    names_b, cloud_b = _named_cloud(b, chosen.order_weight)
    cross = _pairwise(cloud_a, cloud_b)
    terms_a = (cross.mean(axis=1) - _pairwise(cloud_a, cloud_a).mean(axis=1)) / len(names_a)
    terms_b = (cross.mean(axis=0) - _pairwise(cloud_b, cloud_b).mean(axis=1)) / len(names_b)
    total = terms_a.sum() + terms_b.sum()
    if not total > 0:
        return Explanation(level="layer")
    found = []
    for side, names, cloud, other_names, other_cloud, terms in (
        ("a", names_a, cloud_a, names_b, cloud_b, terms_a),
        ("b", names_b, cloud_b, names_a, cloud_a, terms_b),
    ):
        nearest = _pairwise(cloud, other_cloud).argmin(axis=1)
        typical = np.median(other_cloud, axis=0)
        for i in np.argsort(-terms)[:top]:
            k = int(np.argmax(np.abs(cloud[i] - typical)))  # in distance units
            found.append(
                LayerContribution(
                    network=side,
                    layer=names[i],
                    share=float(terms[i] / total),
                    coordinate=labels[k],
                    value=float(cloud[i, k] / unit[k]),
                    other=float(typical[k] / unit[k]),
                    nearest=other_names[int(nearest[i])],
                )
            )
    found.sort(key=lambda c: -c.share)
    return Explanation(level="layer", contributions=tuple(found))
