"""Shortcuts that take the arguments of another function, documented there once."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable


def arguments_of(original: Callable) -> Callable:
    """Decorator: the shortcut takes exactly the arguments of ``original``.

    The shortcut shows ``original``'s signature (``help()``, ``inspect.signature``, editors)
    with its own return annotation, and arguments that ``original`` would not take are a
    ``TypeError`` that names the shortcut.
    """
    signature = inspect.signature(original)

    def decorate(shortcut: Callable) -> Callable:
        @functools.wraps(shortcut)
        def checked(*args, **kwargs):
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{shortcut.__name__}(): {exc}") from None
            return shortcut(*args, **kwargs)

        returns = inspect.signature(shortcut).return_annotation
        checked.__signature__ = signature.replace(return_annotation=returns)
        return checked

    return decorate
