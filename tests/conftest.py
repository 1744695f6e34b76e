"""Shared fixtures (helpers that tests import are in _helpers.py)."""

from __future__ import annotations

import pytest
from _helpers import random_mlp, seed_sweep
from threadpoolctl import threadpool_limits


def pytest_collection_finish(session):
    """A pytest-xdist worker (``make test``: one per core) holds the BLAS and OpenMP pools of
    the libraries the tests have loaded to one thread, as nnequiv's own workers do: else
    the idle threads of one worker spin on the cores that the others compute on."""
    if hasattr(session.config, "workerinput"):
        threadpool_limits(limits=1)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test gets an empty analysis cache of its own and no Dask scheduler: the suite
    never reads or writes a user's cache, nor sends work to a user's cluster."""
    directory = tmp_path_factory.mktemp("nnequiv-cache")
    monkeypatch.setenv("NNEQUIV_CACHE_DIR", str(directory))
    monkeypatch.delenv("NNEQUIV_SCHEDULER", raising=False)
    return directory


@pytest.fixture
def mlp_state():
    return random_mlp([20, 16, 12, 6], seed=3)


@pytest.fixture(params=seed_sweep(), ids=lambda s: "fixed-seed" if s is None else f"seed{s}")
def seed(request) -> int:
    """The seed of a statistical test: its ``@pytest.mark.fixed_seed(n)``, or each seed of
    ``NNEQUIV_TEST_SEEDS`` in turn (see _helpers.ALPHA for the sweep's false-failure rate)."""
    if request.param is not None:
        return request.param
    marker = request.node.get_closest_marker("fixed_seed")
    if marker is None:
        raise pytest.UsageError(f"{request.node.nodeid} takes seed but names no fixed_seed")
    return marker.args[0]
