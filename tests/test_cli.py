"""The command line on small generated models: every command and option, outputs, JSON shapes,
help texts, errors and exit codes."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from _helpers import random_mlp

from nnequiv._cli_parser import build_parser
from nnequiv.calibration import load_calibration
from nnequiv.cli import main
from nnequiv.settings import ConnectomeOptions, DistanceSettings, LoadOptions, Settings


def run(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def models(tmp_path):
    paths = []
    for seed in range(3):
        path = tmp_path / f"mlp{seed}.npz"
        np.savez(path, **random_mlp([40, 30, 20, 10], seed=seed))
        paths.append(path)
    deep = tmp_path / "deep.npz"
    np.savez(deep, **{f"l{i}": np.random.default_rng(i).standard_t(2, (16, 16)) for i in range(8)})
    return paths + [deep]


@pytest.mark.slow
def test_analyze_table_csv_json_plots_and_report(capsys, models, tmp_path):
    code, out, _ = run(capsys, "analyze", models[0], "--realizations", 3)
    assert code == 0 and "decay rate alpha" in out and "fc0.weight" in out
    assert "95% interval for another seed" in out and "fit standard error" in out
    payload = run_json(
        capsys,
        "analyze", models[0], "--realizations", 3, "--plot", tmp_path / "fig",
        "--csv", tmp_path / "layers.csv", "--report", tmp_path / "one.html",
    )  # fmt: skip
    assert payload["n_layers"] == 3 and "interval" in payload["decay"]
    assert payload["settings"]["realizations"] == 3 and payload["version"]
    assert list((tmp_path / "fig").glob("mlp0-*_csd.png"))
    header = (tmp_path / "layers.csv").read_text().splitlines()[0]
    assert header.startswith("name,shape,N,M,order") and "alpha" in header
    assert "<html" in (tmp_path / "one.html").read_text()


def test_jobs_do_not_change_the_numbers(capsys, models):
    serial = run_json(capsys, "analyze", models[3], "--realizations", 3, "--no-cache")
    parallel = run_json(capsys, "analyze", models[3], "--realizations", 3, "-j", 2, "--no-cache")
    assert parallel["curves"] == serial["curves"]


ANALYSIS_FLAGS = [
    ("--ensemble", "coe", "ensemble", "COE"),
    ("--seed", "5", "seed", 5),
    ("--normalization", "mean", "normalization", "mean"),
    ("--canonical", "raw", "canonical", "raw"),
    ("--fingerprint", "absolute", "fingerprint", "absolute"),
    ("--tail-quantile", "0.5", "tail_quantile", 0.5),
    ("--rtol", "0.1", "rtol", 0.1),
]


@pytest.mark.parametrize("flag,value,key,expected", ANALYSIS_FLAGS)
def test_every_analysis_flag_reaches_the_numbers(capsys, models, flag, value, key, expected):
    base = run_json(capsys, "analyze", models[0], "--realizations", 3)
    other = run_json(capsys, "analyze", models[0], "--realizations", 3, flag, value)
    assert other["settings"][key] == expected and base["settings"][key] != expected
    assert (other["curves"], other["layers"], other["tail_start"]) != (
        base["curves"],
        base["layers"],
        base["tail_start"],
    )


def test_loading_flags(capsys, models, tmp_path):
    every = run_json(capsys, "analyze", models[0], "--realizations", 2)
    kept = run_json(capsys, "analyze", models[0], "--realizations", 2, "--include", "*fc1*")
    dropped = run_json(
        capsys, "analyze", models[0], "--realizations", 2, "--exclude", "fc0.*",
        "--exclude", "fc2.*",
    )  # fmt: skip
    assert [row["name"] for row in every["layers"]] == ["fc0.weight", "fc1.weight", "fc2.weight"]
    assert [row["name"] for row in kept["layers"]] == ["fc1.weight"]
    assert [row["name"] for row in dropped["layers"]] == ["fc1.weight"]
    code, _, err = run(capsys, "analyze", models[0], "--include", "fc1")
    assert code == 1 and "no eligible layer" in err and "whole" in err  # the pattern rule
    kernel = tmp_path / "kernel.npz"
    np.savez(kernel, k=np.random.default_rng(0).standard_normal((3, 3, 8, 16)))
    inferred = run_json(capsys, "analyze", kernel, "--realizations", 2)
    forced = run_json(capsys, "analyze", kernel, "--realizations", 2, "--layout", "oihw")
    assert inferred["layout"] == "hwio" and forced["layout"] == "oihw"
    assert inferred["layers"][0]["matrix_shape"] == [16, 72]
    assert forced["layers"][0]["matrix_shape"] == [3, 384]
    code, _, err = run(capsys, "analyze", kernel, "--max-tensor-bytes", 100)
    assert code == 1 and "kernel.npz" in err


@pytest.mark.slow
def test_compare_json_csv_plots_report_and_explanation(capsys, models, tmp_path):
    payload = run_json(
        capsys, "compare", models[0], models[3], "--realizations", 4,
        "--csv", tmp_path / "v.csv", "--plot", tmp_path / "fig", "--report", tmp_path / "p.html",
    )  # fmt: skip
    assert set(payload) >= {"distance", "spread", "eps", "verdict", "explanation", "settings"}
    assert payload["a"] == "mlp0.npz" and payload["b"] == "deep.npz"
    assert payload["verdict"] == "not equivalent" and payload["explanation"]["layers"]
    assert (tmp_path / "v.csv").read_text().startswith("a,b,verdict,decided_by,design_distance,")
    assert list((tmp_path / "fig").glob("pair_*.png"))
    assert "not equivalent" in (tmp_path / "p.html").read_text()
    code, out, _ = run(capsys, "compare", models[0], models[3], "--realizations", 4)
    assert "largest contributions to the same-network distance" in out
    code, out, _ = run(capsys, "compare", models[0], models[0], "--eps", "0.1")
    assert code == 0 and "verdict: same network" in out and "distance 0:" in out


def test_distance_flags(capsys, models):
    base = run_json(capsys, "compare", models[0], models[3], "--realizations", 4)
    pooled = run_json(
        capsys, "compare", models[0], models[3], "--realizations", 4, "--level", "pooled"
    )
    heavier = run_json(
        capsys, "compare", models[0], models[3], "--realizations", 4, "--order-weight", 4
    )
    given = run_json(capsys, "compare", models[0], models[3], "--realizations", 4, "--eps", 9)
    assert pooled["level"] == "pooled" and pooled["distance"] != base["distance"]
    assert heavier["distance_settings"]["order_weight"] == 4
    assert heavier["distance"] > base["distance"]
    assert given["eps"] == 9 and given["eps_source"] == "given"
    assert given["verdict"] == "same network" and given["decided_by"] == "noise floor"
    design = run_json(
        capsys, "compare", models[0], models[3], "--realizations", 4, "--eps-design", 50
    )
    assert design["eps_design"] == 50 and design["verdict"] == "equivalent"
    assert design["calibration"]["name"].startswith("given")
    assert base["eps_design"] == load_calibration().eps_design


def test_cluster_folder_json_csv_plots_and_report(capsys, models, tmp_path):
    (tmp_path / "MANIFEST.csv").write_text("file,family\nmlp0.npz,mlp\n")
    (tmp_path / "README.md").write_text("networks\n")
    code, out, err = run(
        capsys, "cluster", tmp_path, "--json", "--realizations", 4,
        "--csv", tmp_path / "c.csv", "--plot", tmp_path / "p", "--report", tmp_path / "r.html",
    )  # fmt: skip
    payload = json.loads(out)
    names = sorted(p.name for p in models)
    assert code == 0 and sorted(payload["models"]) == names
    assert sorted(payload["paths"]) == sorted(str(p) for p in models)
    assert err == ""  # notes only on a terminal or with --verbose
    code, _, err = run(capsys, "cluster", tmp_path, "--realizations", 4, "--verbose")
    assert code == 0 and "MANIFEST.csv" in err and "README.md" in err  # one note each
    assert np.array(payload["distance"]).shape == (4, 4) and len(payload["labels"]) == 4
    assert np.array(payload["eps_pairs"]).shape == (4, 4)
    assert sorted(sum(payload["classes"], [])) == names
    assert (tmp_path / "c.csv").read_text().startswith("model,class,")
    assert (tmp_path / "p" / "dendrogram.png").exists()
    assert "heatmap" in (tmp_path / "r.html").read_text()


def test_same_file_names_get_distinct_labels(capsys, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        np.savez(tmp_path / folder / "model.npz", **random_mlp([20, 16, 8], seed=len(folder)))
    payload = run_json(capsys, "cluster", tmp_path, "--realizations", 3)
    assert sorted(payload["models"]) == ["a/model.npz", "b/model.npz"]


def test_identify_json_csv_and_top(capsys, models, tmp_path):
    payload = run_json(
        capsys, "identify", models[0], "--library", *models[1:], "--top", 2,
        "--realizations", 4, "--csv", tmp_path / "m.csv",
    )  # fmt: skip
    assert payload["query"] == "mlp0.npz" and len(payload["matches"]) == 2
    assert set(payload["matches"][0]) >= {"path", "distance", "spread", "eps", "verdict"}
    assert set(payload["matches"][0]) >= {"design_distance", "design_spread", "eps_design"}
    first, second = payload["matches"]
    assert first["design_distance"] <= second["design_distance"]  # ranked by design
    header = (tmp_path / "m.csv").read_text().splitlines()[0]
    assert header.startswith("rank,path,design_distance,") and ",eps," in header
    copy = run_json(capsys, "identify", models[3], "--library", *models, "--realizations", 4)
    assert copy["matches"][0]["path"] == "deep.npz#2" or copy["matches"][0]["distance"] == 0


def test_report_command(capsys, models, tmp_path):
    code, out, _ = run(capsys, "report", *models, "-o", tmp_path / "all.html", "--realizations", 3)
    assert code == 0 and "wrote" in out and "<svg" in (tmp_path / "all.html").read_text()
    code, _, err = run(capsys, "report", *models, "-o", tmp_path / "all.txt")
    assert code == 1 and "must end in .html" in err and not (tmp_path / "all.txt").exists()


def test_null_writes_npz_only(capsys, tmp_path):
    chemical = np.random.default_rng(0).poisson(1.0, (30, 30)).astype(float)
    np.savez(tmp_path / "c.npz", chemical=chemical)
    code, out, _ = run(capsys, "null", tmp_path / "c.npz", "-o", tmp_path / "null.npz")
    assert code == 0 and "strength-preserving" in out and (tmp_path / "null.npz").exists()
    code, _, err = run(capsys, "null", tmp_path / "c.npz", "-o", tmp_path / "null")
    assert code == 1 and ".npz" in err and not (tmp_path / "null").exists()


def test_connectome_flags(capsys, models, tmp_path):
    chemical = np.random.default_rng(1).poisson(0.8, (40, 40)).astype(float)
    np.savez(tmp_path / "worm.npz", chemical=chemical)
    few = run_json(capsys, "analyze", tmp_path / "worm.npz", "--realizations", 2,
                   "--submatrices", 3)  # fmt: skip
    assert few["n_layers"] == 3
    code, _, err = run(capsys, "analyze", models[0], "--mixture", "0.3")
    assert code == 1 and "connectomes only" in err


def test_keep_going(capsys, models, tmp_path):
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really")
    code, out, err = run(capsys, "cluster", tmp_path, "--realizations", 3)
    assert code == 1 and out == "" and "broken.npz" in err
    report = tmp_path / "kept.html"
    code, out, err = run(
        capsys, "cluster", tmp_path, "--realizations", 3, "--keep-going", "--report", report
    )
    assert code == 0 and "4 networks" in out
    lines = err.splitlines()
    assert lines[0].startswith("nnequiv: skipped: broken.npz: ") and "error" not in err
    assert lines[-1] == "nnequiv: skipped 1 input (--keep-going); see above"
    page = report.read_text()
    assert "Skipped inputs" in page and "<td>broken.npz</td>" in page
    payload = run_json(capsys, "cluster", tmp_path, "--realizations", 3, "--keep-going")
    ((skipped,),) = [payload["skipped"]]
    assert skipped["input"] == "broken.npz" and "not a readable .npz" in skipped["reason"]
    assert len(payload["models"]) == 4
    code, out, err = run(capsys, "cluster", tmp_path / "broken.npz", "--keep-going")
    assert code == 1 and out == ""
    assert err.splitlines()[-1] == (
        "nnequiv: error: no network could be analysed (1 input skipped, see above)"
    )


def test_cache_dir_is_used(capsys, models, tmp_path):
    run(capsys, "analyze", models[0], "--realizations", 2, "--cache-dir", tmp_path / "cache")
    assert list((tmp_path / "cache").rglob("*.npz"))


@pytest.mark.parametrize(
    "argv,message",
    [
        (["analyze", "missing.pt"], "no such file"),
        (["cluster", "nowhere_dir_xyz"], "no such file"),
        (["compare", "a.unknown", "b.unknown"], "no such file"),
        (["compare", "x.npz", "y.npz", "--eps", "-1"], "eps"),
    ],
)
def test_errors_are_one_line_with_nonzero_exit(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == "" and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_files_exit_cleanly(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    code, _, err = run(capsys, "analyze", bad)
    assert code == 1 and "bad.npz" in err and err.count("\n") == 1
    nan = tmp_path / "nan.npz"
    np.savez(nan, w=np.full((4, 4), np.nan))
    code, _, err = run(capsys, "analyze", nan)
    assert code == 1 and "tensor 'w' holds NaN" in err


def _options_of(parser):
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


def test_every_option_and_argument_has_help_with_its_default():
    parser = build_parser()
    commands = dict(parser._subparsers._group_actions[0].choices)
    for action, command in commands["index"]._subparsers._group_actions[0].choices.items():
        commands[f"index {action}"] = command
    for name, command in commands.items():
        for action in command._actions:
            if action.dest == "help":
                continue
            assert action.help, (name, action.dest)
            stated = "default" in action.help or action.nargs == 0 or action.required
            assert stated or not action.option_strings, (name, action.option_strings)
    settings_fields = {
        f
        for group in (Settings, LoadOptions, ConnectomeOptions)
        for f in group.__dataclass_fields__
    }
    offered = {a.dest for a in _options_of(commands["analyze"])}
    assert settings_fields - {"locations", "grid"} <= offered
    assert set(DistanceSettings.__dataclass_fields__) <= {
        a.dest for a in _options_of(commands["cluster"])
    }
    assert "default: 10" in commands["analyze"].format_help()
    assert re.search(r"--include PATTERN\s+keep only tensors whose full name", commands[
        "cluster"].format_help())  # fmt: skip


@pytest.mark.slow
def test_console_entry_point_and_broken_pipe(models):
    result = subprocess.run(
        [sys.executable, "-m", "nnequiv.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "nnequiv" in result.stdout
    command = f"{sys.executable} -m nnequiv.cli analyze {models[0]} --realizations 2 | head -1"
    piped = subprocess.run(command, shell=True, capture_output=True, text=True)
    assert piped.stderr == "" and piped.stdout.startswith(str(models[0]))


@pytest.mark.parametrize(
    "line,expected",
    [("nnequiv clu", {"cluster"}), ("nnequiv compare a.npz b.npz --ens", {"--ensemble"})],
)
def test_shell_completion_names_commands_and_options(tmp_path, line, expected):
    pytest.importorskip("argcomplete")
    answer = tmp_path / "completions.txt"
    env = dict(os.environ, _ARGCOMPLETE="1", COMP_LINE=line, COMP_POINT=str(len(line)))
    env["_ARGCOMPLETE_STDOUT_FILENAME"] = str(answer)
    result = subprocess.run([sys.executable, "-m", "nnequiv.cli"], env=env, capture_output=True)
    assert result.returncode == 0, result.stderr
    assert set(answer.read_text().split()) == expected


def test_keep_going_covers_missing_paths_and_index_builds(capsys, models, tmp_path):
    missing = tmp_path / "nosuch.pt"
    code, out, err = run(
        capsys, "cluster", models[0], models[1], missing, "--realizations", 3, "--keep-going"
    )
    assert code == 0 and "2 networks" in out
    assert err.splitlines() == [
        f"nnequiv: skipped: {missing}: no such file or directory",
        "nnequiv: skipped 1 input (--keep-going); see above",
    ]
    code, _, err = run(capsys, "cluster", models[0], models[1], missing, "--realizations", 3)
    assert code == 1 and "no such file" in err and err.count("\n") == 1
    broken = tmp_path / "broken.pt"
    broken.write_text("not a pickle")
    library = tmp_path / "lib.sqlite"
    code, out, err = run(
        capsys, "index", "build", models[0], broken, "-o", library, "--realizations", 3,
        "--keep-going",
    )  # fmt: skip
    assert code == 0 and "skipped: broken.pt: " in err and "mlp0.npz" in out and library.exists()
    code, _, err = run(capsys, "index", "build", models[0], broken, "-o", tmp_path / "no.sqlite")
    assert code == 1 and "broken.pt" in err and not (tmp_path / "no.sqlite").exists()


def test_one_network_a_folder_and_an_index_where_they_do_not_fit(capsys, models, tmp_path):
    code, out, _ = run(capsys, "cluster", models[0], "--realizations", 3)
    assert code == 0 and out.startswith("1 network, 1 class")
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "net.npz").write_bytes(models[1].read_bytes())
    code, out, _ = run(capsys, "analyze", folder, "--realizations", 3)
    assert code == 0 and "net.npz" in out and "fc0.weight" in out
    code, _, err = run(capsys, "analyze", tmp_path, "--realizations", 3)
    assert code == 1 and "holds 5 networks" in err and "analyze takes one" in err
    library = tmp_path / "lib.sqlite"
    assert run(capsys, "index", "build", *models[:2], "-o", library, "--realizations", 3)[0] == 0
    code, out, err = run(capsys, "compare", models[0], library, "--realizations", 3)
    assert code == 1 and out == "" and err.count("\n") == 1
    assert f"compare takes two networks; {models[0]} and {library} hold 3" in err
    one = tmp_path / "one.sqlite"
    assert run(capsys, "index", "build", models[1], "-o", one, "--realizations", 3)[0] == 0
    for pair, files in (((models[0], one), models[:2]), ((one, models[0]), models[1::-1])):
        code, from_files, _ = run(capsys, "compare", *files, "--realizations", 3, "--json")
        code, out, err = run(capsys, "compare", *pair, "--realizations", 3, "--json")
        assert code == 0 and err == "", err  # the summary serves the verdict
        got, files = json.loads(out), json.loads(from_files)
        assert got["explanation"] is None  # an index keeps no layer names
        for key in ("distance", "spread", "eps", "design_distance", "verdict"):
            assert got[key] == files[key], key
    for extra in (["--plot", tmp_path / "figures"], ["--report", tmp_path / "r.html"]):
        code, out, err = run(capsys, "compare", models[0], one, *extra, "--realizations", 3)
        assert code == 1 and out == "" and err.count("\n") == 1 and "Traceback" not in err
        what = "--plot" if extra[0] == "--plot" else "a report"
        assert err.startswith(f"nnequiv: error: mlp1.npz: {what} needs the network's whole")
        assert f"the fingerprint index {one} keeps only" in err
        assert not (tmp_path / "figures").exists() and not (tmp_path / "r.html").exists()
    code, _, err = run(capsys, "compare", models[0], tmp_path, "--realizations", 3)
    assert code == 1 and "compare takes two networks" in err
    for argv in (
        ["cluster", library, "--report", tmp_path / "r.html"],
        ["report", library, "-o", tmp_path / "r.html"],
        ["identify", models[2], "--library", library, "--report", tmp_path / "r.html"],
    ):
        code, out, err = run(capsys, *argv, "--realizations", 3)
        assert code == 1 and "a report needs the network's whole analysis" in err, argv
        assert f"the fingerprint index {library} keeps only" in err, argv
        assert out == "" and not (tmp_path / "r.html").exists()


def test_cluster_text_marks_each_pair_by_its_verdict(capsys, models):
    code, out, _ = run(capsys, "cluster", models[0], models[0], models[3], "--realizations", 3)
    assert code == 0
    rows = [line for line in out.splitlines() if line.lstrip().startswith("[")]
    assert rows[0].split()[0:2] == ["[1]", "[2]"]  # the header numbers the columns
    first, last = rows[1].split(), rows[3].split()
    assert first[2:4] == ["0.000", "0.000#"]  # a copy: the same network
    assert not last[-2].endswith(("=", "?")) and last[-1] == "0.000"


def test_layer_names_are_shown_whole(capsys, tmp_path):
    name = "model.layers.0.self_attn.q_proj.weight.with_a_long_suffix"
    path = tmp_path / "long.npz"
    np.savez(path, **{name: np.random.default_rng(0).standard_normal((12, 10))})
    code, out, _ = run(capsys, "analyze", path, "--realizations", 3)
    assert code == 0 and f"\n{name} " in out


def test_calibrate_writes_a_calibration_that_every_command_takes(capsys, tmp_path):
    rows = ["file,family"]
    for seed in range(3):
        for name, widths in (("wide", [90, 120, 90, 60]), ("deep", [40] * 7)):
            np.savez(tmp_path / f"{name}{seed}.npz", **random_mlp(widths, seed=seed))
            rows.append(f"{name}{seed}.npz,{name}")
    (tmp_path / "families.csv").write_text("\n".join(rows) + "\n")
    nets = sorted(str(p) for p in tmp_path.glob("*.npz"))
    out = tmp_path / "cal.json"
    code, text, _ = run(
        capsys, "calibrate", *nets, "--families", tmp_path / "families.csv", "-o", out,
        "--realizations", 4,
    )  # fmt: skip
    assert code == 0 and "leaving one family out" in text and out.exists()
    fitted = json.loads(out.read_text())
    assert fitted["nnequiv_calibration"] == 1 and fitted["provenance"]["families"]
    classes = run_json(capsys, "cluster", *nets, "--realizations", 4, "--calibration", out)
    assert classes["eps_design"] == fitted["eps_design"] and len(classes["classes"]) == 2
    assert classes["calibration"]["name"] == str(out)
    code, _, err = run(capsys, "cluster", *nets, "--calibration", tmp_path / "families.csv")
    assert code == 1 and "not a calibration file" in err and err.count("\n") == 1
    code, _, err = run(capsys, "calibrate", *nets, "--families", out, "-o", tmp_path / "x.json")
    assert code == 1 and "families table" in err
