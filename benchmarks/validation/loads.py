"""Which networks of the validation set today's nnequiv reads: a loading check, nothing more.

Runs ``nnequiv analyze NETWORK --json --no-cache --realizations 2`` on each network that
``fetch.py`` put under ``--out`` and prints a Markdown table: loads (with the number of layers
analysed and the number of tensors skipped) or the error line. It never compares two networks,
so it measures nothing that the set's labels could be fitted to.

Run: ``python benchmarks/validation/loads.py [--out DIR] [--timeout S]`` after ``fetch.py``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch import DEFAULT_OUT, read_manifest, target_path  # noqa: E402

CLI = "import sys; from nnequiv.cli import main; sys.exit(main(sys.argv[1:]))"


def check(path: Path, timeout: float) -> tuple[bool, str]:
    """(loaded, what happened) for one network file or folder."""
    command = [sys.executable, "-c", CLI, "analyze", str(path), "--json", "--no-cache"]
    command += ["--realizations", "2"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"no answer within {timeout:g} s"
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        return False, lines[-1].replace(str(path.parent) + "/", "")
    report = json.loads(result.stdout)
    return True, f"{report['n_layers']} layers, {len(report['skipped'])} tensors skipped"


def main(argv: list[str] | None = None) -> int:
    """Command line: the loading table of every network under --out."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder fetch.py wrote")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per network")
    args = parser.parse_args(argv)
    rows = read_manifest()
    print("| network | family | format | loads | layers / error |")
    print("|---|---|---|---|---|")
    failed = 0
    for row in rows:
        path = target_path(args.out, row)
        loaded, what = check(path, args.timeout) if path.exists() else (False, "not fetched")
        failed += not loaded
        what = what.replace("|", "\\|")
        cells = [path.name, row["family"], row["format"], "yes" if loaded else "**no**", what]
        print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\n{len(rows) - failed} of {len(rows)} networks load.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
