"""Deploying: apply a change set with undo, and record the deployment; roll back to an earlier
one. The engine-independent core of ``setpiece apply``, ``rollback`` and ``history``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from setpiece.deploy.history import Action, Deployment, History
from setpiece.deploy.plan import Change
from setpiece.deploy.resources import digest
from setpiece.deploy.steps import run_steps, steps_for, undo_all
from setpiece.engine.contract import Engine
from setpiece.errors import ConfigError

__all__ = ["check", "deploy"]


def check(changes: Sequence[Change], *, allow_delete: bool) -> None:
    """Refuse (ConfigError, naming them) blocked items, and deletions that lose data unless
    ``allow_delete``: before anything is changed."""
    blocked = [c.name for c in changes if c.action == "blocked" and c.kind != "schema"]
    if blocked:
        raise ConfigError(f"cannot apply: {', '.join(blocked)} cannot change in place "
                          "(declare a new stream and migrate)")
    refused = [f"{c.name}: {c.detail}" for c in changes
               if c.action == "blocked" and c.kind == "schema"]
    if refused:
        raise ConfigError(f"cannot apply: the schema registry refuses {'; '.join(refused)}")
    guarded = [c for c in changes if c.guarded]
    if guarded and not allow_delete:
        names = "; ".join(f"{c.kind} {c.name} ({c.holds})" for c in guarded)
        raise ConfigError(
            f"refusing to delete what holds data: {names}. Nothing was changed. Declare them "
            "again to keep them, or pass --allow-delete to delete them with their data"
        )


async def deploy(
    engine: Engine,
    changes: Sequence[Change],
    definition: Mapping[str, Any],
    *,
    allow_delete: bool,
    by: str,
    at: float,
    action: Action = "apply",
    rollback_of: int | None = None,
) -> Deployment | None:
    """Apply ``changes`` to ``engine`` and record ``definition`` as the current deployment.

    Returns the new deployment, or None when there was nothing to do (no change, and the
    current deployment has this very definition). A refused step undoes every step made and
    raises DeployError; the current deployment stays current.
    """
    check(changes, allow_delete=allow_delete)
    history = History(engine)
    head = await history.expect()
    current = await history.current()
    steps = steps_for(changes)
    if not steps and current is not None and current.digest == digest(definition) \
            and action == "apply":
        return None
    await run_steps(engine, steps)
    try:
        return await history.record(definition, by=by, at=at, head=head, action=action,
                                    rollback_of=rollback_of)
    except Exception as exc:
        await undo_all(engine, steps, f"recording the deployment failed: "
                       f"{type(exc).__name__}: {exc}", exc)
        raise  # undo_all always raises; this line is never reached
