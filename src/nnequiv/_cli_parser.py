"""The ``nnequiv`` command line's grammar: commands, arguments and options.

Every method option is generated from :mod:`nnequiv.settings` (help text, choices, default),
so the command line and the library share one set of defaults; :mod:`nnequiv.cli` runs the
commands.
"""

from __future__ import annotations

import argparse

from nnequiv._version import __version__
from nnequiv.errors import InputError
from nnequiv.loading import LAYOUTS, apply_limit
from nnequiv.settings import (
    ConnectomeOptions,
    DistanceSettings,
    LoadOptions,
    Settings,
    field_default,
    option_fields,
)


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
        elif f.name in ("include", "exclude", "limits"):
            kwargs["action"] = "append"
            text += "; default: every tensor" if f.name == "include" else "; default: none"
            if f.name == "limits":  # applied as parsed: folders are searched under it too
                kwargs["type"] = _limit
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


def _limit(text: str) -> str:
    """``--limit NAME=VALUE``, applied to ``nnequiv.loading.LIMITS`` as it is parsed."""
    try:
        return apply_limit(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--limit ")) from None


def _type_of(default, f):
    if f.name == "ensemble":
        return str.upper
    if isinstance(default, bool):
        return None
    if isinstance(default, int) or f.name in ("submatrices", "realizations", "seed", "max_memory"):
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
        "-v",
        "--verbose",
        action="store_true",
        help="print a note on stderr for each file skipped and why, also when stderr is not a "
        "terminal (default: notes only on a terminal)",
    )
    group.add_argument(
        "--keep-going",
        action="store_true",
        help="when an input cannot be read, print 'skipped: INPUT: reason', go on with the "
        "rest, count the skipped inputs on the last line and list them in JSON and the "
        "report; exit 0 when at least one was analysed, 1 when none was (default: stop at "
        "the first error)",
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
    group = parser.add_argument_group("tolerances (docs/method.md items 11 and 15)")
    group.add_argument(
        "--eps",
        type=float,
        help="same-network resolution: pairs with d <= eps are the same network (default: "
        "calibrated per pair from the two networks' noise floors)",
    )
    group.add_argument(
        "--eps-design",
        type=float,
        metavar="E",
        help="design tolerance: pairs with design distance <= E are equivalent (default: "
        "the calibration's)",
    )
    group.add_argument(
        "--calibration",
        metavar="CAL.json",
        help="design calibration written by 'nnequiv calibrate' (default: the one shipped "
        "with nnequiv, fitted on labelled families)",
    )


def _method_parser() -> argparse.ArgumentParser:
    """The options every analysing command shares, as a parent parser."""
    parent = argparse.ArgumentParser(add_help=False)
    _add_settings(parent, Settings, "analysis settings (docs/method.md)")
    _add_settings(parent, LoadOptions, "reading files")
    _add_settings(parent, ConnectomeOptions, "connectomes")
    _add_run_options(parent)
    return parent


#: The help of a list of networks that may hold fingerprint indexes.
NETWORKS_OR_INDEXES = "network files or directories, or fingerprint indexes ('nnequiv index build')"


def _command(sub, name: str, parents: list, help: str, description: str):
    """A command (or an index action) with the option groups of ``parents``, its one-line
    help and its description."""
    return sub.add_parser(name, parents=parents, help=help, description=description)


def _add_networks(
    parser: argparse.ArgumentParser,
    name: str = "paths",
    *,
    help: str = "network files or directories",
    metavar: str = "PATH",
    required: bool = False,
) -> None:
    """The networks a command reads: one or more paths (``name`` a positional or an
    option)."""
    extra = {"required": True} if required else {}
    parser.add_argument(name, nargs="+", metavar=metavar, help=help, **extra)


def _add_output_file(parser: argparse.ArgumentParser, metavar: str, help: str = "") -> None:
    """-o/--output: the file a command writes, which must end as ``metavar`` does."""
    ending = metavar[metavar.rfind(".") :]
    help = help or f"output file; must end in {ending}"
    parser.add_argument("-o", "--output", required=True, metavar=metavar, help=help)


def _add_json(parser: argparse.ArgumentParser, what: str) -> None:
    """--json: print ``what`` as JSON instead of text."""
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON (default: text)")


def build_parser() -> argparse.ArgumentParser:
    """The ``nnequiv`` argument parser: every command with its arguments and options."""
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

    p = _command(
        sub,
        "analyze",
        [method],
        "CSD and decay rate of one network",
        "Compare one network's layer spectra with its conjugate circular ensemble: CSD, decay "
        "rate alpha with its interval, per-layer numbers.",
    )
    p.add_argument("path", help="network file, shard directory or connectome")
    _add_outputs(p, "the layer table")

    p = _command(
        sub,
        "compare",
        [method, distance],
        "are two networks equivalent?",
        "Distance between two networks, its spread, eps and the verdict.",
    )
    p.add_argument("a", help="first network")
    p.add_argument("b", help="second network")
    _add_eps(p)
    _add_outputs(p, "the verdict")

    p = _command(
        sub,
        "cluster",
        [method, distance],
        "equivalence classes of many networks",
        "Pairwise distances and verdicts at two resolutions, and the classes: the "
        "average-linkage tree of the design distances cut at the design tolerance.",
    )
    _add_networks(p, help=NETWORKS_OR_INDEXES)
    _add_eps(p)
    _add_outputs(p, "classes and distances")

    p = _command(
        sub,
        "identify",
        [method, distance],
        "which known design is this network?",
        "Rank library networks by design distance to a query network.",
    )
    p.add_argument("query", help="the network to identify")
    _add_networks(
        p,
        "--library",
        help="library network files or directories, or a fingerprint index ('nnequiv index build')",
        required=True,
    )
    p.add_argument("--top", type=int, default=5, help="matches shown (default: 5)")
    _add_eps(p)
    _add_outputs(p, "the matches", plot=False)

    p = _command(
        sub,
        "report",
        [method, distance],
        "one HTML report of many networks",
        "Analyse networks, sort them into classes and write one self-contained HTML report: "
        "heatmap, dendrogram, CSD curves per class, the network table.",
    )
    _add_networks(p)
    _add_output_file(p, "OUT.html")
    _add_eps(p)

    p = _command(
        sub,
        "calibrate",
        [method],
        "fit the design tolerance to your own labelled networks",
        "Analyse labelled networks, choose the structural weight and the design tolerance (at "
        "most --max-false-rate of pairs of different families equivalent), check them leaving "
        "one family out, and write them as JSON for --calibration.",
    )
    _add_networks(p, metavar="LIB")
    p.add_argument(
        "--families",
        required=True,
        metavar="MANIFEST.csv",
        help="CSV with a 'family' column and the file name in a 'file', 'path', 'name', "
        "'network' or 'model' column",
    )
    _add_output_file(p, "CAL.json")
    p.add_argument(
        "--max-false-rate",
        type=float,
        default=0.01,
        metavar="F",
        help="largest share of different-family pairs judged equivalent (default: 0.01)",
    )
    _add_json(p, "the calibration")

    _add_index_parser(sub, method)

    from nnequiv.connectomes import NULL_MODELS

    p = _command(
        sub,
        "null",
        [],
        "write a strength-preserving randomised connectome",
        "Weighted edge swaps that keep every node's in- and out-strength.",
    )
    p.add_argument("source", help="connectome file (npz, CSV or GraphML)")
    _add_output_file(p, "OUT.npz")
    p.add_argument("--seed", type=int, default=0, help="fixes the swaps (default: 0)")
    p.add_argument(
        "--kind",
        default=NULL_MODELS[0],
        choices=NULL_MODELS,
        help=f"null model (default: {NULL_MODELS[0]})",
    )
    return parser


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


def _add_index_parser(sub, method: argparse.ArgumentParser) -> None:
    """nnequiv index build | add | list."""
    p = _command(
        sub,
        "index",
        [],
        "fingerprint indexes of many networks",
        "A fingerprint index is one SQLite file with what the distances of many networks "
        "need; 'identify --library' and 'cluster' read it instead of analysing the networks "
        "again.",
    )
    actions = p.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="build, add or list"
    )
    scheduler = argparse.ArgumentParser(add_help=False)
    _add_scheduler(scheduler)
    q = _command(
        actions,
        "build",
        [method, scheduler],
        "analyse networks and write their index",
        "Analyse networks (cached, optionally on a Dask cluster) and write their fingerprint "
        "index, replacing OUTPUT.",
    )
    _add_networks(q)
    _add_output_file(q, "LIB", help="the index file")
    _add_json(q, "the index")
    q = _command(
        actions,
        "add",
        [method, scheduler],
        "add networks to an index",
        "Analyse networks with the index's settings and add them. The index never loses a "
        "network: one whose label another network holds is added under a longer label, "
        "unless --replace is given.",
    )
    q.add_argument("index", metavar="LIB", help="the index file")
    _add_networks(q)
    q.add_argument(
        "--replace",
        action="store_true",
        help="a network whose label the index holds replaces that network (default: it is "
        "added under a longer label)",
    )
    _add_json(q, "the index")
    q = _command(actions, "list", [], "the networks of an index", "The networks of an index.")
    q.add_argument("index", metavar="LIB", help="the index file")
    limits = next(f for f in option_fields(LoadOptions) if f.name == "limits")
    q.add_argument(
        "--limit", dest="limits", action="append", type=_limit, metavar="NAME=VALUE",
        help=limits.metadata["help"] + "; default: none",
    )  # fmt: skip
    _add_json(q, "the index")
