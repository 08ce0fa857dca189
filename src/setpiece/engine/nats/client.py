"""The production engine's nats-py connection: requests and their replies, and the few private
nats-py attributes (seams) used for speed.

:class:`Replies` multiplexes requests over one shared inbox and, where nats-py allows it (the
``_process_msg`` seam), hands replies to their handlers straight from the parser: no ``Msg``,
queue or task per reply. :func:`fast_headers` parses plain message headers without nats-py's
generic path. Every seam goes through :func:`seam` and has a fallback on nats-py's public API.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from setpiece.errors import EngineError

try:
    import nats.errors
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the production engine needs nats-py: pip install 'setpiece[nats,postgres]'"
    ) from exc

__all__ = ["READ_TIMEOUT", "Replies", "Reply", "fast_headers", "seam"]

READ_TIMEOUT = 5.0


class Reply:
    """A reply to one of our requests: what the handlers read of it.

    From the fast path, the headers stay raw bytes until asked for: a record's few headers are
    found in them directly (:meth:`header`), without building a dict per record.
    """

    __slots__ = ("_headers", "data", "raw", "subject")

    def __init__(
        self,
        subject: str,
        data: bytes,
        raw: bytes | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.subject = subject
        self.data = data
        self.raw = raw or None
        self._headers = headers

    @property
    def headers(self) -> dict[str, str] | None:
        if self._headers is None and self.raw is not None:
            self._headers = _parse_headers(self.raw)
        return self._headers

    @property
    def status(self) -> str | None:
        """The inline status ("404", "204", ...), None for a plain message."""
        raw = self.raw
        if raw is not None:
            return raw[9:12].decode() if raw[8:9] == b" " else None
        return (self._headers or {}).get("Status")

    def header(self, name: str) -> str | None:
        raw = self.raw
        if raw is None:
            return (self._headers or {}).get(name)
        needle = b"\r\n" + name.encode() + b": "
        start = raw.find(needle)
        if start < 0:
            return None
        start += len(needle)
        return raw[start : raw.find(b"\r\n", start)].decode("utf-8", "replace")


def _parse_headers(raw: bytes) -> dict[str, str]:
    """``NATS/1.0[ status[ description]]\r\nKey: Value\r\n..`` as a dict (the status as
    ``Status``, like nats-py)."""
    first, _, rest = raw.partition(b"\r\n")
    out: dict[str, str] = {}
    for line in rest.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep and name.strip():
            out[name.strip()] = value.strip()
    if len(first) > 8:  # an inline status: "NATS/1.0 404 No Messages"
        status, _, description = first[9:].decode("utf-8", "replace").partition(" ")
        if status.isdigit():
            out["Status"] = status
        if description:
            out["Description"] = description
    return out


class Replies:
    """Replies to our own requests, over one wildcard inbox subscription (no subscription per
    request). A handler takes every reply to its token ("N", or "N-i" for batches).

    nats-py's ``publish_async`` is not used: it leaves the future of a refused publish pending
    forever (its reply handler raises instead of failing the future).
    """

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._prefix = ""
        self._handlers: dict[str, Callable[[Reply], None]] = {}
        self._count = 0
        self._lock = asyncio.Lock()

    async def prefix(self) -> str:
        if not self._prefix:
            async with self._lock:
                if not self._prefix:
                    prefix = self._nc.new_inbox() + "."
                    sub = await self._nc.subscribe(prefix + "*", cb=self._route)
                    self._prefix = prefix
                    self._fast_path(seam(sub, "_id"))
        return self._prefix

    async def _route(self, msg: Msg) -> None:
        """nats-py's way: a Msg through the subscription's queue and task."""
        self._dispatch(msg.subject, Reply(msg.subject, msg.data, None, msg.headers))

    def _dispatch(self, subject: str, reply: Reply) -> None:
        # A token is "N", or "N-i" for the i-th reply of a batch registered as "N".
        token, _, _ = subject[len(self._prefix) :].partition("-")
        handler = self._handlers.get(token)
        if handler is not None:
            handler(reply)

    def _fast_path(self, sid: int | None) -> None:
        """Hand our replies to their handlers as the parser reads them: no Msg, no queue, no
        task switch per reply (a publish ack or a record each). Anything else takes nats-py's
        own path."""
        nc = self._nc
        original = seam(nc, "_process_msg")
        if sid is None or original is None:  # pragma: no cover - another nats-py
            return

        async def process_msg(
            msg_sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
        ) -> None:
            if msg_sid != sid:
                return await original(msg_sid, subject, reply, data, headers)  # type: ignore[no-any-return]
            name = subject.decode()
            self._dispatch(name, Reply(name, data, headers))
            return None

        nc._process_msg = process_msg  # type: ignore[method-assign,assignment]

    def expect(self, handler: Callable[[Reply], None]) -> str:
        self._count += 1
        token = str(self._count)
        self._handlers[token] = handler
        return token

    def forget(self, token: str) -> None:
        self._handlers.pop(token, None)

    async def request(self, subject: str, payload: bytes, timeout: float) -> Reply:
        """One request, one reply (over the shared inbox: no subscription, no Msg)."""
        prefix = await self.prefix()
        done: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def answer(msg: Reply) -> None:
            if not done.done():
                done.set_result(msg)

        token = self.expect(answer)
        try:
            await self._nc.publish(subject, payload, reply=prefix + token)
            return await asyncio.wait_for(done, timeout)
        finally:
            self.forget(token)

    async def get(self, js_name: str, request: dict[str, Any]) -> tuple[list[Reply], bool]:
        """Every message a direct get returns, up to its end-of-batch (or not-found) status,
        and whether the stream held nothing more when it answered."""
        prefix = await self.prefix()
        done: asyncio.Future[tuple[list[Reply], bool]] = (
            asyncio.get_running_loop().create_future()
        )
        out: list[Reply] = []
        batched = "batch" in request

        def collect(msg: Reply) -> None:  # runs per reply; no task or queue per record
            if done.done():
                return
            status = msg.status
            if status is None:
                out.append(msg)
                if not batched:
                    done.set_result((out, False))
            elif status == "404":  # nothing at or after
                done.set_result((out, True))
            elif status == "204":  # end of batch; nothing pending after it: the end
                done.set_result((out, msg.header("Nats-Num-Pending") == "0"))
            elif status in ("408", "503"):
                done.set_exception(nats.errors.TimeoutError())
            else:
                done.set_exception(
                    EngineError(f"JetStream direct get on {js_name}: status {status}")
                )

        token = self.expect(collect)
        try:
            await self._nc.publish(
                f"$JS.API.DIRECT.GET.{js_name}",
                json.dumps(request).encode(),
                reply=prefix + token,
            )
            return await asyncio.wait_for(done, READ_TIMEOUT)
        finally:
            self.forget(token)


def seam(obj: Any, name: str) -> Any:
    """A private attribute of nats-py that the engine uses for speed, or None.

    Every such use goes through here and has a fallback on nats-py's public API, so a nats-py
    that renames or drops one is slower, not broken (pyproject bounds nats-py's version; the
    fallbacks are tested by hiding every seam, see tests/engine/test_nats_conformance.py).
    """
    return getattr(obj, name, None)


def fast_headers(nc: NATS) -> None:
    """Parse plain message headers (``NATS/1.0\\r\\nKey: Value\\r\\n..``) without nats-py's
    generic path (a sixth of the CPU of reading records back); status lines and anything
    unusual still go to nats-py's own parser."""
    generic: Callable[[bytes], Awaitable[dict[str, str] | None]] | None = seam(
        nc, "_process_headers"
    )
    if generic is None:  # another nats-py: its own parser, unchanged
        return

    async def parse(headers: bytes) -> dict[str, str] | None:
        if not headers:
            return None
        if not headers.startswith(b"NATS/1.0\r\n"):  # a status line: nats-py's own parser
            return await generic(headers)
        try:
            lines = bytes(headers[10:]).decode("utf-8", "replace").split("\r\n")
            return dict(line.split(": ", 1) for line in lines if line)
        except ValueError:
            return await generic(headers)

    nc._process_headers = parse  # type: ignore[method-assign]
