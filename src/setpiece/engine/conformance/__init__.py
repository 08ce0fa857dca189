"""The engine conformance suite: abstract test cases every engine subclasses.

One class per rung of the contract (:mod:`setpiece.engine.contract`), plus cross-instance tests
for engines that several processes share, and :class:`EngineSuite`, which inherits them all.
One module per rung: :mod:`~setpiece.engine.conformance.log` (``Log``),
:mod:`~setpiece.engine.conformance.groups` (``GroupLog``),
:mod:`~setpiece.engine.conformance.store` (``Store``: the unit of work),
:mod:`~setpiece.engine.conformance.events` (``Store``: event sequences, for event sourcing),
:mod:`~setpiece.engine.conformance.timers` (``Engine``: durable timers, lifecycle) and
:mod:`~setpiece.engine.conformance.peers` (two instances on one storage)::

    from setpiece.engine import Engine, open_engine
    from setpiece.engine.conformance import EngineSuite

    class TestMyEngine(EngineSuite):
        async def make_engine(self) -> Engine:
            return await open_engine("myengine://...")        # fresh, empty storage

        async def make_peer_engine(self, engine: Engine) -> Engine | None:
            return await open_engine(engine.url)              # a second instance, same storage

Every test opens a fresh engine with :meth:`EngineTestCase.make_engine`, runs its async body
with :func:`asyncio.run` (no pytest-asyncio needed) and closes the engine. Tests that need a
second instance on the same storage skip when :meth:`EngineTestCase.make_peer_engine` returns
None (the default; an in-memory engine has no second instance).

This module is test code shipped in the package: it imports pytest, and nothing in setpiece's
runtime imports it.
"""

from __future__ import annotations

from setpiece.engine.conformance._case import EngineTestCase, engine_test, peer_test
from setpiece.engine.conformance.events import EventStoreConformance
from setpiece.engine.conformance.groups import GroupLogConformance
from setpiece.engine.conformance.log import LogConformance
from setpiece.engine.conformance.peers import PeerConformance
from setpiece.engine.conformance.store import StoreConformance
from setpiece.engine.conformance.timers import EngineConformance

__all__ = [
    "EngineConformance",
    "EngineSuite",
    "EngineTestCase",
    "EventStoreConformance",
    "GroupLogConformance",
    "LogConformance",
    "PeerConformance",
    "StoreConformance",
    "engine_test",
    "peer_test",
]


class EngineSuite(
    LogConformance,
    GroupLogConformance,
    StoreConformance,
    EventStoreConformance,
    EngineConformance,
    PeerConformance,
):
    """Every conformance test. Subclass it, define ``make_engine`` (and ``make_peer_engine``)."""
