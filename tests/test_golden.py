"""Golden snapshots: what analyze, compare, cluster and identify answer on small networks this
file generates, pinned in tests/golden/*.json. Regenerate them only on purpose, with
``make golden`` (``python tests/test_golden.py``), and say why in the commit.

Tolerance. Every number comes from eigenvalues (LAPACK) put into bins, and tail masses that
are exact fractions of bin counts. A different BLAS or LAPACK moves an eigenvalue by about
1e-13 of its size; it changes a count only if the eigenvalue lies that close to a bin edge.
``test_no_value_lies_near_a_bin_edge`` checks that every normalised eigenvalue and every
conjugate x of these networks is at least 1e-9 (relative) from the nearest edge, so the
counts are exact and the floats agree to rounding: they are compared to 1e-9 relative.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
RELATIVE = 1e-9
#: What a snapshot leaves out: the version (a release must not fail its own goldens).
UNPINNED = {"version"}


def golden_networks() -> dict[str, dict[str, np.ndarray]]:
    """Four small networks: two of one design (different seeds), a deeper and a wider one."""
    networks = {}
    for name, widths, seed in [
        ("mlp_a", [32, 48, 48, 10], 0),
        ("mlp_b", [32, 48, 48, 10], 1),
        ("deep", [32, 24, 24, 24, 24, 10], 2),
        ("wide", [32, 160, 10], 3),
    ]:
        rng = np.random.default_rng(seed)
        networks[name] = {
            f"{name}.{i}.weight": rng.standard_t(3.0, (fan_out, fan_in)) / np.sqrt(fan_in)
            for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:]))
        }
    return networks


def snapshots() -> dict[str, dict]:
    """The JSON payloads of the four commands on the golden networks."""
    from nnequiv import analyze, cluster, compare, identify

    nets = golden_networks()
    analyses = {  # dict sources have no path; name them
        name: replace(analyze(state, realizations=6, seed=3), source=name)
        for name, state in nets.items()
    }
    return {
        "analyze": analyses["mlp_a"].to_dict(),
        "compare": compare(analyses["mlp_a"], analyses["deep"]).to_dict(),
        "cluster": cluster(list(analyses.values())).to_dict(),
        "identify": identify(analyses["mlp_b"], list(analyses.values()), top=3).to_dict(),
    }


def _compare(got, want, where: str) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) - UNPINNED == set(want) - UNPINNED, where
        for key in set(want) - UNPINNED:
            _compare(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for index, (g, w) in enumerate(zip(got, want)):
            _compare(g, w, f"{where}[{index}]")
    elif isinstance(want, float) or isinstance(got, float):
        if math.isnan(want):
            assert math.isnan(got), where
        else:
            assert got == pytest.approx(want, rel=RELATIVE, abs=1e-12), where
    else:
        assert got == want, where


@pytest.mark.parametrize("command", ["analyze", "compare", "cluster", "identify"])
def test_results_match_golden(command):
    path = GOLDEN / f"{command}.json"
    want = json.loads(path.read_text())
    got = json.loads(json.dumps(snapshots()[command]))
    _compare(got, want, command)


def test_no_value_lies_near_a_bin_edge():
    from nnequiv.analysis import stream_keys
    from nnequiv.csd import log_grid
    from nnequiv.ensembles import conjugate_ensemble
    from nnequiv.settings import Settings
    from nnequiv.spectra import layer_spectra, normalize_spectrum

    settings = Settings(realizations=6, seed=3)
    log_edges = np.log(log_grid(*settings.grid))
    closest = np.inf
    for state in golden_networks().values():
        spectra = layer_spectra(state, canonical=settings.canonical)
        values = [normalize_spectrum(s.eigenvalues) for s in spectra]
        orders = [s.order for s in spectra]
        keys = stream_keys(values, orders)
        conjugates = conjugate_ensemble(orders, "CUE", 6, 3, keys=keys)
        for x in [*values, *(c.ravel() for c in conjugates)]:
            logs = np.log(x[x > 0])
            closest = min(closest, np.abs(logs[:, None] - log_edges[None, :]).min())
    assert closest > RELATIVE, closest


if __name__ == "__main__":  # make golden
    GOLDEN.mkdir(exist_ok=True)
    for command, payload in snapshots().items():
        (GOLDEN / f"{command}.json").write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {GOLDEN / f'{command}.json'}", file=sys.stderr)
