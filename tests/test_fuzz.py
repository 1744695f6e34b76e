"""Fuzzing: mutants of every format either load or raise an ``nnequiv.errors`` exception with
one line naming the file; none hangs or touches a file (tests/fuzzing.py has the mutator
and the worker processes; benchmarks/fuzz.py runs it at scale)."""

from __future__ import annotations

import importlib.util

import fuzzing
import pytest

from nnequiv.errors import FormatError

#: Hundreds of mutants per format: minutes on 2 cores (`make test-fast` leaves them out). The
#: module's tests share their fuzz runs, so pytest-xdist gives them all to one worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fuzz")]

#: Mutants per format and the seed of their random streams (fixed: the same mutants every run).
MUTANTS_PER_FORMAT = 200
SEED = 0
#: Harness guard per mutant (each takes milliseconds): a mutant past it counts as a hang.
GUARD_SECONDS = 120
#: The package each format's seed file needs.
WRITERS = {
    "safetensors": "safetensors",
    "pt": "torch",
    "torchscript": "torch",
    "onnx": "onnx",
    "h5": "h5py",
    "keras": "h5py",
    "graphml": "networkx",
    "tflite": "tflite",
    "gguf": "gguf",
    "ggml": "gguf",
}


@pytest.fixture(scope="module")
def fuzz_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    seeds = fuzzing.build_seeds(root / "seeds")
    report = fuzzing.run(
        seeds, root / "run", MUTANTS_PER_FORMAT, seed=SEED, workers=2, deadline=GUARD_SECONDS
    )
    return seeds, report


@pytest.mark.parametrize("kind", fuzzing.FORMATS)
def test_mutants_load_or_fail_cleanly(fuzz_report, kind):
    seeds, report = fuzz_report
    package = WRITERS.get(kind)
    if package and importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed, so there is no {kind} seed file")
    assert kind in seeds
    counts = report.counts[kind]
    assert sum(counts.values()) == MUTANTS_PER_FORMAT
    failures = [f for f in report.failures if f[0] == kind]
    assert not failures, "\n".join(f"mutant {i} ({SEED=}): {o}: {d}" for _, i, o, d in failures)
    # the mutants reach past the first check: some still load, most are refused
    assert counts["loaded"] > 0 and counts["clean error"] > 0, counts


def test_mutants_are_reproducible(fuzz_report):
    seeds, _ = fuzz_report
    for kind in seeds:
        assert fuzzing.mutant(kind, seeds[kind], SEED, 7) == fuzzing.mutant(
            kind, seeds[kind], SEED, 7
        )
        assert fuzzing.mutant(kind, seeds[kind], SEED, 7) != seeds[kind][0].read_bytes()


def test_outcomes_are_classified(tmp_path, monkeypatch):
    """The harness tells a clean error from a traceback or a message that breaks the rules."""
    path = tmp_path / "m.npz"
    behaviours = {
        "loaded": lambda kind, p: None,
        "clean error": lambda kind, p: (_ for _ in ()).throw(FormatError(f"{p}: corrupt")),
        "unclean error": lambda kind, p: (_ for _ in ()).throw(FormatError("corrupt\nline")),
        "traceback": lambda kind, p: {}["missing"],
    }
    for expected, behaviour in behaviours.items():
        monkeypatch.setattr(fuzzing, "load", behaviour)
        assert fuzzing.outcome_of("npz", path)[0] == expected


#: Structured mutants per kind (tests/structured.py; benchmarks/fuzz.py --structured runs more).
STRUCTURED_PER_KIND = 8


@pytest.fixture(scope="module")
def structured_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("structured")
    seeds = fuzzing.build_structured_seeds(root / "seeds")
    report = fuzzing.run(
        seeds,
        root / "run",
        STRUCTURED_PER_KIND,
        seed=SEED,
        formats=[kind for kind in fuzzing.STRUCTURED_KINDS if kind in seeds],
        workers=2,
        deadline=GUARD_SECONDS,
        structured=True,
    )
    return seeds, report


def test_structured_mutants_load_or_fail_cleanly(structured_report):
    """Nesting, counts, aliases, links, FIFOs, names and declared sizes turned up in every
    format, a folder, a shard index, a fingerprint index and a cache entry."""
    seeds, report = structured_report
    failures = report.failures
    assert not failures, "\n".join(f"{k} {i} ({SEED=}): {o}: {d}" for k, i, o, d in failures)
    assert sum(sum(c.values()) for c in report.counts.values()) == STRUCTURED_PER_KIND * len(
        [kind for kind in fuzzing.STRUCTURED_KINDS if kind in seeds]
    )
    assert {"shards", "folder", "index", "cache"} <= set(report.counts)


def test_structured_mutants_are_reproducible(tmp_path):
    seeds = {"npz": [tmp_path / "unused.npz"]}
    first = fuzzing.structured_mutant("npz", seeds["npz"], SEED, 3, tmp_path / "a")
    again = fuzzing.structured_mutant("npz", seeds["npz"], SEED, 3, tmp_path / "b")
    assert first.name == again.name and first.read_bytes() == again.read_bytes()
