"""The product-registration example's views: the points table, registrations joined to it, and
registrations per model per hour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from examples.product_registration.app import build_stack
from examples.product_registration.contracts import PRODUCT_REGISTERED, domain_event
from examples.product_registration.manufacturer import ManufacturerWebhook


def registered(customer: str, serial: str, model: str, time: str) -> Any:
    event = domain_event(PRODUCT_REGISTERED, {
        "customer_id": customer, "email": f"{customer}@example.com", "serial_number": serial,
        "model": model, "purchase_date": "2026-01-15", "country": "GB",
    }, subdomain="registration", service="products", customer_id=customer)
    return event.replace(time=time)


def test_points_table_join_and_hourly_counts(run: Any, tmp_path: Path) -> None:
    async def main(url: str) -> None:
        async with build_stack(tmp_path / "outbox", url).start(engine="memory") as rt:
            for event in [registered("cu-001", "SN-0001", "Kettle K2", "2026-01-15T09:10:00Z"),
                          registered("cu-002", "SN-0002", "Toaster T1", "2026-01-15T09:20:00Z")]:
                await rt.publish(event)
                await rt.drain(timeout=20)
            await rt.publish(registered("cu-001", "SN-0003", "Kettle K2",
                                        "2026-01-15T10:20:00Z"))  # past 10:05: 09:00 closes
            await rt.drain(timeout=20)
            points = rt.view("points")
            assert await points.get("cu-001") == 250  # 150 for the first, 100 for the second
            assert await points.items() == [("cu-001", 250), ("cu-002", 150)]
            enriched = []
            for partition, end in enumerate(await rt.engine.end_offsets(
                    "registrations_enriched")):
                enriched += [msgspec.json.decode(r.value)["data"]
                             for r in await rt.engine.read("registrations_enriched", partition,
                                                           0, end)]
            by_serial = {d["serial_number"]: d["points_balance"] for d in enriched}
            # the balance when the join ran: before or after loyalty counted this one
            assert by_serial["SN-0001"] in (0, 150) and by_serial["SN-0002"] in (0, 150)
            assert by_serial["SN-0003"] in (150, 250)
            per_model = rt.view("registrations_per_model")
            assert await per_model.windows("Kettle K2") == [
                ("2026-01-15T09:00:00.000Z", "2026-01-15T10:00:00.000Z", 1),
                ("2026-01-15T10:00:00.000Z", "2026-01-15T11:00:00.000Z", 1)]
            hourly = []
            for partition, end in enumerate(await rt.engine.end_offsets("hourly_registrations")):
                hourly += [msgspec.json.decode(r.value)["data"]
                           for r in await rt.engine.read("hourly_registrations", partition, 0,
                                                         end)]
            # Stream time is per partition: cu-001's partition passed 10:05, so its 09:00 hour
            # closed; cu-002's has seen nothing after 09:20, so the Toaster's hour stays open
            # (until that partition's events move on, or its idle timeout passes).
            assert [(h["key"], h["start"], h["value"]) for h in hourly] == [
                ("Kettle K2", "2026-01-15T09:00:00.000Z", 1)]
            assert await per_model.windows("Toaster T1") == [
                ("2026-01-15T09:00:00.000Z", "2026-01-15T10:00:00.000Z", 1)]
            assert await rt.dead_letters() == []

    with ManufacturerWebhook() as webhook:
        run(main(webhook.url))
