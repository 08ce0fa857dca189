"""The events the services exchange: the only thing they share.

In a choreography the contract is the event, not an API: each consumer decodes the payload into
the type it expects (a handler annotated with one of these Structs gets its event's data decoded
and checked). Producers set the envelope's metadata (``domain``, ``subdomain``, ``service``,
``category``, ``dataversion``), as in the seed's event structure.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from setpiece import Event

DOMAIN = "ecommerce"

# Event types, past tense: facts.
REGISTRATION_SUBMITTED = "registration_submitted"
PRODUCT_REGISTERED = "product_registered"
POINTS_AWARDED = "points_awarded"
DISCOUNT_GENERATED = "discount_generated"
SUPPORT_CASE_OPENED = "support_case_opened"
EMAIL_SENT = "email_sent"

CustomerId = Annotated[str, Meta(pattern=r"^cu-[0-9]{3,}$")]
Serial = Annotated[str, Meta(pattern=r"^SN-[0-9A-Z]{4,20}$")]
Email = Annotated[str, Meta(pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")]
Country = Annotated[str, Meta(pattern=r"^[A-Z]{2}$")]


class Registration(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the registration app submits (the data of ``registration_submitted``)."""

    customer_id: CustomerId
    email: Email
    serial_number: Serial
    model: Annotated[str, Meta(min_length=1, max_length=60)]
    purchase_date: dt.date
    country: Country = "GB"


class ProductRegistered(msgspec.Struct, frozen=True):
    """The data of ``product_registered`` (event-carried state: consumers need no lookups)."""

    customer_id: str
    email: str
    serial_number: str
    model: str
    purchase_date: dt.date
    country: str


class DiscountGenerated(msgspec.Struct, frozen=True):
    """The data of ``discount_generated``."""

    customer_id: str
    email: str
    serial_number: str
    code: str
    percent: int
    valid_until: dt.date


def domain_event(
    event_type: str, data: Any, *, subdomain: str, service: str, customer_id: str,
    subject: str | None = None,
) -> Event:
    """A domain event with the seed's metadata, keyed by customer (one customer, one order)."""
    return Event(
        type=event_type,
        source=f"{DOMAIN}/{subdomain}/{service}",
        data=msgspec.to_builtins(data),
        subject=subject,
        domain=DOMAIN,
        subdomain=subdomain,
        service=service,
        category="domain-event",
        dataversion="1",
        partitionkey=customer_id,
    )
