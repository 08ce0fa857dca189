"""Events made by the official CloudEvents Python SDK (``cloudevents`` on PyPI), sent to the
ingress in structured, binary and batch mode: the handlers get the data with its JSON shape."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from cloudevents.core.bindings import http as core_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as CoreEvent
from cloudevents.v1.conversion import to_binary, to_structured
from cloudevents.v1.http import CloudEvent as V1Event

from setpiece import Event, Service, Stack
from tests.gateway.conftest import auth, bearer, client, token

Run = Any


def sdk_stack(seen: dict[str, Event]) -> Stack:
    svc = Service("hooks")

    # a pattern on a data field: it only matches when the data kept its JSON shape
    @svc.on({"type": ["sdk.test"], "data": {"n": [{"numeric": [">=", 1]}]}})
    async def counted(event: Event, ctx: Any) -> None:
        seen[event.id] = event

    @svc.on({"type": ["sdk.text"]})
    async def text(event: Event, ctx: Any) -> None:
        seen[event.id] = event

    return Stack("hooks", services=[svc], auth=auth())


def _v1(event_id: str, data: Any, type_: str = "sdk.test") -> V1Event:
    return V1Event({"id": event_id, "type": type_, "source": "sdk"}, data)


def _core(event_id: str, data: Any, type_: str = "sdk.test") -> CoreEvent:
    return CoreEvent({"id": event_id, "type": type_, "source": "sdk", "specversion": "1.0"},
                     data)


def test_events_made_by_the_official_sdk_keep_their_data(run: Run) -> None:
    seen: dict[str, Event] = {}
    sent: list[tuple[str, dict[str, str], bytes]] = []

    headers, body = to_binary(_v1("v1-binary", {"n": 1}))
    assert "content-type" not in {k.lower() for k in headers}  # as the issue saw it
    sent.append(("v1-binary", headers, body))
    sent.append(("v1-structured", *to_structured(_v1("v1-structured", {"n": 2}))))
    message = core_http.to_binary(_core("core-binary", {"n": 3}), JSONFormat())
    sent.append(("core-binary", dict(message.headers), message.body))
    message = core_http.to_structured(_core("core-structured", {"n": 4}), JSONFormat())
    sent.append(("core-structured", dict(message.headers), message.body))
    # text stays text: the SDK's binary mode JSON-encodes a string, and text/plain says so
    sent.append(("v1-text", *to_binary(_v1("v1-text", "plain words", "sdk.text"))))
    message = core_http.to_binary(
        CoreEvent({"id": "core-text", "type": "sdk.text", "source": "sdk", "specversion": "1.0",
                   "datacontenttype": "text/plain"}, '{"n": 9}'),
        JSONFormat(),
    )
    sent.append(("core-text", dict(message.headers), message.body))
    # a batch of events, each in the SDK's structured JSON form
    batch = [json.loads(to_structured(_v1(f"v1-batch-{i}", {"n": 10 + i}))[1]) for i in range(2)]
    batch.append(json.loads(core_http.to_structured(_core("core-batch", {"n": 12}),
                                                    JSONFormat()).body))

    async def main() -> None:
        async with sdk_stack(seen).start(engine="memory") as rt, client(rt.asgi()) as c:
            h = bearer(token(["events:publish"]))
            for event_id, ce_headers, ce_body in sent:
                r = await c.post("/events/default", content=ce_body, headers={**h, **ce_headers})
                assert r.status_code == 202, (event_id, r.text)
                assert r.json() == {"ids": [event_id]}
            r = await c.post("/events/default", content=msgspec.json.encode(batch),
                             headers={**h, "content-type": "application/cloudevents-batch+json"})
            assert r.status_code == 202, r.text
            assert r.json() == {"ids": ["v1-batch-0", "v1-batch-1", "core-batch"]}
            await rt.drain(timeout=10)

    run(main())
    expected = {
        "v1-binary": {"n": 1}, "v1-structured": {"n": 2}, "core-binary": {"n": 3},
        "core-structured": {"n": 4}, "v1-text": "plain words", "core-text": '{"n": 9}',
        "v1-batch-0": {"n": 10}, "v1-batch-1": {"n": 11}, "core-batch": {"n": 12},
    }
    assert {k: e.data for k, e in seen.items()} == expected
    assert seen["core-text"].datacontenttype == "text/plain"
    assert all(e.source == "sdk" and e.tenant == "t1" for e in seen.values())
