"""Mutation testing: does the test suite notice when the code that computes the answers
changes? Each mutant changes one thing in one function of the method's modules (a comparison,
an arithmetic operator, a number, a boolean, min/max, mean/median); the suite runs on it
without ../shared, and the mutant is killed when a test fails (or the run times out).

Run: ``python benchmarks/mutation.py [--modules csd spectra ...] [--limit N] [--jobs 2]``
(``--list`` prints the mutants without running them). Prints the kill rate per module, with
and without the mutants listed in :data:`EQUIVALENT`, and every surviving mutant. It works on
copies of src/ and tests/, never on the checkout, and never reads a user's cache.

How a mutant is run. The unmutated suite runs once first, recording which lines of the
mutated modules every test executes. A mutant then runs, fastest first, the tests that
execute its line (for a mutated default argument: any line of its function), stopping at the
first failure. A test that never executes the mutated line cannot see the change in this
process, but it can through a subprocess, a worker or a value cached by an earlier test, so a
mutant that survives its tests runs the whole suite before it is counted as a survivor
(``--no-confirm`` skips that, for quick looks only): the survivors are those of the whole
suite.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("csd", "spectra", "analysis", "distances", "_sets", "equivalence", "explain")
SWAPS = {"min": "max", "max": "min", "mean": "median", "median": "mean", "argmin": "argmax",
         "argmax": "argmin", "any": "all", "all": "any"}  # fmt: skip
COMPARISONS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
               ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}  # fmt: skip
OPERATORS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
             ast.Pow: ast.Mult, ast.FloorDiv: ast.Div}  # fmt: skip
#: Environment variable that turns this file, loaded as a pytest plugin, into a line tracer.
TRACE_VARIABLE = "NNEQUIV_MUTATION_TRACE"
#: The name this file has in a workspace, where pytest loads it (``-p``) as the line tracer.
PLUGIN = "nnequiv_mutation_tracer"

#: Mutants that cannot change what the code computes, each with the reason. Key: module,
#: function, the source line (without its comment), the mutated expression as
#: ``ast.unparse`` writes it, the mutation, and which of several such on that line. They run
#: like the others; the report gives the kill rate with and without them, and says when one
#: is killed (then it was not equivalent) or no longer exists.
_SAME_BITS = "changes how much is computed at once (or cached), not a single bit"
_ROUNDING = "two computations of the same quantity; they agree to rounding (last bits)"
_REFUSAL_FIGURE = (
    "the one-row blocks in the working memory of a refused layer (KiB to a few MiB) in the GiB its "
    "message prints with two decimals; nothing else reads it"
)
EQUIVALENT: dict[tuple, str] = {
    ("distances", "_mean_pair_distance", "group = int(np.sqrt(GROUP_DISTANCES / pairs))",
     "GROUP_DISTANCES / pairs", "Div -> Mult", 0):
        "larger groups of cloud pairs per kernel call: " + _SAME_BITS,
    ("distances", "_mean_pair_distance",
     "x_outer[part].reshape(-1, width), y_outer[part].reshape(-1, width)", "1", "1 -> 2", 0):
        "NumPy takes any negative size in reshape as the unknown one: -2 is -1",
    ("distances", "_mean_pair_distance",
     "x_outer[part].reshape(-1, width), y_outer[part].reshape(-1, width)", "1", "1 -> 2", 1):
        "NumPy takes any negative size in reshape as the unknown one: -2 is -1",
    ("distances", "_mean_pair_distance",
     "out_outer[part] = block.reshape(count, pairs).sum(axis=-1) / pairs", "-1", "drop USub",
     0): "the array is 2-D (clouds x point pairs): axis 1 is axis -1",
    ("distances", "design_prints", "order = np.lexsort((streams[:, 1], streams[:, 0]))", "0",
     "0 -> 1", 0):
        "another order of the structure rows, whose distances are averaged over all pairs: "
        + _ROUNDING,
    ("distances", "design_part_matrices", "for j in range(i + 1, count):", "i + 1",
     "Add -> Sub", 0):
        "adds each print against itself (exactly 0) and recomputes a symmetric pair in the "
        "other order: " + _ROUNDING,
    ("equivalence", "judge_pair", "parts: tuple[float, float] = (0.0, 0.0),", "0.0",
     "0.0 -> 1.0", 0):
        "a tie of the parts goes to the spectral part, as (1.0, 0.0) does",
    ("csd", "decay_with_interval", "if csd.shape[0] < 2 or not np.isfinite(fit.alpha):",
     "csd.shape[0] < 2 or not np.isfinite(fit.alpha)", "Or -> And", 0):
        "where alpha is NaN every resample's alpha is NaN too (CSD >= 0, so a resample has no "
        "non-zero bin the mean lacks); with one realization replicate_interval gives NaN itself",
    ("csd", "decay_with_interval", "if csd.shape[0] < 2 or not np.isfinite(fit.alpha):", "0",
     "0 -> 1", 0):
        "with one realization replicate_interval gives NaN itself: the early return saves work",
    ("csd", "_t_quantile", "@lru_cache(maxsize=256)", "256", "256 -> 257", 0): _SAME_BITS,
    ("analysis", "stream_keys", "keys: list[tuple[int, int]] = [(0, 0)] * len(orders)", "0",
     "0 -> 1", 0): "a placeholder: every key is written by the loop that follows",
    ("analysis", "stream_keys", "keys: list[tuple[int, int]] = [(0, 0)] * len(orders)", "0",
     "0 -> 1", 1): "a placeholder: every key is written by the loop that follows",
    ("distances", "summarize", "streams.reshape(-1, 2),", "1", "1 -> 2", 0):
        "NumPy reads the negative size -2 as the unknown dimension, like -1",
    ("distances", "_mean_pair_distance", "if group < 2:", "group < 2", "Lt -> LtE", 0):
        "groups of 2 cloud pairs compared one pair at a time: " + _SAME_BITS,
    ("distances", "_mean_pair_distance", "if group < 2:", "2", "2 -> 3", 0):
        "groups of 2 cloud pairs compared one pair at a time: " + _SAME_BITS,
    ("distances", "_resamples", "@lru_cache(maxsize=64)", "64", "64 -> 65", 0): _SAME_BITS,
    ("distances", "_resamples", "resamples.setflags(write=False)", "False", "False -> True", 0):
        "a guard against writes into the cached resamples; nothing writes them",
    ("spectra", "_spectrum_of",
     "needed = working_bytes(blocks.shape, 8 * max(rows, columns), 0)", "0", "0 -> 1", 0):
        _REFUSAL_FIGURE,
    ("spectra", "_spectrum_of",
     "needed = working_bytes(blocks.shape, 8 * max(rows, columns), 0)", "8", "8 -> 9", 0):
        _REFUSAL_FIGURE,
    ("spectra", "_spectrum_of",
     "needed = working_bytes(blocks.shape, 8 * max(rows, columns), 0)",
     "8 * max(rows, columns)", "Mult -> Div", 0): _REFUSAL_FIGURE,
    ("spectra", "_spectrum_of",
     "needed = working_bytes(blocks.shape, 8 * max(rows, columns), 0)", "max", "max -> min", 0):
        _REFUSAL_FIGURE,
    ("distances", "fingerprints",
     "step = max(1, FINGERPRINT_ELEMENTS // (BOOTSTRAP_RESAMPLES * int(np.prod(shape))))", "1",
     "1 -> 2", 0): "groups of at least 2 networks: " + _SAME_BITS,
    ("distances", "_fingerprint_group",
     "self_mean, self_resampled = np.zeros(len(summaries)), np.zeros(resampled.shape[:2])", "2",
     "2 -> 3", 0): "the self terms of a pooled fingerprint are never read",
    ("distances", "_fingerprint_group", "between = np.abs(first - second).max(axis=-1)", "-1",
     "drop USub", 0): "the array is 2-D (networks x bins): axis 1 is axis -1",
    ("distances", "_replicates",
     "replicates[index] = np.abs(a.resampled - b.resampled).max(axis=-1)", "-1", "drop USub",
     0): "the array is 2-D (resamples x bins): axis 1 is axis -1",
    ("equivalence", "cluster",
     "off_diagonal = pair_eps_matrix[~np.eye(count, dtype=bool)] if count > 1 else "
     "pair_eps_matrix", "1", "1 -> 2", 0):
        "for two networks the median of [floor a, eps, eps, floor b] is eps, which is the "
        "larger floor (or the given eps)",
    ("explain", "explain", "unit[-1] = chosen.order_weight or 1.0", "1.0", "1.0 -> 2.0", 0):
        "with order weight 0 the log n coordinate is 0 in every layer, never the one reported",
}  # fmt: skip


@dataclass(frozen=True)
class Mutant:
    module: str
    line: int
    column: int
    description: str
    source: str  # the whole mutated module
    function: str = ""  # qualified name of the enclosing function
    snippet: str = ""  # the original expression
    lines: tuple[int, ...] = ()  # the lines whose execution runs the mutated code
    text: str = ""  # the source line it starts on, stripped
    occurrence: int = 0  # among mutants of the same snippet and kind on that line

    @property
    def key(self) -> tuple:
        """What names the mutant in :data:`EQUIVALENT`: no line number, so that edits
        elsewhere in the module leave the list valid."""
        return (self.module, self.function, self.text, self.snippet, self.description,
                self.occurrence)  # fmt: skip

    def __str__(self) -> str:
        return (
            f"{self.module}.py:{self.line}:{self.column} {self.function}: "
            f"{self.snippet}  [{self.description}]"
        )


def _inside_raise(parents) -> bool:
    """Nothing inside a raise statement (its message) is mutated."""
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
        yield f"drop {type(node.op).__name__}", copy.deepcopy(node.operand)
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


def _body_lines(function: ast.FunctionDef) -> tuple[int, ...]:
    """The lines of a function's body (what runs when it is called)."""
    first, last = function.body[0].lineno, function.body[-1].end_lineno
    return tuple(range(first, last + 1))


def mutants_of(module: str) -> list[Mutant]:
    """Every single-node mutant of the functions of ``src/nnequiv/<module>.py``."""
    path = ROOT / "src" / "nnequiv" / f"{module}.py"
    text = path.read_text()
    found = []

    def visit(node, parents, function, names, at_definition):
        for child in ast.iter_child_nodes(node):
            chain = (*parents, node)
            inner, inner_names, definition = function, names, at_definition
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner_names = (*names, child.name)
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner, definition = child, False
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                child is node.args or child in node.decorator_list or child is node.returns
            ):
                definition = True  # defaults and decorators are evaluated at definition
            if inner is not None and not _inside_raise(chain):
                for description, replacement in _mutations(child):
                    lines = (
                        _body_lines(inner)
                        if definition
                        else tuple(range(child.lineno, child.end_lineno + 1))
                    )
                    found.append((child, replacement, description, ".".join(inner_names), lines))
            visit(child, chain, inner, inner_names, definition)

    visit(ast.parse(text), (), None, (), False)
    unchanged = ast.unparse(ast.parse(text))
    mutants = []
    source_lines = text.splitlines()
    seen: dict[tuple, int] = {}
    for original, replacement, description, function, lines in sorted(
        found, key=lambda item: (item[0].lineno, item[0].col_offset)
    ):
        ast.copy_location(replacement, original)
        swap = _Swap(original, replacement)
        swapped = swap.visit(ast.parse(text))
        if not swap.done:
            raise RuntimeError(f"{module}.py:{original.lineno}: mutant not placed")
        try:
            source = ast.unparse(ast.fix_missing_locations(swapped))
        except Exception:  # pragma: no cover - a replacement that cannot be written back
            continue
        if source == unchanged:
            raise RuntimeError(f"{module}.py:{original.lineno}: the mutant changes nothing")
        where = (original.lineno, original.col_offset)
        snippet = ast.unparse(original)
        line_text = source_lines[original.lineno - 1].split("  # ")[0].strip()
        same = (original.lineno, snippet, description)
        seen[same] = seen.get(same, -1) + 1
        mutants.append(Mutant(module, *where, description, source, function, snippet, lines,
                              line_text, seen[same]))  # fmt: skip
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


# ---- the line tracer (this file loaded as a pytest plugin) ------------------------------


class _Tracer:
    """Lines of the mutated modules that each test executes (``sys.settrace``)."""

    def __init__(self, files: dict[str, str]):
        self.files = files  # absolute path -> module name
        self.current = None
        self.lines: dict[str, dict[str, set[int]]] = {}
        self.durations: dict[str, float] = {}

    def trace(self, frame, event, arg):
        module = self.files.get(frame.f_code.co_filename)
        if module is None or self.current is None:
            return None
        seen = self.lines.setdefault(self.current, {}).setdefault(module, set())

        def local(frame, event, arg):
            if event == "line":
                seen.add(frame.f_lineno)
            return local

        seen.add(frame.f_lineno)
        return local


_TRACER: _Tracer | None = None


def pytest_configure(config):
    global _TRACER
    if os.environ.get(TRACE_VARIABLE):
        source = Path(os.environ["PYTHONPATH"].split(os.pathsep)[0]) / "nnequiv"
        files = {str((source / f"{m}.py").resolve()): m for m in MODULES}
        _TRACER = _Tracer(files)
        sys.settrace(_TRACER.trace)
        threading.settrace(_TRACER.trace)


def pytest_runtest_protocol(item, nextitem):
    if _TRACER is not None:
        _TRACER.current = item.nodeid
        _TRACER.durations[item.nodeid] = -time.perf_counter()
    # returning None lets pytest run the test


def pytest_runtest_logfinish(nodeid, location):
    if _TRACER is not None:
        _TRACER.durations[nodeid] += time.perf_counter()
        _TRACER.current = None


def pytest_unconfigure(config):
    if _TRACER is not None:
        sys.settrace(None)
        threading.settrace(None)
        payload = {
            "durations": _TRACER.durations,
            "lines": {
                test: {module: sorted(lines) for module, lines in modules.items()}
                for test, modules in _TRACER.lines.items()
            },
        }
        Path(os.environ[TRACE_VARIABLE]).write_text(json.dumps(payload))


# ---- running mutants -------------------------------------------------------------------


def _workspace() -> Path:
    """A copy of src/ and tests/ to mutate (with the files the tests read beside them)."""
    place = Path(tempfile.mkdtemp(prefix="nnequiv-mutants-"))
    shutil.copytree(ROOT / "src", place / "src")
    shutil.copytree(ROOT / "tests", place / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", place / "pyproject.toml")
    shutil.copy(ROOT / ".importlinter", place / ".importlinter")  # tests/test_pipeline.py
    shutil.copytree(  # the scripts some tests drive (fetch, fuzz, large layers)
        ROOT / "benchmarks", place / "benchmarks", ignore=shutil.ignore_patterns("__pycache__")
    )
    (place / "plugin").mkdir()
    shutil.copy(Path(__file__), place / "plugin" / f"{PLUGIN}.py")  # the line tracer
    return place


def _environment(place: Path, **extra) -> dict:
    """No ../shared, a cache of the workspace's own, one BLAS thread, no CI."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(place / "src"), str(place / "plugin")]),
        NNEQUIV_SHARED=str(place / "no-shared-data"),
        NNEQUIV_CACHE_DIR=str(place / "cache"),
        PYTHONDONTWRITEBYTECODE="1",
        OPENBLAS_NUM_THREADS="1",
        **extra,
    )
    env.pop("CI", None)
    return env


def _pytest(place: Path, tests: list[str], timeout: float, **extra) -> tuple[str, str, float]:
    """Run pytest on ``tests`` (node ids or paths) in ``place``, stopping at the first failure:
    ``"killed"`` (a test failed or errored, or the run timed out), ``"survived"`` or
    ``"error: ..."`` (pytest could not run them); the test that failed; the seconds taken."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.perf_counter()
    try:
        result = subprocess.run(
            command, cwd=place, env=_environment(place, **extra), capture_output=True,
            timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "killed", "(timeout)", time.perf_counter() - start
    seconds = time.perf_counter() - start
    output = (result.stdout + result.stderr).decode(errors="replace").splitlines()
    if result.returncode == 0:
        return "survived", "", seconds
    failed = [line.split()[1] for line in output if line.startswith(("FAILED ", "ERROR "))]
    # 1: a test failed; 2: interrupted (a module fails to import); 4 with errors: node ids
    # not collected because their module fails to import
    if result.returncode in (1, 2) or (result.returncode == 4 and failed):
        return "killed", failed[0] if failed else "(collection)", seconds
    tail = " | ".join(line.strip() for line in output[-3:])
    return f"error: pytest exit {result.returncode}: {tail}", "", seconds


def coverage_map(place: Path) -> tuple[dict, dict]:
    """Run the unmutated suite with the line tracer: ``{(module, line): [test ids]}`` and the
    seconds each test took. Stops when the unmutated suite fails."""
    out = place / "trace.json"
    outcome, failed, seconds = _pytest(place, ["-p", PLUGIN, "tests"], 1800.0,
                               **{TRACE_VARIABLE: str(out)})  # fmt: skip
    if outcome != "survived":
        sys.exit(f"the unmutated suite does not pass in {place} ({outcome}: {failed})")
    payload = json.loads(out.read_text())
    covering: dict = {}
    for test, modules in payload["lines"].items():
        for module, lines in modules.items():
            for line in lines:
                covering.setdefault((module, line), []).append(test)
    print(f"# unmutated suite with the line tracer: {seconds:.0f} s, "
          f"{len(payload['durations'])} tests", flush=True)  # fmt: skip
    return covering, payload["durations"]


def run_mutant(mutant: Mutant, place: Path, covering: dict, durations: dict, kills: dict,
               confirm: bool) -> tuple[str, str, str, float]:  # fmt: skip
    """``(outcome, stage, killer, seconds)``: the outcome after the tests that execute the
    mutated line (stage ``"covering"``; the tests that have killed most mutants so far first,
    then the fastest) and, where it survived them, after the whole suite (``"suite"``)."""
    target = place / "src" / "nnequiv" / f"{mutant.module}.py"
    original = target.read_text()
    target.write_text(mutant.source)
    tests = sorted({t for line in mutant.lines for t in covering.get((mutant.module, line), [])},
                   key=lambda t: (-kills.get(t, 0), durations.get(t, 0.0), t))  # fmt: skip
    spent, killer = 0.0, ""
    try:
        outcome, stage = "survived", "covering"
        if tests:
            expected = sum(durations.get(t, 0.0) for t in tests)
            outcome, killer, spent = _pytest(place, tests, 60.0 + 5 * expected)
        if outcome == "survived" and confirm:
            stage = "suite"
            expected = sum(durations.values())
            outcome, killer, seconds = _pytest(place, ["tests"], 120.0 + 5 * expected)
            spent += seconds
    finally:
        target.write_text(original)
    return outcome, stage, killer, spent


def _rate(killed: int, total: int) -> str:
    return f"{killed / total:6.1%}" if total else "     -"


def report(outcomes: dict, modules, seconds: float) -> None:
    """The kill rate per module (with and without the equivalent mutants) and the survivors."""
    print(f"\n{'module':12} {'mutants':>8} {'killed':>7} {'rate':>7} {'equiv.':>7} "
          f"{'rate w/o equiv.':>16}")  # fmt: skip
    rows = [(module, [m for m in outcomes if m.module == module]) for module in modules]
    rows.append(("all", list(outcomes)))
    for name, mine in rows:
        if not mine:
            continue
        killed = sum(outcomes[m][0] == "killed" for m in mine)
        equivalent = [m for m in mine if m.key in EQUIVALENT]
        rest = [m for m in mine if m.key not in EQUIVALENT]
        killed_rest = sum(outcomes[m][0] == "killed" for m in rest)
        print(f"{name:12} {len(mine):8d} {killed:7d} {_rate(killed, len(mine)):>7} "
              f"{len(equivalent):7d} {_rate(killed_rest, len(rest)):>16}")  # fmt: skip
    print(f"({seconds:.0f} s)")
    errors = [m for m in outcomes if outcomes[m][0].startswith("error")]
    if errors:
        print("\nmutants pytest could not run (counted as not killed):")
        for m in errors:
            print(f"  {m}  {outcomes[m][0]}")
    survivors = sorted((m for m in outcomes if outcomes[m][0] == "survived"),
                       key=lambda m: (m.module, m.line, m.column))  # fmt: skip
    for title, chosen in [
        ("surviving mutants", [m for m in survivors if m.key not in EQUIVALENT]),
        ("surviving equivalent mutants", [m for m in survivors if m.key in EQUIVALENT]),
    ]:
        if chosen:
            print(f"\n{title} (stage reached):")
            for m in chosen:
                reason = f"  -- {EQUIVALENT[m.key]}" if m.key in EQUIVALENT else ""
                print(f"  {m}  ({outcomes[m][1]}){reason}")
    killed_equivalent = [m for m in outcomes if m.key in EQUIVALENT and outcomes[m][0] == "killed"]
    if killed_equivalent:
        print("\nlisted as equivalent but killed (remove them from EQUIVALENT):")
        for m in killed_equivalent:
            print(f"  {m}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", nargs="+", default=list(MODULES), choices=MODULES)
    parser.add_argument("--limit", type=int, help="a seeded random sample of N mutants")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--list", action="store_true", help="print the mutants and stop")
    parser.add_argument("--no-confirm", dest="confirm", action="store_false",
                        help="count a mutant that survives its covering tests as a survivor "
                        "without running the whole suite (quick looks only)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write every outcome to this file")
    parser.add_argument("--prior", type=Path, help="the --json file of an earlier run: its "
                        "killing tests run first (the order only; no outcome changes)")  # fmt: skip
    args = parser.parse_args()
    mutants = [m for module in args.modules for m in mutants_of(module)]
    total = len(mutants)
    present = {m.key for m in mutants}
    for key in EQUIVALENT:
        if key[0] in args.modules and key not in present:
            print(f"# listed as equivalent but no longer a mutant (update EQUIVALENT): {key}")
    if args.limit and args.limit < total:
        mutants = sorted(random.Random(args.seed).sample(mutants, args.limit),
                         key=lambda m: (m.module, m.line))  # fmt: skip
    if args.list:
        for m in mutants:
            print(m)
        return
    print(f"# {len(mutants)} of {total} mutants of {', '.join(args.modules)}; "
          f"{args.jobs} jobs; whole suite for survivors: {args.confirm}", flush=True)  # fmt: skip
    start = time.perf_counter()
    places = [_workspace() for _ in range(args.jobs)]
    try:
        covering, durations = coverage_map(places[0])
        outcomes: dict = {}
        kills: dict[str, int] = {}
        if args.prior:
            for row in json.loads(args.prior.read_text()):
                if row.get("killed_by"):
                    kills[row["killed_by"]] = kills.get(row["killed_by"], 0) + 1
        lock = threading.Lock()

        def work(k: int) -> None:
            for index in range(k, len(mutants), args.jobs):
                mutant = mutants[index]
                result = run_mutant(mutant, places[k], covering, durations, kills, args.confirm)
                with lock:
                    outcomes[mutant] = result
                    kills[result[2]] = kills.get(result[2], 0) + 1
                    print(f"[{len(outcomes)}/{len(mutants)}] {result[0]:8} {result[1]:8} "
                          f"{result[3]:5.0f} s  {mutant}  {result[2]}", flush=True)  # fmt: skip

        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(work, range(args.jobs)))
    finally:
        for place in places:
            shutil.rmtree(place, ignore_errors=True)
    report(outcomes, args.modules, time.perf_counter() - start)
    if args.json:
        args.json.write_text(json.dumps(
            [{"mutant": str(m), "module": m.module, "line": m.line, "function": m.function,
              "snippet": m.snippet, "description": m.description, "outcome": o, "stage": s,
              "killed_by": k, "seconds": round(t, 1), "equivalent": EQUIVALENT.get(m.key)}
             for m, (o, s, k, t) in outcomes.items()], indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
