"""Email: sends each discount code to its customer.

Sending is an effect outside the runtime's transaction, so this is where at-least-once delivery
has to be handled by hand:

* The runtime delivers every event *at least* once. Its inbox drops an event this handler has
  already committed, but an event can still come back: after a crash between the send and the
  commit, after a ``redrive`` of a dead letter, or in a ``replay`` of the bus archive (replays
  are delivered once more on purpose).
* So the handler checks its store before sending and records the send after it: once the record
  is committed, no redelivery, redrive or replay sends again.
* The one window left — a crash after the send, before the commit — is closed on the provider's
  side: the message id is derived from the event id, and the provider (here :class:`Outbox`,
  like SES or any API with an idempotency key) accepts each message id once.

The handler is a plain ``def``: the runtime runs it in a worker thread, so blocking file I/O is
fine, and its context's store has blocking methods.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from examples.product_registration.contracts import (
    DISCOUNT_GENERATED,
    EMAIL_SENT,
    DiscountGenerated,
    domain_event,
)
from setpiece import Event, Service, SyncContext

SENDER = "rewards@shop.example"


class Outbox:
    """A stand-in for an email provider: one JSON line per message in a local file.

    Like a provider's idempotency keys, which expire, it remembers the last ``remember``
    message ids: enough for the window it has to close (a redelivery right after a crash),
    without a worker's memory growing with every email it ever sent.
    """

    def __init__(self, path: Path, remember: int = 10_000) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._remember = remember
        self._ids: dict[str, None] = {}  # the latest message ids seen in the file, oldest first
        self._indexed = 0  # bytes of the file read into _ids

    def send(self, message: dict[str, Any]) -> bool:
        """Append ``message`` unless its ``message_id`` was sent before; True if appended."""
        with self._lock:
            if message["message_id"] in self._sent_ids():
                return False
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(message, sort_keys=True) + "\n")
            return True

    def _sent_ids(self) -> dict[str, None]:
        """The message ids in the file, read incrementally: only lines appended since the
        last look (by this process or another worker sharing the file) are parsed."""
        if not self.path.exists() or self.path.stat().st_size < self._indexed:
            self._ids, self._indexed = {}, 0  # removed or started afresh
        if not self.path.exists():
            return self._ids
        with self.path.open("rb") as lines:
            lines.seek(self._indexed)
            for line in lines:
                if not line.endswith(b"\n"):
                    break  # another process is writing it: read it next time
                self._indexed += len(line)
                if line.strip():
                    self._ids[json.loads(line)["message_id"]] = None
        while len(self._ids) > self._remember:  # forget the oldest
            del self._ids[next(iter(self._ids))]
        return self._ids

    def messages(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as lines:
            return [json.loads(line) for line in lines if line.strip()]


def email_service(outbox: Outbox) -> Service:
    """The email service, sending through ``outbox``."""
    service = Service("email")

    @service.on({"type": [DISCOUNT_GENERATED]})
    def send_discount_code(discount: DiscountGenerated, ctx: SyncContext) -> Event | None:
        sent_key = f"sent:{ctx.event.id}"
        if ctx.store.get(sent_key) is not None:
            ctx.log.info("discount %s was mailed already; not again", discount.code)
            return None
        message_id = f"<{ctx.event.id}@shop.example>"
        outbox.send({
            "message_id": message_id,
            "from": SENDER,
            "to": discount.email,
            "subject": f"Thanks for registering {discount.serial_number}: {discount.percent}% off",
            "body": (f"Use code {discount.code} for {discount.percent}% off your next order, "
                     f"until {discount.valid_until.isoformat()}."),
            "code": discount.code,
        })
        ctx.store.put(sent_key, {"message_id": message_id, "to": discount.email,
                                 "code": discount.code})
        return domain_event(
            EMAIL_SENT, {"message_id": message_id, "template": "discount-code"},
            subdomain="communications", service="email", customer_id=discount.customer_id,
            subject=message_id,
        )

    return service
