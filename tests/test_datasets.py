"""Synthetic networks: shapes, seeds, tails and the refusals."""

import numpy as np
import pytest
from _helpers import ALPHA
from scipy import stats

from nnequiv.datasets import random_network
from nnequiv.errors import InputError


def test_shapes_names_and_dtype():
    network = random_network([(5, 3), (2, 5), (7, 7)])
    assert list(network) == ["layer0.weight", "layer1.weight", "layer2.weight"]
    assert [m.shape for m in network.values()] == [(5, 3), (2, 5), (7, 7)]
    assert all(m.dtype == np.float64 for m in network.values())


def test_the_seed_fixes_every_entry_and_changes_them():
    first, again = random_network([(8, 4)], seed=3), random_network([(8, 4)], seed=3)
    other = random_network([(8, 4)], seed=4)
    assert first["layer0.weight"].tobytes() == again["layer0.weight"].tobytes()
    assert not np.array_equal(first["layer0.weight"], other["layer0.weight"])


@pytest.mark.fixed_seed(0)
def test_gaussian_and_student_t_entries(seed):
    gaussian = random_network([(300, 200)], seed=seed)["layer0.weight"].ravel()
    heavy = random_network([(300, 200)], tail=3.0, seed=seed)["layer0.weight"].ravel()
    assert stats.kstest(gaussian, "norm").pvalue > ALPHA
    assert stats.kstest(heavy, stats.t(3.0).cdf).pvalue > ALPHA
    assert stats.kstest(heavy, "norm").pvalue < ALPHA  # the tail is not ignored


@pytest.mark.parametrize(
    ("shapes", "tail", "message"),
    [
        ([(3, 0)], None, "sizes >= 1"),
        ([(3, 3, 3)], None, r"shape \(out, in\)"),
        ([(3, 3)], 0.0, "degrees of freedom"),
        ([(3, 3)], float("nan"), "degrees of freedom"),
        ([(3, 3)], "x", "degrees of freedom"),
        ([3, 2], None, r"shape \(out, in\)"),
        ([], None, r"shape \(out, in\)"),
        ([(3, 2.5)], None, "integer sizes"),
    ],
)
def test_bad_arguments_are_input_errors(shapes, tail, message):
    with pytest.raises(InputError, match=message):
        random_network(shapes, tail=tail)
