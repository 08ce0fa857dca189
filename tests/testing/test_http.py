"""``setpiece_http``: the fake for ``HttpTarget`` s and workflows' ``http:`` tasks records the
calls the runtime makes and answers as the test says (setpiece.testing._http)."""

from __future__ import annotations

import httpx
import pytest

from setpiece import Bus, ConfigError, Event, HttpTarget, RetryPolicy, Stack
from setpiece.testing import Call, FakeHttp, StackStarter
from setpiece.workflows import Workflow
from tests.conftest import on_setpiece_engines

HOOK = "https://partner.example/hooks/orders"
FAST = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.01)


def hook_stack() -> Stack:
    bus = Bus("default")
    bus.rule("notify", {"type": ["order_paid"]},
             HttpTarget(HOOK, headers={"x-api-key": "k1"}), retry=FAST)
    return Stack("shop", buses=[bus])


@on_setpiece_engines
async def test_an_http_target_posts_to_the_fake_which_answers_as_told(
    setpiece_stack: StackStarter, setpiece_http: FakeHttp
) -> None:
    setpiece_http.answer(HOOK, method="POST", status=503, times=1)  # fails once, then...
    setpiece_http.answer(HOOK, method="POST", status=202)
    rt = await setpiece_stack(hook_stack())
    sent = await rt.publish(Event(type="order_paid", source="checkout", data={"total": 30}))
    await rt.drain(timeout=10)
    assert await rt.dead_letters() == []
    calls = setpiece_http.calls_to(HOOK)
    assert len(calls) == 2  # the 503, then the retry that succeeded
    assert calls[1].method == "POST" and calls[1].headers["x-api-key"] == "k1"
    assert calls[1].headers["content-type"] == "application/cloudevents+json"
    assert calls[1].event().id == sent.id and calls[1].event().data == {"total": 30}


async def test_a_call_nobody_answered_gets_a_404_and_dead_letters(
    setpiece_stack: StackStarter, setpiece_http: FakeHttp
) -> None:
    rt = await setpiece_stack(hook_stack())
    await rt.publish(Event(type="order_paid", source="checkout"))
    await rt.drain(timeout=10)
    [letter] = await rt.dead_letters()
    assert f"HTTP 404 from {HOOK}" in letter.error
    assert len(setpiece_http.calls) == FAST.max_attempts


async def test_a_workflow_http_task_gets_the_fake_answer(
    setpiece_stack: StackStarter, setpiece_http: FakeHttp
) -> None:
    quotes = "https://pricing.example/quote"

    def quote(call: Call) -> httpx.Response:
        return httpx.Response(200, json={"price": 3 * call.json()["qty"]})

    setpiece_http.answer(quotes, respond=quote)
    setpiece_http.answer("https://pricing.example/rates*", method="GET", json={"eur": 1})
    workflow = Workflow("price", {"StartAt": "Quote", "States": {
        "Quote": {"Type": "Task", "Resource": f"http:POST {quotes}", "ResultPath": "$.quote",
                  "Next": "Rates"},
        "Rates": {"Type": "Task", "Resource": "http:GET https://pricing.example/rates?c=eu",
                  "ResultPath": "$.rates", "End": True},
    }})
    rt = await setpiece_stack(Stack("s", workflows=[workflow]))
    done = await rt.wait_execution(await rt.start_execution("price", {"qty": 2}), 10)
    assert done.output == {"qty": 2, "quote": {"price": 6}, "rates": {"eur": 1}}
    post, get = setpiece_http.calls
    assert (post.method, post.url, post.json()) == ("POST", quotes, {"qty": 2})
    assert (get.method, get.url, get.body) == ("GET", "https://pricing.example/rates?c=eu", b"")


def test_the_fake_refuses_unclear_answers() -> None:
    http = FakeHttp()
    with pytest.raises(ConfigError, match="must start with http"):
        http.answer("partner.example/x")
    with pytest.raises(ConfigError, match="times: must be at least 1"):
        http.answer(HOOK, times=0)
    with pytest.raises(ConfigError, match="json= or text=, not both"):
        http.answer(HOOK, json={}, text="x")
    with pytest.raises(ConfigError, match="respond= or a body"):
        http.answer(HOOK, json={}, respond=lambda call: httpx.Response(200))
