"""Old module names that still answer for one release, with a DeprecationWarning at each
name read (nnequiv.figures, nnequiv.report, nnequiv.report_svg, nnequiv.reporting)."""

from __future__ import annotations

import importlib
import warnings


def moved(old: str, name: str, homes: dict[str, str]):
    """``name`` read from the old module ``old`` (its ``__getattr__``): the object from its
    new home in ``homes`` (name -> module), with a DeprecationWarning for the reader."""
    if name not in homes:
        raise AttributeError(f"module {old!r} has no attribute {name!r}")
    warnings.warn(
        f"{old} is deprecated and goes in the next release: import {name} from {homes[name]}",
        DeprecationWarning,
        stacklevel=3,
    )
    return getattr(importlib.import_module(homes[name]), name)
