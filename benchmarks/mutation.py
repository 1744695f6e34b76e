"""Mutation testing: does the test suite notice when the code that computes the answers
changes? Each mutant changes one thing in one function of the method's modules (a comparison,
an arithmetic operator, a number, a boolean, min/max, mean/median); the suite runs on it
without ../shared, and the mutant is killed when a test fails (or the run times out).

Run: ``python benchmarks/mutation.py [--modules csd spectra ...] [--limit N] [--jobs 2]``
(``--list`` prints the mutants without running them). Prints the kill rate per module and
every surviving mutant. It works on a copy of src/ and tests/, never on the checkout.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("csd", "spectra", "analysis", "distances", "equivalence", "explain")
#: The test files each module is checked by first (the rest of the suite runs after them).
FIRST_TESTS = {
    "csd": ["test_csd.py", "test_analysis.py"],
    "spectra": ["test_spectra.py", "test_analysis.py"],
    "analysis": ["test_analysis.py", "test_golden.py"],
    "distances": ["test_distances.py", "test_equivalence.py"],
    "equivalence": ["test_equivalence.py", "test_golden.py"],
    "explain": ["test_explain.py", "test_equivalence.py"],
}
SWAPS = {"min": "max", "max": "min", "mean": "median", "median": "mean", "argmin": "argmax",
         "argmax": "argmin", "any": "all", "all": "any"}  # fmt: skip
COMPARISONS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
               ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}  # fmt: skip
OPERATORS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
             ast.Pow: ast.Mult, ast.FloorDiv: ast.Div}  # fmt: skip


@dataclass(frozen=True)
class Mutant:
    module: str
    line: int
    column: int
    description: str
    source: str  # the whole mutated module


def _docstring_or_message(node, parents) -> bool:
    """Strings are not mutated; neither is anything inside a raise statement's message."""
    return any(isinstance(p, ast.Raise) for p in parents)


def _mutations(node):
    """(description, replacement node) for one AST node."""
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in COMPARISONS:
        new = COMPARISONS[type(node.ops[0])]()
        yield (
            f"{type(node.ops[0]).__name__} -> {type(new).__name__}",
            ast.Compare(node.left, [new], node.comparators),
        )
    elif isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        new = OPERATORS[type(node.op)]()
        yield (
            f"{type(node.op).__name__} -> {type(new).__name__}",
            ast.BinOp(node.left, new, node.right),
        )
    elif isinstance(node, ast.BoolOp):
        new = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        yield f"{type(node.op).__name__} -> {type(new).__name__}", ast.BoolOp(new, node.values)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        yield f"drop {type(node.op).__name__}", node.operand
    elif isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
        value = node.value
        if isinstance(value, bool):
            new = not value
        elif isinstance(value, int):
            new = value + 1
        else:
            new = value * 2 if value else 1.0
        yield f"{value!r} -> {new!r}", ast.Constant(new)
    elif isinstance(node, ast.Attribute) and node.attr in SWAPS:
        yield (
            f".{node.attr} -> .{SWAPS[node.attr]}",
            ast.Attribute(node.value, SWAPS[node.attr], node.ctx),
        )
    elif isinstance(node, ast.Name) and node.id in ("min", "max"):
        yield f"{node.id} -> {SWAPS[node.id]}", ast.Name(SWAPS[node.id], node.ctx)


def mutants_of(module: str) -> list[Mutant]:
    """Every single-node mutant of the functions of ``src/nnequiv/<module>.py``."""
    path = ROOT / "src" / "nnequiv" / f"{module}.py"
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, parents, inside_function):
        for child in ast.iter_child_nodes(node):
            in_function = inside_function or isinstance(child, ast.FunctionDef)
            chain = (*parents, node)
            if in_function and not _docstring_or_message(child, chain):
                for description, replacement in _mutations(child):
                    found.append((child, replacement, description))
            visit(child, chain, in_function)

    visit(tree, (), False)
    mutants = []
    for original, replacement, description in found:
        ast.copy_location(replacement, original)
        swapped = _Swap(original, replacement).visit(ast.parse(path.read_text()))
        try:
            source = ast.unparse(ast.fix_missing_locations(swapped))
        except Exception:  # pragma: no cover - a replacement that cannot be written back
            continue
        mutants.append(Mutant(module, original.lineno, original.col_offset, description, source))
    return mutants


class _Swap(ast.NodeTransformer):
    """Replace the node at the original's position (and of its type) by the replacement."""

    def __init__(self, original, replacement):
        self.key = (type(original), original.lineno, original.col_offset,
                    getattr(original, "end_col_offset", None))  # fmt: skip
        self.replacement = replacement
        self.done = False

    def generic_visit(self, node):
        key = (type(node), getattr(node, "lineno", None), getattr(node, "col_offset", None),
               getattr(node, "end_col_offset", None))  # fmt: skip
        if not self.done and key == self.key:
            self.done = True
            return self.replacement
        return super().generic_visit(node)


def _workspace() -> Path:
    """A copy of src/ and tests/ to mutate."""
    place = Path(tempfile.mkdtemp(prefix="nnequiv-mutants-"))
    shutil.copytree(ROOT / "src", place / "src")
    shutil.copytree(ROOT / "tests", place / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", place / "pyproject.toml")
    return place


def run_mutant(mutant: Mutant, place: Path, timeout: float) -> str:
    """``"killed"``, ``"survived"`` or ``"timeout"`` (counted as killed)."""
    target = place / "src" / "nnequiv" / f"{mutant.module}.py"
    original = target.read_text()
    target.write_text(mutant.source)
    first = [str(place / "tests" / name) for name in FIRST_TESTS[mutant.module]]
    env = dict(
        os.environ,
        PYTHONPATH=str(place / "src"),
        NNEQUIV_SHARED=str(place / "no-shared-data"),
        NNEQUIV_CACHE_DIR=str(place / "cache"),
        PYTHONDONTWRITEBYTECODE="1",
        OPENBLAS_NUM_THREADS="1",
    )
    env.pop("CI", None)
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               "--deselect", "tests/test_report.py", *first, str(place / "tests")]  # fmt: skip
    try:
        result = subprocess.run(command, cwd=place, env=env, capture_output=True, timeout=timeout)
        outcome = "survived" if result.returncode == 0 else "killed"
    except subprocess.TimeoutExpired:
        outcome = "timeout"
    finally:
        target.write_text(original)
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", nargs="+", default=list(MODULES), choices=MODULES)
    parser.add_argument("--limit", type=int, help="a seeded random sample of N mutants")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    mutants = [m for module in args.modules for m in mutants_of(module)]
    total = len(mutants)
    if args.limit and args.limit < total:
        mutants = sorted(random.Random(args.seed).sample(mutants, args.limit),
                         key=lambda m: (m.module, m.line))  # fmt: skip
    if args.list:
        for m in mutants:
            print(f"{m.module}.py:{m.line}:{m.column} {m.description}")
        return
    print(f"# {len(mutants)} of {total} mutants of {', '.join(args.modules)}", flush=True)
    places = [_workspace() for _ in range(args.jobs)]
    start = time.perf_counter()
    outcomes: dict = {}

    def work(indexed):
        index, mutant = indexed
        place = places[index % len(places)]
        return mutant, run_mutant(mutant, place, args.timeout)

    # one workspace per job: mutants of job k run one after another in places[k]
    batches = [[(i, m) for i, m in enumerate(mutants) if i % args.jobs == k]
               for k in range(args.jobs)]  # fmt: skip
    with ThreadPoolExecutor(args.jobs) as pool:
        for results in pool.map(lambda batch: [work(item) for item in batch], batches):
            for mutant, outcome in results:
                outcomes[mutant] = outcome
    for place in places:
        shutil.rmtree(place, ignore_errors=True)
    print(f"{'module':12} {'mutants':>8} {'killed':>7} {'rate':>6}")
    for module in args.modules:
        mine = [o for m, o in outcomes.items() if m.module == module]
        if mine:
            killed = sum(o != "survived" for o in mine)
            print(f"{module:12} {len(mine):8d} {killed:7d} {killed / len(mine):6.1%}")
    killed = sum(o != "survived" for o in outcomes.values())
    print(f"{'all':12} {len(outcomes):8d} {killed:7d} {killed / max(len(outcomes), 1):6.1%}"
          f"   ({time.perf_counter() - start:.0f} s)")  # fmt: skip
    survivors = sorted((m for m, o in outcomes.items() if o == "survived"),
                       key=lambda m: (m.module, m.line))  # fmt: skip
    if survivors:
        print("\nsurviving mutants:")
        for m in survivors:
            print(f"  {m.module}.py:{m.line}:{m.column} {m.description}")


if __name__ == "__main__":
    main()
