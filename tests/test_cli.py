"""The command line on small generated models: outputs, JSON shapes, errors, exit codes."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import random_mlp

from nnequiv.cli import main


def run(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return info.value.code, out, err


@pytest.fixture
def models(tmp_path):
    paths = []
    for seed in range(3):
        path = tmp_path / f"mlp{seed}.npz"
        np.savez(path, **random_mlp([40, 30, 20, 10], seed=seed))
        paths.append(str(path))
    deep = tmp_path / "deep.npz"
    np.savez(deep, **{f"l{i}": np.random.default_rng(i).standard_t(2, (16, 16)) for i in range(8)})
    return paths + [str(deep)]


def test_analyze_table_json_and_plots(capsys, models, tmp_path):
    code, out, _ = run(capsys, "analyze", models[0], "--realizations", "3")
    assert code == 0 and "decay rate alpha" in out and "fc0.weight" in out
    code, out, _ = run(
        capsys,
        "analyze",
        models[0],
        "--realizations",
        "3",
        "--json",
        "--plot",
        str(tmp_path / "fig"),
    )
    payload = json.loads(out)
    assert code == 0 and payload["n_layers"] == 3 and "alpha" in payload["decay"]
    assert (tmp_path / "fig" / "mlp0_csd.png").exists()
    assert (tmp_path / "fig" / "mlp0_density.svg").exists()


def test_jobs_do_not_change_the_numbers(capsys, models):
    _, serial, _ = run(capsys, "analyze", models[3], "--realizations", "3", "--json", "--no-cache")
    code, parallel, _ = run(
        capsys, "analyze", models[3], "--realizations", "3", "--json", "-j", "2", "--no-cache"
    )
    assert code == 0 and json.loads(parallel)["curves"] == json.loads(serial)["curves"]


def test_compare_json_shape(capsys, models):
    code, out, _ = run(capsys, "compare", models[0], models[3], "--json", "--realizations", "4")
    payload = json.loads(out)
    assert code == 0 and set(payload) >= {"distance", "spread", "eps", "verdict"}
    assert len(payload["spread"]) == 2 and payload["verdict"] in {
        "equivalent",
        "not equivalent",
        "undecided",
    }
    code, out, _ = run(capsys, "compare", models[0], models[0], "--eps", "0.1")
    assert code == 0 and "verdict: equivalent" in out


def test_cluster_json_csv_and_plots(capsys, models, tmp_path):
    directory = tmp_path
    code, out, _ = run(
        capsys,
        "cluster",
        str(directory),
        "--json",
        "--realizations",
        "4",
        "--csv",
        str(tmp_path / "c.csv"),
        "--plot",
        str(tmp_path / "p"),
    )
    payload = json.loads(out)
    assert code == 0 and sorted(payload["models"]) == sorted(models)
    assert np.array(payload["distance"]).shape == (4, 4)
    assert sorted(sum(payload["classes"], [])) == sorted(models)
    assert (tmp_path / "c.csv").read_text().startswith("model,class,")
    assert (tmp_path / "p" / "dendrogram.png").exists()
    assert (tmp_path / "p" / "distance_heatmap.svg").exists()


def test_identify_json_shape(capsys, models):
    code, out, _ = run(
        capsys,
        "identify",
        models[0],
        "--library",
        *models[1:],
        "--top",
        "2",
        "--json",
        "--realizations",
        "4",
    )
    payload = json.loads(out)
    assert code == 0 and payload["query"] == models[0] and len(payload["matches"]) == 2
    assert set(payload["matches"][0]) >= {"path", "distance"}
    assert payload["matches"][0]["distance"] <= payload["matches"][1]["distance"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["analyze", "missing.pt"], "no such file"),
        (["cluster", "nowhere_dir_xyz"], "no such file"),
        (["compare", "a.unknown", "b.unknown"], "no such file"),
    ],
)
def test_errors_are_one_line_with_nonzero_exit(capsys, tmp_path, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == "" and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_files_exit_cleanly(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    code, _, err = run(capsys, "analyze", str(bad))
    assert code == 1 and "bad.npz" in err and err.count("\n") == 1
    nan = tmp_path / "nan.npz"
    np.savez(nan, w=np.full((4, 4), np.nan))
    code, _, err = run(capsys, "analyze", str(nan))
    assert code == 1 and "tensor 'w' holds NaN" in err


def test_console_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "nnequiv.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "nnequiv" in result.stdout
