"""Event-sourced aggregates: the public contract, conflicts, snapshots, upcasting, commands
from handlers and workflow tasks, projections rebuilt by replay, bad input — on SQLite (memory
and file) and, marked ``servers``, on NATS JetStream + PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from setpiece import ConfigError, Context, Event, Service, Stack, Workflow
from setpiece.engine import KVWrite, UnitOfWork
from setpiece.errors import ConflictError, EventError
from setpiece.policy import RetryPolicy
from setpiece.sourcing import Aggregate, Snapshots, Upcaster
from tests.sourcing import bank
from tests.sourcing.conftest import ENGINES, SHARED_ENGINES

Run = Any
Urls = tuple[str, str | None]
on_every_engine = pytest.mark.parametrize("urls", ENGINES, indirect=True)
on_shared_engines = pytest.mark.parametrize("urls", SHARED_ENGINES, indirect=True)


def _observer(seen: list[Event]) -> Service:
    watcher = Service("watcher")

    @watcher.on({"type": ["deposited"]})
    async def saw(event: Event, ctx: Context) -> None:
        seen.append(event)

    return watcher


@on_every_engine
def test_contract_execute_load_and_publish(run: Run, urls: Urls) -> None:
    seen: list[Event] = []
    stack = Stack("bank", services=[_observer(seen)], aggregates=[bank.account()])

    async def main() -> None:
        async with stack.start(urls[0], store=urls[1]) as rt:
            assert await rt.aggregate("account", "acc-1").load() == ({"balance": 0}, 0)
            assert await rt.aggregate("account", "acc-1").execute({"amount": 5}) == 1
            assert await rt.aggregate("account", "acc-1").execute({"amount": 7}) == 2
            assert await rt.aggregate("account", "acc-2").execute({"amount": 1}) == 1
            state, version = await rt.aggregate("account", "acc-1").load()
            assert (state, version) == ({"balance": 12}, 2)
            await rt.drain(timeout=20)
            stored = await rt.aggregate("account", "acc-1").events()
        by_subject = sorted((e.subject, e.extensions["aggregateversion"]) for e in seen)
        assert by_subject == [("acc-1", 1), ("acc-1", 2), ("acc-2", 1)]
        assert {e.extensions["aggregate"] for e in seen} == {"account"}
        assert all(e.source == "bank/account" and e.partitionkey == e.subject for e in seen)
        # what the bus carried is what the event store holds (one write, the outbox)
        assert [e.id for e in stored] == [e.id for e in seen if e.subject == "acc-1"]

    run(main())


@on_every_engine
def test_decide_refuses_and_nothing_is_written(run: Run, urls: Urls) -> None:
    seen: list[Event] = []
    stack = Stack("bank", services=[_observer(seen)], aggregates=[bank.account()])

    async def main() -> None:
        async with stack.start(urls[0], store=urls[1]) as rt:
            acc = rt.aggregate("account", "acc-1")
            await acc.execute({"amount": 3})
            with pytest.raises(ConfigError, match="insufficient funds: balance 3"):
                await acc.execute({"amount": -10})
            assert await acc.load() == ({"balance": 3}, 1)
            assert len(await acc.events()) == 1
            await rt.drain(timeout=20)
        assert [e.data for e in seen] == [{"amount": 3}]

    run(main())


def _other_writer(urls: Urls, aggregate: Aggregate, id: str, command: Any) -> int:
    """Run a command from another runtime (another process, as far as the engine knows), in
    another thread with its own event loop; returns the version it wrote."""
    out: list[int] = []

    async def write() -> None:
        async with Stack("bank", aggregates=[aggregate]).start(urls[0], store=urls[1]) as rt:
            out.append(await rt.aggregate(aggregate.name, id).execute(command))

    thread = threading.Thread(target=lambda: asyncio.run(write()))
    thread.start()
    thread.join(60)
    assert out, "the other writer did not finish"
    return out[0]


@on_shared_engines
def test_conflict_two_writers_one_wins_the_other_retries_on_fresh_state(
    run: Run, urls: Urls
) -> None:
    """Writer A loads version 1 and decides; meanwhile writer B appends version 2. A's append
    (expected version 1) is refused, and A's command runs again on B's state."""
    calls: list[tuple[dict[str, Any], int]] = []
    other = bank.account()
    armed: list[bool] = []

    def deciding(state: dict[str, Any], command: dict[str, Any]) -> list[Event]:
        calls.append((state, command["amount"]))
        if armed and len(calls) == 1:  # B gets there first, while A is deciding
            assert _other_writer(urls, other, "acc-1", {"amount": 100}) == 2
        return bank.decide(state, command)

    a = Aggregate("account", initial=lambda: {"balance": 0}, decide=deciding,
                  evolve=bank.evolve)

    async def main() -> None:
        async with Stack("bank", aggregates=[a]).start(urls[0], store=urls[1]) as rt:
            await rt.aggregate("account", "acc-1").execute({"amount": 1})  # version 1
            calls.clear()
            armed.append(True)
            assert await rt.aggregate("account", "acc-1").execute({"amount": 10}) == 3
            assert calls == [({"balance": 1}, 10), ({"balance": 101}, 10)]
            assert await rt.aggregate("account", "acc-1").load() == ({"balance": 111}, 3)
            amounts = [e.data["amount"] for e in await rt.aggregate("account", "acc-1").events()]
            assert amounts == [1, 100, 10]

    run(main())


@on_shared_engines
def test_conflict_past_the_retry_policy_raises_and_writes_nothing(
    run: Run, urls: Urls
) -> None:
    other = bank.account()
    writes = iter(range(100, 200))

    def deciding(state: dict[str, Any], command: dict[str, Any]) -> list[Event]:
        _other_writer(urls, other, "acc-1", {"amount": next(writes)})  # always first
        return bank.decide(state, command)

    a = Aggregate("account", initial=lambda: {"balance": 0}, decide=deciding,
                  evolve=bank.evolve, retry=RetryPolicy(max_attempts=2, initial_delay=0))

    async def main() -> None:
        async with Stack("bank", aggregates=[a]).start(urls[0], store=urls[1]) as rt:
            with pytest.raises(ConflictError, match="still conflicting after 2 attempts"):
                await rt.aggregate("account", "acc-1").execute({"amount": 1})
            amounts = [e.data["amount"] for e in await rt.aggregate("account", "acc-1").events()]
            assert amounts == [100, 101]  # the other writer's two; nothing of A's

    run(main())


@on_every_engine
def test_handlers_on_one_hot_aggregate_in_one_batch_each_get_a_version(
    run: Run, urls: Urls
) -> None:
    """Concurrent deliveries (different partition keys, one batch) commanding one aggregate:
    the in-batch race is detected and rerun, so every command lands once, in some order."""
    teller = Service("teller")

    @teller.on({"type": ["deposit_requested"]}, concurrency=8)
    async def deposit(event: Event, ctx: Context) -> None:
        await ctx.aggregate("account", "hot").execute({"amount": event.data["amount"]})

    stack = Stack("bank", services=[teller], aggregates=[bank.account()])

    async def main() -> None:
        async with stack.start(urls[0], store=urls[1]) as rt:
            await rt.publish_many([
                Event(type="deposit_requested", source="t", data={"amount": n},
                      partitionkey=f"k{n}")
                for n in range(1, 21)
            ])
            await rt.drain(timeout=30)
            state, version = await rt.aggregate("account", "hot").load()
            events = await rt.aggregate("account", "hot").events()
            assert await rt.dead_letters() == []
        assert version == 20 and state == {"balance": sum(range(1, 21))}
        assert sorted(e.data["amount"] for e in events) == list(range(1, 21))
        assert [e.extensions["aggregateversion"] for e in events] == list(range(1, 21))
        assert all(e.causationid is not None for e in events)  # caused by the request events

    run(main())


def test_plain_def_handler_and_decide_error_in_a_handler(run: Run) -> None:
    teller = Service("teller")

    @teller.on({"type": ["deposit_requested"]})
    def deposit(event: Event, ctx: Any) -> None:  # a plain def: the blocking context
        ctx.aggregate("account", event.data["id"]).execute({"amount": event.data["amount"]})

    stack = Stack("bank", services=[teller], aggregates=[bank.account()])

    async def main() -> None:
        from setpiece import RuntimeConfig

        config = RuntimeConfig()
        async with stack.start("memory", config=config) as rt:
            await rt.publish(Event(type="deposit_requested", source="t",
                                   data={"id": "a", "amount": 4}))
            await rt.publish(Event(type="deposit_requested", source="t",
                                   data={"id": "b", "amount": -4}))  # refused: dead letter
            await rt.drain(timeout=30)
            assert await rt.aggregate("account", "a").load() == ({"balance": 4}, 1)
            assert await rt.aggregate("account", "b").load() == ({"balance": 0}, 0)
            [letter] = await rt.dead_letters()
            assert "insufficient funds" in letter.error

    run(main())


def test_a_workflow_task_executes_a_command(run: Run) -> None:
    teller = Service("teller")

    @teller.task()
    async def credit(event: Event, ctx: Context) -> Any:
        return await ctx.aggregate("account", event.data["id"]).execute(
            {"amount": event.data["amount"]})

    flow = Workflow("credit", {
        "StartAt": "Credit",
        "States": {"Credit": {"Type": "Task", "Resource": "service:teller.credit",
                              "End": True}},
    })
    stack = Stack("bank", services=[teller], workflows=[flow], aggregates=[bank.account()])

    async def main() -> None:
        async with stack.start("memory") as rt:
            for _ in range(2):
                started = await rt.start_execution("credit", {"id": "w", "amount": 2})
                done = await rt.wait_execution(started, timeout=30)
                assert done.status == "SUCCEEDED", done
            assert done.output == 2
            assert await rt.aggregate("account", "w").load() == ({"balance": 4}, 2)

    run(main())


@on_shared_engines
def test_snapshots_every_n_used_on_load_and_rebuilt_when_the_code_changes(
    run: Run, urls: Urls
) -> None:
    folded: list[int] = []

    def counting(state: dict[str, Any], event: Event) -> dict[str, Any]:
        folded.append(event.extensions["aggregateversion"])
        return bank.evolve(state, event)

    def make(version: str) -> Aggregate:
        return Aggregate("account", initial=lambda: {"balance": 0}, decide=bank.decide,
                         evolve=counting, snapshots=Snapshots(every=3, version=version))

    async def main() -> None:
        async with Stack("bank", aggregates=[make("1")]).start(urls[0], store=urls[1]) as rt:
            for _ in range(7):
                await rt.aggregate("account", "a").execute({"amount": 1})
            snapshot = await rt.engine.kv_get("agg-snap:account", ["a"])
            assert b'"1",6,{"balance":6}' in snapshot["a"][0]
            folded.clear()
            assert await rt.aggregate("account", "a").load() == ({"balance": 7}, 7)
            assert folded == [7]  # only the event past the snapshot
        async with Stack("bank", aggregates=[make("2")]).start(urls[0], store=urls[1]) as rt:
            folded.clear()
            assert await rt.aggregate("account", "a").load() == ({"balance": 7}, 7)
            assert folded == [1, 2, 3, 4, 5, 6, 7]  # the old code's snapshot is not used
            folded.clear()
            assert await rt.aggregate("account", "a").load() == ({"balance": 7}, 7)
            assert folded == []  # rebuilt at version 7 by the load above

    run(main())


def test_the_default_snapshot_version_follows_the_state_code() -> None:
    one = bank.account()
    same = bank.account()
    other = Aggregate("account", initial=lambda: {"balance": 0}, decide=bank.decide,
                      evolve=lambda s, e: {"balance": s["balance"] + 2 * e.data["amount"]})
    assert one.state_version == same.state_version
    assert one.state_version != other.state_version
    assert bank.account(snapshots=Snapshots(version="v9")).state_version == "v9"


@on_shared_engines
def test_upcasters_turn_old_events_into_current_ones_on_read(run: Run, urls: Urls) -> None:
    old = Aggregate("account", initial=lambda: {"balance": 0},
                    decide=lambda s, c: [Event(type="deposited", data={"amt": c["amount"]})],
                    evolve=lambda s, e: {"balance": s["balance"] + e.data["amt"]},
                    snapshots=None)
    renamed = Upcaster("deposited", None,
                       lambda e: e.replace(data={"value": e.data["amt"]}, dataversion="2"))
    current = Upcaster("deposited", "2",
                       lambda e: e.replace(data={"amount": e.data["value"]}, dataversion="3"))

    def newer(state: dict[str, Any], command: dict[str, Any]) -> list[Event]:
        return [Event(type="deposited", data={"amount": command["amount"]}, dataversion="3")]

    new = Aggregate("account", initial=lambda: {"balance": 0}, decide=newer,
                    evolve=bank.evolve, upcasters=[current, renamed], snapshots=None)

    async def main() -> None:
        async with Stack("bank", aggregates=[old]).start(urls[0], store=urls[1]) as rt:
            await rt.aggregate("account", "a").execute({"amount": 5})
        async with Stack("bank", aggregates=[new]).start(urls[0], store=urls[1]) as rt:
            assert await rt.aggregate("account", "a").execute({"amount": 2}) == 2
            assert await rt.aggregate("account", "a").load() == ({"balance": 7}, 2)
            events = await rt.aggregate("account", "a").events()
            assert [(e.dataversion, e.data) for e in events] == [
                ("3", {"amount": 5}), ("3", {"amount": 2})]

    run(main())


def test_bad_input_clear_errors_and_nothing_written(run: Run, tmp_path: Path) -> None:
    def broken(event: Event) -> Event:
        raise KeyError("amt")

    by_type = Aggregate("ledger", initial=lambda: [],
                        decide=lambda s, c: [Event(type=c["type"], data={})],
                        evolve={"opened": lambda s, e: [*s, e.type]})
    upcasting = bank.account(upcasters=(Upcaster("deposited", None, broken),))
    seen: list[Event] = []

    async def main() -> None:
        stack = Stack("bank", services=[_observer(seen)], aggregates=[by_type, bank.account()])
        async with stack.start("memory") as rt:
            with pytest.raises(ConfigError, match=r"no aggregate 'nope' \(aggregates: "
                                                  r"\['account', 'ledger'\]\)"):
                rt.aggregate("nope", "x")
            with pytest.raises(ValueError, match="must not contain U\\+0000"):
                rt.aggregate("account", "a\0b")
            assert await rt.aggregate("ledger", "l").execute({"type": "opened"}) == 1
            with pytest.raises(EventError, match="no evolve for event type 'closed'"):
                await rt.aggregate("ledger", "l").execute({"type": "closed"})
            assert await rt.aggregate("ledger", "l").load() == (["opened"], 1)
            with pytest.raises(EventError, match="decide returned str, not an Event"):
                await bank_stack_decide_str(rt)
            await rt.aggregate("account", "a").execute({"amount": 1})
            await rt.drain(timeout=10)

    async def with_upcaster() -> None:
        url = f"sqlite:///{tmp_path / 'up.db'}"
        async with Stack("bank", aggregates=[bank.account()]).start(url) as rt:
            await rt.aggregate("account", "a").execute({"amount": 1})
        async with Stack("bank", services=[_observer(seen)],
                         aggregates=[upcasting]).start(url) as rt:
            with pytest.raises(EventError, match=r"the upcaster of 'deposited' version None "
                                                 r"failed on event .*KeyError"):
                await rt.aggregate("account", "a").execute({"amount": 1})
            with pytest.raises(EventError, match="upcaster of 'deposited'"):
                await rt.aggregate("account", "a").load()
            assert len(await rt.engine.read_events("agg:account", "a")) == 1
            await rt.drain(timeout=10)

    run(main())
    run(with_upcaster())
    assert len(seen) == 1  # nothing of the refused commands was published


async def bank_stack_decide_str(rt: Any) -> None:
    kind = rt.extension("sourcing").kinds["ledger"]
    original = kind.aggregate.decide
    kind.aggregate.decide = lambda s, c: ["not an event"]
    try:
        await rt.aggregate("ledger", "l").execute({})
    finally:
        kind.aggregate.decide = original


def test_stack_refuses_bad_aggregate_declarations() -> None:
    with pytest.raises(ConfigError, match="two of aggregate 'account'"):
        Stack("s", aggregates=[bank.account(), bank.account()])
    with pytest.raises(ConfigError, match="publishes on bus 'nowhere'"):
        Stack("s", aggregates=[bank.account(bus="nowhere")])
    with pytest.raises(ConfigError, match=r"expected setpiece\.sourcing\.Aggregate"):
        Stack("s", aggregates=["account"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=r"Snapshots\.every"):
        Snapshots(every=-1)
    with pytest.raises(ConfigError, match="evolve must be callable"):
        Aggregate("a", initial=dict, decide=lambda s, c: None, evolve=3)  # type: ignore[arg-type]


def test_ctx_aggregate_without_aggregates_is_a_config_error(run: Run) -> None:
    svc = Service("svc")
    errors: list[str] = []

    @svc.on({"type": ["go"]})
    async def go(event: Event, ctx: Context) -> None:
        try:
            ctx.aggregate("account", "a")
        except ConfigError as exc:
            errors.append(str(exc))

    async def main() -> None:
        async with Stack("s", services=[svc]).start("memory") as rt:
            await rt.publish(Event(type="go", source="t"))
            await rt.drain(timeout=10)

    run(main())
    assert errors == ["aggregate 'account': this stack declares no aggregates "
                      "(Stack(..., aggregates=[...]))"]


@on_every_engine
def test_projection_rebuilt_by_replaying_the_event_store(run: Run, urls: Urls) -> None:
    """A projection (a plain service consuming the aggregate's events) is wiped, and
    ``replay_aggregate`` sends every stored event through it again, and it alone."""
    balances = Service("balances")

    @balances.on({"type": ["deposited"]})
    async def project(event: Event, ctx: Context) -> None:
        row = await ctx.store.get(event.subject, {"balance": 0, "version": 0})
        version = event.extensions["aggregateversion"]
        if version > row["version"]:  # idempotent per aggregate version
            await ctx.store.put(event.subject, {"balance": row["balance"] +
                                                event.data["amount"], "version": version})

    seen: list[Event] = []
    stack = Stack("bank", services=[balances, _observer(seen)], aggregates=[bank.account()])

    async def main() -> None:
        async with stack.start(urls[0], store=urls[1]) as rt:
            await rt.execute_many("account", [(f"a{i % 5}", {"amount": i}) for i in range(30)])
            await rt.drain(timeout=30)
            view = rt.store("balances")
            before = dict(await view.items())
            assert before == {
                f"a{k}": {"balance": sum(range(k, 30, 5)), "version": 6} for k in range(5)}
            await rt.engine.commit(UnitOfWork(writes=[
                KVWrite("svc:balances", key, None) for key in before]))
            assert await view.items() == []
            assert await rt.replay_aggregate("account", rule="balances.project") == 30
            await rt.drain(timeout=30)
            assert dict(await view.items()) == before
        assert len(seen) == 30  # the other consumer saw nothing of the replay

    run(main())


def test_execute_many_is_all_or_nothing(run: Run) -> None:
    async def main() -> None:
        async with Stack("bank", aggregates=[bank.account()]).start("memory") as rt:
            assert await rt.execute_many("account", [("a", {"amount": 2}), ("b", {"amount": 1}),
                                                     ("a", {"amount": -1})]) == [1, 1, 2]
            with pytest.raises(ConfigError, match="insufficient funds"):
                await rt.execute_many("account", [("a", {"amount": 5}), ("b", {"amount": -9})])
            assert await rt.aggregate("account", "a").load() == ({"balance": 1}, 2)
            assert await rt.aggregate("account", "b").load() == ({"balance": 1}, 1)

    run(main())


@on_shared_engines
def test_a_stale_cache_entry_is_not_a_conflict_the_policy_counts(run: Run, urls: Urls) -> None:
    """The state cached after a command is stale once another writer appends: the next
    command's append is refused, and it reruns from the store without spending an attempt."""
    a = bank.account(retry=RetryPolicy(max_attempts=1))

    async def main() -> None:
        async with Stack("bank", aggregates=[a]).start(urls[0], store=urls[1]) as rt:
            assert await rt.aggregate("account", "acc-1").execute({"amount": 1}) == 1
            assert _other_writer(urls, bank.account(), "acc-1", {"amount": 10}) == 2
            assert await rt.aggregate("account", "acc-1").execute({"amount": 100}) == 3
            assert await rt.aggregate("account", "acc-1").load() == ({"balance": 111}, 3)

    run(main())
