"""The schemas part inside a runtime: registers the stack's schemas and checks every publish.

When the runtime starts, each declared version is registered in the engine's registry
(refused, and the start with it, when it breaks its type's compatibility rule), and a validator
is compiled per version. Then every event on its way out — ``publish``/``publish_many``, HTTP
ingress, a handler's returned or published events — is checked before anything is stored, by
the runtime's event-check hook: against the version its ``dataversion`` names, else the latest.
What a failure does depends on the bus: ``enforce`` (SchemaError, nothing stored), ``warn``
(stored, counted in :attr:`SchemaChecks.warnings`, logged), ``off``. Events published straight
onto a stream are always enforced.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

from setpiece.errors import SchemaError
from setpiece.schemas._registry import SchemaRegistry
from setpiece.schemas._validate import Validator, compile_validator
from setpiece.stack import Stack

if TYPE_CHECKING:
    from setpiece.event import Event
    from setpiece.runtime.runtime import Runtime

__all__ = ["SchemaChecks"]

log = logging.getLogger("setpiece.schemas")


class SchemaChecks:
    """The ``schemas`` extension: ``rt.extension("schemas")``."""

    name = "schemas"

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.registry: SchemaRegistry | None = None
        #: event type -> how many events were published unchecked-but-invalid on ``warn`` buses
        self.warnings: Counter[str] = Counter()
        self._validators: dict[str, tuple[Validator, dict[str, Validator]]] = {}
        self._modes = {name: bus.validation for name, bus in stack.buses.items()}
        for event_type, versions in stack.schemas.items():
            by_version = {str(s.version): compile_validator(s) for s in versions}
            self._validators[event_type] = (by_version[str(versions[-1].version)], by_version)

    async def attach(self, runtime: Runtime) -> None:
        self.registry = SchemaRegistry(runtime.engine)
        for event_type, versions in self.stack.schemas.items():
            for schema in versions:
                await self.registry.register(event_type, schema.version, schema.document,
                                             schema.compatibility)
        runtime.add_event_check(self.check)

    async def stop(self) -> None:
        return None

    def check(self, event: Event, bus: str | None, stream: str | None) -> None:
        """Refuse (SchemaError), count or let pass ``event`` as its bus's validation says."""
        found = self._validators.get(event.type)
        if found is None:
            return
        mode = "enforce" if bus is None else self._modes.get(bus, "enforce")
        if mode == "off":
            return
        latest, by_version = found
        version = event.dataversion
        validate = latest if version is None else by_version.get(version, latest)
        try:
            validate(event.data)
        except SchemaError as exc:
            if mode == "enforce":
                raise
            self.warnings[event.type] += 1
            log.warning("published on bus %r although it does not fit: %s", bus, exc)
