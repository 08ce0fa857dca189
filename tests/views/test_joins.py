"""Joins: stream-table (inner and left), table-table (with a foreign key), and their checks."""

from __future__ import annotations

from typing import Any

import pytest

from setpiece import ConfigError, Event, Stack, Stream
from setpiece.views import Join, Table
from tests.conftest import ENGINES
from tests.views.helpers import read_all

profiles = Stream("profiles", partitions=4)
documents = Stream("documents", partitions=4)
enriched = Stream("enriched", partitions=4)


def doc(owner: str, n: int) -> Event:
    return Event(type="document", source="test", partitionkey=owner, data={"doc": n})


@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("engine_urls", ENGINES, indirect=True)
def test_stream_table_join_enriches_each_event_with_the_current_row(
    run: Any, engine_urls: tuple[str, str | None], how: str
) -> None:
    table = Table("profile_table", profiles, key=lambda e: e.partitionkey)
    join = Join("docs_with_owner", documents, table, emit_to=enriched, how=how)  # type: ignore[arg-type]
    stack = Stack("j", streams=[profiles, documents, enriched], views=[table, join])

    async def main() -> None:
        url, store = engine_urls
        async with stack.start(engine=url, store=store) as rt:
            await rt.publish(Event(type="p", source="t", partitionkey="ann",
                                   data={"name": "Ann"}), stream="profiles")
            await rt.drain()
            await rt.publish_many([doc("ann", 1), doc("bob", 2)], stream="documents")
            await rt.drain()
            await rt.publish(Event(type="p", source="t", partitionkey="ann",
                                   data={"name": "Ann B."}), stream="profiles")
            await rt.drain()
            await rt.publish(doc("ann", 3), stream="documents")
            await rt.drain()
            out = await read_all(rt.engine, "enriched")
            got = sorted((e["data"]["event"]["doc"], e["data"]["profile_table"]) for e in out)
            expected = [(1, {"name": "Ann"}), (3, {"name": "Ann B."})]
            if how == "left":
                expected.insert(1, (2, None))
            assert got == expected
            first = next(e for e in out if e["data"]["event"]["doc"] == 1)
            assert first["type"] == "document" and first["partitionkey"] == "ann"
            assert first["id"].endswith(":docs_with_owner")

    run(main())


def test_a_join_combines_with_its_own_function_and_key(run: Any) -> None:
    table = Table("profile_table", profiles, key=lambda e: e.partitionkey)
    join = Join("j", documents, table, emit_to=enriched, key=lambda e: e.data["owner"],
                combine=lambda e, row: {**e.data, "name": row["name"]})
    stack = Stack("j", streams=[profiles, documents, enriched], views=[table, join])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            await rt.publish(Event(type="p", source="t", partitionkey="ann",
                                   data={"name": "Ann"}), stream="profiles")
            await rt.drain()
            await rt.publish(Event(type="d", source="t", data={"owner": "ann", "doc": 1}),
                             stream="documents")
            await rt.publish(Event(type="d", source="t", data={"doc": 2}), stream="documents")
            await rt.drain()
            [out] = await read_all(rt.engine, "enriched")
            assert out["data"] == {"owner": "ann", "doc": 1, "name": "Ann"}
            [letter] = await rt.dead_letters()
            assert "key function raised KeyError" in letter.error

    run(main())


def test_joins_are_checked_when_the_stack_is_built() -> None:
    table = Table("t", profiles, key=lambda e: e.partitionkey)
    narrow = Stream("narrow", partitions=2)
    with pytest.raises(ConfigError, match="not co-partitioned: stream 'narrow' has 2"):
        Stack("j", streams=[profiles, narrow, enriched],
              views=[table, Join("j", narrow, table, emit_to=enriched)])
    with pytest.raises(ConfigError, match="joins table 't', which the stack does not declare"):
        Stack("j", streams=[profiles, documents, enriched],
              views=[Join("j", documents, table, emit_to=enriched)])
    with pytest.raises(ConfigError, match="how= must be 'inner' or 'left'"):
        Join("j", documents, table, emit_to=enriched, how="outer")  # type: ignore[arg-type]


def test_a_join_keeps_no_state_to_read(run: Any) -> None:
    table = Table("t", profiles, key=lambda e: e.partitionkey)
    stack = Stack("j", streams=[profiles, documents, enriched],
                  views=[table, Join("j", documents, table, emit_to=enriched)])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            with pytest.raises(ConfigError, match="is a join: it keeps no state"):
                rt.view("j")

    run(main())


def test_table_table_joins_by_key_and_by_foreign_key(run: Any) -> None:
    from setpiece.views import TableJoin

    users = Stream("users", partitions=4)
    accounts = Stream("accounts", partitions=2)
    orgs = Stream("orgs", partitions=3)
    user_table = Table("user_table", users, key=lambda e: e.partitionkey)
    account_table = Table("account_table", accounts, key=lambda e: e.partitionkey)
    org_table = Table("org_table", orgs, key=lambda e: e.partitionkey)
    by_key = TableJoin("user_accounts", user_table, account_table)
    by_org = TableJoin("user_orgs", user_table, org_table, how="left",
                       foreign_key=lambda user: user["org"],
                       combine=lambda user, org: {"user": user["name"],
                                                  "org": org and org["title"]})
    stack = Stack("tt", streams=[users, accounts, orgs],
                  views=[user_table, account_table, org_table, by_key, by_org])

    def put(stream: str, key: str, data: Any) -> tuple[Event, str]:
        return Event(type="row", source="t", partitionkey=key, data=data), stream

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            for event, stream in [put("users", "u1", {"name": "Ann", "org": "o1"}),
                                  put("users", "u2", {"name": "Bo", "org": "o2"}),
                                  put("accounts", "u1", {"balance": 5}),
                                  put("orgs", "o1", {"title": "Acme"})]:
                await rt.publish(event, stream=stream)
            await rt.drain()
            assert await rt.view("user_accounts").items() == [
                ("u1", {"user_table": {"name": "Ann", "org": "o1"},
                        "account_table": {"balance": 5}})]
            assert await rt.view("user_accounts").get("u2") is None  # inner: no account
            assert await rt.view("user_orgs").items() == [
                ("u1", {"user": "Ann", "org": "Acme"}), ("u2", {"user": "Bo", "org": None})]
            # Either side changing changes the join at once.
            event, stream = put("orgs", "o2", {"title": "Bolt"})
            await rt.publish(event, stream=stream)
            event, stream = put("users", "u1", {"name": "Ann", "org": "o2"})
            await rt.publish(event, stream=stream)
            await rt.drain()
            assert await rt.view("user_orgs").items() == [
                ("u1", {"user": "Ann", "org": "Bolt"}), ("u2", {"user": "Bo", "org": "Bolt"})]
            assert await rt.view("user_orgs").get("u2") == {"user": "Bo", "org": "Bolt"}

    run(main())


@pytest.mark.parametrize("engine_urls", ENGINES, indirect=True)
def test_windowed_stream_stream_join_pairs_events_within_the_window_once(
    run: Any, engine_urls: tuple[str, str | None]
) -> None:
    from setpiece.views import StreamJoin
    from tests.views.helpers import at

    clicks = Stream("clicks", partitions=2)
    views_ = Stream("impressions", partitions=2)
    pairs = Stream("pairs", partitions=2)
    join = StreamJoin("click_after_view", views_, clicks, within=10, grace=30, emit_to=pairs)
    stack = Stack("ss", streams=[clicks, views_, pairs], views=[join])

    def e(key: str, t: float, n: int) -> Event:
        return Event(type="x", source="t", partitionkey=key, time=at(t), data={"n": n})

    async def main() -> None:
        url, store = engine_urls
        async with stack.start(engine=url, store=store) as rt:
            await rt.publish_many([e("a", 0, 1), e("b", 0, 2)], stream="impressions")
            await rt.publish_many([e("a", 5, 10), e("a", 11, 11), e("b", 30, 12)],
                                  stream="clicks")
            await rt.drain()
            await rt.publish(e("a", 20, 3), stream="impressions")  # pairs with 11 (9 s)
            await rt.drain()
            got = sorted((p["partitionkey"], p["data"]["left"]["n"], p["data"]["right"]["n"])
                         for p in await read_all(rt.engine, "pairs"))
            assert got == [("a", 1, 10), ("a", 3, 11)]
            with pytest.raises(ConfigError, match="stream-stream join"):
                rt.view("click_after_view")

    run(main())


def test_what_a_fold_cannot_use_is_dead_lettered_naming_the_view_and_why(run: Any) -> None:
    """Every fold path: an event with no key to join on, and a combine or value function that
    raises, is a dead letter; the rest of the batch is folded."""
    from setpiece.views import StreamJoin
    from tests.views.helpers import at

    clicks = Stream("clicks", partitions=4)
    pairs = Stream("pairs", partitions=4)

    def refuse(*args: Any) -> Any:
        raise ValueError("no")

    table = Table("names", profiles, key=lambda e: e.partitionkey,
                  value=lambda e: e.data["name"] if e.data["name"] != "x" else refuse())
    join = Join("docs", documents, table, emit_to=enriched, how="left",
                combine=lambda e, row: e.data if e.data["doc"] != 2 else refuse())
    pair = StreamJoin("pair", clicks, documents, within=10, emit_to=pairs,
                      combine=lambda left, right: (
                          refuse() if (left.data["n"], right.data["doc"]) == (2, 2)
                          else [left.data["n"], right.data["doc"]]))
    stack = Stack("j", streams=[profiles, documents, enriched, clicks, pairs],
                  views=[table, join, pair])

    def event(key: str | None, **data: Any) -> Event:
        return Event(type="d", source="t", partitionkey=key, time=at(0), data=data)

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            await rt.publish_many([event("a", name="Ann"), event("b", name="x")],
                                  stream="profiles")
            await rt.publish_many([event(None, n=0), event("a", n=1), event("a", n=2)],
                                  stream="clicks")
            await rt.publish_many([event(None, doc=0), event("a", doc=1), event("a", doc=2)],
                                  stream="documents")
            await rt.drain()
            assert await rt.view("names").items() == [("a", "Ann")]
            assert [e["data"]["doc"] for e in await read_all(rt.engine, "enriched")] == [1]
            assert sorted(e["data"] for e in await read_all(rt.engine, "pairs")) == [
                [1, 1], [1, 2], [2, 1]]
            errors = sorted(letter.error for letter in await rt.dead_letters())
            assert errors == sorted([
                "ViewError: view 'names': the value function raised ValueError: no",
                "ViewError: view 'docs': the event has no partitionkey to join on (or give key=)",
                "ViewError: view 'docs': combine raised ValueError: no",
                "ViewError: view 'pair': the event has no partitionkey to join on (or give key=)",
                "ViewError: view 'pair': the event has no partitionkey to join on (or give key=)",
                "ViewError: view 'pair': combine raised ValueError: no",
            ])

    run(main())
