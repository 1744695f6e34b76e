"""Deprecated: the report's SVG figures moved to :mod:`nnequiv.output` (``svg_heatmap`` and
``svg_dendrogram`` now draw a ``ClassesFigure``); this alias goes in the next release."""

from nnequiv.output._deprecated import moved

_HOMES = {
    "viridis": "nnequiv.output._svg",
    "svg_curves": "nnequiv.output._svg",
    "Curve": "nnequiv.output._figure_data",
    "curve_of": "nnequiv.output._figure_data",
}
__all__ = list(_HOMES)
__getattr__, __dir__ = moved(__name__, _HOMES)
