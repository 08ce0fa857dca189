"""String operators that need more than ``==``: wildcards and case-insensitive comparison."""

from __future__ import annotations

import re
from collections.abc import Callable

from setpiece.errors import PatternError

__all__ = ["ignore_case_test", "parse_wildcard", "wildcard_test"]


def parse_wildcard(text: str, path: str) -> tuple[str, ...]:
    """The literal pieces between the ``*`` of a wildcard (``\\*`` and ``\\\\`` are escapes)."""
    pieces: list[str] = []
    current: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "*":
            if i + 1 < n and text[i + 1] == "*":
                raise PatternError(f"{path}: wildcard {text!r} has consecutive '*' at position {i}")
            pieces.append("".join(current))
            current = []
        elif char == "\\":
            if i + 1 < n and text[i + 1] in "*\\":
                current.append(text[i + 1])
                i += 1
            else:
                raise PatternError(
                    f"{path}: wildcard {text!r}: a backslash may only escape '*' or '\\' "
                    f"(position {i})"
                )
        else:
            current.append(char)
        i += 1
    pieces.append("".join(current))
    return tuple(pieces)


def wildcard_test(pieces: tuple[str, ...]) -> Callable[[str], bool]:
    """A test of whole strings against the wildcard made of ``pieces``."""
    if len(pieces) == 1:
        literal = pieces[0]
        return literal.__eq__
    first, last, middle = pieces[0], pieces[-1], pieces[1:-1]
    fixed = len(first) + len(last)

    def test(value: str) -> bool:
        if len(value) < fixed or not value.startswith(first) or not value.endswith(last):
            return False
        pos, end = len(first), len(value) - len(last)
        for piece in middle:  # leftmost placement of each piece is always best for '*'
            found = value.find(piece, pos, end)
            if found < 0:
                return False
            pos = found + len(piece)
        return True

    return test


def _alternatives(text: str) -> str:
    parts = []
    for char in text:
        forms = {char.lower(), char.upper()}
        if len(forms) == 1:
            parts.append(re.escape(forms.pop()))
        else:
            ordered = sorted(forms, key=lambda f: (-len(f), f))
            parts.append("(?:" + "|".join(re.escape(f) for f in ordered) + ")")
    return "".join(parts)


def ignore_case_test(text: str, mode: str) -> Callable[[str], bool]:
    """Case-insensitive equality (``mode`` "equals"), prefix or suffix test against ``text``.

    As in event-ruler, each character of the pattern matches its own lower-case or upper-case
    form (``ß`` matches ``ß`` or ``SS``), and the event's characters are not folded.
    """
    if text.isascii():
        folded, size = text.lower(), len(text)
        if mode == "equals":
            return lambda value: len(value) == size and value.isascii() and value.lower() == folded
        if mode == "prefix":

            def prefix(value: str) -> bool:
                head = value[:size]
                return len(head) == size and head.isascii() and head.lower() == folded

            return prefix

        def suffix(value: str) -> bool:
            tail = value[len(value) - size :]
            return len(tail) == size and tail.isascii() and tail.lower() == folded

        return suffix
    body = _alternatives(text)
    rx = re.compile(body, re.DOTALL)
    if mode == "equals":
        return lambda value: rx.fullmatch(value) is not None
    if mode == "prefix":
        return lambda value: rx.match(value) is not None
    tail_rx = re.compile("(?:" + body + r")\Z", re.DOTALL)
    return lambda value: tail_rx.search(value) is not None
