"""Every option of nnequiv in one place: defaults, choices, help texts and validation.

Four groups, each a frozen dataclass:

* :class:`Settings`: the analysis settings. Every one of them changes the numbers of an
  analysis, so analyses compared with each other must agree on all of them (method items
  3-8, 10, 13, 14).
* :class:`DistanceSettings`: how two analyses are compared (level, order weight).
* :class:`LoadOptions`: how one file is read (names kept, layout, limits). They may differ
  between the networks of one comparison.
* :class:`ConnectomeOptions`: how a connectome becomes a Mixed Matrix Ensemble.

The command line builds its options from the field metadata here (help text, choices, flag),
so a default is written once. :func:`split_options` sorts keyword arguments into the groups.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace

import numpy as np

from nnequiv.errors import InputError, shown

__all__ = [
    "Settings",
    "DistanceSettings",
    "LoadOptions",
    "ConnectomeOptions",
    "split_options",
    "option_fields",
    "ENSEMBLES",
    "NORMALIZATIONS",
    "CANONICAL_FORMS",
    "FINGERPRINTS",
    "LEVELS",
    "CONNECTOME_FORMATS",
    "DEFAULT_GRID",
    "DEFAULT_LOCATIONS",
    "DEFAULT_RTOL",
    "DEFAULT_TAIL_QUANTILE",
    "DEFAULT_ORDER_WEIGHT",
    "DEFAULT_MAX_TENSOR_BYTES",
    "BOOTSTRAP_RESAMPLES",
]

ENSEMBLES = ("COE", "CUE", "CSE")
NORMALIZATIONS = ("median", "mean", "none")
#: Canonical form of a layer (method item 13): rows and columns balanced, rows to unit norm,
#: or the stored matrix (the paper's).
CANONICAL_FORMS = ("balanced", "rows", "raw")
FINGERPRINTS = ("signed", "absolute")
LEVELS = ("layer", "pooled")
CONNECTOME_FORMATS = ("edges", "adjacency")

#: (low, high, bins) of the shared log-spaced grid of densities (method item 6).
DEFAULT_GRID = (1e-6, 1e6, 240)
#: Spectral locations of the layer-resolved points (method item 10): 10^-2 ... 10^2.
DEFAULT_LOCATIONS = tuple(float(x) for x in np.logspace(-2, 2, 9))
#: Eigenvalues below ``rtol * max`` are numerical zeros (method item 2).
DEFAULT_RTOL = 1e-12
#: The tail of the decay fit starts at this quantile of the pooled spectrum (method item 8).
DEFAULT_TAIL_QUANTILE = 0.90
#: Weight of ``log n`` against the tail masses in a layer point (method item 10).
DEFAULT_ORDER_WEIGHT = 2.0
#: A tensor declared larger than this is refused before anything is allocated.
DEFAULT_MAX_TENSOR_BYTES = 8 * 2**30
#: Resamples of the realizations behind every spread (method items 8 and 11).
BOOTSTRAP_RESAMPLES = 32


def option(default, help: str, *, choices=None, flag: str | None = None, metavar=None, cli=True):
    """A dataclass field with what the command line needs to offer it."""
    metadata = {"help": help, "choices": choices, "flag": flag, "metavar": metavar, "cli": cli}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default, metadata=metadata)
    return field(default=default, metadata=metadata)


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}; use one of {', '.join(map(str, choices))}")


def _check_positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_number(name: str, value, low=-math.inf, high=math.inf, *, open_low=True) -> None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    below = number <= low if open_low else number < low
    if not math.isfinite(number) or below or number >= high:
        bound = f"> {low:g}" if open_low else f">= {low:g}"
        if high < math.inf:
            bound += f" and < {high:g}"
        raise InputError(f"{name} must be {bound}, got {value!r}")


@dataclass(frozen=True)
class Settings:
    """The analysis settings: every option that changes the numbers of an analysis.

    Analyses are comparable only when all of these agree (``compare``, ``cluster`` and
    ``identify`` refuse others, naming the setting that differs).
    """

    ensemble: str = option("CUE", "conjugate circular ensemble", choices=ENSEMBLES)
    realizations: int = option(
        10, "realizations R of the conjugate ensemble (curve bands, spreads)", metavar="R"
    )
    seed: int = option(0, "one seed fixes every random draw", metavar="S")
    normalization: str = option(
        "median", "divide each layer spectrum by its median or mean", choices=NORMALIZATIONS
    )
    canonical: str = option(
        "balanced",
        "canonical form of a layer: 'balanced' scales rows and columns to equal norms (folded "
        "BatchNorms, rescaled neurons and the storage layout change nothing), 'rows' scales "
        "output rows to unit norm, 'raw' is the paper's stored matrix",
        choices=CANONICAL_FORMS,
    )
    fingerprint: str = option(
        "signed",
        "layer point: signed tail-mass difference or the absolute CSD",
        choices=FINGERPRINTS,
    )
    locations: tuple = option(DEFAULT_LOCATIONS, "spectral locations of a layer point", cli=False)
    grid: tuple = option(DEFAULT_GRID, "(low, high, bins) of the density grid", cli=False)
    tail_quantile: float = option(
        DEFAULT_TAIL_QUANTILE,
        "quantile of the pooled spectrum where the tail fit starts",
        metavar="Q",
    )
    rtol: float = option(DEFAULT_RTOL, "eigenvalues below rtol * max are zeros")

    def __post_init__(self):
        object.__setattr__(self, "ensemble", str(self.ensemble).upper())
        check_choice("ensemble", self.ensemble, ENSEMBLES)
        _check_positive_int("realizations", self.realizations)
        _check_positive_int("seed", self.seed, minimum=0)
        check_choice("normalization", self.normalization, NORMALIZATIONS)
        check_choice("canonical form", self.canonical, CANONICAL_FORMS)
        check_choice("fingerprint", self.fingerprint, FINGERPRINTS)
        _check_number("tail_quantile", self.tail_quantile, 0.0, 1.0)
        _check_number("rtol", self.rtol, 0.0, 1.0)
        grid = tuple(self.grid)
        if len(grid) != 3:
            raise InputError(f"grid must be (low, high, bins), got {self.grid!r}")
        low, high, bins = float(grid[0]), float(grid[1]), grid[2]
        _check_positive_int("grid bins", bins)
        if not 0 < low < high < math.inf:
            raise InputError(f"grid needs 0 < low < high, got {low!r}, {high!r}")
        object.__setattr__(self, "grid", (low, high, int(bins)))
        locations = tuple(float(x) for x in np.atleast_1d(self.locations))
        if not locations or not all(0 < x < math.inf for x in locations):
            raise InputError(f"locations must be positive numbers, got {self.locations!r}")
        object.__setattr__(self, "locations", locations)

    def differences(self, other: Settings) -> list[str]:
        """Names of the settings in which ``other`` differs."""
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class DistanceSettings:
    """How two analyses are compared (method items 9-11)."""

    level: str = option(
        "layer",
        "'layer': energy distance of the layer clouds (ours); 'pooled': the paper's sup "
        "distance of the pooled CSD curves",
        choices=LEVELS,
    )
    order_weight: float = option(
        DEFAULT_ORDER_WEIGHT,
        "weight of log n against the tail masses in a layer point",
        metavar="W",
    )

    def __post_init__(self):
        check_choice("level", self.level, LEVELS)
        _check_number("order_weight", self.order_weight, 0.0, open_low=False)
        object.__setattr__(self, "order_weight", float(self.order_weight))

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _patterns(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class LoadOptions:
    """How the tensors of one file are read (they may differ between compared networks)."""

    include: tuple | None = option(
        None,
        "keep only tensors whose full name matches this shell pattern (fnmatch: '*conv*' "
        "matches names containing conv; repeatable)",
        metavar="PATTERN",
    )
    exclude: tuple | None = option(
        None,
        "drop tensors whose full name matches this shell pattern (repeatable)",
        metavar="PATTERN",
    )
    layout: str | None = option(
        None,
        "kernel layout: oihw (PyTorch, ONNX, Paddle), hwio (TensorFlow, Keras, TF.js), "
        "ohwi (TFLite); default: the format's own, or inferred from the kernel shapes",
    )
    trust_code: bool = option(
        False,
        "load with torch.jit.load / torch.load(weights_only=False), which run code stored in "
        "the file, instead of reading its tensors only; only for files you trust",
    )
    max_tensor_bytes: int = option(
        DEFAULT_MAX_TENSOR_BYTES,
        "refuse a tensor declared larger than this many bytes, before reading it",
        metavar="BYTES",
    )
    limits: tuple | None = option(
        None,
        "raise (or lower) a limit on what a file may declare, for this run: NAME=VALUE with "
        "NAME a field of nnequiv.loading.LIMITS, e.g. max_tensors=5000000 (docs/security.md "
        "lists each with its default); repeatable",
        flag="--limit",
        metavar="NAME=VALUE",
    )
    max_memory: int | None = option(
        None,
        "memory one layer's computation may take: a larger layer is computed in smaller "
        "blocks, one that needs more even so is refused (default: the smallest of the "
        "available RAM, the room under the address-space limit and the cgroup limit)",
        metavar="BYTES",
    )

    def __post_init__(self):
        object.__setattr__(self, "include", _patterns(self.include))
        object.__setattr__(self, "exclude", _patterns(self.exclude))
        object.__setattr__(self, "limits", _limit_settings(self.limits))
        _check_positive_int("max_tensor_bytes", self.max_tensor_bytes)
        if self.max_memory is not None:
            _check_positive_int("max_memory", self.max_memory)


@dataclass
class ReaderLimits:
    """Bounds on the work one file may ask of a reader, each checked from what the file
    declares before the work is done (docs/security.md lists them). A legitimate file beyond
    one is refused with a line naming the limit; raise it for such a file, e.g.
    ``nnequiv.loading.LIMITS.max_tensors = 5_000_000``.

    Attributes
    ----------
    max_tensors : int
        Tensors, header keys, archive members, variables or constants one file may list.
    max_pickle_objects : int
        Objects (records, containers, tensors) one pickle may build.
    max_depth : int
        Nesting of the containers and modules a file's tensors are found in (their dotted
        names grow with it).
    max_storage_views : int
        Tensors that may view one PyTorch storage.
    max_subgraphs : int
        Subgraphs of a TFLite model.
    max_hdf5_objects : int
        Groups, datasets and links of an HDF5 file.
    max_hdf5_depth : int
        Nesting of HDF5 groups.
    max_hdf5_chunks : int
        Chunks of one HDF5 dataset.
    max_expansion : int
        Bytes the tensors of a file may decode to per byte of the file (decompression,
        dequantisation, densifying, views of one storage), above ``expansion_floor``.
    expansion_floor : int
        Decoded bytes any file may reach whatever its size.
    max_folder_depth : int
        Levels of folders searched below a folder given (deeper ones are noted and skipped).
    max_query_steps : int
        SQLite virtual-machine steps of one query on an nnequiv index (reading a valid index
        of 100,000 networks takes far fewer).

    The command line sets them with ``--limit NAME=VALUE`` (:func:`apply_limits`).
    """

    max_tensors: int = 1_000_000
    max_pickle_objects: int = 10_000_000
    max_depth: int = 256
    max_storage_views: int = 100_000
    max_subgraphs: int = 10_000
    max_hdf5_objects: int = 1_000_000
    max_hdf5_depth: int = 64
    max_hdf5_chunks: int = 1_000_000
    max_expansion: int = 32
    expansion_floor: int = 256 << 20
    max_folder_depth: int = 100
    max_query_steps: int = 500_000_000


#: The limits every reader checks (module-wide; raise a field for a file beyond it).
LIMITS = ReaderLimits()


def parse_limit(text: str) -> tuple[str, int]:
    """``(field, value)`` of a ``NAME=VALUE`` setting of :data:`LIMITS` (``--limit``).

    Raises
    ------
    InputError
        NAME is not a field of :class:`ReaderLimits`, or VALUE not an integer >= 0.
    """
    name, equals, value = str(text).partition("=")
    name = name.strip().replace("-", "_")
    names = list(ReaderLimits.__dataclass_fields__)
    if not equals or name not in names:
        raise InputError(
            f"--limit {shown(text)}: give NAME=VALUE with NAME one of {', '.join(names)}"
        )
    try:
        number = int(value.strip().replace("_", ""))
    except ValueError:
        number = -1
    if number < 0:
        raise InputError(f"--limit {shown(text)}: VALUE must be an integer >= 0")
    return name, number


def _limit_settings(limits) -> tuple | None:
    """``NAME=VALUE`` limit settings checked and written ``name=value`` (None: none)."""
    if not limits:
        return None
    items = [limits] if isinstance(limits, str) else list(limits)
    return tuple("=".join(map(str, parse_limit(item))) for item in items)


@dataclass(frozen=True)
class ConnectomeOptions:
    """How a connectome becomes a Mixed Matrix Ensemble (docs/method.md, Connectomes)."""

    mixture: float = option(
        0.5, "connectomes: probability p that a node joins a submatrix", metavar="P"
    )
    submatrices: int = option(
        32, "connectomes: principal submatrices drawn per matrix", metavar="K"
    )
    format: str | None = option(
        None,
        "connectomes: read a CSV as an edge list or an adjacency matrix (default: inferred)",
        choices=CONNECTOME_FORMATS,
    )

    def __post_init__(self):
        _check_number("mixture", self.mixture, 0.0, 1.0 + 1e-12)
        _check_positive_int("submatrices", self.submatrices)
        if self.format is not None:
            check_choice("connectome format", self.format, CONNECTOME_FORMATS)

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


GROUPS = (Settings, DistanceSettings, LoadOptions, ConnectomeOptions)


def option_fields(group) -> list:
    """The dataclass fields of ``group`` that the command line offers."""
    return [f for f in fields(group) if f.metadata.get("cli", True)]


def field_default(f):
    """The default value of a settings field."""
    return f.default_factory() if f.default is MISSING else f.default


def split_options(
    options: Mapping,
    *,
    base: Settings | None = None,
    distances: bool = True,
    also: Iterable[str] = (),
) -> tuple:
    """Sort keyword options into ``(Settings, DistanceSettings, LoadOptions,
    ConnectomeOptions, connectome_given)``, validating each.

    ``base`` (a :class:`Settings`) supplies analysis settings not given in ``options``.
    ``connectome_given`` is the set of connectome options the caller gave explicitly
    (refused for networks). With
    ``distances=False`` the :class:`DistanceSettings` fields are refused (an analysis has
    none). ``also`` names the other keywords the caller takes, for the message that answers
    an unknown option.

    Raises
    ------
    InputError
        An unknown option (with the closest known name) or a bad value.
    """
    if base is not None and not isinstance(base, Settings):
        raise InputError(f"settings must be a nnequiv.Settings, got {type(base).__name__}")
    names = {group: {f.name for f in fields(group)} for group in GROUPS}
    if not distances:
        given = sorted(names[DistanceSettings] & set(options))
        if given:
            raise InputError(
                f"{given[0]!r} is a distance setting (compare, cluster and identify take it); "
                "an analysis has none: drop it"
            )
        names[DistanceSettings] = set()
    unknown = set(options) - set().union(*names.values())
    if unknown:
        name = sorted(unknown)[0]
        known = sorted(set().union(*names.values(), also))
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"unknown option {name!r}{hint}; options are: {', '.join(known)}")

    def chosen(group):
        return {k: v for k, v in options.items() if k in names[group] and v is not None}

    settings = (
        replace(base, **chosen(Settings)) if base is not None else Settings(**chosen(Settings))
    )
    connectome = chosen(ConnectomeOptions)
    return (
        settings,
        DistanceSettings(**chosen(DistanceSettings)),
        LoadOptions(**chosen(LoadOptions)),
        ConnectomeOptions(**connectome),
        frozenset(connectome),
    )


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value
