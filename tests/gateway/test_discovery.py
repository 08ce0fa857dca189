"""Discovery and routing over real HTTP on loopback: versions, stickiness, breakers, failover.

Every instance is a runtime on one shared SQLite file, served by uvicorn on a free port (or in a
subprocess, for the kill test); the gateway runtime runs no notes itself, so every request it
routes crosses loopback HTTP to an instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from setpiece import (
    BreakerPolicy,
    CallPolicy,
    HTTPError,
    RuntimeConfig,
    Service,
    Stack,
    VersionRoutes,
)
from setpiece.gateway import bind, serving
from tests.gateway.conftest import auth, bearer, client, notes_service, token

Run = Any


def fast(*services: str) -> RuntimeConfig:
    """Quick heartbeats; a new config per runtime (each names its own group member)."""
    return RuntimeConfig(heartbeat_interval=0.1, session_timeout=0.6, services=services)



@contextlib.asynccontextmanager
async def instance(db: Path, service: Service) -> AsyncIterator[str]:
    """A runtime running ``service``, served on loopback and registered with its address."""
    sock, url = bind()
    app = Stack("app", services=[service], auth=auth()).asgi(
        engine=f"sqlite:///{db}", config=fast(), address=url)
    async with serving(app, sock):
        yield url


def gateway_stack(**kw: Any) -> Stack:
    """The edge: knows the notes routes (for matching, scopes, OpenAPI) but runs none."""
    edge = Service("edge")
    return Stack("app", services=[notes_service(), edge], auth=auth(), **kw)


async def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def _versions(c: httpx.AsyncClient, n: int, headers: dict[str, str]) -> Counter[str]:
    sem = asyncio.Semaphore(4)

    async def one() -> str:
        async with sem:
            r = await c.get("/notes/a", headers=headers)
            assert r.status_code == 200, r.text
            return str(r.json()["version"])

    return Counter(await asyncio.gather(*(one() for _ in range(n))))


def test_version_weights_header_and_sticky_routing(run: Run, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    routes = VersionRoutes({"notes": {"1": 90, "2": 10}})

    async def main() -> None:
        async with instance(db, notes_service("1")), instance(db, notes_service("2")):
            stack = gateway_stack(routes=routes)
            async with stack.start(engine=f"sqlite:///{db}", config=fast("edge")) as rt:
                await _wait_for(lambda: _has(rt, 2))
                async with client(rt.asgi()) as c:
                    h = bearer(token())
                    assert (await c.put("/notes/a", json={"text": "x"}, headers=h)
                            ).status_code == 200
                    counts = await _versions(c, 1000, h)
                    assert counts["1"] + counts["2"] == 1000
                    assert 850 <= counts["1"] <= 950, counts  # 90/10 within ±5 %
                    # the header picks a version outright
                    assert await _versions(c, 50, {**h, "x-setpiece-version": "2"}) == {"2": 50}
                    r = await c.get("/notes/a", headers={**h, "x-setpiece-version": "3"})
                    assert r.status_code == 503 and "version 3" in r.json()["detail"]
                    print("weights 90/10 ->", dict(counts))

            sticky = gateway_stack(routes=VersionRoutes({"notes": {"1": 90, "2": 10}},
                                                        sticky=True))
            async with sticky.start(engine=f"sqlite:///{db}", config=fast("edge")) as rt:
                await _wait_for(lambda: _has(rt, 2))
                async with client(rt.asgi()) as c:
                    per_user: dict[str, set[str]] = {}
                    for n in range(200):
                        h = bearer(token(subject=f"user-{n}"))
                        got = await _versions(c, 3, h)
                        per_user[f"user-{n}"] = set(got)
                    assert all(len(v) == 1 for v in per_user.values())  # each user stays put
                    canary = sum(v == {"2"} for v in per_user.values())
                    assert 5 <= canary <= 40, canary  # ~10 % of users, by a stable hash

    run(main())


async def _has(rt: Any, n: int) -> bool:
    return len([i for i in await rt.instances("notes") if i.address]) >= n


def test_breaker_opens_on_a_failing_instance_and_closes_after_it_recovers(
    run: Run, tmp_path: Path
) -> None:
    db = tmp_path / "app.db"
    fail: dict[str, Any] = {}
    hits: list[str] = []
    # panic_threshold=0: the breaker may eject even the one instance there is
    calls = CallPolicy(timeout=2.0, retries=2,
                       breaker=BreakerPolicy(failures=3, cooldown=0.4, panic_threshold=0))

    async def main() -> None:
        async with instance(db, notes_service("1", fail=fail, hits=hits)):
            stack = gateway_stack(calls=calls)
            async with stack.start(engine=f"sqlite:///{db}", config=fast("edge")) as rt:
                await _wait_for(lambda: _has(rt, 1))
                async with client(rt.asgi()) as c:
                    h = bearer(token())
                    await c.put("/notes/a", json={"text": "x"}, headers=h)
                    assert (await c.get("/notes/a", headers=h)).status_code == 200
                    (breaker,) = rt.asgi().breakers.values()
                    fail["on"] = True
                    hits.clear()
                    for _ in range(5):  # a 500 is not retried: the handler ran and failed ...
                        assert (await c.get("/notes/a", headers=h)).status_code == 500
                    assert len(hits) == 5
                    assert breaker.state == "closed"  # ... and it is no failure of the call
                    fail.update(on=False, status=503)
                    hits.clear()
                    r = await c.get("/notes/a", headers=h)  # a 503, retried: three failures
                    assert r.status_code == 503 and "x-setpiece-breaker" not in r.headers
                    assert len(hits) == 3 and breaker.state == "open"
                    r = await c.get("/notes/a", headers=h)  # open: fails fast, no call made
                    assert r.status_code == 503 and r.headers["x-setpiece-breaker"] == "open"
                    assert int(r.headers["retry-after"]) >= 0
                    assert len(hits) == 3
                    fail["status"] = None  # the instance recovers, but the breaker is still open
                    assert (await c.get("/notes/a", headers=h)).status_code == 503
                    assert len(hits) == 3
                    await asyncio.sleep(0.45)  # cool-down over: one probe goes through
                    assert (await c.get("/notes/a", headers=h)).status_code == 200
                    assert breaker.state == "closed" and len(hits) == 4
                    for _ in range(5):
                        assert (await c.get("/notes/a", headers=h)).status_code == 200

    run(main())


def test_a_failing_instance_is_ejected_but_never_the_last_healthy_one(
    run: Run, tmp_path: Path
) -> None:
    """Envoy's outlier detection: with one of two instances failing, the other takes every
    call; with both failing, the gateway is in panic and calls reach them anyway."""
    db = tmp_path / "app.db"
    fail_a: dict[str, Any] = {"status": 503}
    fail_b: dict[str, Any] = {}
    hits_a: list[str] = []
    hits_b: list[str] = []
    calls = CallPolicy(timeout=2.0, retries=2, breaker=BreakerPolicy(failures=3, cooldown=60))

    async def main() -> None:
        async with instance(db, notes_service("1", fail=fail_a, hits=hits_a)), \
                instance(db, notes_service("1", fail=fail_b, hits=hits_b)):
            stack = gateway_stack(calls=calls)
            async with stack.start(engine=f"sqlite:///{db}", config=fast("edge")) as rt:
                await _wait_for(lambda: _has(rt, 2))
                async with client(rt.asgi()) as c:
                    h = bearer(token())
                    fail_a["status"] = None
                    assert (await c.put("/notes/a", json={"text": "x"}, headers=h)
                            ).status_code == 200
                    fail_a["status"] = 503
                    for _ in range(20):  # a's 503s are retried on b: callers see no error
                        r = await c.get("/notes/a", headers=h)
                        assert r.status_code == 200, r.text
                    assert len(hits_a) == 3 and len(hits_b) == 20  # a is ejected after three
                    states = sorted(b.state for b in rt.asgi().breakers.values())
                    assert states == ["closed", "open"]
                    fail_b["status"] = 503  # now b fails too: its breaker opens, then panic
                    for _ in range(3):
                        r = await c.get("/notes/a", headers=h)
                        assert r.status_code == 503 and "x-setpiece-breaker" not in r.headers
                    assert {b.state for b in rt.asgi().breakers.values()} == {"open"}
                    before = len(hits_a) + len(hits_b)
                    r = await c.get("/notes/a", headers=h)
                    assert r.status_code == 503 and "x-setpiece-breaker" not in r.headers
                    assert len(hits_a) + len(hits_b) > before  # in panic, calls still go out
                    fail_a["status"] = fail_b["status"] = None  # both recover
                    for _ in range(3):
                        assert (await c.get("/notes/a", headers=h)).status_code == 200

    run(main())


def _spawn(db: Path, version: str) -> subprocess.Popen[bytes]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root), *sys.path])}
    return subprocess.Popen([sys.executable, "-m", "tests.gateway.instance_app", str(db),
                             version], env=env, cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def test_a_killed_instance_leaves_the_registry_and_traffic_fails_over(
    run: Run, tmp_path: Path
) -> None:
    db = tmp_path / "app.db"
    hits: list[str] = []

    async def main() -> None:
        async with instance(db, notes_service("1", hits=hits)):
            stack = gateway_stack()
            async with stack.start(engine=f"sqlite:///{db}", config=fast("edge")) as rt:
                await _wait_for(lambda: _has(rt, 1))
                proc = _spawn(db, "1")
                try:
                    await _wait_for(lambda: _has(rt, 2), timeout=30)
                    (other,) = [i for i in await rt.instances("notes")
                                if i.member.split("-")[-2] == str(proc.pid)]
                    async with client(rt.asgi()) as c:
                        h = bearer(token())
                        await c.put("/notes/a", json={"text": "x"}, headers=h)
                        served = Counter()
                        for _ in range(20):
                            r = await c.get("/notes/a", headers=h)
                            assert r.status_code == 200
                            served[r.headers["x-setpiece-instance"]] += 1
                        assert served[other.member] > 0 and len(served) == 2  # round robin
                        proc.send_signal(signal.SIGKILL)
                        proc.wait(10)
                        # at once: calls to the dead instance fail to connect and are retried
                        # on the live one (idempotent GETs), so callers see no error
                        for _ in range(20):
                            r = await c.get("/notes/a", headers=h)
                            assert r.status_code == 200, r.text
                            assert r.headers["x-setpiece-instance"] != other.member
                        # and within the TTL it drops out of discovery
                        await _wait_for(lambda: _gone(rt, other.member), timeout=20)
                        assert len(await rt.instances("notes")) == 1
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait(10)

    run(main())


async def _gone(rt: Any, member: str) -> bool:
    return all(i.member != member for i in await rt.instances("notes"))


def test_ctx_call_propagates_identity_and_trace_through_the_protections(
    run: Run, tmp_path: Path
) -> None:
    db = tmp_path / "app.db"
    seen: dict[str, Any] = {}
    notes = notes_service("1")

    @notes.get("/whoami", scopes=["notes:read"])
    async def whoami(ctx: Any) -> dict[str, Any]:
        seen["trace"] = ctx.traceparent
        return {"sub": ctx.identity.subject, "tenant": ctx.tenant}

    front = Service("front")

    @front.get("/front/{name}", scopes=["front:read"])
    async def show(name: str, ctx: Any) -> dict[str, Any]:
        seen["front_trace"] = ctx.traceparent
        me = await ctx.call("notes", "GET", "/whoami")
        note = await ctx.call("notes", "GET", f"/notes/{name}")
        if me.status != 200:
            raise HTTPError(me.status, "notes refused")
        return {"me": me.json(), "note": note.json(), "status": note.status}

    async def main() -> None:
        async with instance(db, notes):
            edge = Stack("app", services=[notes, front], auth=auth(),
                         calls=CallPolicy(timeout=2.0))
            config = RuntimeConfig(heartbeat_interval=0.1, session_timeout=0.6,
                                   services=("front",))
            async with edge.start(engine=f"sqlite:///{db}", config=config) as rt:
                await _wait_for(lambda: _has(rt, 1))
                async with client(rt.asgi()) as c:
                    both = bearer(token(["front:read", "notes:read", "notes:write"],
                                        tenant="t9", subject="alice"))
                    await c.put("/notes/n1", json={"text": "hello"}, headers=both)
                    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                    r = await c.get("/front/n1", headers={**both, "traceparent": trace})
                    assert r.status_code == 200, r.text
                    assert r.json() == {"me": {"sub": "alice", "tenant": "t9"},
                                        "note": {"text": "hello", "version": "1"},
                                        "status": 200}
                    assert seen["trace"].split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
                    assert seen["trace"] != seen["front_trace"]  # a new span per hop
                    # without notes:read the callee refuses: the caller's identity went along
                    only_front = bearer(token(["front:read"], subject="bob"))
                    r = await c.get("/front/n1", headers=only_front)
                    assert r.status_code == 403 and r.json()["detail"] == "notes refused"

    run(main())
