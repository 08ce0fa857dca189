"""The product-registration example: every effect once, order per customer, dead letters, the
manufacturer's format, and the demo end to end. In memory, with a real local HTTP receiver."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from examples.product_registration.app import build_stack
from examples.product_registration.demo import MALFORMED, SAMPLE, main, submission
from examples.product_registration.emails import Outbox
from examples.product_registration.manufacturer import ManufacturerWebhook
from examples.product_registration.promotions import discount_code
from setpiece import Event, Runtime

Run = Callable[[Any], Any]
Scenario = Callable[[Runtime], Any]


def form(customer: str, serial: str, **changes: Any) -> dict[str, Any]:
    return {"customer_id": customer, "email": f"{customer}@example.com", "serial_number": serial,
            "model": "Kettle K2", "purchase_date": "2026-01-15", "country": "GB", **changes}


async def stores(rt: Runtime) -> dict[str, dict[str, Any]]:
    names = ("products", "loyalty", "promotions", "email", "support", "audit")
    return {name: dict(await rt.store(name).items()) for name in names}


def play(run: Run, tmp_path: Path, scenario: Scenario) -> tuple[Any, ManufacturerWebhook, Outbox]:
    """Run ``scenario(rt)`` on the stack in memory, then drain; return its result and the
    manufacturer's receiver and the email outbox to look at."""
    outbox = Outbox(tmp_path / "outbox" / "emails.jsonl")

    async def go(webhook: ManufacturerWebhook) -> Any:
        stack = build_stack(tmp_path / "outbox", webhook.url)
        async with stack.start(engine="memory") as rt:
            result = await scenario(rt)
            await rt.drain(timeout=20)
            return result, await stores(rt), await rt.dead_letters()

    with ManufacturerWebhook() as webhook:
        result = run(go(webhook))
    return result, webhook, outbox


def test_every_effect_happens_once_per_registration(run: Run, tmp_path: Path) -> None:
    async def scenario(rt: Runtime) -> Any:
        events = await rt.publish_many([submission(f) for f in SAMPLE])
        await rt.publish(events[0])  # the very same event again (a producer's retry)
        await rt.publish_many(events)  # and all of them once more
        await rt.publish(submission(SAMPLE[1]))  # the form sent again: new event id
        await rt.drain(timeout=20)
        await rt.publish(events[2])  # again, after everything was handled
        return events

    (_events, state, letters), webhook, outbox = play(run, tmp_path, scenario)
    assert letters == []
    serials = {f["serial_number"] for f in SAMPLE}
    products = {k.removeprefix("product:") for k in state["products"] if k.startswith("product:")}
    assert products == serials
    assert state["products"]["duplicates"] == 1  # the resubmitted form
    assert {k: v for k, v in state["loyalty"].items() if k.startswith("balance:")} == {
        "balance:cu-101": 250, "balance:cu-102": 150, "balance:cu-103": 150,
    }
    codes = {k.removeprefix("code:") for k in state["promotions"]}
    assert len(codes) == 4
    emails = outbox.messages()
    assert sorted(m["code"] for m in emails) == sorted(codes)
    assert len({m["message_id"] for m in emails}) == 4
    assert len(state["email"]) == 4
    assert {c["serial_number"] for c in state["support"].values()} == serials
    assert len(webhook.posts) == 4
    assert {p["data"]["product"]["serialNo"] for p in webhook.posts} == serials
    counts = {k.removeprefix("count:"): v for k, v in state["audit"].items()
              if k.startswith("count:")}
    assert counts == {
        "registration_submitted": 5, "product_registered": 4, "points_awarded": 4,
        "discount_generated": 4, "email_sent": 4, "support_case_opened": 4,
    }


def test_order_is_kept_per_customer(run: Run, tmp_path: Path) -> None:
    mine = [f"SN-ORD{n:04d}" for n in range(12)]
    others = [form(f"cu-{300 + n % 5}", f"SN-OTH{n:04d}") for n in range(20)]
    mixed: list[dict[str, Any]] = []
    for n, serial in enumerate(mine):
        mixed += [form("cu-200", serial), *others[n * 2 : n * 2 + 2]]

    async def scenario(rt: Runtime) -> None:
        await rt.publish_many([submission(f) for f in mixed[:20]])
        await rt.publish_many([submission(f) for f in mixed[20:]])

    (_, state, letters), _, outbox = play(run, tmp_path, scenario)
    assert letters == []
    assert state["products"]["customer:cu-200"] == mine
    history = state["loyalty"]["history:cu-200"]
    assert [h["serial_number"] for h in history] == mine
    assert [h["points"] for h in history] == [150] + [100] * 11
    assert state["loyalty"]["balance:cu-200"] == 150 + 1100
    assert len(outbox.messages()) == len(mine) + len(others)


def test_a_malformed_registration_is_dead_lettered_with_its_reason(
    run: Run, tmp_path: Path
) -> None:
    no_email = form("cu-400", "SN-NOMAIL01")
    del no_email["email"]

    async def scenario(rt: Runtime) -> list[Event]:
        return [
            await rt.publish(submission(MALFORMED)),
            await rt.publish(submission(no_email)),
            await rt.publish(submission(form("cu-401", "sn-lowercase"))),
        ]

    (published, state, letters), webhook, outbox = play(run, tmp_path, scenario)
    assert [letter.event for letter in letters] == published
    assert {letter.handler for letter in letters} == {"products.register"}
    assert {letter.attempts for letter in letters} == {1}  # bad data is never retried
    errors = [letter.error for letter in letters]
    assert errors[0] == ("InputDecodeError: event data does not fit Registration: "
                         "Invalid RFC3339 encoded date - at `$.purchase_date`")
    assert "missing required field `email`" in errors[1]
    assert "$.serial_number" in errors[2]
    assert state["products"] == state["loyalty"] == state["email"] == {}
    assert webhook.posts == [] and outbox.messages() == []


def test_the_manufacturer_gets_its_own_format_and_no_personal_data(
    run: Run, tmp_path: Path
) -> None:
    async def scenario(rt: Runtime) -> None:
        await rt.publish(submission(SAMPLE[1]))

    (_, state, _), webhook, _ = play(run, tmp_path, scenario)
    [post] = webhook.posts
    assert post["type"] == "product_registered" and post["source"] == "ecommerce/products/products"
    assert post["data"] == {
        "partnerId": "shop-example",
        "registrationRef": post["id"],
        "product": {"serialNo": "SN-B7000311", "modelName": "Blender B7"},
        "purchase": {"date": "2025-12-01", "market": "IE"},
        "registeredAt": post["time"],
    }
    text = json.dumps(post["data"])
    assert "grace@example.com" not in text and "cu-102" not in text
    # The same product_registered event is what promotions derived its code from.
    assert f"code:{discount_code(post['id'])}" in state["promotions"]


def test_replaying_the_archive_sends_no_second_email_and_no_new_code(
    run: Run, tmp_path: Path
) -> None:
    async def scenario(rt: Runtime) -> int:
        await rt.publish_many([submission(f) for f in SAMPLE])
        await rt.drain(timeout=20)
        before = dict(await rt.store("promotions").items())
        replayed = 0
        for handler in ("promotions.generate_code", "email.send_discount_code"):
            replayed += await rt.replay(start=0, rule=handler, name=f"again-{handler}")
            await rt.drain(timeout=20)
        assert dict(await rt.store("promotions").items()) == before
        return replayed

    (replayed, state, letters), webhook, outbox = play(run, tmp_path, scenario)
    assert replayed > 0 and letters == []
    assert len(outbox.messages()) == 4 and len(webhook.posts) == 4
    assert state["audit"]["count:discount_generated"] == 4
    assert state["audit"]["count:email_sent"] == 4


def test_the_outbox_accepts_each_message_id_once(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "emails.jsonl")
    message = {"message_id": "<1@x>", "to": "a@example.com", "code": "C"}
    assert outbox.send(message) is True
    assert outbox.send(message) is False  # a resend after a crash before the commit
    assert outbox.messages() == [message]


def test_the_outbox_remembers_only_the_latest_message_ids(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "emails.jsonl", remember=3)
    for n in range(5):
        assert outbox.send({"message_id": f"<{n}@x>"}) is True
    assert outbox.send({"message_id": "<4@x>"}) is False  # a recent one: still refused
    assert outbox.send({"message_id": "<0@x>"}) is True  # long forgotten, as keys expire
    assert len(outbox._ids) == 3, "what it remembers stays bounded"


def test_the_stack_can_be_imported_by_tools() -> None:
    from examples.product_registration.app import stack

    assert sorted(stack.services) == ["audit", "email", "loyalty", "products", "promotions",
                                      "support"]
    [rule] = stack.buses["default"].rules
    assert rule.name == "notify-manufacturer" and rule.transform is not None


def test_the_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "products    4 registered, 1 duplicate request(s) ignored" in out
    assert "cu-101   250  (+150 SN-K2000101, +100 SN-T5000207)" in out
    assert "email       4 sent" in out
    assert "manufacturer received 4 POST(s), 4 registration(s)" in out
    assert '"serialNo": "SN-B7000311"' in out
    assert "and the same for SN-K2000101, SN-K2000488, SN-T5000207" in out
    assert "dead letters  1" in out
    assert "Invalid RFC3339 encoded date - at `$.purchase_date`" in out
    assert (tmp_path / "product-registration.db").exists()
    assert len(Outbox(tmp_path / "outbox" / "emails.jsonl").messages()) == 4

    assert main(["--dir", str(tmp_path), "--keep"]) == 0  # the same forms again: all known
    out = capsys.readouterr().out
    assert "products    4 registered, 6 duplicate request(s) ignored" in out
    assert "email       4 sent" in out
