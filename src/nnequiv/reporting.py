"""Deprecated: text tables and CSV moved to :mod:`nnequiv.output.text`; this alias goes in the
next release."""

from nnequiv.output._deprecated import moved

_HOMES = dict.fromkeys(
    [
        "format_analysis",
        "format_verdict",
        "format_classes",
        "format_identification",
        "format_calibration",
        "layers_csv",
        "verdict_csv",
        "classes_csv",
        "identification_csv",
    ],
    "nnequiv.output.text",
)
__all__ = list(_HOMES)


def __getattr__(name: str):
    return moved(__name__, name, _HOMES)


def __dir__() -> list[str]:
    return sorted(_HOMES)
