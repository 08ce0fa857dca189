"""The account aggregate the event-sourcing tests share (the issue's contract)."""

from __future__ import annotations

from typing import Any

from setpiece import Event
from setpiece.errors import ConfigError
from setpiece.sourcing import Aggregate, Snapshots, Upcaster


def decide(state: dict[str, Any], command: dict[str, Any]) -> list[Event]:
    amount = command["amount"]
    if state["balance"] + amount < 0:
        raise ConfigError(f"insufficient funds: balance {state['balance']}, amount {amount}")
    return [Event(type="deposited", data={"amount": amount})]


def evolve(state: dict[str, Any], event: Event) -> dict[str, Any]:
    return {"balance": state["balance"] + event.data["amount"]}


DEFAULT_SNAPSHOTS = Snapshots()


def account(
    *, snapshots: Snapshots | None = DEFAULT_SNAPSHOTS, upcasters: tuple[Upcaster, ...] = (),
    **options: Any,
) -> Aggregate:
    return Aggregate(
        "account", initial=lambda: {"balance": 0}, decide=decide, evolve=evolve,
        snapshots=snapshots, upcasters=upcasters, **options,
    )
