"""Deprecated: the HTML report moved to :mod:`nnequiv.output.html`; this alias goes in the
next release."""

from nnequiv.output import html
from nnequiv.output._deprecated import moved

_HOMES = dict.fromkeys(html.__all__, "nnequiv.output.html")
__all__ = list(_HOMES)
__getattr__, __dir__ = moved(__name__, _HOMES)
