"""Views over the registrations, kept by the runtime from the events (no service owns them).

- ``points``: each customer's current points balance, a table of ``points_awarded`` events;
- ``registrations_with_points``: every ``product_registered`` event enriched with the
  customer's balance when the join takes it (a stream-table join; a left join, since a
  first-time customer has no balance yet), written onto the ``registrations_enriched`` stream.
  The join and loyalty consume the bus independently, so that balance may already count this
  registration's points (the table is read as it is committed, as Kafka Streams' joins do);
- ``registrations_per_model``: registrations per product model per hour of event time (a
  tumbling window with five minutes of grace), each hour's count emitted once onto
  ``hourly_registrations`` when the hour closes: when the partition's stream time passes the
  hour's end plus grace, or after an hour of wall-clock time without registrations.
"""

from __future__ import annotations

from typing import Any

from examples.product_registration.contracts import POINTS_AWARDED, PRODUCT_REGISTERED
from setpiece import Bus, Event, Stream
from setpiece.views import Aggregate, Join, Table, Tumbling

registrations_enriched = Stream("registrations_enriched")
hourly_registrations = Stream("hourly_registrations")


def customer(event: Event) -> str:
    customer_id: str = event.data["customer_id"]
    return customer_id


def with_points(event: Event, balance: Any) -> dict[str, Any]:
    return {**event.data, "points_balance": balance or 0}


def build_views(bus: Bus) -> list[Table | Join | Aggregate]:
    """The views of ``bus``'s events (the stack's default bus)."""
    points = Table("points", bus, pattern={"type": [POINTS_AWARDED]}, key=customer,
                   value=lambda e: e.data["balance"])
    enriched = Join("registrations_with_points", bus, points,
                    pattern={"type": [PRODUCT_REGISTERED]}, key=customer, how="left",
                    combine=with_points, emit_to=registrations_enriched)
    per_model = Aggregate("registrations_per_model", bus,
                          pattern={"type": [PRODUCT_REGISTERED]},
                          key=lambda e: e.data["model"], window=Tumbling(3600, grace=300),
                          initial=lambda: 0, add=lambda count, e: count + 1,
                          emit_to=hourly_registrations, idle_timeout=3600)
    return [points, enriched, per_model]
