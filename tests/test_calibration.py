"""The design tolerance: fitting rule, leave-one-family-out check, classes rule, files."""

import json

import numpy as np
import pytest
from _helpers import random_mlp

from nnequiv import cluster, compare
from nnequiv.calibration import (
    Calibration,
    design_classes,
    fit_tolerance,
    leave_one_family_out,
    load_calibration,
)
from nnequiv.equivalence import calibrate, read_families
from nnequiv.errors import InputError


def symmetric(values: dict, count: int) -> np.ndarray:
    """A symmetric matrix with ``values[(i, j)]`` off the diagonal."""
    out = np.zeros((count, count))
    for (i, j), value in values.items():
        out[i, j] = out[j, i] = value
    return out


def line_matrix(points) -> np.ndarray:
    points = np.asarray(points, dtype=float)
    return np.abs(points[:, None] - points[None, :])


def test_tolerance_is_the_largest_that_keeps_the_false_rate_halfway_to_the_next():
    # families A = {0, 1} (0.1 apart), B = {2, 3} (0.3 apart); different pairs from 0.5 on
    spectral = symmetric(
        {(0, 1): 0.1, (2, 3): 0.3, (0, 2): 0.5, (0, 3): 0.6, (1, 2): 0.7, (1, 3): 0.8}, 4
    )
    weight, eps, rates = fit_tolerance(spectral, np.zeros((4, 4)), list("AABB"))
    assert weight == 0.0  # no structural difference: the smallest weight wins the tie
    assert eps == pytest.approx(0.4)  # midway between B's 0.3 and the first different 0.5
    assert rates == {"true_rate": 1.0, "false_rate": 0.0}
    # with a quarter of the different pairs allowed, the tolerance moves past 0.5
    _, eps, rates = fit_tolerance(spectral, np.zeros((4, 4)), list("AABB"), max_false_rate=0.25)
    assert eps == pytest.approx(0.55) and rates["false_rate"] == 0.25


def test_the_structural_weight_that_holds_more_families_wins():
    # spectrally the families overlap; their layer shapes tell them apart
    spectral = symmetric({(0, 1): 0.4, (2, 3): 0.4, (0, 2): 0.3, (0, 3): 0.35, (1, 2): 0.3,
                          (1, 3): 0.35}, 4)  # fmt: skip
    structural = symmetric({(0, 2): 1.0, (0, 3): 1.0, (1, 2): 1.0, (1, 3): 1.0}, 4)
    weight, eps, rates = fit_tolerance(spectral, structural, list("AABB"))
    assert weight > 0 and rates["true_rate"] == 1.0 and rates["false_rate"] == 0.0
    assert 0.4 < eps < np.hypot(0.3, weight)
    none, _, worse = fit_tolerance(spectral, structural, list("AABB"), weights=(0.0,))
    assert none == 0.0 and worse["true_rate"] == 0.0


def test_only_pairs_within_a_set_count():
    # set 0: A = {0, 1} and C = {4}; set 1: B = {2, 3} and D = {5}
    spectral = line_matrix([0.0, 0.25, 0.5, 0.75, 2.0, 2.5])
    families = list("AABBCD")
    # within sets the first different pair is 1.75 apart: eps midway from A's and B's 0.25
    _, eps, _ = fit_tolerance(spectral, np.zeros((6, 6)), families, sets=[0, 0, 1, 1, 0, 1])
    assert eps == pytest.approx(1.0)
    # one set: 1 and 2 (0.25 apart, different families) stop the tolerance below 0.25
    _, eps, _ = fit_tolerance(spectral, np.zeros((6, 6)), families)
    assert eps == pytest.approx(0.125)


def test_leaving_one_family_out_judges_it_with_a_tolerance_fitted_without_it():
    # family C is spread widely: fitted with it, nothing changes; without it, A and B decide
    points = [0.0, 0.05, 1.0, 1.05, 3.0, 3.9]
    spectral = line_matrix(points)
    families = list("AABBCC")
    checked = leave_one_family_out(spectral, np.zeros((6, 6)), families)
    folds = {fold["family"]: fold for fold in checked["folds"]}
    assert set(folds) == {"A", "B", "C"}
    # without C, A and B are 0.05 wide and 0.95 apart: eps midway between 0.05 and 0.95
    assert folds["C"]["eps"] == pytest.approx(0.5)
    row = checked["sets"]["0"]
    assert row["same_family_pairs"] == 3  # each family's own pair, once
    assert row["different_family_judgements"] == 2 * 12  # each different pair in two folds
    assert row["true_rate"] == pytest.approx(2 / 3)  # C (0.9 wide) is not held
    # fitted without A, C's width (0.9) sets eps = 1.425, and A's 4 pairs with B fall
    # inside; likewise without B (eps 1.925): 8 of 24 judgements
    assert folds["A"]["eps"] == pytest.approx(1.425) and folds["B"]["eps"] == pytest.approx(1.925)
    assert row["false_rate"] == pytest.approx(8 / 24)
    # the fit's own arguments are passed on to every fold
    loose = leave_one_family_out(spectral, np.zeros((6, 6)), families, max_false_rate=0.5)
    assert [fold["eps"] for fold in loose["folds"]] == pytest.approx([2.425, 3.425, 0.975])
    weighted = leave_one_family_out(spectral, np.zeros((6, 6)), families, weights=(2.0,))
    assert {fold["structure_weight"] for fold in weighted["folds"]} == {2.0}
    with pytest.raises(TypeError, match="leave_one_family_out.*keep"):
        leave_one_family_out(spectral, np.zeros((6, 6)), families, keep=lambda i, j: i < j)


def test_design_classes_do_not_chain_through_single_links():
    # ten networks 0.3 apart on a line: every neighbour is within 0.35, the ends are 2.7 apart
    distance = line_matrix(np.arange(10) * 0.3)
    labels, tree = design_classes(distance, 0.35)
    assert len(set(labels)) > 1  # single links would make one class
    assert labels[0] == 0 and list(labels) == sorted(labels)  # numbered by first member
    assert tree.shape == (9, 4)
    for k in set(labels):
        members = np.flatnonzero(labels == k)
        inside = distance[np.ix_(members, members)]
        assert inside.sum() / max(1, len(members) * (len(members) - 1)) <= 0.35 + 1e-12
    one, empty = design_classes(np.zeros((1, 1)), 0.1)
    assert list(one) == [0] and empty.shape == (0, 4)


def test_shipped_calibration_loads_with_its_provenance():
    shipped = load_calibration()
    assert shipped.name == "shipped" and shipped.eps_design > 0
    assert shipped.structure_weight >= 0 and shipped.provenance


def test_calibration_files_round_trip_and_bad_files_are_one_line(tmp_path):
    chosen = Calibration(0.2, 0.5, "mine", {"networks": ["a"]}, {"x": 1})
    path = tmp_path / "cal.json"
    chosen.save(path)
    back = load_calibration(path)
    assert (back.eps_design, back.structure_weight, back.provenance) == (
        0.2,
        0.5,
        {"networks": ["a"]},
    )
    assert back.name == str(path)
    for text, message in [
        ("{", "not JSON"),
        ('{"eps_design": 1}', "not a calibration file"),
        ('{"nnequiv_calibration": 1, "eps_design": 1}', "needs eps_design"),
        ('{"nnequiv_calibration": 1, "eps_design": -1, "structure_weight": 0}', ">= 0"),
        ("[" * 100000, "not JSON"),
    ]:
        path.write_text(text)
        with pytest.raises(InputError, match=message) as error:
            load_calibration(path)
        assert "\n" not in str(error.value)
    with pytest.raises(InputError, match="cannot read"):
        load_calibration(tmp_path / "missing.json")


def _family_nets(tmp_path):
    """Six small networks: two designs (a wide MLP and a deep narrow one), three trainings
    each, on disk, and their families table."""
    paths, rows = [], ["file,family"]
    for seed in range(3):
        for name, widths in (("wide", [90, 120, 90, 60]), ("deep", [40] * 7)):
            path = tmp_path / f"{name}{seed}.npz"
            np.savez(path, **random_mlp(widths, seed=seed))
            paths.append(path)
            rows.append(f"{path.name},{name}")
    table = tmp_path / "families.csv"
    table.write_text("\n".join(rows) + "\n")
    return paths, table


def test_calibrate_fits_labelled_networks_and_is_used_everywhere(tmp_path):
    paths, table = _family_nets(tmp_path)
    assert read_families(table)["wide0.npz"] == "wide"
    fitted = calibrate(paths, table, realizations=4)
    assert fitted.name == "fitted" and fitted.provenance["families"][:2] == ["wide", "deep"]
    checked = fitted.cross_validation["leave_one_family_out"]
    assert checked["same_family_pairs"] == 6 and checked["different_family_judgements"] == 18
    classes = cluster(paths, calibration=fitted, realizations=4)
    assert [len(c) for c in classes.classes] == [3, 3]
    assert classes.calibration["name"] == "fitted"
    strict = cluster(paths, calibration=fitted, eps_design=0.0, realizations=4)
    assert len(strict.classes) == 6 and strict.eps_design == 0.0
    verdict = compare(paths[0], paths[2], calibration=fitted, realizations=4)
    assert verdict.verdict == "equivalent" and verdict.eps_design == fitted.eps_design
    other = compare(paths[0], paths[1], calibration=fitted, realizations=4)
    assert other.verdict == "not equivalent"
    assert other.decided_by == max(other.parts, key=other.parts.get)
    loose = calibrate(paths, table, realizations=4, max_false_rate=0.5)
    assert loose.eps_design > fitted.eps_design  # the option is used


def test_calibrate_refuses_what_it_cannot_fit(tmp_path):
    paths, table = _family_nets(tmp_path)
    with pytest.raises(InputError, match="no family for this network"):
        calibrate(paths, {"wide0.npz": "wide"}, realizations=3)
    with pytest.raises(InputError, match="at least one family with two"):
        calibrate(paths[:2], table, realizations=3)
    with pytest.raises(InputError, match="max_false_rate"):
        calibrate(paths, table, realizations=3, max_false_rate=1.5)
    bad = tmp_path / "bad.csv"
    bad.write_text("name,kind\nx,y\n")
    with pytest.raises(InputError, match="needs a 'family' column"):
        read_families(bad)
    assert json.loads(json.dumps(load_calibration().to_dict()))["name"] == "shipped"
