"""The gateway's side of the ASGI protocol: reading a request's body, sending a reply (whole, or
streamed chunk by chunk), and the lifespan that starts and stops the gateway with its server.

Nothing here routes or runs a request: :mod:`setpiece.gateway.app` does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from setpiece.gateway.exchange import Reply
from setpiece.gateway.responses import HTTPError

__all__ = ["ASGIScope", "Message", "Receive", "Send", "lifespan", "read_body", "send_reply"]

log = logging.getLogger("setpiece.gateway")

ASGIScope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def read_body(receive: Receive, max_body: int) -> bytes:
    """The request's body, all of it; a 413 once it is over ``max_body`` bytes."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > max_body:
            raise HTTPError(413, f"the body is over {max_body} bytes")
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:
            raise HTTPError(413, f"the body is over {max_body} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def send_reply(reply: Reply, receive: Receive, send: Send,
                     ending: Callable[[], asyncio.Event]) -> None:
    """Send ``reply``: at once, or, when it streams, chunk by chunk until it ends, the client
    disconnects, or the event ``ending()`` gives is set (a shutdown)."""
    if reply.stream is None:
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": [(b"content-length", str(len(reply.body)).encode()),
                                *reply.headers]})
        await send({"type": "http.response.body", "body": reply.body})
        return
    stream = reply.stream
    ended = ending()
    await send({"type": "http.response.start", "status": reply.status,
                "headers": reply.headers})

    async def pump() -> None:
        async for chunk in stream():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(gone()),
             asyncio.ensure_future(ended.wait())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if tasks[1] not in done:  # the client is still there: end the body
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def lifespan(receive: Receive, send: Send, startup: Callable[[], Awaitable[None]],
                   shutdown: Callable[[], Awaitable[None]]) -> None:
    """The ASGI lifespan: ``startup`` when the server starts (a failure is reported to it, and
    logged), ``shutdown`` when it stops."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await startup()
            except Exception as exc:
                log.exception("gateway startup failed")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await shutdown()
            finally:
                await send({"type": "lifespan.shutdown.complete"})
            return
