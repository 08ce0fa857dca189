"""The composition root: a runtime with the edges a stack uses attached.

The runtime (:mod:`setpiece.runtime`) knows no edge, and no edge knows another; this module, above
them all, puts them together. ``Stack.start`` opens a runtime through it (the one lazy import of
the declarations layer), and so does the ``setpiece`` command.
"""

from __future__ import annotations

from collections.abc import Sequence

from setpiece.clock import SYSTEM_CLOCK, Clock
from setpiece.engine import open_engine
from setpiece.engine.contract import Engine
from setpiece.gateway.app import Gateway
from setpiece.gateway.handle import GatewayMethods
from setpiece.observability import Observability
from setpiece.observe import Observe, ObserveMethods
from setpiece.runtime.config import RuntimeConfig
from setpiece.runtime.extension import Extension
from setpiece.runtime.runtime import Runtime as CoreRuntime
from setpiece.schemas._extension import SchemaChecks
from setpiece.sourcing._api import SourcingMethods
from setpiece.sourcing._extension import EventSourcing
from setpiece.stack import Stack
from setpiece.views._api import ViewMethods
from setpiece.views._extension import Views
from setpiece.workflows._api import WorkflowMethods
from setpiece.workflows._extension import DurableWorkflows

__all__ = [
    "Gateway", "Runtime", "RuntimeConfig", "extensions_for", "gateway_app", "new_runtime",
    "open_runtime",
]


class Runtime(
    GatewayMethods, WorkflowMethods, SourcingMethods, ViewMethods, ObserveMethods, CoreRuntime
):
    """A running stack. Get one from ``stack.start(...)``.

    Besides publishing, draining, stores, dead letters and replay (the runtime's own), it serves
    the HTTP gateway (``asgi()``) and runs the stack's durable workflows (``start_execution``,
    ``executions``, ``send_task_success``, ...), commands on its event-sourced aggregates
    (``aggregate(name, id)``, ``execute_many``, ``replay_aggregate``), keeps its views
    (``view``), and, when the stack observes, reports its metrics (``metrics()``).
    """


def extensions_for(stack: Stack, *, observe: Observability | None = None) -> list[Extension]:
    """The extensions a runtime of ``stack`` runs. ``observe`` replaces the stack's own
    :class:`~setpiece.Observability` (``setpiece run --metrics-port``, ``--otlp``)."""
    extensions: list[Extension] = [DurableWorkflows()]
    if stack.schemas:
        extensions.append(SchemaChecks(stack))
    if stack.aggregates:
        extensions.append(EventSourcing())
    if stack.views:
        extensions.append(Views(dict(stack.views)))
    observe = observe or stack.observe
    if observe is not None:
        extensions.append(Observe(observe))
    return extensions


def new_runtime(
    stack: Stack, engine: Engine, config: RuntimeConfig | None = None,
    clock: Clock | None = None,
) -> Runtime:
    """A runtime of ``stack`` on an open engine, with its extensions, not started."""
    return Runtime(stack, engine, config or RuntimeConfig(), extensions_for(stack),
                   clock or SYSTEM_CLOCK)


async def open_runtime(
    stack: Stack,
    url: str,
    *,
    store: str | None = None,
    config: RuntimeConfig | None = None,
    extensions: Sequence[Extension] | None = None,
    clock: Clock | None = None,
) -> Runtime:
    """Open the engine at ``url`` and start a runtime of ``stack`` on it (closed on failure)."""
    engine = await open_engine(url, store=store)
    runtime = Runtime(stack, engine, config or RuntimeConfig(),
                      extensions_for(stack) if extensions is None else extensions,
                      clock or SYSTEM_CLOCK)
    try:
        await runtime.start()
    except BaseException:
        await runtime.stop()
        await engine.close()
        raise
    return runtime


def gateway_app(stack: Stack, *, starter: object, address: str | None) -> Gateway:
    """The gateway as an ASGI app that starts its runtime (``starter``) in its lifespan."""
    return Gateway(stack, starter=starter, address=address)
