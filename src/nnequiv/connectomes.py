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
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnequiv._optional import optional_module
from nnequiv._seeding import stream_seed
from nnequiv._signatures import arguments_of
from nnequiv.errors import FormatError, InputError
from nnequiv.loading import DEFAULT_MAX_TENSOR_BYTES, OIHW, WeightSource
from nnequiv.loading._limits import (
    DecodeBudget,
    check_limit,
    describe,
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
#: A connection matrix read from a CSV or GraphML file is a float64 array up to this size
#: (N x N x 8 bytes), a SciPy CSR matrix of its non-zero entries above it; the layers drawn
#: from it are the same either way.
DENSE_CONNECTOME_BYTES = 64 << 20
#: Null models of :func:`null_model`.
NULL_MODELS = ("strength-preserving",)


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


@dataclass
class Connectome:
    """Named nodes and their connection matrices (``matrices['chemical']`` is pre x post):
    float64 arrays, or SciPy CSR matrices where a large one was read from a sparse file."""

    label: str
    nodes: list[str]
    matrices: dict


def is_sparse(matrix) -> bool:
    """True for a SciPy sparse matrix (a connection matrix kept as its non-zero entries)."""
    return hasattr(matrix, "tocsr") and hasattr(matrix, "nnz")


def dense_matrix(matrix) -> np.ndarray:
    """A connection matrix as a float64 array."""
    return matrix.toarray() if is_sparse(matrix) else np.asarray(matrix, dtype=float)


def principal_submatrix(matrix, members: np.ndarray) -> np.ndarray:
    """``matrix[members][:, members]`` as a float64 array (only it is densified)."""
    if is_sparse(matrix):
        return matrix.tocsr()[members][:, members].toarray()
    return matrix[np.ix_(members, members)]


def _check_matrix(label: str, name: str, matrix):
    if is_sparse(matrix):
        matrix = matrix.tocsr().astype(float)
        values = matrix.data
    else:
        with reading(label, f"'{name}' is not a numeric matrix", (ValueError, TypeError)):
            matrix = np.asarray(matrix, dtype=float)
        values = matrix
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise FormatError(f"{label}: '{name}' is not a square matrix (shape {matrix.shape})")
    if not np.all(np.isfinite(values)):
        raise FormatError(f"{label}: '{name}' holds NaN or Inf values")
    if (values < 0).any():
        raise FormatError(f"{label}: '{name}' has negative entries (counts or weights)")
    return matrix


def _require_matrix_size(label: str, nodes: int, limit: int, path: Path | None = None) -> None:
    """Refuse a matrix above ``limit`` bytes, or (for a text file, ``path``) one whose dense
    N x N float64 size is above ``LIMITS.max_expansion`` times the file's size (a small edge
    list naming many nodes: the analysis works on dense submatrices of it)."""
    what = f"a {nodes} x {nodes} connection matrix"
    require_within(label, what, nodes * nodes * 8, limit)
    if path is not None:
        DecodeBudget(label, require_regular(path).st_size).take(nodes * nodes * 8, what)


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


def _csv_rows(path: Path, limit: int) -> Iterator[list[str]]:
    """The non-blank rows of a CSV file, cells stripped, one at a time (the file is read as a
    stream, never whole)."""
    label = str(path)
    with open_regular(path) as handle:
        require_within(label, "the CSV file", os.fstat(handle.fileno()).st_size, limit)
        text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
        try:
            for row in csv.reader(text):
                cells = [cell.strip() for cell in row]
                if any(cells):
                    yield cells
        except UnicodeDecodeError as exc:
            raise FormatError(f"{label}: is not UTF-8 text ({describe(exc)})") from exc
        except csv.Error as exc:
            raise FormatError(f"{label}: is not a readable CSV file ({describe(exc)})") from exc


class _EdgeReader:
    """An edge list read row by row: node names to indices and (pre, post, weight) arrays;
    ``reason`` says why the table is not one (None while it may be).

    Every row has three cells (pre, post, weight); the first row is a header when its
    weight cell is not a number, and then names all three columns (no empty cell); every
    edge has two non-empty node names and a number as weight; node names that are numbers
    are integers.
    """

    def __init__(self):
        self.reason: str | None = None
        self.three = True
        self.header: bool | None = None
        self.ids: dict[str, int] = {}
        self.pre, self.post, self.weights = array("q"), array("q"), array("d")
        self.invalid: tuple[int, str] | None = None

    def add(self, row: list[str]) -> None:
        if len(row) != 3:
            self.three = False
        if not self.three or self.reason is not None:
            self.pre = self.post = self.weights = None  # no longer needed
            return
        if self.header is None:
            self.header = _number(row[2]) is None
            if self.header:
                if not all(row):
                    self.reason = "its header row has an empty cell"
                return
        pre, post, weight = row
        line = len(self.weights) + 1
        value = _number(weight)
        if not pre or not post or value is None:
            self.reason = f"edge {line} has no node names or a non-numeric weight"
            return
        if any(
            _number(node) is not None and not _number(node).is_integer() for node in (pre, post)
        ):
            self.reason = f"edge {line} names a node by a non-integer number"
            return
        if self.invalid is None and not (np.isfinite(value) and value >= 0):
            self.invalid = (line, weight)
        self.pre.append(self.ids.setdefault(pre, len(self.ids)))
        self.post.append(self.ids.setdefault(post, len(self.ids)))
        self.weights.append(value)

    def finish(self) -> str | None:
        """Why the whole table is not an edge list, or None."""
        if not self.three:
            return "rows do not all have three cells (pre, post, weight)"
        return self.reason

    def nodes(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The node names (first as a pre, then the rest first as a post) and the edges'
        pre and post indices in that order."""
        pre = np.frombuffer(self.pre, dtype=np.int64)
        post = np.frombuffer(self.post, dtype=np.int64)
        names = np.array(list(self.ids), dtype=object)
        order = _first_seen(np.concatenate([pre, post]))
        position = np.empty(len(names), dtype=np.int64)
        position[order] = np.arange(len(order))
        return [str(n) for n in names[order]], position[pre], position[post]


def _first_seen(ids: np.ndarray) -> np.ndarray:
    """The distinct values of ``ids`` in order of first appearance."""
    _, first = np.unique(ids, return_index=True)
    return ids[np.sort(first)]


class _AdjacencyReader:
    """An adjacency matrix read row by row, each row kept as its non-zero entries; ``finish``
    says why the table is not one (None where it is).

    The first row is a header when any of its cells after the first is not a number; the
    first column holds names when none of its body cells is a number; the remaining cells
    (empty ones count as 0) are numbers and form a square table; a header holds N names,
    or N + 1 with a corner cell first.
    """

    def __init__(self):
        self.header: list[str] | None = None
        self.first_row = True
        self.count = 0
        self.first_cells: list[float | None] = []
        self.names: list[str] = []
        self.lengths: set[int] = set()
        self.first_length = 0
        self.bad_rest: tuple[int, str] | None = None  # a non-number after the first cell
        self.bad_first: tuple[int, str] | None = None  # a non-number as the first cell
        self.rows: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, row: list[str]) -> None:
        if self.first_row:
            self.first_row = False
            if any(_number(cell) is None for cell in row[1:]):
                self.header = row
                return
        self.count += 1
        line = self.count
        if self.count == 1:
            self.first_length = len(row)
        self.lengths.add(len(row))
        first = _number(row[0])  # None: a name (an empty cell too)
        self.first_cells.append(first)
        self.names.append(row[0])
        if row[0] and first is None and self.bad_first is None:
            self.bad_first = (line, row[0])
        if self.bad_rest is not None or self.count > self.first_length + 1:
            return  # not a matrix, or not a square one: its values are not needed
        values = np.zeros(len(row))
        for column, cell in enumerate(row[1:], 1):
            if cell:
                number = _number(cell)
                if number is None:
                    self.bad_rest, self.rows = (line, cell), []
                    return
                values[column] = number
        columns = np.flatnonzero(values[1:]) + 1
        self.rows.append((columns, values[columns]))

    @property
    def row_names(self) -> bool:
        return all(first is None for first in self.first_cells)

    def finish(self) -> str | None:
        """Why the whole table is not a square adjacency matrix, or None."""
        if not self.count:
            return "there are no matrix rows"
        named = self.row_names
        found = [self.bad_rest] if named else [self.bad_first, self.bad_rest]
        found = [bad for bad in found if bad is not None]
        if found:
            line, cell = min(found, key=lambda bad: bad[0])  # the first cell first on a tie
            return f"non-numeric entry '{shown(cell, 40)}' in row {line} of the matrix"
        size, shift = self.count, 1 if named else 0
        if any(length - shift != size for length in self.lengths):
            return f"the matrix is not square ({size} rows of {self.first_length - shift} values)"
        if self.header is not None and len(self.header) not in (size, size + 1):
            return f"the header has {len(self.header)} cells for a {size}-node matrix"
        return None

    def size(self) -> int:
        return self.count

    def nodes(self) -> list[str]:
        if self.header is not None:
            return self.header[-self.count :]
        return list(self.names) if self.row_names else [str(i) for i in range(self.count)]

    def entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, columns and values of the non-zero entries."""
        shift = 1 if self.row_names else 0
        rows, columns, values = [], [], []
        for index, ((kept, numbers), first) in enumerate(zip(self.rows, self.first_cells)):
            if not shift and first:  # the first column holds values, not names
                kept, numbers = np.concatenate([[0], kept]), np.concatenate([[first], numbers])
            rows.append(np.full(kept.size, index))
            columns.append(kept - shift)
            values.append(numbers)
        if not rows:
            return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
        return np.concatenate(rows), np.concatenate(columns), np.concatenate(values)


def _load_csv(path: Path, format: str | None, limit: int) -> Connectome:
    label = str(path)
    edges = _EdgeReader() if format != "adjacency" else None
    table = _AdjacencyReader() if format != "edges" else None
    empty = True
    for row in _csv_rows(path, limit):
        empty = False
        for reader in (edges, table):
            if reader is not None:
                reader.add(row)
    if empty:
        raise FormatError(f"{label}: no rows")
    edge_reason = edges.finish() if edges is not None else ""
    table_reason = table.finish() if table is not None else ""
    if edges is not None and edge_reason is None and table is not None and table_reason is None:
        raise FormatError(
            f"{label}: reads both as an edge list (pre, post, weight) and as a "
            f"{table.size()} x {table.size()} adjacency matrix; say which with "
            "format='edges' or format='adjacency' (--format edges|adjacency)"
        )
    if edges is not None and edge_reason is None:
        return _edge_list(path, edges, limit)
    if table is not None and table_reason is None:
        size = table.size()
        _require_matrix_size(label, size, limit, path)
        matrix = _assembled(size, *table.entries())
        return Connectome(
            label, table.nodes(), {"chemical": _check_matrix(label, "adjacency", matrix)}
        )
    reasons = {"edges": f"not an edge list: {edge_reason}", "adjacency": table_reason}
    if format is None:
        reason = reasons["edges"] if edges.three else f"not an adjacency matrix: {table_reason}"
    else:
        reason = reasons[format]
    raise FormatError(f"{label}: {reason}")


def _assembled(size: int, rows: np.ndarray, columns: np.ndarray, values: np.ndarray):
    """The ``size`` x ``size`` matrix with ``values`` added at (rows, columns): a float64
    array up to :data:`DENSE_CONNECTOME_BYTES`, a SciPy CSR matrix above it."""
    if 8 * size * size <= DENSE_CONNECTOME_BYTES:
        matrix = np.zeros((size, size))
        np.add.at(matrix, (rows, columns), values)
        return matrix
    from scipy.sparse import coo_matrix

    return coo_matrix((values, (rows, columns)), shape=(size, size)).tocsr()


def _edge_list(path: Path, edges: _EdgeReader, limit: int) -> Connectome:
    label = str(path)
    if edges.invalid is not None:
        line, weight = edges.invalid
        raise FormatError(f"{label}: edge {line} has an invalid weight '{shown(weight, 40)}'")
    nodes, pre, post = edges.nodes()
    _require_matrix_size(label, len(nodes), limit, path)
    matrix = _assembled(len(nodes), pre, post, np.frombuffer(edges.weights, dtype=np.float64))
    return Connectome(label, nodes, {"chemical": _check_matrix(label, "edges", matrix)})


def _load_graphml(path: Path, limit: int) -> Connectome:
    nx = optional_module("networkx", "graph", f"reading {path}")
    label = str(path)
    with open_regular(path) as handle:
        with reading(label, "not a readable GraphML file"):
            graph = nx.read_graphml(handle)
    _require_matrix_size(label, graph.number_of_nodes(), limit, path)
    size = graph.number_of_nodes()
    with reading(label, "has edge weights that are not numbers"):
        if 8 * size * size <= DENSE_CONNECTOME_BYTES:
            matrix = nx.to_numpy_array(graph, nodelist=list(graph.nodes), weight="weight")
        else:
            matrix = nx.to_scipy_sparse_array(
                graph, nodelist=list(graph.nodes), weight="weight", format="csr"
            )
    nodes = [str(n) for n in graph.nodes]
    return Connectome(label, nodes, {"chemical": _check_matrix(label, "graph", matrix)})


def _check_ensemble(mixture: float, submatrices: int) -> None:
    if not 0 < mixture <= 1:
        raise InputError(f"mixture p must be in (0, 1], got {mixture}")
    if submatrices < 1:
        raise InputError(f"submatrices must be >= 1, got {submatrices}")


def ensemble_draws(
    connectome,
    mixture: float = ConnectomeOptions.mixture,
    submatrices: int = ConnectomeOptions.submatrices,
    seed: int = 0,
    partition: dict[str, str] | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """The layers of the Mixed Matrix Ensemble of a connectome, one at a time: each
    submatrix is made (as a float64 array) only when it is reached.

    Each matrix ``A`` of the connectome gives ``submatrices`` principal submatrices
    ``A[S, S]``, where every node joins ``S`` independently with probability ``mixture`` (so
    ``|S| ~ Binomial(N, p)``); draw k of matrix m uses the stream
    ``("connectome-submatrix", m, k)`` (method item 14). With a
    ``partition`` (node -> group), the blocks ``A[G, G]`` of the groups are the layers instead.
    """
    connectome = load_connectome(connectome)
    _check_ensemble(mixture, submatrices)
    if partition is not None:
        groups: dict[str, list[int]] = {}
        for i, node in enumerate(connectome.nodes):
            if node in partition:
                groups.setdefault(str(partition[node]), []).append(i)
        if not groups:
            raise InputError(f"{connectome.label}: the partition names none of its nodes")
        for name, matrix in connectome.matrices.items():
            for group, members in groups.items():
                yield f"{name}/{group}", principal_submatrix(matrix, np.array(members, int))
        return
    for m, (name, matrix) in enumerate(connectome.matrices.items()):
        size = matrix.shape[0]
        for k in range(submatrices):
            rng = np.random.default_rng(stream_seed(seed, "connectome-submatrix", m, k))
            members = np.flatnonzero(rng.random(size) < mixture)
            yield f"{name}/draw{k:03d}", principal_submatrix(matrix, members)


@arguments_of(ensemble_draws)
def mixed_ensemble(connectome, *args, **options) -> dict[str, np.ndarray]:
    """The Mixed Matrix Ensemble of a connectome, as named matrices ("layers"): the matrices
    of :func:`ensemble_draws`, whose arguments it takes (documented there), in one dict."""
    return dict(ensemble_draws(connectome, *args, **options))


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
        matrix = dense_matrix(matrix)  # the swaps need the whole matrix
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
                **{k: dense_matrix(v).astype(np.float32) for k, v in connectome.matrices.items()},
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
    _check_ensemble(options.mixture, options.submatrices)

    def layers():  # drawn one at a time, as the analysis reaches them
        return ensemble_draws(connectome, options.mixture, options.submatrices, seed)

    return WeightSource(connectome.label, OIHW, layers)
