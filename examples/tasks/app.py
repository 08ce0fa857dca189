"""JUST TASKS, event-sourced: a task's state is its events.

- ``task`` (an :class:`~setpiece.sourcing.Aggregate`): commands ``create``, ``assign``,
  ``complete``, ``reopen``; ``decide`` refuses what the task's state does not allow
  (:class:`TaskRefused`), ``evolve`` has one function per event type.
- ``tasks`` (a service): the HTTP API. Each route runs one command through ``ctx.aggregate``:
  the events are stored, and published on the bus, with the request's unit of work.
- ``board`` (a service): the projection. It consumes the task events from the bus into its
  store (one row per task, one list of open tasks per assignee), idempotent per task version,
  and answers ``GET /board/{assignee}``. ``rt.replay_aggregate("task", rule="board.project")``
  rebuilds it from the event store.
- Every route needs a bearer token with ``tasks:write`` (commands) or ``tasks:read`` (reads).

``python -m examples.tasks`` runs a short demo over HTTP, in process.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

from setpiece import Context, Event, HTTPError, JWTAuth, Response, Service, Stack
from setpiece.sourcing import Aggregate, Snapshots

__all__ = ["AUDIENCE", "DEV_SECRET", "ISSUER", "TaskRefused", "build_stack", "task"]

ISSUER = "setpiece-example"
AUDIENCE = "just-tasks"
DEV_SECRET = "dev-secret-for-the-example-only!"  # real deployments use a JWKS (JWTAuth(jwks=...))


class TaskRefused(ValueError):
    """A command the task's current state does not allow."""


# -- the aggregate ---------------------------------------------------------------------------


def initial() -> dict[str, Any]:
    return {"status": "none"}


def decide(state: dict[str, Any], command: dict[str, Any]) -> list[Event]:
    kind, status = command["type"], state["status"]
    if kind == "create":
        if status != "none":
            raise TaskRefused("the task exists already")
        return [Event(type="task_created", data={"title": command["title"],
                                                 "project": command["project"]})]
    if status == "none":
        raise TaskRefused("no such task")
    if kind == "assign":
        if status != "open":
            raise TaskRefused(f"a {status} task cannot be assigned")
        if state.get("assignee") == command["assignee"]:
            return []  # nothing happens: no event
        return [Event(type="task_assigned", data={"assignee": command["assignee"],
                                                  "previous": state.get("assignee")})]
    if kind == "complete":
        if status != "open" or state.get("assignee") is None:
            raise TaskRefused("only an open, assigned task can be completed")
        return [Event(type="task_completed", data={"assignee": state["assignee"]})]
    if kind == "reopen":
        if status != "done":
            raise TaskRefused("only a completed task can be reopened")
        return [Event(type="task_reopened", data={"assignee": state.get("assignee")})]
    raise TaskRefused(f"unknown command {kind!r}")


task = Aggregate(
    "task",
    initial=initial,
    decide=decide,
    evolve={
        "task_created": lambda s, e: {"status": "open", "title": e.data["title"],
                                      "project": e.data["project"], "assignee": None},
        "task_assigned": lambda s, e: {**s, "assignee": e.data["assignee"]},
        "task_completed": lambda s, e: {**s, "status": "done"},
        "task_reopened": lambda s, e: {**s, "status": "open"},
    },
    snapshots=Snapshots(every=50),
)

# -- the HTTP API ----------------------------------------------------------------------------


class NewTask(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    title: str
    project: str = "inbox"


class Assignment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    assignee: str


def _api() -> Service:
    api = Service("tasks")

    async def command(ctx: Context, task_id: str, body: dict[str, Any]) -> int:
        try:
            version: int = await ctx.aggregate("task", task_id).execute(body)
        except TaskRefused as exc:
            raise HTTPError(409, str(exc)) from None
        return version

    @api.post("/tasks", scopes=["tasks:write"])
    async def create(body: NewTask, ctx: Context) -> Response:
        task_id = os.urandom(6).hex()
        version = await command(ctx, task_id, {"type": "create", "title": body.title,
                                               "project": body.project})
        return Response({"id": task_id, "version": version}, status=201)

    @api.post("/tasks/{task_id}/assign", scopes=["tasks:write"])
    async def assign(task_id: str, body: Assignment, ctx: Context) -> dict[str, Any]:
        return {"version": await command(ctx, task_id, {"type": "assign",
                                                        "assignee": body.assignee})}

    @api.post("/tasks/{task_id}/complete", scopes=["tasks:write"])
    async def complete(task_id: str, ctx: Context) -> dict[str, Any]:
        return {"version": await command(ctx, task_id, {"type": "complete"})}

    @api.post("/tasks/{task_id}/reopen", scopes=["tasks:write"])
    async def reopen(task_id: str, ctx: Context) -> dict[str, Any]:
        return {"version": await command(ctx, task_id, {"type": "reopen"})}

    @api.get("/tasks/{task_id}", scopes=["tasks:read"])
    async def read(task_id: str, ctx: Context) -> dict[str, Any]:
        """The task as its events say (the aggregate, not the projection)."""
        state, version = await ctx.aggregate("task", task_id).load()
        if version == 0:
            raise HTTPError(404, f"no task {task_id!r}")
        return {"id": task_id, "version": version, **state}

    return api


# -- the projection --------------------------------------------------------------------------


def _board() -> Service:
    board = Service("board")

    @board.on({"type": ["task_created", "task_assigned", "task_completed", "task_reopened"]})
    async def project(event: Event, ctx: Context) -> None:
        task_id = event.subject
        assert task_id is not None and event.extensions is not None
        version = event.extensions["aggregateversion"]
        row = await ctx.store.get(f"task:{task_id}", {"version": 0})
        if version <= row["version"]:
            return  # seen already (a replay, a redelivery)
        if event.type == "task_created":
            row = {"title": event.data["title"], "project": event.data["project"],
                   "assignee": None, "status": "open"}
        elif event.type == "task_assigned":
            await _unlist(ctx, event.data["previous"], task_id)
            row["assignee"] = event.data["assignee"]
        elif event.type == "task_completed":
            row["status"] = "done"
        else:
            row["status"] = "open"
        if row["status"] == "open" and row["assignee"] is not None:
            await _list(ctx, row["assignee"], task_id)
        elif row["assignee"] is not None:
            await _unlist(ctx, row["assignee"], task_id)
        await ctx.store.put(f"task:{task_id}", {**row, "version": version})

    @board.get("/board/{assignee}", scopes=["tasks:read"])
    async def open_tasks(assignee: str, ctx: Context) -> dict[str, Any]:
        """The open tasks of ``assignee``, from the projection."""
        ids = await ctx.store.get(f"open:{assignee}", [])
        rows = [await ctx.store.get(f"task:{i}") for i in ids]
        return {"assignee": assignee,
                "tasks": [{"id": i, "title": r["title"], "project": r["project"]}
                          for i, r in zip(ids, rows, strict=True)]}

    return board


async def _list(ctx: Context, assignee: str, task_id: str) -> None:
    ids = await ctx.store.get(f"open:{assignee}", [])
    if task_id not in ids:
        await ctx.store.put(f"open:{assignee}", sorted([*ids, task_id]))


async def _unlist(ctx: Context, assignee: str | None, task_id: str) -> None:
    if assignee is None:
        return
    ids = await ctx.store.get(f"open:{assignee}", [])
    if task_id in ids:
        await ctx.store.put(f"open:{assignee}", [i for i in ids if i != task_id])


def build_stack(jwt_secret: str = DEV_SECRET) -> Stack:
    """The stack; bearer tokens signed with ``jwt_secret`` (scopes ``tasks:write``,
    ``tasks:read``), as the seed asks: authorization from day one."""
    return Stack("just-tasks", services=[_api(), _board()], aggregates=[task],
                 auth=JWTAuth(secret=jwt_secret, issuer=ISSUER, audience=AUDIENCE))
