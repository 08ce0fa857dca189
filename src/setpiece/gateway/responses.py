"""What route handlers return or raise besides plain data, and what ``ctx.call`` gives back.

::

    @svc.post("/notes", scopes=["notes:write"])
    async def create(body: Note, ctx) -> Response:
        if await ctx.store.get(body.name) is not None:
            raise HTTPError(409, f"note {body.name!r} exists")
        ...
        return Response({"ok": True}, status=201, headers={"location": f"/notes/{body.name}"})

A plain return value is JSON with status 200. Raising :class:`HTTPError` answers with its status
and ``{"error": ..., "detail": ...}``; as with any exception, nothing the request did commits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = ["CallResult", "HTTPError", "Response"]

_REASONS = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "validation", 429: "too_many_requests",
    500: "internal", 502: "bad_gateway", 503: "unavailable", 504: "timeout",
}


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def _headers(headers: Mapping[str, str] | None, where: str) -> dict[str, str]:
    """Headers an HTTP response can carry (RFC 9110 §5): refused when made, not when sent."""
    out = dict(headers or {})
    for name, value in out.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ValueError(f"{where}: header name {name!r} is not an HTTP token")
        if not isinstance(value, str) or not _FIELD_VALUE.fullmatch(value):
            raise ValueError(
                f"{where}: the value of header {name!r} must be a string of Latin-1 text "
                "without control characters (no CR or LF)"
            )
    return out


def reason(status: int) -> str:
    return _REASONS.get(status, "error" if status >= 400 else "ok")


class HTTPError(Exception):
    """Raise in a route handler to answer with ``status`` (a 4xx or 5xx) and a message."""

    def __init__(
        self, status: int, detail: str, *, headers: Mapping[str, str] | None = None,
        field: str | None = None,
    ) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"HTTPError: status must be 4xx or 5xx, got {status}")
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail
        self.headers = _headers(headers, "HTTPError")
        self.field = field

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": reason(self.status), "detail": self.detail}
        if self.field is not None:
            out["field"] = self.field
        return out


class Response:
    """A handler's answer with a status or headers of its own (the body is encoded as JSON)."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, body: Any = None, *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        self.body = body
        self.status = status
        self.headers = _headers(headers, "Response")


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
        """Raise HTTPError with this status (and the callee's detail) unless it is 2xx/3xx."""
        if self.status >= 400:
            detail = ""
            try:
                body = self.json()
                if isinstance(body, dict):
                    detail = str(body.get("detail") or body.get("error") or "")
            except msgspec.DecodeError:
                detail = self.content[:200].decode("utf-8", "replace")
            raise HTTPError(self.status, detail or reason(self.status))
        return self
