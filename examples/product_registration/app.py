"""The stack: five services and a bus rule, wired only by events.

::

    products --product_registered--> loyalty      --points_awarded-->
                                 \\--> promotions   --discount_generated--> email
                                 \\--> support      --support_case_opened-->
                                 \\--> rule notify-manufacturer --HTTP POST--> manufacturer

``stack`` is built from the environment (``OUTBOX_DIR``, ``MANUFACTURER_URL``) for tools such as
``setpiece dev examples.product_registration.app:stack``; tests and the demo call
:func:`build_stack`. Its HTTP API (``POST /registrations``, ``GET /products/{serial}``,
``GET /customers/{id}/points``) needs bearer tokens from :data:`ISSUER` for :data:`AUDIENCE`.
"""

from __future__ import annotations

import os
from pathlib import Path

from examples.product_registration import audit, loyalty, products, promotions, support
from examples.product_registration.emails import Outbox, email_service
from examples.product_registration.manufacturer import notify_manufacturer
from setpiece import Bus, JWTAuth, Stack

STACK_NAME = "product-registration"
DEFAULT_OUTBOX_DIR = ".setpiece/outbox"
DEFAULT_MANUFACTURER_URL = "http://127.0.0.1:8099/registrations"
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
        auth=JWTAuth(secret=jwt_secret, issuer=ISSUER, audience=AUDIENCE),
    )


stack = build_stack(
    os.environ.get("OUTBOX_DIR", DEFAULT_OUTBOX_DIR),
    os.environ.get("MANUFACTURER_URL", DEFAULT_MANUFACTURER_URL),
    os.environ.get("SETPIECE_JWT_SECRET", DEV_SECRET),
)
