"""The design tolerance (method items 11, 12 and 15): fitted on labelled families, checked by
leaving one family out, shipped as a small JSON file with its provenance.

A :class:`Calibration` holds the two numbers the design verdict needs: the weight w of the
structural part of the design distance ``D = sqrt(d_spectral^2 + (w d_structural)^2)`` and
the tolerance ``eps_design``. :func:`fit_tolerance` chooses them from the design-distance
parts of labelled networks; :func:`leave_one_family_out` says how well that rule does on
families it did not see. Everything here works on distance matrices; the analyses are made
by :func:`nnequiv.equivalence.calibrate`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from importlib import resources

import numpy as np

from nnequiv._version import __version__
from nnequiv.errors import InputError

__all__ = [
    "Calibration",
    "load_calibration",
    "fit_tolerance",
    "leave_one_family_out",
    "design_classes",
    "STRUCTURE_WEIGHTS",
    "MAX_FALSE_RATE",
]

#: The weights of the structural part that the calibration chooses from.
STRUCTURE_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)
#: The largest share of pairs of different families that the tolerance may call equivalent
#: (mean over the labelled sets).
MAX_FALSE_RATE = 0.01
#: The calibration shipped with nnequiv (package data).
SHIPPED = "calibration.json"


@dataclass(frozen=True)
class Calibration:
    """A design tolerance and the structural weight it was fitted with.

    Attributes
    ----------
    eps_design : float
        Design distances up to this are "equivalent" (method item 11).
    structure_weight : float
        The weight w of the structural part of the design distance (method item 15).
    name : str
        Where it came from: ``"shipped"``, or the file it was read from.
    provenance : dict
        What it was fitted on (sets, families, networks, settings, nnequiv version).
    cross_validation : dict
        Leave-one-family-out error rates, per labelled set.
    """

    eps_design: float
    structure_weight: float
    name: str = "given"
    provenance: dict = field(default_factory=dict)
    cross_validation: dict = field(default_factory=dict)

    def __post_init__(self):
        for label, value in (("eps_design", self.eps_design), ("structure_weight",
                             self.structure_weight)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
                raise InputError(f"calibration {self.name}: {label} must be a number")
            if not math.isfinite(float(value)) or float(value) < 0:
                raise InputError(f"calibration {self.name}: {label} must be finite and >= 0")
        object.__setattr__(self, "eps_design", float(self.eps_design))
        object.__setattr__(self, "structure_weight", float(self.structure_weight))

    def to_dict(self) -> dict:
        """The fields, in order, as JSON-ready values (the calibration file's content)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary(self) -> dict:
        """The numbers a result records: tolerance, weight and where they came from."""
        return {
            "eps_design": self.eps_design,
            "structure_weight": self.structure_weight,
            "name": self.name,
        }

    def save(self, path) -> None:
        """Write the calibration as JSON."""
        data = {"nnequiv_calibration": 1, "version": __version__, **self.to_dict()}
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.write("\n")


def load_calibration(source=None) -> Calibration:
    """The calibration in ``source``: a :class:`Calibration` as it is, the path of a JSON
    file written by :meth:`Calibration.save` (``nnequiv calibrate``), or None for the one
    shipped with nnequiv.

    Raises
    ------
    InputError
        A file that is missing, not JSON or not a calibration.
    """
    if isinstance(source, Calibration):
        return source
    if source is None:
        text = resources.files("nnequiv").joinpath(SHIPPED).read_text(encoding="utf-8")
        return _from_json(text, "shipped")
    name = os.fspath(source)
    try:
        with open(name, encoding="utf-8") as handle:
            text = handle.read(1 << 22)
    except OSError as error:
        raise InputError(f"{name}: cannot read the calibration ({error.strerror})") from None
    return _from_json(text, name)


def _from_json(text: str, name: str) -> Calibration:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise InputError(f"{name}: not a calibration file (not JSON)") from None
    if not isinstance(data, dict) or data.get("nnequiv_calibration") != 1:
        raise InputError(f"{name}: not a calibration file written by 'nnequiv calibrate'")
    if "eps_design" not in data or "structure_weight" not in data:
        raise InputError(f"{name}: a calibration needs eps_design and structure_weight")
    provenance, checked = data.get("provenance") or {}, data.get("cross_validation") or {}
    if not isinstance(provenance, dict) or not isinstance(checked, dict):
        raise InputError(f"{name}: provenance and cross_validation must be JSON objects")
    return Calibration(data["eps_design"], data["structure_weight"], name, provenance, checked)


# ---- fitting ------------------------------------------------------------------------------


def _pairs(labels: Sequence, sets: Sequence, keep=None):
    """Upper-triangle pairs (i, j) within one labelled set, with ``same`` family flags;
    ``keep(i, j)`` selects pairs."""
    labels, sets = np.asarray(labels), np.asarray(sets)
    i, j = np.triu_indices(len(labels), 1)
    mask = sets[i] == sets[j]
    if keep is not None:
        mask &= keep(i, j)
    i, j = i[mask], j[mask]
    return i, j, labels[i] == labels[j], sets[i]


def _rates(values, same, set_of, eps: float) -> tuple[float, float]:
    """Mean over sets of the share of same-family pairs within ``eps`` (true rate) and of
    different-family pairs within ``eps`` (false rate); sets without such pairs are left
    out of that mean."""
    true, false = [], []
    for name in np.unique(set_of):
        here = set_of == name
        inside = values[here] <= eps
        if (same & here).any():
            true.append(inside[same[here]].mean())
        if (~same & here).any():
            false.append(inside[~same[here]].mean())
    return (float(np.mean(true)) if true else math.nan, float(np.mean(false)) if false else 0.0)


def _largest_eps(values, same, set_of, max_false_rate: float) -> float:
    """The tolerance: midway between the first different-family distance that would raise
    the false rate above ``max_false_rate`` and the largest pair distance below it (the
    widest margin); every pair distance when none would."""
    candidates = np.unique(values[~same]) if (~same).any() else np.unique(values)
    low, high = -1, len(candidates)  # the false rate only grows with eps: bisect
    while high - low > 1:
        middle = (low + high) // 2
        if _rates(values, same, set_of, candidates[middle])[1] > max_false_rate:
            high = middle
        else:
            low = middle
    if high == len(candidates):
        return float(values.max())
    breaking = float(candidates[high])
    below = values[values < breaking]
    return 0.5 * (float(below.max()) + breaking) if below.size else 0.5 * breaking


def fit_tolerance(
    spectral: np.ndarray,
    structural: np.ndarray,
    labels: Sequence,
    sets: Sequence | None = None,
    *,
    weights: Sequence[float] = STRUCTURE_WEIGHTS,
    max_false_rate: float = MAX_FALSE_RATE,
    keep=None,
) -> tuple[float, float, dict]:
    """Choose the structural weight and the design tolerance from labelled networks.

    For each weight w of ``weights``, ``eps(w)`` is the largest tolerance at which at most
    ``max_false_rate`` of the pairs of different families (mean over the labelled sets) are
    within it, placed midway between the first different-family distance beyond it and the
    largest pair distance below that (the widest margin); the weight whose
    tolerance holds the largest share of same-family pairs wins (ties: the smaller weight).
    Only pairs within one set are counted (``sets``: a set name per network; default one
    set).

    Parameters
    ----------
    spectral, structural : numpy.ndarray
        The two parts of the design distance between every pair of networks (square,
        symmetric), the structural one unweighted.
    labels : sequence
        The family of each network.
    keep : callable, optional
        ``keep(i, j)`` selects the pairs (index arrays) that count; the others are left out.

    Returns
    -------
    structure_weight, eps_design : float
    rates : dict
        ``true_rate`` and ``false_rate`` on these pairs at the chosen values.
    """
    sets = np.zeros(len(labels), dtype=int) if sets is None else np.asarray(sets)
    i, j, same, set_of = _pairs(labels, sets, keep)
    if not same.any():
        raise InputError("calibration needs at least one family with two networks")
    best = None
    for weight in weights:
        values = np.hypot(spectral[i, j], weight * structural[i, j])
        eps = _largest_eps(values, same, set_of, max_false_rate)
        true, false = _rates(values, same, set_of, eps)
        if best is None or true > best[2] + 1e-12:
            best = (float(weight), eps, true, false)
    weight, eps, true, false = best
    return weight, eps, {"true_rate": true, "false_rate": false}


def leave_one_family_out(spectral, structural, labels, sets=None, **fit_options) -> dict:
    """Leave-one-family-out check of :func:`fit_tolerance`, with its arguments (``weights``
    and ``max_false_rate`` among ``fit_options``).

    Each family (of each set) is held out in turn: the weight and tolerance are fitted on the
    pairs that involve none of its networks, then its own pairs (same family) and its pairs
    with the other networks of its set (different families) are judged. Returns, per set, the
    share of its same-family pairs judged equivalent (``true_rate``), of its different-family
    pairs judged equivalent (``false_rate``; each such pair is judged in the folds of both its
    families, and both count), the pair counts, and each fold's weight and tolerance.
    """
    if "keep" in fit_options:
        raise TypeError(
            "leave_one_family_out() chooses each fold's pairs itself; keep is not taken"
        )
    labels = np.asarray(labels)
    sets = np.zeros(len(labels), dtype=int) if sets is None else np.asarray(sets)
    families = sorted({(str(s), str(f)) for s, f in zip(sets, labels)})
    folds = []
    judged: dict = {}
    for set_name, family in families:
        held = (sets.astype(str) == set_name) & (labels.astype(str) == family)
        weight, eps, _ = fit_tolerance(
            spectral, structural, labels, sets, keep=lambda i, j: ~held[i] & ~held[j],
            **fit_options,
        )  # fmt: skip
        i, j, same, _ = _pairs(labels, sets, lambda i, j: held[i] | held[j])
        values = np.hypot(spectral[i, j], weight * structural[i, j])
        counts = judged.setdefault(set_name, {"same": [0, 0], "different": [0, 0]})
        for kind, mask in (("same", same), ("different", ~same)):
            counts[kind][0] += int((values[mask] <= eps).sum())
            counts[kind][1] += int(mask.sum())
        folds.append({"set": set_name, "family": family, "structure_weight": weight, "eps": eps})
    out = {}
    for set_name, counts in judged.items():
        (same_in, same_all), (diff_in, diff_all) = counts["same"], counts["different"]
        out[set_name] = {
            "true_rate": same_in / same_all if same_all else math.nan,
            "false_rate": diff_in / diff_all if diff_all else math.nan,
            "same_family_pairs": same_all,
            "different_family_judgements": diff_all,
        }
    return {"sets": out, "folds": folds}


def design_classes(distance: np.ndarray, eps_design: float) -> tuple[np.ndarray, np.ndarray]:
    """Classes of networks at the design tolerance (method item 12) and the tree.

    The average-linkage tree (UPGMA) of the design distances is cut at ``eps_design``: two
    groups merge while the mean distance between their members is at most the tolerance,
    so one close pair cannot chain two families together. Classes are numbered by their
    first member. Returns the labels and the SciPy linkage matrix.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    count = len(distance)
    if count < 2:
        return np.zeros(count, dtype=int), np.zeros((0, 4))
    tree = linkage(squareform(np.asarray(distance, dtype=float), checks=False), "average")
    raw = fcluster(tree, eps_design, criterion="distance")
    first: dict = {}
    for label in raw:
        first.setdefault(label, len(first))
    return np.array([first[label] for label in raw], dtype=int), tree
