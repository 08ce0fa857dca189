"""What a new user meets first (issue 12): --version, errors, sample events, run's summary, output.

Each test here failed before its fix; the item of issue 12 it covers is in its name or docstring.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest

from setpiece import Event
from setpiece.cli.feed import Feed, FeedLine
from setpiece.cli.publishing import parse_events
from tests.cli import shop
from tests.cli.test_cli import (
    ROOT,
    TARGET,
    Proc,
    append,
    cli,
    groups,
    run_stack,
    store_items,
    wait_until,
)

EXAMPLE = "examples.product_registration.app:stack"


EVENTS_DIR = ROOT / "examples" / "product_registration" / "events"


def free_port() -> int:
    """A local port where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def setpiece(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "setpiece.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# -- 12.4 --version -----------------------------------------------------------------------------


def test_version_prints_the_version_and_exits_0() -> None:
    from setpiece import __version__

    result = cli("--version")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"setpiece {__version__}"
    done = setpiece("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"setpiece {__version__}"


# -- 12.5 dev with a bad engine URL, 12.6 an unreachable NATS ------------------------------


def test_dev_with_a_bad_engine_url_exits_2_with_the_message(tmp_path: Path) -> None:
    done = setpiece("dev", TARGET, "--engine", "foo://x", timeout=30)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unknown scheme" in done.stderr and "foo://x" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_nats_is_an_engine_error_naming_the_url(tmp_path: Path) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}?connect_timeout=0.5"
    store = "postgresql://setpiece@127.0.0.1:1/setpiece"
    publish = ["publish", TARGET, "--event", '{"type":"a","source":"b"}']
    for command in (["inspect", TARGET], publish):
        result = cli(*command, "--engine", url, "--store", store)
        assert result.exit_code == 3, (command, result.output)
        assert "unreachable" in result.stderr and f"nats://127.0.0.1:{port}" in result.stderr
        assert "connect_timeout" in result.stderr  # says how to wait longer
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    done = setpiece("dev", TARGET, "--engine", url, "--store", store, timeout=60)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "unreachable" in done.stderr


# -- 12.7 --debug keeps the exit code -------------------------------------------------------------


def test_debug_keeps_the_exit_code_and_adds_the_traceback(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'shop.db'}"
    for args, code in ((["inspect", "no_such_module:stack", "--engine", db], 2),
                       (["inspect", TARGET, "--engine", db], 3),
                       (["publish", TARGET, "--engine", db, "--event", "{not json"], 2)):
        plain = cli(*args)
        debug = cli("--debug", *args)
        assert plain.exit_code == debug.exit_code == code, (args, debug.output)
        assert "Traceback" in debug.stderr and "Traceback" not in plain.stderr
        assert plain.stderr.strip().splitlines()[-1] in debug.stderr  # the same one line, too


# -- 12.8 sample events and publish --example ---------------------------------------------------


def _example_stack() -> Any:
    from setpiece.cli._common import load_stack

    return load_stack(EXAMPLE, app_dir=str(ROOT))


def _handlers_for(stack: Any, event: Event) -> list[Any]:
    view = event.pattern_view()
    return [h for s in stack.services.values() for h in s.handlers
            if h.kind == "event" and h.compiled is not None and h.compiled.matches(view)]


def test_the_example_ships_sample_events_its_handlers_accept() -> None:
    files = sorted(EVENTS_DIR.glob("*.json"))
    assert files, "examples/product_registration/events/*.json"
    stack = _example_stack()
    for path in files:
        for event in parse_events(path.read_text(), str(path)):
            handlers = _handlers_for(stack, event)
            assert handlers, f"{path.name}: no handler of the example takes {event.type!r}"
            for handler in handlers:
                handler.adapt(event)  # raises if the data does not fit the handler's model


def test_a_sample_event_flows_through_the_example(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'example.db'}"
    sample = EVENTS_DIR / "registration_submitted.json"
    published = setpiece("publish", EXAMPLE, "--engine", db, "--file", str(sample))
    assert published.returncode == 0, published.stderr
    serial = json.loads(sample.read_text())["data"]["serial_number"]

    async def flow() -> None:
        from examples.product_registration.app import build_stack

        async with build_stack(tmp_path / "outbox", "http://127.0.0.1:1/none").start(
            engine=db
        ) as rt:
            await rt.drain(timeout=20)

    import asyncio

    asyncio.run(flow())
    assert f"product:{serial}" in store_items(db, "svc:products")


def test_publish_example_prints_a_valid_event_for_each_declared_type(tmp_path: Path) -> None:
    stack = _example_stack()
    declared = sorted({t for s in stack.services.values() for h in s.handlers
                       if h.kind == "event" and isinstance(h.pattern, dict)
                       for t in h.pattern.get("type", []) if isinstance(t, str)})
    assert "registration_submitted" in declared
    for kind in declared:
        result = cli("publish", EXAMPLE, "--example", kind)
        assert result.exit_code == 0, (kind, result.output)
        event = Event.from_dict(json.loads(result.stdout))
        assert event.type == kind
        handlers = _handlers_for(stack, event)
        assert handlers, kind
        for handler in handlers:
            handler.adapt(event)
    # what it prints can be published as it is
    printed = cli("publish", EXAMPLE, "--example", "registration_submitted").stdout
    db = f"sqlite:///{tmp_path / 'x.db'}"
    again = cli("publish", EXAMPLE, "--engine", db, "-", input=printed)
    assert again.exit_code == 0, again.output
    unknown = cli("publish", EXAMPLE, "--example", "nope")
    assert unknown.exit_code == 2 and "registration_submitted" in unknown.stderr
    both = cli("publish", EXAMPLE, "--example", "registration_submitted", "--event", "{}")
    assert both.exit_code == 2


MODELS_APP = '''
from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from typing import Annotated, Literal

import msgspec
import pydantic
from msgspec import Meta

from setpiece import Service, Stack

svc = Service("svc")


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Line(msgspec.Struct):
    sku: Annotated[str, Meta(pattern=r"^[A-Z]{3}-\\d{2,4}$")]
    quantity: Annotated[int, Meta(ge=1, le=99)]
    price: Annotated[float, Meta(gt=0)]


class Order(msgspec.Struct, forbid_unknown_fields=True):
    id: uuid.UUID
    customer: Annotated[str, Meta(min_length=5, max_length=8)]
    lines: Annotated[list[Line], Meta(min_length=2)]
    placed: dt.datetime
    color: Color
    kind: Literal["web", "shop"]
    code: Annotated[str, Meta(pattern=r"^(ab|cd)[^x-z]x?[0-9a-f]{3}$")]
    note: str | None = None
    tags: dict[str, int] = {}


class Person(pydantic.BaseModel):
    email: Annotated[str, pydantic.Field(pattern=r"^[^@]+@[a-z]+\\.[a-z]{2,}$")] | None = None
    name: Annotated[str, pydantic.Field(min_length=3, pattern=r"^[A-Z][a-z]+$")]
    age: Annotated[int, pydantic.Field(ge=18, multiple_of=5)]
    born: dt.date
    url: pydantic.AnyUrl


@dataclasses.dataclass
class Move:
    frm: tuple[int, int]
    to: tuple[int, int]
    ok: bool


@svc.on({"type": ["order_placed"], "source": ["shop.web"]})
async def order(order: Order) -> None: ...


@svc.on({"type": ["person_added"]})
async def person(person: Person) -> None: ...


@svc.on({"type": ["moved"]})
def move(move: Move) -> None: ...


@svc.on({"type": ["plain"]})
async def plain(event) -> None: ...


@svc.on({"type": [{"prefix": "audit."}], "data": {"level": ["high"]}})
async def audited(event: dict) -> None: ...


stack = Stack("models", services=[svc])
'''


def test_publish_example_fits_msgspec_pydantic_and_dataclass_models(tmp_path: Path) -> None:
    (tmp_path / "models_app.py").write_text(MODELS_APP)
    from setpiece.cli._common import load_stack

    stack = load_stack("models_app:stack", app_dir=str(tmp_path))
    for kind in ("order_placed", "person_added", "moved", "plain", "audit.login"):
        done = setpiece("publish", "models_app:stack", "--example", kind, cwd=tmp_path)
        assert done.returncode == 0, (kind, done.stderr)
        event = Event.from_dict(json.loads(done.stdout))
        handlers = _handlers_for(stack, event)
        assert len(handlers) == 1, (kind, event)
        handlers[0].adapt(event)
        assert "warning" not in done.stderr, done.stderr
    order = json.loads(setpiece("publish", "models_app:stack", "--example", "order_placed",
                                cwd=tmp_path).stdout)
    assert order["source"] == "shop.web"  # what the handler's pattern asks for
    audit = json.loads(setpiece("publish", "models_app:stack", "--example", "audit.login",
                                cwd=tmp_path).stdout)
    assert audit["data"] == {"level": "high"}  # no model: what the pattern asks of the data


# -- 12.9 run: a start-up summary and a rate ----------------------------------------------------


def test_run_prints_a_start_up_summary_and_a_rate(tmp_path: Path, procs: list[Proc]) -> None:
    db = f"sqlite:///{tmp_path / 'shop.db'}"
    worker = Proc(["run", TARGET, "--engine", db, "--member", "w1", "--stats-interval", "0.2"])
    procs.append(worker)
    worker.wait_for(lambda line: "ready:" in line)
    summary = "".join(worker.lines)
    assert "stack shop" in summary and db in summary and "member w1" in summary
    assert "counter.count: owns partitions [0, 1, 2, 3] of orders" in summary
    assert "HTTP: none" in summary  # the shop declares no route
    append(db, "orders", [Event(type="order", source="t", partitionkey=f"c{i}",
                                data={"customer": f"c{i}", "item": i}) for i in range(30)])
    line = worker.wait_for(lambda line: "delivered" in line and "/s" in line)
    assert re.search(r"delivered \d+ ", line), line
    assert worker.stop(signal.SIGTERM) == 0


def test_run_summary_says_where_http_is_served(tmp_path: Path, procs: list[Proc]) -> None:
    db = f"sqlite:///{tmp_path / 'example.db'}"
    worker = Proc(["run", EXAMPLE, "--engine", db], env={"OUTBOX_DIR": str(tmp_path)})
    procs.append(worker)
    line = worker.wait_for(lambda line: "HTTP:" in line)
    assert "not served by setpiece run" in line and "setpiece gateway" in line
    worker.wait_for(lambda line: "ready:" in line)
    assert worker.stop(signal.SIGTERM) == 0


def test_run_quiet_prints_no_summary_and_no_rate(tmp_path: Path, procs: list[Proc]) -> None:
    db = f"sqlite:///{tmp_path / 'shop.db'}"
    worker = Proc(["run", TARGET, "--engine", db, "--quiet", "--stats-interval", "0.1"])
    procs.append(worker)

    def started() -> bool:
        return (tmp_path / "shop.db").exists() and ("counter.count", "orders") in groups(db)

    wait_until(started, what="the worker to create its groups")
    append(db, "orders", [Event(type="order", source="t", partitionkey="c1",
                                data={"customer": "c1", "item": i}) for i in range(10)])
    wait_until(lambda: store_items(db, "svc:counter").get("customer:c1") == 10,
               what="the orders")
    assert worker.stop(signal.SIGTERM) == 0
    worker.reader.join(5)
    shown = "".join(worker.lines)
    assert "ready:" not in shown and "delivered" not in shown and "owns partitions" not in shown


# -- 12.10 rough edges ----------------------------------------------------------------------------


def test_help_shows_plain_metavars_and_whole_summaries() -> None:
    top = cli("--help")
    assert top.exit_code == 0
    flat = " ".join(top.stdout.split())
    cut = flat.replace("COMMAND [ARGS]...", "").replace("(secret=...)", "")
    assert "..." not in cut and "…" not in flat
    assert "Publish events (CloudEvents JSON or EventBridge-shaped) and print their stored ids." \
        in flat
    for command in (["run"], ["dev"], ["publish"], ["dlq", "redrive"], ["workflow", "start"],
                    ["new", "service"], ["token"]):
        shown = cli(*command, "--help")
        assert shown.exit_code == 0, command
        assert not re.search(r"<[a-z\[\], |]+>", shown.stdout), (command, shown.stdout)
        assert "{" not in shown.stdout, (command, shown.stdout)
    run = cli("run", "--help").stdout
    assert "--service NAME" in run and "--engine URL" in run and "Usage: setpiece run [OPTIONS] " \
        "MODULE:STACK" in run
    assert "[ID]..." in cli("dlq", "redrive", "--help").stdout


def test_publish_help_does_not_promise_tables() -> None:
    assert "table" not in cli("publish", "--help").stdout


def test_feed_columns_stay_aligned_with_long_names() -> None:
    out = StringIO()
    feed = Feed(out, color=False)
    for source, handler, kind in (
        ("app", "a.b", "t"),
        ("ecommerce/registration/registration-api", "promotions.generate_discount_code_now",
         "registration_submitted_with_a_long_name"),
    ):
        feed.emit(FeedLine(1.0, "ok", handler, 1, 4, kind, source, "id", 1.5, [], None))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and len(lines[0]) == len(lines[1]), lines
    assert lines[0].index("1.5 ms") == lines[1].index("1.5 ms")
    assert "registration-api" in lines[1]  # the informative end of a long source is kept


def test_piped_tables_do_not_wrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    db = f"sqlite:///{tmp_path / 'shop.db'}"
    monkeypatch.setattr(shop, "HEALED", False)
    run_stack(db, [Event(type="explode", source="a-rather-long-source-name/for/wrapping")])
    letters = json.loads(cli("dlq", "list", TARGET, "--engine", db, "--json").stdout)
    table = cli("dlq", "list", TARGET, "--engine", db).stdout
    rows = [line for line in table.splitlines() if "flaky.fail" in line]
    assert len(rows) == 1 and "ValueError: kaboom" in rows[0] and letters[0]["time"] in rows[0]
    assert len(table.splitlines()) == 5, table  # top, header, rule, one row, bottom
    done = setpiece("inspect", TARGET, "--engine", db)  # a real pipe
    assert done.returncode == 0
    assert any("rule.default.big_orders.stream:big" in line and "bus.default" in line
               for line in done.stdout.splitlines()), done.stdout


def test_scaffold_names_each_file_that_exists(tmp_path: Path) -> None:
    (tmp_path / "billing.py").write_text("")
    one = cli("new", "service", "billing", "--dir", str(tmp_path))
    assert one.exit_code == 2
    assert f"{tmp_path / 'billing.py'} exists already" in one.stderr
    (tmp_path / "test_billing.py").write_text("")
    two = cli("new", "service", "billing", "--dir", str(tmp_path))
    assert two.exit_code == 2
    assert (f"{tmp_path / 'billing.py'} and {tmp_path / 'test_billing.py'} exist already"
            in two.stderr), two.stderr


DEV_APP = '''
from setpiece import Event, Service, Stack

svc = Service("svc")


@svc.on({"type": ["ping"]})
async def handle(event: Event) -> None: ...


stack = Stack("byeapp", services=[svc])
'''


def test_dev_says_goodbye_with_what_ran(tmp_path: Path, procs: list[Proc]) -> None:
    (tmp_path / "byeapp.py").write_text(DEV_APP)
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    dev = Proc(["dev", "byeapp:stack", "--engine", url], cwd=tmp_path)
    procs.append(dev)
    dev.wait_for(lambda line: "running byeapp" in line)
    append(url, "bus.default", [Event(type="ping", source="t")])
    dev.wait_for(lambda line: "svc.handle" in line)
    assert dev.stop(signal.SIGINT) == 0
    dev.reader.join(5)
    last = dev.lines[-1]
    assert "stopped" in last and "byeapp:stack" in last and "reload" in last, dev.lines
