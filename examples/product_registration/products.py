"""Products: registers a product for a customer and announces it.

The handler's annotation does the validation: the runtime decodes the event's data into
:class:`Registration`, and data that does not fit goes straight to the dead-letter stream with the
reason (retrying would not make it fit). The handler knows nothing of who listens to
``product_registered``: that is the choreography.
"""

from __future__ import annotations

from examples.product_registration.contracts import (
    PRODUCT_REGISTERED,
    REGISTRATION_SUBMITTED,
    ProductRegistered,
    Registration,
    domain_event,
)
from setpiece import Context, Event, HTTPError, Response, Service

service = Service("products")


@service.on({"type": [REGISTRATION_SUBMITTED]})
async def register(registration: Registration, ctx: Context) -> Event | None:
    """Store the product (keyed by serial number) and emit ``product_registered``."""
    key = f"product:{registration.serial_number}"
    existing = await ctx.store.get(key)
    if existing is not None:
        # The same form submitted again (a double click, an app retry with a new event id): the
        # runtime's inbox cannot know, but the business key can. Nothing new happened.
        duplicates = await ctx.store.get("duplicates", 0)
        await ctx.store.put("duplicates", duplicates + 1)
        ctx.log.info("%s is already registered; ignoring request %s",
                     registration.serial_number, ctx.event.id)
        return None
    await ctx.store.put(key, {
        "customer_id": registration.customer_id,
        "model": registration.model,
        "purchase_date": registration.purchase_date.isoformat(),
        "registered_at": ctx.event.time,
        "request": ctx.event.id,
    })
    owned = await ctx.store.get(f"customer:{registration.customer_id}", [])
    await ctx.store.put(f"customer:{registration.customer_id}",
                        [*owned, registration.serial_number])
    return domain_event(
        PRODUCT_REGISTERED,
        ProductRegistered(
            customer_id=registration.customer_id,
            email=registration.email,
            serial_number=registration.serial_number,
            model=registration.model,
            purchase_date=registration.purchase_date,
            country=registration.country,
        ),
        subdomain="products",
        service="products",
        customer_id=registration.customer_id,
        subject=registration.serial_number,
    )


# -- the HTTP API (served by the gateway; every route needs a bearer token with its scope) ------


@service.post("/registrations", scopes=["registrations:write"])
async def submit(body: Registration, ctx: Context) -> Response:
    """Accept a registration form: publish ``registration_submitted``; the flow does the rest."""
    await ctx.publish(domain_event(
        REGISTRATION_SUBMITTED, body, subdomain="registration", service="registration-api",
        customer_id=body.customer_id, subject=body.serial_number,
    ))
    return Response({"accepted": True, "request": ctx.event.id}, status=202)


@service.get("/products/{serial_number}", scopes=["products:read"])
async def product(serial_number: str, ctx: Context) -> dict[str, object]:
    """A registered product, as the products service stored it."""
    found = await ctx.store.get(f"product:{serial_number}")
    if found is None:
        raise HTTPError(404, f"no product {serial_number!r} is registered")
    return {"serial_number": serial_number, **found}
