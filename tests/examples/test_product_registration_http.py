"""The example's authenticated HTTP API, in process: tokens, scopes, and the flow behind it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from examples.product_registration.app import AUDIENCE, DEV_SECRET, ISSUER, build_stack
from examples.product_registration.manufacturer import ManufacturerWebhook
from setpiece import mint_token

Run = Callable[[Any], Any]
FORM = {"customer_id": "cu-707", "email": "cu-707@example.com", "serial_number": "SN-H1000777",
        "model": "Kettle K2", "purchase_date": "2026-01-15", "country": "GB"}


def bearer(*scopes: str) -> dict[str, str]:
    token = mint_token(DEV_SECRET, subject="app-1", scopes=list(scopes), issuer=ISSUER,
                       audience=AUDIENCE, expires_in=600)
    return {"authorization": f"Bearer {token}"}


def test_registration_over_http_flows_through_the_choreography(run: Run, tmp_path: Path) -> None:
    async def go(webhook: ManufacturerWebhook) -> None:
        stack = build_stack(tmp_path / "outbox", webhook.url)
        async with stack.start(engine="memory") as rt:
            transport = httpx.ASGITransport(app=rt.asgi())
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
                assert (await http.post("/registrations", json=FORM)).status_code == 401
                denied = await http.post("/registrations", json=FORM,
                                         headers=bearer("loyalty:read"))
                assert denied.status_code == 403
                bad = await http.post("/registrations", json={**FORM, "purchase_date": "soon"},
                                      headers=bearer("registrations:write"))
                assert bad.status_code == 422 and "purchase_date" in bad.text
                accepted = await http.post("/registrations", json=FORM,
                                           headers=bearer("registrations:write"))
                assert accepted.status_code == 202, accepted.text
                await rt.drain(timeout=20)
                product = await http.get("/products/SN-H1000777", headers=bearer("products:read"))
                assert product.status_code == 200 and product.json()["customer_id"] == "cu-707"
                missing = await http.get("/products/SN-NOPE", headers=bearer("products:read"))
                assert missing.status_code == 404
                points = await http.get("/customers/cu-707/points", headers=bearer("loyalty:read"))
                assert points.json()["balance"] == 150

    with ManufacturerWebhook() as webhook:
        run(go(webhook))
