"""The observability half of the runtime handle: ``await rt.metrics()``.

Mixed into the :class:`~setpiece.Runtime` that ``stack.start()`` returns (``setpiece._assembly``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from setpiece.errors import ConfigError

__all__ = ["ObserveMethods"]


class ObserveMethods:
    """``metrics()``: what this runtime has done, in the Prometheus text format."""

    # the runtime's, which these methods are mixed into
    has_extension: Callable[[str], bool]
    extension: Callable[[str], Any]

    async def metrics(self) -> str:
        """This runtime's metrics as Prometheus text (consumer lag read now).

        ConfigError when the stack does not observe (``Stack(observe=Observability())``)."""
        if not self.has_extension("observe"):
            raise ConfigError(
                "this stack does not observe: Stack(..., observe=Observability()) turns "
                "metrics on"
            )
        text: str = await self.extension("observe").metrics_text()
        return text
