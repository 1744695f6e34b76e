"""Biological networks: connectomes as inputs, their Mixed Matrix Ensemble, and null models.

A connectome is one or two square matrices (``chemical`` pre x post synapse counts, optional
``electrical`` gap junctions) over named nodes. Its Mixed Matrix Ensemble is drawn as random
principal submatrices whose orders follow Binomial(N, p), the degree of mixture p; a node
partition (e.g. neuron classes) can give the blocks instead.
"""

from __future__ import annotations

import csv
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnequiv._seeding import stream_seed
from nnequiv.errors import FormatError, InputError, MissingDependencyError
from nnequiv.loading import OIHW, WeightSource
from nnequiv.settings import ConnectomeOptions, check_choice

__all__ = [
    "Connectome",
    "load_connectome",
    "is_connectome",
    "mixed_ensemble",
    "null_model",
    "save_connectome",
    "CONNECTOME_SUFFIXES",
    "connectome_weights",
    "NULL_MODELS",
]

CONNECTOME_SUFFIXES = {".csv", ".graphml"}
#: Null models of :func:`null_model`.
NULL_MODELS = ("strength-preserving",)


@dataclass
class Connectome:
    """Named nodes and their connection matrices (``matrices['chemical']`` is pre x post)."""

    label: str
    nodes: list[str]
    matrices: dict[str, np.ndarray]


def is_connectome(source) -> bool:
    """True for a connectome file: ``.csv``, ``.graphml``, or an npz with ``chemical``."""
    if isinstance(source, Connectome):
        return True
    if not isinstance(source, (str, os.PathLike)):
        return False
    path = Path(source)
    if path.suffix.lower() in CONNECTOME_SUFFIXES:
        return True
    if path.suffix.lower() == ".npz" and path.is_file():
        try:
            with zipfile.ZipFile(path) as archive:
                return "chemical.npy" in archive.namelist()
        except zipfile.BadZipFile:
            return False
    return False


def _check_matrix(label: str, name: str, matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise FormatError(f"{label}: '{name}' is not a square matrix (shape {matrix.shape})")
    if not np.all(np.isfinite(matrix)):
        raise FormatError(f"{label}: '{name}' holds NaN or Inf values")
    if (matrix < 0).any():
        raise FormatError(f"{label}: '{name}' has negative entries (counts or weights)")
    return matrix


def load_connectome(source) -> Connectome:
    """Read a connectome: npz (``chemical``, optional ``electrical``, ``neurons``), a weighted
    adjacency CSV (with or without a header row of node names), an edge-list CSV
    (pre, post, weight), or GraphML (needs networkx)."""
    if isinstance(source, Connectome):
        return source
    path = Path(source)
    label = str(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise FormatError(f"{path}: file is empty")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path)
    if suffix == ".csv":
        return _load_csv(path)
    if suffix == ".graphml":
        return _load_graphml(path)
    raise FormatError(f"{label}: unknown connectome format '{suffix}'")


def _load_npz(path: Path) -> Connectome:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "chemical" not in archive.files:
                raise FormatError(f"{path}: npz connectome needs a 'chemical' matrix")
            matrices = {"chemical": _check_matrix(str(path), "chemical", archive["chemical"])}
            if "electrical" in archive.files:
                matrices["electrical"] = _check_matrix(
                    str(path), "electrical", archive["electrical"]
                )
            size = matrices["chemical"].shape[0]
            nodes = (
                [str(n) for n in archive["neurons"]]
                if "neurons" in archive.files
                else [str(i) for i in range(size)]
            )
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise FormatError(f"{path}: not a readable .npz archive ({exc})") from exc
    except ValueError as exc:
        raise FormatError(f"{path}: corrupt connectome archive ({exc})") from exc
    for name, matrix in matrices.items():
        if matrix.shape[0] != len(nodes):
            raise FormatError(
                f"{path}: '{name}' is {matrix.shape[0]} x {matrix.shape[1]} but "
                f"there are {len(nodes)} node names"
            )
    return Connectome(str(path), nodes, matrices)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _load_csv(path: Path) -> Connectome:
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row and any(c.strip() for c in row)]
    if not rows:
        raise FormatError(f"{path}: no rows")
    header = rows[0]
    has_header = any(_number(c) is None for c in header[1:] or header)
    body = rows[1:] if has_header else rows
    # an edge list has three columns: pre, post, weight
    if (
        len(header) == 3
        and (has_header or len(rows) != 3)
        and all(len(r) == 3 for r in body)
        and not (len(body) == 2 and has_header)
    ):
        return _edge_list(path, body)
    names = None
    if has_header:  # a leading corner cell sits above a first column of names
        corner = _number(header[0]) is None and len(header) == len(body) + 1
        names = header[1:] if corner else header
    first_col_names = all(_number(r[0]) is None for r in body)
    values = [r[1:] if first_col_names else r for r in body]
    try:
        matrix = np.array([[float(c) if c.strip() else 0.0 for c in r] for r in values])
    except ValueError as exc:
        raise FormatError(f"{path}: non-numeric entry in the adjacency matrix ({exc})") from exc
    matrix = _check_matrix(str(path), "adjacency", matrix)
    if names is None and first_col_names:
        names = [r[0] for r in body]
    if names is not None and len(names) != matrix.shape[0]:
        raise FormatError(f"{path}: {len(names)} node names for a {matrix.shape[0]}-node matrix")
    nodes = list(names) if names is not None else [str(i) for i in range(matrix.shape[0])]
    return Connectome(str(path), nodes, {"chemical": matrix})


def _edge_list(path: Path, rows) -> Connectome:
    nodes = list(dict.fromkeys([r[0] for r in rows] + [r[1] for r in rows]))
    index = {name: i for i, name in enumerate(nodes)}
    matrix = np.zeros((len(nodes), len(nodes)))
    for line, (pre, post, weight) in enumerate(rows, 1):
        value = _number(weight)
        if value is None or not np.isfinite(value) or value < 0:
            raise FormatError(f"{path}: edge {line} has an invalid weight {weight!r}")
        matrix[index[pre], index[post]] += value
    return Connectome(str(path), nodes, {"chemical": matrix})


def _load_graphml(path: Path) -> Connectome:
    try:
        import networkx as nx
    except ImportError as exc:
        raise MissingDependencyError("networkx", "graph", f"reading {path}") from exc
    try:
        graph = nx.read_graphml(path)
    except Exception as exc:
        raise FormatError(f"{path}: not a readable GraphML file ({exc})") from exc
    nodes = [str(n) for n in graph.nodes]
    matrix = nx.to_numpy_array(graph, nodelist=list(graph.nodes), weight="weight")
    return Connectome(str(path), nodes, {"chemical": _check_matrix(str(path), "graph", matrix)})


def mixed_ensemble(
    connectome,
    mixture: float = ConnectomeOptions.mixture,
    submatrices: int = ConnectomeOptions.submatrices,
    seed: int = 0,
    partition: dict[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """The Mixed Matrix Ensemble of a connectome, as named matrices ("layers").

    Each matrix ``A`` of the connectome gives ``submatrices`` principal submatrices
    ``A[S, S]``, where every node joins ``S`` independently with probability ``mixture`` (so
    ``|S| ~ Binomial(N, p)``); draw k of matrix m uses the stream
    ``("connectome-submatrix", m, k)`` (method item 14). With a
    ``partition`` (node -> group), the blocks ``A[G, G]`` of the groups are the layers instead.
    """
    connectome = load_connectome(connectome)
    if not 0 < mixture <= 1:
        raise InputError(f"mixture p must be in (0, 1], got {mixture}")
    if submatrices < 1:
        raise InputError(f"submatrices must be >= 1, got {submatrices}")
    layers = {}
    if partition is not None:
        groups: dict[str, list[int]] = {}
        for i, node in enumerate(connectome.nodes):
            if node in partition:
                groups.setdefault(str(partition[node]), []).append(i)
        if not groups:
            raise InputError(f"{connectome.label}: the partition names none of its nodes")
        for name, matrix in connectome.matrices.items():
            for group, members in groups.items():
                layers[f"{name}/{group}"] = matrix[np.ix_(members, members)]
        return layers
    for m, (name, matrix) in enumerate(connectome.matrices.items()):
        size = matrix.shape[0]
        for k in range(submatrices):
            rng = np.random.default_rng(stream_seed(seed, "connectome-submatrix", m, k))
            members = np.flatnonzero(rng.random(size) < mixture)
            layers[f"{name}/draw{k:03d}"] = matrix[np.ix_(members, members)]
    return layers


def _weighted_swaps(matrix: np.ndarray, rng, symmetric: bool, swaps_per_edge: int) -> np.ndarray:
    """Strength-preserving swaps: move ``delta = min(w_ab, w_cd)`` from a->b, c->d to a->d,
    c->b (both directions for a symmetric matrix). Diagonal entries stay as they are."""
    out = matrix.copy()
    rows, cols = np.nonzero(out)
    keep = rows != cols
    if symmetric:
        keep &= rows < cols
    rows, cols = list(rows[keep]), list(cols[keep])
    if len(rows) < 2:
        return out
    attempts = swaps_per_edge * len(rows)
    picks = rng.integers(0, 1 << 62, size=(attempts, 3))
    for first, second, flip in picks:
        i, j = first % len(rows), second % len(rows)
        a, b, c, d = rows[i], cols[i], rows[j], cols[j]
        if symmetric and flip & 1:
            c, d = d, c
        if len({a, b, c, d}) < 4 if symmetric else (a == d or c == b or a == c or b == d):
            continue
        delta = min(out[a, b], out[c, d])
        if delta <= 0:
            continue
        for (p, q), sign in (((a, b), -1), ((c, d), -1), ((a, d), 1), ((c, b), 1)):
            out[p, q] += sign * delta
            if symmetric:
                out[q, p] += sign * delta
        rows += [a, c]
        cols += [d, b]
    return out


def null_model(
    connectome, seed: int = 0, kind: str = NULL_MODELS[0], swaps_per_edge: int = 10
) -> Connectome:
    """A randomised copy that keeps every node's in- and out-strength.

    Directed matrices get weighted edge swaps; symmetric ones (gap junctions) symmetric swaps.
    """
    check_choice("null model", kind, NULL_MODELS)
    connectome = load_connectome(connectome)
    matrices = {}
    for m, (name, matrix) in enumerate(connectome.matrices.items()):
        rng = np.random.default_rng(stream_seed(seed, "null-model", m))
        symmetric = bool(np.allclose(matrix, matrix.T))
        matrices[name] = _weighted_swaps(matrix, rng, symmetric, swaps_per_edge)
    return Connectome(f"null({connectome.label})", list(connectome.nodes), matrices)


def save_connectome(connectome: Connectome, path: str | os.PathLike) -> None:
    """Write a connectome as npz (``neurons`` and its matrices), atomically."""
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez_compressed(
                stream,
                neurons=np.array(connectome.nodes, dtype=str),
                **{k: v.astype(np.float32) for k, v in connectome.matrices.items()},
            )
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def connectome_weights(source, options: ConnectomeOptions, seed: int) -> WeightSource:
    """A connectome as a network: its Mixed Matrix Ensemble (:func:`mixed_ensemble`) as the
    layers of a :class:`~nnequiv.loading.WeightSource` (the source adapter of the analysis)."""
    connectome = load_connectome(source)
    layers = mixed_ensemble(connectome, options.mixture, options.submatrices, seed)
    return WeightSource(connectome.label, OIHW, lambda: iter(layers.items()))
