"""Promotions: a thank-you discount code for every registered product.

The code is derived from the ``product_registered`` event's id, so handling the same event again
(a replay of the bus archive, a redrive) can only produce the same code; and a code already in the
store is not announced twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from examples.product_registration.contracts import (
    DISCOUNT_GENERATED,
    PRODUCT_REGISTERED,
    DiscountGenerated,
    ProductRegistered,
    domain_event,
)
from setpiece import Context, Event, Service

PERCENT = 15
VALID_FOR = dt.timedelta(days=90)

service = Service("promotions")


def discount_code(event_id: str) -> str:
    """A short code that is a function of the event id: same event, same code."""
    digest = hashlib.sha256(f"promotions/{event_id}".encode()).hexdigest()
    return f"THANKS-{digest[:8].upper()}"


@service.on({"type": [PRODUCT_REGISTERED]})
async def generate_code(product: ProductRegistered, ctx: Context) -> Event | None:
    code = discount_code(ctx.event.id)
    if await ctx.store.get(f"code:{code}") is not None:
        return None  # generated and announced before
    discount = DiscountGenerated(
        customer_id=product.customer_id,
        email=product.email,
        serial_number=product.serial_number,
        code=code,
        percent=PERCENT,
        valid_until=product.purchase_date + VALID_FOR,
    )
    await ctx.store.put(f"code:{code}", {
        "customer_id": product.customer_id,
        "serial_number": product.serial_number,
        "percent": PERCENT,
        "valid_until": discount.valid_until.isoformat(),
    })
    return domain_event(
        DISCOUNT_GENERATED, discount, subdomain="promotions", service="promotions",
        customer_id=product.customer_id, subject=code,
    )
