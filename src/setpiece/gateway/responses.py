"""What route handlers return or raise besides plain data, and what ``ctx.call`` gives back.

::

    @svc.post("/notes", scopes=["notes:write"])
    async def create(body: Note, ctx) -> Response:
        if await ctx.store.get(body.name) is not None:
            raise HttpError(409, f"note {body.name!r} exists")
        ...
        return Response({"ok": True}, status=201, headers={"location": f"/notes/{body.name}"})

A plain return value is JSON with status 200. Raising :class:`~setpiece.errors.HttpError` (also
named ``HTTPError``) answers with its status and ``{"error": ..., "detail": ...}``; as with any
exception, nothing the request did commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from setpiece.errors import HTTPError, HttpError, _http_reason, checked_headers

__all__ = ["CallResult", "HTTPError", "HttpError", "Response"]


def reason(status: int) -> str:
    """The ``error`` field of an error body for an HTTP status (``not_found``, ...)."""
    return _http_reason(status)


class Response:
    """A handler's answer with a status or headers of its own (the body is encoded as JSON)."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, body: Any = None, *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        self.body = body
        self.status = status
        self.headers = checked_headers(headers, "Response")


class CallResult:
    """The answer to ``ctx.call(...)``: status, headers (lowercase names) and body."""

    __slots__ = ("content", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status = status
        self.headers = dict(headers)
        self.content = content

    def __repr__(self) -> str:
        return f"CallResult({self.status}, {len(self.content)} bytes)"

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return msgspec.json.decode(self.content) if self.content else None

    def raise_for_status(self) -> CallResult:
        """Raise HttpError with this status (and the callee's detail) unless it is 2xx/3xx."""
        if self.status >= 400:
            detail = ""
            try:
                body = self.json()
                if isinstance(body, dict):
                    detail = str(body.get("detail") or body.get("error") or "")
            except msgspec.DecodeError:
                detail = self.content[:200].decode("utf-8", "replace")
            raise HttpError(self.status, detail or reason(self.status))
        return self
