"""Hugging Face caches and hub ids: where a model's files are on this machine (the hub part
of :func:`nnequiv.discovery.discover`)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from nnequiv._optional import optional_module
from nnequiv.errors import InputError, NNEquivError

#: Hugging Face's names of one model's weights, preferred first (a folder holding several is
#: one model in several formats).
HF_WEIGHT_NAMES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
    "tf_model.h5",
)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
REPO_FOLDER = re.compile(r"^models--(?P<org>[^/]+?)--(?P<name>[^/]+)$")


def repo_snapshot(folder: Path) -> tuple[Path | None, str]:
    """The snapshot a cache folder ``models--org--name`` points at, and a note (or why not)."""
    snapshots = folder / "snapshots"
    ref = folder / "refs" / "main"
    if ref.is_file():
        with open(ref, "rb") as stream:  # a regular file (is_file), read 256 bytes at most
            commit = stream.read(256).decode("utf-8", "replace").strip()
        if re.fullmatch(r"[\w.-]+", commit) and commit not in {".", ".."}:
            if (snapshots / commit).is_dir():
                return snapshots / commit, ""
    candidates = (
        sorted(
            (p for p in snapshots.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
        )
        if snapshots.is_dir()
        else []
    )
    if not candidates:
        return None, "a Hugging Face cache folder without a snapshot"
    if len(candidates) == 1:
        return candidates[0], ""
    return candidates[-1], f"no usable refs/main; took the newest snapshot {candidates[-1].name}"


def _hub_cache() -> Path:
    """The Hugging Face hub cache folder (``huggingface_hub``'s, else from the environment)."""
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:
        pass
    env = os.environ
    if env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.path.expanduser(env.get("HF_HUB_CACHE") or env["HUGGINGFACE_HUB_CACHE"]))
    home = env.get("HF_HOME") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(os.path.expanduser(home)) / "hub"


def _hub_offline() -> bool:
    values = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    if any(str(v).strip().upper() in {"1", "ON", "YES", "TRUE"} for v in values if v):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def hub_folder(repo_id: str, notes: Callable[[str], None]) -> Path:
    """The local cache folder of a hub id, downloaded first where that is allowed."""
    org, name = repo_id.split("/")
    cache = _hub_cache()
    folder = cache / f"models--{org}--{name}"
    if folder.is_dir():
        return folder
    where = f"no such file or folder, and not in the Hugging Face cache {cache}"
    if _hub_offline():
        raise InputError(f"{repo_id}: {where} (HF_HUB_OFFLINE is set, so it is not downloaded)")
    huggingface_hub = optional_module(
        "huggingface_hub", "hub", f"{repo_id}: {where}; downloading it"
    )
    notes(f"{repo_id}: not a local path nor in the cache; fetching it from the Hugging Face hub")
    try:
        files = huggingface_hub.HfApi().list_repo_files(repo_id)
        wanted = hub_weight_files(files, repo_id)
        if not wanted:
            raise InputError(f"{repo_id}: the hub repository holds no weights nnequiv reads")
        huggingface_hub.snapshot_download(repo_id, allow_patterns=wanted, cache_dir=cache)
    except NNEquivError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise InputError(f"{repo_id}: {where}, and downloading it failed ({first})") from exc
    return folder


def hub_weight_files(files: Iterable[str], repo_id: str = "the hub repository") -> list[str]:
    """Which files of a hub repository to download: the preferred Hugging Face weights (an
    index with its shards, or one file), else the one weight file at its top level.

    Raises
    ------
    InputError
        Several candidate files and none of Hugging Face's names (e.g. GGUF files of several
        quantisations): the user must pick one.
    """
    from nnequiv.loading import MODEL_SUFFIXES
    from nnequiv.loading._shards import SHARD_NAME

    files = [f for f in files if "/" not in f]
    for name in HF_WEIGHT_NAMES:
        if name in files:
            if name.endswith(".index.json"):
                stem, ext = name.split(".")[0], name.split(".")[1]
                return [
                    name,
                    *(
                        f
                        for f in files
                        if (m := SHARD_NAME.match(f)) and m["stem"] == stem and m["ext"] == ext
                    ),
                ]
            return [name]
    weights = [f for f in files if Path(f).suffix.lower() in MODEL_SUFFIXES]
    if len(weights) > 1:
        shown = ", ".join(weights[:5]) + (", ..." if len(weights) > 5 else "")
        raise InputError(
            f"{repo_id} holds {len(weights)} weight files ({shown}); download the one to "
            "analyse and give its path"
        )
    return weights


# --- Labels -------------------------------------------------------------------------------------
