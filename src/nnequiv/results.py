"""What the equivalence questions answer (method items 11 and 12): a verdict on a pair, the
classes of a set, the ranked matches of a query; each with its settings and the nnequiv
version, as JSON, a DataFrame and a notebook view."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnequiv._display import frame, html_table
from nnequiv._version import __version__
from nnequiv.explain import Explanation
from nnequiv.settings import DistanceSettings, Settings

__all__ = ["Verdict", "Classes", "Match", "Identification"]


def _interval_text(interval) -> str:
    return f"[{interval[0]:.4f}, {interval[1]:.4f}]"


@dataclass(frozen=True, repr=False, kw_only=True)
class Verdict:
    """Equivalence of two networks at two resolutions (method item 11).

    Attributes
    ----------
    a, b : str
        The two networks.
    level : str
        The level of the same-network distance (``"layer"`` or ``"pooled"``).
    distance, spread, eps, eps_source
        The same-network resolution: the distance, where another seed's distance falls
        (95 %), and the pair's noise floor (or the eps given).
    design_distance, design_spread, eps_design
        The design resolution (method item 15): the design distance, its spread and the
        design tolerance.
    parts : dict
        The two parts of the design distance: ``spectral`` and (weighted) ``structural``.
    verdict : str
        "same network", "equivalent", "not equivalent" or "undecided".
    decided_by : str
        "noise floor", or the part of the design distance that makes most of its square.
    calibration : dict
        The design tolerance, the structural weight and where they came from.
    layer_counts : tuple of int
        The number of layers of each network.
    """

    a: str
    b: str
    level: str
    distance: float
    spread: tuple[float, float]
    eps: float
    eps_source: str
    verdict: str
    settings: Settings = field(default_factory=Settings)
    distance_settings: DistanceSettings = field(default_factory=DistanceSettings)
    explanation: Explanation | None = None
    design_distance: float = float("nan")
    design_spread: tuple[float, float] = (float("nan"), float("nan"))
    eps_design: float = float("nan")
    parts: dict = field(default_factory=dict)
    decided_by: str = ""
    calibration: dict = field(default_factory=dict)
    layer_counts: tuple[int, int] = (0, 0)
    version: str = __version__

    def __repr__(self) -> str:
        return (
            f"Verdict({self.a!r} vs {self.b!r}: {self.verdict}, design D="
            f"{self.design_distance:.4f} {_interval_text(self.design_spread)}, "
            f"eps_design={self.eps_design:.4f}; d={self.distance:.4f} "
            f"{_interval_text(self.spread)}, eps={self.eps:.4f})"
        )

    def _repr_html_(self) -> str:
        rows = [
            ("a", self.a),
            ("b", self.b),
            ("verdict", f"{self.verdict} (decided by {self.decided_by})"),
            ("design distance", self.design_distance),
            ("design spread", _interval_text(self.design_spread)),
            ("eps_design", f"{self.eps_design:.4f} ({self.calibration.get('name', '')})"),
            ("parts", ", ".join(f"{k} {v:.4f}" for k, v in self.parts.items())),
            ("layers", f"{self.layer_counts[0]} vs {self.layer_counts[1]}"),
            (f"distance ({self.level})", self.distance),
            ("spread", _interval_text(self.spread)),
            ("eps (noise floor)", f"{self.eps:.4f} ({self.eps_source})"),
        ]
        if self.explanation is not None:
            rows += [("because", line) for line in self.explanation.lines()]
        return html_table("Verdict", rows)

    def to_dict(self) -> dict:
        return {
            "a": self.a,
            "b": self.b,
            "level": self.level,
            "distance": self.distance,
            "spread": list(self.spread),
            "eps": self.eps,
            "eps_source": self.eps_source,
            "design_distance": self.design_distance,
            "design_spread": list(self.design_spread),
            "eps_design": self.eps_design,
            "parts": dict(self.parts),
            "verdict": self.verdict,
            "decided_by": self.decided_by,
            "layer_counts": list(self.layer_counts),
            "calibration": dict(self.calibration),
            "explanation": None if self.explanation is None else self.explanation.to_dict(),
            "settings": self.settings.to_dict(),
            "distance_settings": self.distance_settings.to_dict(),
            "version": self.version,
        }


@dataclass(frozen=True, repr=False, kw_only=True)
class Classes:
    """Equivalence classes of a set of networks (method item 12).

    Attributes
    ----------
    models : list of str
        The networks (their names: discovery labels), in input order.
    paths : list of str or None
        The file of each network, where it has one.
    labels_ : numpy.ndarray
        Class index of each network (scikit-learn style), classes numbered by first member.
    distance, spread_low, spread_high, eps_pairs : numpy.ndarray
        The same-network resolution: pairwise distance, its spread and the noise-floor eps
        of each pair.
    design_distance, design_spread_low, design_spread_high : numpy.ndarray
        The design resolution: pairwise design distance and its spread (method item 15).
    eps_design : float
        The design tolerance at which the classes are cut.
    verdicts : numpy.ndarray
        Pairwise verdict strings (the diagonal is "same network").
    eps : float
        Summary: the median noise-floor eps over the pairs.
    classes : list of list of str
        The networks of each design class: the average-linkage tree of the design
        distances cut at ``eps_design`` (method item 12).
    linkage : numpy.ndarray
        Average-linkage tree of the design distances (SciPy format).
    calibration : dict
        The design tolerance, the structural weight and where they came from.
    layer_counts : list of int
        The number of layers of each network.
    """

    models: list[str]
    level: str
    distance: np.ndarray
    spread_low: np.ndarray
    spread_high: np.ndarray
    eps_pairs: np.ndarray
    verdicts: np.ndarray
    eps: float
    eps_source: str
    classes: list[list[str]]
    labels_: np.ndarray
    linkage: np.ndarray
    paths: list = field(default_factory=list)
    settings: Settings = field(default_factory=Settings)
    distance_settings: DistanceSettings = field(default_factory=DistanceSettings)
    design_distance: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    design_spread_low: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    design_spread_high: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    eps_design: float = float("nan")
    calibration: dict = field(default_factory=dict)
    layer_counts: list = field(default_factory=list)
    version: str = __version__

    def __repr__(self) -> str:
        return (
            f"Classes({len(self.models)} networks, {len(self.classes)} "
            f"class{'es' if len(self.classes) != 1 else ''} at eps_design="
            f"{self.eps_design:.4f}, {self.level} level, median eps={self.eps:.4f})"
        )

    def _repr_html_(self) -> str:
        body = [(m, int(label) + 1) for m, label in zip(self.models, self.labels_)]
        caption = f"{len(self.classes)} classes of {len(self.models)} networks ({self.level})"
        return html_table(caption, table=(["network", "class"], body))

    def to_frame(self):
        """One row per network (pandas DataFrame): its class and its design distance to
        each."""
        return frame(
            [
                {"model": m, "class": int(label), **dict(zip(self.models, row))}
                for m, label, row in zip(self.models, self.labels_, self.design_distance)
            ],
            index="model",
        )

    def to_dict(self) -> dict:
        return {
            "models": self.models,
            "paths": self.paths,
            "level": self.level,
            "distance": self.distance.tolist(),
            "spread": [self.spread_low.tolist(), self.spread_high.tolist()],
            "eps": self.eps,
            "eps_pairs": self.eps_pairs.tolist(),
            "eps_source": self.eps_source,
            "design_distance": self.design_distance.tolist(),
            "design_spread": [self.design_spread_low.tolist(), self.design_spread_high.tolist()],
            "eps_design": self.eps_design,
            "calibration": dict(self.calibration),
            "layer_counts": list(self.layer_counts),
            "verdicts": self.verdicts.tolist(),
            "classes": self.classes,
            "labels": self.labels_.tolist(),
            "linkage": self.linkage.tolist(),
            "settings": self.settings.to_dict(),
            "distance_settings": self.distance_settings.to_dict(),
            "version": self.version,
        }


@dataclass(frozen=True, kw_only=True)
class Match:
    """One library network and its distances to the query (both resolutions)."""

    path: str
    distance: float
    spread: tuple[float, float]
    eps: float
    verdict: str
    design_distance: float = float("nan")
    design_spread: tuple[float, float] = (float("nan"), float("nan"))
    eps_design: float = float("nan")
    decided_by: str = ""

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "design_distance": self.design_distance,
            "design_spread": list(self.design_spread),
            "eps_design": self.eps_design,
            "distance": self.distance,
            "spread": list(self.spread),
            "eps": self.eps,
            "verdict": self.verdict,
            "decided_by": self.decided_by,
        }


@dataclass(frozen=True, repr=False, kw_only=True)
class Identification:
    """Library networks ranked by design distance to a query, nearest first."""

    query: str
    level: str
    matches: list[Match]
    eps_source: str = "calibrated"
    settings: Settings = field(default_factory=Settings)
    distance_settings: DistanceSettings = field(default_factory=DistanceSettings)
    calibration: dict = field(default_factory=dict)
    version: str = __version__

    def __repr__(self) -> str:
        best = f", nearest {self.matches[0].path!r}" if self.matches else ""
        return f"Identification({self.query!r}, {len(self.matches)} matches{best})"

    def _repr_html_(self) -> str:
        header = ["rank", "network", "design distance", "eps_design", "distance", "eps"]
        header.append("verdict")
        body = [
            (rank, m.path, m.design_distance, m.eps_design, m.distance, m.eps, m.verdict)
            for rank, m in enumerate(self.matches, 1)
        ]
        return html_table(f"nearest to {self.query}", table=(header, body))

    def to_frame(self):
        """One row per match, nearest first (pandas DataFrame)."""
        rows = [{"rank": rank, **m.to_dict()} for rank, m in enumerate(self.matches, 1)]
        return frame(rows, index="rank")

    def to_dict(self) -> dict:
        return {
            "query": self.query,
            "level": self.level,
            "eps_source": self.eps_source,
            "calibration": dict(self.calibration),
            "matches": [m.to_dict() for m in self.matches],
            "settings": self.settings.to_dict(),
            "distance_settings": self.distance_settings.to_dict(),
            "version": self.version,
        }
