"""Shadow versions: a copy of every event, effects in a namespace of their own, compared."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from setpiece import AbortPolicy, Context, Event, Rollout, RuntimeConfig, Service, Stack
from setpiece.runtime.shadow import shadow_stream
from tests.versions.conftest import ALL

Run = Callable[[Coroutine[Any, Any, Any]], Any]
CONFIG = RuntimeConfig(batch_size=16, concurrency=4)


def points_stack(*, factor: int, shadow: bool = True, fail: bool = False) -> Stack:
    """``loyalty.award`` keeps a running total per customer and emits points_awarded, which
    ``ledger.book`` (a real consumer) records. Version 2 multiplies the points by ``factor``."""
    v1, v2 = Service("loyalty"), Service("loyalty", version="2")
    ledger = Service("ledger")

    def award_with(factor: int) -> Callable[[Event, Context], Coroutine[Any, Any, Event]]:
        async def award(event: Event, ctx: Context) -> Event:
            if fail and factor != 1:
                raise RuntimeError("version 2 is broken")
            customer = event.partitionkey or ""
            total = await ctx.store.get(customer, 0) + event.data["points"] * factor
            await ctx.store.put(customer, total)
            return Event(type="points_awarded", data={"customer": customer, "total": total})
        return award

    v1.on({"type": ["purchase"]}, name="award")(award_with(1))
    v2.on({"type": ["purchase"]}, name="award")(award_with(factor))

    @ledger.on({"type": ["points_awarded"]})
    async def book(event: Event, ctx: Context) -> None:
        seen = await ctx.store.get("booked", [])
        await ctx.store.put("booked", [*seen, event.data["total"]])

    rollouts = [Rollout(v2, mode="shadow", abort=AbortPolicy(margin=0.5, min_deliveries=5))]
    return Stack("points", services=[v1, ledger], rollouts=rollouts if shadow else [])


def purchases(customers: list[str], rounds: int) -> list[Event]:
    return [Event(type="purchase", source="till", partitionkey=c, data={"points": 10})
            for _ in range(rounds) for c in customers]


@pytest.mark.parametrize("where", ALL, indirect=True)
def test_a_shadows_effects_are_visible_only_in_its_namespace(
    where: tuple[str, str | None], run: Run
) -> None:
    stack = points_stack(factor=2)
    customers = ["ann", "bob", "cy"]

    async def main() -> None:
        async with stack.start(where[0], store=where[1], config=CONFIG) as rt:
            await rt.publish_many(purchases(customers, 2))
            await rt.drain(timeout=50)
            primary = dict(await rt.store("loyalty").items())
            shadowed = dict(await rt.versions.shadow_store("loyalty").items())
            booked = await rt.store("ledger").get("booked")
            emitted = await rt.versions.shadow_events("loyalty")
            report = await rt.versions.report("loyalty")
            bus = [e for e in await read_all(rt, "bus.default") if e.type == "points_awarded"]
        # The primary's effects are the real ones; the shadow's are in its namespace only.
        assert primary == {"ann": 20, "bob": 20, "cy": 20}
        assert shadowed == {"ann": 40, "bob": 40, "cy": 40}
        assert sorted(booked) == [10, 10, 10, 20, 20, 20]  # the ledger saw version 1 alone
        assert sorted(e.data["total"] for e in bus) == [10, 10, 10, 20, 20, 20]
        # What the shadow emitted is kept aside, with where it would have gone.
        assert sorted(s.event.data["total"] for s in emitted) == [20, 20, 20, 40, 40, 40]
        assert {s.target for s in emitted} == {"bus.default"}
        assert {s.event.partitionkey for s in emitted} == set(customers)
        # Compared: every delivery differs (the store and the event), with samples.
        assert (report.compared, report.matched, report.mismatched) == (6, 0, 6)
        assert report.primary_deliveries == report.candidate_deliveries == 6
        sample = report.mismatches[-1]
        assert sample["type"] == "purchase" and sample["key"] in customers
        key = sample["key"]
        assert sample["primary"]["store"][key] * 2 == sample["shadow"]["store"][key]
        assert sample["primary"]["events"][0]["type"] == "points_awarded"
        assert report.to_dict()["shadow"]["mismatched"] == 6

    run(main())


async def read_all(rt: Any, stream: str) -> list[Event]:
    out: list[Event] = []
    for partition, end in enumerate(await rt.engine.end_offsets(stream)):
        for record in await rt.engine.read(stream, partition, 0, end):
            out.append(Event.from_json(record.value))
    return out


def test_a_faithful_shadow_matches_reading_the_primarys_state_through(
    tmp_path: Path, run: Run
) -> None:
    """The shadow's store starts as an overlay of the primary's: a total the primary built
    before the rollout is read through, so identical code matches on every delivery."""
    url = f"sqlite:///{tmp_path}/points.db"

    async def main() -> None:
        async with points_stack(factor=1, shadow=False).start(url, config=CONFIG) as rt:
            await rt.publish_many(purchases(["ann", "bob"], 3))
            await rt.drain(timeout=50)
        async with points_stack(factor=1).start(url, config=CONFIG) as rt:
            await rt.publish_many(purchases(["ann", "bob"], 2))
            await rt.drain(timeout=50)
            report = await rt.versions.report("loyalty")
            assert dict(await rt.store("loyalty").items()) == {"ann": 50, "bob": 50}
            assert dict(await rt.versions.shadow_store("loyalty").items()) == {
                "ann": 50, "bob": 50}
        assert (report.compared, report.matched, report.mismatches) == (4, 4, [])

    run(main())


def test_a_failing_shadow_is_aborted_and_the_primary_is_untouched(run: Run) -> None:
    stack = points_stack(factor=2, fail=True)

    async def main() -> None:
        async with stack.start("memory", config=CONFIG) as rt:
            await rt.publish_many(purchases(["ann", "bob", "cy"], 4))
            await rt.drain(timeout=50)
            report = await rt.versions.report("loyalty")
            assert report.state.status == "aborted"
            assert report.candidate_failures >= 5 and report.compared == 0
            assert dict(await rt.store("loyalty").items()) == {"ann": 40, "bob": 40, "cy": 40}
            assert await rt.versions.shadow_store("loyalty").items() == []
            assert await rt.dead_letters() == []
            ends = await rt.engine.end_offsets(shadow_stream("loyalty"))
            assert ends == [0]

    run(main())


def test_a_promoted_shadow_takes_every_delivery_for_real(run: Run) -> None:
    stack = points_stack(factor=2)

    async def main() -> None:
        async with stack.start("memory", config=CONFIG) as rt:
            await rt.publish_many(purchases(["ann"], 1))
            await rt.drain(timeout=50)
            await rt.versions.promote("loyalty")
            await rt.publish_many(purchases(["ann"], 1))
            await rt.drain(timeout=50)
            assert await rt.store("loyalty").get("ann") == 30  # 10 by version 1, then 20
            assert await rt.store("ledger").get("booked") == [10, 30]
            assert len(await rt.versions.shadow_events("loyalty")) == 1  # before the promote

    run(main())
