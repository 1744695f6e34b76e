"""Fuzz every reader at scale: counts per outcome (loaded, clean error, unclean error,
traceback, hang, side effect) per format.

The mutants are those of tests/test_fuzz.py (tests/fuzzing.py), numbered: mutant i of a
format depends on (seed, format, i) only, so a failure is reproduced by its number.
``--structured`` swaps the byte mutants for structure-aware ones (tests/structured.py): for
every format, a folder of shards, a folder to search, a fingerprint index and a cache entry,
an input built with one of nesting depth, counts, aliases, symbolic links, FIFOs, names with
control characters or declared sizes turned up, and half of them byte-edited on top. A
worker killed by a signal is a crash.

    python benchmarks/fuzz.py --mutants 10000
    python benchmarks/fuzz.py --mutants 10000 --structured
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import fuzzing  # noqa: E402
import structured  # noqa: E402


def split(total: int, formats: list[str]) -> dict[str, int]:
    """``total`` mutants shared as evenly as possible among ``formats``, in order."""
    share, extra = divmod(total, len(formats))
    return {kind: share + (i < extra) for i, kind in enumerate(formats)}


def table(report: fuzzing.Report, formats: list[str]) -> str:
    width = max(len(o) for o in fuzzing.OUTCOMES)
    lines = ["format       " + "".join(f"{o:>{width + 2}}" for o in fuzzing.OUTCOMES) + "   total"]
    totals = dict.fromkeys(fuzzing.OUTCOMES, 0)
    for kind in formats:
        counts = report.counts.get(kind, {})
        row = [counts.get(o, 0) for o in fuzzing.OUTCOMES]
        for outcome, value in zip(fuzzing.OUTCOMES, row):
            totals[outcome] += value
        cells = "".join(f"{value:>{width + 2}}" for value in row)
        lines.append(f"{kind:<13}{cells}{sum(row):>8}")
    cells = "".join(f"{totals[o]:>{width + 2}}" for o in fuzzing.OUTCOMES)
    lines.append(f"{'all':<13}{cells}{sum(totals.values()):>8}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=10_000, help="in total (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the mutant streams")
    parser.add_argument("--workers", type=int, default=2, help="worker processes at a time")
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds before a hang")
    parser.add_argument("--formats", nargs="*", help="default: every format (and kind)")
    parser.add_argument(
        "--structured", action="store_true", help="structure-aware mutants (tests/structured.py)"
    )
    args = parser.parse_args(argv)
    kinds = fuzzing.STRUCTURED_KINDS if args.structured else fuzzing.FORMATS
    args.formats = args.formats or list(kinds)
    with tempfile.TemporaryDirectory(prefix="nnequiv-fuzz-", ignore_cleanup_errors=True) as made:
        root = Path(made)
        build = fuzzing.build_structured_seeds if args.structured else fuzzing.build_seeds
        seeds = build(root / "seeds")
        formats = [kind for kind in args.formats if kind in seeds]
        missing = sorted(set(args.formats) - set(formats))
        report = fuzzing.run(
            seeds,
            root / "run",
            split(args.mutants, formats),
            seed=args.seed,
            formats=formats,
            workers=args.workers,
            deadline=args.deadline,
            structured=args.structured,
        )
        structured.remove_tree(root)  # in a loop: mutant folders may be 1,200 levels deep
    print(
        f"# fuzzing: {args.mutants} {'structured ' if args.structured else ''}mutants, "
        f"seed {args.seed}, {args.workers} workers, "
        f"hang after {args.deadline:.0f} s; {platform.machine()}, Python "
        f"{platform.python_version()}; {report.seconds:.0f} s"
    )
    if missing:
        print(f"# no seed file (writer not installed): {', '.join(missing)}")
    print(table(report, formats))
    for kind, index, outcome, detail in report.failures[:50]:
        print(f"{kind} mutant {index}: {outcome}: {detail}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
