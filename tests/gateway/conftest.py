"""Helpers for the gateway tests: a notes service, tokens, in-process and loopback clients."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import msgspec

from setpiece import Event, HTTPError, JWTAuth, Service, Stack, mint_token

SECRET = "dev-secret-long-enough-for-hs256!"
ISSUER = "me"
AUDIENCE = "app"


class Note(msgspec.Struct):
    text: str
    tags: list[str] = []


def notes_service(version: str = "1", *, fail: dict[str, Any] | None = None,
                  hits: list[str] | None = None) -> Service:
    """The contract's notes service; ``fail["on"]`` makes reads fail (a 500), ``fail["status"]``
    makes them answer that status (say 503: unavailable), ``hits`` counts calls."""
    svc = Service("notes", version=version)

    @svc.get("/notes/{name}", scopes=["notes:read"])
    async def read(name: str, ctx: Any) -> dict[str, Any]:
        if hits is not None:
            hits.append(name)
        if fail is not None and fail.get("on"):
            raise RuntimeError("the notes store is on fire")
        if fail is not None and fail.get("status"):
            raise HTTPError(fail["status"], "the notes store is overloaded")
        text = await ctx.store.get(name)
        if text is None:
            raise HTTPError(404, f"no note {name!r}")
        return {"text": text, "version": version}

    @svc.put("/notes/{name}", scopes=["notes:write"])
    async def write(name: str, body: Note, ctx: Any) -> dict[str, Any]:
        await ctx.store.put(name, body.text)
        await ctx.publish(Event(type="note_written", data={"name": name}))
        return {"ok": True}

    return svc


def auth() -> JWTAuth:
    return JWTAuth(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)


def notes_stack(version: str = "1", **kw: Any) -> Stack:
    return Stack("app", services=[notes_service(version)], auth=auth(), **kw)


def token(scopes: Sequence[str] = ("notes:read", "notes:write"), *, tenant: str | None = "t1",
          subject: str = "u1", **kw: Any) -> str:
    options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "expires_in": 3600}
    options.update(kw)
    return mint_token(SECRET, subject=subject, scopes=list(scopes), tenant=tenant, **options)


def bearer(tok: str) -> dict[str, str]:
    return {"authorization": f"Bearer {tok}"}


@contextlib.asynccontextmanager
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client (httpx ASGITransport)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
        yield c
