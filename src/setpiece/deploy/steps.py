"""Applying a change set step by step, and undoing it when a step is refused.

Each :class:`Step` knows how to make its change (``do``) and how to take it back (``undo``).
:func:`run_steps` makes them in order; when one fails (the engine refuses it, or the
connection drops), it undoes that step (a creation may have been made in part) and every step
before it, in reverse order, then raises :class:`~setpiece.errors.DeployError` naming the step
and the refusal. So a failed apply leaves the engine as it found it, and the workers of the
current deployment keep running on the streams and groups they had.

Order of the steps (:func:`steps_for`): streams created or changed, then groups created, then
groups deleted, then streams deleted — the irreversible steps last, after everything that can
fail for a reason of its own. A deleted stream's records cannot come back: undoing its deletion
re-creates it empty. A deleted group is re-created at the offsets it had.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field

from setpiece.deploy.plan import Change
from setpiece.deploy.resources import GroupSpec
from setpiece.engine.contract import Engine, OffsetCommit, StreamSpec, UnitOfWork
from setpiece.errors import ConflictError, DeployError

__all__ = [
    "AddGroup", "DeleteGroup", "DeleteStream", "PutStream", "Step", "run_steps", "steps_for",
    "undo_all",
]


class Step(abc.ABC):
    """One change to an engine, with its undo."""

    @abc.abstractmethod
    def describe(self) -> str:
        """What the step does, for messages (``create stream orders``)."""

    @abc.abstractmethod
    async def do(self, engine: Engine) -> None: ...

    @abc.abstractmethod
    async def undo(self, engine: Engine) -> None:
        """Take the step back; called after :meth:`do` succeeded or failed part way."""


@dataclass(slots=True)
class PutStream(Step):
    """Create a stream, or change an existing one's retention. Undo: delete what was created,
    or put the retention back (on NATS, JetStream's ``max_age`` too)."""

    spec: StreamSpec
    before: StreamSpec | None = None
    _looked: bool = field(default=False, repr=False)

    def describe(self) -> str:
        return f"{'change' if self.before else 'create'} stream {self.spec.name}"

    async def do(self, engine: Engine) -> None:
        # Look again: what the engine holds now decides the undo, not what the plan saw.
        self.before = next((s for s in await engine.streams() if s.name == self.spec.name), None)
        self._looked = True
        await engine.create_stream(self.spec)

    async def undo(self, engine: Engine) -> None:
        if not self._looked:
            return
        if self.before is None:
            await engine.drop_stream(self.spec.name)
        else:
            await engine.create_stream(self.before)


async def create_group(engine: Engine, group: GroupSpec, offsets: dict[int, int] | None) -> bool:
    """Create a group's offsets (at the end or the start of its stream, or at ``offsets``),
    as a starting consumer would; False if it existed already."""
    if (group.group, group.stream) in set(await engine.groups()):
        return False
    ends = await engine.end_offsets(group.stream)

    def at(p: int) -> int:
        if offsets is not None:
            return offsets.get(p, 0)
        return ends[p] if group.start_at_end else 0
    unit = UnitOfWork(offsets=[OffsetCommit(group.group, group.stream, p, 0, at(p))
                               for p in range(len(ends))])
    try:
        await engine.commit(unit)
    except ConflictError:  # a worker created it first
        return False
    return True


@dataclass(slots=True)
class AddGroup(Step):
    """Create a consumer group. Undo: forget it, unless it existed before this step."""

    group: GroupSpec
    _existed: bool | None = field(default=None, repr=False)

    def describe(self) -> str:
        return f"create group {self.group.name}"

    async def do(self, engine: Engine) -> None:
        self._existed = (self.group.group, self.group.stream) in set(await engine.groups())
        if not self._existed:
            await create_group(engine, self.group, None)

    async def undo(self, engine: Engine) -> None:
        if self._existed is False:  # made here, in full or (the commit's answer lost) maybe
            await engine.drop_group(self.group.group, self.group.stream)


@dataclass(slots=True)
class DeleteGroup(Step):
    """Forget a group's committed offsets. Undo: re-create it at the offsets it had."""

    group: GroupSpec
    _saved: dict[int, int] | None = field(default=None, repr=False)

    def describe(self) -> str:
        return f"delete group {self.group.name}"

    async def do(self, engine: Engine) -> None:
        self._saved = await engine.committed(self.group.group, self.group.stream)
        await engine.drop_group(self.group.group, self.group.stream)

    async def undo(self, engine: Engine) -> None:
        if self._saved is None:
            return
        await engine.drop_group(self.group.group, self.group.stream)  # a part-way delete
        await create_group(engine, self.group, self._saved)


@dataclass(slots=True)
class DeleteStream(Step):
    """Delete a stream with its records and groups. Undo: re-create it, empty, with its
    groups at offset 0 of the new stream (the records are gone)."""

    spec: StreamSpec
    _groups: list[tuple[str, str]] = field(default_factory=list, repr=False)
    _tried: bool = field(default=False, repr=False)

    def describe(self) -> str:
        return f"delete stream {self.spec.name}"

    async def do(self, engine: Engine) -> None:
        self._groups = [g for g in await engine.groups() if g[1] == self.spec.name]
        self._tried = True
        await engine.drop_stream(self.spec.name)

    async def undo(self, engine: Engine) -> None:
        if not self._tried:
            return
        await engine.create_stream(self.spec)
        for name, stream in self._groups:
            await create_group(engine, GroupSpec(name, stream, False), None)


def steps_for(changes: Sequence[Change]) -> list[Step]:
    """The steps that carry out ``changes``, in the order described above."""
    puts: list[Step] = []
    adds: list[Step] = []
    group_deletes: list[Step] = []
    stream_deletes: list[Step] = []
    for c in changes:
        if c.action in ("add", "modify") and c.kind == "stream" and c.stream is not None:
            puts.append(PutStream(c.stream))
        elif c.action == "add" and c.kind == "group" and c.group is not None:
            adds.append(AddGroup(c.group))
        elif c.action == "delete":
            if c.kind == "group" and c.group is not None:
                group_deletes.append(DeleteGroup(c.group))
            elif c.kind == "stream" and c.before is not None:
                stream_deletes.append(DeleteStream(c.before))
    return puts + adds + group_deletes + stream_deletes


async def run_steps(engine: Engine, steps: Sequence[Step]) -> None:
    """Make every step, or none: on a failure, undo the steps made (see the module's text)."""
    done: list[Step] = []
    for index, step in enumerate(steps, 1):
        try:
            await step.do(engine)
        except Exception as exc:
            await undo_all(engine, [*done, step], f"step {index} of {len(steps)} "
                       f"({step.describe()}) failed: {type(exc).__name__}: {exc}", exc)
        done.append(step)


async def undo_all(engine: Engine, done: Sequence[Step], why: str, cause: BaseException) -> None:
    """Undo ``done`` in reverse order, then raise DeployError saying ``why`` and what could not
    be undone."""
    stuck: list[str] = []
    for step in reversed(done):
        try:
            await step.undo(engine)
        except Exception as exc:  # keep undoing the others; report this one
            stuck.append(f"{step.describe()} ({type(exc).__name__}: {exc})")
    if stuck:
        raise DeployError(f"{why}; undone except: {'; '.join(stuck)}") from cause
    raise DeployError(f"{why}; every step made was undone") from cause
