"""The demo: start the stack on the embedded engine, register some products, show what flowed.

``python -m examples.product_registration [--dir .setpiece/demo] [--keep]``. The SQLite file and
the email outbox live under ``--dir``; each run starts afresh unless ``--keep`` is given (then the
same registrations come in again, and products recognises every one of them).

The demo keeps its state apart from ``setpiece dev`` (which uses ``.setpiece/`` itself): running
the demo never changes what was done in dev, and dev starts from what the README shows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.product_registration.app import EMAILS_FILE, STACK_NAME, build_stack
from examples.product_registration.contracts import REGISTRATION_SUBMITTED
from examples.product_registration.emails import Outbox
from examples.product_registration.manufacturer import ManufacturerWebhook
from setpiece import DeadLetter, Event

SAMPLE: list[dict[str, Any]] = [
    {"customer_id": "cu-101", "email": "ada@example.com", "serial_number": "SN-K2000101",
     "model": "Kettle K2", "purchase_date": "2025-11-02", "country": "GB"},
    {"customer_id": "cu-102", "email": "grace@example.com", "serial_number": "SN-B7000311",
     "model": "Blender B7", "purchase_date": "2025-12-01", "country": "IE"},
    {"customer_id": "cu-101", "email": "ada@example.com", "serial_number": "SN-T5000207",
     "model": "Toaster T5", "purchase_date": "2025-11-20", "country": "GB"},
    {"customer_id": "cu-103", "email": "alan@example.com", "serial_number": "SN-K2000488",
     "model": "Kettle K2", "purchase_date": "2026-01-15", "country": "GB"},
]
DEMO_DIR = Path(".setpiece/demo")  # its own state: `setpiece dev` uses .setpiece/ itself
MALFORMED: dict[str, Any] = {
    "customer_id": "cu-104", "email": "edsger@example.com", "serial_number": "SN-I1000999",
    "model": "Iron I1", "purchase_date": "31/01/2026", "country": "NL",
}


def submission(form: dict[str, Any]) -> Event:
    """What the registration app puts on the bus: the form, keyed by customer."""
    return Event(
        type=REGISTRATION_SUBMITTED,
        source="ecommerce/products/registration-app",
        data=form,
        domain="ecommerce",
        subdomain="products",
        service="registration-app",
        category="command",
        partitionkey=str(form.get("customer_id")),
    )


@dataclass
class Summary:
    """What flowed in one run of the demo."""

    published: int = 0
    registrations: int = 0
    events: dict[str, int] = field(default_factory=dict)
    trails: dict[str, list[str]] = field(default_factory=dict)
    stores: dict[str, dict[str, Any]] = field(default_factory=dict)
    emails: list[dict[str, Any]] = field(default_factory=list)
    manufacturer_posts: list[dict[str, Any]] = field(default_factory=list)
    manufacturer_registrations: dict[str, dict[str, Any]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    database: Path | None = None
    outbox: Path | None = None


def prepare_workdir(workdir: Path, *, keep: bool) -> tuple[Path, Path]:
    """The database file and the outbox folder under ``workdir``; emptied unless ``keep``."""
    workdir.mkdir(parents=True, exist_ok=True)
    database = workdir / f"{STACK_NAME}.db"
    outbox_dir = workdir / "outbox"
    if not keep:
        for stale in (database, Path(f"{database}-wal"), Path(f"{database}-shm"),
                      outbox_dir / EMAILS_FILE):
            stale.unlink(missing_ok=True)
    return database, outbox_dir


async def run_demo(
    workdir: Path,
    *,
    keep: bool = False,
    samples: Sequence[dict[str, Any]] = SAMPLE,
    say: Callable[[str], None] = print,
) -> Summary:
    """Run the whole flow once on ``workdir/product-registration.db``; return what happened."""
    database, outbox_dir = prepare_workdir(workdir, keep=keep)
    outbox = Outbox(outbox_dir / EMAILS_FILE)
    summary = Summary(database=database, outbox=outbox.path)

    with ManufacturerWebhook() as manufacturer:
        stack = build_stack(outbox_dir, manufacturer.url)
        fresh = "kept from the last run (--keep)" if keep else "started afresh"
        say(f"engine  sqlite:///{database} ({fresh}; setpiece dev keeps its own state)")
        say(f"webhook {manufacturer.url} (the manufacturer, played by a local HTTP server)")
        async with stack.start(engine=f"sqlite:///{database}") as rt:
            first, *rest = [submission(form) for form in samples]
            stored = await rt.publish_many([first, *rest])
            await rt.publish(stored[0])  # a producer's retry: the very same event (same id)
            await rt.publish(submission(samples[-1]))  # the form sent twice: a new event id
            await rt.publish(submission(MALFORMED))  # a date the products service cannot read
            summary.registrations = len(stored)
            summary.published = len(stored) + 3
            await rt.drain(timeout=30)

            for key, value in await rt.store("audit").items():
                kind, _, name = key.partition(":")
                if kind == "count":
                    summary.events[name] = value
                else:
                    summary.trails[name] = value
            for name in ("products", "loyalty", "promotions", "email", "support"):
                summary.stores[name] = dict(await rt.store(name).items())
            summary.dead_letters = await rt.dead_letters()
        summary.emails = outbox.messages()
        summary.manufacturer_posts = list(manufacturer.posts)
        summary.manufacturer_registrations = dict(manufacturer.registrations)
    return summary


def report(summary: Summary, say: Callable[[str], None] = print) -> None:
    """Print what flowed, compactly."""
    stores = summary.stores
    say(f"\npublished {summary.published} events: {summary.registrations} registrations, one "
        "of them published twice (same id), one form submitted twice, one malformed")

    say("\nevents on the bus (counted by the audit service)")
    for name, count in sorted(summary.events.items()):
        say(f"  {name:<24}{count:>3}")

    products = {k.removeprefix("product:"): v for k, v in stores["products"].items()
                if k.startswith("product:")}
    duplicates = stores["products"].get("duplicates", 0)
    say(f"\nproducts    {len(products)} registered, {duplicates} duplicate request(s) ignored")
    for serial, p in products.items():
        say(f"  {serial}  {p['customer_id']}  {p['model']:<11} bought {p['purchase_date']}")

    say("loyalty     points per customer")
    for key, balance in stores["loyalty"].items():
        if key.startswith("balance:"):
            customer = key.removeprefix("balance:")
            history = stores["loyalty"].get(f"history:{customer}", [])
            steps = ", ".join(f"+{h['points']} {h['serial_number']}" for h in history)
            say(f"  {customer}  {balance:>4}  ({steps})")

    codes = {k.removeprefix("code:"): v for k, v in stores["promotions"].items()}
    say(f"promotions  {len(codes)} discount codes")
    for code, c in codes.items():
        say(f"  {code}  {c['percent']}% for {c['customer_id']} ({c['serial_number']}), "
            f"until {c['valid_until']}")

    cases = stores["support"]
    say(f"support     {len(cases)} aftercare cases open")
    for c in cases.values():
        say(f"  {c['serial_number']}  {c['customer_id']}  warranty until {c['warranty_until']}")

    say(f"email       {len(summary.emails)} sent, in {summary.outbox}")
    for m in sorted(summary.emails, key=lambda m: (m["to"], m["subject"])):
        say(f"  to {m['to']:<19} {m['subject']}")

    unique = summary.manufacturer_registrations
    say(f"\nmanufacturer received {len(summary.manufacturer_posts)} POST(s), "
        f"{len(unique)} registration(s), in its own format:")
    payloads = sorted(unique.values(), key=lambda p: str(p.get("product")))
    for payload in payloads[:1]:
        say(f"  {json.dumps(payload)}")
    if len(payloads) > 1:
        say("  and the same for " + ", ".join(p["product"]["serialNo"] for p in payloads[1:]))

    say(f"\ndead letters  {len(summary.dead_letters)}")
    for letter in summary.dead_letters:
        data = letter.event.data if letter.event and isinstance(letter.event.data, dict) else {}
        what = data.get("serial_number") or f"dead letter {letter.id}"
        say(f"  {letter.handler} gave up on {what} after {letter.attempts} "
            f"attempt(s):\n    {letter.error}")

    trail = next((t for t in summary.trails.values() if len(t) > 2), None)
    if trail:
        say("\none flow, by correlation id (each service acted on its own):")
        for step in trail:
            say(f"  {step}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.product_registration",
        description="Product registration, choreographed over a setpiece event bus.",
    )
    parser.add_argument("--dir", type=Path, default=DEMO_DIR,
                        help=f"where the SQLite file and the email outbox go (default {DEMO_DIR}; "
                        "emptied first unless --keep)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the previous run's database and outbox")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    started = dt.datetime.now()
    summary = asyncio.run(run_demo(args.dir, keep=args.keep))
    report(summary)
    seconds = (dt.datetime.now() - started).total_seconds()
    print(f"\ndone in {seconds:.1f}s")
    return 0
