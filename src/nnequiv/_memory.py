"""How much memory one computation may take: the budget of ``max_memory`` (``--max-memory``).

By default the budget is what this process can still allocate: the smallest of the
available RAM (``MemAvailable`` in ``/proc/meminfo``), the room left under the address-space
limit (``RLIMIT_AS`` less the process's ``VmSize``) and the room left in its memory cgroup
(``memory.max`` of cgroup v2 or ``memory.limit_in_bytes`` of v1, less the usage that is not
reclaimable page cache). A source that cannot be read (another system) gives no bound; where
none is known the budget is unbounded.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

from nnequiv.errors import InputError

__all__ = ["memory_budget", "available_memory", "format_gib", "UNBOUNDED"]

#: The budget where no bound is known.
UNBOUNDED = sys.maxsize
#: Limits at or above this are "no limit" (cgroup v1 writes 2^63 rounded to pages).
NO_LIMIT = 1 << 62
MEMINFO = Path("/proc/meminfo")
SELF_STATUS = Path("/proc/self/status")
SELF_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def format_gib(nbytes: int) -> str:
    """``nbytes`` in GiB with two decimals (``"1.07 GiB"``)."""
    return f"{nbytes / 2**30:.2f} GiB"


def memory_budget(max_memory: int | None = None) -> int:
    """Bytes one computation may allocate: ``max_memory`` where given, else
    :func:`available_memory`."""
    if max_memory is None:
        return available_memory()
    if isinstance(max_memory, bool) or not isinstance(max_memory, int) or max_memory < 1:
        raise InputError(f"max_memory must be an integer >= 1 (bytes), got {max_memory!r}")
    return max_memory


def available_memory() -> int:
    """The smallest of the free RAM, the room under ``RLIMIT_AS`` and the room in the memory
    cgroup, in bytes (:data:`UNBOUNDED` where none is known)."""
    known = [
        value
        for value in (_ram_available(), _address_space_room(), _cgroup_room())
        if value is not None
    ]
    return max(min(known), 0) if known else UNBOUNDED


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _kib_field(text: str | None, name: str) -> int | None:
    """``name:  123 kB`` of a /proc file, in bytes."""
    for line in (text or "").splitlines():
        key, _, rest = line.partition(":")
        if key == name:
            parts = rest.split()
            if parts and parts[0].isdigit():
                return int(parts[0]) * 1024
    return None


def _ram_available() -> int | None:
    return _kib_field(_read(MEMINFO), "MemAvailable")


def _address_space_room() -> int | None:
    """``RLIMIT_AS`` (soft) less the address space already mapped; None without a limit."""
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    if limit == resource.RLIM_INFINITY or limit < 0 or limit >= NO_LIMIT:
        return None
    mapped = _kib_field(_read(SELF_STATUS), "VmSize") or 0
    return limit - mapped


def _cgroup_room() -> int | None:
    """The smallest room left in this process's memory cgroup and the cgroup root."""
    rooms = []
    for directory in _cgroup_directories():
        room = _room_in(directory)
        if room is not None:
            rooms.append(room)
    return min(rooms) if rooms else None


def _cgroup_directories() -> list[Path]:
    """The memory cgroup directories that may limit this process: its own (from
    ``/proc/self/cgroup``) and the roots, for v2 and v1."""
    own = []
    for line in (_read(SELF_CGROUP) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and (parts[1] == "" or "memory" in parts[1].split(",")):
            relative = parts[2].lstrip("/")
            base = CGROUP_ROOT if parts[1] == "" else CGROUP_ROOT / "memory"
            if relative:
                own.append(base / relative)
    return own + [CGROUP_ROOT, CGROUP_ROOT / "memory"]


def _number(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() else None


def _stat_field(directory: Path, names: tuple[str, ...]) -> int:
    for line in (_read(directory / "memory.stat") or "").splitlines():
        key, _, value = line.partition(" ")
        if key in names and value.strip().isdigit():
            return int(value)
    return 0


def _room_in(directory: Path) -> int | None:
    """Limit less non-reclaimable usage of one cgroup (v2 or v1); None without a limit."""
    if (directory / "memory.max").exists():  # v2
        limit = _number(_read(directory / "memory.max"))  # "max": no limit
        usage = _number(_read(directory / "memory.current"))
        cache = _stat_field(directory, ("inactive_file",))
    else:  # v1
        limit = _number(_read(directory / "memory.limit_in_bytes"))
        usage = _number(_read(directory / "memory.usage_in_bytes"))
        cache = _stat_field(directory, ("total_inactive_file", "inactive_file"))
    if limit is None or limit >= NO_LIMIT:
        return None
    if usage is None:
        return limit
    return limit - max(usage - cache, 0)
