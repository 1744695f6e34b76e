"""The ``nnequiv`` command line: analyze, compare, cluster, identify, report, index, null.

The arguments and options are :mod:`nnequiv._cli_parser`'s, generated from
:mod:`nnequiv.settings`. Shell completion comes from
``argcomplete`` where it is installed (``eval "$(register-python-argcomplete nnequiv)"``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path

from nnequiv._cli_parser import build_parser
from nnequiv._display import printable
from nnequiv.errors import InputError, NNEquivError
from nnequiv.settings import ConnectomeOptions, DistanceSettings, LoadOptions, Settings


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
        self.bar.set_postfix_str(printable(Path(label).name[:30]))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        if self.bar is not None:
            self.bar.close()


def _emit(args, payload: dict, text: str, csv_text: str | None = None) -> None:
    skipped = getattr(args, "skipped_inputs", None)
    if skipped:
        payload = {**payload, "skipped": skipped.to_list()}
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
    print(printable(f"wrote {args.output}: {args.kind} null of {args.source} (seed {args.seed})"))


def _write_report(path: str | None, analyses, skipped=(), **results) -> None:
    if path:
        from nnequiv.output.html import write_report

        _require_suffix(path, (".html", ".htm"), "an HTML report")
        write_report(path, analyses=analyses, skipped=list(skipped), **results)


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
    parser = build_parser()
    _complete(parser)
    args = parser.parse_args(argv)
    _NOTES["shown"] = bool(getattr(args, "verbose", False)) or sys.stderr.isatty()
    if args.command == "null":
        _null(args)
        return 0
    if args.command == "index":
        return _index(args)
    import nnequiv
    from nnequiv._pipeline import require_analyses, too_deep
    from nnequiv.equivalence import analyze_all, check_eps
    from nnequiv.output import text as reporting

    check_eps(getattr(args, "eps", None))
    check_eps(getattr(args, "eps_design", None), "eps_design")
    if args.command == "calibrate":
        return _calibrate(args)
    options = _options(args, distance=args.command != "analyze")
    tolerances = {
        "eps": getattr(args, "eps", None),
        "eps_design": getattr(args, "eps_design", None),
        "calibration": getattr(args, "calibration", None),
    }
    distance_names = {f.name for f in fields(DistanceSettings)}
    analysis_options = {k: v for k, v in options.items() if k not in distance_names}
    if args.command == "report":
        _require_suffix(args.output, (".html", ".htm"), "an HTML report")
    failed = args.skipped_inputs = _Failures()
    if args.command == "analyze":
        options.pop("scheduler", None)
        source, label = _one_network(args.path, args.connectome)
        with _Progress("layers") as progress:
            try:
                analysis = nnequiv.analyze(source, progress=progress, **options)
            except RecursionError:
                raise too_deep(label or args.path) from None
        analysis = replace(analysis, source=label or analysis.source)
        _emit(
            args,
            analysis.to_dict(),
            reporting.format_analysis(analysis),
            reporting.layers_csv(analysis),
        )
        if args.plot:
            from nnequiv.output import plots as figures

            figures.plot_analysis(analysis, args.plot)
        _write_report(args.report, [analysis])
        return 0
    paths = {
        "compare": lambda: [args.a, args.b],
        "cluster": lambda: args.paths,
        "report": lambda: args.paths,
        "identify": lambda: [args.query, *args.library],
    }[args.command]()
    with _Progress("analysing") as progress, failed.counted():
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
        require_analyses(analyses, "a report")
    if args.command == "compare" and args.plot:
        require_analyses(analyses, "--plot")
    if args.command == "compare":
        verdict = nnequiv.compare(*analyses, **tolerances, **options)
        text, table = reporting.format_verdict(verdict), reporting.verdict_csv(verdict)
        _emit(args, verdict.to_dict(), text, table)
        if args.plot:
            from nnequiv.output import plots as figures

            for analysis in analyses:
                figures.plot_analysis(analysis, args.plot)
            figures.plot_pair(*analyses, verdict, args.plot)
        _write_report(args.report, analyses, failed, verdict=verdict)
    elif args.command in ("cluster", "report"):
        several = len(analyses) > 1 or args.command == "cluster"
        classes = nnequiv.cluster(analyses, **tolerances, **options) if several else None
        if args.command == "report":
            _write_report(args.output, analyses, failed, classes=classes)
            print(printable(f"wrote {args.output}: {len(analyses)} networks"))
            return failed.finish()
        text, table = reporting.format_classes(classes), reporting.classes_csv(classes)
        _emit(args, classes.to_dict(), text, table)
        if args.plot:
            from nnequiv.output import plots as figures

            figures.plot_classes(classes, args.plot)
        _write_report(args.report, analyses, failed, classes=classes)
    elif args.command == "identify":
        result = nnequiv.identify(analyses[0], analyses[1:], top=args.top, **tolerances, **options)
        _emit(
            args,
            result.to_dict(),
            reporting.format_identification(result),
            reporting.identification_csv(result),
        )
        _write_report(args.report, analyses, failed, identification=result)
    return failed.finish()


def _calibrate(args) -> int:
    """nnequiv calibrate: fit the design tolerance and write it as JSON."""
    from nnequiv.equivalence import calibrate
    from nnequiv.output import text as reporting

    _require_suffix(args.output, (".json",), "the output of 'calibrate'")
    options = _options(args, distance=False)
    options.pop("scheduler", None)
    with _Progress("analysing") as progress:
        calibration = calibrate(
            args.paths,
            args.families,
            max_false_rate=args.max_false_rate,
            progress=progress,
            **options,
        )
    calibration.save(args.output)
    print(
        json.dumps(calibration.to_dict(), indent=2)
        if args.json
        else reporting.format_calibration(calibration, args.output)
    )
    return 0


#: Whether notes are printed: on a terminal, or with --verbose (set by :func:`run`).
_NOTES = {"shown": True}


def _note(line: str) -> None:
    """A note on stderr (a file skipped and why), where notes are shown."""
    if _NOTES["shown"]:
        print(printable(f"nnequiv: {line}"), file=sys.stderr)


class _Failures(list):
    """The inputs skipped under ``--keep-going``, as ``(input, reason)``. Called as
    ``on_error``, it records one and prints it in one line."""

    def __call__(self, label: str, error: Exception) -> None:
        reason = _one_line(error)
        first, _, rest = reason.partition(": ")
        if rest and (first == label or os.path.basename(first) == os.path.basename(label)):
            reason = rest  # the message's own name of the input, said once
        self.append((label, reason))
        print(printable(f"nnequiv: skipped: {label}: {reason}"), file=sys.stderr)

    def to_list(self) -> list[dict]:
        return [{"input": label, "reason": reason} for label, reason in self]

    @contextmanager
    def counted(self):
        """Errors that end the run (nothing could be analysed) say how many were skipped."""
        try:
            yield
        except InputError as error:
            if not self:
                raise
            count = f"{len(self)} input{'s' if len(self) > 1 else ''}"
            raise InputError(f"{_one_line(error)} ({count} skipped, see above)") from error

    def finish(self) -> int:
        """The exit status once at least one input was analysed (0), after the last line
        counting the inputs skipped."""
        if self:
            count = f"{len(self)} input{'s' if len(self) > 1 else ''}"
            print(f"nnequiv: skipped {count} (--keep-going); see above", file=sys.stderr)
        return 0


def _one_network(path: str, connectomes: bool) -> tuple:
    """``(source, label)`` of the one network at ``path``: a file as it is (the loader reads
    it once), or what a folder, Hugging Face cache folder or hub id holds when that is one
    network or checkpoint. A fingerprint index is refused: it holds no whole analysis.
    ``label`` is the hub id or checkpoint that names a network in a folder, else its path
    (None for a file)."""
    from nnequiv.discovery import discover
    from nnequiv.index import is_index

    if os.path.lexists(path) and not os.path.isdir(path):
        if is_index(path):
            raise InputError(
                f"{path}: a fingerprint index holds layer summaries, not the whole analysis "
                "that analyze shows; give the network's file"
            )
        return path, None
    found = discover(path, connectomes=connectomes, notes=_note)
    if len(found) > 1:
        named = ", ".join(item.label for item in found[:3]) + (", ..." if len(found) > 3 else "")
        raise InputError(
            f"{path}: holds {len(found)} networks ({named}); analyze takes one "
            "(cluster or report takes many)"
        )
    item = found[0]
    named = item.path is None or not item.label.endswith(item.path.name)  # org/name, checkpoint
    return item.source, item.label if named else str(item.path)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


# ---- caches, schedulers and fingerprint indexes ------------------------------------------


def _run_options(args) -> dict:
    """Where analyses are cached and run, from the command line (None: the default)."""
    return {
        "cache_dir": False if getattr(args, "no_cache", False) else args.cache_dir,
        "n_jobs": args.n_jobs,
        "scheduler": getattr(args, "scheduler", None),
    }


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
    return "\n".join(printable(line) for line in lines)


def _index(args) -> int:
    from nnequiv.index import add_to_index, build_index, open_index

    failed = args.skipped_inputs = _Failures()
    if args.action == "list":
        library = open_index(args.index)
    else:
        options = _options(args, distance=False)
        options.update(notes=_note, on_error=failed if args.keep_going else None)
        with _Progress("analysing") as progress, failed.counted():
            if args.action == "build":
                library = build_index(args.paths, args.output, progress=progress, **options)
            else:
                library = add_to_index(
                    args.index, args.paths, progress=progress, replace=args.replace, **options
                )
    if not args.json:
        for change in library.changes:
            print(printable(change.line()))
    _emit(args, library.to_dict(), _format_library(library))
    return failed.finish()


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
    except (NNEquivError, OSError) as exc:  # bad input; any other exception is a bug: traceback
        print(printable(f"nnequiv: error: {_one_line(exc)}"), file=sys.stderr)
        code = 1
    except RecursionError:  # outside an analysis (which names its input)
        print("nnequiv: error: an input is nested too deeply to be read", file=sys.stderr)
        code = 1
    except MemoryError as exc:  # outside an analysis (which names its input)
        print(f"nnequiv: error: out of memory ({_one_line(exc) or 'MemoryError'})", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("nnequiv: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
