"""The stack: five services and a bus rule, wired only by events.

::

    products --product_registered--> loyalty      --points_awarded-->
                                 \\--> promotions   --discount_generated--> email
                                 \\--> support      --support_case_opened-->
                                 \\--> rule notify-manufacturer --HTTP POST--> manufacturer
    views: points (a table of points_awarded), registrations_with_points (product_registered
    joined to it), registrations_per_model (registrations per model per hour)

``stack`` is built from the environment (``OUTBOX_DIR``, ``MANUFACTURER_URL``) for tools such as
``setpiece dev examples.product_registration.app:stack``, on first use; tests and the demo call
:func:`build_stack`. Without ``MANUFACTURER_URL``, the process that uses ``stack`` plays the
manufacturer itself, as the demo does: it starts the stand-in :class:`ManufacturerWebhook` on a
free loopback port and points the rule at it, so registrations in ``setpiece dev`` reach a
webhook instead of being retried and dead-lettered. Its HTTP API (``POST /registrations``,
``GET /products/{serial}``, ``GET /customers/{id}/points``) needs bearer tokens from
:data:`ISSUER` for :data:`AUDIENCE`.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path

from examples.product_registration import audit, loyalty, products, promotions, support
from examples.product_registration.emails import Outbox, email_service
from examples.product_registration.manufacturer import ManufacturerWebhook, notify_manufacturer
from examples.product_registration.views import (
    build_views,
    hourly_registrations,
    registrations_enriched,
)
from setpiece import Bus, JWTAuth, Stack

STACK_NAME = "product-registration"
DEFAULT_OUTBOX_DIR = ".setpiece/outbox"
DEFAULT_MANUFACTURER_URL = "http://127.0.0.1:8099/registrations"  # build_stack's default
EMAILS_FILE = "emails.jsonl"
ISSUER = "setpiece-example"
AUDIENCE = "product-registration"
DEV_SECRET = "dev-secret-for-the-example-only!"  # real deployments use a JWKS (JWTAuth(jwks=...))


def build_stack(
    outbox_dir: Path | str = DEFAULT_OUTBOX_DIR,
    manufacturer_url: str = DEFAULT_MANUFACTURER_URL,
    jwt_secret: str = DEV_SECRET,
) -> Stack:
    """The architecture: emails go to ``outbox_dir/emails.jsonl``, the manufacturer's webhook
    is ``manufacturer_url``."""
    outbox = Outbox(Path(outbox_dir) / EMAILS_FILE)
    bus = Bus("default", rules=[notify_manufacturer(manufacturer_url)])
    return Stack(
        STACK_NAME,
        services=[
            products.service,
            loyalty.service,
            promotions.service,
            email_service(outbox),
            support.service,
            audit.service,
        ],
        buses=[bus],
        streams=[registrations_enriched, hourly_registrations],
        views=build_views(bus),
        auth=JWTAuth(secret=jwt_secret, issuer=ISSUER, audience=AUDIENCE),
    )


def stack_from_environment() -> Stack:
    """The stack tools run: ``OUTBOX_DIR``, ``MANUFACTURER_URL`` and ``SETPIECE_JWT_SECRET``
    from the environment; without ``MANUFACTURER_URL``, a stand-in manufacturer in this
    process (stopped when the process exits)."""
    url = os.environ.get("MANUFACTURER_URL")
    if not url:
        stand_in = ManufacturerWebhook().__enter__()
        atexit.register(stand_in.__exit__, None, None, None)
        url = stand_in.url
    return build_stack(
        os.environ.get("OUTBOX_DIR", DEFAULT_OUTBOX_DIR),
        url,
        os.environ.get("SETPIECE_JWT_SECRET", DEV_SECRET),
    )


def __getattr__(name: str) -> Stack:
    """``stack``: built on first use (importing :func:`build_stack` starts no stand-in)."""
    if name != "stack":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    built = stack_from_environment()
    globals()["stack"] = built  # later uses find it directly
    return built
