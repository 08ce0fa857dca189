"""The durable driver's runner: the consumer of the workflows' signal stream, timer firing,
the look-ups every step needs, and rule targets that start executions.

Work on an execution arrives as signals on a stream (see :mod:`setpiece.workflows._store`),
consumed by one consumer group, :data:`GROUP`, keyed by execution id: one execution's signals
are handled one at a time, in order, by one worker. Each delivery is one :class:`Run`
(:mod:`setpiece.workflows._durable`) on its execution. Timers are fired by
:meth:`WorkflowRunner.fire_timers`, called by the runtime's one timer dispatcher: firing removes
the timer by compare-and-set and appends its signal in one unit of work, so a timer fires once
even with several workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from setpiece.engine.contract import Timer, UnitOfWork
from setpiece.errors import ConflictError, EngineError
from setpiece.event import Event
from setpiece.policy import RetryPolicy
from setpiece.runtime.actions import transformed
from setpiece.runtime.consumer import Consumer
from setpiece.runtime.reader import StreamReader
from setpiece.runtime.unit import Attempt
from setpiece.workflows._definition import StateMachine, load
from setpiece.workflows._durable import HistoryFull, Run
from setpiece.workflows._errors import (
    RUNTIME,
)
from setpiece.workflows._interpreter import history_limit_cause, step_crash_cause
from setpiece.workflows._limits import DEFAULT_LIMITS, WorkflowLimits
from setpiece.workflows._store import (
    NS,
    SIGNAL_SPEC,
    SIGNALS,
    definition_key,
    exec_key,
    signal,
    start_unit,
)
from setpiece.workflows._tokens import DeliveryTokens
from setpiece.workflows.workflow import Resource, parse_resource

if TYPE_CHECKING:
    from setpiece.bus import Rule, WorkflowTarget
    from setpiece.runtime.runtime import Runtime
    from setpiece.service import Handler

__all__ = ["GROUP", "WorkflowRunner"]

log = logging.getLogger("setpiece.workflows")

GROUP = "setpiece.workflows"
_SIGNAL_RETRY = RetryPolicy(max_attempts=5, initial_delay=0.05, max_delay=1.0)


class WorkflowRunner:
    """Runs a stack's durable workflows inside a :class:`~setpiece.Runtime`."""

    def __init__(self, runtime: Runtime, on_commit: Callable[[], None]) -> None:
        self.rt = runtime
        self.engine = runtime.engine
        self.stack = runtime.stack
        self._on_commit = on_commit
        self._machines: dict[tuple[str, str], StateMachine] = {
            (wf.name, wf.version): wf.machine for wf in self.stack.workflows.values()
        }
        self._paths: dict[tuple[str, str, tuple[tuple[str, int], ...]], StateMachine] = {}
        self._resources: dict[str, Resource | None] = {}
        self._handlers: dict[tuple[str, str], Handler] = {
            (svc.name, h.name): h for svc in self.stack.services.values() for h in svc.handlers
        }
        self._limits = {wf.name: wf.limits for wf in self.stack.workflows.values()}
        self._stopping = False
        #: set (and replaced) whenever a batch of workflow steps commits
        self.changed = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------

    async def prepare(self) -> Consumer:
        """Create the signal stream; returns the consumer the runtime runs."""
        await self.engine.create_stream(SIGNAL_SPEC)
        return Consumer(
            engine=self.engine,
            clock=self.rt.clock,
            config=self.rt.config,
            group=GROUP,
            stream=SIGNALS,
            label="workflows",
            action=self._action,
            retry=_SIGNAL_RETRY,
            concurrency=self.rt.config.concurrency,
            reader=StreamReader(self.engine, SIGNALS),
            rule=GROUP,
            on_commit=self._committed,
        )

    def _committed(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()
        self._on_commit()  # the runtime's: drain, and its timer dispatcher (timers may be set)

    def stop(self) -> None:
        self._stopping = True

    async def fire_timers(self, timers: list[Timer]) -> None:
        """Fire due workflow timers (the runtime's timer dispatcher calls it): each one's removal
        and its signal commit together."""
        fired = 0
        for timer in timers:
            if self._stopping:
                break
            data = msgspec.json.decode(timer.payload)
            unit = UnitOfWork(fired=[timer], appends=[signal(data)])
            with contextlib.suppress(ConflictError):  # another worker fired it
                await self.engine.commit(unit)
                fired += 1
        if fired:
            self._on_commit()

    # -- look-ups ---------------------------------------------------------------------------

    async def machine(self, workflow: str, version: str) -> StateMachine:
        found = self._machines.get((workflow, version))
        if found is None:
            key = definition_key(workflow, version)
            raw = (await self.engine.kv_get(NS, [key])).get(key)
            if raw is None:
                raise EngineError(f"workflow {workflow!r} version {version!r}: definition missing")
            found = self._machines[(workflow, version)] = load(raw[0])
        return found

    def machine_at(self, root: StateMachine, workflow: str, version: str,
                   path: list[tuple[str, int]]) -> StateMachine:
        if not path:
            return root
        key = (workflow, version, tuple(path))
        found = self._paths.get(key)
        if found is None:
            machine = root
            for state, branch in path:
                st = machine.states[state]
                sub = st.processor if branch < 0 else st.branches[branch]
                assert sub is not None
                machine = sub
            found = self._paths[key] = machine
        return found

    def resource(self, text: str) -> Resource | None:
        if text not in self._resources:
            self._resources[text] = parse_resource(text)
        return self._resources[text]

    def handler(self, service: str, name: str) -> Handler | None:
        return self._handlers.get((service, name))

    def limits(self, workflow: str) -> WorkflowLimits:
        """The limits of a workflow's executions (those of the stack's declaration)."""
        return self._limits.get(workflow, DEFAULT_LIMITS)

    # -- the signal consumer ----------------------------------------------------------------

    async def _action(self, event: Event, attempt: Attempt, number: int) -> None:
        data = event.data
        run = Run(self, attempt, data["x"])
        try:
            if await run.load():
                await run.apply(data)
                await run.drive()
                run.save()
        except (EngineError, asyncio.CancelledError):
            raise  # the engine's trouble, or a stop: the signal is delivered again
        except HistoryFull:
            limit = run.limits.max_history_events
            await self._fail(attempt, data["x"], history_limit_cause(limit))
        except Exception as e:  # what no state handles (a bug, MemoryError): fail, never hang
            log.exception("workflow execution %s: a step failed unexpectedly", data["x"])
            await self._fail(attempt, data["x"], step_crash_cause(e))

    async def _fail(self, attempt: Attempt, execution: str, cause: str) -> None:
        """Fail an execution with ``States.Runtime``; nothing the delivery did is kept."""
        attempt.writes.clear()
        attempt.appends.clear()
        attempt.timers.clear()
        attempt.cancel_timers.clear()
        run = Run(self, attempt, execution)
        if await run.load():
            await run.finish("FAILED", None, RUNTIME, cause)
            run.save()

    # -- rule targets -----------------------------------------------------------------------

    def target_action(self, rule: Rule, target: WorkflowTarget) -> Any:
        """The action of a rule whose target is a workflow: start one execution per event."""
        workflow = self.stack.workflows[target.name]
        transform, rule_name = rule.transform, rule.name

        async def action(event: Event, attempt: Attempt, number: int) -> None:
            if transform is not None:
                input = transformed(transform, event, rule_name).data
            else:
                input = event.to_dict()
            name = _name_for(event.id)
            plan = start_unit(workflow, name, input, now=self.rt.clock.time(),
                              correlation=event.correlationid or event.id, tenant=event.tenant)
            if await attempt.get((NS, exec_key(plan.id))) is not None:
                return  # started already (a replay, or the same id again)
            for w in plan.writes:
                attempt.put((w.namespace, w.key), w.value)
            for stream, key, value in plan.appends:
                attempt.emit(stream, key, value)
            attempt.timers.extend(plan.timers)

        return action

    def tokens(self, attempt: Attempt) -> DeliveryTokens:
        return DeliveryTokens(attempt, self.engine, self.rt.clock)


def _name_for(event_id: str) -> str:
    from setpiece.workflows._store import _NAME

    if _NAME.fullmatch(event_id):
        return event_id
    import hashlib

    return hashlib.sha256(event_id.encode()).hexdigest()[:32]
