"""Old module names that still answer for one release, with a DeprecationWarning at each
name read (nnequiv.figures, nnequiv.report, nnequiv.report_svg, nnequiv.reporting)."""

from __future__ import annotations

import importlib
import warnings


def moved(old: str, homes: dict[str, str]):
    """``__getattr__`` and ``__dir__`` of the old module ``old``, whose names now live in
    the modules ``homes`` gives (name -> module); each name read warns its reader."""

    def __getattr__(name: str):
        if name not in homes:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(
            f"{old} is deprecated and goes in the next release: import {name} from {homes[name]}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(homes[name]), name)

    def __dir__() -> list[str]:
        return sorted(homes)

    return __getattr__, __dir__
