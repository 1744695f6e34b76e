"""Exception types of nnequiv (also importable from ``nnequiv`` itself).

Every error that nnequiv raises on bad input derives from :class:`NNEquivError`, carries a
one-line message that says what went wrong and where (file, tensor), and is turned into a
single line on stderr with a non-zero exit status by the command-line interface. Any other
exception is a bug in nnequiv and the command line shows its traceback.

The tree::

    NNEquivError
    +-- InputError (also a ValueError)
    |   +-- FormatError
    |   +-- UnsafeFileError
    |   +-- ResourceLimitError
    |   +-- InvalidWeightsError
    |   +-- NoLayersError
    +-- MissingDependencyError (also an ImportError)

:class:`InputError` stays a subclass of :class:`ValueError` (and
:class:`MissingDependencyError` of :class:`ImportError`), so code written against the bare
``ValueError`` that public functions raised before keeps working; catch
:class:`NNEquivError` to catch everything nnequiv refuses.

Examples
--------
>>> import nnequiv
>>> try:
...     nnequiv.circular_eigenphases("CUE", n=0, realizations=1, seed=0)
... except nnequiv.InputError as error:
...     print(error)
matrix order n must be an integer >= 1, got 0
>>> issubclass(nnequiv.InputError, ValueError)
True
"""

from __future__ import annotations

__all__ = [
    "NNEquivError",
    "InputError",
    "FormatError",
    "UnsafeFileError",
    "ResourceLimitError",
    "InvalidWeightsError",
    "NoLayersError",
    "MissingDependencyError",
]


class NNEquivError(Exception):
    """Base class of every error raised by nnequiv on bad input or configuration."""


class InputError(NNEquivError, ValueError):
    """A source or argument cannot be used (missing file, empty set, bad option)."""


class FormatError(InputError):
    """A file is of an unknown format, truncated or corrupt."""


class UnsafeFileError(InputError):
    """A file would make nnequiv run its code or reach beyond it: a pickle that needs foreign
    classes or functions, an HDF5 external link, external storage or virtual dataset, ONNX
    external data outside the model's directory, or a FIFO, device or other non-regular file."""


class ResourceLimitError(InputError):
    """A file declares a tensor (or a member holding tensors) larger than ``max_tensor_bytes``,
    or a decompressed member larger than its declared size."""


class InvalidWeightsError(InputError):
    """A weight tensor holds NaN or Inf values, or a matrix is otherwise unusable."""


class NoLayersError(InputError):
    """A source has no tensor that qualifies as a layer matrix."""


class MissingDependencyError(NNEquivError, ImportError):
    """An optional dependency needed for a format or feature is not installed."""

    def __init__(self, package: str, extra: str, purpose: str):
        self.package = package
        self.extra = extra
        super().__init__(f"{purpose} needs the '{package}' package: pip install 'nnequiv[{extra}]'")


#: Longest text taken from a file into a message.
SHOWN_CHARS = 120


def shown(text, limit: int = SHOWN_CHARS) -> str:
    """``text`` made safe for a one-line message: escapes for every unprintable character,
    runs of whitespace as one space, at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    safe = "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in flat
    )
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."
