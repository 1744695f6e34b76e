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


@dataclass(repr=False)
class Verdict:
    """Equivalence of two networks at accuracy eps (method item 11)."""

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
    version: str = __version__

    def __repr__(self) -> str:
        return (
            f"Verdict({self.a!r} vs {self.b!r}: {self.verdict}, d={self.distance:.4f} "
            f"[{self.spread[0]:.4f}, {self.spread[1]:.4f}], eps={self.eps:.4f})"
        )

    def _repr_html_(self) -> str:
        rows = [
            ("a", self.a),
            ("b", self.b),
            ("level", self.level),
            ("distance", self.distance),
            ("spread", f"[{self.spread[0]:.4f}, {self.spread[1]:.4f}]"),
            ("eps", f"{self.eps:.4f} ({self.eps_source})"),
            ("verdict", self.verdict),
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
            "verdict": self.verdict,
            "explanation": None if self.explanation is None else self.explanation.to_dict(),
            "settings": self.settings.to_dict(),
            "distance_settings": self.distance_settings.to_dict(),
            "version": self.version,
        }


@dataclass(repr=False)
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
        Pairwise distance, its spread and the eps of each pair.
    verdicts : numpy.ndarray
        Pairwise verdict strings (the diagonal is "equivalent").
    eps : float
        Summary: the median eps over the pairs.
    classes : list of list of str
        Connected components of the pairs judged "equivalent".
    linkage : numpy.ndarray
        Average-linkage tree of the distances (SciPy format).
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
    version: str = __version__

    def __repr__(self) -> str:
        return (
            f"Classes({len(self.models)} networks, {len(self.classes)} "
            f"class{'es' if len(self.classes) != 1 else ''}, {self.level} level, "
            f"median eps={self.eps:.4f})"
        )

    def _repr_html_(self) -> str:
        body = [(m, int(label) + 1) for m, label in zip(self.models, self.labels_)]
        caption = f"{len(self.classes)} classes of {len(self.models)} networks ({self.level})"
        return html_table(caption, table=(["network", "class"], body))

    def to_frame(self):
        """One row per network (pandas DataFrame): its class and its distance to each."""
        return frame(
            [
                {"model": m, "class": int(label), **dict(zip(self.models, row))}
                for m, label, row in zip(self.models, self.labels_, self.distance)
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
            "verdicts": self.verdicts.tolist(),
            "classes": self.classes,
            "labels": self.labels_.tolist(),
            "linkage": self.linkage.tolist(),
            "settings": self.settings.to_dict(),
            "distance_settings": self.distance_settings.to_dict(),
            "version": self.version,
        }


@dataclass
class Match:
    """One library network and its distance to the query."""

    path: str
    distance: float
    spread: tuple[float, float]
    eps: float
    verdict: str

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "distance": self.distance,
            "spread": list(self.spread),
            "eps": self.eps,
            "verdict": self.verdict,
        }


@dataclass(repr=False)
class Identification:
    """Library networks ranked by distance to a query, nearest first."""

    query: str
    level: str
    matches: list[Match]
    eps_source: str = "calibrated"
    settings: Settings = field(default_factory=Settings)
    distance_settings: DistanceSettings = field(default_factory=DistanceSettings)
    version: str = __version__

    def __repr__(self) -> str:
        best = f", nearest {self.matches[0].path!r}" if self.matches else ""
        return f"Identification({self.query!r}, {len(self.matches)} matches{best})"

    def _repr_html_(self) -> str:
        header = ["rank", "network", "distance", "eps", "verdict"]
        body = [
            (rank, m.path, m.distance, m.eps, m.verdict) for rank, m in enumerate(self.matches, 1)
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
            "matches": [m.to_dict() for m in self.matches],
            "settings": self.settings.to_dict(),
            "distance_settings": self.distance_settings.to_dict(),
            "version": self.version,
        }
