"""Layer matrices: eligibility, shapes, layout inference, filters."""

import numpy as np
import pytest

from nnequiv.layers import (
    as_layer_matrix,
    infer_layout,
    kernel_vote,
    layer_matrices,
    matrix_shape,
)


def test_layer_table_and_skipped_reasons(mlp_state):
    state = dict(
        mlp_state,
        emb=np.ones((50, 8)),
        scale=np.ones(4),
        row=np.ones((1, 7)),
        count=np.ones((3, 3), dtype=np.int64),
    )
    table = layer_matrices(state)
    names = [layer.name for layer in table.layers]
    assert names == ["fc0.weight", "fc1.weight", "fc2.weight", "emb"]
    assert table.layers[0].matrix_shape == (16, 20) and table.layers[0].order == 16
    reasons = {s.name: s.reason for s in table.skipped}
    assert reasons["scale"] == "1-D tensor" and "min(N, M) < 2" in reasons["row"]
    assert "not a float" in reasons["count"]
    filtered = layer_matrices(state, exclude=["emb*"], include="*weight")
    assert [layer.name for layer in filtered.layers] == ["fc0.weight", "fc1.weight", "fc2.weight"]
    assert {s.name: s.reason for s in filtered.skipped}["emb"] == "filtered by name"


@pytest.mark.parametrize(
    "shape,layout,expected",
    [
        ((64, 32, 3, 3), "oihw", (64, 288)),
        ((3, 3, 32, 64), "hwio", (64, 288)),
        ((40, 1, 15), "oihw", (40, 15)),
        ((10, 20), "oihw", (10, 20)),
    ],
)
def test_matrix_shape(shape, layout, expected):
    assert matrix_shape(shape, layout) == expected


def test_kernel_votes_and_network_inference():
    assert kernel_vote((64, 32, 3, 3)) == "oihw"
    assert kernel_vote((3, 3, 32, 64)) == "hwio"
    assert kernel_vote((1, 1, 8, 8)) == "hwio"  # 1x1 kernel beats the 8x8 tail
    assert kernel_vote((8, 8, 1, 1)) == "oihw"
    assert kernel_vote((128, 1, 512, 1)) is None  # long 1-D kernels do not vote
    assert kernel_vote((10, 20)) is None
    # one odd tensor (an 8 x 8 x 3 x 39 ONNX kernel) is outvoted by the rest of its network
    assert infer_layout([(32, 1, 7, 7), (8, 8, 3, 39), (32, 8, 5, 5)]) == "oihw"
    assert infer_layout([(3, 3, 3, 32), (1, 1, 32, 64), (3, 3, 64, 1)]) == "hwio"
    assert infer_layout([(10, 20)]) == "oihw"


def test_matrix_is_a_view_of_the_tensor():
    kernel = np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 3, 2, 2)
    layer = layer_matrices({"k": kernel}, layout="oihw").layers[0]
    assert np.shares_memory(layer.matrix, kernel)


@pytest.mark.parametrize(
    "shape,layout,expected",
    [
        ((6, 4), "hwio", lambda a: a.T),  # a dense kernel stored in x out
        ((6, 4), "ohwi", lambda a: a),
        ((3, 3, 4, 5), "hwio", lambda a: a.reshape(-1, 5).T),
        ((5, 3, 3, 4), "ohwi", lambda a: a.reshape(5, -1)),
        ((3, 3, 8, 1), "hwio", lambda a: a.reshape(9, 8).T),  # depthwise: C x (kh kw)
        ((1, 3, 3, 8), "ohwi", lambda a: a.reshape(9, 8).T),
        ((8, 1, 3, 3), "oihw", lambda a: a.reshape(8, 9)),
    ],
)
def test_layer_matrix_in_every_layout(shape, layout, expected):
    array = np.arange(np.prod(shape), dtype=float).reshape(shape)
    matrix = as_layer_matrix(array, layout)
    np.testing.assert_array_equal(matrix, expected(array))
    assert matrix.shape == matrix_shape(shape, layout) and np.shares_memory(matrix, array)
