"""Element types of tensors stored as raw bytes (safetensors, PyTorch storages), and their
conversion to NumPy arrays.

Types NumPy lacks are widened to float32 exactly: bfloat16 (the upper half of a float32),
float8 e5m2 (the upper half of a float16) and float8 e4m3fn (a 256-entry table). Other float8
variants stay as their raw ``uint8`` codes, so they are reported as non-float tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def _bfloat16(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _float8_e5m2(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint16) << 8).view(np.float16).astype(np.float32)


def _e4m3fn_table() -> np.ndarray:
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exponent = (codes >> 3) & 0xF
    mantissa = (codes & 0x7) / 8
    magnitude = np.where(exponent == 0, mantissa * 2.0**-6, (1 + mantissa) * 2.0 ** (exponent - 7))
    values = sign * magnitude
    values[(codes & 0x7F) == 0x7F] = np.nan
    return values.astype(np.float32)


_E4M3FN = _e4m3fn_table()


def _float8_e4m3fn(bits: np.ndarray) -> np.ndarray:
    return _E4M3FN[bits]


@dataclass(frozen=True)
class ElementType:
    """How one element of a tensor is stored: ``bits`` is the NumPy type of the stored bytes
    (little-endian), ``widen`` turns those into float32 for types NumPy lacks."""

    name: str
    bits: str
    widen: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def itemsize(self) -> int:
        return np.dtype(self.bits).itemsize

    def array(self, buffer, count: int, start: int = 0, byteorder: str = "<") -> np.ndarray:
        """``count`` elements from ``buffer`` starting at byte ``start``, as a 1-D array."""
        dtype = np.dtype(self.bits).newbyteorder(byteorder)
        if count == 0:
            flat = np.empty(0, dtype)
        else:
            flat = np.frombuffer(buffer, dtype=dtype, count=count, offset=start)
        return self.widen(flat) if self.widen is not None else flat


_TYPES = [
    ElementType("float64", "<f8"),
    ElementType("float32", "<f4"),
    ElementType("float16", "<f2"),
    ElementType("bfloat16", "<u2", _bfloat16),
    ElementType("float8_e5m2", "u1", _float8_e5m2),
    ElementType("float8_e4m3fn", "u1", _float8_e4m3fn),
    ElementType("float8_e5m2fnuz", "u1"),
    ElementType("float8_e4m3fnuz", "u1"),
    ElementType("float8_e8m0fnu", "u1"),
    ElementType("complex128", "<c16"),
    ElementType("complex64", "<c8"),
    ElementType("int64", "<i8"),
    ElementType("int32", "<i4"),
    ElementType("int16", "<i2"),
    ElementType("int8", "i1"),
    ElementType("uint64", "<u8"),
    ElementType("uint32", "<u4"),
    ElementType("uint16", "<u2"),
    ElementType("uint8", "u1"),
    ElementType("bool", "?"),
]
#: Element types by their PyTorch name (``torch.float32`` is ``"float32"``).
ELEMENT_TYPES = {t.name: t for t in _TYPES}
