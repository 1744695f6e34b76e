"""A fingerprint index: one SQLite file with what the distances of many networks need.

For every network the index keeps its label (the source as it was given), the absolute path,
the content hash, the nnequiv version and its :class:`~nnequiv.distances.Summary`: the layer
points and pooled CSD curves of every realization with the layers' orders and stream keys.
From these :func:`~nnequiv.distances.fingerprint` makes the same fingerprints, at any level
and order weight, as from the analyses themselves, so ``identify`` and ``cluster`` give the
same distances, spreads, eps and verdicts through an index as from the files. The analysis
settings are stored once; an index is read only with the settings it was built with.

Index files are untrusted input: they are read with the standard library's ``sqlite3`` and
``numpy.frombuffer`` (no pickle), and every row is checked (types, sizes, finite values,
consistent orders and stream keys); a bad file is refused with one line.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from nnequiv._pipeline import Request, analyze_sources, request
from nnequiv._serial import Invalid, require, stored_settings, summary_blobs, summary_from_blobs
from nnequiv._version import __version__
from nnequiv.cache import content_hash
from nnequiv.discovery import discover
from nnequiv.distances import Summary, summarize
from nnequiv.errors import FormatError, InputError, NNEquivError
from nnequiv.loading._limits import LIMITS, open_regular, shown
from nnequiv.settings import Settings

__all__ = [
    "IndexChange",
    "IndexEntry",
    "Library",
    "is_index",
    "open_index",
    "build_index",
    "add_to_index",
    "check_index_settings",
]

INDEX_FORMAT = "nnequiv-index"
INDEX_FORMAT_VERSION = 2
SQLITE_MAGIC = b"SQLite format 3\x00"
#: A row claiming more layers than this is refused before its arrays are read.
MAX_LAYERS = 1_000_000
#: The default of ``LIMITS.max_query_steps`` (``--limit max_query_steps=N``): SQLite
#: virtual-machine steps after which a query on an index is interrupted.
MAX_QUERY_STEPS = LIMITS.max_query_steps
_STEPS_PER_CALL = 10_000
#: Longest text (label, path, setting) an index may hold, in characters or bytes.
MAX_TEXT = 1 << 20

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE networks (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    version TEXT NOT NULL,
    n_layers INTEGER NOT NULL,
    orders BLOB NOT NULL,
    streams BLOB NOT NULL,
    points BLOB NOT NULL,
    structure BLOB NOT NULL,
    csd BLOB NOT NULL
);
"""
_COLUMNS = "label, path, content_hash, version, n_layers, orders, streams, points, structure, csd"


@dataclass(frozen=True, repr=False)
class IndexEntry:
    """One network of an index.

    Attributes
    ----------
    label : str
        The source as it was given when the network was added (its name in results).
    path : str
        Its absolute path then ("" for an in-memory network).
    content_hash : str
        BLAKE2b hash of its content ("" where it could not be hashed).
    version : str
        The nnequiv version that analysed it.
    summary : Summary
        What its fingerprints are made from.
    """

    label: str
    path: str
    content_hash: str
    version: str
    summary: Summary

    def __repr__(self) -> str:
        return f"IndexEntry({self.label!r}, {self.summary.orders.size} layers)"

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "path": self.path,
            "content_hash": self.content_hash,
            "version": self.version,
            "n_layers": int(self.summary.orders.size),
            "orders": self.summary.orders.tolist(),
        }


@dataclass(frozen=True)
class IndexChange:
    """What :func:`add_to_index` did with one network.

    Attributes
    ----------
    label : str
        Its label in the index.
    action : {"added", "renamed", "replaced", "unchanged"}
        Added under its own label; added under a new label because another network holds
        its own; put in the place of the network with its label (``replace=True``); or left
        out because the index holds it already (same label and content).
    detail : str
        For "renamed", the label it came with; for "unchanged", the label it is held under.
    """

    label: str
    action: str
    detail: str = ""

    def line(self) -> str:
        if self.action == "renamed":
            return (
                f"added: {self.label} (the index holds another network as {self.detail}; "
                "--replace replaces it)"
            )
        if self.action == "unchanged":
            return f"unchanged: {self.label} (already in the index)"
        return f"{self.action}: {self.label}"

    def to_dict(self) -> dict:
        return {"label": self.label, "action": self.action, "detail": self.detail}


@dataclass(repr=False)
class Library:
    """An opened fingerprint index: its settings and its networks (and, as
    :func:`add_to_index` returns it, what the addition did)."""

    path: str
    settings: Settings
    version: str
    entries: list[IndexEntry]
    changes: list[IndexChange] = field(default_factory=list)

    @property
    def summaries(self) -> list[Summary]:
        return [
            replace(entry.summary, path=entry.path or None, index=self.path)
            for entry in self.entries
        ]

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"Library({self.path!r}, {len(self.entries)} networks)"

    def to_dict(self) -> dict:
        out = {
            "path": self.path,
            "version": self.version,
            "settings": self.settings.to_dict(),
            "networks": [entry.to_dict() for entry in self.entries],
        }
        if self.changes:
            out["changes"] = [change.to_dict() for change in self.changes]
        return out


#: File endings taken for fingerprint indexes, whatever their bytes (a damaged index is
#: then refused as one, not skipped as an unknown file).
INDEX_SUFFIXES = (".sqlite", ".sqlite3", ".db")


def is_index(path) -> bool:
    """True for a file that starts like a SQLite database or ends like an index (an index,
    or a damaged one that :func:`open_index` refuses)."""
    if not isinstance(path, (str, os.PathLike)) or not Path(path).is_file():
        return False  # a FIFO or device is never opened here
    if Path(path).suffix.lower() in INDEX_SUFFIXES:
        return True
    try:
        with open_regular(Path(path)) as stream:
            return stream.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except (OSError, NNEquivError):
        return False


def check_index_settings(library: Library, settings: Settings) -> None:
    """Refuse an index built with other analysis settings than ``settings``, naming the
    first that differs."""
    differing = library.settings.differences(settings)
    if differing:
        name = differing[0]
        built = getattr(library.settings, name)
        cli = next(f for f in fields(Settings) if f.name == name).metadata.get("cli", True)
        remedy = f"give --{name.replace('_', '-')} {built}" if cli else f"use its {name}"
        raise InputError(
            f"{library.path}: index built with {name}={built!r}, but {name}="
            f"{getattr(settings, name)!r} is asked for; {remedy}, or rebuild the index"
        )


# ---- reading ---------------------------------------------------------------------------


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection that writes nothing anywhere. Without changes in a ``-wal``
    file: ``mode=ro&immutable=1`` (no lock, no ``-shm`` or ``-wal`` file). With them: the
    index is read into memory with the committed frames of its ``-wal`` applied
    (:func:`_with_wal`; SQLite itself would make a ``-shm`` file beside the index). Every
    query is bounded (``LIMITS.max_query_steps``)."""
    wal = Path(f"{path}-wal")
    if not os.path.lexists(wal) or (wal.is_file() and wal.stat().st_size == 0):
        uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
        connection = sqlite3.connect(uri, uri=True)
    else:
        with open_regular(path) as stream:
            database = stream.read()
        with open_regular(wal) as stream:
            log = stream.read()
        connection = sqlite3.connect(":memory:")
        connection.deserialize(_with_wal(database, log))
    _bound_queries(connection)
    return connection


_WAL_MAGIC = (0x377F0682, 0x377F0683)  # checksums of little-endian, big-endian words


def _with_wal(database: bytes, log: bytes) -> bytes:
    """The database file as SQLite would read it: every frame of the write-ahead log up to
    its last valid commit applied (a frame is valid when its salts match the log's header
    and its running checksum holds, as https://sqlite.org/fileformat2.html#walformat
    defines them), in rollback-journal mode so that it opens from memory."""
    pages = bytearray(database)
    if len(log) >= 32 and int.from_bytes(log[:4], "big") in _WAL_MAGIC:
        order = "big" if int.from_bytes(log[:4], "big") & 1 else "little"
        page_size = int.from_bytes(log[8:12], "big")
        salts = log[16:24]
        checksum = _wal_checksum(log[:24], (0, 0), order)
        if checksum == (int.from_bytes(log[24:28], "big"), int.from_bytes(log[28:32], "big")):
            pages = _apply_frames(pages, log, page_size, salts, checksum, order)
    if len(pages) >= 20:
        pages[18:20] = b"\x01\x01"  # file format: rollback journal (WAL cannot be in memory)
    return bytes(pages)


def _apply_frames(pages: bytearray, log: bytes, page_size: int, salts, checksum, order):
    """``pages`` with the log's frames applied up to its last valid commit frame."""
    pending: dict[int, bytes] = {}
    frame = 24 + page_size
    valid_size = 512 <= page_size <= 65536 and page_size & (page_size - 1) == 0
    most = len(pages) // page_size + len(log) // frame  # pages the result can have
    for start in range(32, len(log) - frame + 1 if valid_size else 32, frame):
        header, page = log[start : start + 24], log[start + 24 : start + frame]
        number, size = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:8], "big")
        if header[8:16] != salts or not 1 <= number <= most or size > most:
            break
        checksum = _wal_checksum(header[:8] + page, checksum, order)
        if checksum != (int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")):
            break
        pending[number] = page
        if size:  # a commit (size: the pages after it): its frames and those before it count
            for number, content in pending.items():
                offset = (number - 1) * page_size
                pages.extend(bytes(max(0, offset + page_size - len(pages))))
                pages[offset : offset + page_size] = content
            del pages[size * page_size :]
            pending = {}
    return pages


def _wal_checksum(data: bytes, start: tuple[int, int], order: str) -> tuple[int, int]:
    """SQLite's running checksum of a WAL header or frame (32-bit words in pairs)."""
    first, second = start
    words = memoryview(data).cast("B")
    for offset in range(0, len(words), 8):
        x0 = int.from_bytes(words[offset : offset + 4], order)
        x1 = int.from_bytes(words[offset + 4 : offset + 8], order)
        first = (first + x0 + second) & 0xFFFFFFFF
        second = (second + x1 + first) & 0xFFFFFFFF
    return first, second


def _bound_queries(connection: sqlite3.Connection) -> None:
    """Interrupt any statement after ``LIMITS.max_query_steps`` virtual-machine steps (an
    index made to loop gives an error, not a hang)."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += _STEPS_PER_CALL
        return 1 if steps > LIMITS.max_query_steps else 0

    connection.set_progress_handler(count, _STEPS_PER_CALL)


def _check_schema(connection: sqlite3.Connection) -> None:
    """Plain tables ``meta`` and ``networks`` (with their own indexes) and nothing else that
    a query could run: no view, trigger or virtual table."""
    rows = connection.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    for kind, name, sql in rows:
        require(kind in ("table", "index"), f"holds a {kind} ('{shown(str(name))}')")
        virtual = isinstance(sql, str) and sql.lstrip().upper().startswith("CREATE VIRTUAL")
        require(not virtual, f"holds a virtual table ('{shown(str(name))}')")
    tables = {name for kind, name, _ in rows if kind == "table"}
    require({"meta", "networks"} <= tables, "not an nnequiv index (tables missing)")


def _check_sizes(connection: sqlite3.Connection, settings: Settings) -> None:
    """Every row's blobs of the size its layer count gives, and its texts short, checked
    with SQL's ``length`` before any blob is read (a zeroblob claiming gigabytes allocates
    nothing)."""
    rows = connection.execute(
        "SELECT n_layers, length(orders), length(streams), length(points), length(csd), "
        "max(length(label), length(path), length(content_hash), length(version)) "
        "FROM networks"
    )
    count, locations, bins = settings.realizations, len(settings.locations), settings.grid[2]
    for layers, orders, streams, points, csd, text in rows:
        require(isinstance(layers, int) and 1 <= layers <= MAX_LAYERS, "bad layer count")
        expected = (8 * layers, 16 * layers, 8 * count * layers * locations, 8 * count * bins)
        require((orders, streams, points, csd) == expected, "a blob of the wrong size")
        require(isinstance(text, int) and text <= MAX_TEXT, "a text field too long")


def _meta(connection: sqlite3.Connection) -> tuple[Settings, str]:
    longest = connection.execute("SELECT max(length(key)), max(length(value)) FROM meta")
    require(all((n or 0) <= MAX_TEXT for n in longest.fetchone()), "a meta field too long")
    rows = connection.execute("SELECT key, value FROM meta").fetchall()
    meta = {key: value for key, value in rows if isinstance(key, str) and isinstance(value, str)}
    require(meta.get("format") == INDEX_FORMAT, "not an nnequiv index")
    require(meta.get("format_version") == str(INDEX_FORMAT_VERSION), "unknown index format version")
    return stored_settings(json.loads(meta.get("settings", "null"))), meta.get("version", "")


def _entry(row: tuple, settings: Settings, version: str, index: str) -> IndexEntry:
    label, path, content, entry_version, layers, *blobs = row if len(row) == 10 else (*row, None)
    for name, value in [("label", label), ("path", path), ("content hash", content)]:
        require(isinstance(value, str), f"{name} is not text")
    require(entry_version == version, f"{label}: analysed by another nnequiv version")
    require(isinstance(layers, int) and 1 <= layers <= MAX_LAYERS, f"{label}: bad layer count")
    summary = summary_from_blobs(label, settings, layers, tuple(blobs), index=index)
    return IndexEntry(label, path, content, entry_version, summary)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, MemoryError):
        return "too large to read into memory"
    if isinstance(exc, sqlite3.OperationalError) and str(exc) == "interrupted":
        return (
            f"a query ran past {LIMITS.max_query_steps:,} steps (a view or loop?; "
            "--limit max_query_steps=N raises the bound)"
        )
    return " ".join(str(exc).split()) or type(exc).__name__


def open_index(path, curves: bool = True) -> Library:
    """Read a fingerprint index, checking every row.

    ``curves=False`` leaves out the pooled CSD curves (``Summary.csd`` is None): enough for
    the layer level, and quicker to read.

    Raises
    ------
    InputError
        The path does not exist.
    FormatError
        The file is not an nnequiv index, is damaged, or was made by another nnequiv
        version (its numbers could differ: rebuild it).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such index file")
    if not is_index(path):
        raise FormatError(f"{path}: not an nnequiv index (not a SQLite database)")
    try:
        connection = _connect_read_only(path)
        try:
            _check_schema(connection)
            settings, version = _meta(connection)
            rows = []
            if version == __version__:
                _check_sizes(connection, settings)
                columns = _COLUMNS if curves else _COLUMNS.removesuffix(", csd")
                rows = connection.execute(f"SELECT {columns} FROM networks ORDER BY id").fetchall()
        finally:
            connection.close()
        entries = [_entry(row, settings, version, str(path)) for row in rows]
    except Invalid as exc:
        raise FormatError(f"{path}: not a valid nnequiv index: {exc}") from None
    except (sqlite3.Error, ValueError, TypeError, RecursionError, MemoryError) as exc:
        raise FormatError(f"{path}: not a valid nnequiv index: {_reason(exc)}") from None
    if version != __version__:
        raise FormatError(
            f"{path}: index built by nnequiv {version or 'an unknown version'}, this is "
            f"{__version__}; rebuild it with 'nnequiv index build'"
        )
    return Library(str(path), settings, version, entries)


# ---- writing ---------------------------------------------------------------------------


def _row(entry: IndexEntry) -> tuple:
    summary = entry.summary
    return (
        entry.label,
        entry.path,
        entry.content_hash,
        entry.version,
        int(summary.orders.size),
        *summary_blobs(summary),
    )


def _insert(connection: sqlite3.Connection, entries: Sequence[IndexEntry]) -> None:
    """Add entries; a label already there is an error (sqlite3.IntegrityError), never a
    silent replacement."""
    connection.executemany(
        f"INSERT INTO networks ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [_row(entry) for entry in entries],
    )


def _free_label(entry: IndexEntry, taken: set[str]) -> str:
    """A label for ``entry`` that no network in ``taken`` has: the shortest trailing part of
    its path that is free, else its label numbered (``label#2``)."""
    parts = Path(entry.path).parts if entry.path else ()
    for depth in range(2, len(parts) + 1):
        label = "/".join(parts[-depth:])
        if label not in taken and label.endswith(entry.label.rsplit("/", 1)[-1]):
            return label
    number = 2
    while f"{entry.label}#{number}" in taken:
        number += 1
    return f"{entry.label}#{number}"


def _placed(
    library: Library, entries: Sequence[IndexEntry], replace_labels: bool
) -> tuple[list[IndexEntry], list[str], list[IndexChange]]:
    """The new entries to insert, the labels to delete first, and what happens to each."""
    held = {entry.label: entry for entry in library.entries}
    taken = set(held) | {entry.label for entry in entries}
    inserts, deletes, changes = [], [], []
    for entry in entries:
        old = held.get(entry.label)
        if old is not None and entry.content_hash and old.content_hash == entry.content_hash:
            changes.append(IndexChange(entry.label, "unchanged", entry.label))
        elif old is None:
            inserts.append(entry)
            changes.append(IndexChange(entry.label, "added"))
        elif replace_labels:
            deletes.append(entry.label)
            inserts.append(entry)
            changes.append(IndexChange(entry.label, "replaced"))
        else:
            label = _free_label(entry, taken)
            taken.add(label)
            inserts.append(replace(entry, label=label))
            changes.append(IndexChange(label, "renamed", entry.label))
    return inserts, deletes, changes


#: The keywords of :func:`build_index` that say where networks are found and analysed;
#: :func:`add_to_index` takes them among its ``**options``.
RUN_KEYWORDS = ("cache_dir", "scheduler", "n_jobs", "progress", "notes", "on_error")


def _entries(sources: Sequence, wanted: Request, run: dict) -> list[IndexEntry]:
    """Find the networks in ``sources`` (:func:`nnequiv.discovery.discover`), analyse them
    (cache, scheduler) and make their index entries, named by their discovery labels.
    ``run`` holds the :data:`RUN_KEYWORDS`."""
    notes, on_error = run.get("notes"), run.get("on_error")
    for source in sources:
        if is_index(source):
            raise InputError(
                f"{source}: a fingerprint index keeps layer summaries, not networks to "
                "analyse; give the networks' files"
            )
    found = discover(list(sources), notes=notes, on_error=on_error)
    unique = [item.source for item in found]
    analyses = analyze_sources(
        unique,
        wanted,
        cache_dir=run.get("cache_dir"),
        scheduler=run.get("scheduler"),
        n_jobs=run.get("n_jobs"),
        progress=run.get("progress"),
        errors="return" if on_error is not None else "raise",
    )
    entries = []
    for item, analysis in zip(found, analyses):
        if isinstance(analysis, Exception):
            on_error(item.label, analysis)
            continue
        content, _ = content_hash(
            item.source, wanted.load, wanted.connectome, wanted.given, wanted.settings.seed
        )
        entries.append(
            IndexEntry(
                item.label,
                str(item.path.resolve()) if item.path is not None else "",
                content or "",
                analysis.version,
                replace(summarize(analysis), source=item.label),
            )
        )
    return entries


def build_index(
    sources: Sequence,
    output,
    settings: Settings | None = None,
    *,
    cache_dir=None,
    scheduler=None,
    n_jobs: int | None = None,
    progress: Callable | None = None,
    notes: Callable[[str], None] | None = None,
    on_error: Callable[[str, Exception], None] | None = None,
    **options,
) -> Library:
    """Analyse ``sources`` and write their fingerprint index to ``output`` (replacing it
    atomically if it exists).

    Parameters
    ----------
    sources : sequence of paths
        The networks (anything :func:`nnequiv.analyze` accepts by path).
    output : path
        The index file to write (one SQLite database).
    settings, **options
        Analysis settings and loading options, as for :func:`nnequiv.analyze`.
    cache_dir, scheduler, n_jobs, progress
        Where analyses are cached and run (as for :func:`nnequiv.analyze_all`).
    notes, on_error
        As for :func:`nnequiv.analyze_all`: a line for each file skipped, and where given, a
        network that cannot be found or analysed is passed to ``on_error`` and left out.
    """
    sources = list(sources)
    if not sources:
        raise InputError("no networks given: the index would be empty")
    wanted = request(options, settings, also=RUN_KEYWORDS)
    chosen = wanted.settings
    run = dict(zip(RUN_KEYWORDS, (cache_dir, scheduler, n_jobs, progress, notes, on_error)))
    entries = _entries(sources, wanted, run)
    if not entries:
        raise InputError("no network could be analysed: the index would be empty")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=output.parent, prefix=".", suffix=".tmp")
    os.close(handle)
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # as an ordinary new file, not private
        connection = sqlite3.connect(temporary)
        try:
            with connection:
                connection.executescript(_SCHEMA)
                meta = {
                    "format": INDEX_FORMAT,
                    "format_version": str(INDEX_FORMAT_VERSION),
                    "version": __version__,
                    "settings": json.dumps(chosen.to_dict()),
                }
                connection.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
                _insert(connection, entries)
        finally:
            connection.close()
        os.replace(temporary, output)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Library(str(output), chosen, __version__, entries)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def add_to_index(index, sources: Sequence, *, replace: bool = False, **options) -> Library:
    """Analyse ``sources`` with the index's settings and add them to the index at ``index``.

    The index never loses a network: one whose label is taken by another network is added
    under a longer label (its path's shortest free trailing part, else ``label#2``); with
    ``replace=True`` it takes that network's place instead. A network already there (same
    label and content) is left as it is. The :class:`Library` returned lists what happened
    to each in ``changes``. ``options`` holds the :data:`RUN_KEYWORDS` (``cache_dir``,
    ``scheduler``, ``n_jobs``, ``progress``, ``notes``, ``on_error``) as for
    :func:`build_index`, and analysis options, which must be those of the index."""
    options = dict(options)
    run = {key: options.pop(key, None) for key in RUN_KEYWORDS}
    library = open_index(index)
    wanted = request(options, library.settings, also=RUN_KEYWORDS)
    check_index_settings(library, wanted.settings)
    sources = list(sources)
    if not sources:
        raise InputError("no networks given to add")
    entries = _entries(sources, wanted, run)
    if not entries:
        raise InputError("no network could be analysed: nothing to add")
    inserts, deletes, changes = _placed(library, entries, replace)
    try:
        connection = sqlite3.connect(os.fspath(index), timeout=60)
        _bound_queries(connection)
        try:
            with connection:
                connection.executemany(
                    "DELETE FROM networks WHERE label = ?", [(label,) for label in deletes]
                )
                _insert(connection, inserts)
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise FormatError(f"{index}: cannot add to the index: {_reason(exc)}") from None
    updated = open_index(index)
    updated.changes = changes
    return updated
