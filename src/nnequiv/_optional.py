"""Optional dependencies, imported where a format or feature needs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from nnequiv.errors import MissingDependencyError


def optional_module(name: str, extra: str, purpose: str) -> ModuleType:
    """The module ``name`` (dotted names import their packages too), or a
    :class:`~nnequiv.errors.MissingDependencyError` saying that ``purpose`` needs it and
    which extra of nnequiv installs it; the import's own error is its cause (a package that
    is installed but fails to import says why)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingDependencyError(name.partition(".")[0], extra, purpose) from exc
