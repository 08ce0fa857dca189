"""The demo: register products, let the workflow orchestrate, show executions and effects.

``python -m examples.product_orchestration [--engine URL]`` (default: a fresh SQLite file
``.setpiece/product-orchestration.db``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from examples.product_orchestration.app import PRODUCT_REGISTERED, build_stack
from setpiece import Event

SAMPLE: list[dict[str, Any]] = [
    {"customer_id": "cu-101", "email": "ada@example.com", "serial_number": "SN-K2000101",
     "model": "Kettle K2"},
    {"customer_id": "cu-102", "email": "grace@example.com", "serial_number": "SN-B7000311",
     "model": "Blender B7"},
    {"customer_id": "cu-101", "email": "ada@example.com", "serial_number": "SN-T5000207",
     "model": "Toaster T5"},
    {"customer_id": "cu-101", "email": "ada@example.com", "serial_number": "SN-I1000999",
     "model": "Iron I1"},
]


def registered(form: dict[str, Any]) -> Event:
    return Event(type=PRODUCT_REGISTERED, source="ecommerce/products", data=form,
                 partitionkey=form["customer_id"])


async def run(engine: str, out: Any = sys.stdout) -> list[Any]:
    """Register the sample products and wait for every execution; returns them."""
    async with build_stack().start(engine=engine) as rt:
        await rt.publish_many([registered(form) for form in SAMPLE])
        await rt.drain(timeout=30)
        done = [await rt.wait_execution(ex.id, timeout=30) for ex in await rt.executions()]
        await rt.drain(timeout=30)
        print(f"{len(done)} executions of register-product:", file=out)
        for ex in sorted(done, key=lambda d: d.start_date):
            rewards = ex.output["rewards"] if ex.output else {}
            print(f"  {ex.output['serial'] if ex.output else ex.name}: {ex.status}; "
                  f"points {rewards.get('loyalty')}; discount {rewards.get('discount')}",
                  file=out)
        history = await rt.execution_history(done[0].id)
        print(f"history of {done[0].id} ({len(history)} events):", file=out)
        print("  " + ", ".join(e.type for e in history), file=out)
        emails = await rt.store("emails").items()
        cases = await rt.store("support").items()
        balances = dict(await rt.store("loyalty").items())
        print(f"emails sent: {len(emails)}; support cases: {len(cases)}; "
              f"points: {balances}", file=out)
        return done


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Product registration, orchestrated by a workflow")
    ap.add_argument("--engine", default=None, help="engine URL (default: a fresh SQLite file)")
    args = ap.parse_args(argv)
    engine = args.engine
    if engine is None:
        path = Path(".setpiece") / "product-orchestration.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        engine = f"sqlite:///{path}"
    done = asyncio.run(run(engine))
    return 0 if all(d.status == "SUCCEEDED" for d in done) else 1
