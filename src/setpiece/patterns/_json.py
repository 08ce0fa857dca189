"""JSON text in, Python values out, without losing the text of numbers that need it."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from setpiece.errors import PatternError
from setpiece.patterns._numbers import decode_event_float

__all__ = ["MAX_PATTERN_BYTES", "PatternFloat", "decode_event", "decode_pattern"]

MAX_PATTERN_BYTES: Final = 1 << 20


class PatternFloat:
    """A non-integer number in pattern text, kept as written (``1E-325`` is not ``0.0``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


_PATTERN_DECODER: Final = msgspec.json.Decoder(float_hook=PatternFloat)
_EVENT_DECODER: Final = msgspec.json.Decoder(float_hook=decode_event_float)


def decode_pattern(text: str | bytes) -> Any:
    if len(text) > MAX_PATTERN_BYTES:
        raise PatternError(
            f"pattern: JSON text is {len(text)} long, more than the limit of {MAX_PATTERN_BYTES}"
        )
    try:
        return _PATTERN_DECODER.decode(text)
    except msgspec.DecodeError as exc:
        raise PatternError(f"pattern: invalid JSON: {exc}") from None


def decode_event(text: str | bytes) -> Any:
    try:
        return _EVENT_DECODER.decode(text)
    except msgspec.DecodeError as exc:
        raise PatternError(f"event: invalid JSON: {exc}") from None
