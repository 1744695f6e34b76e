"""The ``nnequiv`` command line: analyze, compare, cluster, identify, null.

Every method option is generated from :mod:`nnequiv.settings` (help text, choices, default),
so the command line and the library share one set of defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path

from nnequiv._version import __version__
from nnequiv.errors import InputError, NNEquivError
from nnequiv.loading import LAYOUTS
from nnequiv.settings import (
    ConnectomeOptions,
    DistanceSettings,
    LoadOptions,
    Settings,
    field_default,
    option_fields,
)

COMMANDS = ("analyze", "compare", "cluster", "identify", "index", "null")
#: Library options that are not method settings: where caches live, where analyses run.
RUN_OPTIONS = ("cache_dir", "n_jobs", "scheduler")


def _default_text(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _add_settings(parser: argparse.ArgumentParser, group_class, title: str) -> None:
    """One command-line option per settings field, with its help text and default."""
    group = parser.add_argument_group(title)
    for f in option_fields(group_class):
        meta = f.metadata
        default = field_default(f)
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        kwargs: dict = {"dest": f.name, "default": None, "metavar": meta.get("metavar")}
        text = meta["help"]
        if f.type in ("bool", bool) or isinstance(default, bool):
            kwargs = {"dest": f.name, "action": "store_true", "default": None}
        elif f.name in ("include", "exclude"):
            kwargs["action"] = "append"
            text += "; default: every tensor" if f.name == "include" else "; default: none"
        elif f.name == "layout":
            kwargs.update(type=str.lower, choices=sorted(LAYOUTS), metavar="LAYOUT")
        else:
            if meta.get("choices"):
                kwargs["choices"] = list(meta["choices"])
                kwargs["metavar"] = None
            kwargs["type"] = _type_of(default, f)
        if "default:" not in text and not isinstance(default, bool):
            text += f" (default: {_default_text(default)})"
        group.add_argument(flag, help=text, **kwargs)


def _type_of(default, f):
    if f.name == "ensemble":
        return str.upper
    if isinstance(default, bool):
        return None
    if isinstance(default, int) or f.name in ("submatrices", "realizations", "seed"):
        return int
    if isinstance(default, float):
        return float
    return str


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("running")
    _add_cache_options(group)
    group.add_argument(
        "-j",
        "--jobs",
        type=int,
        dest="n_jobs",
        metavar="N",
        help="worker processes: the networks of a set in parallel, or the circular ensembles "
        "of one network; -1: every core; the numbers do not change (default: 1)",
    )


def _add_outputs(parser: argparse.ArgumentParser, table: str, plot: bool = True) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--json", action="store_true", help="print the result as JSON instead of text"
    )
    group.add_argument("--csv", metavar="FILE", help=f"also write {table} as CSV to FILE")
    if plot:
        group.add_argument("--plot", metavar="DIR", help="also write PNG and SVG figures to DIR")


def _add_eps(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--eps",
        type=float,
        help="accuracy: pairs with d <= eps are equivalent (default: calibrated per pair "
        "from the two networks' noise floors)",
    )


def _method_parser() -> argparse.ArgumentParser:
    """The options every analysing command shares, as a parent parser."""
    parent = argparse.ArgumentParser(add_help=False)
    _add_settings(parent, Settings, "analysis settings (docs/method.md)")
    _add_settings(parent, LoadOptions, "reading files")
    _add_settings(parent, ConnectomeOptions, "connectomes")
    _add_run_options(parent)
    return parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnequiv",
        description="Equivalence of neural networks from their weights via conjugate "
        "circular ensembles (docs/method.md).",
    )
    parser.add_argument("--version", action="version", version=f"nnequiv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    method = _method_parser()
    distance = argparse.ArgumentParser(add_help=False)
    _add_settings(distance, DistanceSettings, "distance")
    _add_scheduler(distance)

    p = sub.add_parser(
        "analyze",
        parents=[method],
        help="CSD and decay rate of one network",
        description="Compare one network's layer spectra with its conjugate circular "
        "ensemble: CSD, decay rate alpha with its interval, per-layer numbers.",
    )
    p.add_argument("path", help="network file, shard directory or connectome")
    _add_outputs(p, "the layer table")

    p = sub.add_parser(
        "compare",
        parents=[method, distance],
        help="are two networks equivalent?",
        description="Distance between two networks, its spread, eps and the verdict.",
    )
    p.add_argument("a", help="first network")
    p.add_argument("b", help="second network")
    _add_eps(p)
    _add_outputs(p, "the verdict")

    p = sub.add_parser(
        "cluster",
        parents=[method, distance],
        help="equivalence classes of many networks",
        description="Pairwise distances and verdicts, and the classes: connected "
        "components of the pairs judged equivalent.",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="network files or directories, or fingerprint indexes ('nnequiv index build')",
    )
    _add_eps(p)
    _add_outputs(p, "classes and distances")

    p = sub.add_parser(
        "identify",
        parents=[method, distance],
        help="which known design is this network?",
        description="Rank library networks by distance to a query network.",
    )
    p.add_argument("query", help="the network to identify")
    p.add_argument(
        "--library",
        nargs="+",
        required=True,
        metavar="PATH",
        help="library network files or directories, or a fingerprint index ('nnequiv index build')",
    )
    p.add_argument("--top", type=int, default=5, help="matches shown (default: 5)")
    _add_eps(p)
    _add_outputs(p, "the matches", plot=False)

    _add_index_parser(sub, method)

    from nnequiv.connectomes import NULL_MODELS

    p = sub.add_parser(
        "null",
        help="write a strength-preserving randomised connectome",
        description="Weighted edge swaps that keep every node's in- and out-strength.",
    )
    p.add_argument("source", help="connectome file (npz, CSV or GraphML)")
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT.npz", help="output file; must end in .npz"
    )
    p.add_argument("--seed", type=int, default=0, help="fixes the swaps (default: 0)")
    p.add_argument(
        "--kind",
        default=NULL_MODELS[0],
        choices=NULL_MODELS,
        help=f"null model (default: {NULL_MODELS[0]})",
    )
    return parser


def expand_paths(paths) -> list[str]:
    """Files as given; directories expand to the networks they hold (a directory of
    safetensors shards is one network)."""
    from nnequiv.connectomes import CONNECTOME_SUFFIXES
    from nnequiv.loading import MODEL_SUFFIXES

    out = []
    for item in paths:
        path = Path(item)
        if path.is_dir() and not list(path.glob("*.safetensors.index.json")):
            found = sorted(
                str(p)
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES | CONNECTOME_SUFFIXES
            )
            if not found:
                raise InputError(f"{path}: directory holds no network files")
            out += found
        else:
            out.append(str(path))
    return out


def _options(args, distance: bool) -> dict:
    """The library keyword options given on the command line (None: the library default)."""
    groups = [Settings, LoadOptions, ConnectomeOptions] + ([DistanceSettings] if distance else [])
    names = [f.name for group in groups for f in fields(group)]
    options = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    options.update(_run_options(args))
    return options


class _Progress:
    """A tqdm bar on stderr, only when stderr is a terminal."""

    def __init__(self, description: str):
        self.bar = None
        self.description = description

    def __call__(self, done: int, total: int, label: str) -> None:
        if not sys.stderr.isatty():
            return
        if self.bar is None:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, desc=self.description, file=sys.stderr, leave=False)
        self.bar.update(done - self.bar.n)
        self.bar.set_postfix_str(Path(label).name[:30])

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        if self.bar is not None:
            self.bar.close()


def _emit(args, payload: dict, text: str, csv_text: str | None = None) -> None:
    print(json.dumps(payload, indent=2) if args.json else text)
    if getattr(args, "csv", None) and csv_text is not None:
        Path(args.csv).write_text(csv_text)


def _null(args) -> None:
    from nnequiv.connectomes import null_model, save_connectome

    if Path(args.output).suffix.lower() != ".npz":
        raise InputError(f"{args.output}: the output of 'null' must end in .npz")
    null = null_model(args.source, seed=args.seed, kind=args.kind)
    save_connectome(null, args.output)
    print(f"wrote {args.output}: {args.kind} null of {args.source} (seed {args.seed})")


def run(argv=None) -> int:
    """Run one command; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "null":
        _null(args)
        return 0
    if args.command == "index":
        return _index(args)
    import nnequiv
    from nnequiv import reporting

    options = _options(args, distance=args.command != "analyze")
    if args.command == "analyze":
        from nnequiv.cache import analyze_cached

        options.pop("scheduler", None)
        analysis = analyze_cached(args.path, **options)
        _emit(
            args,
            analysis.to_dict(),
            reporting.format_analysis(analysis),
            reporting.layers_csv(analysis),
        )
        if args.plot:
            from nnequiv import figures

            figures.plot_analysis(analysis, args.plot)
    elif args.command == "compare":
        verdict = nnequiv.compare(args.a, args.b, eps=args.eps, **options)
        _emit(
            args,
            verdict.to_dict(),
            reporting.format_verdict(verdict),
            reporting.verdict_csv(verdict),
        )
    elif args.command == "cluster":
        with _Progress("analysing") as progress:
            classes = nnequiv.cluster(
                expand_paths(args.paths), eps=args.eps, progress=progress, **options
            )
        _emit(
            args,
            classes.to_dict(),
            reporting.format_classes(classes),
            reporting.classes_csv(classes),
        )
        if args.plot:
            from nnequiv import figures

            figures.plot_classes(classes, args.plot)
    elif args.command == "identify":
        with _Progress("analysing") as progress:
            result = nnequiv.identify(
                args.query,
                expand_paths(args.library),
                top=args.top,
                eps=args.eps,
                progress=progress,
                **options,
            )
        _emit(
            args,
            result.to_dict(),
            reporting.format_identification(result),
            reporting.identification_csv(result),
        )
    return 0


# ---- caches, schedulers and fingerprint indexes ------------------------------------------


def _add_cache_options(group) -> None:
    """--cache-dir and --no-cache: the cache of whole analyses (nnequiv.cache)."""
    group.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="cache of whole analyses, keyed by content and settings (default: "
        "$NNEQUIV_CACHE_DIR, else the user cache directory)",
    )
    group.add_argument(
        "--no-cache",
        action="store_true",
        help="neither read nor write the analysis cache",
    )


def _add_scheduler(parser: argparse.ArgumentParser) -> None:
    """--scheduler: where the analyses of a set run (nnequiv.scheduler)."""
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the analyses on this Dask scheduler, e.g. tcp://host:8786; the numbers do "
        "not change (default: $NNEQUIV_SCHEDULER, else this machine)",
    )


def _run_options(args) -> dict:
    """Where analyses are cached and run, from the command line (None: the default)."""
    return {
        "cache_dir": False if getattr(args, "no_cache", False) else args.cache_dir,
        "n_jobs": args.n_jobs,
        "scheduler": getattr(args, "scheduler", None),
    }


def _add_index_parser(sub, method: argparse.ArgumentParser) -> None:
    """nnequiv index build | add | list."""
    p = sub.add_parser(
        "index",
        help="fingerprint indexes of many networks",
        description="A fingerprint index is one SQLite file with what the distances of many "
        "networks need; 'identify --library' and 'cluster' read it instead of analysing "
        "the networks again.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    scheduler = argparse.ArgumentParser(add_help=False)
    _add_scheduler(scheduler)
    q = actions.add_parser(
        "build",
        parents=[method, scheduler],
        help="analyse networks and write their index",
        description="Analyse networks (cached, optionally on a Dask cluster) and write "
        "their fingerprint index, replacing OUTPUT.",
    )
    q.add_argument("paths", nargs="+", metavar="PATH", help="network files or directories")
    q.add_argument("-o", "--output", required=True, metavar="LIB", help="the index file")
    q.add_argument("--json", action="store_true", help="print the index as JSON")
    q = actions.add_parser(
        "add",
        parents=[method, scheduler],
        help="add networks to an index",
        description="Analyse networks with the index's settings and add them (a network "
        "with the same label is replaced).",
    )
    q.add_argument("index", metavar="LIB", help="the index file")
    q.add_argument("paths", nargs="+", metavar="PATH", help="network files or directories")
    q.add_argument("--json", action="store_true", help="print the index as JSON")
    q = actions.add_parser(
        "list", help="the networks of an index", description="The networks of an index."
    )
    q.add_argument("index", metavar="LIB", help="the index file")
    q.add_argument("--json", action="store_true", help="print the index as JSON")


def _format_library(library) -> str:
    settings = ", ".join(
        f"{k}={v}" for k, v in library.settings.to_dict().items() if k not in ("locations", "grid")
    )
    lines = [
        f"index {library.path}: {len(library)} networks, nnequiv {library.version}",
        f"settings: {settings}",
        f"{'layers':>6}  {'content':<12}  network",
    ]
    for entry in library.entries:
        lines.append(
            f"{entry.summary.orders.size:>6}  {entry.content_hash[:12]:<12}  {entry.label}"
        )
    return "\n".join(lines)


def _index(args) -> int:
    from nnequiv.index import add_to_index, build_index, open_index

    if args.action == "list":
        library = open_index(args.index)
    else:
        options = _options(args, distance=False)
        with _Progress("analysing") as progress:
            if args.action == "build":
                library = build_index(
                    expand_paths(args.paths), args.output, progress=progress, **options
                )
            else:
                library = add_to_index(
                    args.index, expand_paths(args.paths), progress=progress, **options
                )
    print(json.dumps(library.to_dict(), indent=2) if args.json else _format_library(library))
    return 0


def main(argv=None) -> None:
    """Entry point: errors become one line on stderr and a non-zero exit status."""
    try:
        code = run(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (``nnequiv ... | head``): stop quietly, as a Unix tool does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    except (NNEquivError, OSError, ValueError) as exc:
        message = " ".join(str(exc).split())
        print(f"nnequiv: error: {message}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("nnequiv: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
