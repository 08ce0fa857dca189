"""The event envelope: CloudEvents 1.0 with the extensions setpiece's services carry.

An :class:`Event` is an immutable fact. Its JSON wire form is the CloudEvents *structured* JSON
format: the context attributes and the extensions side by side at the top level, the payload in
``data``. Events shaped like Amazon EventBridge's (``detail-type``, ``source``, ``detail``) are
accepted by :meth:`Event.from_dict` and mapped onto the envelope.

Construction fills ``id`` (a UUID), ``time`` (now, UTC, RFC 3339) and ``specversion`` ("1.0").
Every malformed envelope raises :class:`~setpiece.errors.EventError` naming the field.
"""

from __future__ import annotations

import os
import random
import re
import time
from datetime import UTC, datetime
from typing import Any

import msgspec

from setpiece._json import MAX_DEPTH, DepthError, check_encoded
from setpiece._json import decode as decode_json
from setpiece.errors import EventError

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "MAX_DEPTH", "RESERVED_EXTENSIONS", "Event"]

DEFAULT_MAX_EVENT_BYTES = 256 * 1024
"""The default size limit of one encoded event, like EventBridge's 256 KiB."""

# The attributes CloudEvents defines, then the extensions this envelope names (DESIGN.md §2).
_CORE = ("id", "source", "specversion", "type", "datacontenttype", "dataschema", "subject", "time")
_EXTENSIONS = (
    "domain",
    "subdomain",
    "service",
    "category",
    "dataversion",
    "traceparent",
    "correlationid",
    "causationid",
    "partitionkey",
    "tenant",
)
_KNOWN = frozenset((*_CORE, *_EXTENSIONS, "data", "data_base64", "extensions"))
# Matched with fullmatch: ``$`` would also accept a trailing newline.
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))"
)
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
RESERVED_EXTENSIONS = frozenset(("sptarget", "spreplay", "sprule"))
"""Extension names the runtime sets itself (redrive and replay marks): refused from outside."""
# EventBridge envelope fields that have no CloudEvents attribute; kept as extensions.
_EVENTBRIDGE_EXTRA = ("account", "region", "resources", "version")


_second_cache: list[Any] = [0, ""]
# Ids need uniqueness, not secrecy: a PRNG seeded from the OS is enough, and much faster than
# os.urandom per id. It is reseeded in every forked child so two processes never share a stream.
_rng = random.Random(os.urandom(32))
_random_bits = _rng.getrandbits
os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(32)))


def _now() -> str:
    """Now as RFC 3339 UTC with microseconds (the seconds part is formatted once per second)."""
    now = time.time()
    second = int(now)
    if second != _second_cache[0]:
        _second_cache[0] = second
        _second_cache[1] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second_cache[1]}.{int((now - second) * 1_000_000):06d}Z"


def _new_id() -> str:
    """A time-ordered UUID (version 7, RFC 9562): millisecond time, then randomness.

    Ids that grow with time keep the engines' indexes of ids (inboxes) append-mostly.
    One integer (48 bits of time, version 7, 12 random bits, variant 10, 62 random bits),
    formatted once.
    """
    r = _random_bits(74)
    h = f"{((int(_time() * 1000) & _MASK48) << 80) | ((r >> 62) << 64) | (r & _MASK62) | _V7:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_time = time.time
_MASK48 = (1 << 48) - 1
_MASK62 = (1 << 62) - 1
_V7 = (7 << 76) | (2 << 62)  # the version and variant bits
_valid_seconds: set[str] = set()  # "YYYY-MM-DDTHH:MM:SS" prefixes the full pattern accepted


def _valid_time(value: str) -> bool:
    """``_RFC3339.match``, with a fast path for the form :func:`_now` writes."""
    if (
        len(value) == 27
        and value[26] == "Z"
        and value[19] == "."
        and value[:19] in _valid_seconds
        and value[20:26].isdecimal()  # what the pattern's \d accepts
    ):
        return True
    m = _RFC3339.fullmatch(value)
    if m is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    try:  # the fields in range (a leap second, :60, is allowed)
        datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return False
    if second > 60 or (m.group(9) and (int(m.group(9)) > 23 or int(m.group(10)) > 59)):
        return False
    if len(_valid_seconds) > 4096:
        _valid_seconds.clear()
    _valid_seconds.add(value[:19])
    return True


_convert = msgspec.convert
_FIELD_AT = re.compile(r"`\$\.([a-z_]+)")
_MISSING_FIELD = re.compile(r"missing required field `([a-z_]+)`")
_NUL_CHECKED = ("id", "source", "type", "subject", "partitionkey", "tenant")


def _attribute_error(exc: msgspec.ValidationError) -> EventError:
    """The EventError for a ValidationError of building an Event, naming the field."""
    text = str(exc)
    found = _FIELD_AT.search(text) or _MISSING_FIELD.search(text)
    name = found.group(1) if found else None
    if name is None:
        return EventError(f"event: {text}")
    if "missing required" in text:
        return EventError(f"{name}: required attribute is missing", field=name)
    if name == "extensions":
        return EventError(
            "extensions: must be a dict of extension names to values", field="extensions"
        )
    return EventError(f"{name}: must be a string ({text.split(' - at ')[0]})", field=name)


class _CheckedOnConstruction(type(msgspec.Struct)):  # type: ignore[misc]
    """``Event(...)`` checks the attributes' types (``subject=5`` is an EventError at once).

    Built by msgspec's converter, which checks every type in C; decoding, ``msgspec.convert``
    and ``msgspec.structs.replace`` bypass this and are checked by msgspec or by the caller.
    """

    def __call__(cls, /, **attrs: Any) -> Any:
        if not attrs.keys() <= _FIELDS:
            unknown = sorted(attrs.keys() - _FIELDS)
            raise TypeError(f"Event() got unexpected keyword argument(s) {unknown}")
        try:
            return _convert(attrs, cls)
        except msgspec.ValidationError as exc:
            raise _attribute_error(exc) from None


class Event(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    metaclass=_CheckedOnConstruction,
):
    """An immutable CloudEvents 1.0 event.

    ``type`` is required. ``source`` is required on the wire; inside a handler it may be left
    empty and the runtime fills in the service's name. Unknown extension attributes go in
    ``extensions`` (names: lowercase letters and digits, at most 20, per CloudEvents).
    Construction checks the attributes' types; :meth:`validate` (run at every edge) the rest.
    """

    type: str
    source: str = ""
    data: Any = None
    id: str = msgspec.field(default_factory=_new_id)
    time: str = msgspec.field(default_factory=_now)
    specversion: str = "1.0"
    subject: str | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    domain: str | None = None
    subdomain: str | None = None
    service: str | None = None
    category: str | None = None
    dataversion: str | None = None
    traceparent: str | None = None
    correlationid: str | None = None
    causationid: str | None = None
    partitionkey: str | None = None
    tenant: str | None = None
    extensions: dict[str, Any] | None = None

    def validate(self) -> Event:
        """Check the envelope; raise EventError naming the first bad field. Returns self.

        Called at every edge (publishing, parsing); construction itself stays cheap.
        """
        if not isinstance(self.type, str) or not self.type:
            raise EventError("type: must be a non-empty string", field="type")
        if not isinstance(self.source, str):
            raise EventError("source: must be a string", field="source")
        if not isinstance(self.id, str) or not self.id:
            raise EventError("id: must be a non-empty string", field="id")
        if self.specversion != "1.0":
            raise EventError(
                f"specversion: must be '1.0', got {self.specversion!r}", field="specversion"
            )
        t = self.time
        if not (  # the form _now() writes, of a second seen before; else the full pattern
            type(t) is str
            and len(t) == 27
            and t[26] == "Z"
            and t[19] == "."
            and t[:19] in _valid_seconds
            and t[20:26].isdecimal()
        ) and (not isinstance(t, str) or not _valid_time(t)):
            raise EventError(
                f"time: must be an RFC 3339 timestamp, got {self.time!r}", field="time"
            )
        if self.traceparent is not None and not (
            isinstance(self.traceparent, str) and _TRACEPARENT.fullmatch(self.traceparent)
        ):
            raise EventError(
                "traceparent: must be a W3C traceparent like '00-<32 hex>-<16 hex>-01'",
                field="traceparent",
            )
        if self.extensions is not None and not isinstance(self.extensions, dict):
            raise EventError(
                "extensions: must be a dict of extension names to values", field="extensions"
            )
        if self.extensions:
            for name in self.extensions:
                if not isinstance(name, str) or not _EXTENSION_NAME.fullmatch(name):
                    raise EventError(
                        f"extensions.{name!r}: extension names are 1-20 lowercase letters or "
                        "digits",
                        field=f"extensions.{name}",
                    )
                if name in _KNOWN:
                    raise EventError(
                        f"extensions.{name}: clashes with a defined attribute", field=name
                    )
        return self

    # -- conversions ----------------------------------------------------------------------

    def replace(self, **changes: Any) -> Event:
        """A copy with some attributes changed (events are immutable); their types checked."""
        for name, value in changes.items():
            if type(value) is not str and value is not None and name != "data":
                _check_change(name, value)
        return msgspec.structs.replace(self, **changes)

    def check_external(self, cause: Event | None = None) -> Event:
        """Refuse what may be stored but must not come in: U+0000 in ``id``, ``source``,
        ``type``, ``subject``, ``partitionkey`` or ``tenant`` (no engine's text column holds it),
        and the extension names the runtime reserves for itself (:data:`RESERVED_EXTENSIONS`).

        Called where events come in (publishing, HTTP ingress, a handler's output), after
        :meth:`validate`. A mark inherited unchanged from ``cause`` (a handler re-emitting a
        replayed event) is dropped instead. Returns the event, possibly without those marks.
        """
        if (  # U+0000: no engine's text column holds it (types: checked on construction)
            "\0" in self.id
            or "\0" in self.source
            or "\0" in self.type
            or (self.subject is not None and "\0" in self.subject)
            or (self.partitionkey is not None and "\0" in self.partitionkey)
            or (self.tenant is not None and "\0" in self.tenant)
        ):
            for name in _NUL_CHECKED:
                value = getattr(self, name)
                if isinstance(value, str) and "\0" in value:
                    raise EventError(f"{name}: must not contain U+0000 (NUL)", field=name)
        extensions = self.extensions
        if not extensions or extensions.keys().isdisjoint(RESERVED_EXTENSIONS):
            return self
        inherited = (cause.extensions or {}) if cause is not None else {}
        for name in extensions.keys() & RESERVED_EXTENSIONS:
            if name not in inherited or inherited[name] != extensions[name]:
                raise EventError(
                    f"extensions.{name}: {name!r} is reserved for the runtime's own use",
                    field=f"extensions.{name}",
                )
        rest = {k: v for k, v in extensions.items() if k not in RESERVED_EXTENSIONS}
        return msgspec.structs.replace(self, extensions=rest or None)

    def check_encoded(self, encoded: bytes) -> None:
        """Refuse data (or extension values) nested deeper than :data:`MAX_DEPTH`, or holding
        NaN or Infinity (which JSON cannot carry), given the event's encoded form."""
        if (  # the common case, at C speed: few brackets, no null
            encoded.count(b"[") + encoded.count(b"{") <= MAX_DEPTH and b"null" not in encoded
        ):
            return
        parts: dict[str, Any] = {"data": self.data}
        if self.extensions:
            parts.update((f"extensions.{k}", v) for k, v in self.extensions.items())
        problem = check_encoded(encoded, parts)
        if problem is not None:
            field, message = problem
            raise EventError(f"{field}: {message}", field=field)

    def to_dict(self) -> dict[str, Any]:
        """The CloudEvents structured-mode dict: attributes and extensions flat, ``data`` apart."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        extra = out.pop("extensions", None)
        if extra:
            out.update(extra)
        return out

    def to_json(self) -> bytes:
        """The CloudEvents structured JSON form."""
        if self.extensions:
            return _encoder.encode(self.to_dict())
        return _encoder.encode(self)

    @classmethod
    def from_dict(cls, obj: Any) -> Event:
        """Build an event from its structured-mode dict, or from an EventBridge-shaped one."""
        if not isinstance(obj, dict):
            raise EventError(f"event: must be a JSON object, got {type(obj).__name__}")
        if "detail-type" in obj or "detail" in obj:
            return cls._from_eventbridge(obj)
        attrs: dict[str, Any] = {}
        extensions: dict[str, Any] = {}
        for name, value in obj.items():
            if name in _KNOWN:
                attrs[name] = value
            else:
                extensions[name] = value
        if "data_base64" in attrs:
            raise EventError(
                "data_base64: binary data is not supported; send JSON data", field="data_base64"
            )
        nested = attrs.pop("extensions", None)
        if nested:
            if not isinstance(nested, dict):
                raise EventError("extensions: must be an object", field="extensions")
            extensions.update(nested)
        if extensions:
            attrs["extensions"] = extensions
        if "type" not in attrs:
            raise EventError("type: required attribute is missing", field="type")
        if not attrs.get("source"):
            raise EventError("source: required attribute is missing", field="source")
        for name, value in attrs.items():
            if name not in ("data", "extensions") and value is not None and not isinstance(
                value, str
            ):
                raise EventError(
                    f"{name}: must be a string, got {type(value).__name__}", field=name
                )
        try:
            return msgspec.convert(attrs, cls).validate()
        except msgspec.ValidationError as exc:
            raise EventError(f"event: {exc}") from None

    @classmethod
    def _from_eventbridge(cls, obj: dict[str, Any]) -> Event:
        detail_type = obj.get("detail-type")
        if not isinstance(detail_type, str) or not detail_type:
            raise EventError("detail-type: must be a non-empty string", field="detail-type")
        source = obj.get("source")
        if not isinstance(source, str) or not source:
            raise EventError("source: must be a non-empty string", field="source")
        kwargs: dict[str, Any] = {"type": detail_type, "source": source, "data": obj.get("detail")}
        if obj.get("id") is not None:
            kwargs["id"] = str(obj["id"])
        if obj.get("time") is not None:
            kwargs["time"] = obj["time"]
        extra = {k: obj[k] for k in _EVENTBRIDGE_EXTRA if k in obj}
        if extra:
            kwargs["extensions"] = extra
        return cls(**kwargs).validate()

    @classmethod
    def from_json(cls, text: str | bytes, *, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Event:
        """Parse the structured JSON form (or an EventBridge-shaped event), checking its size."""
        if len(text) > max_bytes:
            raise EventError(
                f"event: {len(text)} bytes is over the limit of {max_bytes} bytes", field="data"
            )
        try:
            obj = decode_json(text, "data", extra_levels=1)
        except DepthError as exc:
            raise EventError(str(exc), field="data") from None
        except msgspec.DecodeError as exc:
            raise EventError(f"event: not valid JSON ({exc})") from None
        return cls.from_dict(obj)

    def pattern_view(self) -> dict[str, Any]:
        """The dict that bus rules match against.

        The structured-mode attributes, plus EventBridge's names for the same things
        (``detail-type`` for ``type``, ``detail`` for ``data``) so rules ported from AWS work.
        """
        view = self.to_dict()
        view["detail-type"] = self.type
        view["detail"] = self.data
        return view


_FIELDS = frozenset(Event.__struct_fields__)


def _check_change(name: str, value: Any) -> None:
    if name not in _FIELDS:
        raise TypeError(f"Event.replace() got an unexpected keyword argument {name!r}")
    if name == "extensions":
        if not isinstance(value, dict):
            raise EventError(
                "extensions: must be a dict of extension names to values", field="extensions"
            )
    elif not isinstance(value, str):
        raise EventError(f"{name}: must be a string, got {type(value).__name__}", field=name)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    """The engine's storage form: compact JSON, extensions nested (fast to decode)."""
    return _encoder.encode(event)


def decode_event(data: bytes) -> Event:
    """Inverse of :func:`encode_event`."""
    return _decoder.decode(data)
