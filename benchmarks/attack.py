"""Hostile inputs through the command line: one crafted input per failure class of the second
attack round (issue 20), each run as ``python -m nnequiv ...`` under ``strace`` with a time
limit, measured against the targets.

Per input: exit status, stderr lines and whether the line names the input, a traceback, raw
control characters in the output, peak RSS (of the process and its children), wall time,
inputs modified (every file hashed before and after, no new file beside them), and every
``open``/``openat`` outside the named inputs, the cache directory, the working directory
and the Python installation. Well-formed inputs are also run with and without the cache
(and the stale-cache cases with a dependent file changed in between): same output.

    python benchmarks/attack.py [--timeout 60] [--only NAME ...] [--keep DIR]

The inputs come from tests/structured.py (the generators of the structured fuzzing) and a
few written here. Needs ``strace`` (``apt-get install strace``); without it the opens
column is empty.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

import structured  # noqa: E402

#: GNU time, to measure the peak RSS of the command alone.
TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else None
#: Peak RSS target for an input under 50 MB.
RSS_TARGET = 2 << 30
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x9b\u202a-\u202e\u2066-\u2069]")


@dataclass
class Case:
    """One input: its failure class, the command (after ``nnequiv``), and for well-formed
    inputs whether to compare cached and uncached output (``change``: a function that
    changes a file the input depends on, between the cached runs)."""

    name: str
    kind: str
    argv: list[str]
    names: list[str]
    well_formed: bool = False
    change: object = None
    notes: list[str] = field(default_factory=list)


def rng(seed: int = 0):
    return np.random.default_rng(seed)


def small_net(path: Path, seed: int = 0) -> Path:
    generator = np.random.default_rng(seed)
    np.savez(path, w1=generator.standard_normal((24, 16)), w2=generator.standard_normal((12, 24)))
    return path


# ---- the corpus -------------------------------------------------------------------------------


def build(root: Path) -> list[Case]:
    from formats import save_sharded

    cases: list[Case] = []

    def folder(name: str) -> Path:
        path = root / name / "in"
        path.mkdir(parents=True)
        return path

    def gen(name, kind, fmt, attack, value, seed=None, command="analyze", well_formed=False):
        directory = folder(name)
        path = structured.generate(fmt, rng(), directory, attack, value, seed=seed)
        argv = [command, str(path)] if command != "index" else ["index", "list", str(path)]
        cases.append(Case(name, kind, argv, [path.name], well_formed))

    # wrong answers: a dependent file changes, the cache must not answer from before
    directory = root / "stale-shard" / "in"
    directory.parent.mkdir(parents=True)
    weights = np.random.default_rng(3)
    state = {f"l{i}.weight": weights.standard_normal((24, 16)).astype(np.float32) for i in range(2)}
    save_sharded(state, directory)
    shard = sorted(directory.glob("*.safetensors"))[-1]

    def change_shard(path=shard):
        data = bytearray(path.read_bytes())
        data[-64:] = np.full(16, 0.5, np.float32).tobytes()
        path.write_bytes(bytes(data))

    cases.append(
        Case(
            "stale-shard",
            "stale cache",
            ["analyze", str(directory)],
            [directory.name],
            True,
            change_shard,
        )
    )
    directory = folder("stale-onnx-external")
    model = _onnx_external(directory)

    def change_data(path=directory / "weights.bin"):
        path.write_bytes(
            np.random.default_rng(9).standard_normal(24 * 16 + 12 * 24).astype(np.float32).tobytes()
        )

    cases.append(
        Case(
            "stale-onnx-external",
            "stale cache",
            ["analyze", str(model)],
            [model.name],
            True,
            change_data,
        )
    )

    # reads outside what was named
    gen("onnx-external-symlink-out", "read outside", "onnx", "symlink", 0)
    directory = folder("folder-symlink-root")
    small_net(directory / "a.npz")
    (directory / "root").symlink_to("/")
    cases.append(
        Case(
            "folder-symlink-root",
            "read outside",
            ["analyze", str(directory)],
            [directory.name],
            True,
        )
    )
    directory = folder("index-wal")
    index = structured.build_index(root / "index-seed")
    shutil.copyfile(index, directory / "lib.nnequiv")
    _leave_wal(directory / "lib.nnequiv")
    cases.append(
        Case(
            "index-wal",
            "read outside",
            ["index", "list", str(directory / "lib.nnequiv")],
            ["lib.nnequiv"],
        )
    )

    # crashes
    gen("pickle-depth-100000", "crash", "pt", "depth", 100_000)
    directory = folder("zero-stride")
    structured.torch_zip(
        directory / "stride.pt",
        structured.state_dict([("w", structured.tensor_ops("0", 1, 0, (2_000_000_000,), (0,)))]),
        {"0": bytes(4)},
    )
    cases.append(
        Case("zero-stride", "crash", ["analyze", str(directory / "stride.pt")], ["stride.pt"])
    )
    gen("hdf5-partial-chunks", "crash", "h5", "partial", 4096)
    gen("hdf5-groups-20000", "crash", "h5", "depth", 20_000)

    # hangs and quadratic time
    directory = folder("fifo-argument")
    os.mkfifo(directory / "pipe.npz")
    cases.append(
        Case("fifo-argument", "hang", ["analyze", str(directory / "pipe.npz")], ["pipe.npz"])
    )
    directory = folder("dev-zero-argument")
    small_net(directory / "a.npz")
    cases.append(
        Case(
            "dev-zero-argument",
            "hang",
            ["compare", str(directory / "a.npz"), "/dev/zero"],
            ["/dev/zero"],
        )
    )
    gen("views-100000", "hang", "pt", "aliases", 100_000)
    gen("views-512", "hang", "pt", "aliases", 512)
    gen("pickle-dag-60", "hang", "pt", "dag", 60)
    gen("safetensors-duplicates", "hang", "safetensors", "duplicates", 50_000)
    gen("tflite-operators-5000", "hang", "tflite", "operators", 5_000)
    gen("hdf5-groups-5000", "hang", "h5", "depth", 5_000)
    directory = folder("hdf5-gzip-chunks")
    import h5py

    with h5py.File(directory / "c.h5", "w") as handle:
        handle.create_dataset(
            "c", data=np.ones((30_000, 4), "f4"), chunks=(1, 1), compression="gzip"
        )
    cases.append(
        Case("hdf5-gzip-chunks", "hang", ["analyze", str(directory / "c.h5")], ["c.h5"], True)
    )
    seeds = root / "seeds"
    from fuzzing import build_seeds

    built = build_seeds(seeds)
    gen(
        "torchscript-newlines",
        "hang",
        "torchscript",
        "newlines",
        3_000_000,
        seed=built["torchscript"][0],
    )
    gen("index-view-cte", "hang", "index", "view", 0, seed=index, command="index")
    gen("index-trigger", "hang", "index", "trigger", 0, seed=index, command="index")

    # memory from small files
    gen("pickle-bytearray", "memory", "pt", "bytearray", 10**12)
    gen("npz-zeros-bomb", "memory", "npz", "bomb", 20_000_000)
    directory = folder("npy-declares-1.5GB")
    (directory / "big.npy").write_bytes(structured.npy_bytes((200_000_000,), "<f8", bytes(64)))
    cases.append(
        Case("npy-declares-1.5GB", "memory", ["analyze", str(directory / "big.npy")], ["big.npy"])
    )
    directory = folder("sparse-shard")
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [3_000, 3_000], "data_offsets": [0, 36_000_000]}}
    ).encode()
    with open(directory / "model.safetensors", "wb") as handle:
        handle.write(struct.pack("<Q", len(header)) + header)
        handle.truncate(8 + len(header) + 36_000_000)  # a sparse file: holes, no blocks
    cases.append(
        Case(
            "sparse-shard",
            "memory",
            ["analyze", str(directory / "model.safetensors")],
            ["model.safetensors"],
        )
    )
    directory = folder("index-zeroblob")
    shutil.copyfile(index, directory / "lib.nnequiv")
    with sqlite3.connect(directory / "lib.nnequiv") as connection:
        connection.execute("UPDATE networks SET csd = zeroblob(?)", (40 << 20,))
    connection.close()
    cases.append(
        Case(
            "index-zeroblob",
            "memory",
            ["index", "list", str(directory / "lib.nnequiv")],
            ["lib.nnequiv"],
        )
    )
    directory = folder("csv-20000-nodes")
    rows = ["pre,post,weight", *(f"N{i},N{(i * 7919 + 1) % 20_000},1" for i in range(20_000))]
    (directory / "edges.csv").write_text("\n".join(rows) + "\n")
    cases.append(
        Case(
            "csv-20000-nodes",
            "memory",
            ["analyze", "--connectome", str(directory / "edges.csv")],
            ["edges.csv"],
        )
    )

    # tracebacks instead of one line
    gen("shard-index-deep-json", "traceback", "shards", "depth", 100_000)
    gen(
        "index-deep-settings",
        "traceback",
        "index",
        "settings",
        100_000,
        seed=index,
        command="index",
    )
    directory = folder("cache-entry-deep")
    network = small_net(directory / "net.npz", 5)

    def poison_cache(cache: Path, network=network):
        (entry,) = cache.rglob("*.npz")
        poisoned = structured.generate("cache", rng(), cache / "tmp", "depth", 100_000, entry)
        shutil.move(poisoned, entry)
        shutil.rmtree(cache / "tmp")

    cases.append(
        Case(
            "cache-entry-deep",
            "traceback",
            ["analyze", str(network)],
            ["net.npz"],
            True,
            ("cache", poison_cache),
        )
    )
    gen("folders-1200-deep", "traceback", "folder", "depth", 1200)
    directory = folder("npz-encrypted")
    structured.encrypted_npz(directory / "locked.npz")
    cases.append(
        Case(
            "npz-encrypted", "traceback", ["analyze", str(directory / "locked.npz")], ["locked.npz"]
        )
    )
    directory = folder("index-huge-layers")
    shutil.copyfile(index, directory / "lib.nnequiv")
    with sqlite3.connect(directory / "lib.nnequiv") as connection:
        connection.execute("UPDATE networks SET n_layers = ?", (2**40,))
    connection.close()
    cases.append(
        Case(
            "index-huge-layers",
            "traceback",
            ["index", "list", str(directory / "lib.nnequiv")],
            ["lib.nnequiv"],
        )
    )

    # terminal injection
    directory = folder("escape-file-name")
    (directory / "\x1b[2J\x1b[31mnet.npz").write_bytes(b"PK\x05\x06" + bytes(18))
    cases.append(
        Case(
            "escape-file-name",
            "injection",
            ["analyze", str(directory / "\x1b[2J\x1b[31mnet.npz")],
            ["net.npz"],
        )
    )
    directory = folder("escape-tensor-names")
    generator = np.random.default_rng(4)
    np.savez(
        directory / "names.npz",
        **{
            "\x1b[31mw\x07": generator.standard_normal((24, 16)),
            "a\nb\u202e": generator.standard_normal((12, 24)),
        },
    )
    cases.append(
        Case(
            "escape-tensor-names",
            "injection",
            ["analyze", str(directory / "names.npz")],
            ["names.npz"],
            True,
        )
    )
    gen("escape-shard-names", "injection", "shards", "names", 5)
    gen("escape-index-labels", "injection", "index", "labels", 0, seed=index, command="index")

    # error lines that do not name the input
    gen("shard-index-huge-int", "naming", "shards", "number", 5000)
    directory = folder("gguf-dim-overflow")
    name = b"w"
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + struct.pack("<Q", len(name)) + name
    head += (
        struct.pack("<I", 2) + struct.pack("<QQ", 2**63 - 1, 2**63 - 1) + struct.pack("<IQ", 0, 0)
    )
    (directory / "huge.gguf").write_bytes(head + bytes(64))
    cases.append(
        Case(
            "gguf-dim-overflow", "naming", ["analyze", str(directory / "huge.gguf")], ["huge.gguf"]
        )
    )
    return cases


def _onnx_external(directory: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    generator = np.random.default_rng(8)
    data = generator.standard_normal(24 * 16 + 12 * 24).astype(np.float32).tobytes()
    (directory / "weights.bin").write_bytes(data)
    tensors = []
    for name, shape, offset in (("w1", [24, 16], 0), ("w2", [12, 24], 24 * 16 * 4)):
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=shape)
        tensor.data_location = TensorProto.EXTERNAL
        for key, item in (
            ("location", "weights.bin"),
            ("offset", offset),
            ("length", 4 * shape[0] * shape[1]),
        ):
            tensor.external_data.add(key=key, value=str(item))
        tensors.append(tensor)
    model = helper.make_model(helper.make_graph([], "net", [], [], initializer=tensors))
    path = directory / "net.onnx"
    onnx.save_model(model, str(path))
    return path


def _leave_wal(path: Path) -> None:
    """Put the index in WAL mode with a change left in its -wal file (as a writer that was
    killed leaves it)."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=wal")
    connection.execute("PRAGMA wal_autocheckpoint=0")
    connection.execute("UPDATE networks SET label = label || '.v2'")
    connection.commit()
    shutil.copyfile(str(path) + "-wal", str(path) + "-wal.keep")
    connection.close()
    if not Path(str(path) + "-wal").exists():
        shutil.move(str(path) + "-wal.keep", str(path) + "-wal")
    else:
        os.unlink(str(path) + "-wal.keep")
    Path(str(path) + "-shm").unlink(missing_ok=True)


def snapshot(directory: Path) -> dict[str, str]:
    """Every entry under ``directory`` (not following links): a hash of each regular file."""
    state = {}
    for path in structured.walk(directory):
        info = path.lstat()
        if path.is_symlink():
            state[str(path)] = "link:" + os.readlink(path)
        elif os.path.isfile(path) and info.st_size < (64 << 20):
            state[str(path)] = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
        else:
            state[str(path)] = f"{oct(info.st_mode)}:{info.st_size}:{info.st_mtime_ns}"
    return state


def allowed_prefixes(case_dir: Path) -> list[str]:
    """Where a run may open files: its inputs, cache and working directory, and the Python
    installation (with the system libraries it loads and the kernel's cpu and memory files)."""
    places = {sys.prefix, sys.base_prefix, sys.exec_prefix, *sysconfig.get_paths().values()}
    places |= {os.path.realpath(p) for p in places}
    places |= {p for p in sys.path if p and os.path.isabs(p)}  # the venv's .pth entries too
    places |= {
        str(ROOT / "src"),
        str(case_dir / "in"),
        str(case_dir / "cache"),
        str(case_dir / "rss.txt"),
        str(case_dir / "cwd"),
    }
    system = [
        "/usr/lib",
        "/usr/lib64",
        "/lib",
        "/lib64",
        "/usr/local/lib",
        "/etc/ld.so.cache",
        "/proc/self",
        "/proc/cpuinfo",
        "/proc/meminfo",
        "/sys/devices/system/cpu",
        "/sys/fs/cgroup",
        "/proc/sys/vm",
        "/dev/null",
        "/dev/urandom",
        "/dev/shm",
        "/etc/localtime",
        "/usr/share/zoneinfo",
        "/proc/stat",
        "/usr/share/locale",
        "/usr/lib/locale",
    ]
    return sorted({p.rstrip("/") for p in places if p} | set(system))


OPEN = re.compile(r'^\d+\s+(?:openat\((AT_FDCWD|\d+),\s*|open\(|creat\()"((?:[^"\\]|\\.)*)"')


def outside_opens(trace: Path, case_dir: Path, given: list[str]) -> list[str]:
    allowed = allowed_prefixes(case_dir)
    cwd = case_dir / "cwd"
    seen = []
    for line in trace.read_text(errors="replace").splitlines():
        match = OPEN.match(line)
        if not match:
            continue
        dirfd, name = match.groups()
        name = name.encode().decode("unicode_escape", "replace")
        if dirfd not in (None, "AT_FDCWD") and not name.startswith("/"):
            continue  # relative to a folder already opened (and checked)
        path = os.path.normpath(os.path.join(cwd, name))
        if path in given or any(path == p or path.startswith(p + "/") for p in allowed):
            continue
        if path.startswith("/proc/") and "/fd" not in path:
            continue  # /proc/<pid>/... of the process itself or its worker
        seen.append(path)
    return sorted(set(seen))


@dataclass
class Run:
    status: int | None
    seconds: float
    rss: int
    stdout: str
    stderr: str


def run(argv, case_dir: Path, timeout: float, trace: Path | None, cache: bool = True) -> Run:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "NNEQUIV_CACHE_DIR": str(case_dir / "cache"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "nnequiv", *argv, *([] if cache else ["--no-cache"])]
    rss_file = case_dir / "rss.txt"
    if TIME:  # forked from a small process: the peak is nnequiv's, not this script's
        command = [TIME, "-q", "-f", "%M", "-o", str(rss_file), *command]
    if trace is not None:
        command = [
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=open,openat,creat",
            "-o",
            str(trace),
            *command,
        ]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            command,
            cwd=case_dir / "cwd",
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = started + timeout
        status, rusage = None, None
        while time.perf_counter() < deadline:
            pid, code, rusage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                status = os.waitstatus_to_exitcode(code)
                break
            time.sleep(0.05)
        else:
            os.killpg(process.pid, signal.SIGKILL)
            _, _, rusage = os.wait4(process.pid, 0)
        process.returncode = status if status is not None else -9
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        rss = rusage.ru_maxrss * 1024
        if TIME and rss_file.exists():
            numbers = re.findall(r"^\d+$", rss_file.read_text(), re.M)
            rss = int(numbers[-1]) * 1024 if numbers else rss
            rss_file.unlink()
        return Run(
            status,
            seconds,
            rss,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


@dataclass
class Result:
    case: Case
    status: int | None
    seconds: float
    rss: int
    lines: int
    names_input: bool
    traceback: bool
    raw_control: bool
    modified: list[str]
    opens: list[str]
    same_with_cache: bool | None
    input_bytes: int

    def failures(self) -> list[str]:
        bad = []
        if self.status is None:
            bad.append("hang")
        elif self.status not in (0, 1):
            bad.append(f"exit {self.status}")
        if self.traceback:
            bad.append("traceback")
        if self.status == 1 and (self.lines != 1 or not self.names_input):
            bad.append("not one line naming the input")
        if self.status == 0 and self.lines:
            bad.append("stderr on success")
        if self.raw_control:
            bad.append("raw control characters")
        if self.rss > RSS_TARGET and self.input_bytes < (50 << 20):
            bad.append("rss")
        if self.modified:
            bad.append("inputs modified")
        if self.opens:
            bad.append("opens outside")
        if self.same_with_cache is False:
            bad.append("cache changes the answer")
        return bad


def measure(case: Case, root: Path, timeout: float, strace: bool) -> Result:
    case_dir = root / case.name
    (case_dir / "cwd").mkdir(exist_ok=True)
    inputs = case_dir / "in"
    before = snapshot(inputs)
    size = sum(p.lstat().st_blocks * 512 for p in structured.walk(inputs) if not p.is_symlink())
    trace = case_dir / "trace.txt" if strace else None
    outcome = run(case.argv, case_dir, timeout, trace)
    after = snapshot(inputs)
    modified = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    given = [os.path.normpath(a) for a in case.argv if a.startswith("/")]
    opens = outside_opens(trace, case_dir, given) if trace else []
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    names = any(
        any(n.encode("ascii", "backslashreplace").decode() in line or n in line for n in case.names)
        for line in lines
    )
    text = outcome.stdout + outcome.stderr
    same = None
    if case.well_formed and outcome.status == 0:
        same = _same_with_and_without_cache(case, case_dir, timeout, outcome)
    return Result(
        case,
        outcome.status,
        outcome.seconds,
        outcome.rss,
        len(lines),
        names,
        "Traceback (most recent call last)" in text,
        bool(CONTROL.search(text)),
        modified,
        opens,
        same,
        size,
    )


def _same_with_and_without_cache(case: Case, case_dir: Path, timeout: float, first: Run) -> bool:
    """The output from the cache equals the output without it (after ``case.change``)."""
    if isinstance(case.change, tuple):  # ("cache", edit): the entry itself is damaged
        case.change[1](case_dir / "cache")
    elif case.change is not None:
        case.change()
    cached = run(case.argv, case_dir, timeout, None)
    fresh = run(case.argv, case_dir, timeout, None, cache=False)
    if case.change is None:
        return _verdict(cached.stdout) == _verdict(fresh.stdout) == _verdict(first.stdout)
    return _verdict(cached.stdout) == _verdict(fresh.stdout)


def _verdict(stdout: str) -> str:
    return "\n".join(line for line in stdout.splitlines() if "cache" not in line.lower())


# ---- the table ------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    head = (
        f"{'input':<28}{'class':<14}{'exit':>5}{'lines':>6}{'names':>6}{'tb':>4}"
        f"{'MiB':>7}{'s':>7}{'mod':>5}{'out':>5}{'cache':>7}  failures"
    )
    rows = [head]
    for r in results:
        same = "-" if r.same_with_cache is None else ("same" if r.same_with_cache else "DIFF")
        rows.append(
            f"{r.case.name:<28}{r.case.kind:<14}{'T/O' if r.status is None else r.status:>5}"
            f"{r.lines:>6}{'yes' if r.names_input else 'no':>6}{'yes' if r.traceback else '-':>4}"
            f"{r.rss / 2**20:>7.0f}{r.seconds:>7.1f}{len(r.modified):>5}{len(r.opens):>5}"
            f"{same:>7}  {', '.join(r.failures()) or 'ok'}"
        )
    failed = [r for r in results if r.failures()]
    rows.append("")
    rows.append(
        f"totals: {len(results)} inputs, {len(results) - len(failed)} clean; "
        f"{sum(r.status is None for r in results)} hangs past the limit, "
        f"{sum(r.status is not None and r.status not in (0, 1) for r in results)} crashes, "
        f"{sum(r.traceback for r in results)} tracebacks, "
        f"{sum(r.status == 1 and (r.lines != 1 or not r.names_input) for r in results)} "
        "errors not one line naming the input, "
        f"{sum(r.rss > RSS_TARGET for r in results)} over 2 GiB, "
        f"{sum(bool(r.modified) for r in results)} inputs modified, "
        f"{sum(bool(r.opens) for r in results)} with opens outside, "
        f"{sum(r.raw_control for r in results)} with raw control characters, "
        f"{sum(r.same_with_cache is False for r in results)} cache mismatches "
        f"({sum(r.same_with_cache is not None for r in results)} checked); "
        f"peak RSS {max(r.rss for r in results) / 2**20:.0f} MiB, "
        f"slowest {max(r.seconds for r in results):.1f} s"
    )
    for r in failed:
        for path in r.opens[:5]:
            rows.append(f"  {r.case.name}: opened {path!r}")
        for path in r.modified[:5]:
            rows.append(f"  {r.case.name}: modified {path!r}")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per run")
    parser.add_argument("--only", nargs="*", help="run only these inputs")
    parser.add_argument("--keep", help="build the corpus in this folder and keep it")
    args = parser.parse_args(argv)
    strace = shutil.which("strace") is not None
    if args.keep:
        root = Path(args.keep).resolve()
        root.mkdir(parents=True, exist_ok=False)
        context = None
    else:
        context = tempfile.TemporaryDirectory(prefix="nnequiv-attack-")
        root = Path(context.name)
    try:
        cases = build(root)
        if args.only:
            cases = [c for c in cases if c.name in args.only]
        results = []
        for case in cases:
            results.append(measure(case, root, args.timeout, strace))
            print(f"# {case.name}: {', '.join(results[-1].failures()) or 'ok'}", flush=True)
        print(table(results))
        if not strace:
            print("# strace not found: opens not measured")
        return 1 if any(r.failures() for r in results) else 0
    finally:
        if context is not None:
            structured.remove_tree(root)  # in a loop: a corpus folder is 1,200 levels deep
            context.cleanup()


if __name__ == "__main__":
    sys.exit(main())
