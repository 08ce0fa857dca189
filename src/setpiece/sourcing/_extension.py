"""Event sourcing as an extension of the runtime (:mod:`setpiece.runtime.extension`).

Attached to runtimes whose stack declares aggregates, it contributes the context service behind
``ctx.aggregate(name, id)`` (handlers, HTTP routes, workflow tasks: the events commit with the
delivery). ``rt.aggregate(name, id)`` and the other methods of
:class:`~setpiece.sourcing._api.SourcingMethods` use its aggregate kinds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from setpiece.bus import bus_stream_name
from setpiece.context import AGGREGATES
from setpiece.sourcing._commands import DeliveryAggregates
from setpiece.sourcing._kind import AggregateKind

if TYPE_CHECKING:
    from setpiece.runtime.runtime import Runtime

__all__ = ["EXTENSION", "EventSourcing"]

EXTENSION = "sourcing"


class EventSourcing:
    """The extension; ``kinds`` are the stack's aggregates in this runtime."""

    name = EXTENSION

    def __init__(self) -> None:
        self.kinds: dict[str, AggregateKind] = {}

    async def attach(self, runtime: Runtime) -> None:
        stack = runtime.stack
        self.kinds = {
            name: AggregateKind(
                aggregate, stack=stack.name,
                stream=bus_stream_name(aggregate.bus or stack.default_bus),
                max_bytes=runtime.config.max_event_bytes,
            )
            for name, aggregate in stack.aggregates.items()
        }
        kinds, engine = self.kinds, runtime.engine
        runtime.add_context_service(
            AGGREGATES, lambda attempt: DeliveryAggregates(kinds, engine, attempt)
        )

    async def stop(self) -> None:
        pass
