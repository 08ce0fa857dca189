"""What the gateway passes around for one HTTP exchange: the request as routing and handlers see
it (with its W3C trace context), and the reply, with the JSON error bodies every route shares.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import msgspec

from setpiece.gateway.auth import ANONYMOUS, Identity
from setpiece.gateway.responses import reason

__all__ = [
    "JSON_HEADER", "Reply", "Request", "Unavailable", "encode_json", "error_reply",
    "message_reply",
]

JSON_HEADER = (b"content-type", b"application/json")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$")


def _pydantic_hook(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if dump is not None:  # pydantic models
        return dump(mode="json")
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


encode_json = msgspec.json.Encoder(enc_hook=_pydantic_hook).encode


class Reply:
    """A status, a body and headers, ready to send."""

    __slots__ = ("body", "headers", "status", "stream")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]],
                 stream: Callable[[], AsyncIterator[bytes]] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers
        self.stream = stream  # a body sent as it comes (server-sent events), after ``body``


def error_reply(status: int, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None
           ) -> Reply:
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    return Reply(status, encode_json(payload), [JSON_HEADER, *extra])


def message_reply(status: int, detail: str, **extra: Any) -> Reply:
    return error_reply(status, {"error": reason(status), "detail": detail, **extra})


class Request:
    """What the routing and the handler need of one request (outside or ``ctx.call``)."""

    __slots__ = ("body", "content_type", "direct", "identity", "method", "path", "query_string",
                 "raw_path", "request_id", "served_version", "span_id", "trace_flags", "trace_id",
                 "version")

    def __init__(self, method: str, path: str, raw_path: bytes, query_string: bytes) -> None:
        self.method = method
        self.path = path
        self.raw_path = raw_path
        self.query_string = query_string
        self.body = b""
        self.content_type = ""
        self.identity: Identity = ANONYMOUS
        self.trace_id = ""
        self.trace_flags = "01"
        self.span_id: str | None = None  # the span serving it, when it is traced
        self.served_version: str | None = None  # the service version routing chose
        self.request_id = ""
        self.version: str | None = None
        self.direct = False

    def set_trace(self, traceparent: str | None) -> None:
        m = _TRACEPARENT.match(traceparent) if traceparent else None
        if m is not None and m.group(1) != "0" * 32:
            self.trace_id, self.trace_flags = m.group(1), m.group(2)
        else:
            self.trace_id = os.urandom(16).hex()

    def child_traceparent(self) -> str:
        """A traceparent for the next hop: same trace, a new span (the span serving this
        request, when it is traced: the next hop's parent)."""
        return f"00-{self.trace_id}-{self.span_id or os.urandom(8).hex()}-{self.trace_flags}"

    def trace_from(self, traceparent: str) -> None:
        """Continue the trace of ``traceparent``, whose span serves this request."""
        m = _TRACEPARENT.match(traceparent)
        if m is not None:
            self.trace_id, self.trace_flags = m.group(1), m.group(2)
            self.span_id = traceparent[36:52]


class Unavailable(Exception):
    """No instance can take the call now; carries the reply to give."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply
