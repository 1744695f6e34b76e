"""Bounded memory (method item 2, issue 19 item 5): the budget, blocks chosen from it, one-line
refusals and out-of-memory errors, and connectome readers that never build N^2 for a sparse
edge list."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from nnequiv import _memory, analyze
from nnequiv._blockwise import BLOCK_BYTES, plan_blocks, whole_bytes, working_bytes
from nnequiv.cli import main
from nnequiv.connectomes import (
    dense_matrix,
    ensemble_draws,
    is_sparse,
    load_connectome,
    mixed_ensemble,
)
from nnequiv.errors import InputError, ResourceLimitError
from nnequiv.spectra import _spectrum_of, canonical_form, gram_eigenvalues, layer_spectra

GIB = 2**30


# ---- the budget --------------------------------------------------------------------------


@pytest.fixture
def system(tmp_path, monkeypatch):
    """A fake /proc and /sys/fs/cgroup: write files into it; no address-space limit."""
    root = tmp_path / "system"
    (root / "cgroup").mkdir(parents=True)
    monkeypatch.setattr(_memory, "MEMINFO", root / "meminfo")
    monkeypatch.setattr(_memory, "SELF_STATUS", root / "status")
    monkeypatch.setattr(_memory, "SELF_CGROUP", root / "self-cgroup")
    monkeypatch.setattr(_memory, "CGROUP_ROOT", root / "cgroup")
    limits = {"as": (_memory.resource.RLIM_INFINITY, _memory.resource.RLIM_INFINITY)}
    monkeypatch.setattr(_memory.resource, "getrlimit", lambda which: limits["as"])

    def write(relative: str, text: str):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    write.limits = limits
    return write


def test_budget_is_the_free_ram_without_other_limits(system):
    system("meminfo", "MemTotal: 16000000 kB\nMemFree: 100 kB\nMemAvailable: 8000000 kB\n")
    assert _memory.available_memory() == 8_000_000 * 1024
    assert _memory.memory_budget() == 8_000_000 * 1024


def test_budget_is_the_room_under_the_address_space_limit(system):
    system("meminfo", "MemAvailable: 8000000 kB\n")
    system("status", "Name: python\nVmSize:  1048576 kB\nVmRSS: 10 kB\n")
    system.limits["as"] = (4_000_000_000, _memory.resource.RLIM_INFINITY)
    assert _memory.available_memory() == 4_000_000_000 - GIB


def test_budget_is_the_room_in_a_cgroup_v2_less_its_reclaimable_cache(system):
    system("meminfo", "MemAvailable: 8000000 kB\n")
    system("self-cgroup", "0::/job/7\n")
    system("cgroup/job/7/memory.max", f"{3 * GIB}\n")
    system("cgroup/job/7/memory.current", f"{2 * GIB}\n")
    system("cgroup/job/7/memory.stat", f"anon 1\ninactive_file {GIB // 2}\n")
    system("cgroup/memory.max", "max\n")  # the root: no limit
    assert _memory.available_memory() == 3 * GIB - (2 * GIB - GIB // 2)


def test_budget_is_the_room_in_a_cgroup_v1(system):
    system("meminfo", "MemAvailable: 8000000 kB\n")
    system("self-cgroup", "4:memory:/box\n1:cpu:/\n")
    system("cgroup/memory/box/memory.limit_in_bytes", f"{2 * GIB}\n")
    system("cgroup/memory/box/memory.usage_in_bytes", f"{GIB}\n")
    system("cgroup/memory/box/memory.stat", "cache 5\ntotal_inactive_file 0\n")
    system("cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n")  # no limit
    assert _memory.available_memory() == GIB


def test_the_smallest_bound_wins_and_an_explicit_budget_overrides_all(system):
    system("meminfo", "MemAvailable: 1000 kB\n")
    system("cgroup/memory.max", f"{GIB}\n")
    system.limits["as"] = (GIB, GIB)
    assert _memory.memory_budget() == 1000 * 1024
    assert _memory.memory_budget(123_456) == 123_456
    with pytest.raises(InputError, match="max_memory must be an integer >= 1"):
        _memory.memory_budget(0)


def test_no_known_bound_is_unbounded(system):
    assert _memory.available_memory() == _memory.UNBOUNDED


# ---- working memory and blocks -------------------------------------------------------------


def test_working_memory_of_a_large_layer_is_one_gram_matrix_and_a_few_blocks():
    shape = (12_000, 12_000)
    gram = 8 * 12_000**2
    assert whole_bytes(shape) > BLOCK_BYTES  # read in blocks
    assert gram < working_bytes(shape) < gram + 4 * BLOCK_BYTES
    # a layer that fits one block: the float64 matrix twice and two n x n matrices
    assert working_bytes((100, 50)) >= 2 * 8 * 100 * 50 + 2 * 8 * 50 * 50


def test_blocks_shrink_to_the_budget_and_nothing_fits_below_one_gram_matrix():
    shape = (3000, 2000)
    assert plan_blocks(shape, 10 * GIB) == (BLOCK_BYTES, _memory_cache())
    budget = 8 * 2000**2 + 2**22
    block, cache = plan_blocks(shape, budget)
    assert block < BLOCK_BYTES and cache == 0 and working_bytes(shape, block, cache) <= budget
    assert plan_blocks(shape, 8 * 2000**2) is None


def _memory_cache():
    from nnequiv._blockwise import SQUARES_CACHE_BYTES

    return SQUARES_CACHE_BYTES


@pytest.mark.parametrize("shape", [(120, 80), (80, 120), (90, 90)])
@pytest.mark.parametrize("form", ["balanced", "raw"])
def test_a_layer_that_fits_only_in_blocks_gives_the_whole_matrix_spectrum(shape, form):
    rng = np.random.default_rng(1)
    w = rng.standard_normal(shape) * rng.lognormal(0, 1, (shape[0], 1))
    order = min(shape)
    budget = 8 * order * order + 8 * 8 * order * 8 + 64 * sum(shape) + 8 * 4 * max(shape) * 4
    assert working_bytes(shape) > budget  # one block would not fit
    assert plan_blocks(shape, budget)[0] < whole_bytes(shape)  # several blocks do
    stages = []
    got = _spectrum_of(w, 1e-12, form, stage=stages.append, budget=budget, where="w")
    canonical, applied = canonical_form(w, form)
    values, dropped, method = gram_eigenvalues(canonical)
    np.testing.assert_allclose(got[0], values, rtol=1e-10)
    assert got[1:] == (dropped, method, applied)
    assert any(text.startswith("Gram matrix, block 2 of") for text in stages)
    by_budget = layer_spectra({"w": w}, canonical=form, max_memory=budget)[0].eigenvalues
    np.testing.assert_allclose(by_budget, values, rtol=1e-10)


def test_a_layer_over_the_budget_is_refused_in_one_line_naming_it(tmp_path):
    path = tmp_path / "net.npz"
    rng = np.random.default_rng(0)
    np.savez(path, small=rng.standard_normal((8, 6)), big=rng.standard_normal((300, 200)))
    with pytest.raises(ResourceLimitError) as info:
        analyze(path, max_memory=100_000, cache_dir=False)
    text = str(info.value)
    assert text.startswith(f"{path}: layer 'big' (300 x 200) needs ") and "\n" not in text
    assert "GiB of working memory" in text and "max_memory, --max-memory" in text


def test_the_command_line_takes_max_memory(tmp_path, capsys):
    path = tmp_path / "net.npz"
    np.savez(path, big=np.random.default_rng(0).standard_normal((300, 200)))
    with pytest.raises(SystemExit) as info:
        main(["analyze", str(path), "--max-memory", "100000", "--no-cache"])
    err = capsys.readouterr().err
    assert info.value.code == 1 and err.count("\n") == 1
    assert f"{path}: layer 'big' (300 x 200) needs" in err and "Traceback" not in err


# ---- out of memory anywhere ------------------------------------------------------------------


def _array_memory_error():
    """numpy's own error for a failed allocation (a MemoryError subclass)."""
    try:
        np.empty(2**60, dtype=np.uint8)  # more than any address space
    except MemoryError as exc:
        return exc
    raise AssertionError("the allocation did not fail")  # pragma: no cover


@pytest.mark.parametrize("where", ["spectrum", "ensemble"])
def test_a_memory_error_in_an_analysis_is_one_line_naming_the_input(
    tmp_path, capsys, monkeypatch, where
):
    import nnequiv.analysis
    import nnequiv.spectra

    path = tmp_path / "net.npz"
    np.savez(path, w=np.random.default_rng(0).standard_normal((30, 20)))
    error = _array_memory_error()

    def fail(*args, **kwargs):
        raise error

    target = (
        (nnequiv.spectra, "_spectrum_of")
        if where == "spectrum"
        else (nnequiv.analysis, "conjugate_ensemble")
    )
    monkeypatch.setattr(*target, fail)
    with pytest.raises(SystemExit) as info:
        main(["analyze", str(path), "--no-cache"])
    err = capsys.readouterr().err
    assert info.value.code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"nnequiv: error: {path}: ") and "out of memory" in err
    assert "Unable to allocate" in err  # numpy's own words: what failed
    if where == "spectrum":
        assert "layer 'w' (30 x 20)" in err


def test_a_memory_error_outside_an_analysis_is_one_line(tmp_path, capsys, monkeypatch):
    import nnequiv.cli

    def fail(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(nnequiv.cli, "run", fail)
    with pytest.raises(SystemExit) as info:
        main(["analyze", "x.npz"])
    err = capsys.readouterr().err
    assert info.value.code == 1 and err == "nnequiv: error: out of memory (MemoryError)\n"


# ---- connectomes -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_large_sparse_edge_list_is_read_without_its_dense_matrix(tmp_path, monkeypatch):
    """A 20,000-node edge list of a few hundred KB declares a matrix far beyond
    ``max_expansion`` times its size (refused by default, tests/test_hostile_limits.py);
    with the limit raised, as a user would, it is read sparse, never as the dense matrix."""
    from nnequiv.loading import LIMITS

    monkeypatch.setattr(LIMITS, "max_expansion", 100_000)
    nodes = 20_000
    rng = np.random.default_rng(0)
    pre, post = rng.integers(0, nodes, 2000), rng.integers(0, nodes, 2000)
    lines = [f"n{i},n{i + 1},1" for i in range(nodes - 1)]  # every node appears
    lines += [f"n{a},n{b},2.5" for a, b in zip(pre, post)]
    path = tmp_path / "big.csv"
    path.write_text("pre,post,weight\n" + "\n".join(lines) + "\n")
    tracemalloc.start()
    try:
        connectome = load_connectome(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    matrix = connectome.matrices["chemical"]
    assert peak < 200 * 2**20 < 8 * nodes * nodes  # 3.2 GB as a dense float64 matrix
    assert is_sparse(matrix) and matrix.shape == (nodes, nodes)
    assert len(connectome.nodes) == nodes and connectome.nodes[:2] == ["n0", "n1"]
    assert matrix.nnz <= len(lines) and matrix.sum() == pytest.approx(nodes - 1 + 2.5 * 2000)
    assert matrix[0, 1] == 1 + 2.5 * sum((a, b) == (0, 1) for a, b in zip(pre, post))


def test_a_sparse_connectome_gives_the_layers_of_the_dense_one(tmp_path, monkeypatch):
    import nnequiv.connectomes

    rng = np.random.default_rng(3)
    lines = [f"n{a},n{b},{w}" for a, b, w in rng.integers(0, 60, (400, 3))]
    path = tmp_path / "edges.csv"
    path.write_text("\n".join(lines) + "\n")
    dense = load_connectome(path)
    monkeypatch.setattr(nnequiv.connectomes, "DENSE_CONNECTOME_BYTES", 0)
    sparse = load_connectome(path)
    assert not is_sparse(dense.matrices["chemical"]) and is_sparse(sparse.matrices["chemical"])
    assert sparse.nodes == dense.nodes
    np.testing.assert_array_equal(
        dense_matrix(sparse.matrices["chemical"]), dense.matrices["chemical"]
    )
    want = mixed_ensemble(dense, submatrices=4)
    got = list(ensemble_draws(sparse, submatrices=4))
    assert [name for name, _ in got] == list(want)
    for name, layer in got:
        assert isinstance(layer, np.ndarray)
        np.testing.assert_array_equal(layer, want[name])
    settings = {"realizations": 2, "submatrices": 4, "cache_dir": False}
    assert analyze(sparse, **settings).to_dict() == analyze(dense, **settings).to_dict()


def test_a_large_adjacency_csv_is_streamed_into_a_sparse_matrix(tmp_path, monkeypatch):
    import nnequiv.connectomes

    rng = np.random.default_rng(5)
    table = np.where(rng.random((50, 50)) < 0.1, rng.integers(1, 9, (50, 50)), 0)
    path = tmp_path / "adj.csv"
    names = [f"c{i}" for i in range(50)]
    rows = [",".join(["", *names])]
    rows += [",".join([name, *map(str, row)]) for name, row in zip(names, table)]
    path.write_text("\n".join(rows) + "\n")
    dense = load_connectome(path)
    monkeypatch.setattr(nnequiv.connectomes, "DENSE_CONNECTOME_BYTES", 0)
    sparse = load_connectome(path)
    assert is_sparse(sparse.matrices["chemical"]) and sparse.nodes == dense.nodes == names
    np.testing.assert_array_equal(dense_matrix(sparse.matrices["chemical"]), table)
    np.testing.assert_array_equal(dense.matrices["chemical"], table)
