"""Shared fixtures: small networks built here, and the path of ../shared when present."""

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


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test gets an empty analysis cache of its own and no Dask scheduler: the suite
    never reads or writes a user's cache, nor sends work to a user's cluster."""
    directory = tmp_path_factory.mktemp("nnequiv-cache")
    monkeypatch.setenv("NNEQUIV_CACHE_DIR", str(directory))
    monkeypatch.delenv("NNEQUIV_SCHEDULER", raising=False)
    return directory


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


@pytest.fixture
def mlp_state():
    return random_mlp([20, 16, 12, 6], seed=3)
