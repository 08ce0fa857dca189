"""What a handler's emitted events inherit from their cause, and where each kind of handler
keeps a tenant's state — on every engine.

An event a handler returns or publishes without setting them carries its cause's
``partitionkey``, ``tenant``, ``correlationid`` (the cause's id when the cause has none) and
``traceparent``, and names the cause in ``causationid`` (:func:`setpiece.runtime.outgoing.prepare`).
The same event with a tenant reaches the same store — ``svc:<service>@<tenant>`` — whichever
kind of handler takes it. Each test below fails when one of these is dropped.

Engines: SQLite in memory, SQLite on a file, and NATS JetStream + PostgreSQL (``servers``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from setpiece import (
    Bus,
    Context,
    Event,
    JWTAuth,
    Service,
    Stack,
    Stream,
    Workflow,
    mint_token,
)
from tests.conftest import fresh_urls
from tests.workflows.helpers import machine

Run = Callable[[Any], Any]
Urls = tuple[str, str | None]

ENGINES = [
    pytest.param("memory", id="sqlite-memory"),
    pytest.param("file", id="sqlite-file"),
    pytest.param("nats", id="nats-pg", marks=pytest.mark.servers),
]
on_every_engine = pytest.mark.parametrize("urls", ENGINES, indirect=True)

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SECRET = "inheritance-secret-long-enough-for-hs256"


@pytest.fixture
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Urls:
    """(engine URL, store URL) of a fresh engine of the parametrized kind."""
    kind = request.param
    if kind == "memory":
        return "memory", None
    if kind == "file":
        return f"sqlite:///{tmp_path / 'setpiece.db'}", None
    assert kind == "nats", kind
    return fresh_urls(request.getfixturevalue("nats"), request.getfixturevalue("postgres"))


# ------------------------------------------------------------------ what emitted events inherit


def relay_stack(seen: list[Event]) -> Stack:
    """``relay`` returns one event and publishes another, both bare; ``sink`` records them."""
    relay = Service("relay")

    @relay.on({"type": ["cause"]})
    async def forward(event: Event, ctx: Context) -> Event:
        await ctx.publish(Event(type="published", data={}))
        return Event(type="returned", data={})

    sink = Service("sink")

    @sink.on({"type": ["returned", "published"]})
    async def record(event: Event) -> None:
        seen.append(event)

    return Stack("inherit", services=[relay, sink])


def emitted(run: Run, urls: Urls, cause: Event) -> tuple[Event, list[Event]]:
    """The cause as stored, and the two events the relay emitted for it."""
    seen: list[Event] = []
    stack = relay_stack(seen)
    url, store = urls

    async def main() -> Event:
        async with stack.start(url, store=store) as rt:
            stored = await rt.publish(cause)
            await rt.drain(timeout=30)
            return stored

    stored = run(main())
    assert sorted(e.type for e in seen) == ["published", "returned"], seen
    return stored, seen


def a_cause(**fields: Any) -> Event:
    options: dict[str, Any] = {"partitionkey": "customer-7", "tenant": "acme",
                               "correlationid": "order-42", "traceparent": TRACE}
    options.update(fields)
    return Event(type="cause", source="test", data={"n": 1}, **options)


@on_every_engine
def test_emitted_events_keep_the_partition_key_of_their_cause(run: Run, urls: Urls) -> None:
    _, out = emitted(run, urls, a_cause())
    assert [e.partitionkey for e in out] == ["customer-7", "customer-7"]


@on_every_engine
def test_emitted_events_keep_the_tenant_of_their_cause(run: Run, urls: Urls) -> None:
    _, out = emitted(run, urls, a_cause())
    assert [e.tenant for e in out] == ["acme", "acme"]


@on_every_engine
def test_emitted_events_keep_the_correlation_of_their_cause(run: Run, urls: Urls) -> None:
    _, out = emitted(run, urls, a_cause())
    assert [e.correlationid for e in out] == ["order-42", "order-42"]


@on_every_engine
def test_emitted_events_name_their_cause(run: Run, urls: Urls) -> None:
    cause, out = emitted(run, urls, a_cause())
    assert [e.causationid for e in out] == [cause.id, cause.id]


@on_every_engine
def test_emitted_events_keep_the_trace_of_their_cause(run: Run, urls: Urls) -> None:
    _, out = emitted(run, urls, a_cause())
    assert [e.traceparent for e in out] == [TRACE, TRACE]


def test_a_cause_without_correlation_starts_one_with_its_own_id(run: Run) -> None:
    cause, out = emitted(run, ("memory", None),
                         a_cause(correlationid=None, partitionkey=None, tenant=None,
                                 traceparent=None))
    assert [e.correlationid for e in out] == [cause.id, cause.id]
    assert all(e.partitionkey is None and e.tenant is None and e.traceparent is None
               for e in out)


def test_what_the_handler_sets_is_kept(run: Run) -> None:
    relay = Service("relay")
    seen: list[Event] = []

    @relay.on({"type": ["cause"]})
    async def forward(event: Event) -> Event:
        return Event(type="returned", data={}, partitionkey="other", tenant="acme",
                     correlationid="mine", causationid="also-mine",
                     traceparent="00-11111111111111111111111111111111-2222222222222222-01")

    sink = Service("sink")

    @sink.on({"type": ["returned"]})
    async def record(event: Event) -> None:
        seen.append(event)

    async def main() -> None:
        async with Stack("s", services=[relay, sink]).start("memory") as rt:
            await rt.publish(a_cause())
            await rt.drain(timeout=30)

    run(main())
    [out] = seen
    assert (out.partitionkey, out.correlationid, out.causationid) == (
        "other", "mine", "also-mine")
    assert out.traceparent is not None and out.traceparent.split("-")[1] == "1" * 32


# ------------------------------------------------------- one tenant, one store, every kind


async def write(event: Event, ctx: Context) -> None:
    """A handler of any kind: keeps what it was given under ``seen``."""
    await ctx.store.put("seen", event.data)


async def assert_tenant_store(rt: Any, service: str, value: Any) -> None:
    """``value`` is in the tenant ``acme``'s store of ``service``, and not in the shared one."""
    assert await rt.store(service, tenant="acme").get("seen") == value
    assert await rt.store(service).get("seen") is None


@on_every_engine
def test_an_event_handler_writes_to_the_tenant_store(run: Run, urls: Urls) -> None:
    svc = Service("billing")
    svc.on({"type": ["invoice"]})(write)
    url, store = urls

    async def main() -> None:
        async with Stack("s", services=[svc]).start(url, store=store) as rt:
            await rt.publish(Event(type="invoice", source="t", data={"n": 1}, tenant="acme"))
            await rt.drain(timeout=30)
            await assert_tenant_store(rt, "billing", {"n": 1})

    run(main())


@on_every_engine
def test_a_stream_consumer_writes_to_the_tenant_store(run: Run, urls: Urls) -> None:
    invoices = Stream("invoices", partitions=2)
    svc = Service("billing")
    svc.consume(invoices)(write)
    url, store = urls

    async def main() -> None:
        stack = Stack("s", services=[svc], streams=[invoices])
        async with stack.start(url, store=store) as rt:
            await rt.publish(Event(type="invoice", source="t", data={"n": 2}, tenant="acme"),
                             stream="invoices")
            await rt.drain(timeout=30)
            await assert_tenant_store(rt, "billing", {"n": 2})

    run(main())


@on_every_engine
def test_a_route_writes_to_the_tenant_store_of_the_token(run: Run, urls: Urls) -> None:
    import httpx

    svc = Service("billing")

    @svc.put("/invoices/{n}", scopes=["billing:write"])
    async def put_invoice(n: int, ctx: Any) -> dict[str, bool]:
        await ctx.store.put("seen", {"n": n})
        return {"ok": True}

    auth = JWTAuth(secret=SECRET, issuer="me", audience="app")
    stack = Stack("s", services=[svc], auth=auth)
    token = mint_token(SECRET, subject="u1", scopes=["billing:write"], tenant="acme",
                       issuer="me", audience="app", expires_in=600)
    url, store = urls

    async def main() -> None:
        async with stack.start(url, store=store) as rt:
            transport = httpx.ASGITransport(app=rt.asgi())
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                r = await client.put("/invoices/3",
                                     headers={"authorization": f"Bearer {token}"})
                assert r.status_code == 200, r.text
            await assert_tenant_store(rt, "billing", {"n": 3})

    run(main())


@on_every_engine
def test_a_schedule_has_no_tenant_and_writes_to_the_shared_store(run: Run, urls: Urls) -> None:
    """A timer fires with no event from outside, so no tenant: the service's shared store."""
    svc = Service("billing")
    ticks: list[str | None] = []

    @svc.every(0.05)
    async def tick(ctx: Context) -> None:
        ticks.append(ctx.event.tenant)
        await ctx.store.put("seen", {"tick": True})

    url, store = urls

    async def main() -> None:
        async with Stack("s", services=[svc]).start(url, store=store) as rt:
            for _ in range(1500):  # the first tick commits after about 0.05 s
                if await rt.store("billing").get("seen") is not None:
                    break
                await asyncio.sleep(0.02)
            assert await rt.store("billing").get("seen") == {"tick": True}

    run(main())
    assert ticks and set(ticks) == {None}


@on_every_engine
def test_a_workflow_task_writes_to_the_tenant_store(run: Run, urls: Urls) -> None:
    svc = Service("billing")
    svc.task(name="write")(write)
    flow = Workflow("invoicing", machine(
        ("Write", {"Type": "Task", "Resource": "service:billing.write"})))
    bus = Bus("default")
    bus.rule("start", {"type": ["invoice"]}, flow)
    stack = Stack("s", services=[svc], buses=[bus], workflows=[flow])
    url, store = urls

    async def main() -> None:
        async with stack.start(url, store=store) as rt:
            event = await rt.publish(Event(type="invoice", source="t", data={"n": 4},
                                           tenant="acme"))
            await rt.drain(timeout=30)
            done = await rt.wait_execution(f"invoicing:{event.id}", 30)
            assert done.status == "SUCCEEDED", done
            # The task gets the whole event as its input (no InputPath); what it saw is data.
            seen = (await rt.store("billing", tenant="acme").get("seen")
                    or await rt.store("billing").get("seen"))
            assert seen is not None and seen["data"] == {"n": 4}
            await assert_tenant_store(rt, "billing", seen)

    run(main())


# ---------------------------------------------------------------- one event id, one delivery


@on_every_engine
def test_the_same_event_twice_in_one_batch_is_handled_once(run: Run, urls: Urls) -> None:
    """Copies of one event read in the same batch: the consumer's own inbox check, before the
    engine's, lets one through (the engine would refuse the batch's second inbox entry)."""
    calls: list[int] = []
    svc = Service("billing")

    @svc.on({"type": ["invoice"]})
    async def count(event: Event, ctx: Context) -> None:
        calls.append(event.data["n"])
        await ctx.store.put("n", await ctx.store.get("n", 0) + 1)

    url, store = urls

    async def main() -> None:
        async with Stack("s", services=[svc]).start(url, store=store) as rt:
            event = Event(type="invoice", source="t", data={"n": 5}, partitionkey="k")
            await rt.publish_many([event, event, event])  # one append: one batch to read
            await rt.drain(timeout=30)
            assert await rt.store("billing").get("n") == 1

    run(main())
    assert calls == [5]
