"""`setpiece dev` reloads without refusing a request, and without waiting out retries' backoff.

The listening socket belongs to the supervisor, which binds it once and hands it to every child:
while one child stops and the next starts, connections wait in the socket's backlog instead of
being refused. A retry waiting on its backoff is handed back at a reload (the new child reads it
again), so a reload does not wait for it even with a grace period of an hour.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.processes import LineProcess

ROOT = Path(__file__).resolve().parents[2]

APP = '''
from setpiece import Context, Event, RetryPolicy, Service, Stack

VERSION = {version}
svc = Service("svc")


@svc.get("/version", public=True)
async def version() -> dict[str, int]:
    return {{"version": VERSION}}


HOUR = 3600.0


@svc.on({{"type": ["flaky"]}}, retry=RetryPolicy(max_attempts=100, initial_delay=HOUR,
                                               max_delay=HOUR, jitter=0))
async def flaky(event: Event, ctx: Context) -> None:
    await ctx.store.put("attempts", await ctx.store.get("attempts", 0) + 1)
    raise RuntimeError("the partner is down")


stack = Stack("reloadapp", services=[svc])
'''


class Dev(LineProcess):
    """``setpiece dev`` in a child process, its output lines collected by a thread."""

    def __init__(self, cwd: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
               "COLUMNS": "200"}
        super().__init__([sys.executable, "-m", "setpiece.cli", "dev", "app:stack", *args],
                         cwd, env)


@pytest.fixture
def dev_procs() -> Iterator[list[Dev]]:
    started: list[Dev] = []
    yield started
    for dev in started:
        dev.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(port: int) -> str:
    """One GET on a fresh connection: the version it answered, or what went wrong."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", "/version")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            return f"status {response.status}"
        return body.decode()
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return type(exc).__name__
    except http.client.HTTPException as exc:
        return type(exc).__name__
    finally:
        conn.close()


def fire(port: int, outcomes: Counter[str], stop: threading.Event) -> None:
    while not stop.is_set():
        outcomes[request(port)] += 1


def reload_to(app: Path, dev: Dev, version: int, wait: Callable[[], None] | None = None) -> None:
    app.write_text(APP.format(version=version))
    dev.wait_for("reloaded reloadapp")
    if wait is not None:
        wait()


@pytest.mark.slow
@pytest.mark.timeout(300)  # several processes; the machine may be loaded
def test_requests_across_ten_reloads_are_never_refused(
    tmp_path: Path, dev_procs: list[Dev]
) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP.format(version=0))
    port = free_port()
    dev = Dev(tmp_path, "--engine", f"sqlite:///{tmp_path / 'dev.db'}",
              "--http", f"127.0.0.1:{port}")
    dev_procs.append(dev)
    dev.wait_for("HTTP gateway on")

    outcomes: Counter[str] = Counter()
    stop = threading.Event()
    clients = [threading.Thread(target=fire, args=(port, outcomes, stop)) for _ in range(3)]
    for client in clients:
        client.start()
    try:
        for version in range(1, 11):
            seen = outcomes.total()
            reload_to(app, dev, version)
            dev.wait_for("HTTP gateway on")
            deadline = time.monotonic() + 60
            while outcomes.total() < seen + 10 and time.monotonic() < deadline:
                time.sleep(0.01)  # requests went through this reload
    finally:
        stop.set()
        for client in clients:
            client.join(60)
    assert outcomes["refused"] == 0, outcomes
    failed = {what: n for what, n in outcomes.items() if not what.startswith('{"version":')}
    assert failed == {}, outcomes  # nor reset, nor closed without an answer
    assert outcomes['{"version":10}'] > 0, outcomes  # the last reload serves the new code
    assert sum(n for what, n in outcomes.items() if what.startswith('{"version":')) > 100
    assert dev.stop() == 0
    said = "".join(dev.lines)
    assert "Traceback" not in said and "✗" not in said and "ERROR" not in said, said


def test_a_reload_does_not_wait_for_a_retry_on_its_backoff(
    tmp_path: Path, dev_procs: list[Dev]
) -> None:
    from setpiece import Event
    from setpiece.engine import open_engine
    from setpiece.event import encode_event

    app = tmp_path / "app.py"
    app.write_text(APP.format(version=0))
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    # A grace of an hour: a reload that waited for the retry's hour of backoff would time out.
    dev = Dev(tmp_path, "--engine", url, "--http", "", "--grace", "3600")
    dev_procs.append(dev)
    dev.wait_for("running reloadapp")

    import asyncio

    async def publish() -> None:
        engine = await open_engine(url)
        try:
            await engine.append("bus.default", [(None, encode_event(Event(type="flaky",
                                                                         source="t")))])
        finally:
            await engine.close()

    asyncio.run(publish())
    dev.wait_for("retry svc.flaky 1/100")  # the first attempt failed; the next waits an hour
    for version in (1, 2):
        reload_to(app, dev, version)  # each new child tries the handed-back event again
        dev.wait_for("retry svc.flaky 1/100")
    assert dev.stop() == 0


def test_a_malformed_http_address_is_refused_at_once(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP.format(version=0))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "setpiece.cli", "dev", "app:stack", "--http", "localhost"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2, done
    assert "--http 'localhost': not HOST:PORT" in done.stdout + done.stderr


def test_an_address_in_use_is_reported_and_the_stack_still_runs(
    tmp_path: Path, dev_procs: list[Dev]
) -> None:
    (tmp_path / "app.py").write_text(APP.format(version=0))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        dev = Dev(tmp_path, "--engine", f"sqlite:///{tmp_path / 'dev.db'}",
                  "--http", f"127.0.0.1:{port}")
        dev_procs.append(dev)
        dev.wait_for(f"HTTP gateway not started: cannot listen on 127.0.0.1:{port}")
        dev.wait_for("running reloadapp")
