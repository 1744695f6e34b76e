"""Deprecated: text tables and CSV moved to :mod:`nnequiv.output.text`; this alias goes in the
next release."""

from nnequiv.output import text
from nnequiv.output._deprecated import moved

_HOMES = dict.fromkeys(text.__all__, "nnequiv.output.text")
__all__ = list(_HOMES)
__getattr__, __dir__ = moved(__name__, _HOMES)
