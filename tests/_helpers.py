"""Helpers the tests import: the paths of ../shared, the skip when it is absent, and small
networks built here. (Fixtures live in conftest.py; nothing is imported from it.)"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NNEQUIV_SHARED", ROOT.parent / "shared"))
ZOO = SHARED / "zoo"
CONNECTOMES = SHARED / "connectomes"


def require_shared(path: Path) -> Path:
    """Skip (with the reason) when ../shared is absent; CI always has it."""
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing, but CI must run the tests on the shared data")
        pytest.skip(f"{path} not present (the shared data sits beside the checkout in CI)")
    return path


def random_mlp(widths, seed=0, scale=1.0) -> dict[str, np.ndarray]:
    """A dict state of a dense network (PyTorch layout: out x in) with biases."""
    rng = np.random.default_rng(seed)
    state = {}
    for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        state[f"fc{index}.weight"] = (
            scale * rng.standard_normal((fan_out, fan_in)) / np.sqrt(fan_in)
        )
        state[f"fc{index}.bias"] = np.zeros(fan_out)
    return state


# ---- statistical tests: the seed sweep and the per-check alpha ----------------------------
#
# The statistical tests take the ``seed`` fixture (conftest.py). By default each runs once, at
# the fixed seed of its ``@pytest.mark.fixed_seed(n)``; with ``NNEQUIV_TEST_SEEDS=0-19`` (a
# range, or seeds separated by commas) each runs once per seed of the sweep.
#
# Every check of a true law (``p > ALPHA``) fails falsely with probability ALPHA at most, on
# any seed. The sweep makes SWEEP_SEEDS * NULL_CHECKS such checks; by the union (Bonferroni)
# bound, whatever their dependence, the probability that any of them fails falsely is at most
# SWEEP_SEEDS * NULL_CHECKS * ALPHA = 20 * 28 * 1.8e-5 = 0.01. The checks of power
# (``p < ALPHA`` on a wrong law) do not add false failures of a true law: they fail only when
# the test could not tell the laws apart, which the sweep shows does not happen.
#: Seeds of the documented sweep (``NNEQUIV_TEST_SEEDS=0-19``).
SWEEP_SEEDS = 20
#: Checks of a true law (``p > ALPHA``) in one run of the statistical tests (test_ensembles.py:
#: uniform density 6, Wigner spacings 3 + 3, two-point correlation 2, half-Cauchy 5 + 1, CMV
#: against Haar 6; test_datasets.py: Gaussian and Student-t entries 2). Count again when one is
#: added.
NULL_CHECKS = 28
#: Family-wise false-failure rate allowed over the whole sweep.
FAMILY_RATE = 0.01
#: The p-value below which a statistical check rejects its law.
ALPHA = FAMILY_RATE / (SWEEP_SEEDS * NULL_CHECKS)


def seed_sweep(text: str | None = None) -> list[int | None]:
    """The seeds of ``NNEQUIV_TEST_SEEDS`` (``"0-19"``, ``"3,5,8-9"``); ``[None]`` (each
    test's fixed seed) when it is unset or empty."""
    text = (os.environ.get("NNEQUIV_TEST_SEEDS", "") if text is None else text).strip()
    if not text:
        return [None]
    seeds: list[int | None] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        seeds += range(int(low), int(high or low) + 1)
    return seeds


def save_safetensors(path, state):
    """``state`` as float32 tensors in a safetensors file at ``path`` (folders made)."""
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}, str(path))
    return path


def hub_cache(root, state, repo="acme/tiny-mlp", commit="a" * 40, *, older_snapshot=False):
    """A Hugging Face hub cache as huggingface_hub lays it out: a blob, a snapshot of
    symbolic links to it, refs/main (and, with ``older_snapshot``, an older snapshot that
    refs/main skips)."""
    org, name = repo.split("/")
    folder = root / f"models--{org}--{name}"
    blob = save_safetensors(folder / "blobs" / ("b" * 64), state)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    os.symlink(os.path.relpath(blob, snapshot), snapshot / "model.safetensors")
    (snapshot / "config.json").write_text("{}")
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    if older_snapshot:
        (folder / "snapshots" / ("c" * 40)).mkdir()
    return folder
