"""Functions made from source text at run time, kept by that text so equal shapes share one.

The text is always written by setpiece from the shape of a rule set (keys, paths and tables are
passed to the made function as arguments, never written into the text), never from input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["factory"]


def factory(source: str, cache: dict[str, Callable[..., Any]], limit: int) -> Callable[..., Any]:
    """The function named ``factory`` that ``source`` defines, compiled once per text; ``cache``
    holds at most ``limit`` of them (it is emptied when full)."""
    made = cache.get(source)
    if made is None:
        scope: dict[str, Any] = {}
        exec(source, scope)
        if len(cache) >= limit:
            cache.clear()
        made = cache[source] = scope["factory"]
    return made
