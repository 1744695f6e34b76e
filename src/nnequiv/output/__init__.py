"""What people read: text tables and CSV (:mod:`~nnequiv.output.text`), the self-contained
HTML report (:mod:`~nnequiv.output.html`) and figure files (:mod:`~nnequiv.output.plots`,
the ``plot`` extra). The report's SVG and the figure files draw one set of figure data.
"""

from nnequiv.output.html import render_report, require_analyses, write_report
from nnequiv.output.plots import plot_analysis, plot_classes, plot_pair
from nnequiv.output.text import (
    classes_csv,
    format_analysis,
    format_calibration,
    format_classes,
    format_identification,
    format_verdict,
    identification_csv,
    layers_csv,
    verdict_csv,
)

__all__ = [
    "render_report",
    "write_report",
    "require_analyses",
    "plot_analysis",
    "plot_pair",
    "plot_classes",
    "format_analysis",
    "format_verdict",
    "format_classes",
    "format_identification",
    "format_calibration",
    "layers_csv",
    "verdict_csv",
    "classes_csv",
    "identification_csv",
]
