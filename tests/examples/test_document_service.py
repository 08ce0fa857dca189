"""Seed 001's document service: documents joined with their author's profile and read from the
materialized view over HTTP, with no call to the profile service."""

from __future__ import annotations

from typing import Any

from examples.document_service.app import stack
from tests.gateway.conftest import client


def test_documents_are_served_from_the_materialized_view(run: Any) -> None:
    async def main() -> None:
        async with stack.start(engine="memory") as rt, client(rt.asgi()) as c:
            r = await c.put("/profiles/ann", json={"name": "Ann", "team": "ops"})
            assert r.status_code == 202, r.text
            await rt.drain()
            r = await c.post("/documents", json={"id": "d1", "title": "Runbook",
                                                 "author": "ann"})
            assert r.status_code == 202, r.text
            r = await c.post("/documents", json={"id": "d2", "title": "Notes", "author": "bo"})
            await rt.drain()
            r = await c.get("/documents/d1")
            assert r.json() == {"id": "d1", "title": "Runbook", "author": "ann",
                                "author_profile": {"name": "Ann", "team": "ops"}}
            r = await c.get("/documents/d2")  # a left join: no profile yet
            assert r.json()["author_profile"] is None
            assert (await c.get("/documents/nope")).status_code == 404
            assert await rt.view("profile_table").get("ann") == {"name": "Ann", "team": "ops"}

    run(main())
