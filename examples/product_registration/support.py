"""Support: opens an aftercare case for every registered product."""

from __future__ import annotations

import datetime as dt

from examples.product_registration.contracts import (
    PRODUCT_REGISTERED,
    SUPPORT_CASE_OPENED,
    ProductRegistered,
    domain_event,
)
from setpiece import Context, Event, Service

WARRANTY_YEARS = 2

service = Service("support")


@service.on({"type": [PRODUCT_REGISTERED]})
async def open_case(product: ProductRegistered, ctx: Context) -> Event:
    purchased = product.purchase_date
    try:
        warranty_until = purchased.replace(year=purchased.year + WARRANTY_YEARS)
    except ValueError:  # bought on 29 February; that year has none
        warranty_until = dt.date(purchased.year + WARRANTY_YEARS, 2, 28)
    case = {
        "customer_id": product.customer_id,
        "serial_number": product.serial_number,
        "model": product.model,
        "topic": "aftercare",
        "status": "open",
        "warranty_until": warranty_until.isoformat(),
        "opened_at": ctx.event.time,
    }
    await ctx.store.put(f"case:{product.serial_number}", case)
    return domain_event(
        SUPPORT_CASE_OPENED, case, subdomain="customer-service", service="support",
        customer_id=product.customer_id, subject=product.serial_number,
    )
