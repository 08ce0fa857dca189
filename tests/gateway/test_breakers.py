"""Breakers open on failures of the call, not of a handler, and never eject the last instance.

In process: the runtime that serves the gateway is the one instance of the service.
"""

from __future__ import annotations

from typing import Any

import pytest

from setpiece import BreakerPolicy, CallPolicy, ConfigError, HTTPError, Service, Stack
from setpiece.gateway import Breaker
from tests.gateway.conftest import auth, bearer, client, token

Run = Any


def tenant_stack(status: int | None, **kw: Any) -> Stack:
    """Reads fail for tenant "evil": they raise (a 500) or, with ``status``, answer it."""
    svc = Service("notes")

    @svc.get("/notes/{name}", scopes=["notes:read"])
    async def read(name: str, ctx: Any) -> dict[str, Any]:
        if ctx.tenant == "evil":
            if status is None:
                raise RuntimeError(f"cannot parse {name!r}")
            raise HTTPError(status, "overloaded")
        return {"name": name}

    return Stack("app", services=[svc], auth=auth(), **kw)


def test_a_handler_failing_for_one_tenant_does_not_open_the_breaker_for_all(run: Run) -> None:
    """Five requests that made a handler raise opened the breaker: every tenant got 503."""

    async def main() -> None:
        async with tenant_stack(None).start(engine="memory") as rt, client(rt.asgi()) as c:
            evil, good = bearer(token(tenant="evil")), bearer(token(tenant="t1"))
            for _ in range(20):
                r = await c.get("/notes/a", headers=evil)
                assert r.status_code == 500 and r.json()["error"] == "internal"
            r = await c.get("/notes/a", headers=good)
            assert r.status_code == 200, r.text
            (breaker,) = rt.asgi().breakers.values()
            assert breaker.state == "closed"

    run(main())


def test_the_last_instance_is_never_ejected(run: Run) -> None:
    """503s (failures of the call) open the one instance's breaker, but with every instance
    ejected the gateway is in panic and routes to them anyway (Envoy's panic threshold)."""

    async def main() -> None:
        async with tenant_stack(503).start(engine="memory") as rt, client(rt.asgi()) as c:
            evil, good = bearer(token(tenant="evil")), bearer(token(tenant="t1"))
            for _ in range(4):
                r = await c.get("/notes/a", headers=evil)
                assert r.status_code == 503 and r.json()["detail"] == "overloaded"
            (breaker,) = rt.asgi().breakers.values()
            assert breaker.state == "open"
            r = await c.get("/notes/a", headers=good)
            assert r.status_code == 200, r.text
            assert breaker.state == "closed"  # the instance answered: it is back

    run(main())


def test_a_panic_threshold_of_zero_lets_breakers_eject_every_instance(run: Run) -> None:
    calls = CallPolicy(breaker=BreakerPolicy(failures=3, cooldown=60, panic_threshold=0))

    async def main() -> None:
        stack = tenant_stack(503, calls=calls)
        async with stack.start(engine="memory") as rt, client(rt.asgi()) as c:
            evil, good = bearer(token(tenant="evil")), bearer(token(tenant="t1"))
            assert (await c.get("/notes/a", headers=evil)).status_code == 503  # 3 attempts
            r = await c.get("/notes/a", headers=good)
            assert r.status_code == 503 and r.headers["x-setpiece-breaker"] == "open"
            assert int(r.headers["retry-after"]) >= 1

    run(main())


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_outcomes_of_calls_let_through_in_panic() -> None:
    clock = Clock()
    breaker = Breaker(BreakerPolicy(failures=2, cooldown=10), clock)
    breaker.record(False)
    breaker.record(False)
    assert breaker.state == "open" and not breaker.allow()
    # a call made in panic that fails keeps it open, the cool-down counted from now
    clock.now = 5.0
    breaker.record(False, panic=True)
    assert breaker.state == "open" and breaker.retry_after() == 10.0
    # one that succeeds closes it
    breaker.record(True, panic=True)
    assert breaker.state == "closed" and breaker.allow()
    # a late success of a call made while closed does not close an open breaker
    breaker.record(False)
    breaker.record(False)
    breaker.record(True)
    assert breaker.state == "open"


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_panic_threshold_is_a_share(share: float) -> None:
    with pytest.raises(ConfigError, match="panic_threshold"):
        BreakerPolicy(panic_threshold=share)
