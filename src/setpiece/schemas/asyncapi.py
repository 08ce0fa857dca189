"""AsyncAPI 3.0 from a stack: what flows where, and in what shape.

- a **channel** per bus (address ``bus.<name>``, its archive stream) and per stream;
- a **message** per event type: the CloudEvents envelope (structured JSON) whose ``type`` is that
  type and whose ``data`` is the type's declared schema (its latest version), or else the model a
  consuming handler's input is annotated with;
- **operations**: each handler ``receive`` s from its bus or stream (with the types its pattern
  names), each bus's HTTP ingress (``POST /events/<bus>``) and each rule forwarding to a stream
  or bus ``send`` s;
- the bearer **security scheme** when the stack has auth, with the scope each operation needs
  (``x-scopes``).

A message's data schema sits in ``components.schemas`` under the type's name; references inside
it (``#/$defs/...``) are rewritten to point there.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Mapping
from typing import Any

from setpiece._apidoc import BEARER, CLOUDEVENT, bearer_scheme, cloudevent_schema
from setpiece.bus import Bus, bus_stream_name
from setpiece.errors import ConfigError
from setpiece.http import EVENTS_SCOPE
from setpiece.schemas.schema import to_json_schema
from setpiece.service import Handler
from setpiece.stack import Stack
from setpiece.stream import Stream

__all__ = ["asyncapi_document"]

CONTENT_TYPE = "application/cloudevents+json"

_ENVELOPE = cloudevent_schema(
    ("dataschema", "domain", "subdomain", "service", "category", "dataversion", "traceparent",
     "correlationid", "causationid", "partitionkey", "tenant"),
    "A CloudEvents 1.0 event in structured JSON, with setpiece's extensions.",
)
_ENVELOPE_REF = f"#/components/schemas/{CLOUDEVENT}"


def _key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-.]", "_", name)


def _rebase(doc: Any, base: str) -> Any:
    """``doc`` with its local references (``#...``) pointing under ``base``."""
    if isinstance(doc, dict):
        out = {k: _rebase(v, base) for k, v in doc.items() if k != "$schema"}
        ref = doc.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            out["$ref"] = base + ref[1:]
        return out
    if isinstance(doc, list):
        return [_rebase(v, base) for v in doc]
    return doc


def consumed_types(pattern: Any) -> list[str]:
    """The event types a pattern names exactly (``type`` or ``detail-type``)."""
    if isinstance(pattern, str):
        try:
            pattern = json.loads(pattern)
        except ValueError:
            return []
    if not isinstance(pattern, Mapping):
        return []
    out: list[str] = []
    for field in ("type", "detail-type"):
        values = pattern.get(field)
        if isinstance(values, list):
            out += [v for v in values if isinstance(v, str) and v not in out]
    return out


def input_model(handler: Handler) -> Any:
    """The Struct, dataclass or pydantic model a handler's input is annotated with, if any."""
    try:
        hints = typing.get_type_hints(handler.fn)
    except Exception:  # unresolvable annotations: declared nothing
        return None
    try:
        params = [p for p in inspect.signature(handler.fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return None
    annotation = hints.get(params[0].name) if params else None
    if isinstance(annotation, type) and annotation.__name__ not in ("Event", "dict"):
        return annotation
    return None


def asyncapi_document(stack: Stack) -> dict[str, Any]:
    """The stack's AsyncAPI 3.0 document (a JSON-ready dict)."""
    schemas: dict[str, Any] = {CLOUDEVENT: _ENVELOPE}
    messages: dict[str, Any] = {}
    data_of: dict[str, Any] = {}
    for event_type, versions in stack.schemas.items():
        data_of[event_type] = (versions[-1].document, versions[-1].version,
                               versions[-1].description)
    consumers: dict[str, list[tuple[Handler, list[str]]]] = {}  # channel -> handlers
    for service in stack.services.values():
        for handler in service.handlers:
            if handler.kind not in ("event", "stream"):
                continue
            channel = (f"bus_{_key(handler.bus or stack.default_bus)}" if handler.kind == "event"
                       else f"stream_{_key(handler.stream or '')}")
            types = consumed_types(handler.pattern) if handler.kind == "event" else []
            consumers.setdefault(channel, []).append((handler, types))
            model = input_model(handler)
            for event_type in types:
                if event_type not in data_of and model is not None:
                    try:
                        data_of[event_type] = (to_json_schema(model, handler.qualname), None,
                                               None)
                    except ConfigError:
                        continue
    for event_type, (document, version, description) in sorted(data_of.items()):
        key = _key(event_type)
        schemas[key] = _rebase(document, f"#/components/schemas/{key}")
        message: dict[str, Any] = {
            "name": event_type, "title": event_type, "contentType": CONTENT_TYPE,
            "payload": {"allOf": [
                {"$ref": _ENVELOPE_REF},
                {"type": "object", "properties": {
                    "type": {"const": event_type},
                    "data": {"$ref": f"#/components/schemas/{key}"},
                    **({"dataversion": {"type": "string"}} if version is not None else {}),
                }},
            ]},
        }
        if description:
            message["description"] = description
        if version is not None:
            message["x-schema-version"] = version
        messages[key] = message

    channels: dict[str, Any] = {}
    for name, bus in stack.buses.items():
        on_bus = set(stack.schemas) if name == stack.default_bus else set()
        for _, consumed in consumers.get(f"bus_{_key(name)}", []):
            on_bus.update(consumed)
        for rule in bus.rules:
            on_bus.update(consumed_types(rule.pattern))
        channels[f"bus_{_key(name)}"] = _channel(
            bus_stream_name(name), f"Bus {name!r}: events routed by its rules to every "
            "matching target (its archive stream)", on_bus, messages)
    for name in stack.streams:
        channels[f"stream_{_key(name)}"] = _channel(
            name, f"Stream {name!r}: a partitioned, ordered log", set(), messages)

    secured = stack.auth is not None
    operations: dict[str, Any] = {}
    for name in stack.buses:
        channel = f"bus_{_key(name)}"
        op = _operation("send", channel, channels[channel],
                        f"Publish CloudEvents onto bus {name!r} (HTTP: POST /events/{name})",
                        None)
        if secured:
            op["security"] = [{"$ref": f"#/components/securitySchemes/{BEARER}"}]
            op["x-scopes"] = [EVENTS_SCOPE]
        operations[f"publish.{_key(name)}"] = op
    for channel, handlers in sorted(consumers.items()):
        for handler, types in handlers:
            operations[_key(handler.qualname)] = _operation(
                "receive", channel, channels[channel],
                f"Handler {handler.qualname} ({handler.kind})", types or None)
    for bus in stack.buses.values():
        for rule in bus.rules:
            for index, target in enumerate(rule.targets):
                target_channel = _target_channel(target)
                if target_channel is None or target_channel not in channels:
                    continue
                operations[f"rule.{_key(bus.name)}.{_key(rule.name)}.{index}"] = _operation(
                    "send", target_channel, channels[target_channel],
                    f"Rule {bus.name}/{rule.name} forwards matching events", None)

    components: dict[str, Any] = {"schemas": schemas, "messages": messages}
    if secured:
        components["securitySchemes"] = bearer_scheme(
            "; an operation's x-scopes lists the scopes its token needs.")
    return {
        "asyncapi": "3.0.0",
        "info": {"title": stack.name, "version": "1",
                 "description": f"The events of stack {stack.name!r}: its buses and streams, "
                                "who consumes what, and each event type's schema."},
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": components,
    }


def _channel(address: str, description: str, types: set[str],
             messages: dict[str, Any]) -> dict[str, Any]:
    keys = sorted(_key(t) for t in types if _key(t) in messages)
    return {"address": address, "description": description,
            "messages": {k: {"$ref": f"#/components/messages/{k}"} for k in keys}}


def _operation(action: str, channel: str, body: dict[str, Any], summary: str,
               types: list[str] | None) -> dict[str, Any]:
    op: dict[str, Any] = {"action": action, "channel": {"$ref": f"#/channels/{channel}"},
                          "summary": summary}
    keys = sorted(body["messages"]) if types is None else [
        _key(t) for t in types if _key(t) in body["messages"]]
    op["messages"] = [{"$ref": f"#/channels/{channel}/messages/{k}"} for k in keys]
    return op


def _target_channel(target: Any) -> str | None:
    if isinstance(target, Stream):
        return f"stream_{_key(target.name)}"
    if isinstance(target, Bus):
        return f"bus_{_key(target.name)}"
    return None
