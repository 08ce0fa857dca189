"""Event ingress: the CloudEvents HTTP protocol binding, so outside systems and webhooks publish.

``POST /events/{bus}`` accepts the three modes of the binding:

* structured — ``Content-Type: application/cloudevents+json``, the whole event as JSON;
* batched — ``application/cloudevents-batch+json``, a JSON array of events (one transaction);
* binary — the attributes in ``ce-*`` headers (``ce-id``, ``ce-source``, ``ce-type``,
  ``ce-specversion`` required; values percent-decoded), the data in the body, its media type in
  ``Content-Type`` (JSON, or text; other binary data is refused). With no ``Content-Type``, the
  data is JSON when the body parses as JSON (as the official SDKs send and read it), else text.

A malformed event is a :class:`IngressError` (400) naming the field.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

import msgspec

from setpiece._json import DepthError
from setpiece._json import decode as decode_json
from setpiece.errors import EventError
from setpiece.event import Event

__all__ = ["IngressError", "parse_events"]

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
_REQUIRED = ("id", "source", "type", "specversion")


class IngressError(ValueError):
    """An event sent over HTTP is malformed. ``field`` names the attribute."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def parse_events(
    content_type: str, headers: Iterable[tuple[bytes, bytes]], body: bytes
) -> list[Event]:
    """The events one request carries, checked; raises IngressError naming the bad field."""
    media = _media_type(content_type)
    if media == STRUCTURED:
        return [_structured(_decode(body, "event", 1), "")]
    if media == BATCH:
        items = _decode(body, "batch", 2)
        if not isinstance(items, list):
            raise IngressError("batch", "a batch is a JSON array of events")
        if not items:
            raise IngressError("batch", "the batch is empty")
        return [_structured(item, f"[{i}].") for i, item in enumerate(items)]
    return [_binary(media, content_type, headers, body)]


def _decode(body: bytes, what: str, envelope_levels: int) -> Any:
    try:
        return decode_json(body, what, extra_levels=envelope_levels)
    except DepthError as exc:
        raise IngressError("data", str(exc).removeprefix(f"{what}: ")) from None
    except msgspec.DecodeError as exc:
        raise IngressError(what, f"not valid JSON ({exc})") from None


def _structured(obj: Any, prefix: str) -> Event:
    if not isinstance(obj, dict):
        raise IngressError(f"{prefix}event".rstrip("."), "an event is a JSON object")
    if "detail-type" not in obj:  # EventBridge-shaped events are mapped by Event.from_dict
        for name in _REQUIRED:
            if obj.get(name) in (None, ""):
                raise IngressError(f"{prefix}{name}", "required attribute is missing")
    return _checked(lambda: Event.from_dict(obj), prefix)


def _checked(build: Any, prefix: str) -> Event:
    try:
        event: Event = build()
        return event.check_external()
    except EventError as exc:
        field = exc.field or "event"
        raise IngressError(f"{prefix}{field}", str(exc).removeprefix(f"{field}: ")) from None


def _binary(
    media: str, content_type: str, headers: Iterable[tuple[bytes, bytes]], body: bytes
) -> Event:
    attrs: dict[str, Any] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if name.startswith("ce-") and len(name) > 3:
            attrs[name[3:]] = unquote(raw_value.decode("latin-1"))
    if not attrs:
        raise IngressError(
            "content-type",
            f"send {STRUCTURED}, {BATCH}, or binary mode with ce-* headers",
            415,
        )
    for name in _REQUIRED:
        if not attrs.get(name):
            raise IngressError(name, f"required attribute is missing (header ce-{name})")
    if "data" in attrs or "data_base64" in attrs:
        raise IngressError("data", "data travels in the body, not in a ce- header")
    if body:
        if _is_json(media):
            attrs["data"] = _decode(body, "data", 0)
        elif not media:
            attrs["data"] = _json_or_text(body)
        elif media.startswith("text/"):
            attrs["data"] = _text(body)
        else:
            raise IngressError(
                "datacontenttype", f"binary data ({media}) is not supported; send JSON or text",
                415,
            )
    if content_type:
        attrs["datacontenttype"] = content_type
    return _checked(lambda: Event.from_dict(attrs), "")


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise IngressError("data", "text data is not valid UTF-8") from None


def _json_or_text(body: bytes) -> Any:
    """Data sent with no content type: JSON when it parses as JSON (what the CloudEvents SDKs
    send in binary mode, and what their receivers assume), else UTF-8 text."""
    try:
        return decode_json(body, "data")
    except DepthError as exc:
        raise IngressError("data", str(exc).removeprefix("data: ")) from None
    except msgspec.DecodeError:
        return _text(body)
