"""Deprecated: the figures moved to :mod:`nnequiv.output.plots` (matplotlib files) and their
data to :mod:`nnequiv.output`'s figure data; this alias goes in the next release."""

from nnequiv.output._deprecated import moved

_DATA, _WORDS = "nnequiv.output._figure_data", "nnequiv.output._words"
_HOMES = {
    **dict.fromkeys(["plot_analysis", "plot_pair", "plot_classes"], "nnequiv.output.plots"),
    **dict.fromkeys(["eps_label", "alpha_interval", "alpha_text"], _WORDS),
    "display_names": "nnequiv._display",
    **dict.fromkeys(
        ["CLASS_COLORS", "GREY", "class_color", "file_stem", "tree_order", "class_labels"]
        + ["class_runs", "link_classes", "x_range"],
        _DATA,
    ),
}
__all__ = [name for name in _HOMES if name != "GREY"]
__getattr__, __dir__ = moved(__name__, _HOMES)
