"""InputTransformer: EventBridge's InputPathsMap + InputTemplate, and InputPath."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from setpiece.patterns import InputTransformer, PatternError

EVENT: dict[str, Any] = {
    "source": "aws.ec2",
    "detail-type": "EC2 Instance State-change Notification",
    "resources": ["arn:aws:ec2:us-east-1:1:instance/i-1"],
    "detail": {"instance-id": "i-1", "state": "running", "cpu": 2, "tags": {"a": [1, 2]}},
}
PATHS = {
    "instance": "$.detail.instance-id",
    "state": "$.detail.state",
    "cpu": "$.detail.cpu",
    "tags": "$.detail.tags",
    "first": "$.resources[0]",
    "nothing": "$.detail.missing",
}


def test_plain_text_template_inserts_values_as_text() -> None:
    t = InputTransformer(PATHS, "<instance> is in state <state> with <cpu> CPUs")
    assert t.apply(EVENT) == "i-1 is in state running with 2 CPUs"


def test_json_template_quotes_strings_outside_strings_only() -> None:
    template = (
        '{"id": <instance>, "cpu": <cpu>, "tags": <tags>, "msg": "<instance> is \\"<state>\\"",'
        ' "t": "<tags>", "arn": <first>, "none": <nothing>, "empty": "<nothing>"}'
    )
    out = json.loads(InputTransformer(PATHS, template).apply(EVENT))
    assert out == {
        "id": "i-1",
        "cpu": 2,
        "tags": {"a": [1, 2]},
        "msg": 'i-1 is "running"',
        "t": '{"a":[1,2]}',
        "arn": "arn:aws:ec2:us-east-1:1:instance/i-1",
        "none": None,
        "empty": "",
    }


def test_strings_are_escaped_inside_json_strings() -> None:
    event = {"detail": {"text": 'say "hi"\n\\'}}
    out = InputTransformer({"t": "$.detail.text"}, '{"a": "<t>!", "b": <t>}').apply(event)
    assert json.loads(out) == {"a": 'say "hi"\n\\!', "b": 'say "hi"\n\\'}


def test_reserved_placeholders() -> None:
    template = (
        '{"event": <aws.events.event>, "full": <aws.events.event.json>, '
        '"rule": "<aws.events.rule-name>", "arn": "<aws.events.rule-arn>", '
        '"at": "<aws.events.event.ingestion-time>"}'
    )
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    out = json.loads(
        InputTransformer({}, template).apply(
            json.dumps(EVENT), rule_name="r1", rule_arn="arn:r1", ingestion_time=moment
        )
    )
    assert out["full"] == EVENT
    assert out["event"] == {k: v for k, v in EVENT.items() if k != "detail"}
    assert (out["rule"], out["arn"], out["at"]) == ("r1", "arn:r1", "2026-01-02T03:04:05Z")


def test_input_path_selects_part_of_the_event() -> None:
    assert json.loads(InputTransformer.path("$.detail").apply(EVENT)) == EVENT["detail"]
    assert InputTransformer.path("$.detail.state").apply(EVENT) == '"running"'
    assert InputTransformer.path("$['detail']['cpu']").apply(EVENT) == "2"
    assert InputTransformer.path("$.nope").apply(EVENT) == "null"
    assert json.loads(InputTransformer.path("$").apply(EVENT)) == EVENT


def test_big_numbers_survive_a_round_trip() -> None:
    text = '{"n": 12345678901234567890123, "f": 0.30000000000000001}'
    expected = '{"n":12345678901234567890123,"f":0.30000000000000001}'
    assert InputTransformer.path("$").apply(text) == expected


@pytest.mark.parametrize(
    ("paths", "template", "message"),
    [
        ({"a": "detail.x"}, "<a>", "paths.a: a JSON path must be a string starting with '$'"),
        ({"a": "$.x..y"}, "<a>", "paths.a: unsupported JSON path"),
        ({"a": 5}, "<a>", "must be a string starting with '$'"),
        ({"a b": "$.x"}, "x", "a variable name uses only"),
        ({"aws.events.event": "$.x"}, "x", "is reserved"),
        ({"AWS.mine": "$.x"}, "x", "is reserved"),
        ({"a": "$.x"}, "<a> and <b>", "template: unknown placeholder <b>"),
        ({}, '{"e": "<aws.events.event>"}', "can only stand where a JSON value goes"),
        ({"a": "$.x"}, '{"x": <a>', "template: not valid JSON"),
        ({}, "", "template: must be a non-empty string"),
        ({f"v{i}": "$.x" for i in range(101)}, "x", "at most 100 variables"),
    ],
)
def test_invalid_transformers(paths: dict[str, Any], template: str, message: str) -> None:
    with pytest.raises(PatternError) as caught:
        InputTransformer(paths, template)
    assert message in str(caught.value)
