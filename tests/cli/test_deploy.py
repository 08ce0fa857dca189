"""Deployments: ``setpiece apply`` records them, ``history`` lists them, ``rollback`` returns to
an earlier one, and an apply the engine refuses midway is undone (SQLite and NATS + PostgreSQL).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from setpiece import Event
from setpiece.cli.app import app
from setpiece.engine import Engine, open_engine
from tests.conftest import ENGINES, fresh_urls

APP = "tests.cli.deploy_app"
_CLI_LOCK = threading.Lock()  # CliRunner swaps sys.stdout: one invocation at a time


@pytest.fixture(params=ENGINES)
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """The --engine / --store options: an SQLite file, or NATS + PostgreSQL (``servers``)."""
    if request.param == "memory":
        return ["--engine", f"sqlite:///{tmp_path / 'deploy.db'}"]
    url, store = fresh_urls(request.getfixturevalue("nats"), request.getfixturevalue("postgres"))
    return ["--engine", url, "--store", store]


def cli(*args: str, input: str | None = None) -> Any:
    with _CLI_LOCK:
        return CliRunner().invoke(app, list(args), input=input)


def ok(*args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return str(result.output)


async def _open(urls: list[str]) -> Engine:
    return await open_engine(urls[1], store=urls[3] if len(urls) > 2 else None)


async def _state(urls: list[str]) -> dict[str, Any]:
    """Everything a deployment touches: streams, groups with their offsets, records, history."""
    engine = await _open(urls)
    try:
        streams = {s.name: (s.partitions, s.retention) for s in await engine.streams()}
        groups = {f"{g}@{s}": await engine.committed(g, s) for g, s in await engine.groups()}
        ends = {name: await engine.end_offsets(name) for name in streams}
        head = await engine.kv_get("setpiece.deployments", ["head"])
        return {"streams": streams, "groups": groups, "ends": ends,
                "head": head.get("head", (b"", 0))[0]}
    finally:
        await engine.close()


def state(urls: list[str]) -> dict[str, Any]:
    return asyncio.run(_state(urls))


def append(urls: list[str], stream: str) -> None:
    async def main() -> None:
        engine = await _open(urls)
        try:
            await engine.append(stream, [("k", b"record")])
        finally:
            await engine.close()

    asyncio.run(main())


def history(urls: list[str]) -> list[dict[str, Any]]:
    return list(json.loads(ok("history", *urls, "--json")))


V1 = {"orders": (2, None), "bus.default": (4, 604800.0), "setpiece.deadletters": (1, None)}
V2 = {**V1, "orders": (2, 3600.0), "audit": (1, None), "refunds": (2, None)}


def test_history_rollback_and_the_delete_guard(urls: list[str]) -> None:
    assert "no deployment recorded" in ok("history", *urls) if urls[1].startswith("nats") \
        else cli("history", *urls).exit_code == 3  # no SQLite file yet: nothing to read
    assert "deployment 1 is current" in ok("apply", f"{APP}:v1", *urls)
    assert "nothing to apply" in ok("apply", f"{APP}:v1", *urls)  # same definition: no record
    assert "deployment 2 is current" in ok("apply", f"{APP}:v2", *urls)
    assert state(urls)["streams"] == V2

    first, second = history(urls)
    assert (first["number"], first["action"], second["number"]) == (1, "apply", 2)
    assert first["versions"] == {"counter": "1"} and second["versions"] == {"counter": "2"}
    assert second["definition"]["services"][0]["handlers"] == [
        {"name": "count", "kind": "stream", "stream": "orders"},
        {"name": "refund", "kind": "stream", "stream": "refunds"},
    ]
    assert {s["name"]: s["retention"] for s in second["definition"]["resources"]["streams"]} \
        == {name: retention for name, (_, retention) in V2.items()}
    assert {g["group"] for g in second["definition"]["resources"]["groups"]} == {
        "counter.count", "counter.refund"}
    assert second["by"] and second["at"] >= first["at"]
    table = ok("history", *urls)
    assert "2 (current)" in table and "counter=2" in table and second["digest"] in table

    # refunds holds a record: a rollback would delete it, so it is refused without the flag.
    append(urls, "refunds")
    before = state(urls)
    result = cli("rollback", *urls)
    assert result.exit_code == 2, result.output
    assert "refusing to delete what holds data: stream refunds (1 record(s))" in result.output
    assert state(urls) == before
    # audit is empty and counter.refund never moved: they go without the flag; refunds with it.
    out = ok("rollback", *urls, "--allow-delete", "--yes")
    assert "rolling back from deployment 2 to 1" in out and "deployment 3 is current" in out
    after = state(urls)
    assert after["streams"] == V1 and set(after["groups"]) == {"counter.count@orders"}
    third = history(urls)[-1]
    assert (third["action"], third["rollback_of"]) == ("rollback", 1)
    assert third["definition"] == first["definition"]
    assert "rollback to 1" in ok("history", *urls)

    # --to N: forward again to 2, as deployment 4.
    assert "deployment 4 is current" in ok("rollback", *urls, "--to", "2")
    assert state(urls)["streams"] == V2
    assert [d["number"] for d in history(urls)] == [1, 2, 3, 4]
    result = cli("rollback", *urls, "--to", "9")
    assert result.exit_code == 2 and "deployment 9 does not exist (deployments: 1..4)" \
        in result.output


def test_apply_refused_midway_is_undone_sqlite(tmp_path: Path) -> None:
    """The SQLite database itself refuses the third step (a trigger on its streams table):
    the steps before it are undone and deployment 1 stays current."""
    urls = ["--engine", f"sqlite:///{tmp_path / 'deploy.db'}"]
    ok("apply", f"{APP}:v1", *urls)
    append(urls, "orders")
    with sqlite3.connect(tmp_path / "deploy.db") as db:
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON sp_streams WHEN NEW.name = 'refunds'"
                   " BEGIN SELECT RAISE(ABORT, 'no more streams here'); END")
    before = state(urls)
    result = cli("apply", f"{APP}:v2", *urls)
    assert result.exit_code == 3, result.output
    assert "step 3 of 4 (create stream refunds) failed" in result.output
    assert "no more streams here" in result.output
    assert "every step made was undone" in result.output
    assert state(urls) == before  # audit dropped again, orders' retention back to forever
    assert [d["number"] for d in history(urls)] == [1]


@pytest.mark.servers
def test_apply_refused_by_jetstream_is_undone_while_the_stack_runs(
    nats: Any, postgres: Any
) -> None:
    """On NATS + PostgreSQL, with deployment 1 running: JetStream refuses the streams of
    ``refunds`` (another JetStream stream already owns their subjects), so the apply of v2
    fails at its third step. Everything is put back, deployment 1 stays current, and its
    runtime keeps consuming."""
    import nats as nats_client
    from nats.js.api import StreamConfig

    from tests.cli import deploy_app

    url, store = fresh_urls(nats, postgres)
    urls = ["--engine", url, "--store", store]
    prefix = url.rpartition("prefix=")[2]
    ok("apply", f"{APP}:v1", *urls)

    async def main() -> None:
        nc = await nats_client.connect(nats.url)
        try:  # a stream outside setpiece that owns the subjects refunds' partitions need
            await nc.jetstream().add_stream(StreamConfig(
                name=f"{prefix}-squatter", subjects=[f"{prefix}.refunds.*"]))
        finally:
            await nc.close()
        async with deploy_app.v1().start(url, store=store) as rt:
            await rt.publish(Event(type="order", source="test"), stream="orders")
            await rt.drain()
            before = await _state(urls)
            result = await asyncio.to_thread(cli, "apply", f"{APP}:v2", *urls)
            assert result.exit_code == 3, result.output
            assert "step 3 of 4 (create stream refunds) failed" in result.output
            assert "JetStream refused it" in result.output
            assert "every step made was undone" in result.output
            assert await _state(urls) == before
            # JetStream's own view is back too: plan v1 finds nothing to change.
            plan = json.loads(await asyncio.to_thread(ok, "plan", f"{APP}:v1", *urls, "--json"))
            assert {c["action"] for c in plan["changes"]} == {"unchanged"}
            assert [d["number"] for d in json.loads(await asyncio.to_thread(
                ok, "history", *urls, "--json"))] == [1]
            # Deployment 1's runtime kept running: it consumes what comes after the refusal.
            await rt.publish(Event(type="order", source="test"), stream="orders")
            await rt.drain()
            assert await rt.store("counter").get("n") == 2
            assert rt.health()["status"] == "ok"

    asyncio.run(main())
