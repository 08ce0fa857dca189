"""Canary versions of event consumers: a share of partition keys to the candidate, per-key order
across promote and abort, and the automatic abort of a failing candidate."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from setpiece import (
    AbortPolicy,
    ConfigError,
    Context,
    Event,
    Rollout,
    RuntimeConfig,
    Service,
    Stack,
)
from setpiece.engine import open_engine
from setpiece.runtime.rollouts import key_share
from setpiece.runtime.versions import Versions
from tests.versions.conftest import ALL, LOCAL

Run = Callable[[Coroutine[Any, Any, Any]], Any]
CONFIG = RuntimeConfig(batch_size=8, concurrency=4, heartbeat_interval=0.2, session_timeout=5)


def versions_of(
    *, share: float = 0.3, abort: AbortPolicy | None = None,
    fail: bool = False, hold: Callable[[str, Event], Any] | None = None,
) -> Stack:
    """A stack whose ``loyalty.award`` appends (version, n) to a list per partition key, in
    version 1 and in a version 2 canary (which raises when ``fail``). ``hold(version, event)``
    is awaited first, when given."""
    v1, v2 = Service("loyalty"), Service("loyalty", version="2")

    def handler(version: str) -> Callable[[Event, Context], Coroutine[Any, Any, None]]:
        async def award(event: Event, ctx: Context) -> None:
            if hold is not None:
                await hold(version, event)
            if fail and version == "2":
                raise RuntimeError("version 2 is broken")
            key = event.partitionkey or ""
            seen = await ctx.store.get(key, [])
            await ctx.store.put(key, [*seen, [version, event.data["n"]]])
        return award

    v1.on({"type": ["order_placed"]}, name="award")(handler("1"))
    v2.on({"type": ["order_placed"]}, name="award")(handler("2"))
    abort = abort if abort is not None else AbortPolicy(margin=0.5, min_deliveries=10_000)
    return Stack("shop", services=[v1], rollouts=[Rollout(v2, share=share, abort=abort)])


def orders(keys: list[str], per_key: int, start: int = 0) -> list[Event]:
    """``per_key`` events for each key, interleaved: every key's n-th before any (n+1)-th."""
    return [
        Event(type="order_placed", source="test", partitionkey=key, data={"n": n})
        for n in range(start, start + per_key) for key in keys
    ]


def canary_side(key: str, share: float = 0.3) -> str:
    return "2" if key_share("loyalty", key) < share else "1"


# -- the hash -------------------------------------------------------------------------------------


def test_the_share_of_keys_is_stable_and_within_tolerance() -> None:
    keys = [f"customer-{i}" for i in range(20_000)]
    shares = [key_share("loyalty", key) for key in keys]
    assert all(0 <= s < 1 for s in shares)
    taken = sum(s < 0.3 for s in shares) / len(keys)
    assert abs(taken - 0.3) < 0.015  # > 4 standard deviations of a fair 30% draw
    # Raising the share only adds keys: a key in a 10% canary is in the 30% one too.
    assert {k for k, s in zip(keys, shares, strict=True) if s < 0.1} <= {
        k for k, s in zip(keys, shares, strict=True) if s < 0.3}
    # Salted by service: another service's canary takes other keys.
    assert [key_share("billing", k) for k in keys[:50]] != shares[:50]


def test_the_hash_is_the_same_in_every_process() -> None:
    code = ("from setpiece.runtime.rollouts import key_share; "
            "print(repr([key_share('loyalty', f'k{i}') for i in range(20)]))")
    outputs = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True)
        outputs.add(done.stdout)
    assert len(outputs) == 1
    assert outputs.pop().strip() == repr([key_share("loyalty", f"k{i}") for i in range(20)])
    # Pinned: changing the hash would move keys between versions across a deploy.
    assert key_share("loyalty", "k0") == pytest.approx(0.09740715965725016, abs=1e-15)
    assert key_share("loyalty", "customer-1") == pytest.approx(0.5795014452005555, abs=1e-15)


# -- routing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", LOCAL, indirect=True)
def test_a_canary_takes_its_share_of_keys_each_key_one_version(
    where: tuple[str, str | None], run: Run
) -> None:
    stack = versions_of(share=0.3)
    keys = [f"c{i}" for i in range(600)]

    async def main() -> None:
        async with stack.start(where[0], store=where[1], config=CONFIG) as rt:
            await rt.publish_many(orders(keys, 3))
            await rt.drain(timeout=50)
            store = dict(await rt.store("loyalty").items(limit=10_000))
            report = await rt.versions.report("loyalty")
        assert sorted(store) == sorted(keys)
        for key in keys:
            handled = store[key]
            assert [n for _, n in handled] == [0, 1, 2], key  # once each, in order
            assert {v for v, _ in handled} == {canary_side(key)}, key  # one version per key
        share = sum(store[k][0][0] == "2" for k in keys) / len(keys)
        assert abs(share - 0.3) < 0.08  # 600 keys: about 4 standard deviations
        assert report.candidate_deliveries == 3 * sum(store[k][0][0] == "2" for k in keys)
        assert report.candidate_deliveries + report.primary_deliveries == 3 * len(keys)
        assert report.state.status == "active" and report.state.share == 0.3

    run(main())


def _switch_test(where: tuple[str, str | None], run: Run, verb: str) -> None:
    """A key's 10th event is in flight in the version it starts in when ``verb`` (promote or
    abort) commits from outside; the batch is handed back and every key keeps its order."""
    share = 0.3
    keys = [f"k{i}" for i in range(40)]
    # The held key starts in the version the switch takes it away from.
    held = next(k for k in keys if canary_side(k, share) == ("1" if verb == "promote" else "2"))
    reached, released = asyncio.Event(), asyncio.Event()

    async def hold(version: str, event: Event) -> None:
        if event.partitionkey == held and event.data["n"] == 10 and not released.is_set():
            reached.set()
            await released.wait()
        await asyncio.sleep(0)

    stack = versions_of(share=share, hold=hold)

    async def main() -> None:
        async with stack.start(where[0], store=where[1], config=CONFIG) as rt:
            await rt.publish_many(orders(keys, 30))
            await asyncio.wait_for(reached.wait(), 30)
            if where[0] == "memory":
                await getattr(rt.versions, verb)("loyalty")
            else:  # another process's view of the engine: the CLI's
                other = await open_engine(where[0], store=where[1])
                try:
                    await getattr(Versions(other, stack.rollouts), verb)("loyalty")
                finally:
                    await other.close()
            released.set()
            await rt.drain(timeout=50)
            store = dict(await rt.store("loyalty").items(limit=10_000))
            state = await rt.versions.state("loyalty")
        assert state.status == ("promoted" if verb == "promote" else "aborted")
        after = "2" if verb == "promote" else "1"
        for key in keys:
            handled = store[key]
            assert [n for _, n in handled] == list(range(30)), key  # once each, in order
            versions = [v for v, _ in handled]
            first = canary_side(key, share)
            switch = versions.index(after) if after in versions else len(versions)
            assert versions == [first] * switch + [after] * (30 - switch), (key, versions)
        # The held delivery was handed back and handled by the new version, after the 9th.
        assert [v for v, _ in store[held]] == [canary_side(held, share)] * 10 + [after] * 20

    run(main())


@pytest.mark.parametrize("where", ALL, indirect=True)
def test_per_key_order_holds_across_a_promote(where: tuple[str, str | None], run: Run) -> None:
    _switch_test(where, run, "promote")


@pytest.mark.parametrize("where", LOCAL, indirect=True)
def test_per_key_order_holds_across_an_abort(where: tuple[str, str | None], run: Run) -> None:
    _switch_test(where, run, "abort")


@pytest.mark.parametrize("where", LOCAL, indirect=True)
def test_a_failing_canary_is_aborted_and_loses_nothing(
    where: tuple[str, str | None], run: Run
) -> None:
    """Each delivery the candidate fails goes to the primary in the same delivery; once the
    candidate has failed more than the margin over min_deliveries, the rollout aborts."""
    stack = versions_of(share=0.5, fail=True, abort=AbortPolicy(margin=0.2, min_deliveries=20))
    keys = [f"c{i}" for i in range(200)]

    async def main() -> None:
        async with stack.start(where[0], store=where[1], config=CONFIG) as rt:
            await rt.publish_many(orders(keys, 1))
            await rt.drain(timeout=50)
            report = await rt.versions.report("loyalty")
            assert report.state.status == "aborted"
            assert report.state.reason is not None and "automatic" in report.state.reason
            assert report.candidate_deliveries >= 20
            assert report.candidate_failures == report.candidate_deliveries
            assert report.primary_failures == 0
            # After the abort, every key goes to the primary: the candidate sees nothing more.
            await rt.publish_many(orders(keys, 1, start=1))
            await rt.drain(timeout=50)
            after = await rt.versions.report("loyalty")
            assert after.candidate_deliveries == report.candidate_deliveries
            store = dict(await rt.store("loyalty").items(limit=10_000))
            assert await rt.dead_letters() == []
        assert sorted(store) == sorted(keys)
        for key in keys:  # nothing lost, nothing twice, all by the primary
            assert store[key] == [["1", 0], ["1", 1]], key

    run(main())


def test_the_abort_waits_for_min_deliveries(run: Run) -> None:
    stack = versions_of(share=1.0, fail=True, abort=AbortPolicy(margin=0.0, min_deliveries=50))
    keys = [f"c{i}" for i in range(30)]

    async def main() -> None:
        async with stack.start("memory", config=CONFIG) as rt:
            await rt.publish_many(orders(keys, 1))
            await rt.drain(timeout=50)
            report = await rt.versions.report("loyalty")
            assert (report.state.status, report.candidate_deliveries) == ("active", 30)
            await rt.publish_many(orders(keys, 1, start=1))
            await rt.drain(timeout=50)
            assert (await rt.versions.state("loyalty")).status == "aborted"

    run(main())


# -- the state ------------------------------------------------------------------------------------


def test_the_state_survives_a_restart_and_a_new_candidate_starts_afresh(tmp_path: Any,
                                                                      run: Run) -> None:
    url = f"sqlite:///{tmp_path}/state.db"

    async def main() -> None:
        async with versions_of(share=0.3).start(url) as rt:
            assert (await rt.versions.set_share("loyalty", 0.5)).share == 0.5
            await rt.versions.promote("loyalty")
            with pytest.raises(ConfigError, match="already promoted"):
                await rt.versions.abort("loyalty")
            with pytest.raises(ConfigError, match="promoted"):
                await rt.versions.set_share("loyalty", 0.1)
        async with versions_of(share=0.3).start(url) as rt:
            state = await rt.versions.state("loyalty")
            assert (state.status, state.share) == ("promoted", 0.5)
        # A redeploy that declares another share changes an active canary's share only.
        v1, v3 = Service("loyalty"), Service("loyalty", version="3")
        v1.on({"type": ["x"]}, name="noop")(lambda e: None)
        fresh = Stack("shop", services=[v1], rollouts=[Rollout(v3, share=0.2)])
        async with fresh.start(url) as rt:
            state = await rt.versions.state("loyalty")
            assert (state.candidate, state.status, state.share) == ("3", "active", 0.2)
            with pytest.raises(ConfigError, match="no rollout"):
                await rt.versions.promote("nope")

    run(main())


def test_the_abort_is_decided_when_min_deliveries_is_reached_without_new_failures(
    run: Run
) -> None:
    """The candidate fails all of the first 30 deliveries (under min_deliveries), then
    succeeds: reaching 60 deliveries at a 50% failure rate aborts it."""

    async def hold(version: str, event: Event) -> None:
        if version == "2" and event.data["n"] == 0:
            raise RuntimeError("a bad start")

    stack = versions_of(share=1.0, hold=hold, abort=AbortPolicy(margin=0.1, min_deliveries=40))
    keys = [f"c{i}" for i in range(30)]

    async def main() -> None:
        async with stack.start("memory", config=CONFIG) as rt:
            await rt.publish_many(orders(keys, 1))
            await rt.drain(timeout=50)
            assert (await rt.versions.state("loyalty")).status == "active"
            await rt.publish_many(orders(keys, 1, start=1))
            await rt.drain(timeout=50)
            report = await rt.versions.report("loyalty")
            assert report.state.status == "aborted"
            assert (report.candidate_failures, report.primary_deliveries) == (30, 0)
            assert report.failure_rate("candidate") == 30 / report.candidate_deliveries
            store = dict(await rt.store("loyalty").items())
        # The failed first round went to the primary; the rest to the candidate until the abort.
        assert all(store[k][0] == ["1", 0] for k in keys)

    run(main())
