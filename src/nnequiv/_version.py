"""The version of nnequiv, recorded in every result (one place; pyproject reads it)."""

__version__ = "0.3.0"
