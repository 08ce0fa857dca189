"""What a stack's two API documents share.

The OpenAPI document of its HTTP face (:mod:`setpiece.gateway.openapi`, ``/openapi.json``) and
the AsyncAPI document of its events (:mod:`setpiece.schemas.asyncapi`, ``/asyncapi.json``) both
describe the CloudEvents envelope an event travels in (``components.schemas.CloudEvent``) and,
with auth, the bearer scheme that guards the routes (``components.securitySchemes``). Plain
JSON-ready dicts: this module imports nothing of setpiece.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["BEARER", "CLOUDEVENT", "bearer_scheme", "cloudevent_schema"]

CLOUDEVENT = "CloudEvent"
"""The envelope's name in ``components.schemas``."""
BEARER = "bearerAuth"
"""The bearer scheme's name in ``components.securitySchemes``."""


def cloudevent_schema(strings: Iterable[str], description: str | None = None) -> dict[str, Any]:
    """The JSON Schema of a CloudEvents 1.0 event in structured JSON: the attributes every
    event has, the optional ones CloudEvents defines, the string attributes ``strings`` names
    (setpiece's extensions), then ``data``."""
    schema: dict[str, Any] = {"type": "object"}
    if description is not None:
        schema["description"] = description
    schema["required"] = ["id", "source", "type", "specversion"]
    schema["properties"] = {
        "id": {"type": "string", "minLength": 1},
        "source": {"type": "string", "minLength": 1},
        "type": {"type": "string", "minLength": 1},
        "specversion": {"const": "1.0"},
        "time": {"type": "string", "format": "date-time"},
        "subject": {"type": "string"},
        "datacontenttype": {"type": "string"},
        **{name: {"type": "string"} for name in strings},
        "data": {},
    }
    return schema


def bearer_scheme(note: str = "") -> dict[str, Any]:
    """``components.securitySchemes`` with the bearer JWT scheme (``note`` ends its
    description)."""
    return {BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                     "description": f"OAuth2 bearer JWT (RFC 6750 / RFC 7519){note}"}}
