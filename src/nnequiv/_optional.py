"""Optional dependencies, imported where a format or feature needs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from nnequiv.errors import MissingDependencyError


def optional_module(name: str, extra: str, purpose: str) -> ModuleType:
    """The module ``name`` (dotted names import their packages too), or a
    :class:`~nnequiv.errors.MissingDependencyError` saying that ``purpose`` needs it and
    which extra of nnequiv installs it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        package = name.partition(".")[0]
        raise MissingDependencyError(package, extra, purpose) from None
