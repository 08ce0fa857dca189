"""The observability half of the runtime handle: ``await rt.metrics()``.

Mixed into the :class:`~setpiece.Runtime` that ``stack.start()`` returns (``setpiece._assembly``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from setpiece.errors import ConfigError

if TYPE_CHECKING:
    from setpiece.observe._slo import SLOStatus

__all__ = ["ObserveMethods"]


class ObserveMethods:
    """``metrics()``: what this runtime has done, in the Prometheus text format; ``slos()``:
    where its service level objectives stand."""

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

    async def slos(self) -> list[SLOStatus]:
        """Every declared SLO's status now (on the runtime's clock): good and bad attempts over
        its window, error budget remaining, burn rates, the alerts firing. This worker's counts
        are flushed to the engine first; the figures are every worker's."""
        if not self.has_extension("observe"):
            raise ConfigError("this stack declares no SLO: Observability(slos={...})")
        found: list[SLOStatus] = await self.extension("observe").slo_status()
        return found
