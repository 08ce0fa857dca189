"""The gateway half of the runtime handle: ``rt.asgi()``.

Mixed into the :class:`~setpiece.Runtime` that ``stack.start()`` returns (see
``setpiece._assembly``): the runtime itself knows nothing of HTTP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from setpiece.gateway.app import Gateway
    from setpiece.runtime.runtime import Runtime
    from setpiece.stack import Stack

__all__ = ["GatewayMethods"]


class GatewayMethods:
    """``asgi()``: this runtime's HTTP gateway, one per runtime."""

    stack: Stack
    _gateway: Gateway | None = None

    def asgi(self) -> Gateway:
        """The HTTP gateway on this runtime, as an ASGI app (one per runtime)."""
        if self._gateway is None:
            from setpiece.gateway.app import Gateway  # app imports this module

            self._gateway = Gateway(self.stack, runtime=cast("Runtime", self))
        return self._gateway

    def use_gateway(self, gateway: Gateway) -> None:
        """Make ``gateway`` (one that started this runtime) the one ``asgi()`` returns."""
        self._gateway = gateway

    async def stop(self) -> None:
        await super().stop()  # type: ignore[misc]  # the runtime's, next in the MRO
        if self._gateway is not None:
            await self._gateway.aclose()
