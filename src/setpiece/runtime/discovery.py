"""Discovery (Eureka-style): every runtime registers its services in the engine, with a heartbeat.

Each runtime writes one entry per service it runs into the engine's key-value store (namespace
``setpiece.registry``, key ``<service>/<member>``): the service's name and version, the address
its gateway listens on (None until it serves HTTP), its health and the time of its last heartbeat.
It refreshes them every ``heartbeat_interval`` and deletes them when it stops. An instance whose
heartbeat is older than ``session_timeout`` (the TTL) is dead: readers leave it out at once, and
any live runtime deletes its entry later. Every process that shares the engine sees the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from setpiece.engine.contract import Engine, KVWrite, UnitOfWork

__all__ = ["REGISTRY", "Instance", "Registry"]

REGISTRY = "setpiece.registry"
_PRUNE_EVERY = 10  # heartbeats between sweeps of dead entries

log = logging.getLogger("setpiece.registry")


class _Entry(msgspec.Struct, frozen=True):
    service: str
    version: str
    member: str
    stack: str
    address: str | None
    health: str
    heartbeat: float
    started: float


@dataclass(frozen=True, slots=True)
class Instance:
    """One live instance of a service. ``local``: it runs in the runtime that read the registry."""

    service: str
    version: str
    member: str
    address: str | None
    health: str
    heartbeat: float
    stack: str
    started: float
    local: bool = False

    @property
    def key(self) -> str:
        return f"{self.service}/{self.member}"


class Registry:
    """One runtime's registration, and its view of every runtime's registrations."""

    def __init__(
        self,
        engine: Engine,
        *,
        stack: str,
        member: str,
        services: Sequence[tuple[str, str]],
        interval: float,
        ttl: float,
    ) -> None:
        self.engine = engine
        self.stack = stack
        self.member = member
        self.services = list(services)
        self.interval = interval
        self.ttl = ttl
        self.address: str | None = None
        self.health = "up"
        self.started = time.time()
        self._task: asyncio.Task[None] | None = None
        self._beats = 0
        self._encode = msgspec.json.Encoder().encode
        self._decode = msgspec.json.Decoder(_Entry).decode

    async def start(self) -> None:
        """Register now, then keep the heartbeat going."""
        if not self.services:
            return
        await self.beat()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="registry")

    async def stop(self, *, deregister: bool = True) -> None:
        """Stop the heartbeat and (unless simulating a crash) remove this runtime's entries."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if deregister and self.services:
            with contextlib.suppress(Exception):  # the engine may be closing already
                await self.engine.commit(UnitOfWork(writes=[
                    KVWrite(REGISTRY, f"{name}/{self.member}", None) for name, _ in self.services
                ]))

    async def advertise(self, address: str | None) -> None:
        """Set the address other gateways reach this runtime's services at, and say so now."""
        self.address = address
        if self.services:
            await self.beat()

    async def beat(self) -> None:
        now = time.time()
        writes = [
            KVWrite(REGISTRY, f"{name}/{self.member}", self._encode(_Entry(
                name, version, self.member, self.stack, self.address, self.health, now,
                self.started,
            )))
            for name, version in self.services
        ]
        self._beats += 1
        if self._beats % _PRUNE_EVERY == 0:
            writes += [KVWrite(REGISTRY, i.key, None) for i in await self._entries("", dead=True)]
        await self.engine.commit(UnitOfWork(writes=writes))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.beat()
            except Exception:  # the heartbeat must never stop; a missed beat is retried
                log.exception("registry heartbeat failed; trying again")

    async def live(self, service: str | None = None) -> list[Instance]:
        """The live instances of one service (of all services without a name), oldest first."""
        return await self._entries("" if service is None else f"{service}/", dead=False)

    async def _entries(self, prefix: str, *, dead: bool) -> list[Instance]:
        cutoff = time.time() - self.ttl
        out: list[Instance] = []
        for _, raw in await self.engine.kv_scan(REGISTRY, prefix, 100_000):
            try:
                entry = self._decode(raw)
            except msgspec.DecodeError:
                continue
            if (entry.heartbeat < cutoff) != dead:
                continue
            out.append(Instance(
                entry.service, entry.version, entry.member, entry.address, entry.health,
                entry.heartbeat, entry.stack, entry.started, local=entry.member == self.member,
            ))
        out.sort(key=lambda i: (i.started, i.member))
        return out
