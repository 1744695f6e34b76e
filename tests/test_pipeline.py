"""The pipeline: each stage entered once per network, in data-flow order; options split,
sources opened and connectome ensembles drawn once per analysis, with the cache on or off."""

import os
import shutil
import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest
from _helpers import random_mlp

import nnequiv._pipeline
import nnequiv.analysis
import nnequiv.equivalence
import nnequiv.output.text
import nnequiv.spectra
from nnequiv import analyze
from nnequiv.cli import main

#: The entry point of every stage, in data-flow order, as (stage, module, name): the name
#: is patched in the module that calls it.
STAGES = [
    ("loading", nnequiv._pipeline, "open_source"),
    ("layers", nnequiv.spectra, "iter_layer_matrices"),
    ("spectra", nnequiv.analysis, "network_spectra"),
    ("ensembles", nnequiv.analysis, "conjugate_ensemble"),
    ("csd", nnequiv.analysis, "decay_with_interval"),
    ("distances", nnequiv.equivalence, "fingerprint"),
    ("equivalence", nnequiv.equivalence, "judge_pair"),
    ("output", nnequiv.output.text, "format_verdict"),
]


def trace_stages(monkeypatch) -> list[tuple[str, str]]:
    """Patch every stage's entry point to note ``("enter", stage)`` when it is called and
    ``("leave", stage)`` when it returns (its output ready for the next stage)."""
    events = []

    def traced(stage, function):
        def call(*args, **kwargs):
            events.append(("enter", stage))
            result = function(*args, **kwargs)
            events.append(("leave", stage))
            return result

        return call

    for stage, module, name in STAGES:
        monkeypatch.setattr(module, name, traced(stage, getattr(module, name)))
    return events


@pytest.mark.parametrize("cache", ["--no-cache", "--cache-dir"])
def test_compare_enters_each_stage_once_per_network_in_data_flow_order(
    monkeypatch, tmp_path, capsys, cache
):
    paths = []
    for seed in range(2):
        paths.append(tmp_path / f"net{seed}.npz")
        np.savez(paths[-1], **random_mlp([30, 20, 10], seed=seed))
    events = trace_stages(monkeypatch)
    where = [cache, str(tmp_path / "cache")] if cache == "--cache-dir" else [cache]
    with pytest.raises(SystemExit) as info:
        main(["compare", *map(str, paths), "--realizations", "3", *where])
    assert info.value.code == 0, capsys.readouterr().err
    assert "verdict:" in capsys.readouterr().out
    per_network = ["loading", "layers", "spectra", "ensembles", "csd"]
    expected = [*per_network, *per_network, "distances", "distances", "equivalence", "output"]
    # a stage is done with a network when its entry point returns, its output ready for the
    # next (the spectra stage pulls the layers one by one, so it is entered before them)
    finished = [stage for event, stage in events if event == "leave"]
    assert finished == expected
    entered = [stage for event, stage in events if event == "enter"]
    assert sorted(entered) == sorted(expected)  # each entered once per network (or pair)
    first_done = events.index(("leave", "csd"))
    second_loaded = events.index(("enter", "loading"), 1)
    assert first_done < second_loaded  # one network through the analysis, then the next


def test_an_in_memory_source_is_opened_and_its_options_split_once(monkeypatch, tmp_path):
    state = random_mlp([12, 9, 5], seed=1)
    opened, split = [], []
    open_source, split_options = nnequiv._pipeline.open_source, nnequiv._pipeline.split_options

    def counted_open(*args, **kwargs):
        opened.append(args[0])
        return open_source(*args, **kwargs)

    def counted_split(*args, **kwargs):
        split.append(args[0])
        return split_options(*args, **kwargs)

    monkeypatch.setattr(nnequiv._pipeline, "open_source", counted_open)
    monkeypatch.setattr(nnequiv._pipeline, "split_options", counted_split)
    for cache_dir in (False, tmp_path / "cache"):
        opened.clear(), split.clear()
        first = analyze(state, realizations=3, cache_dir=cache_dir)
        assert (len(opened), len(split)) == (1, 1), cache_dir
    opened.clear(), split.clear()
    again = analyze(state, realizations=3, cache_dir=tmp_path / "cache")  # hashed to look up
    assert (len(opened), len(split)) == (1, 1)
    np.testing.assert_array_equal(again.layer_points, first.layer_points)


def test_a_connectome_ensemble_is_drawn_once_with_the_cache_on(monkeypatch, tmp_path):
    import nnequiv._sources
    from nnequiv.connectomes import Connectome

    drawn = []
    weights = nnequiv._sources.connectome_weights

    def counted(*args, **kwargs):
        drawn.append(args[0])
        return weights(*args, **kwargs)

    monkeypatch.setattr(nnequiv._sources, "connectome_weights", counted)
    rng = np.random.default_rng(4)
    adjacency = (rng.random((40, 40)) < 0.2).astype(float)
    connectome = Connectome("toy", [f"n{i}" for i in range(40)], {"chemical": adjacency})
    analyze(connectome, realizations=2, submatrices=3, cache_dir=tmp_path / "cache")
    assert len(drawn) == 1


def test_an_analysis_is_frozen(tmp_path):
    analysis = analyze(random_mlp([12, 9, 5], seed=2), realizations=2, cache_dir=False)
    with pytest.raises(FrozenInstanceError):
        analysis.source = "renamed"


def test_no_stage_imports_a_higher_one_and_no_import_circle():
    """The contracts of .importlinter: the stages as layers in data-flow order (a lower
    stage never imports a higher one, even inside a function), no import circle."""
    root = Path(__file__).resolve().parents[1]
    lint = Path(sys.executable).with_name("lint-imports")
    lint = str(lint) if lint.exists() else shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed (requirements-dev.txt)")
    paths = [str(root / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    done = subprocess.run(
        [lint],  # reads .importlinter in the root
        cwd=root,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert ", 0 broken." in done.stdout
