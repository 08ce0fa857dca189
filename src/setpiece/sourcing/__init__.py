"""Event sourcing: aggregates whose state is their events.

::

    from setpiece.sourcing import Aggregate

    account = Aggregate(
        "account",
        initial=lambda: {"balance": 0},
        decide=lambda state, command: [Event(type="deposited", data=command)],
        evolve=lambda state, event: {"balance": state["balance"] + event.data["amount"]},
    )
    stack = Stack("bank", aggregates=[account])
    async with stack.start("memory") as rt:
        version = await rt.aggregate("account", "acc-1").execute({"amount": 5})
        state, version = await rt.aggregate("account", "acc-1").load()

Each command loads the state (a snapshot, then the events after it), runs ``decide``, and stores
the new events with an expected version: atomically, together with their publication on the bus
(``subject`` = the aggregate id) and a snapshot every N events. Another writer's append first
is a conflict, and the command runs again on fresh state. See ``docs/sourcing.md``.
"""

from __future__ import annotations

from setpiece.sourcing.aggregate import CONFLICT_RETRY, Aggregate, Snapshots, Upcaster

__all__ = ["CONFLICT_RETRY", "Aggregate", "Snapshots", "Upcaster"]
