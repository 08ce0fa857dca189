from __future__ import annotations

import json

import pytest

from setpiece import Event, EventError


def test_defaults_are_filled_in() -> None:
    event = Event(type="order_placed", source="shop", data={"n": 1})
    assert event.specversion == "1.0"
    assert len(event.id) == 36 and event.id[14] == "7"  # time-ordered UUIDv7
    assert event.time.endswith("Z") and "T" in event.time
    assert Event(type="t", source="s").id != event.id
    assert event.validate() is event


def test_structured_json_round_trip_keeps_extensions_flat() -> None:
    event = Event(
        type="t", source="s", data={"a": [1, 2]}, partitionkey="k", tenant="acme",
        extensions={"region": "eu"},
    )
    wire = json.loads(event.to_json())
    assert wire["partitionkey"] == "k" and wire["region"] == "eu" and "extensions" not in wire
    back = Event.from_json(event.to_json())
    assert back == event


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"source": "s"}, "type"),
        ({"type": "", "source": "s"}, "type"),
        ({"type": "t"}, "source"),
        ({"type": "t", "source": "s", "specversion": "0.3"}, "specversion"),
        ({"type": "t", "source": "s", "time": "yesterday"}, "time"),
        ({"type": "t", "source": "s", "subject": 5}, "subject"),
        ({"type": "t", "source": "s", "traceparent": "nope"}, "traceparent"),
        ({"type": "t", "source": "s", "Bad-Name": 1}, "extensions.Bad-Name"),
        ({"type": "t", "source": "s", "data_base64": "AA=="}, "data_base64"),
    ],
)
def test_bad_envelopes_name_the_field(obj: dict[str, object], field: str) -> None:
    with pytest.raises(EventError) as info:
        Event.from_dict(obj)
    assert info.value.field == field
    assert str(info.value).startswith(field.split(".")[0])


def test_not_json_and_not_an_object() -> None:
    with pytest.raises(EventError, match="not valid JSON"):
        Event.from_json(b"{nope")
    with pytest.raises(EventError, match="JSON object"):
        Event.from_json(b"[1, 2]")


def test_size_limit_applies_to_parsing() -> None:
    big = json.dumps({"type": "t", "source": "s", "data": "x" * 300_000})
    with pytest.raises(EventError, match="over the limit"):
        Event.from_json(big)
    assert Event.from_json(big, max_bytes=400_000).data == "x" * 300_000


def test_eventbridge_shaped_events_are_mapped() -> None:
    event = Event.from_dict(
        {
            "version": "0", "id": "6a7e8feb", "detail-type": "order-submission",
            "source": "checkout", "account": "123456789012", "region": "eu-central-1",
            "time": "2023-08-29T12:10:21Z", "resources": [], "detail": {"total": 29.99},
        }
    )
    assert (event.type, event.source, event.id) == ("order-submission", "checkout", "6a7e8feb")
    assert event.data == {"total": 29.99}
    assert event.extensions == {"account": "123456789012", "region": "eu-central-1",
                                "resources": [], "version": "0"}
    with pytest.raises(EventError) as info:
        Event.from_dict({"detail-type": "", "source": "x", "detail": {}})
    assert info.value.field == "detail-type"


def test_pattern_view_has_eventbridge_aliases() -> None:
    view = Event(type="t", source="s", data={"x": 1}).pattern_view()
    assert view["detail-type"] == "t" and view["detail"] == {"x": 1} and view["type"] == "t"
