"""Loyalty: awards points for every registered product, on a per-customer balance.

Exactly once without trying: the balance update, the ``points_awarded`` event and the record that
this event was processed commit in one transaction, and a redelivered event is dropped by the
runtime's inbox before the handler runs.
"""

from __future__ import annotations

from examples.product_registration.contracts import (
    POINTS_AWARDED,
    PRODUCT_REGISTERED,
    ProductRegistered,
    domain_event,
)
from setpiece import Context, Event, Service

POINTS_PER_PRODUCT = 100
FIRST_PRODUCT_BONUS = 50

service = Service("loyalty")


@service.on({"type": [PRODUCT_REGISTERED]})
async def award_points(product: ProductRegistered, ctx: Context) -> Event:
    history: list[dict[str, object]] = await ctx.store.get(f"history:{product.customer_id}", [])
    points = POINTS_PER_PRODUCT + (FIRST_PRODUCT_BONUS if not history else 0)
    balance: int = await ctx.store.get(f"balance:{product.customer_id}", 0) + points
    await ctx.store.put(f"balance:{product.customer_id}", balance)
    await ctx.store.put(
        f"history:{product.customer_id}",
        [*history, {"serial_number": product.serial_number, "points": points}],
    )
    return domain_event(
        POINTS_AWARDED,
        {"customer_id": product.customer_id, "serial_number": product.serial_number,
         "points": points, "balance": balance},
        subdomain="loyalty",
        service="loyalty",
        customer_id=product.customer_id,
        subject=product.serial_number,
    )


@service.get("/customers/{customer_id}/points", scopes=["loyalty:read"])
async def points(customer_id: str, ctx: Context) -> dict[str, object]:
    """A customer's balance and how it was earned."""
    return {
        "customer_id": customer_id,
        "balance": await ctx.store.get(f"balance:{customer_id}", 0),
        "history": await ctx.store.get(f"history:{customer_id}", []),
    }
