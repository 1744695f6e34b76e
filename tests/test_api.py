"""The manners of the public API: the error tree exported and raised, frozen keyword-only
results, no private imports from other libraries, the one labeller."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

import nnequiv
import nnequiv.cli
from nnequiv import errors
from nnequiv._display import display_names, unique_labels
from nnequiv.csd import DecayFit, log_grid
from nnequiv.explain import Explanation, LayerContribution

PACKAGE = Path(nnequiv.__file__).resolve().parent


def test_the_error_tree_is_exported_from_nnequiv():
    assert nnequiv.errors is errors
    for name in errors.__all__:
        assert getattr(nnequiv, name) is getattr(errors, name), name
        assert name in nnequiv.__all__, name
        assert issubclass(getattr(errors, name), nnequiv.NNEquivError), name
    assert issubclass(nnequiv.InputError, ValueError)  # code catching ValueError still works


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: nnequiv.circular_eigenphases("CUE", 0, 1, seed=0), "n must be"),
        (lambda: nnequiv.cayley_spectrum("XYZ", 3, 1, seed=0), "unknown circular ensemble"),
        (lambda: nnequiv.circular_matrices("CUE", 3, -1, seed=0), "realizations"),
        (lambda: nnequiv.conjugate_ensemble([3], "CUE", 1, seed=None), "fixed seed"),
        (lambda: nnequiv.cayley_spectrum("CUE", 3, 1, seed=-1), "non-negative"),
        (lambda: log_grid(1.0, 0.5, 4), "bins >= 1"),
    ],
)
def test_public_functions_raise_input_error_on_bad_arguments(call, message):
    with pytest.raises(nnequiv.InputError, match=message):
        call()


def test_cli_turns_an_nnequiv_error_into_one_line(capsys, monkeypatch):
    def refuse(argv=None):
        raise nnequiv.FormatError("model.xyz: not a weights file")

    monkeypatch.setattr(nnequiv.cli, "run", refuse)
    with pytest.raises(SystemExit) as info:
        nnequiv.cli.main(["analyze", "model.xyz"])
    assert info.value.code == 1
    assert capsys.readouterr().err == "nnequiv: error: model.xyz: not a weights file\n"


def test_cli_lets_a_bug_show_its_traceback(monkeypatch):
    def bug(argv=None):
        raise ValueError("an internal mistake")  # not an NNEquivError: a bug, not bad input

    monkeypatch.setattr(nnequiv.cli, "run", bug)
    with pytest.raises(ValueError, match="an internal mistake"):
        nnequiv.cli.main(["analyze", "model.npz"])


@pytest.mark.parametrize(
    "cls",
    [
        nnequiv.Verdict,
        nnequiv.Classes,
        nnequiv.Match,
        nnequiv.Identification,
        DecayFit,
        Explanation,
        LayerContribution,
    ],
)
def test_results_are_frozen_and_keyword_only(cls):
    params = cls.__dataclass_params__
    assert params.frozen, cls
    assert all(f.kw_only for f in dataclasses.fields(cls)), cls


def test_results_change_by_replace_only():
    match = nnequiv.Match(path="a.npz", distance=0.1, spread=(0.0, 0.2), eps=0.3, verdict="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        match.verdict = "y"
    with pytest.raises(TypeError):
        nnequiv.Match("a.npz", 0.1, (0.0, 0.2), 0.3, "x")
    assert dataclasses.replace(match, verdict="y").verdict == "y" and match.verdict == "x"


def _private_imports(path: Path) -> list[str]:
    """Names imported from a private module (a part starting with ``_``) of another
    library."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] != "nnequiv" and any(p.startswith("_") for p in parts[1:]):
                found.append(f"{path.relative_to(PACKAGE)}: {module}")
    return found


def test_no_private_imports_from_other_libraries():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _private_imports(path)]
    assert found == []


def test_the_check_finds_a_private_import(tmp_path):
    (tmp_path / "m.py").write_text("from scipy.spatial._distance_pybind import cdist\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path
    try:
        assert _private_imports(tmp_path / "m.py") == ["m.py: scipy.spatial._distance_pybind"]
    finally:
        PACKAGE = saved


def test_one_labeller_marks_duplicates_alike():
    assert display_names(["a/m.npz", "a/m.npz", "b/m.npz"]) == ["a/m.npz", "a/m.npz#2", "b/m.npz"]
    assert unique_labels([("org", "model"), ("x", "org", "model")], [2, 2]) == [
        "org/model",
        "x/org/model",
    ]
    assert display_names([]) == []


def test_a_file_given_twice_has_one_label_per_place_in_text_and_json(tmp_path):
    from _helpers import random_mlp

    from nnequiv.output.text import format_classes

    (tmp_path / "sub").mkdir()
    for index, path in enumerate([tmp_path / "m.npz", tmp_path / "sub" / "m.npz"]):
        np.savez(path, **random_mlp([16, 12, 6], seed=index))
    paths = [tmp_path / "m.npz", tmp_path / "m.npz", tmp_path / "sub" / "m.npz"]
    classes = nnequiv.cluster(paths, realizations=2, cache_dir=False)
    first = f"{tmp_path.name}/m.npz"  # told apart from sub/m.npz by its folder
    assert classes.models == [first, f"{first}#2", "sub/m.npz"]
    assert classes.to_dict()["models"] == classes.models
    text = format_classes(classes)
    assert all(label in text for label in classes.models)


@pytest.mark.parametrize(
    ("shortcut", "original", "call"),
    [
        ("nnequiv.spectra.layer_spectra", "nnequiv.spectra.network_spectra", ({"w": np.eye(3)},)),
        (
            "nnequiv.connectomes.mixed_ensemble",
            "nnequiv.connectomes.ensemble_draws",
            ({"chemical": np.eye(3)},),
        ),
        (
            "nnequiv.ensembles.cayley_spectrum",
            "nnequiv.ensembles.circular_eigenphases",
            ("CUE", 3, 1),
        ),
    ],
)
def test_shortcuts_show_and_check_the_arguments_of_their_original(shortcut, original, call):
    import importlib
    import inspect

    def resolve(name):
        module, _, attribute = name.rpartition(".")
        return getattr(importlib.import_module(module), attribute)

    short, full = resolve(shortcut), resolve(original)
    assert inspect.signature(short).parameters == inspect.signature(full).parameters
    with pytest.raises(TypeError, match=rf"^{short.__name__}\(\): .*'no_such_option'"):
        short(*call, no_such_option=1)
