"""Canonical forms and layer spectra computed from blocks of a matrix, in bounded memory
(method items 2 and 13).

A *block matrix* is anything with ``shape`` (N, M) and ``blocks(axis, step)``, which yields
``(start, stop, block)``: a float64 copy of ``W[start:stop]`` (axis 0) or ``W[:, start:stop]``
(axis 1). :class:`ArrayBlocks` reads an array in memory, :class:`nnequiv.layers.StoredMatrix`
a tensor in its file. A matrix that fits one block of ``block_bytes`` is read as one block,
so small layers are computed as they always were.

* The canonical form is a :class:`Scaling`: each row divided by its largest magnitude, then
  multiplied by its Sinkhorn factor or divided by its norm, each column multiplied by its
  Sinkhorn factor. The factors come from passes over row blocks: the first pass finds the row
  peaks, the non-zero rows and columns and the first Sinkhorn sweep; every later pass is one
  sweep (the product ``a c_k`` that checks sweep k also starts sweep k + 1). The squared
  entries stay in memory between passes where they fit :data:`SQUARES_CACHE_BYTES`.
* The spectrum comes from the smaller Gram matrix accumulated in float64 (``W^T W`` as the sum
  of ``W_b^T W_b`` over row blocks when N >= M, ``W W^T`` over column blocks otherwise) and
  ``eigvalsh``. Eigenvalues that the Gram route cannot resolve to
  :data:`GRAM_RELATIVE_ACCURACY` are computed again ("refined") from a square matrix A with
  the singular values of W: W itself when it is square and fits one block (LU factors), else
  the triangular factor R of a QR of the tall orientation, accumulated block by block (TSQR).
  Subspace inverse iteration with A^T A gives the smallest singular values by Rayleigh-Ritz,
  each accepted only where its residual bound, or, once converged, the rounding error of the
  backward-stable solves (as for an SVD), certifies it. Where too many eigenvalues are
  unresolved (a rank-deficient matrix) or a value is not certified, an SVD of A ("svd").

Memory: :func:`working_bytes` estimates what a layer's computation allocates at its peak
before anything is allocated (one block: the float64 matrix twice and two n x n matrices;
several blocks: one n x n matrix, the Gram matrix accumulated in place and its eigenvalues
computed in place, and two blocks), and :func:`plan_blocks` picks smaller blocks where the
default ones would pass a memory budget.

Ctrl-C (``KeyboardInterrupt``) takes effect between blocks and between LAPACK calls: the
longest wait is one call on an n x n matrix (``eigvalsh`` of the Gram matrix, an LU, QR or
SVD). LAPACK is not moved to a worker thread: OpenBLAS can hang or crash at exit when a
thread that used it is abandoned.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.linalg.blas import dsyrk
from scipy.linalg.lapack import dtpqrt

from nnequiv.settings import CANONICAL_FORMS, check_choice

#: Largest block of a layer matrix read at once, as float64 (a matrix that fits is one block).
BLOCK_BYTES = 32 << 20
#: The squared entries of a layer stay in memory between balancing sweeps up to this size.
SQUARES_CACHE_BYTES = 128 << 20
#: Relative accuracy the Gram route must guarantee for the smallest kept eigenvalue.
GRAM_RELATIVE_ACCURACY = 1e-6
#: Sinkhorn balancing stops when every row norm is within this of 1 (relative, squared)...
BALANCE_TOLERANCE = 1e-10
#: ... and gives up after this many sweeps, or when its factors span more than
#: :data:`BALANCE_RANGE` (a zero pattern that admits no balance).
BALANCE_SWEEPS = 1000
BALANCE_RANGE = 1e12
#: Refinement: the subspace holds twice the unresolved eigenvalues plus this many, and is
#: used only while it is at most :data:`REFINE_FRACTION` of the order (else an SVD is faster).
REFINE_EXTRA = 8
REFINE_FRACTION = 1 / 4
#: Inverse iterations before the refinement gives up (and an SVD is used); its Ritz values
#: have converged when they move by less than their rounding error or :data:`STAGNATION`
#: (relative).
REFINE_ITERATIONS = 30
STAGNATION = 1e-12

Stage = Callable[[str], None]


def _no_stage(text: str) -> None:
    """A stage report nobody listens to."""


class ArrayBlocks:
    """A matrix in memory, read in blocks (float64 copies)."""

    def __init__(self, matrix):
        self.matrix = matrix
        self.shape = (int(matrix.shape[0]), int(matrix.shape[1]))

    def blocks(self, axis: int, step: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(start, stop, float64 copy)`` of consecutive row (0) or column (1) blocks."""
        for start in range(0, self.shape[axis], step):
            stop = min(start + step, self.shape[axis])
            part = self.matrix[start:stop] if axis == 0 else self.matrix[:, start:stop]
            yield start, stop, np.array(part, dtype=np.float64)


def block_step(shape: tuple[int, int], axis: int, block_bytes: int) -> int:
    """Rows (axis 0) or columns (axis 1) per block of at most ``block_bytes`` float64."""
    return max(1, block_bytes // (8 * max(shape[1 - axis], 1)))


def whole_bytes(shape) -> int:
    """A block size that holds the whole matrix."""
    return 8 * max(int(shape[0]) * int(shape[1]), 1)


#: Float64 arrays of n x (refinement subspace) that the refinement holds at once.
REFINE_ARRAYS = 8


def _block_bytes(shape, axis: int, block_bytes: int) -> int:
    """Bytes of the largest float64 block of rows (0) or columns (1) read at ``block_bytes``."""
    other = max(int(shape[1 - axis]), 1)
    step = min(block_step(shape, axis, block_bytes), max(int(shape[axis]), 1))
    return 8 * other * step


def working_bytes(shape, block_bytes: int = BLOCK_BYTES, cache_bytes: int = SQUARES_CACHE_BYTES):
    """Peak bytes that the canonical form and the spectrum of an N x M matrix allocate when
    read in blocks of ``block_bytes`` (the matrix itself, where it is held, not counted).

    One block (the matrix fits ``block_bytes``): the float64 matrix and a scaled copy, the Gram
    matrix and its copy in ``eigvalsh`` (or an LU or R factor). Several blocks: the n x n Gram
    matrix (then the R factor, each updated in place), two blocks at a time, the squared
    entries where they fit ``cache_bytes``, and the refinement's n x k subspace at its
    smallest. Vectors of length N + M are counted too.
    """
    rows, columns = int(shape[0]), int(shape[1])
    order = min(rows, columns)
    square = 8 * order * order
    vectors = 64 * (rows + columns)
    whole = whole_bytes(shape)
    if whole <= block_bytes:
        return 2 * whole + 2 * square + vectors
    balancing = 2 * _block_bytes(shape, 0, block_bytes)
    if whole <= cache_bytes:
        balancing += whole
    axis = 0 if rows >= columns else 1
    spectrum = square + 2 * _block_bytes(shape, axis, block_bytes)
    spectrum += REFINE_ARRAYS * 8 * order * REFINE_EXTRA
    return max(balancing, spectrum) + vectors


def plan_blocks(
    shape, budget: int, block_bytes: int = BLOCK_BYTES, cache_bytes: int = SQUARES_CACHE_BYTES
) -> tuple[int, int] | None:
    """``(block_bytes, cache_bytes)`` for an N x M matrix within ``budget`` bytes: the given
    sizes where their :func:`working_bytes` fit, else the largest blocks that do (several
    blocks, no squares cache where it does not fit); None where one row or column at a time
    does not fit either."""
    if working_bytes(shape, block_bytes, cache_bytes) <= budget:
        return block_bytes, cache_bytes
    whole = whole_bytes(shape)
    smallest = 8 * max(int(shape[0]), int(shape[1]), 1)  # a block of one row and one column
    for cache in (cache_bytes, 0):
        size = min(block_bytes, whole - 1)
        while size >= smallest and working_bytes(shape, size, cache) > budget:
            size //= 2
        if size >= smallest:
            return size, cache
    if working_bytes(shape, smallest, 0) <= budget:  # pragma: no cover - halving skips it
        return smallest, 0
    return None


@dataclass(frozen=True)
class Scaling:
    """The canonical form of a layer as factors: every row divided by ``peak``, then by
    ``norm``, then multiplied by ``rows``; every column multiplied by ``columns`` (None:
    unchanged). ``form`` is the form applied."""

    form: str
    peak: np.ndarray | None = None
    norm: np.ndarray | None = None
    rows: np.ndarray | None = None
    columns: np.ndarray | None = None

    def apply(self, block: np.ndarray, start: int, stop: int, axis: int) -> np.ndarray:
        """Scale a float64 block (rows or columns ``start .. stop - 1``) in place."""
        for vector, divide in ((self.peak, True), (self.norm, True), (self.rows, False)):
            if vector is not None:
                part = (vector[start:stop] if axis == 0 else vector)[:, None]
                if divide:
                    block /= part
                else:
                    block *= part
        if self.columns is not None:
            block *= (self.columns if axis == 0 else self.columns[start:stop])[None, :]
        return block


class _Squares:
    """The squared entries of W, each row first divided by its largest magnitude, by row
    blocks; kept in memory between passes when ``keep`` and they fit the cache."""

    def __init__(self, matrix, block_bytes: int, keep: bool, cache_bytes: int):
        rows, columns = matrix.shape
        self.matrix = matrix
        self.step = block_step(matrix.shape, 0, block_bytes)
        self.peak = np.ones(rows)
        self.cache: list | None = [] if keep and 8 * rows * columns <= cache_bytes else None
        self.complete = False

    def __iter__(self) -> Iterator[tuple[int, int, np.ndarray]]:
        if self.complete and self.cache is not None:
            yield from self.cache
            return
        for start, stop, block in self.matrix.blocks(0, self.step):
            if not self.complete:
                peak = np.abs(block).max(axis=1, initial=0.0)
                self.peak[start:stop] = np.where(peak > 0, peak, 1.0)
            block /= self.peak[start:stop, None]
            np.multiply(block, block, out=block)
            if self.cache is not None and not self.complete:
                self.cache.append((start, stop, block))
            yield start, stop, block
        self.complete = True


def canonical_scaling(
    matrix,
    form: str,
    block_bytes: int = BLOCK_BYTES,
    cache_bytes: int = SQUARES_CACHE_BYTES,
    stage: Stage = _no_stage,
) -> Scaling:
    """The :class:`Scaling` of a block matrix's canonical form (method item 13).

    ``"balanced"`` (Sinkhorn-Knopp on the squared entries, every non-zero row of unit norm and
    every non-zero column of norm sqrt(N'/M')) falls back to ``"rows"`` where the zero pattern
    admits no balance; ``"rows"`` scales every non-zero row to unit norm; ``"raw"`` nothing.
    """
    check_choice("canonical form", form, CANONICAL_FORMS)
    if form == "raw":
        return Scaling("raw")
    rows, columns = matrix.shape
    squares = _Squares(matrix, block_bytes, form == "balanced", cache_bytes)
    row_sums, reciprocal, weighted = np.zeros(rows), np.zeros(rows), np.zeros(columns)
    stage("row norms")
    for start, stop, a in squares:
        sums = a @ np.ones(columns)
        row_sums[start:stop] = sums
        reciprocal[start:stop] = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
        weighted += reciprocal[start:stop] @ a  # a^T r: the column sums of sweep 1
    norm = np.sqrt(row_sums)
    by_rows = Scaling("rows", squares.peak, np.where(norm > 0, norm, 1.0))
    if form == "rows":
        return by_rows
    balance = _sinkhorn(squares, reciprocal, weighted, stage)
    if balance is None:
        return by_rows
    r, c = balance
    return Scaling("balanced", squares.peak, rows=np.sqrt(r), columns=np.sqrt(c))


def _sinkhorn(squares: _Squares, r: np.ndarray, u: np.ndarray, stage: Stage):
    """Sinkhorn-Knopp from the first sweep's row factors ``r = 1 / (a 1)`` and column sums
    ``u = a^T r``: the factors (r, c), zero on zero rows and columns, or None where no balance
    is reached."""
    live_rows, live_columns = r > 0, u > 0
    if not live_rows.any():
        return np.zeros(r.size), np.zeros(u.size)
    ratio = live_rows.sum() / live_columns.sum()
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        c = _column_factors(ratio, u, live_columns)
        for sweep in range(1, BALANCE_SWEEPS + 1):
            if c is None:
                return None
            stage(f"balancing, sweep {sweep}")
            following, u, error = np.zeros(r.size), np.zeros(u.size), 0.0
            for start, stop, a in squares:
                products = a @ c
                live = live_rows[start:stop]
                own = r[start:stop][live] * products[live]
                error = max(error, float(np.abs(own - 1.0).max(initial=0.0)))
                following[start:stop] = np.where(live, 1.0 / products, 0.0)
                u += following[start:stop] @ a
            if error < BALANCE_TOLERANCE:
                return r, c
            r, c = following, _column_factors(ratio, u, live_columns)
    return None


def _column_factors(ratio: float, sums: np.ndarray, live: np.ndarray) -> np.ndarray | None:
    """``ratio / sums`` on the live columns (0 elsewhere), or None where they diverge."""
    factors = np.zeros(sums.size)
    factors[live] = ratio / sums[live]
    kept = factors[live]
    if not (np.isfinite(kept).all() and kept.max() < BALANCE_RANGE * kept.min()):
        return None
    return factors


# ---- eigenvalues ----------------------------------------------------------------------


def matrix_spectrum(
    matrix,
    scaling: Scaling,
    rtol: float,
    block_bytes: int = BLOCK_BYTES,
    stage: Stage = _no_stage,
    budget: int | None = None,
) -> tuple[np.ndarray, int, str]:
    """Non-zero eigenvalues of ``X X^T`` for ``X`` the scaled block matrix, ascending: the
    eigenvalues, the numerical zeros dropped (below ``rtol * max``) and the method (``"gram"``,
    ``"refined"`` or ``"svd"``, see the module's description). The refinement is used only
    where its subspace fits ``budget`` bytes (None: no bound); else an SVD."""
    rows, columns = matrix.shape
    axis = 0 if rows >= columns else 1
    step = block_step(matrix.shape, axis, block_bytes)
    count = -(-matrix.shape[axis] // step)
    if count == 1:
        [(_, _, block)] = list(matrix.blocks(axis, step))
        whole = scaling.apply(block, 0, matrix.shape[axis], axis)
        stage("eigenvalues")
        values = np.linalg.eigvalsh(whole.T @ whole if axis == 0 else whole @ whole.T)
    else:
        whole = None
        values = _gram_eigenvalues(matrix, scaling, axis, step, count, stage)
    top = values[-1] if values.size else 0.0
    kept = values[values > rtol * top] if top > 0 else values[:0]
    if not kept.size:
        return np.empty(0), int(values.size), "gram"
    # eigvalsh of the Gram matrix is accurate to about (N + M) eps * max in absolute terms
    resolved = (rows + columns) * np.finfo(float).eps * top / GRAM_RELATIVE_ACCURACY
    if kept[0] >= resolved:
        return kept, int(values.size - kept.size), "gram"
    unresolved = int(np.searchsorted(values, resolved))
    size = 2 * unresolved + REFINE_EXTRA
    if size <= REFINE_FRACTION * values.size and _refinement_fits(matrix.shape, size, budget):
        square = _SquareFactor.of(whole, matrix, scaling, axis, block_bytes, stage)
        stage(f"refining the {unresolved} smallest eigenvalues")
        floor = rtol * top
        ceiling = values[unresolved] + resolved * GRAM_RELATIVE_ACCURACY
        rounding = (rows + columns) * np.finfo(float).eps * np.sqrt(top)
        smallest = square.smallest_squares(unresolved, size, floor, ceiling, rounding)
        if smallest is not None:
            values = np.sort(np.concatenate([smallest, values[unresolved:]]))
            kept = values[values > floor]
            return kept, int(values.size - kept.size), "refined"
        same_values = square.matrix
    elif whole is not None:
        same_values = whole
    else:
        stage("QR factor")
        same_values = _triangular_factor(None, matrix, scaling, axis, block_bytes)
    stage("singular values")
    if whole is not None:
        values = np.linalg.svd(same_values, compute_uv=False)[::-1] ** 2
    else:  # the n x n factor, overwritten in place
        values = (
            scipy.linalg.svd(same_values, compute_uv=False, overwrite_a=True, check_finite=False)[
                ::-1
            ]
            ** 2
        )
    kept = values[values > rtol * values[-1]]
    return kept, int(values.size - kept.size), "svd"


def _refinement_fits(shape, size: int, budget: int | None) -> bool:
    """Whether the refinement's square factor and n x ``size`` subspace fit ``budget``."""
    order = min(shape)
    return budget is None or 8 * order * (order + REFINE_ARRAYS * size) <= budget


def _gram_eigenvalues(matrix, scaling: Scaling, axis: int, step: int, count: int, stage):
    """Eigenvalues of the smaller Gram matrix of the scaled block matrix, ascending: one n x n
    float64 matrix, accumulated in place (BLAS ``dsyrk``, lower triangle) and overwritten by
    LAPACK's ``syevd``."""
    order = min(matrix.shape)
    gram = np.zeros((order, order), order="F")
    for index, (start, stop, block) in enumerate(matrix.blocks(axis, step)):
        stage(f"Gram matrix, block {index + 1} of {count}")
        scaled = scaling.apply(block, start, stop, axis)
        # scaled.T is a Fortran view: W_b^T W_b (rows) or W_b W_b^T (columns), no copy
        trans = 0 if axis == 0 else 1
        gram = dsyrk(1.0, scaled.T, beta=1.0, c=gram, trans=trans, lower=1, overwrite_c=1)
        del scaled, block
    stage("eigenvalues")
    return scipy.linalg.eigh(
        gram, lower=True, eigvals_only=True, overwrite_a=True, check_finite=False, driver="evd"
    )


@dataclass
class _SquareFactor:
    """A square matrix A with the singular values of the layer matrix, and a solver of
    ``A^T A y = x``."""

    matrix: np.ndarray
    solve: Callable[[np.ndarray], np.ndarray]

    @classmethod
    def of(cls, whole, matrix, scaling: Scaling, axis: int, block_bytes: int, stage: Stage):
        """W itself (LU factors) when it is square and in memory; else the R of a QR."""
        if whole is not None and whole.shape[0] == whole.shape[1]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
                factors = scipy.linalg.lu_factor(whole, check_finite=False)

            def solve_lu(x):
                inner = scipy.linalg.lu_solve(factors, x, trans=1, check_finite=False)
                return scipy.linalg.lu_solve(factors, inner, check_finite=False)

            return cls(whole, solve_lu)
        stage("QR factor")
        triangle = _triangular_factor(whole, matrix, scaling, axis, block_bytes)

        def solve_triangular(x):
            inner = scipy.linalg.solve_triangular(triangle, x, trans="T", check_finite=False)
            return scipy.linalg.solve_triangular(triangle, inner, check_finite=False)

        return cls(triangle, solve_triangular)

    def smallest_squares(
        self, count: int, size: int, floor: float, ceiling: float, rounding: float
    ) -> np.ndarray | None:
        """The ``count`` smallest squared singular values of A, ascending; None unless every
        one is certified and none lies above ``ceiling``.

        A value s is certified to :data:`GRAM_RELATIVE_ACCURACY` by its residual
        (:func:`ritz_error`); or, once the iteration has converged, by the rounding error of
        the backward-stable solves and products, about ``rounding`` (an absolute error on s,
        as for an SVD); or as a numerical zero, below ``floor`` (on s^2) with its rounding,
        since a Ritz value bounds the singular value of its rank from above (interlacing).
        """
        a = self.matrix
        tolerance = GRAM_RELATIVE_ACCURACY / 2  # on a singular value: 2x that on its square
        guess = np.random.default_rng(0).standard_normal((a.shape[0], size))
        previous = np.zeros(count)
        for _ in range(REFINE_ITERATIONS):
            try:
                with np.errstate(all="ignore"):
                    image = self.solve(guess)
            except np.linalg.LinAlgError:  # an exactly singular triangular factor
                return None
            if not np.isfinite(image).all():
                return None
            basis = np.linalg.qr(image)[0]
            left, values, right = np.linalg.svd(a @ basis, full_matrices=False)
            guess = basis @ right.T
            residual = np.linalg.norm(a.T @ left - guess * values, axis=0)
            error = ritz_error(values[::-1], residual[::-1])[:count]
            small = values[::-1][:count]
            converged = np.abs(small - previous) <= np.maximum(rounding, STAGNATION * small)
            certified = (
                (error <= tolerance * small)
                | (converged & (rounding <= tolerance * small))
                | ((small + rounding) ** 2 < floor)
            )
            if certified.all():
                return small**2 if small[-1] ** 2 <= ceiling else None
            if converged.all():
                return None
            previous = small
        return None


def ritz_error(values: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """A bound on the distance of each Ritz singular value (ascending ``values``, with
    ``A x = s u`` and ``residuals`` ``|A^T u - s x|``) from a singular value of A: the
    residual itself, or the Kato-Temple bound ``r^2 / (2 gap)`` where the gap to every other
    singular value (the neighbouring Ritz values, less their residuals, and -s) exceeds it."""
    gaps = 2 * values
    if values.size > 1:
        below = np.abs(np.diff(values)) - residuals[:-1]
        above = np.abs(np.diff(values)) - residuals[1:]
        gaps[1:] = np.minimum(gaps[1:], below)
        gaps[:-1] = np.minimum(gaps[:-1], above)
    quadratic = np.divide(
        residuals**2, 2 * gaps, out=np.full_like(residuals, np.inf), where=gaps > 0
    )
    return np.where(gaps > residuals, np.minimum(residuals, quadratic), residuals)


def _triangular_factor(whole, matrix, scaling: Scaling, axis: int, block_bytes: int):
    """R (n x n, upper triangular) of a QR of the tall orientation of the scaled matrix (W for
    N >= M, else W^T), accumulated over blocks (TSQR, LAPACK ``dtpqrt``)."""
    order = min(matrix.shape)
    triangle = np.zeros((order, order), order="F")
    if whole is not None:
        parts: Iterator = iter([(0, matrix.shape[axis], whole)])
    else:
        step = block_step(matrix.shape, axis, block_bytes)
        parts = (
            (start, stop, scaling.apply(block, start, stop, axis))
            for start, stop, block in matrix.blocks(axis, step)
        )
    for _, _, scaled in parts:
        tall = np.asfortranarray(scaled if axis == 0 else scaled.T)
        triangle, _, _, info = dtpqrt(
            0, min(64, order), triangle, tall, overwrite_a=1, overwrite_b=1
        )
        if info != 0:  # pragma: no cover - LAPACK argument errors
            raise RuntimeError(f"dtpqrt failed (info {info})")
    for column in range(order - 1):  # np.triu in place (a Fortran column at a time)
        triangle[column + 1 :, column] = 0.0
    return triangle
