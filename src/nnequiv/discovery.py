"""The networks (and connectomes) in what a user gives: files, folders as users have them,
sharded checkpoints, Hugging Face caches and hub ids.

:func:`discover` gives every command the same meaning for its paths:

* **Folders** are searched to any depth up to ``LIMITS.max_folder_depth`` levels (100; in a
  loop, not a recursion; ``--limit max_folder_depth=N`` raises it). Symbolic links to files
  are followed; a link to a folder only where its target lies inside the folder given, and
  a folder met twice (a link loop) is searched once. Hidden entries (``.git``, ``.cache``),
  FIFOs, sockets and devices are skipped with a note; nothing that is not a regular file is
  ever opened, and one given as an argument is refused.
* **Files that are not networks** are skipped with one note each: text and other unknown
  suffixes (README, ``config.json``), a table such as ``MANIFEST.csv``, an optimizer state
  (``{'state': ..., 'param_groups': ...}``), a pickle without tensors (``training_args.bin``),
  a data set, and arrays of which none could be a layer (no float array with two or more
  dimensions both >= 2).
* A **data set** is recognised by its array names: an array of samples (``x``, ``data``,
  ``images``, ``inputs``, ``features``, ``samples``) beside an array of labels (``y``,
  ``labels``, ``label``, ``targets``, ``target``, ``classes``) of at most two dimensions with the
  same first (sample) dimension; ``train``/``test``/``val`` affixes are ignored (``x_train``,
  ``y_test``, ``train_images``). Network tensors are not named so, and never come in such pairs.
* **Training runs**: the states a run writes beside its weights are skipped by name, as
  optimizer states are by content (``rng_state*.pth``, ``scheduler.pt``, ``optimizer.pt``,
  ``scaler.pt``, ``trainer_state.json``, ``training_args.bin``, ``*optim_states.pt``); a
  Hugging Face Trainer folder ``checkpoint-N`` is one network, labelled by its folder
  (``run/checkpoint-500``), and DeepSpeed's ``global_stepN`` folder beside its weights is
  skipped. A run folder thus holds one network per checkpoint.
* **Connectomes**: an npz with a ``chemical`` matrix and GraphML files always; a CSV when
  ``connectomes=True`` and it is not a table (every cell after the first column numeric, or an
  edge list ``pre, post, weight`` in which some node is at both ends of edges), or without it
  when it parses entirely as a connectome. A table with text columns (a manifest) never is one,
  and a CSV found in a folder is one only when it is shaped as an edge list or a square
  adjacency matrix, ``connectomes=True`` or not; other tables are skipped with a note.
* **One network in a folder**: a TensorFlow SavedModel (``saved_model.pb`` with
  ``variables/``), a TensorFlow checkpoint folder (``<name>.index`` beside
  ``<name>.data-00000-of-0000N``, ``<name>`` possibly empty) and a Core ML ``.mlpackage`` are
  each one network, labelled by the folder and read whole; nothing inside them is searched.
* **One network in several files**: a ``*.index.json`` with the shards it names
  (``model.safetensors.index.json``, ``pytorch_model.bin.index.json``), or a complete set of
  ``name-0000k-of-0000N.ext`` shards without an index (safetensors, PyTorch bins, GGUF splits).
  Where one folder holds the same Hugging Face model in several formats (``model.safetensors``
  and ``pytorch_model.bin``), the first of safetensors, PyTorch and TensorFlow is taken and the
  others are noted.
* **Hugging Face**: a cache folder ``models--org--name`` is read at ``refs/main`` (its
  ``snapshots/<hash>``); a hub id ``org/name`` that is not a local path is looked up in the
  local cache (``huggingface_hub``'s, ``HF_HUB_CACHE``) and downloaded only where
  ``huggingface_hub`` is installed and ``HF_HUB_OFFLINE`` is not set.
* **Labels** are unique: the shortest trailing part of each path that tells it from the others
  (``a/model.safetensors`` and ``b/model.safetensors``); a Hugging Face model that is one network
  is labelled ``org/name``. Text output, JSON, CSV and reports all use these labels.

Sniffing reads headers only (zip directories, npy and safetensors headers, the first rows of a
CSV); PyTorch files are opened with ``torch.load(weights_only=True, mmap=True)``, which runs no
code from the file and maps, not reads, the tensors. A network file that is corrupt is still
found: the analysis gives its one-line error.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nnequiv._display import unique_labels
from nnequiv._hub import (
    HF_WEIGHT_NAMES,
    HUB_ID,
    REPO_FOLDER,
    hub_folder,
    hub_weight_files,
    repo_snapshot,
)
from nnequiv._sniffing import CONNECTOME, NETWORK, sniff
from nnequiv.errors import InputError, NNEquivError, ResourceLimitError
from nnequiv.loading._limits import LIMITS, require_regular

#: Files a training run writes beside its weights (Hugging Face Trainer, Accelerate, DeepSpeed,
#: Lightning): random generator, learning-rate scheduler, optimizer, gradient scaler and trainer
#: states. Skipped by name, as optimizer states are skipped by content: they are not networks.
TRAINING_STATES = (
    (re.compile(r"^(rng_state(_\d+)?\.pth|random_states_\d+\.pkl)$"), "a random generator state"),
    (re.compile(r"^scheduler\.(pt|bin)$"), "a learning-rate scheduler state"),
    (re.compile(r"^(optimizer(_\d+)?\.(pt|bin)|.*optim_states\.pt)$"), "an optimizer state"),
    (re.compile(r"^scaler\.pt$"), "a gradient scaler state"),
    (re.compile(r"^(trainer_state\.json|training_args\.bin)$"), "the trainer's state"),
)
#: Folders more than this many levels below a folder given are not searched: the default of
#: ``nnequiv.loading.LIMITS.max_folder_depth``, which a user raises (``--limit``).
MAX_DEPTH = LIMITS.max_folder_depth
#: A Hugging Face Trainer checkpoint folder (one network) and DeepSpeed's state folder in it.
CHECKPOINT_FOLDER = re.compile(r"^checkpoint-\d+$")
DEEPSPEED_FOLDER = re.compile(r"^global_step\d+$")

__all__ = ["Found", "discover", "NETWORK", "CONNECTOME", "hub_weight_files"]


@dataclass(frozen=True)
class Found:
    """One network or connectome found by :func:`discover`.

    Attributes
    ----------
    label : str
        Short and unique among the results (shortest distinguishing trailing path).
    source : str or object
        What :func:`nnequiv.loading.open_weights` (networks) or
        :func:`nnequiv.connectomes.load_connectome` (connectomes) takes: a path, a
        :class:`nnequiv.loading.ShardSet`, or the object that was given.
    kind : {"network", "connectome"}
    path : pathlib.Path or None
        The main file (the file itself, the index, the first shard); None for objects.
    files : tuple of pathlib.Path
        Every file the network is read from (index and shards), e.g. for a content hash.
    """

    label: str
    source: object
    kind: str
    path: Path | None
    files: tuple[Path, ...] = ()


@dataclass
class _Candidate:
    parts: tuple[str, ...]
    source: object
    kind: str
    path: Path | None
    files: tuple[Path, ...]
    repo: int = 0  # parts[:repo] end with a Hugging Face model's org, name (0: none)
    min_parts: int = 1


def discover(
    paths,
    *,
    connectomes: bool = False,
    notes: Callable[[str], None] | None = None,
    on_error: Callable[[str, Exception], None] | None = None,
) -> list[Found]:
    """The networks and connectomes in files, folders, Hugging Face caches and hub ids.

    Parameters
    ----------
    paths : path, object, or an iterable of them
        Files, folders, ``*.index.json`` files, Hugging Face cache folders (``models--org--name``)
        or hub ids (``org/name``); in-memory sources (dicts, torch modules, WeightSources,
        Connectomes) pass through.
    connectomes : bool
        Take CSV files that are not tables as connectomes (``--connectome``); without it a CSV
        is a connectome only when it parses entirely as one.
    notes : callable, optional
        Called with one line for each thing skipped and why (the CLI prints them on stderr).
    on_error : callable, optional
        ``on_error(path, error)`` for a path that cannot be searched (missing, unresolvable),
        which is then left out; without it the error is raised.

    Returns
    -------
    list of Found
        In the order given, folders in name order (files before subfolders).

    Raises
    ------
    InputError
        A path that does not exist and is not a hub id, a hub id that cannot be resolved, or
        nothing found at all.
    MissingDependencyError
        A hub id not in the local cache, and ``huggingface_hub`` is not installed to fetch it.
    """
    single = isinstance(paths, (str, os.PathLike, Mapping)) or hasattr(paths, "state_dict")
    items = [paths] if single or not isinstance(paths, Iterable) else list(paths)
    search = _Search(connectomes, notes or (lambda _line: None))
    failed = False
    for group in _grouped(items):
        try:
            search.add(group)
        except NNEquivError as error:
            if on_error is None:
                raise
            on_error(str(group[0] if isinstance(group, list) else group), error)
            failed = True
    if not search.found and failed:
        return []
    if not search.found:
        given = ", ".join(str(getattr(item, "label", item)) for item in items) or "<nothing>"
        skipped = f" ({search.skipped} skipped; see the notes)" if search.skipped else ""
        raise InputError(f"{given}: no network found{skipped}")
    return _labelled(search.found)


def _grouped(items) -> list:
    """Items in order, files given one by one gathered per folder (so that shards given as
    ``dir/*`` are grouped as in a folder), each group at its first member's place."""
    groups, by_folder = [], {}
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            path = Path(os.path.expanduser(os.fspath(item)))
            if os.path.lexists(path) and not path.is_dir():
                key = os.path.abspath(path.parent)
                if key not in by_folder:
                    by_folder[key] = []
                    groups.append(by_folder[key])
                by_folder[key].append(path)
                continue
            item = path
        groups.append(item)
    return groups


class _Search:
    """What has been found and searched so far."""

    def __init__(self, connectomes: bool, notes: Callable[[str], None]):
        self.connectomes, self.notes = connectomes, notes
        self.found: list[_Candidate] = []
        self.folders: set[tuple[int, int]] = set()
        self.files: dict[str, str] = {}
        self.skipped = 0

    def skip(self, path, reason: str) -> None:
        self.skipped += 1
        self.notes(f"skipped {path}: {reason}")

    def add(self, item) -> None:
        if isinstance(item, list):
            virtual, repo = _virtual(Path(os.path.abspath(item[0].parent)))
            self.folder_files(item, virtual, repo, given=True)
        elif isinstance(item, Path):
            self.add_path(item)
        else:
            self.add_object(item)

    def add_object(self, item) -> None:
        from nnequiv.connectomes import Connectome, is_connectome

        label = getattr(item, "label", None) or f"<{type(item).__name__}>"
        if isinstance(item, Mapping):
            label = "<dict>"
        kind = CONNECTOME if isinstance(item, Connectome) or is_connectome(item) else NETWORK
        self.found.append(_Candidate((str(label),), item, kind, None, ()))

    def add_path(self, path: Path) -> None:
        if not os.path.lexists(path):
            if _could_be_hub_id(path):
                folder = hub_folder(path.as_posix(), self.notes)
                self.search(folder, [self.repo(folder, ())])
                return
            raise InputError(f"{path}: no such file or directory")
        if REPO_FOLDER.match(path.name):
            prefix = _virtual(Path(os.path.abspath(path.parent)))[0]
            self.search(path, [self.repo(path, prefix)])
        else:
            self.search(path, [(path, *_virtual(Path(os.path.abspath(path))))])

    def repo(self, folder: Path, prefix: tuple[str, ...]) -> tuple | None:
        """``(snapshot, virtual parts, repo)`` of a cache folder ``models--org--name`` to
        search, or None after a note."""
        match = REPO_FOLDER.match(folder.name)
        snapshot, reason = repo_snapshot(folder)
        if snapshot is None:
            self.skip(folder, reason)
            return None
        if reason:
            self.notes(f"{folder}: {reason}")
        return snapshot, (*prefix, match["org"], match["name"]), len(prefix) + 2

    def search(self, root: Path, start: list) -> None:
        """Search the folders of ``start`` (``(folder, virtual parts, repo)``) and all below
        them, depth first in name order, files of a folder before its subfolders (a loop, not
        a recursion: no depth overflows the stack). A symbolic link to a folder outside
        ``root`` is not followed; a folder met twice (a link loop) is searched once; folders
        more than ``LIMITS.max_folder_depth`` below ``root`` are not searched."""
        try:
            top = os.path.realpath(root)
        except (OSError, ValueError) as exc:
            self.skip(root, f"cannot be resolved ({exc})")
            return
        stack = [(*item, 0) for item in reversed(start) if item is not None]
        while stack:
            folder, virtual, repo, depth = stack.pop()
            below = self.folder(folder, virtual, repo, top)
            if below and depth >= LIMITS.max_folder_depth:
                self.skip(
                    folder,
                    f"holds folders deeper than {LIMITS.max_folder_depth} levels; not searched "
                    "(--limit max_folder_depth=N)",
                )
                continue
            stack += [(*item, depth + 1) for item in reversed(below) if item is not None]

    def folder(self, folder: Path, virtual: tuple[str, ...], repo: int, top: str) -> list:
        """Take the files of one folder; the ``(folder, virtual parts, repo)`` below it."""
        try:
            info = folder.stat()
        except OSError as exc:
            self.skip(folder, f"cannot be read ({exc.strerror})")
            return []
        if (info.st_dev, info.st_ino) in self.folders:
            self.skip(folder, "folder already searched (a symbolic link loop or a repeat)")
            return []
        self.folders.add((info.st_dev, info.st_ino))
        if is_network_folder(folder):  # one network in a folder: not searched inside
            self.take(_Candidate(virtual, str(folder), NETWORK, folder, (), repo))
            return []
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            self.skip(folder, f"folder cannot be listed ({exc.strerror})")
            return []
        files, folders = [], []
        names = {entry.name.lower() for entry in entries}
        weights = next((name for name in HF_WEIGHT_NAMES if name in names), None)
        if not repo and CHECKPOINT_FOLDER.match(folder.name):
            repo = len(virtual)  # a Trainer checkpoint: one network, labelled by its folder
        for entry in entries:
            path = folder / entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:  # a link loop (ELOOP): a file that cannot be read, noted as such
                is_dir = False
            if entry.name.startswith("."):
                self.skip(path, "hidden, not searched")
            elif is_dir and entry.is_symlink() and not _inside(path, top):
                self.skip(path, f"a symbolic link to a folder outside {top}; not followed")
            elif REPO_FOLDER.match(entry.name) and is_dir:
                folders.append(self.repo(path, virtual))
            elif entry.name.startswith(("datasets--", "spaces--")) and is_dir:
                self.skip(path, "a Hugging Face data set or space, not a model")
            elif weights and DEEPSPEED_FOLDER.match(entry.name) and is_dir:
                self.skip(path, f"DeepSpeed's training state; the weights are {weights}")
            elif is_dir:
                folders.append((path, (*virtual, path.name), repo))
            else:
                files.append(path)
        self.folder_files(files, virtual, repo)
        return folders

    def folder_files(
        self, files: list[Path], virtual: tuple[str, ...], repo: int = 0, given: bool = False
    ) -> None:
        """Files of one folder (``given``: named one by one as arguments): indexes and shard
        sets first, then one by one."""
        regular = []
        for path in files:
            reason = _not_regular(path)
            state = _training_state(path.name)
            if state:
                self.skip(path, f"{state} of a training run, not a network")
            elif reason and given:
                require_regular(path)  # named by the user: refused, never opened
            elif reason:
                self.skip(path, reason)
            else:
                regular.append(path)
        groups, rest = _multi_file_networks(regular)
        kept, alternates = _one_format(groups, rest)
        for path, preferred in alternates:
            self.skip(path, f"the same model as {preferred.name}, in another format")
        for main, source, members in kept:
            self.take(
                _Candidate(
                    (*virtual, _display_name(source, main)),
                    source,
                    NETWORK,
                    main,
                    tuple(members),
                    repo,
                )
            )
        alternative = {path for path, _ in alternates}
        for path in rest:
            kind = None if path in alternative else self.classify(path, given)
            if kind is not None:
                self.take(_Candidate((*virtual, path.name), str(path), kind, path, (path,), repo))

    def classify(self, path: Path, given: bool = False) -> str | None:
        """NETWORK, CONNECTOME, or None after a note saying why the file is skipped. A CSV
        found in a folder is a connectome only where it parses as one (an edge list or a
        square adjacency matrix), even with ``connectomes``; one named as an argument is
        taken as ``connectomes`` says."""
        reason = sniff(path, self.connectomes)
        if reason == CONNECTOME and self.connectomes and not given and _is_csv(path):
            reason = _csv_connectome(path)
        if reason in (NETWORK, CONNECTOME):
            return reason
        self.skip(path, reason)
        return None

    def take(self, candidate: _Candidate) -> None:
        key = os.path.realpath(candidate.path)
        if key in self.files:
            self.skip(candidate.path, f"already found as {self.files[key]}")
            return
        self.files[key] = str(candidate.path)
        self.found.append(candidate)


def is_network_folder(folder: Path) -> bool:
    """Whether ``folder`` is one network stored as a folder, which
    :func:`nnequiv.loading.open_weights` reads whole: a TensorFlow SavedModel
    (``saved_model.pb``, ``variables/``), a TensorFlow checkpoint folder (``<name>.index``
    beside ``<name>.data-00000-of-0000N``) or a Core ML package (``*.mlpackage``, or a
    ``Manifest.json`` beside a ``Data`` folder)."""
    from nnequiv.loading._tensorbundle import is_checkpoint_folder

    if folder.suffix.lower() == ".mlpackage":
        return True
    if (folder / "Manifest.json").is_file() and (folder / "Data").is_dir():
        return True
    return is_checkpoint_folder(folder)


def _display_name(source, main: Path) -> str:
    from nnequiv.loading import ShardSet

    return Path(source.label).name if isinstance(source, ShardSet) else main.name


def _virtual(path: Path) -> tuple[tuple[str, ...], int]:
    """A folder's parts, with ``models--org--name/snapshots/<hash>`` read as ``org/name``, and
    the number of parts up to that ``name`` (0 outside a Hugging Face cache)."""
    parts = list(path.parts)
    for i in range(len(parts) - 2):
        match = REPO_FOLDER.match(parts[i])
        if match and parts[i + 1] == "snapshots":
            return (*parts[:i], match["org"], match["name"], *parts[i + 3 :]), i + 2
    return tuple(parts), 0


def _could_be_hub_id(path: Path) -> bool:
    """``org/name`` that is not a local path: no file suffix of ours, and no local folder
    ``org`` (where there is one, the path is a typo of a local file)."""
    from nnequiv.connectomes import CONNECTOME_SUFFIXES
    from nnequiv.loading import MODEL_SUFFIXES

    known = path.suffix.lower() in MODEL_SUFFIXES | CONNECTOME_SUFFIXES | {".json"}
    return bool(HUB_ID.match(path.as_posix())) and not known and not path.parent.is_dir()


def _inside(path: Path, top: str) -> bool:
    """Whether ``path``, its links resolved, is ``top`` or lies below it."""
    try:
        target = os.path.realpath(path)
    except (OSError, ValueError):
        return False
    return target == top or target.startswith(top.rstrip(os.sep) + os.sep)


def _training_state(name: str) -> str | None:
    return next((what for pattern, what in TRAINING_STATES if pattern.match(name)), None)


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def _csv_connectome(path: Path) -> str:
    """CONNECTOME for a CSV whose shape is an edge list or a square adjacency matrix (its
    values are the loader's to check), else why not; read as a stream by the connectome
    readers, and one too large to read here is taken, as ``--connectome`` asks."""
    from nnequiv._sniffing import MAX_CSV_PARSE_BYTES
    from nnequiv.connectomes import _AdjacencyReader, _csv_rows, _EdgeReader

    edges, table = _EdgeReader(), _AdjacencyReader()
    try:
        for row in _csv_rows(path, MAX_CSV_PARSE_BYTES):
            edges.add(row)
            table.add(row)
    except ResourceLimitError:
        return CONNECTOME
    except NNEquivError:
        return "not a text table"
    if edges.finish() is None or table.finish() is None:
        return CONNECTOME
    return "a table that is neither an edge list nor a square adjacency matrix, not a connectome"


def _not_regular(path: Path) -> str | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return "broken symbolic link"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISREG(info.st_mode):
        return None
    kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a socket or device"
    return f"{kind}, not a regular file"


# --- Networks in several files ----------------------------------------------------------------


def _multi_file_networks(files: list[Path]) -> tuple[list[tuple], list[Path]]:
    """``(main, source, members)`` of each index and shard set among the files of one folder,
    and the files left."""
    from nnequiv.loading._shards import SHARD_NAME, index_shards, is_index_path, shard_set_of

    groups, used = [], set()
    for path in files:
        if not is_index_path(path):
            continue
        try:
            shards, _ = index_shards(path)
        except (NNEquivError, RecursionError, MemoryError):  # a corrupt index is still a
            # network: its error comes later
            shards = _named_like_index(path, files)
        groups.append((path, str(path), (path, *shards)))
        used.update([path, *shards])
    sets: dict[tuple, list[Path]] = {}
    for path in files:
        match = SHARD_NAME.match(path.name)
        if match and path not in used:
            key = (match["stem"], match["count"], match["ext"].lower())
            sets.setdefault(key, []).append(path)
    for members in sets.values():
        try:
            shard_set = shard_set_of(members)
        except NNEquivError:
            continue  # not one set after all: the files are taken one by one
        groups.append((members[0], shard_set, tuple(members)))
        used.update(members)
    return groups, [path for path in files if path not in used]


def _named_like_index(index: Path, files: list[Path]) -> list[Path]:
    """The shards an unreadable index would name, by the Hugging Face naming convention."""
    from nnequiv.loading._shards import SHARD_NAME

    stem, _, rest = index.name.lower().partition(".")
    ext = rest.split(".")[0]
    return [
        path
        for path in files
        if (match := SHARD_NAME.match(path.name))
        and match["stem"].lower() == stem
        and match["ext"].lower() == ext
    ]


def _one_format(groups, rest) -> tuple[list[tuple], list[tuple[Path, Path]]]:
    """Groups kept, and ``(path, preferred)`` for a Hugging Face model's other formats."""
    kept = list(groups)
    standard = []
    for main, source, members in groups:
        rank = _hf_rank(main, source)
        if rank is not None:
            standard.append((rank, main, (main, source, members)))
    for path in rest:
        rank = _hf_rank(path, None)
        if rank is not None:
            standard.append((rank, path, None))
    if len(standard) < 2:
        return kept, []
    standard.sort(key=lambda item: item[0])
    preferred = standard[0][1]
    alternates = []
    for _, main, group in standard[1:]:
        alternates.append((main, preferred))
        if group is not None:
            kept.remove(group)
            alternates += [(member, preferred) for member in group[2] if member != main]
    return kept, alternates


def _hf_rank(path: Path, source) -> int | None:
    from nnequiv.loading import ShardSet

    name = path.name.lower()
    if isinstance(source, ShardSet):  # shards without an index rank as their index would
        stem, ext = Path(source.label).name.lower().split("-")[0], path.suffix.lower()
        name = f"{stem}{ext}.index.json"
    return HF_WEIGHT_NAMES.index(name) if name in HF_WEIGHT_NAMES else None


# --- Sniffing one file --------------------------------------------------------------------------


def _labelled(candidates: list[_Candidate]) -> list[Found]:
    """Each candidate with the shortest trailing part of its path that no other one shares."""
    repo_counts: dict[tuple[str, ...], int] = {}
    for c in candidates:
        if c.repo:
            repo_counts[c.parts[: c.repo]] = repo_counts.get(c.parts[: c.repo], 0) + 1
    for c in candidates:
        if c.repo and repo_counts[c.parts[: c.repo]] == 1:
            c.parts, c.min_parts = c.parts[: c.repo], 2
    labels = unique_labels([c.parts for c in candidates], [c.min_parts for c in candidates])
    return [Found(label, c.source, c.kind, c.path, c.files) for c, label in zip(candidates, labels)]
