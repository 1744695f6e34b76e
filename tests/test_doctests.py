"""The Examples sections of the docstrings run as written (doctest): every module of nnequiv
that has one. Examples are small, seeded and without files, so they are fast and exact."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "nnequiv"
WITH_EXAMPLES = sorted(
    ".".join(("nnequiv",) + path.relative_to(PACKAGE).with_suffix("").parts)
    for path in PACKAGE.rglob("*.py")
    if ">>> " in path.read_text(encoding="utf-8")
)


def test_the_public_entry_points_have_examples():
    for module in ("_pipeline", "equivalence", "ensembles", "errors"):
        assert f"nnequiv.{module}" in WITH_EXAMPLES, module


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_examples_run_as_written(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False)
    assert result.attempted > 0, f"{name} has no examples that ran"
    assert result.failed == 0, f"{result.failed} example(s) of {name} failed (output above)"
