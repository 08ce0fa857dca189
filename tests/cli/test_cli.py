"""The ``setpiece`` command: every command driven for real, workers and dev as subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from typer.testing import CliRunner

from setpiece import Event
from setpiece.cli.app import app
from setpiece.engine import open_engine
from setpiece.event import encode_event
from tests.cli import shop
from tests.conftest import ENGINES, fresh_urls
from tests.processes import LineProcess

ROOT = Path(__file__).resolve().parents[2]
TARGET = "tests.cli.shop:stack"
Run = Callable[[Any], Any]


def cli(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=input)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shop.db'}"


async def _engine_call(url: str, fn: Callable[[Any], Any], store: str | None = None) -> Any:
    engine = await open_engine(url, store=store)
    try:
        return await fn(engine)
    finally:
        await engine.close()


def engine_call(url: str, fn: Callable[[Any], Any], store: str | None = None) -> Any:
    return asyncio.run(_engine_call(url, fn, store))


def store_items(url: str, namespace: str, store: str | None = None) -> dict[str, Any]:
    async def read(engine: Any) -> dict[str, Any]:
        rows = await engine.kv_scan(namespace, "", 100_000)
        return {k: msgspec.json.decode(v) for k, v in rows}

    return engine_call(url, read, store)


def groups(url: str) -> list[tuple[str, str]]:
    async def read(engine: Any) -> list[tuple[str, str]]:
        return sorted(await engine.groups())

    return engine_call(url, read)


def run_stack(url: str, events: list[Event], **kw: Any) -> None:
    """Run the shop stack in this process until the events are handled."""

    async def main() -> None:
        async with shop.stack.start(engine=url) as rt:
            await rt.publish_many(events, **kw)
            await rt.drain(timeout=20)

    asyncio.run(main())


# -- errors and exit codes ----------------------------------------------------------------------


def test_user_mistakes_print_one_line_and_exit_with_their_code(db: str, tmp_path: Path) -> None:
    cases = [
        (["inspect", "not a target", "--engine", db], 2, "is not MODULE:STACK"),
        (["inspect", "no_such_module:stack", "--engine", db], 2,
         "module 'no_such_module' not found"),
        (["inspect", "tests.cli.shop:nope", "--engine", db], 2, "has no attribute 'nope'"),
        (["inspect", "tests.cli.shop:orders", "--engine", db], 2,
         "is a Stream, not a setpiece.Stack"),
        (["inspect", TARGET, "--engine", db], 3, "no such file"),
        (["publish", TARGET, "--engine", "bogus://x", "--event", '{"type":"a","source":"b"}'],
         2, "unknown scheme"),
        (["publish", TARGET, "--engine", db, "--event", "{not json"], 2, "not valid JSON"),
        (["publish", TARGET, "--engine", db, "--event", '{"source":"cli"}'], 2,
         "type: required attribute is missing"),
        (["publish", TARGET, "--engine", db, "--event", '{"type":"x","source":"s","time":"noon"}'],
         2, "time: must be an RFC 3339 timestamp"),
        (["publish", TARGET, "--engine", db, "--bus", "nope",
          "--event", '{"type":"x","source":"s"}'],
         2, "no bus 'nope'"),
        (["publish", TARGET, "--engine", db], 2, "give the event one way"),
        (["dev", "no_such_module:stack", "--engine", db], 2, "module 'no_such_module' not found"),
        (["run", TARGET, "--engine", db, "--service", "nope"], 2, "no service 'nope'"),
    ]
    for args, code, message in cases:
        result = cli(*args)
        assert result.exit_code == code, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    (tmp_path / "junk.db").write_text("this is not a database" * 100)
    result = cli("inspect", TARGET, "--engine", f"sqlite:///{tmp_path / 'junk.db'}")
    assert result.exit_code == 3 and "not a setpiece database" in result.stderr
    cli("publish", TARGET, "--engine", db, "--event", '{"type":"x","source":"s"}')
    result = cli("tail", TARGET, "--engine", db, "--pattern", '{"type": "not-a-list"}')
    assert result.exit_code == 2 and "--pattern" in result.stderr
    # --debug: the traceback too, and the same exit code
    result = cli("--debug", "inspect", "no_such_module:stack", "--engine", db)
    assert result.exit_code == 2 and "Traceback" in result.stderr


def test_main_says_what_to_install_without_the_cli_extra() -> None:
    code = ("import sys; sys.modules['typer'] = None; "
            "from setpiece.cli import main; main(['--help'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=30)
    assert done.returncode == 1
    assert "pip install 'setpiece[cli]'" in done.stderr and "Traceback" not in done.stderr


# -- publish, tail, inspect -----------------------------------------------------------------------


def test_publish_every_way_then_tail_and_inspect_without_side_effects(
    db: str, tmp_path: Path
) -> None:
    one = cli("publish", TARGET, "--engine", db, "--event",
              '{"type":"order_placed","source":"cli","data":{"amount":500},"partitionkey":"k1"}')
    assert one.exit_code == 0, one.output
    first_id = one.stdout.strip()
    eventbridge = {"detail-type": "order_placed", "source": "shop.web", "detail": {"amount": 5}}
    (tmp_path / "events.json").write_text(json.dumps([eventbridge, eventbridge]))
    two = cli("publish", TARGET, "--engine", db, "--file", str(tmp_path / "events.json"), "--json")
    assert two.exit_code == 0, two.output
    assert [e["source"] for e in json.loads(two.stdout)] == ["shop.web", "shop.web"]
    lines = '{"type":"a","source":"s"}\n{"type":"b","source":"s"}\n'
    three = cli("publish", TARGET, "--engine", db, "-", input=lines)
    assert three.exit_code == 0 and len(three.stdout.split()) == 2
    order = {"type": "order", "source": "cli", "partitionkey": "c1",
             "data": {"customer": "c1", "item": 1}}
    four = cli("publish", TARGET, "--engine", db, "--stream", "orders",
               "--event", json.dumps(order))
    assert four.exit_code == 0

    before = groups(db)
    assert ("counter.count", "orders") in before  # publish prepared the stack's groups
    tail = cli("tail", TARGET, "--engine", db, "--from-beginning", "--no-follow", "--json",
               "--pattern",
               '{"type": ["order_placed"], "data": {"amount": [{"numeric": [">", 100]}]}}')
    assert tail.exit_code == 0, tail.output
    shown = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [s["event"]["id"] for s in shown] == [first_id]
    assert shown[0]["event"]["partitionkey"] == "k1"
    limited = cli("tail", TARGET, "--engine", db, "--from-beginning", "--limit", "2")
    assert limited.exit_code == 0 and len(limited.stdout.splitlines()) == 2
    assert "order_placed" in limited.stdout
    on_stream = cli("tail", TARGET, "--engine", db, "--stream", "orders", "--from-beginning",
                    "--no-follow", "--json")
    assert json.loads(on_stream.stdout)["event"]["data"] == {"customer": "c1", "item": 1}

    shown_json = cli("inspect", TARGET, "--engine", db, "--json")
    assert shown_json.exit_code == 0, shown_json.output
    data = json.loads(shown_json.stdout)
    streams = {s["name"]: s for s in data["streams"]}
    assert streams["bus.default"]["records"] == 5 and streams["orders"]["partitions"] == 4
    lags = {(g["group"], g["stream"]): g["lag"] for g in data["groups"]}
    assert lags[("audit.note", "bus.default")] == 5 and lags[("counter.count", "orders")] == 1
    rules = data["buses"][0]["rules"]
    assert rules[0]["name"] == "big_orders" and rules[0]["targets"] == ["stream:big"]
    handlers = {h["qualname"]: h for s in data["services"] for h in s["handlers"]}
    assert handlers["counter.count"]["kind"] == "stream" and handlers["audit.note"]["lag"] == 5
    table = cli("inspect", TARGET, "--engine", db)
    assert table.exit_code == 0 and "big_orders" in table.stdout and "counter.count" in table.stdout
    assert cli("dlq", "list", TARGET, "--engine", db).stdout.strip() == "no dead letters"
    assert groups(db) == before  # looking created no group


def test_tail_follows_new_records(db: str) -> None:
    cli("publish", TARGET, "--engine", db, "--event", '{"type":"warmup","source":"s"}')

    def later() -> None:
        time.sleep(0.3)
        for kind in ("skip", "order_placed"):
            event = json.dumps({"type": kind, "source": "s"})
            cli("publish", TARGET, "--engine", db, "--event", event)

    thread = threading.Thread(target=later)
    thread.start()
    result = cli("tail", TARGET, "--engine", db, "--pattern", '{"type": ["order_placed"]}',
                 "--limit", "1", "--json")
    thread.join()
    assert result.exit_code == 0
    assert json.loads(result.stdout)["event"]["type"] == "order_placed"


# -- dead letters and replay -----------------------------------------------------------------------


def test_dlq_list_show_redrive(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run_stack(db, [Event(type="explode", source="t"), Event(type="explode", source="t")])
    listed = cli("dlq", "list", TARGET, "--engine", db, "--json")
    assert listed.exit_code == 0, listed.output
    letters = json.loads(listed.stdout)
    assert [(d["handler"], d["attempts"], d["error"]) for d in letters] == [
        ("flaky.fail", 2, "ValueError: kaboom")] * 2
    table = cli("dlq", "list", TARGET, "--engine", db)
    assert "kaboom" in table.stdout and "flaky.fail" in table.stdout
    shown = cli("dlq", "show", TARGET, letters[0]["id"], "--engine", db, "--json")
    detail = json.loads(shown.stdout)
    assert detail["event"]["type"] == "explode" and "ValueError: kaboom" in detail["traceback"]
    assert "kaboom" in cli("dlq", "show", TARGET, letters[0]["id"], "--engine", db).stdout
    missing = cli("dlq", "show", TARGET, "999", "--engine", db)
    assert missing.exit_code == 2 and "no dead letter '999'" in missing.stderr
    assert cli("dlq", "redrive", TARGET, "999", "--engine", db).exit_code == 2
    before = groups(db)
    redriven = cli("dlq", "redrive", TARGET, letters[0]["id"], "--engine", db)
    assert redriven.exit_code == 0 and "redrove 1" in redriven.stdout
    assert groups(db) == before
    left = json.loads(cli("dlq", "list", TARGET, "--engine", db, "--json").stdout)
    assert [d["id"] for d in left] == [letters[1]["id"]]
    monkeypatch.setattr(shop, "HEALED", True)
    run_stack(db, [])
    assert store_items(db, "svc:flaky")["healed"] == letters[0]["event_id"]
    assert "redrove 1" in cli("dlq", "redrive", TARGET, "--engine", db).stdout  # all the rest
    assert cli("dlq", "list", TARGET, "--engine", db, "--json").stdout.strip() == "[]"


def test_replay_with_progress(db: str) -> None:
    start = time.time() - 1
    run_stack(db, [Event(type="order_placed", source="t", data={"amount": i}) for i in range(6)])
    assert store_items(db, "svc:audit")["deliveries"] == 6
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start)) + "Z"
    bad = cli("replay", TARGET, "--engine", db, "--start", iso, "--rule", "nope")
    assert bad.exit_code == 2 and "no rule or handler 'nope'" in bad.stderr
    assert cli("replay", TARGET, "--engine", db, "--start", "yesterday").exit_code == 2
    result = cli("replay", TARGET, "--engine", db, "--start", iso, "--rule", "audit.note")
    assert result.exit_code == 0, result.output
    assert "replayed 6 event(s)" in result.stdout
    assert "6/6" in result.stderr  # the progress bar, complete
    run_stack(db, [])
    assert store_items(db, "svc:audit")["deliveries"] == 12  # each once more, to audit only
    assert "big" not in json.dumps(store_items(db, "svc:flaky"))


# -- new service ----------------------------------------------------------------------------------


def test_new_service_scaffold_passes_its_own_test(tmp_path: Path) -> None:
    made = cli("new", "service", "billing-api", "--dir", str(tmp_path / "svc"))
    assert made.exit_code == 0, made.output
    assert (tmp_path / "svc" / "billing_api.py").exists()
    test = (tmp_path / "svc" / "test_billing_api.py").read_text()
    assert "async def test_counts_requests_per_customer(setpiece_stack" in test  # the plugin
    assert 'await rt.expect({"type": ["billing-api.done"]' in test
    again = cli("new", "service", "billing-api", "--dir", str(tmp_path / "svc"))
    assert again.exit_code == 2 and "exist already" in again.stderr
    assert cli("new", "service", "Bad Name!", "--dir", str(tmp_path)).exit_code == 2
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
         str(tmp_path / "svc"), str(tmp_path / "svc" / "test_billing_api.py")],
        cwd=tmp_path / "svc", capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    on_sqlite = subprocess.run(  # the same test on another engine, by the plugin's option
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
         str(tmp_path / "svc"), "--setpiece-engine=sqlite",
         str(tmp_path / "svc" / "test_billing_api.py")],
        cwd=tmp_path / "svc", capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert on_sqlite.returncode == 0 and "1 passed" in on_sqlite.stdout, on_sqlite.stdout


# -- subprocesses: workers and dev ----------------------------------------------------------------


class Proc(LineProcess):
    """``python -m setpiece.cli ARGS`` in a child process, its output lines collected."""

    def __init__(self, args: list[str], *, cwd: Path = ROOT, env: dict[str, str] | None = None
                 ) -> None:
        full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
                    "COLUMNS": "200", **(env or {})}
        super().__init__([sys.executable, "-m", "setpiece.cli", *args], cwd, full_env)

    def owned(self, label: str) -> list[int] | None:
        """The partitions the worker last said it owns for a consumer."""
        for line in reversed(self.lines):
            if f"{label}: owns partitions" in line:
                text = line.split("owns partitions ", 1)[1].split(" of ", 1)[0]
                return [] if text == "none" else json.loads(text)
        return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def wait_until(test: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def append(url: str, stream: str, events: list[Event], store: str | None = None) -> None:
    async def write(engine: Any) -> None:
        for start in range(0, len(events), 200):
            await engine.append(stream, [(e.partitionkey, encode_event(e))
                                         for e in events[start : start + 200]])

    engine_call(url, write, store)


ORDERS = 400
CUSTOMERS = 20


@pytest.fixture(params=ENGINES)
def worker_urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """(engine URL, store URL): an SQLite file, or NATS + PostgreSQL (marked ``servers``)."""
    if request.param == "memory":
        return f"sqlite:///{tmp_path / 'shop.db'}", None
    url, store = fresh_urls(request.getfixturevalue("nats"), request.getfixturevalue("postgres"))
    return url, store


def test_two_workers_share_partitions_and_one_takes_over_after_sigkill(
    worker_urls: tuple[str, str | None], procs: list[Proc]
) -> None:
    db, pg = worker_urls
    worker = ["run", TARGET, "--engine", db, "--heartbeat", "0.1", "--session-timeout", "0.8",
              "--batch-size", "8", "--concurrency", "1", *(["--store", pg] if pg else [])]
    env = {"SHOP_DELAY": "0.004"}
    a = Proc([*worker, "--member", "a"], env=env)
    procs.append(a)
    a.wait_for(lambda line: "counter.count: owns partitions [0, 1, 2, 3]" in line)
    b = Proc([*worker, "--member", "b"], env=env)
    procs.append(b)

    def split() -> bool:
        mine, theirs = a.owned("counter.count") or [], b.owned("counter.count") or []
        return len(mine) == len(theirs) == 2 and sorted(mine + theirs) == [0, 1, 2, 3]

    wait_until(split, what="the two workers to split the four partitions")

    events = [Event(type="order", source="t", partitionkey=f"c{i % CUSTOMERS}",
                    data={"customer": f"c{i % CUSTOMERS}", "item": i}) for i in range(ORDERS)]
    append(db, "orders", events, pg)

    def counted() -> int:
        return sum(v for k, v in store_items(db, "svc:counter", pg).items()
                   if k.startswith("pid:"))

    wait_until(lambda: counted() >= ORDERS // 4, what="a quarter of the orders")
    b.proc.kill()  # SIGKILL: no goodbye, its partitions move after the session timeout
    b.proc.wait()
    a.wait_for(lambda line: "counter.count: owns partitions [0, 1, 2, 3]" in line)
    wait_until(lambda: counted() >= ORDERS, what="every order")
    wait_until(lambda: len([k for k in store_items(db, "svc:audit", pg) if k.startswith("seen:")])
               >= ORDERS, what="every order_counted to be audited")
    assert a.stop(signal.SIGTERM) == 0
    assert any("stopped" in line for line in a.lines)

    store = store_items(db, "svc:counter", pg)
    assert all(store[f"item:{i}"] == 1 for i in range(ORDERS))  # exactly once per order
    assert all(store[f"customer:c{c}"] == ORDERS // CUSTOMERS for c in range(CUSTOMERS))
    by_worker = [v for k, v in store.items() if k.startswith("pid:")]
    assert len(by_worker) == 2 and all(n > 0 for n in by_worker) and sum(by_worker) == ORDERS

    async def emitted(engine: Any) -> int:
        total = 0
        for partition, end in enumerate(await engine.end_offsets("bus.default")):
            for record in await engine.read("bus.default", partition, 0, end + 1):
                total += msgspec.json.decode(record.value)["type"] == "order_counted"
        return total

    assert engine_call(db, emitted, pg) == ORDERS  # the outbox: one emitted event per order
    audit = store_items(db, "svc:audit", pg)
    assert audit["deliveries"] == ORDERS


APP_V1 = '''
from setpiece import Context, Event, Service, Stack

VERSION = 1
svc = Service("svc")


@svc.on({"type": ["ping"]})
async def handle(event: Event, ctx: Context) -> None:
    await ctx.store.put("version", VERSION)
    await ctx.store.put("count", await ctx.store.get("count", 0) + 1)


stack = Stack("devapp", services=[svc])
'''


def test_dev_reloads_on_change_without_losing_state_or_events(
    tmp_path: Path, procs: list[Proc]
) -> None:
    (tmp_path / "devapp.py").write_text(APP_V1)
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    dev = Proc(["dev", "devapp:stack", "--engine", url], cwd=tmp_path)
    procs.append(dev)
    dev.wait_for(lambda line: "running devapp" in line)

    def pings(n: int) -> None:
        append(url, "bus.default", [Event(type="ping", source="test") for _ in range(n)])

    def state() -> dict[str, Any]:
        return store_items(url, "svc:svc")

    pings(3)
    wait_until(lambda: state().get("count") == 3, what="the first pings")
    assert state()["version"] == 1
    (tmp_path / "devapp.py").write_text(APP_V1.replace("VERSION = 1", "VERSION = 2"))
    pings(20)  # published while the stack restarts: none may be lost
    dev.wait_for(lambda line: "reloaded devapp" in line)
    pings(1)
    wait_until(lambda: state().get("count") == 24, what="every ping, across the reload")
    assert state()["version"] == 2

    (tmp_path / "devapp.py").write_text(APP_V1 + "\nthis is not python(\n")
    dev.wait_for(lambda line: "SyntaxError" in line)
    (tmp_path / "devapp.py").write_text(APP_V1.replace("VERSION = 1", "VERSION = 3"))
    dev.wait_for(lambda line: "reloaded devapp" in line)
    pings(1)
    wait_until(lambda: state().get("version") == 3, what="the fixed code")
    assert state()["count"] == 25
    assert dev.stop(signal.SIGINT) == 0
    feed = "".join(dev.lines)
    assert "ok" in feed and "svc.handle" in feed and "ping" in feed
    assert "Traceback" not in feed
