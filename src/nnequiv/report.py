"""Deprecated: the HTML report moved to :mod:`nnequiv.output.html`; this alias goes in the
next release."""

from nnequiv.output._deprecated import moved

_HOMES = dict.fromkeys(
    ["render_report", "write_report", "require_analyses"],
    "nnequiv.output.html",
)
__all__ = list(_HOMES)


def __getattr__(name: str):
    return moved(__name__, name, _HOMES)


def __dir__() -> list[str]:
    return sorted(_HOMES)
