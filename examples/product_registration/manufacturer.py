"""The manufacturer: a third party told of every registration through its webhook.

No service calls it. A bus rule routes ``product_registered`` to an :class:`HttpTarget`, and the
rule's input transformer is the anti-corruption layer: it reshapes our event into the
manufacturer's format and passes on only what the manufacturer needs (no customer id, no email).
Delivery is retried with backoff and dead-lettered like any other.

:class:`ManufacturerWebhook` stands in for the manufacturer: a small HTTP server on a loopback
port that records what it receives.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from examples.product_registration.contracts import PRODUCT_REGISTERED
from setpiece import HttpTarget, RetryPolicy, Rule
from setpiece.patterns import InputTransformer

PARTNER_ID = "shop-example"

# Our event in, the manufacturer's warranty registration out.
to_manufacturer_format = InputTransformer(
    {
        "ref": "$.id",
        "serial": "$.data.serial_number",
        "model": "$.data.model",
        "purchased": "$.data.purchase_date",
        "country": "$.data.country",
        "at": "$.time",
    },
    '{"partnerId": "' + PARTNER_ID + '", "registrationRef": <ref>,'
    ' "product": {"serialNo": <serial>, "modelName": <model>},'
    ' "purchase": {"date": <purchased>, "market": <country>},'
    ' "registeredAt": <at>}',
)


def notify_manufacturer(url: str) -> Rule:
    """The bus rule that POSTs every registration, transformed, to the manufacturer's ``url``."""
    return Rule(
        "notify-manufacturer",
        {"type": [PRODUCT_REGISTERED]},
        (HttpTarget(url, headers={"x-partner-id": PARTNER_ID}, timeout=5.0),),
        transform=to_manufacturer_format,
        retry=RetryPolicy(max_attempts=5, initial_delay=0.2, max_delay=2.0),
    )


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) resets connections when a worker's HTTP target sends
    # its deliveries concurrently (16 in flight per consumer by default).
    request_queue_size = 128


class ManufacturerWebhook:
    """A local HTTP endpoint standing in for the manufacturer; use it as a context manager.

    It accepts ``POST /registrations`` (CloudEvents structured JSON), answers 202, and is
    idempotent on the event id, as an HTTP target's endpoint must be.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.posts: list[dict[str, Any]] = []  # every POST, duplicates included
        self.registrations: dict[str, dict[str, Any]] = {}  # by event id
        self._lock = threading.Lock()
        self._server = _Server((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="manufacturer-webhook", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/registrations"

    def __enter__(self) -> ManufacturerWebhook:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _receive(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.posts.append(body)
            self.registrations.setdefault(body["id"], body["data"])

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                try:
                    body = json.loads(self.rfile.read(length))
                    if self.path != "/registrations" or not isinstance(body, dict):
                        raise ValueError("not a registration")
                    webhook._receive(body)
                except (ValueError, KeyError):
                    self.send_response(HTTPStatus.BAD_REQUEST)
                else:
                    self.send_response(HTTPStatus.ACCEPTED)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the demo prints what arrived

        return Handler
