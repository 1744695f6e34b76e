"""The ``nnequiv`` command line: analyze, compare, cluster, identify, null."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nnequiv import __version__
from nnequiv.errors import InputError, NNEquivError
from nnequiv.loading import LAYOUTS

COMMANDS = ("analyze", "compare", "cluster", "identify", "null")


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("method options (docs/method.md)")
    group.add_argument(
        "--ensemble",
        default="CUE",
        type=str.upper,
        choices=["COE", "CUE", "CSE"],
        help="conjugate circular ensemble (default CUE)",
    )
    group.add_argument(
        "--realizations", type=int, default=10, help="conjugate ensembles drawn (default 10)"
    )
    group.add_argument("--seed", type=int, default=0, help="fixes every draw (default 0)")
    group.add_argument("--normalization", default="median", choices=["median", "mean", "none"])
    group.add_argument(
        "--fingerprint",
        default="signed",
        choices=["signed", "absolute"],
        help="layer-resolved CSD point (default signed)",
    )
    group.add_argument(
        "--order-weight",
        type=float,
        help="weight of log n in a layer point (default sqrt of the number of locations)",
    )
    group.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="keep only tensors whose name matches (repeatable)",
    )
    group.add_argument(
        "--exclude",
        action="append",
        metavar="PATTERN",
        help="drop tensors whose name matches (repeatable)",
    )
    group.add_argument(
        "--layout",
        type=str.lower,
        choices=sorted(LAYOUTS),
        help="force the tensor layout (default: known or inferred)",
    )
    group.add_argument(
        "--mixture",
        type=float,
        default=0.5,
        help="connectomes: node inclusion probability p (default 0.5)",
    )
    group.add_argument(
        "--draws", type=int, default=32, help="connectomes: submatrices per matrix (default 32)"
    )
    group.add_argument("--cache-dir", help="on-disk cache of layer spectra")
    group.add_argument(
        "-j",
        "--jobs",
        type=int,
        dest="n_jobs",
        metavar="N",
        help="worker processes for the circular ensembles (-1: every core; same results)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnequiv",
        description="Equivalence of neural networks from their weights via "
        "conjugate circular ensembles (docs/method.md).",
    )
    parser.add_argument("--version", action="version", version=f"nnequiv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("analyze", help="CSD and decay rate of one network")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", metavar="DIR", help="write PNG and SVG figures to DIR")
    _add_method_options(p)

    p = sub.add_parser("compare", help="are two networks equivalent?")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--level", choices=["layer", "pooled"], default="layer")
    p.add_argument("--eps", type=float, help="accuracy (default: calibrated)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="DIR")
    _add_method_options(p)

    p = sub.add_parser("cluster", help="equivalence classes of many networks")
    p.add_argument("paths", nargs="+", help="files or directories of networks")
    p.add_argument("--level", choices=["layer", "pooled"], default="layer")
    p.add_argument("--eps", type=float, help="accuracy (default: calibrated)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--csv", metavar="FILE", help="write classes and distances as CSV")
    p.add_argument("--plot", metavar="DIR")
    _add_method_options(p)

    p = sub.add_parser("identify", help="which known design is this network?")
    p.add_argument("query")
    p.add_argument("--library", nargs="+", required=True, metavar="DIR_OR_PATH")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--level", choices=["layer", "pooled"], default="layer")
    p.add_argument("--json", action="store_true")
    _add_method_options(p)

    p = sub.add_parser("null", help="write a degree-preserving randomised connectome")
    p.add_argument("source")
    p.add_argument("-o", "--output", required=True, help="output .npz")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kind", default="degree-preserving", choices=["degree-preserving"])
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


def _options(args) -> dict:
    """The method options given on the command line: the Settings fields it has flags for."""
    from dataclasses import fields

    from nnequiv.equivalence import Settings

    options = {f.name: getattr(args, f.name) for f in fields(Settings) if hasattr(args, f.name)}
    return {**options, "cache_dir": args.cache_dir, "n_jobs": args.n_jobs}


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


def _emit(args, payload: dict, text: str) -> None:
    print(json.dumps(payload, indent=2) if args.json else text)


def run(argv=None) -> int:
    args = _parser().parse_args(argv)
    import nnequiv
    from nnequiv import figures, reporting

    if args.command == "null":
        from nnequiv.connectomes import null_model, save_connectome

        null = null_model(args.source, seed=args.seed, kind=args.kind)
        save_connectome(null, args.output)
        print(f"wrote {args.output}: degree-preserving null of {args.source} (seed {args.seed})")
        return 0
    options = _options(args)
    if args.command == "analyze":
        analysis = nnequiv.analyze(args.path, **options)
        _emit(args, analysis.to_dict(), reporting.format_analysis(analysis))
        if args.plot:
            figures.plot_analysis(analysis, args.plot)
    elif args.command == "compare":
        analyses = [nnequiv.analyze(path, **options) for path in (args.a, args.b)]
        verdict = nnequiv.compare(*analyses, level=args.level, eps=args.eps, **options)
        _emit(args, verdict.to_dict(), reporting.format_verdict(verdict))
        if args.plot:
            for analysis in analyses:
                figures.plot_analysis(analysis, args.plot)
    elif args.command == "cluster":
        with _Progress("analysing") as progress:
            classes = nnequiv.cluster(
                expand_paths(args.paths),
                eps=args.eps,
                level=args.level,
                progress=progress,
                **options,
            )
        _emit(args, classes.to_dict(), reporting.format_classes(classes))
        if args.csv:
            Path(args.csv).write_text(reporting.classes_csv(classes))
        if args.plot:
            figures.plot_classes(classes, args.plot)
    elif args.command == "identify":
        with _Progress("analysing") as progress:
            result = nnequiv.identify(
                args.query,
                expand_paths(args.library),
                top=args.top,
                level=args.level,
                progress=progress,
                **options,
            )
        _emit(args, result.to_dict(), reporting.format_identification(result))
    return 0


def main(argv=None) -> None:
    """Entry point: errors become one line on stderr and a non-zero exit status."""
    try:
        code = run(argv)
    except (NNEquivError, OSError, ValueError) as exc:
        print(f"nnequiv: error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("nnequiv: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
