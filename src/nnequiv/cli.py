"""The ``nnequiv`` command line: analyze, compare, cluster, identify, report, index, null.

Every method option is generated from :mod:`nnequiv.settings` (help text, choices, default),
so the command line and the library share one set of defaults. Shell completion comes from
``argcomplete`` where it is installed (``eval "$(register-python-argcomplete nnequiv)"``).
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

COMMANDS = ("analyze", "compare", "cluster", "identify", "report", "index", "null")
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
        if isinstance(default, bool):
            text += " (default: off)" if not default else " (default: on)"
        elif "default:" not in text:
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
    group.add_argument(
        "--connectome",
        action="store_true",
        help="read CSV files as connectomes (edge lists or adjacency matrices); without it a "
        "CSV counts only when it parses as one, never a table such as a manifest "
        "(default: off)",
    )
    group.add_argument(
        "--keep-going",
        action="store_true",
        help="when a network cannot be read, print its one-line error, go on with the rest, "
        "and exit with status 1 at the end (default: stop at the first error)",
    )
    _add_cache_options(group)
    group.add_argument(
        "-j",
        "--jobs",
        type=int,
        dest="n_jobs",
        metavar="N",
        help="worker processes: the networks of a set in parallel, or the layers (safetensors) "
        "and circular ensembles of one network; -1: every core; the numbers do not change "
        "(default: 1)",
    )


def _add_outputs(parser: argparse.ArgumentParser, table: str, plot: bool = True) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--json",
        action="store_true",
        help="print the result as JSON instead of text (default: text)",
    )
    group.add_argument(
        "--csv", metavar="FILE", help=f"also write {table} as CSV to FILE (default: no CSV)"
    )
    if plot:
        group.add_argument(
            "--plot",
            metavar="DIR",
            help="also write PNG and SVG figures to DIR (default: no figures)",
        )
    group.add_argument(
        "--report",
        metavar="FILE.html",
        help="also write a self-contained HTML report (figures, tables, settings) to "
        "FILE.html (default: no report)",
    )


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

    p = sub.add_parser(
        "report",
        parents=[method, distance],
        help="one HTML report of many networks",
        description="Analyse networks, sort them into classes and write one self-contained "
        "HTML report: heatmap, dendrogram, CSD curves per class, the network table.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="network files or directories")
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT.html", help="output file; must end in .html"
    )
    _add_eps(p)

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


def _require_suffix(path: str, suffixes: tuple[str, ...], what: str) -> None:
    if Path(path).suffix.lower() not in suffixes:
        raise InputError(f"{path}: {what} must end in {' or '.join(suffixes)}")


def _null(args) -> None:
    from nnequiv.connectomes import null_model, save_connectome

    _require_suffix(args.output, (".npz",), "the output of 'null'")
    null = null_model(args.source, seed=args.seed, kind=args.kind)
    save_connectome(null, args.output)
    print(f"wrote {args.output}: {args.kind} null of {args.source} (seed {args.seed})")


def _write_report(path: str | None, analyses, **results) -> None:
    if path:
        from nnequiv.report import write_report

        _require_suffix(path, (".html", ".htm"), "an HTML report")
        write_report(path, analyses=analyses, **results)


def _complete(parser: argparse.ArgumentParser) -> None:
    """Answer a shell's completion request (argcomplete sets ``_ARGCOMPLETE``) and exit."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def run(argv=None) -> int:
    """Run one command; returns the exit status."""
    parser = _parser()
    _complete(parser)
    args = parser.parse_args(argv)
    if args.command == "null":
        _null(args)
        return 0
    if args.command == "index":
        return _index(args)
    import nnequiv
    from nnequiv import reporting
    from nnequiv.equivalence import analyze_all, check_eps

    check_eps(getattr(args, "eps", None))
    options = _options(args, distance=args.command != "analyze")
    distance_names = {f.name for f in fields(DistanceSettings)}
    analysis_options = {k: v for k, v in options.items() if k not in distance_names}
    if args.command == "report":
        _require_suffix(args.output, (".html", ".htm"), "an HTML report")
    failed = _Failures()
    if args.command == "analyze":
        options.pop("scheduler", None)
        source = _one_network(args.path, args.connectome)
        with _Progress("layers") as progress:
            analysis = nnequiv.analyze(source, progress=progress, **options)
        _emit(
            args,
            analysis.to_dict(),
            reporting.format_analysis(analysis),
            reporting.layers_csv(analysis),
        )
        if args.plot:
            from nnequiv import figures

            figures.plot_analysis(analysis, args.plot)
        _write_report(args.report, [analysis])
        return 0
    paths = {
        "compare": lambda: [args.a, args.b],
        "cluster": lambda: args.paths,
        "report": lambda: args.paths,
        "identify": lambda: [args.query, *args.library],
    }[args.command]()
    with _Progress("analysing") as progress:
        analyses = analyze_all(
            paths,
            progress=progress,
            connectomes=args.connectome,
            notes=_note,
            on_error=failed if args.keep_going else None,
            **analysis_options,
        )
    if args.command == "identify" and len(analyses) < 2:
        raise InputError(f"identify needs two networks or more; found {len(analyses)}")
    if args.command == "compare" and len(analyses) != 2:
        raise InputError(
            f"compare takes two networks; {args.a} and {args.b} hold {len(analyses)} "
            "(cluster, or identify --library, takes many)"
        )
    if args.command == "report" or getattr(args, "report", None):
        from nnequiv.report import require_analyses

        require_analyses(analyses)
    if args.command == "compare":
        verdict = nnequiv.compare(*analyses, eps=args.eps, **options)
        text, table = reporting.format_verdict(verdict), reporting.verdict_csv(verdict)
        _emit(args, verdict.to_dict(), text, table)
        if args.plot:
            from nnequiv import figures

            for analysis in analyses:
                figures.plot_analysis(analysis, args.plot)
            figures.plot_pair(*analyses, verdict, args.plot)
        _write_report(args.report, analyses, verdict=verdict)
    elif args.command in ("cluster", "report"):
        several = len(analyses) > 1 or args.command == "cluster"
        classes = nnequiv.cluster(analyses, eps=args.eps, **options) if several else None
        if args.command == "report":
            _write_report(args.output, analyses, classes=classes)
            print(f"wrote {args.output}: {len(analyses)} networks")
            return 1 if failed else 0
        text, table = reporting.format_classes(classes), reporting.classes_csv(classes)
        _emit(args, classes.to_dict(), text, table)
        if args.plot:
            from nnequiv import figures

            figures.plot_classes(classes, args.plot)
        _write_report(args.report, analyses, classes=classes)
    elif args.command == "identify":
        result = nnequiv.identify(analyses[0], analyses[1:], top=args.top, eps=args.eps, **options)
        _emit(
            args,
            result.to_dict(),
            reporting.format_identification(result),
            reporting.identification_csv(result),
        )
        _write_report(args.report, analyses, identification=result)
    return 1 if failed else 0


def _note(line: str) -> None:
    """A note on stderr (a file skipped and why)."""
    print(f"nnequiv: {line}", file=sys.stderr)


class _Failures(list):
    """The labels of the networks that failed; called as ``on_error`` (``--keep-going``), it
    records one and prints its error in one line."""

    def __call__(self, label: str, error: Exception) -> None:
        self.append(label)
        print(f"nnequiv: error: {_one_line(error)}", file=sys.stderr)


def _one_network(path: str, connectomes: bool) -> str:
    """The one network at ``path`` (a file, or a folder holding one network or checkpoint)."""
    from nnequiv.discovery import discover

    found = discover(path, connectomes=connectomes, notes=_note)
    if len(found) > 1:
        named = ", ".join(item.label for item in found[:3]) + (", ..." if len(found) > 3 else "")
        raise InputError(
            f"{path}: holds {len(found)} networks ({named}); analyze takes one "
            "(cluster or report takes many)"
        )
    return path if os.path.isfile(path) else found[0].source


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


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
        help="neither read nor write the analysis cache (default: use it)",
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
    actions = p.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="build, add or list"
    )
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
    q.add_argument("--json", action="store_true", help="print the index as JSON (default: text)")
    q = actions.add_parser(
        "add",
        parents=[method, scheduler],
        help="add networks to an index",
        description="Analyse networks with the index's settings and add them (a network "
        "with the same label is replaced).",
    )
    q.add_argument("index", metavar="LIB", help="the index file")
    q.add_argument("paths", nargs="+", metavar="PATH", help="network files or directories")
    q.add_argument("--json", action="store_true", help="print the index as JSON (default: text)")
    q = actions.add_parser(
        "list", help="the networks of an index", description="The networks of an index."
    )
    q.add_argument("index", metavar="LIB", help="the index file")
    q.add_argument("--json", action="store_true", help="print the index as JSON (default: text)")


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

    failed = _Failures()
    if args.action == "list":
        library = open_index(args.index)
    else:
        options = _options(args, distance=False)
        options.update(notes=_note, on_error=failed if args.keep_going else None)
        with _Progress("analysing") as progress:
            if args.action == "build":
                library = build_index(args.paths, args.output, progress=progress, **options)
            else:
                library = add_to_index(args.index, args.paths, progress=progress, **options)
    print(json.dumps(library.to_dict(), indent=2) if args.json else _format_library(library))
    return 1 if failed else 0


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
        print(f"nnequiv: error: {_one_line(exc)}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("nnequiv: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
