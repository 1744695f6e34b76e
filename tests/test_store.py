"""The analysis cache and the fingerprint index: keys, round trips, damaged files, results
through an index equal to those from the files, and the command line."""

import io
import json
import multiprocessing
import os
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _helpers import random_mlp

import nnequiv._pipeline
from nnequiv import analyze, analyze_all, cluster, compare, identify
from nnequiv.cache import (
    analysis_from_bytes,
    analysis_to_bytes,
    cache_directory,
    load_analysis,
    save_analysis,
)
from nnequiv.cli import main
from nnequiv.distances import distance_with_spread, fingerprint, summarize
from nnequiv.errors import FormatError, InputError
from nnequiv.index import add_to_index, build_index, is_index, open_index
from nnequiv.settings import DistanceSettings, Settings

R = 4  # realizations: enough for a calibrated eps, small enough to be quick


def write_nets(directory: Path, count: int = 5, widths=(48, 40, 32, 10)) -> list[str]:
    """``count`` small MLPs on disk, and a copy of the first under another name."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(count):
        path = directory / f"net{seed}.npz"
        np.savez(path, **random_mlp(list(widths), seed=seed))
        paths.append(str(path))
    copy = directory / "copy_of_net0.npz"
    copy.write_bytes(Path(paths[0]).read_bytes())
    return paths + [str(copy)]


def entries(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.npz"))


def forbid_analysis(monkeypatch):
    """Make every fresh analysis fail, so a result must come from the cache."""

    def refuse(*args, **kwargs):
        raise AssertionError("analysed although the cache holds the analysis")

    monkeypatch.setattr(nnequiv._pipeline, "analysis_of_weights", refuse)


# ---- where the cache lives ---------------------------------------------------------------


def test_the_suite_never_uses_the_user_cache(private_cache, tmp_path):
    import platformdirs

    assert cache_directory(None) == private_cache
    assert cache_directory(None) != Path(platformdirs.user_cache_dir("nnequiv"))
    path = tmp_path / "a.npz"
    np.savez(path, **random_mlp([20, 16, 8]))
    analyze(path, realizations=2)
    assert len(entries(private_cache)) == 1


def test_cache_directory_choices(monkeypatch, tmp_path):
    import platformdirs

    assert cache_directory(False) is None
    assert cache_directory(tmp_path / "c") == tmp_path / "c"
    monkeypatch.setenv("NNEQUIV_CACHE_DIR", "")
    assert cache_directory(None) is None
    monkeypatch.delenv("NNEQUIV_CACHE_DIR")
    assert cache_directory(None) == Path(platformdirs.user_cache_dir("nnequiv"))


# ---- entries -----------------------------------------------------------------------------


def assert_same_analysis(got, expected):
    for name in ("edges", "p_net", "p_circ", "csd", "layer_points"):
        assert np.array_equal(getattr(got, name), getattr(expected, name)), name
    assert got.to_dict() == expected.to_dict()


def test_a_stored_analysis_gives_bit_identical_distances(tmp_path):
    nets = [random_mlp([40, 30, 20, 10], seed=1), random_mlp([30, 30, 30], seed=2)]
    fresh = [analyze(net, realizations=5) for net in nets]
    stored = []
    for index, analysis in enumerate(fresh):
        save_analysis(analysis, tmp_path / f"{index}.npz")
        stored.append(load_analysis(tmp_path / f"{index}.npz", analysis.settings))
    for got, expected in zip(stored, fresh):
        assert_same_analysis(got, expected)
    for level in ("layer", "pooled"):
        settings = DistanceSettings(level=level)
        new = [fingerprint(a, settings) for a in fresh]
        old = [fingerprint(a, settings) for a in stored]
        assert distance_with_spread(*new) == distance_with_spread(*old)
        assert new[0].noise_floor == old[0].noise_floor


def test_cached_analysis_is_read_not_recomputed(tmp_path, monkeypatch, private_cache):
    first, *_, copy = write_nets(tmp_path, count=2)
    fresh = analyze(first, realizations=R)
    forbid_analysis(monkeypatch)
    again = analyze(first, realizations=R)
    assert_same_analysis(again, fresh)
    moved = analyze(copy, realizations=R)  # same bytes under another name: same entry
    assert moved.source == copy and np.array_equal(moved.csd, fresh.csd)
    assert len(entries(private_cache)) == 1


def test_every_setting_and_the_content_are_in_the_key(tmp_path, private_cache):
    first, second, _ = write_nets(tmp_path, count=2)
    analyze(first, realizations=R)
    analyze(first, realizations=R, seed=1)
    analyze(first, realizations=R, include="fc0*")  # a loading option
    analyze(second, realizations=R)
    assert len(entries(private_cache)) == 4
    Path(first).write_bytes(Path(second).read_bytes())  # content changed in place
    changed = analyze(first, realizations=R)
    assert np.array_equal(changed.csd, analyze(second, realizations=R).csd)


def test_in_memory_networks_are_keyed_by_their_tensors(monkeypatch, private_cache):
    net = random_mlp([30, 20, 10], seed=4)
    fresh = analyze(net, realizations=R)
    same = {k: v.copy() for k, v in net.items()}
    forbid_analysis(monkeypatch)
    assert_same_analysis(analyze(same, realizations=R), fresh)
    changed = dict(net, **{"fc0.weight": net["fc0.weight"] * 1.5 + 0.1})
    with pytest.raises(AssertionError, match="analysed although"):
        analyze(changed, realizations=R)


def test_no_cache_writes_nothing(tmp_path, private_cache):
    (first,) = write_nets(tmp_path, count=1)[:1]
    analyze(first, realizations=R, cache_dir=False)
    cluster([first, first], realizations=R, cache_dir=False)
    assert entries(private_cache) == []
    own = tmp_path / "own-cache"
    analyze(first, realizations=R, cache_dir=own)
    assert len(entries(own)) == 1 and entries(private_cache) == []


def tampered(data: bytes, **replace) -> bytes:
    """An entry with some members replaced (arrays, or the metadata as a dict)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as stored:
        members = {name: stored[name] for name in stored.files}
    for name, value in replace.items():
        members[name] = np.array(json.dumps(value)) if isinstance(value, dict) else value
    buffer = io.BytesIO()
    np.savez(buffer, **members)
    return buffer.getvalue()


def damaged_entries(good: bytes) -> dict[str, bytes]:
    with np.load(io.BytesIO(good), allow_pickle=False) as stored:
        meta = json.loads(str(stored["meta"][()]))
        csd = stored["csd"]
        points = stored["layer_points"]
    nan_csd = csd.copy()
    nan_csd[0, 0] = np.nan
    other_settings = dict(meta, settings=dict(meta["settings"], seed=7))
    bad_layer = dict(meta, layers=[dict(meta["layers"][0], order=-3)] + meta["layers"][1:])
    pickled = io.BytesIO()
    np.savez(pickled, meta=np.array([{"a": 1}], dtype=object))
    return {
        "garbage": b"not a zip at all",
        "truncated": good[: len(good) // 2],
        "NaN in the CSD": tampered(good, csd=nan_csd),
        "wrong shape": tampered(good, layer_points=points[:, :1]),
        "integer array": tampered(good, csd=csd.astype(np.int64)),
        "other version": tampered(good, meta=dict(meta, version="0.0.1")),
        "other settings": tampered(good, meta=other_settings),
        "bad layer": tampered(good, meta=bad_layer),
        "object array": pickled.getvalue(),
        "mangled array header": mangled_header(good),
    }


def mangled_header(data: bytes) -> bytes:
    """The entry with the closing brace of its CSD array's header blanked out (numpy's header
    parser then raises tokenize.TokenError, not a ValueError)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            member = source.read(info)
            if info.filename == "csd.npy":
                end = member.index(b"}")
                member = member[:end] + b" " + member[end + 1 :]
            target.writestr(info.filename, member)
    return buffer.getvalue()


def test_damaged_entries_are_refused_in_one_line(tmp_path):
    analysis = analyze(random_mlp([30, 20, 10], seed=2), realizations=R)
    good = analysis_to_bytes(analysis)
    assert_same_analysis(analysis_from_bytes(good, analysis.settings), analysis)
    for reason, data in damaged_entries(good).items():
        path = tmp_path / "entry.npz"
        path.write_bytes(data)
        with pytest.raises(FormatError) as info:
            load_analysis(path, analysis.settings)
        message = str(info.value)
        assert str(path) in message and "\n" not in message, reason


def test_damaged_cache_entries_are_recomputed(tmp_path, private_cache):
    (first,) = write_nets(tmp_path, count=1)[:1]
    fresh = analyze(first, realizations=R)
    (entry,) = entries(private_cache)
    for data in damaged_entries(entry.read_bytes()).values():
        entry.write_bytes(data)
        assert_same_analysis(analyze(first, realizations=R), fresh)
        assert_same_analysis(load_analysis(entry, fresh.settings), fresh)  # rewritten


def _analyze_into(arguments) -> str:
    path, directory = arguments
    analysis = analyze(path, realizations=R, cache_dir=directory)
    return analysis.csd.tobytes().hex()


def test_concurrent_processes_share_the_cache(tmp_path):
    (first,) = write_nets(tmp_path, count=1)[:1]
    directory = tmp_path / "shared-cache"
    context = multiprocessing.get_context("fork")
    with context.Pool(4) as pool:
        results = pool.map(_analyze_into, [(first, directory)] * 8)
    assert len(set(results)) == 1
    (entry,) = entries(directory)
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # no temporary left
    assert load_analysis(entry).csd.tobytes().hex() == results[0]


# ---- the fingerprint index ---------------------------------------------------------------


@pytest.fixture
def library(tmp_path):
    paths = write_nets(tmp_path / "nets", count=5)
    wide = tmp_path / "nets" / "wide.npz"
    rng = np.random.default_rng(3)
    np.savez(wide, **{f"w{i}": rng.standard_t(2.5, (60, 50)) for i in range(4)})
    paths.append(str(wide))
    index = build_index(paths, tmp_path / "lib.sqlite", realizations=R)
    return paths, index


def test_index_holds_the_summaries_of_the_analyses(library):
    paths, index = library
    reopened = open_index(index.path)
    assert is_index(index.path) and not is_index(paths[0])
    assert [e.label for e in reopened.entries] == [Path(p).name for p in paths]
    assert reopened.settings == Settings(realizations=R)
    for entry, path in zip(reopened.entries, paths):
        expected = summarize(analyze(path, realizations=R))
        got = entry.summary
        for name in ("layer_points", "orders", "streams", "csd"):
            assert np.array_equal(getattr(got, name), getattr(expected, name)), name
        assert entry.path == str(Path(path).resolve()) and len(entry.content_hash) == 64


@pytest.mark.parametrize("level", ["layer", "pooled"])
def test_identify_and_cluster_through_an_index_equal_the_files(library, level):
    paths, index = library
    query = paths[-2]  # the copy of net0
    from_files = identify(query, paths, top=len(paths), realizations=R, level=level)
    from_index = identify(query, index.path, top=len(paths), realizations=R, level=level)
    assert from_index.to_dict() == from_files.to_dict()
    best = from_index.matches[0]
    assert {best.distance, from_index.matches[1].distance} == {0.0}
    assert best.verdict == "same network"
    from_index = cluster(index.path, level=level)  # no setting given: the index's are used
    assert from_index.to_dict() == cluster(paths, level=level, realizations=R).to_dict()


@pytest.mark.parametrize("level", ["layer", "pooled"])
def test_compare_takes_a_one_network_index_as_that_network(tmp_path, level):
    paths = write_nets(tmp_path / "nets", count=2)
    one = build_index(paths[1:2], tmp_path / "one.sqlite", realizations=R)
    from_files = compare(paths[0], paths[1], realizations=R, level=level)
    for index in (one.path, one):  # the file, or the opened Library
        got = compare(paths[0], index, realizations=R, level=level)
        assert got.explanation is None  # an index keeps no layer names
        assert got.b == one.entries[0].label  # named as the index names it
        expected = {**from_files.to_dict(), "explanation": None, "b": got.b}
        assert got.to_dict() == expected


def test_compare_refuses_an_index_of_two_networks_in_one_line(library):
    paths, index = library
    two = build_index(paths[1:3], Path(index.path).with_name("two.sqlite"), realizations=R)
    with pytest.raises(InputError) as info:
        compare(paths[0], two.path, realizations=R)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"compare takes two networks; {paths[0]} and {two.path} hold 3")


def test_a_summary_is_refused_where_the_whole_analysis_is_needed(library):
    from nnequiv._pipeline import require_analyses

    paths, index = library
    analysis = analyze(paths[0], realizations=R)
    require_analyses([analysis], "a report")  # a whole analysis passes
    summary = open_index(index.path).summaries[1]
    with pytest.raises(InputError) as info:
        require_analyses([analysis, summary], "a report")
    assert str(info.value) == (
        f"{summary.source}: a report needs the network's whole analysis, and the fingerprint "
        f"index {index.path} keeps only what distances need; give the network's file"
    )


def test_an_index_is_read_only_with_its_own_settings(library):
    paths, index = library
    with pytest.raises(InputError, match=r"index built with realizations=4.*--realizations 4"):
        identify(paths[0], index.path)  # the default realizations differ
    with pytest.raises(InputError, match="index built with seed=0"):
        identify(paths[0], index.path, realizations=R, seed=1)
    with pytest.raises(InputError, match="index built with seed=0"):
        cluster(index.path, realizations=R, seed=1)
    with pytest.raises(InputError, match="seed"):
        add_to_index(index.path, paths[:1], seed=1)


def test_add_takes_the_run_keywords_of_build_index(library, tmp_path):
    paths, index = library
    extra, broken = tmp_path / "extra.npz", tmp_path / "broken.npz"
    np.savez(extra, **random_mlp([20, 20, 20], seed=9))
    broken.write_bytes(b"PK\x03\x04 not a zip")
    calls, failed, cache = [], [], tmp_path / "cache"
    grown = add_to_index(
        index.path,
        [str(extra), str(broken)],
        cache_dir=cache,
        progress=lambda *args: calls.append(args),
        on_error=lambda label, error: failed.append(label),
    )
    assert [c.label for c in grown.changes] == ["extra.npz"]
    assert [Path(label).name for label in failed] == ["broken.npz"]
    assert calls and list((cache / "analyses").rglob("*.npz"))


def test_add_never_loses_a_network_and_replaces_only_when_asked(library, tmp_path):
    paths, index = library
    labels = [e.label for e in index.entries]
    extra = tmp_path / "extra.npz"
    np.savez(extra, **random_mlp([20, 20, 20], seed=9))
    grown = add_to_index(index.path, [str(extra), paths[0]])
    assert [e.label for e in grown.entries] == labels + ["extra.npz"]
    assert [(c.label, c.action) for c in grown.changes] == [
        ("extra.npz", "added"),
        ("net0.npz", "unchanged"),
    ]
    other = tmp_path / "other" / "net0.npz"  # another network under a label the index holds
    other.parent.mkdir()
    np.savez(other, **random_mlp([20, 20, 20], seed=10))
    grown = add_to_index(index.path, [str(other)])
    assert [e.label for e in grown.entries] == labels + ["extra.npz", "other/net0.npz"]
    assert [(c.label, c.action, c.detail) for c in grown.changes] == [
        ("other/net0.npz", "renamed", "net0.npz")
    ]
    assert grown.entries[0].content_hash == index.entries[0].content_hash
    replaced = add_to_index(index.path, [str(other)], replace=True)
    assert [(c.label, c.action) for c in replaced.changes] == [("net0.npz", "replaced")]
    assert len(replaced) == len(grown)
    (entry,) = [e for e in replaced.entries if e.label == "net0.npz"]
    assert entry.content_hash != index.entries[0].content_hash


def test_index_add_says_what_it_did_and_keeps_every_folder(capsys, tmp_path):
    folders = []
    for seed, name in enumerate("abc"):
        folder = tmp_path / name
        folder.mkdir()
        np.savez(folder / "model.npz", **random_mlp([20, 16, 12], seed=seed))
        folders.append(folder)
    lib = tmp_path / "lib.sqlite"
    assert run(capsys, "index", "build", folders[0], "-o", lib, "--realizations", R)[0] == 0
    for folder in folders[1:]:
        code, out, _ = run(capsys, "index", "add", lib, folder)
        assert code == 0
        assert out.startswith(f"added: {folder.name}/model.npz (the index holds another")
    code, out, _ = run(capsys, "index", "add", lib, folders[0], "--json")
    payload = json.loads(out)
    assert code == 0 and len(payload["networks"]) == 3
    assert payload["changes"] == [
        {"label": "model.npz", "action": "unchanged", "detail": "model.npz"}
    ]
    code, out, _ = run(capsys, "index", "add", lib, folders[2], "--replace")
    assert code == 0 and out.startswith("replaced: model.npz\n") and "3 networks" in out


def damage_index(path: Path, how: str) -> None:
    if how == "not sqlite":
        path.write_bytes(b"\x00" * 2048)
        return
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:1500])
        return
    connection = sqlite3.connect(path)
    with connection:
        if how == "short blob":
            connection.execute("UPDATE networks SET points = substr(points, 1, 16)")
        elif how == "NaN":
            blob = np.frombuffer(connection.execute("SELECT points FROM networks").fetchone()[0])
            blob = blob.copy()
            blob[0] = np.nan
            connection.execute("UPDATE networks SET points = ?", (blob.tobytes(),))
        elif how == "stream keys":
            connection.execute("UPDATE networks SET streams = zeroblob(length(streams))")
        elif how == "settings":
            connection.execute("UPDATE meta SET value = '[1, 2]' WHERE key = 'settings'")
        elif how == "version":
            connection.execute("UPDATE meta SET value = '0.0.1' WHERE key = 'version'")
        elif how == "foreign database":
            connection.execute("DROP TABLE meta")
    connection.close()


@pytest.mark.parametrize(
    "how",
    ["not sqlite", "truncated", "short blob", "NaN", "stream keys", "settings", "version",
     "foreign database"],
)  # fmt: skip
def test_damaged_indexes_are_refused_in_one_line(library, how):
    paths, index = library
    path = Path(index.path)
    damage_index(path, how)
    with pytest.raises(FormatError) as info:
        open_index(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    with pytest.raises(FormatError):
        identify(paths[0], str(path), realizations=R)


# ---- command line ------------------------------------------------------------------------


def run(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_index_commands(capsys, tmp_path, private_cache):
    paths = write_nets(tmp_path / "nets", count=3)
    lib = tmp_path / "lib.sqlite"
    code, out, _ = run(
        capsys, "index", "build", *paths[:3], "-o", lib, "--realizations", R, "--json"
    )
    assert code == 0 and [n["label"] for n in json.loads(out)["networks"]] == [
        Path(p).name for p in paths[:3]
    ]
    code, out, _ = run(capsys, "index", "add", lib, paths[3])
    assert code == 0 and Path(paths[3]).name in out
    code, out, _ = run(capsys, "index", "list", lib)
    assert code == 0 and out.startswith(f"index {lib}: 4 networks")
    query = ["identify", paths[3], "--top", 4, "--json", "--realizations", R]
    _, through_index, _ = run(capsys, *query, "--library", lib)
    _, from_files, _ = run(capsys, *query, "--library", *paths[:4])
    assert json.loads(through_index) == json.loads(from_files)
    assert json.loads(through_index)["matches"][0]["distance"] == 0.0
    _, classes, _ = run(capsys, "cluster", lib, "--json")
    assert json.loads(classes)["models"] == [Path(p).name for p in paths[:4]]
    code, _, err = run(capsys, "identify", paths[0], "--library", lib)
    assert code == 1 and "--realizations 4" in err and err.count("\n") == 1
    lib.write_bytes(b"SQLite format 3\x00" + b"\x01" * 100)
    code, _, err = run(capsys, "index", "list", lib)
    assert code == 1 and str(lib) in err and err.count("\n") == 1


def test_cache_options_on_the_command_line(capsys, tmp_path, private_cache):
    (first,) = write_nets(tmp_path, count=1)[:1]
    run(capsys, "analyze", first, "--realizations", R, "--no-cache")
    assert entries(private_cache) == []
    run(capsys, "analyze", first, "--realizations", R)
    assert len(entries(private_cache)) == 1
    own = tmp_path / "own"
    run(capsys, "compare", first, first, "--realizations", R, "--cache-dir", own)
    assert len(entries(own)) == 1
    assert os.environ["NNEQUIV_CACHE_DIR"] == str(private_cache)
    with zipfile.ZipFile(entries(own)[0]) as archive:  # arrays and JSON, no pickle
        assert sorted(archive.namelist()) == sorted(
            ["meta.npy", "edges.npy", "p_net.npy", "p_circ.npy", "csd.npy", "layer_points.npy"]
        )


def test_an_index_read_without_curves_serves_the_layer_level_only(library):
    paths, index = library
    light = open_index(index.path, curves=False)
    assert all(entry.summary.csd is None for entry in light.entries)
    full = open_index(index.path)
    for a, b in zip(light.entries, full.entries):
        assert np.array_equal(fingerprint(a.summary).mean, fingerprint(b.summary).mean)
    with pytest.raises(InputError, match="pooled level needs the CSD curves"):
        fingerprint(light.entries[0].summary, DistanceSettings(level="pooled"))


def test_an_empty_index_is_an_empty_set(tmp_path):
    (first,) = write_nets(tmp_path, count=1)[:1]
    index = build_index([first], tmp_path / "lib.sqlite", realizations=R)
    connection = sqlite3.connect(index.path)
    with connection:
        connection.execute("DELETE FROM networks")
    connection.close()
    assert len(open_index(index.path)) == 0
    with pytest.raises(InputError, match="empty"):
        cluster(index.path)
    assert identify(first, index.path, realizations=R).matches == []


# ---- an index is read without being changed, and only as tables (issue 20, item 2) -----------


def test_reading_an_index_in_wal_mode_writes_nothing_beside_it(capsys, tmp_path):
    (first, second) = write_nets(tmp_path / "nets", count=2)[:2]
    lib = tmp_path / "lib.sqlite"
    build_index([first], lib, realizations=R)
    connection = sqlite3.connect(lib)
    assert connection.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    connection.close()
    before = (lib.read_bytes(), lib.stat().st_mtime_ns, sorted(os.listdir(tmp_path)))
    for argv in (
        ["index", "list", lib],
        ["identify", second, "--library", lib, "--realizations", R],
        ["cluster", lib, second, "--realizations", R],
    ):
        code, _, err = run(capsys, *argv)
        assert code == 0, err
        assert (lib.read_bytes(), lib.stat().st_mtime_ns, sorted(os.listdir(tmp_path))) == before
    assert len(open_index(lib)) == 1  # and with changes still in its -wal file, they are read
    writer = sqlite3.connect(lib)
    writer.execute("UPDATE networks SET label = 'renamed.npz'")
    writer.commit()  # the change sits in lib.sqlite-wal while this connection is open
    assert os.path.exists(f"{lib}-wal")
    assert [e.label for e in open_index(lib).entries] == ["renamed.npz"]
    left = tmp_path / "left"  # a -wal with changes and no -shm, as a crashed writer leaves
    left.mkdir()
    for name in ("lib.sqlite", "lib.sqlite-wal"):
        (left / name).write_bytes((tmp_path / name).read_bytes())
    writer.close()
    before = {p.name: p.read_bytes() for p in left.iterdir()}
    code, out, err = run(capsys, "index", "list", left / "lib.sqlite")
    assert code == 0, err
    assert "renamed.npz" in out
    assert {p.name: p.read_bytes() for p in left.iterdir()} == before


@pytest.mark.parametrize(
    "how",
    [
        "a view looping forever",
        "a trigger",
        "a view in place of the table",
        "a virtual table",
        "nested settings",
        "an oversized blob",
        "an oversized setting",
    ],
)
def test_indexes_that_would_run_queries_or_nest_deeply_are_refused_in_one_line(tmp_path, how):
    (first,) = write_nets(tmp_path / "nets", count=1)[:1]
    lib = tmp_path / "lib.sqlite"
    build_index([first], lib, realizations=R)
    connection = sqlite3.connect(lib)
    with connection:
        if how == "a view looping forever":
            connection.execute("ALTER TABLE networks RENAME TO stored")
            connection.execute(
                "CREATE VIEW networks AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                "SELECT i + 1 FROM n) SELECT s.* FROM stored s, n"
            )
        elif how == "a trigger":
            connection.execute(
                "CREATE TRIGGER grow AFTER INSERT ON networks BEGIN "
                "INSERT INTO meta VALUES (NEW.label, 'x'); END"
            )
        elif how == "a view in place of the table":
            connection.execute("ALTER TABLE meta RENAME TO stored")
            connection.execute("CREATE VIEW meta AS SELECT * FROM stored")
        elif how == "a virtual table":
            connection.execute("CREATE VIRTUAL TABLE extra USING rtree(id, x0, x1)")
        elif how == "an oversized blob":  # refused by its length, before it is read
            connection.execute("UPDATE networks SET points = zeroblob(10000000)")
        elif how == "an oversized setting":
            connection.execute("INSERT INTO meta VALUES ('notes', ?)", ("x" * 2_000_000,))
        else:
            nested = "[" * 100_000 + "]" * 100_000
            connection.execute("UPDATE meta SET value = ? WHERE key = 'settings'", (nested,))
    connection.close()
    with pytest.raises(FormatError) as info:
        open_index(lib)
    message = str(info.value)
    assert message.startswith(f"{lib}: not a valid nnequiv index: ") and "\n" not in message


def test_a_query_that_runs_too_long_is_interrupted(tmp_path, monkeypatch):
    import nnequiv.index

    (first,) = write_nets(tmp_path / "nets", count=1)[:1]
    lib = tmp_path / "lib.sqlite"
    build_index([first], lib, realizations=R)
    monkeypatch.setattr(nnequiv.index, "_STEPS_PER_CALL", 1)
    monkeypatch.setattr(nnequiv.index.LIMITS, "max_query_steps", 10)
    with pytest.raises(FormatError, match="a query ran past 10 steps"):
        open_index(lib)


def test_the_query_bound_is_raised_with_the_limit_option(capsys, tmp_path, monkeypatch):
    import nnequiv.index

    (first,) = write_nets(tmp_path / "nets", count=1)[:1]
    lib = tmp_path / "lib.sqlite"
    build_index([first], lib, realizations=R)
    monkeypatch.setattr(nnequiv.index, "_STEPS_PER_CALL", 1)
    monkeypatch.setattr(nnequiv.index.LIMITS, "max_query_steps", 10)
    code, _, err = run(capsys, "index", "list", lib)
    assert code == 1 and "--limit max_query_steps=N" in err
    code, out, err = run(capsys, "index", "list", lib, "--limit", "max_query_steps=10000000")
    assert code == 0, err
    assert Path(first).name in out


def test_lookup_and_store_are_deprecated_and_still_work(tmp_path):
    from nnequiv import cache

    path = write_nets(tmp_path / "nets", count=1)[0]
    settings = Settings(realizations=2)
    with pytest.warns(DeprecationWarning, match="cache.lookup is deprecated"):
        found, entry = cache.lookup(path, settings, {}, tmp_path / "cache")
    assert found is None and entry is not None
    analysis = analyze(path, realizations=2, cache_dir=False)
    with pytest.warns(DeprecationWarning, match="cache.store is deprecated"):
        cache.store(entry, analysis)
    with pytest.warns(DeprecationWarning):
        found, _ = cache.lookup(path, settings, {}, tmp_path / "cache")
    assert np.array_equal(found.layer_points, analysis.layer_points)


def test_a_crafted_wal_frame_cannot_grow_the_index_in_memory():
    """A frame with a valid checksum that names page 2**32 - 1 ends the log (the result could
    not have that many pages); the database is read as it is."""
    from nnequiv.index import _wal_checksum, _with_wal

    page_size, salts = 4096, b"\x01\x02\x03\x04\x05\x06\x07\x08"
    database = bytes(100) + bytes(page_size - 100)
    header = (0x377F0682).to_bytes(4, "big") + (3007000).to_bytes(4, "big")
    header += page_size.to_bytes(4, "big") + bytes(4) + salts
    checksum = _wal_checksum(header, (0, 0), "little")
    log = header + b"".join(c.to_bytes(4, "big") for c in checksum)
    frame = (2**32 - 1).to_bytes(4, "big") + (2**32 - 1).to_bytes(4, "big") + salts
    page = b"\xff" * page_size
    checksum = _wal_checksum(frame[:8] + page, checksum, "little")
    log += frame + b"".join(c.to_bytes(4, "big") for c in checksum) + page
    result = _with_wal(database, log)
    assert len(result) == page_size and result[:18] == database[:18]
    assert result[18:20] == b"\x01\x01"  # rollback-journal mode, to open from memory


def test_analyze_all_reads_an_index_with_its_pooled_curves(library):
    paths, index = library
    found = analyze_all([index.path], realizations=R)
    assert found and all(summary.csd is not None for summary in found)
