"""The change set between the resources a deployment needs and what an engine holds.

Like a CloudFormation change set, each item is one of

* ``add`` — needed, not in the engine yet;
* ``modify`` — there, declared differently (retention; on NATS, a JetStream stream missing or
  with another ``max_age``), changed in place;
* ``blocked`` — a change that cannot be made in place (a stream's partition count: records are
  placed by key hash, so changing it needs a new stream and a migration);
* ``unchanged``;
* ``delete`` — in the engine, no longer needed (a stream, or a consumer group's offsets).
  ``holds`` says what data it holds (records, committed offsets): such an item is deleted only
  with ``allow_delete``; an item that holds nothing (a stream never written to, a group that
  never moved) is deleted without it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from setpiece.deploy.resources import GroupSpec, Resources
from setpiece.engine.contract import Engine, StreamSpec

__all__ = [
    "Change", "ChangeSet", "additions", "describe_start", "describe_stream", "diff", "retention",
]

Action = Literal["add", "modify", "blocked", "unchanged", "delete"]
Kind = Literal["storage", "stream", "group", "schema"]
ACTIONS: tuple[Action, ...] = ("add", "modify", "blocked", "unchanged", "delete")


@dataclass(frozen=True, slots=True)
class Change:
    """One item of the change set. ``name`` is a stream, or ``group@stream`` for a group.

    ``stream`` is the needed stream (add, modify, blocked), ``before`` the engine's (modify,
    delete); ``group`` the group (add, unchanged, delete); ``holds`` the data a deletion
    would lose ("" when none).
    """

    action: Action
    kind: Kind
    name: str
    detail: str = ""
    stream: StreamSpec | None = None
    before: StreamSpec | None = None
    group: GroupSpec | None = None
    holds: str = ""

    @property
    def guarded(self) -> bool:
        """A deletion that loses data: applied only with ``--allow-delete``."""
        return self.action == "delete" and bool(self.holds)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "kind": self.kind, "name": self.name,
                               "detail": self.detail}
        if self.action == "delete":
            out["holds"] = self.holds or None
            out["needs_allow_delete"] = self.guarded
        return out


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Every item, in a stable order: storage, streams, groups."""

    engine: str
    changes: tuple[Change, ...]

    def of(self, *actions: Action) -> list[Change]:
        return [c for c in self.changes if c.action in actions]

    @property
    def guarded(self) -> list[Change]:
        """The deletions that lose data (they need ``--allow-delete``)."""
        return [c for c in self.changes if c.guarded]

    @property
    def pending(self) -> bool:
        """Anything for ``apply`` to do (deletions included)."""
        return any(c.action != "unchanged" for c in self.changes)

    def summary(self) -> str:
        counts = {a: len(self.of(a)) for a in ACTIONS}
        return ", ".join(f"{n} {a}" for a, n in counts.items() if n) or "nothing declared"


def retention(value: float | None) -> str:
    return "forever" if value is None else f"{value:g}s"


def describe_stream(spec: StreamSpec) -> str:
    return f"partitions {spec.partitions}, retention {retention(spec.retention)}"


def describe_start(at_end: bool) -> str:
    return "starts at the end of the stream" if at_end else "starts at the beginning"


def additions(resources: Resources) -> list[Change]:
    """The change set against an engine that holds nothing."""
    changes = [Change("add", "stream", s.name, describe_stream(s), stream=s)
               for s in resources.streams]
    changes += [Change("add", "group", g.name, describe_start(g.start_at_end), group=g)
                for g in resources.groups]
    return changes


async def _stream_holds(engine: Engine, name: str) -> str:
    ends = await engine.end_offsets(name)
    if not any(ends):
        return ""
    held = sum(ends) - sum(await engine.start_offsets(name))
    return f"{held} record(s)" + ("" if held else f" (and {sum(ends)} trimmed)")


async def _group_holds(engine: Engine, group: str, stream: str) -> str:
    committed = await engine.committed(group, stream)
    moved = {p: o for p, o in sorted(committed.items()) if o}
    if not moved:
        return ""
    return "committed offsets " + ", ".join(f"p{p}={o}" for p, o in moved.items())


async def diff(resources: Resources, engine: Engine) -> list[Change]:
    """The change set from what ``engine`` holds to ``resources`` (storage not included)."""
    changes: list[Change] = []
    have = {s.name: s for s in await engine.streams()}
    drift: Callable[[StreamSpec], Awaitable[list[str]]] | None = getattr(engine, "drift", None)
    for spec in resources.streams:
        old = have.get(spec.name)
        if old is None:
            changes.append(Change("add", "stream", spec.name, describe_stream(spec), stream=spec))
            continue
        if old.partitions != spec.partitions:
            changes.append(Change(
                "blocked", "stream", spec.name,
                f"partitions {old.partitions} -> {spec.partitions}: cannot change in place "
                "(keys would move partitions); declare a new stream and migrate",
                stream=spec, before=old,
            ))
            continue
        notes = []
        if old.retention != spec.retention:
            notes.append(f"retention {retention(old.retention)} -> {retention(spec.retention)}")
        if drift is not None:  # an engine's own view of its storage (NATS: JetStream's config)
            notes += await drift(spec)
        if notes:
            changes.append(Change("modify", "stream", spec.name, "; ".join(notes),
                                  stream=spec, before=old))
        else:
            changes.append(Change("unchanged", "stream", spec.name, describe_stream(spec),
                                  stream=spec, before=old))
    wanted = {s.name for s in resources.streams}
    for name, old in sorted(have.items()):
        if name not in wanted:
            holds = await _stream_holds(engine, name)
            changes.append(Change(
                "delete", "stream", name,
                f"no longer declared: drops its records and its groups ({describe_stream(old)})",
                before=old, holds=holds,
            ))
    have_groups = set(await engine.groups())
    for group in resources.groups:
        if (group.group, group.stream) in have_groups:
            changes.append(Change("unchanged", "group", group.name, group=group))
        else:
            changes.append(Change("add", "group", group.name,
                                  describe_start(group.start_at_end), group=group))
    needed = {(g.group, g.stream) for g in resources.groups}
    for name, stream in sorted(have_groups - needed):
        if stream in wanted:  # groups of deleted streams go with their stream
            changes.append(Change(
                "delete", "group", f"{name}@{stream}",
                "no longer declared: forgets its committed offsets",
                group=GroupSpec(name, stream, False),
                holds=await _group_holds(engine, name, stream),
            ))
    return changes
