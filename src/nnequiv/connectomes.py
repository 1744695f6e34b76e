"""Biological networks: connectomes as inputs, their Mixed Matrix Ensemble, and null models.

A connectome is one or two square matrices (``chemical`` pre x post synapse counts, optional
``electrical`` gap junctions) over named nodes. Its Mixed Matrix Ensemble is drawn as random
principal submatrices whose orders follow Binomial(N, p), the degree of mixture p; a node
partition (e.g. neuron classes) can give the blocks instead.
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnequiv._seeding import stream_seed
from nnequiv.errors import FormatError, InputError, MissingDependencyError
from nnequiv.loading import DEFAULT_MAX_TENSOR_BYTES, OIHW, WeightSource
from nnequiv.loading._limits import (
    check_limit,
    open_regular,
    reading,
    require_regular,
    require_within,
    shown,
)
from nnequiv.loading._npz import iter_npz
from nnequiv.settings import CONNECTOME_FORMATS, ConnectomeOptions, check_choice

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
        except Exception:  # an unreadable archive is not a connectome; its loader says why
            return False
    return False


def _check_matrix(label: str, name: str, matrix: np.ndarray) -> np.ndarray:
    with reading(label, f"'{name}' is not a numeric matrix", (ValueError, TypeError)):
        matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise FormatError(f"{label}: '{name}' is not a square matrix (shape {matrix.shape})")
    if not np.all(np.isfinite(matrix)):
        raise FormatError(f"{label}: '{name}' holds NaN or Inf values")
    if (matrix < 0).any():
        raise FormatError(f"{label}: '{name}' has negative entries (counts or weights)")
    return matrix


def _require_matrix_size(label: str, nodes: int, limit: int) -> None:
    require_within(label, f"a {nodes} x {nodes} connection matrix", nodes * nodes * 8, limit)


def load_connectome(
    source, *, format: str | None = None, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES
) -> Connectome:
    """Read a connectome from a file.

    Parameters
    ----------
    source : path or Connectome
        npz (``chemical``, optional ``electrical``, ``neurons``), a CSV holding a weighted
        adjacency matrix (optional header row and first column of node names) or an edge
        list (pre, post, weight; optional header row), or GraphML (needs networkx).
    format : {"edges", "adjacency"}, optional
        How to read a CSV file; by default it is told from its shape (docs/method.md,
        Connectomes), and a file that fits both is refused with a request to give it.
    max_tensor_bytes : int
        Largest connection matrix (N x N x 8 bytes) or npz member to allocate.

    Raises
    ------
    InputError, FormatError, ResourceLimitError
        Missing, unreadable, ambiguous or oversized input, with a one-line message.
    """
    if isinstance(source, Connectome):
        return source
    if format is not None:
        check_choice("connectome format", format, CONNECTOME_FORMATS)
    limit = check_limit(max_tensor_bytes)
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if require_regular(path).st_size == 0:
        raise FormatError(f"{path}: file is empty")
    suffix = path.suffix.lower()
    if format is not None and suffix != ".csv":
        raise InputError(f"{path}: format={format!r} applies to CSV connectomes only")
    if suffix == ".npz":
        return _load_npz(path, limit)
    if suffix == ".csv":
        return _load_csv(path, format, limit)
    if suffix == ".graphml":
        return _load_graphml(path, limit)
    raise FormatError(f"{path}: unknown connectome format '{suffix}'")


def _load_npz(path: Path, limit: int) -> Connectome:
    label = str(path)
    found = dict(iter_npz(path, limit, names={"chemical", "electrical", "neurons"}))
    if "chemical" not in found:
        raise FormatError(f"{label}: npz connectome needs a 'chemical' matrix")
    matrices = {
        name: _check_matrix(label, name, found[name])
        for name in ("chemical", "electrical")
        if name in found
    }
    size = matrices["chemical"].shape[0]
    names = found.get("neurons")
    if names is not None and (names.ndim != 1 or names.dtype.kind not in "USiu"):
        raise FormatError(f"{label}: 'neurons' must be a list of names")
    nodes = [str(n) for n in names] if names is not None else [str(i) for i in range(size)]
    for name, matrix in matrices.items():
        if matrix.shape[0] != len(nodes):
            raise FormatError(
                f"{label}: '{name}' is {matrix.shape[0]} x {matrix.shape[1]} but "
                f"there are {len(nodes)} node names"
            )
    return Connectome(label, nodes, matrices)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _csv_rows(path: Path, limit: int) -> list[list[str]]:
    """The non-blank rows of a CSV file, cells stripped."""
    label = str(path)
    with open_regular(path) as handle:
        raw = handle.read(limit + 1)
    require_within(label, "the CSV file", len(raw), limit)
    with reading(label, "is not UTF-8 text", (UnicodeDecodeError,)):
        text = raw.decode("utf-8-sig")
    with reading(label, "is not a readable CSV file", (csv.Error,)):
        rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text))]
    rows = [row for row in rows if any(row)]
    if not rows:
        raise FormatError(f"{label}: no rows")
    return rows


def _edge_shape(rows: list[list[str]]) -> tuple[list[list[str]] | None, str]:
    """The edges of a table that reads as an edge list, or None and the reason it does not.

    Every row has three cells (pre, post, weight); the first row is a header when its
    weight cell is not a number, and then names all three columns (no empty cell); every
    edge has two non-empty node names and a number as weight; node names that are numbers
    are integers.
    """
    if any(len(row) != 3 for row in rows):
        return None, "rows do not all have three cells (pre, post, weight)"
    has_header = _number(rows[0][2]) is None
    if has_header and not all(rows[0]):
        return None, "its header row has an empty cell"
    body = rows[1:] if has_header else rows
    for line, (pre, post, weight) in enumerate(body, 1):
        if not pre or not post or _number(weight) is None:
            return None, f"edge {line} has no node names or a non-numeric weight"
        if any(
            _number(node) is not None and not _number(node).is_integer() for node in (pre, post)
        ):
            return None, f"edge {line} names a node by a non-integer number"
    return body, ""


def _adjacency_shape(rows: list[list[str]]) -> tuple[tuple | None, str]:
    """``(node names or None, N x N cells)`` of a table that reads as an adjacency matrix,
    or None and the reason it does not.

    The first row is a header when any of its cells after the first is not a number; the
    first column holds names when none of its body cells is a number; the remaining cells
    (empty ones count as 0) are numbers and form a square table; a header holds N names,
    or N + 1 with a corner cell first.
    """
    header = rows[0] if any(_number(cell) is None for cell in rows[0][1:]) else None
    body = rows[1:] if header is not None else rows
    if not body:
        return None, "there are no matrix rows"
    row_names = all(_number(row[0]) is None for row in body)
    values = [row[1:] if row_names else row for row in body]
    for line, row in enumerate(values, 1):
        bad = next((cell for cell in row if cell and _number(cell) is None), None)
        if bad is not None:
            return None, f"non-numeric entry '{shown(bad, 40)}' in row {line} of the matrix"
    size = len(values)
    if any(len(row) != size for row in values):
        return None, f"the matrix is not square ({size} rows of {len(values[0])} values)"
    names = [row[0] for row in body] if row_names else None
    if header is not None:
        if len(header) not in (size, size + 1):
            return None, f"the header has {len(header)} cells for a {size}-node matrix"
        names = header[-size:] if size else []
    return (names, values), ""


def _load_csv(path: Path, format: str | None, limit: int) -> Connectome:
    label = str(path)
    rows = _csv_rows(path, limit)
    edges, edge_reason = _edge_shape(rows) if format != "adjacency" else (None, "")
    table, table_reason = _adjacency_shape(rows) if format != "edges" else (None, "")
    if edges is not None and table is not None:
        raise FormatError(
            f"{label}: reads both as an edge list (pre, post, weight) and as a "
            f"{len(table[1])} x {len(table[1])} adjacency matrix; say which with "
            "format='edges' or format='adjacency' (--format edges|adjacency)"
        )
    if edges is not None:
        return _edge_list(path, edges, limit)
    if table is not None:
        names, values = table
        _require_matrix_size(label, len(values), limit)
        matrix = np.array([[_number(c) if c else 0.0 for c in row] for row in values], float)
        matrix = _check_matrix(label, "adjacency", matrix.reshape(len(values), len(values)))
        nodes = list(names) if names is not None else [str(i) for i in range(len(values))]
        return Connectome(label, nodes, {"chemical": matrix})
    reasons = {"edges": f"not an edge list: {edge_reason}", "adjacency": table_reason}
    if format is None:
        three = all(len(row) == 3 for row in rows)
        reason = reasons["edges"] if three else f"not an adjacency matrix: {table_reason}"
    else:
        reason = reasons[format]
    raise FormatError(f"{label}: {reason}")


def _edge_list(path: Path, rows, limit: int) -> Connectome:
    nodes = list(dict.fromkeys([r[0] for r in rows] + [r[1] for r in rows]))
    _require_matrix_size(str(path), len(nodes), limit)
    index = {name: i for i, name in enumerate(nodes)}
    matrix = np.zeros((len(nodes), len(nodes)))
    for line, (pre, post, weight) in enumerate(rows, 1):
        value = _number(weight)
        if value is None or not np.isfinite(value) or value < 0:
            raise FormatError(f"{path}: edge {line} has an invalid weight '{shown(weight, 40)}'")
        matrix[index[pre], index[post]] += value
    return Connectome(str(path), nodes, {"chemical": _check_matrix(str(path), "edges", matrix)})


def _load_graphml(path: Path, limit: int) -> Connectome:
    try:
        import networkx as nx
    except ImportError as exc:
        raise MissingDependencyError("networkx", "graph", f"reading {path}") from exc
    label = str(path)
    with open_regular(path) as handle:
        with reading(label, "not a readable GraphML file"):
            graph = nx.read_graphml(handle)
    _require_matrix_size(label, graph.number_of_nodes(), limit)
    with reading(label, "has edge weights that are not numbers"):
        matrix = nx.to_numpy_array(graph, nodelist=list(graph.nodes), weight="weight")
    nodes = [str(n) for n in graph.nodes]
    return Connectome(label, nodes, {"chemical": _check_matrix(label, "graph", matrix)})


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


def connectome_weights(
    source,
    options: ConnectomeOptions,
    seed: int,
    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
) -> WeightSource:
    """A connectome as a network: its Mixed Matrix Ensemble (:func:`mixed_ensemble`) as the
    layers of a :class:`~nnequiv.loading.WeightSource` (the source adapter of the analysis)."""
    connectome = load_connectome(source, format=options.format, max_tensor_bytes=max_tensor_bytes)
    layers = mixed_ensemble(connectome, options.mixture, options.submatrices, seed)
    return WeightSource(connectome.label, OIHW, lambda: iter(layers.items()))
