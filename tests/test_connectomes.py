"""Connectomes: formats, mixed ensembles, strength-preserving nulls, the real datasets."""

import numpy as np
import pytest
from _helpers import CONNECTOMES, require_shared

from nnequiv import analyze, compare
from nnequiv.connectomes import (
    is_connectome,
    load_connectome,
    mixed_ensemble,
    null_model,
    save_connectome,
)
from nnequiv.errors import FormatError, InputError, ResourceLimitError


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


@pytest.mark.slow
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


# ---- CSV: edge list or adjacency matrix (docs/method.md, Connectomes) ------------------


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_headerless_named_edge_list_keeps_every_edge(tmp_path):
    path = write(tmp_path, "e.csv", "a,b,1\nb,c,2\nc,a,3\n")
    loaded = load_connectome(path)
    assert loaded.nodes == ["a", "b", "c"]
    expected = np.zeros((3, 3))
    expected[0, 1], expected[1, 2], expected[2, 0] = 1, 2, 3
    np.testing.assert_array_equal(loaded.matrices["chemical"], expected)


def test_numeric_edge_list_that_is_not_square_is_an_edge_list(tmp_path):
    path = write(tmp_path, "e.csv", "0,1,2.5\n1,2,1\n2,0,3\n2,1,4\n")
    loaded = load_connectome(path)
    assert loaded.nodes == ["0", "1", "2"]
    assert loaded.matrices["chemical"][0, 1] == 2.5 and loaded.matrices["chemical"][2, 1] == 4
    assert loaded.matrices["chemical"].sum() == 10.5


def test_a_table_that_fits_both_asks_for_the_format(tmp_path):
    path = write(tmp_path, "both.csv", "0,1,2\n1,2,1\n2,0,3\n")
    with pytest.raises(FormatError, match=r"both\.csv: reads both .*format='edges'") as info:
        load_connectome(path)
    assert "\n" not in str(info.value) and "--format edges|adjacency" in str(info.value)
    edges = load_connectome(path, format="edges").matrices["chemical"]
    assert edges.shape == (3, 3) and edges[0, 1] == 2 and edges[2, 0] == 3 and edges.sum() == 6
    adjacency = load_connectome(path, format="adjacency").matrices["chemical"]
    np.testing.assert_array_equal(adjacency, [[0, 1, 2], [1, 2, 1], [2, 0, 3]])
    # a header row of three names over three numeric rows fits both as well
    header = write(tmp_path, "header.csv", "pre,post,weight\n0,1,2\n1,2,1\n2,0,3\n")
    with pytest.raises(FormatError, match="reads both"):
        load_connectome(header)
    assert load_connectome(header, format="adjacency").nodes == ["pre", "post", "weight"]


def test_a_square_table_with_fractional_ids_is_an_adjacency_matrix(tmp_path):
    path = write(tmp_path, "adj.csv", "0,0.5,1\n0.25,0,0\n1,0,0\n")
    np.testing.assert_array_equal(
        load_connectome(path).matrices["chemical"], [[0, 0.5, 1], [0.25, 0, 0], [1, 0, 0]]
    )


def test_two_node_adjacency_with_names_is_not_taken_for_edges(tmp_path):
    path = write(tmp_path, "adj.csv", ",a,b\na,0,2\nb,1,0\n")
    loaded = load_connectome(path)
    assert loaded.nodes == ["a", "b"]
    np.testing.assert_array_equal(loaded.matrices["chemical"], [[0, 2], [1, 0]])


def test_forced_format_that_does_not_fit_says_why(tmp_path):
    path = write(tmp_path, "adj.csv", "0,1,0,1\n1,0,1,0\n0,1,0,1\n1,0,1,0\n")
    with pytest.raises(FormatError, match="not an edge list: rows do not all have three"):
        load_connectome(path, format="edges")
    with pytest.raises(InputError, match="unknown connectome format"):
        load_connectome(path, format="matrix")
    np.savez(tmp_path / "c.npz", chemical=np.ones((2, 2)))
    with pytest.raises(InputError, match="CSV connectomes only"):
        load_connectome(tmp_path / "c.npz", format="edges")


def test_csv_that_is_neither_gets_one_line(tmp_path):
    cases = {
        "ragged.csv": ("a,b\n1,2,3\n", "not an adjacency matrix"),
        "binary.csv": (None, "not UTF-8"),
        "wide.csv": ("a," + "x" * 200_000 + ",1\n", "not a readable CSV"),
        "nonsquare.csv": ("1,2\n3,4\n5,6\n", "not square"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(b"\xff\xfe\x00\x81" * 10) if text is None else path.write_text(text)
        with pytest.raises(FormatError, match=message) as info:
            load_connectome(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_connectome_matrix_size_is_bounded_before_allocating(tmp_path):
    edges = "\n".join(f"n{i},n{i + 1},1" for i in range(300))
    path = write(tmp_path, "chain.csv", edges)
    assert load_connectome(path).matrices["chemical"].shape == (301, 301)
    with pytest.raises(ResourceLimitError, match=r"301 x 301 connection matrix.*max_tensor_bytes"):
        load_connectome(path, max_tensor_bytes=301 * 301 * 8 - 1)
