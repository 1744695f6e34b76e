"""Equivalence of networks (method items 11 and 12): verdicts, classes and ranked matches.

:func:`compare` decides a pair, :func:`cluster` sorts a set into classes and :func:`identify`
ranks a library by distance to a query. Every distance, spread and calibrated eps of a pair
depends on that pair alone (and the settings), whichever other networks are analysed with it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from nnequiv._display import numbered
from nnequiv._sets import analyze_all, analyze_each, check_sources
from nnequiv._version import __version__
from nnequiv.analysis import Analysis
from nnequiv.calibration import (
    MAX_FALSE_RATE,
    Calibration,
    design_classes,
    fit_tolerance,
    leave_one_family_out,
    load_calibration,
)
from nnequiv.distances import (
    DesignPrint,
    Fingerprint,
    design_distances_with_spread,
    design_part_matrices,
    design_prints,
    distances_with_spread,
    fingerprint,
    fingerprints,
)
from nnequiv.errors import InputError
from nnequiv.explain import explain
from nnequiv.results import Classes, Identification, Match, Verdict
from nnequiv.settings import DistanceSettings

__all__ = [
    "analyze_all",
    "Verdict",
    "Classes",
    "Match",
    "Identification",
    "compare",
    "cluster",
    "identify",
    "decide",
    "pair_eps",
    "judge_pair",
    "calibrate",
    "read_families",
    "VERDICTS",
]

#: The verdicts on a pair (method item 11), from the finest resolution to none.
VERDICTS = ("same network", "equivalent", "not equivalent", "undecided")


def pair_eps(a: Fingerprint, b: Fingerprint) -> float:
    """The calibrated accuracy of a pair (method item 11): the larger of the two networks'
    noise floors."""
    return float(max(a.noise_floor, b.noise_floor))


def decide(distance: float, spread: tuple[float, float], eps: float) -> str:
    """ "undecided" when eps lies inside the spread of d (``low <= eps < high``); otherwise
    "equivalent" when ``d <= eps``, else "not equivalent"."""
    low, high = spread
    if low <= eps < high:
        return "undecided"
    return "equivalent" if distance <= eps else "not equivalent"


def check_eps(eps, name: str = "eps") -> float | None:
    """``eps`` as a float, or None; refuses negative, NaN and infinite values."""
    if eps is None:
        return None
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {eps!r}") from None
    if not np.isfinite(value) or value < 0:
        raise InputError(f"{name} must be a finite number >= 0, got {eps!r}")
    return value


@dataclass(frozen=True)
class PairJudgement:
    """Everything decided about one pair (method item 11): the same-network resolution
    (distance, spread, eps) and the design resolution (design distance, its spread, parts
    and tolerance), the verdict and the part that decided it."""

    distance: float
    spread: tuple[float, float]
    eps: float
    eps_source: str
    design_distance: float
    design_spread: tuple[float, float]
    eps_design: float
    parts: dict
    verdict: str
    decided_by: str

    def shared_with(self, result_type) -> dict:
        """The fields of this judgement that ``result_type`` (:class:`Verdict` or
        :class:`Match`) also has, by name."""
        wanted = {field.name for field in fields(result_type)}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in wanted}


def judge_pair(
    distance: float,
    spread: tuple[float, float],
    eps: float,
    design_distance: float,
    design_spread: tuple[float, float],
    eps_design: float,
    parts: tuple[float, float] = (0.0, 0.0),
) -> tuple[str, str]:
    """The verdict on a pair at two resolutions, and what decided it (method item 11).

    "same network" when the distance is within the pair's noise floor ``eps``;
    "equivalent" when, beyond it, the design distance is within ``eps_design``; "not
    equivalent" when it is beyond; "undecided" wherever the spread of the distance that
    decides straddles its tolerance. What decided: ``"noise floor"`` for the first
    resolution, otherwise the part of the design distance (``"spectral"`` or
    ``"structural"``) that makes most of its square.
    """
    same = decide(distance, spread, eps)
    if same != "not equivalent":
        return ("same network" if same == "equivalent" else "undecided"), "noise floor"
    spectral, structural = parts
    part = "spectral" if spectral >= structural else "structural"
    return decide(design_distance, design_spread, eps_design), part


def _resolve_eps(eps: float | None, a: Fingerprint, b: Fingerprint) -> tuple[float, str]:
    if eps is not None:
        return eps, "given"
    value = pair_eps(a, b)
    if not np.isfinite(value):
        raise InputError(
            "eps cannot be calibrated from a single realization; give eps or realizations >= 2"
        )
    return value, "calibrated"


def _judge(
    a: Fingerprint,
    others: Sequence[Fingerprint],
    eps: float | None,
    design_a: DesignPrint,
    design_others: Sequence[DesignPrint],
    calibration: Calibration,
) -> list[PairJudgement]:
    """The :class:`PairJudgement` of ``a`` with each of ``others``."""
    judged = []
    noise = distances_with_spread(a, others)
    design = design_distances_with_spread(design_a, design_others, calibration.structure_weight)
    for b, (value, spread), (d_value, d_spread, parts) in zip(others, noise, design):
        pair, source = _resolve_eps(eps, a, b)
        verdict, decided_by = judge_pair(
            value, spread, pair, d_value, d_spread, calibration.eps_design, parts
        )
        judged.append(
            PairJudgement(
                value,
                spread,
                pair,
                source,
                d_value,
                d_spread,
                calibration.eps_design,
                {"spectral": parts[0], "structural": parts[1]},
                verdict,
                decided_by,
            )  # fmt: skip
        )
    return judged


def _calibration(calibration, eps_design) -> Calibration:
    """The calibration asked for (None: the shipped one), with ``eps_design`` given in its
    place where there is one."""
    chosen = load_calibration(calibration)
    eps_design = check_eps(eps_design, "eps_design")
    if eps_design is None:
        return chosen
    return replace(chosen, eps_design=eps_design, name=f"given ({chosen.name} weight)")


# ---- the three questions ---------------------------------------------------------------


def compare(
    a, b, *, eps: float | None = None, eps_design: float | None = None, calibration=None, **options
) -> Verdict:
    """Decide whether two networks are equivalent (method items 9-11).

    Parameters
    ----------
    a, b : source, Analysis or Summary
        The networks (anything :func:`nnequiv.analyze` accepts, finished analyses, or
        summaries from a fingerprint index, which must share their analysis settings; an
        index file or :class:`~nnequiv.index.Library` with one network counts as that
        network). A summary gives no explanation (an index keeps no layer names).
    eps : float, optional
        The same-network resolution. When None it is calibrated from the pair alone: the
        larger of the two networks' noise floors (the distance expected between two
        independent analyses of the same network).
    eps_design : float, optional
        The design tolerance: design distances up to it are "equivalent". When None it is
        the calibration's.
    calibration : Calibration, path or None
        The design calibration (:func:`nnequiv.calibration.load_calibration`; None: the one
        shipped with nnequiv, fitted on labelled families): the tolerance and the weight of
        the structural part of the design distance (method item 15).
    **options
        How and where the networks are analysed, as for :func:`analyze_all`: ``settings``,
        ``cache_dir``, ``progress``, ``n_jobs``, ``scheduler`` and the options of
        :func:`nnequiv.analyze`; also the :class:`~nnequiv.settings.DistanceSettings` fields
        ``level`` ("layer" or "pooled") and ``order_weight``.

    Returns
    -------
    Verdict
        At two resolutions (method item 11): the distance of the realization means, its
        spread (where the distance of an analysis with another seed falls, 95 %) and the
        noise-floor eps; the design distance with its parts, spread and tolerance; the
        verdict ("same network", "equivalent", "not equivalent" or "undecided"), what
        decided it, and the layers that contribute most to the distance
        (:func:`nnequiv.explain.explain`).

    Examples
    --------
    Two random networks of one design, and a heavy-tailed one:

    >>> import nnequiv
    >>> from nnequiv.datasets import random_network
    >>> design = [(48, 32), (10, 48)]
    >>> first, second = random_network(design, seed=0), random_network(design, seed=1)
    >>> heavy = random_network([(64, 64)] * 3, tail=1.5)
    >>> nnequiv.compare(first, second, realizations=4, cache_dir=False).verdict
    'same network'
    >>> nnequiv.compare(first, heavy, realizations=4, cache_dir=False).verdict
    'not equivalent'
    """
    eps = check_eps(eps)
    chosen = _calibration(calibration, eps_design)
    analyses, distance_settings = analyze_each([a, b], options)
    if len(analyses) != 2:
        raise InputError(
            f"compare takes two networks; {_named(a)} and {_named(b)} hold {len(analyses)} "
            "(cluster, or identify with a library, takes many)"
        )
    first, second = analyses
    fa, fb = fingerprint(first, distance_settings), fingerprint(second, distance_settings)
    design_a, design_b = design_prints([first, second])
    (judged,) = _judge(fa, [fb], eps, design_a, [design_b], chosen)
    return Verdict(
        a=first.source,
        b=second.source,
        level=distance_settings.level,
        **judged.shared_with(Verdict),
        settings=first.settings,
        distance_settings=distance_settings,
        explanation=_explanation(first, second, distance_settings),
        calibration=chosen.summary(),
        layer_counts=(len(design_a.structure), len(design_b.structure)),
    )


def _named(source) -> str:
    """How compare's errors name a source it was given."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "source", None) or getattr(source, "path", None) or source)


def _explanation(first, second, distance_settings: DistanceSettings):
    """Which layers make the distance (:func:`nnequiv.explain.explain`), or None where a
    network is a summary read from a fingerprint index, which keeps no layer names."""
    if isinstance(first, Analysis) and isinstance(second, Analysis):
        return explain(first, second, distance_settings)
    return None


def cluster(
    sources,
    *,
    eps: float | None = None,
    eps_design: float | None = None,
    calibration=None,
    **options,
) -> Classes:
    """Sort networks into equivalence classes (method item 12).

    The classes are groups of networks of one design: the average-linkage tree of the design
    distances cut at the design tolerance (:func:`nnequiv.calibration.design_classes`), so
    the number of classes is found, not given, and one close pair does not chain two
    families. Every pair also gets its verdict at both resolutions, as from
    :func:`compare` (its own noise-floor eps, the design tolerance). ``sources`` may hold
    finished analyses and fingerprint indexes (paths of index files or
    :class:`~nnequiv.index.Library` objects), whose networks join the set. Options as for
    :func:`compare`.

    Examples
    --------
    A copy joins its original's class; a heavy-tailed network has its own:

    >>> import nnequiv
    >>> from nnequiv.datasets import random_network
    >>> network = random_network([(48, 32), (10, 48)])
    >>> heavy = random_network([(64, 64)] * 3, tail=1.5)
    >>> classes = nnequiv.cluster([network, heavy, network], realizations=4, cache_dir=False)
    >>> classes.labels_.tolist()
    [0, 1, 0]
    """
    eps = check_eps(eps)
    chosen = _calibration(calibration, eps_design)
    analyses, distance_settings = analyze_each(check_sources(sources), options)
    prints = fingerprints(analyses, distance_settings)
    designs = design_prints(analyses)
    count = len(prints)
    distance = np.zeros((count, count))
    low, high, pair_eps_matrix, design, design_low, design_high = (
        np.zeros_like(distance) for _ in range(6)
    )
    verdicts = np.full((count, count), "same network", dtype=object)
    source = "given" if eps is not None else "calibrated"
    for i in range(count):
        pair_eps_matrix[i, i] = eps if eps is not None else prints[i].noise_floor
        row = _judge(prints[i], prints[i + 1 :], eps, designs[i], designs[i + 1 :], chosen)
        for j, judged in enumerate(row, start=i + 1):
            distance[i, j] = distance[j, i] = judged.distance
            low[i, j] = low[j, i] = judged.spread[0]
            high[i, j] = high[j, i] = judged.spread[1]
            pair_eps_matrix[i, j] = pair_eps_matrix[j, i] = judged.eps
            design[i, j] = design[j, i] = judged.design_distance
            design_low[i, j] = design_low[j, i] = judged.design_spread[0]
            design_high[i, j] = design_high[j, i] = judged.design_spread[1]
            verdicts[i, j] = verdicts[j, i] = judged.verdict
    names = numbered([a.source for a in analyses])  # a network given twice: two names
    labels, tree = design_classes(design, chosen.eps_design)
    classes = [[names[i] for i in np.flatnonzero(labels == k)] for k in range(labels.max() + 1)]
    off_diagonal = pair_eps_matrix[~np.eye(count, dtype=bool)] if count > 1 else pair_eps_matrix
    return Classes(
        models=names,
        level=distance_settings.level,
        distance=distance,
        spread_low=low,
        spread_high=high,
        eps_pairs=pair_eps_matrix,
        verdicts=verdicts.astype(str),
        eps=float(np.median(off_diagonal)),
        eps_source=source,
        classes=classes,
        labels_=labels,
        linkage=tree,
        paths=[getattr(a, "path", None) for a in analyses],
        settings=analyses[0].settings,
        distance_settings=distance_settings,
        design_distance=design,
        design_spread_low=design_low,
        design_spread_high=design_high,
        eps_design=chosen.eps_design,
        calibration=chosen.summary(),
        layer_counts=[len(d.structure) for d in designs],
    )


def identify(
    query,
    library,
    *,
    top: int = 5,
    eps: float | None = None,
    eps_design: float | None = None,
    calibration=None,
    **options,
) -> Identification:
    """Which known design is this checkpoint? Rank ``library`` by design distance to
    ``query``.

    Each match carries both resolutions and the verdict, exactly as :func:`compare` would
    give them for that pair. ``library`` is a list of sources, a fingerprint index (the path
    of an index file or a :class:`~nnequiv.index.Library`), or a list mixing them; an index
    is used only with the analysis settings it was built with. Options as for
    :func:`compare`.

    Examples
    --------
    >>> import nnequiv
    >>> from nnequiv.datasets import random_network
    >>> query = random_network([(48, 32), (10, 48)])
    >>> library = [random_network([(64, 64)] * 3, tail=1.5), query]
    >>> found = nnequiv.identify(query, library, realizations=4, cache_dir=False)
    >>> [match.verdict for match in found.matches]
    ['same network', 'not equivalent']
    """
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise InputError(f"top must be an integer >= 1, got {top!r}")
    eps = check_eps(eps)
    chosen = _calibration(calibration, eps_design)
    analyses, distance_settings = analyze_each([query, *check_sources(library)], options)
    target = fingerprint(analyses[0], distance_settings)
    designs = design_prints(analyses)
    matches = []
    source = "given" if eps is not None else "calibrated"
    candidates = fingerprints(analyses[1:], distance_settings)
    judgements = _judge(target, candidates, eps, designs[0], designs[1:], chosen)
    for candidate, judged in zip(candidates, judgements):
        matches.append(Match(path=candidate.source, **judged.shared_with(Match)))
    matches.sort(key=lambda m: (m.design_distance, m.distance))
    return Identification(
        query=analyses[0].source,
        level=distance_settings.level,
        matches=matches[:top],
        eps_source=source,
        settings=analyses[0].settings,
        distance_settings=distance_settings,
        calibration=chosen.summary(),
    )


# ---- calibration of the design tolerance ------------------------------------------------

#: Column names that hold a network's file in a families table, in order of preference.
FILE_COLUMNS = ("file", "path", "name", "network", "model")


def read_families(path) -> dict[str, str]:
    """The family of each network from a CSV table with a header: a ``family`` column and
    the network's file name in a ``file``, ``path``, ``name``, ``network`` or ``model``
    column (as the zoo's MANIFEST.csv has them). Keys are file names without folders."""
    import csv

    name = os.fspath(path)
    try:
        with open(name, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{name}: cannot read the families table ({error})") from None
    columns = rows[0].keys() if rows else []
    key = next((c for c in FILE_COLUMNS if c in columns), None)
    if "family" not in columns or key is None:
        raise InputError(
            f"{name}: a families table needs a 'family' column and one of {', '.join(FILE_COLUMNS)}"
        )
    return {Path(row[key]).name: row["family"] for row in rows if row.get(key)}


def _family_of(analysis, families: dict[str, str], by_stem: dict[str, str]) -> str | None:
    """The family of an analysed network: its file name (or its label) looked up as it is,
    without its suffix, or against the table's names without theirs (``by_stem``)."""
    for candidate in (getattr(analysis, "path", None), analysis.source):
        if candidate is None:
            continue
        name = Path(str(candidate)).name
        stem = Path(name).stem
        for found in (families.get(name), families.get(stem), by_stem.get(stem)):
            if found is not None:
                return found
    return None


def calibrate(
    sources, families, *, max_false_rate: float = MAX_FALSE_RATE, **options
) -> Calibration:
    """Fit the design tolerance to labelled networks (method item 11).

    Parameters
    ----------
    sources : sequence
        The labelled networks (files, folders, analyses, fingerprint indexes).
    families : mapping or path
        The family of each network, by file name (with or without its suffix), or the path
        of a CSV table (:func:`read_families`). Every network must have one.
    max_false_rate : float
        The largest share of pairs of different families that the tolerance may call
        equivalent (default 1 %).
    **options
        As for :func:`compare`, less the distance settings (the design distance has none).

    Returns
    -------
    Calibration
        The weight of the structural part and the tolerance
        (:func:`nnequiv.calibration.fit_tolerance`), with their provenance and the
        leave-one-family-out error rates (:func:`nnequiv.calibration.leave_one_family_out`).
    """
    rate = check_eps(max_false_rate, "max_false_rate")
    if rate is None or rate >= 1:
        raise InputError(f"max_false_rate must be in [0, 1), got {max_false_rate!r}")
    table = families if isinstance(families, dict) else read_families(families)
    analyses, _ = analyze_each(check_sources(sources), options, distances=False)
    by_stem = {Path(name).stem: family for name, family in table.items()}
    labels = [_family_of(a, table, by_stem) for a in analyses]
    missing = [a.source for a, label in zip(analyses, labels) if label is None]
    if missing:
        raise InputError(f"{missing[0]}: no family for this network in the families table")
    prints = design_prints(analyses)
    spectral, structural = design_part_matrices(prints)
    weight, eps, rates = fit_tolerance(spectral, structural, labels, max_false_rate=rate)
    checked = leave_one_family_out(spectral, structural, labels, max_false_rate=rate)
    provenance = {
        "networks": [a.source for a in analyses],
        "families": labels,
        "max_false_rate": rate,
        "fitted": rates,
        "settings": analyses[0].settings.to_dict(),
        "version": __version__,
    }
    cross_validation = {"leave_one_family_out": checked["sets"]["0"], "folds": checked["folds"]}
    return Calibration(eps, weight, "fitted", provenance, cross_validation)
