"""Where analyses run: serially, in local worker processes and on a real Dask cluster of
worker processes, with one BLAS thread per task and the same bits everywhere."""

import numpy as np
import pytest
from _helpers import random_mlp
from threadpoolctl import threadpool_limits

from nnequiv import cluster, identify
from nnequiv.errors import InputError
from nnequiv.index import build_index, open_index
from nnequiv.scheduler import SCHEDULER_ENV, resolve_scheduler, run_tasks


def blas_threads(_item) -> list[int]:
    """Threads of every BLAS/OpenMP pool of the process running the task (NumPy's included)."""
    import numpy  # noqa: F401  (loads the BLAS whose threads are counted)
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info()]


def one_thread_each(per_task: list[list[int]]) -> bool:
    return all(counts and all(count == 1 for count in counts) for counts in per_task)


def square(value: int) -> int:
    return value * value


@pytest.fixture
def paths(tmp_path):
    out = []
    for seed in range(4):
        path = tmp_path / f"net{seed}.npz"
        np.savez(path, **random_mlp([40, 32, 24, 8], seed=seed))
        out.append(str(path))
    rng = np.random.default_rng(5)
    deep = tmp_path / "deep.npz"
    np.savez(deep, **{f"l{i}": rng.standard_t(2.5, (20, 20)) for i in range(6)})
    return out + [str(deep)]


def test_scheduler_comes_from_the_argument_or_the_environment(monkeypatch):
    assert resolve_scheduler(None) is None
    monkeypatch.setenv(SCHEDULER_ENV, "tcp://example:8786")
    assert resolve_scheduler(None) == "tcp://example:8786"
    assert resolve_scheduler("tcp://other:1") == "tcp://other:1"
    assert resolve_scheduler(False) is None
    monkeypatch.setenv(SCHEDULER_ENV, "")
    assert resolve_scheduler(None) is None


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_local_tasks_run_in_order_with_one_blas_thread(n_jobs):
    done = []
    results = run_tasks(square, range(7), n_jobs=n_jobs, done=lambda i, r: done.append((i, r)))
    assert results == [i * i for i in range(7)] and done == list(enumerate(results))
    with threadpool_limits(limits=2):  # the tasks' one thread is their own, on any machine
        assert not one_thread_each([blas_threads(None)])
        assert one_thread_each(run_tasks(blas_threads, range(3), n_jobs=n_jobs))


def test_worker_processes_give_the_serial_bits(paths):
    serial = cluster(paths, realizations=4, cache_dir=False)
    parallel = cluster(paths, realizations=4, cache_dir=False, n_jobs=2)
    assert parallel.to_dict() == serial.to_dict()


@pytest.mark.slow
def test_an_unreachable_scheduler_is_one_line(monkeypatch, paths):
    import nnequiv._pool

    monkeypatch.setattr(nnequiv._pool, "CONNECT_TIMEOUT", "0.5s")
    with pytest.raises(
        InputError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"
    ) as info:
        cluster(paths[:2], realizations=2, cache_dir=False, scheduler="tcp://127.0.0.1:9")
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed", reason="needs the [dask] extra")
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    ) as local:
        yield local.scheduler_address


@pytest.mark.slow
@pytest.mark.xdist_group("dask")  # one worker starts the cluster for both of its tests
def test_dask_cluster_gives_the_serial_bits(dask_cluster, paths, tmp_path):
    assert one_thread_each(run_tasks(blas_threads, range(4), scheduler=dask_cluster))
    options = {"realizations": 4, "cache_dir": False}
    serial = cluster(paths, **options)
    remote = cluster(paths, scheduler=dask_cluster, **options)
    assert remote.to_dict() == serial.to_dict()
    found = identify(paths[0], paths[1:], top=4, scheduler=dask_cluster, **options)
    assert found.to_dict() == identify(paths[0], paths[1:], top=4, **options).to_dict()
    built = build_index(paths, tmp_path / "lib.sqlite", scheduler=dask_cluster, **options)
    local = build_index(paths, tmp_path / "local.sqlite", **options)
    for got, expected in zip(open_index(built.path).entries, local.entries):
        assert got.label == expected.label and got.content_hash == expected.content_hash
        assert np.array_equal(got.summary.layer_points, expected.summary.layer_points)
        assert np.array_equal(got.summary.csd, expected.summary.csd)


@pytest.mark.xdist_group("dask")
def test_dask_results_fill_the_cache(dask_cluster, paths, private_cache, monkeypatch):
    monkeypatch.setenv(SCHEDULER_ENV, dask_cluster)  # the environment variable is enough
    remote = cluster(paths, realizations=4)
    assert len(list(private_cache.rglob("*.npz"))) == len(paths)
    monkeypatch.delenv(SCHEDULER_ENV)
    assert cluster(paths, realizations=4).to_dict() == remote.to_dict()


def test_analyse_all_is_a_deprecated_spelling_of_analyze_all(paths):
    import nnequiv.scheduler
    from nnequiv import analyze_all
    from nnequiv.settings import Settings

    with pytest.warns(DeprecationWarning, match="use nnequiv.analyze_all"):
        old = nnequiv.scheduler.analyse_all(paths[:2], Settings(realizations=2), {})
    new = analyze_all(paths[:2], realizations=2, cache_dir=False)
    for a, b in zip(old, new, strict=True):
        assert np.array_equal(a.layer_points, b.layer_points) and a.decay == b.decay
