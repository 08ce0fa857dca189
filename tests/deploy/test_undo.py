"""A deployment that fails at any step leaves the engine as it was (SQLite, injected faults).

An engine wrapper refuses the k-th call that changes something (create/drop a stream, drop a
group, commit), for every k up to the recording of the deployment itself: whatever step fails,
the streams, groups, offsets, records and history are exactly as before.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from setpiece import Context, Event, Service, Stack, Stream
from setpiece.cli.planning import resources_of
from setpiece.deploy import History, deploy, describe, diff
from setpiece.engine import Engine, open_engine
from setpiece.errors import DeployError, EngineError

_CHANGES = ("create_stream", "drop_stream", "drop_group", "commit")


class Refusing:
    """Passes every call to ``engine``, but the ``fail_at``-th change raises EngineError."""

    def __init__(self, engine: Engine, fail_at: int) -> None:
        self._engine, self.fail_at, self.calls = engine, fail_at, 0

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._engine, name)
        if name not in _CHANGES:
            return found

        async def call(*args: Any) -> Any:
            self.calls += 1
            if self.calls == self.fail_at:
                raise EngineError(f"refused: call {self.calls} ({name})")
            return await found(*args)

        return call


def stack(version: int) -> Stack:
    svc = Service("svc", version=str(version))

    @svc.consume("orders")
    async def count(event: Event, ctx: Context) -> None:
        pass

    streams = [Stream("orders", 2, retention=None if version == 1 else 60.0),
               Stream("old", 1)] if version == 1 else [
               Stream("orders", 2, retention=60.0), Stream("new", 3)]
    if version == 2:
        @svc.consume("new")
        async def fresh(event: Event) -> None:
            pass
    else:
        @svc.consume("old")
        async def stale(event: Event) -> None:
            pass

        @svc.consume("orders")
        async def tally(event: Event) -> None:
            pass
    return Stack("undo", services=[svc], streams=streams)


async def snapshot(engine: Engine) -> dict[str, Any]:
    streams = {s.name: s for s in await engine.streams()}
    return {
        "streams": streams,
        "ends": {n: await engine.end_offsets(n) for n in streams},
        "groups": {g: await engine.committed(*g) for g in sorted(await engine.groups())},
        "history": [d.number for d in await History(engine).list()],
    }


async def apply(engine: Engine, version: int) -> Any:
    resources = await resources_of(stack(version))
    changes = await diff(resources, engine)
    return await deploy(engine, changes, describe(stack(version), resources),
                        allow_delete=True, by="test", at=1.0)


async def changes_needed() -> int:
    """How many changing calls the v1 -> v2 deployment makes when nothing fails."""
    engine = await open_engine("memory")
    try:
        await prepared(engine)
        counting = Refusing(engine, fail_at=-1)
        await apply(cast(Engine, counting), 2)
        return counting.calls
    finally:
        await engine.close()


async def prepared(engine: Engine) -> None:
    """Deployment 1, with data in every stream and moved offsets (so deletions lose data)."""
    await apply(engine, 1)
    await engine.append("orders", [("a", b"1"), ("b", b"2")])
    await engine.append("old", [("a", b"1")])
    from setpiece.engine import OffsetCommit, UnitOfWork

    await engine.commit(UnitOfWork(offsets=[OffsetCommit("svc.stale", "old", 0, 0, 1),
                                            OffsetCommit("svc.tally", "orders", 1, 0, 1)]))


# create stream new, change orders, create group svc.fresh, delete group svc.tally (offsets
# moved), delete stream old (records), record the deployment.
CHANGES = 6


def test_the_deployment_makes_six_changes() -> None:
    assert asyncio.run(changes_needed()) == CHANGES


@pytest.mark.parametrize("fail_at", range(1, CHANGES + 2))
def test_a_failure_at_any_step_leaves_everything_as_it_was(fail_at: int) -> None:
    async def main() -> None:
        engine = await open_engine("memory")
        try:
            await prepared(engine)
            before = await snapshot(engine)
            refusing = Refusing(engine, fail_at)
            try:
                done = await apply(cast(Engine, refusing), 2)
            except DeployError as exc:
                assert f"refused: call {fail_at}" in str(exc)
                assert "every step made was undone" in str(exc)
                after = await snapshot(engine)
                # A deleted stream's records cannot come back; everything else must.
                lost = {n for n in before["streams"] if before["ends"][n] != after["ends"].get(n)}
                assert lost <= {"old"}, lost
                if lost:  # re-created empty, its group at 0
                    before["ends"]["old"] = after["ends"]["old"]
                    before["groups"][("svc.stale", "old")] = after["groups"][("svc.stale", "old")]
                assert after == before
            else:  # past the last change: nothing failed
                assert fail_at == CHANGES + 1
                assert done is not None and done.number == 2
        finally:
            await engine.close()

    asyncio.run(main())
