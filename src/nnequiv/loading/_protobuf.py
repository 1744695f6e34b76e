"""A small protobuf decoder for the formats read without their libraries (TensorFlow's
TensorBundle entries, Core ML models): fields are decoded one level at a time, every length
checked against the message, so a crafted message can neither read past its end nor
recurse."""

from __future__ import annotations

from collections.abc import Iterator


class Corrupt(Exception):
    pass


def varint(data, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise Corrupt("a truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, int, object]]:
    """``(field number, wire type, value)`` of a protobuf message: ints for varints and
    fixed fields, bytes for length-delimited ones."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(data, pos, end)
        elif wire == 1:
            if pos + 8 > end:
                raise Corrupt("a truncated field")
            value, pos = int.from_bytes(data[pos : pos + 8], "little"), pos + 8
        elif wire == 5:
            if pos + 4 > end:
                raise Corrupt("a truncated field")
            value, pos = int.from_bytes(data[pos : pos + 4], "little"), pos + 4
        elif wire == 2:
            length, pos = varint(data, pos, end)
            if pos + length > end:
                raise Corrupt("a field past the end of its message")
            value, pos = bytes(data[pos : pos + length]), pos + length
        else:
            raise Corrupt(f"protobuf wire type {wire}")
        yield number, wire, value


def signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value
