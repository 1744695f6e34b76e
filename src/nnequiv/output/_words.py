"""How numbers, counts and fitted quantities read in every output: text, CSV, HTML and the
figures say them in the same words."""

from __future__ import annotations

import math

__all__ = ["number", "plural", "shortened", "eps_label", "alpha_interval", "alpha_text"]


def number(value, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits, or ``"n/a"`` where it is not finite."""
    value = float(value)
    return f"{value:.{digits}g}" if math.isfinite(value) else "n/a"


def plural(count: int, word: str, plural_word: str | None = None) -> str:
    """``"1 network"``, ``"2 networks"`` (or ``plural_word`` where the plural is not
    ``word + "s"``)."""
    return f"{count} {word if count == 1 else plural_word or word + 's'}"


def shortened(text: str, limit: int = 32) -> str:
    """``text``, cut to ``limit`` characters with an ellipsis where it is longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def eps_label(eps: float, source: str) -> str:
    """How a set's tolerance reads on a figure: the median of the pairs' eps where each pair
    was calibrated on its own (method item 11), the design tolerance, or the given value."""
    if source == "calibrated":
        return f"median eps = {eps:.4g} (calibrated per pair)"
    if source == "design":
        return f"eps_design = {eps:.4g}"
    return f"eps = {eps:.4g} ({source})"


def alpha_interval(decay) -> tuple[float, float] | None:
    """The interval of the decay rate (method item 8), where it is finite."""
    low, high = decay.interval
    return (float(low), float(high)) if math.isfinite(low) and math.isfinite(high) else None


def alpha_text(decay) -> str:
    """``alpha`` with its interval where it has one, else with the fit's standard error."""
    if not math.isfinite(decay.alpha):
        return "n/a (fewer than 3 tail bins)"
    interval = alpha_interval(decay)
    if interval is not None:
        return f"{decay.alpha:.3g} [{interval[0]:.3g}, {interval[1]:.3g}]"
    return f"{decay.alpha:.3g} ± {decay.stderr:.2g} (fit s.e.)"
