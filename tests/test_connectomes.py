"""Connectomes: formats, mixed ensembles, strength-preserving nulls, the real datasets."""

import numpy as np
import pytest
from conftest import CONNECTOMES, require_shared

from nnequiv import analyze, compare
from nnequiv.connectomes import (
    is_connectome,
    load_connectome,
    mixed_ensemble,
    null_model,
    save_connectome,
)
from nnequiv.errors import FormatError


def modular_connectome(seed=0, size=60):
    """Two dense modules with sparse links between them: structure a null model destroys."""
    rng = np.random.default_rng(seed)
    chemical = rng.poisson(0.05, (size, size)).astype(float)
    half = size // 2
    chemical[:half, :half] += rng.poisson(1.5, (half, half))
    chemical[half:, half:] += rng.poisson(1.5, (half, half))
    np.fill_diagonal(chemical, 0)
    electrical = np.triu(rng.poisson(0.3, (size, size)), 1).astype(float)
    electrical = electrical + electrical.T
    return chemical, electrical


def test_formats_agree(tmp_path):
    chemical, electrical = modular_connectome()
    names = [f"N{i}" for i in range(chemical.shape[0])]
    np.savez(tmp_path / "c.npz", chemical=chemical, electrical=electrical, neurons=names)
    header = ",".join(["", *names])
    rows = [",".join([n, *map(str, row)]) for n, row in zip(names, chemical)]
    (tmp_path / "adj.csv").write_text("\n".join([header, *rows]))
    (tmp_path / "bare.csv").write_text("\n".join(",".join(map(str, r)) for r in chemical))
    pre, post = np.nonzero(chemical)
    edges = [f"{names[a]},{names[b]},{chemical[a, b]}" for a, b in zip(pre, post)]
    (tmp_path / "edges.csv").write_text("\n".join(["pre,post,weight", *edges]))
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    graph.add_weighted_edges_from((names[a], names[b], chemical[a, b]) for a, b in zip(pre, post))
    nx.write_graphml(graph, tmp_path / "g.graphml")
    reference = load_connectome(tmp_path / "c.npz")
    assert is_connectome(tmp_path / "c.npz") and reference.nodes == names
    for name in ["adj.csv", "bare.csv", "edges.csv", "g.graphml"]:
        loaded = load_connectome(tmp_path / name)
        order = [loaded.nodes.index(n) for n in names] if name != "bare.csv" else range(60)
        order = list(order)
        np.testing.assert_array_equal(loaded.matrices["chemical"][np.ix_(order, order)], chemical)


def test_bad_connectomes(tmp_path):
    np.savez(tmp_path / "rect.npz", chemical=np.ones((3, 4)))
    np.savez(tmp_path / "neg.npz", chemical=-np.ones((3, 3)))
    np.savez(tmp_path / "names.npz", chemical=np.ones((3, 3)), neurons=["a", "b"])
    (tmp_path / "text.csv").write_text(",a,b,c\na,1,x,3\nb,4,5,6\nc,7,8,9\n")
    (tmp_path / "edges.csv").write_text("pre,post,weight\na,b,1\nb,c,-2\nc,a,1\n")
    for name, message in [
        ("rect.npz", "not a square"),
        ("neg.npz", "negative"),
        ("names.npz", "node names"),
        ("text.csv", "non-numeric"),
        ("edges.csv", "invalid weight"),
    ]:
        with pytest.raises(FormatError, match=message):
            load_connectome(tmp_path / name)


def test_mixed_ensemble_orders_follow_binomial_and_seed():
    chemical, electrical = modular_connectome()
    layers = mixed_ensemble(tmp := _as(chemical, electrical), mixture=0.3, submatrices=200, seed=4)
    orders = [m.shape[0] for k, m in layers.items() if k.startswith("chemical")]
    assert len(layers) == 400 and abs(np.mean(orders) - 18) < 1.0  # Binomial(60, 0.3)
    assert np.var(orders) == pytest.approx(60 * 0.3 * 0.7, rel=0.25)
    again = mixed_ensemble(tmp, mixture=0.3, submatrices=200, seed=4)
    assert all(np.array_equal(layers[k], again[k]) for k in layers)
    blocks = mixed_ensemble(tmp, partition={f"N{i}": i // 30 for i in range(60)})
    assert sorted(blocks) == ["chemical/0", "chemical/1", "electrical/0", "electrical/1"]


def _as(chemical, electrical):
    from nnequiv.connectomes import Connectome

    return Connectome(
        "<test>",
        [f"N{i}" for i in range(chemical.shape[0])],
        {"chemical": chemical, "electrical": electrical},
    )


def test_null_keeps_strengths_and_symmetry(tmp_path):
    connectome = _as(*modular_connectome(1))
    null = null_model(connectome, seed=3)
    for name, matrix in connectome.matrices.items():
        randomised = null.matrices[name]
        np.testing.assert_allclose(randomised.sum(axis=0), matrix.sum(axis=0))
        np.testing.assert_allclose(randomised.sum(axis=1), matrix.sum(axis=1))
        assert (randomised >= 0).all() and not np.array_equal(randomised, matrix)
    np.testing.assert_array_equal(null.matrices["electrical"], null.matrices["electrical"].T)
    save_connectome(null, tmp_path / "null.npz")
    reread = load_connectome(tmp_path / "null.npz")
    np.testing.assert_allclose(reread.matrices["chemical"], null.matrices["chemical"])


def test_structured_connectome_is_not_equivalent_to_its_null(tmp_path):
    connectome = _as(*modular_connectome(2, size=80))
    save_connectome(connectome, tmp_path / "real.npz")
    save_connectome(null_model(connectome, seed=0), tmp_path / "null.npz")
    verdict = compare(tmp_path / "real.npz", tmp_path / "null.npz", realizations=8)
    assert verdict.verdict == "not equivalent", verdict


def test_real_connectome_loads_and_analyses():
    path = require_shared(CONNECTOMES) / "witvliet_2021_1.npz"
    connectome = load_connectome(path)
    assert set(connectome.matrices) == {"chemical", "electrical"}
    analysis = analyze(path, realizations=4, submatrices=8)
    assert len(analysis.layers) == 16 and np.isfinite(analysis.decay.alpha)
