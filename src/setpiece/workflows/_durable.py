"""The durable driver: runs the step core (:mod:`setpiece.workflows._steps`) on the engine.

Work on an execution arrives as signals on a stream (see :mod:`setpiece.workflows._store`),
consumed by one consumer group, :data:`GROUP`, keyed by execution id: one execution's signals
are handled one at a time, in order, by one worker. Handling a signal is a delivery like any
other: it loads the execution, steps its runnable threads until each waits (a timer, a task
token, its branches) or finishes, or a step budget runs out, and writes back what changed. All
of it — execution and thread records, history, timers, emitted events, the effects of the
service handlers its Task states called, and the consumer offset — commits in one unit of work
with version checks, so a crash either loses the whole step (it is done again) or none of it.

This module holds :class:`Run`, one delivery's work on one execution; the runner around it is
:mod:`setpiece.workflows._runner`. A timer carries its thread's entry
count; one that no longer matches what the thread waits for (answered meanwhile, aborted,
stale) is ignored.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import msgspec

from setpiece.engine.contract import Timer
from setpiece.errors import TaskFailed
from setpiece.runtime.unit import Attempt
from setpiece.workflows import _branches as branches
from setpiece.workflows import _steps
from setpiece.workflows._context import ExecutionInfo, Scope
from setpiece.workflows._definition import State, StateMachine
from setpiece.workflows._errors import (
    DATA_LIMIT_EXCEEDED,
    HEARTBEAT_TIMEOUT,
    RUNTIME,
    TASK_FAILED,
    TIMEOUT,
)
from setpiece.workflows._interpreter import PAYLOAD_LIMIT, history_limit_cause
from setpiece.workflows._limits import DEFAULT_LIMITS
from setpiece.workflows._store import (
    NS,
    RUNNING,
    ExecRecord,
    ThreadRecord,
    TokenRecord,
    decode_exec,
    decode_thread,
    decode_token,
    encode,
    exec_key,
    history_key,
    signal,
    status_key,
    thread_key,
    timer_id,
    token_key,
)
from setpiece.workflows._tasks import TaskCalls
from setpiece.workflows._tokens import new_token, timer_payload

if TYPE_CHECKING:
    from setpiece.workflows._runner import WorkflowRunner

__all__ = ["HistoryFull", "Run"]

log = logging.getLogger("setpiece.workflows")

_RUNNABLE = frozenset({"enter", "retry", "resume"})


def _dt_of(t: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(t, _dt.UTC)


class HistoryFull(Exception):
    """The execution's history is at its limit (WorkflowLimits.max_history_events)."""


class Run:
    """One delivery's work on one execution."""

    def __init__(self, runner: WorkflowRunner, attempt: Attempt, execution: str) -> None:
        self.r = runner
        self.attempt = attempt
        self.id = execution
        self.x: ExecRecord
        self.root: StateMachine
        self.info: ExecutionInfo
        self.threads: dict[int, ThreadRecord] = {}
        self.persisted: set[int] = set()
        self.dirty: set[int] = set()
        self.deleted: set[int] = set()
        self.scopes: dict[int, Scope] = {}
        self.events: list[tuple[str, float, dict[str, Any]]] = []
        self.first_event = 0
        self.ready: deque[int] = deque()
        self.now = runner.rt.clock.time()  # the clock, read once per state entry (see tick)
        self._ms = -1
        self._now_dt = _dt_of(self.now)
        self.limits = DEFAULT_LIMITS
        self.deadline = self.now + self.limits.step_budget
        self.yielded = self.now  # when this run last gave the event loop to other work
        self.changed = False

    # -- loading and saving -----------------------------------------------------------------

    async def load(self) -> bool:
        raw = await self.attempt.get((NS, exec_key(self.id)))
        if raw is None:
            return False
        self.x = decode_exec(raw)
        if self.x.status != RUNNING:
            return False
        self.first_event = self.x.next_event
        self.limits = self.r.limits(self.x.workflow)
        self.deadline = self.now + self.limits.step_budget
        self.root = await self.r.machine(self.x.workflow, self.x.version)
        from setpiece.workflows._context import format_time

        self.info = ExecutionInfo(
            execution_arn=self.id,
            name=self.x.name,
            input=self.x.input,
            start_time=format_time(_dt_of(self.x.start)),
            state_machine_arn=f"{self.x.workflow}@{self.x.version}",
            state_machine_name=self.x.workflow,
        )
        if self.x.ready:
            self.ready.extend(self.x.ready)
            self.x.ready = []
            self.changed = True
        return True

    async def thread(self, tid: int) -> ThreadRecord | None:
        th = self.threads.get(tid)
        if th is not None or tid in self.deleted:
            return th
        raw = await self.attempt.get((NS, thread_key(self.id, tid)))
        if raw is None:
            return None
        th = self.threads[tid] = decode_thread(raw)
        self.persisted.add(tid)
        return th

    def touch(self, tid: int) -> None:
        self.dirty.add(tid)
        self.changed = True

    def delete(self, tid: int) -> None:
        self.threads.pop(tid, None)
        self.scopes.pop(tid, None)
        self.dirty.discard(tid)
        self.deleted.add(tid)
        self.changed = True

    def save(self) -> None:
        if not self.changed and not self.events:
            return
        put = self.attempt.put
        for tid in self.deleted:
            if tid in self.persisted:
                put((NS, thread_key(self.id, tid)), None)
        for tid in self.dirty:
            if tid in self.threads:
                put((NS, thread_key(self.id, tid)), encode(self.threads[tid]))
        if self.events:
            put((NS, history_key(self.id, self.first_event)), encode(self.events))
        put((NS, exec_key(self.id)), encode(self.x))

    # -- history, timers, signals -----------------------------------------------------------

    def event(self, type_: str, details: dict[str, Any]) -> int:
        if self.x.next_event >= self.limits.max_history_events and not type_.startswith(
            "Execution"
        ):
            raise HistoryFull  # the delivery's work is dropped and the execution fails
        self.events.append((type_, self.now, details))
        n = self.x.next_event
        self.x.next_event = n + 1
        return n

    def arm(self, tid: int, th: ThreadRecord, what: str, due: float) -> None:
        self.attempt.timers.append(
            Timer(NS, timer_id(self.id, tid, what), due,
                  timer_payload(self.id, tid, th.n, what, due))
        )

    def disarm(self, tid: int, *what: str) -> None:
        self.attempt.cancel_timers.extend((NS, timer_id(self.id, tid, w)) for w in what)

    async def scope(self, tid: int, th: ThreadRecord) -> Scope:
        found = self.scopes.get(tid)
        if found is None:
            parent = None
            if th.parent is not None:
                pth = await self.thread(th.parent)
                if pth is not None:
                    parent = await self.scope(th.parent, pth)
            found = self.scopes[tid] = Scope(th.vars, parent)
        return found

    # -- signals ----------------------------------------------------------------------------

    async def apply(self, sig: dict[str, Any]) -> None:
        kind = sig["k"]
        if kind == "timer":
            await self.on_timer(sig)
        elif kind == "token":
            await self.on_token(sig)
        elif kind == "stop":
            await self.finish("ABORTED", None, sig.get("error"), sig.get("cause"))

    async def on_timer(self, sig: dict[str, Any]) -> None:
        what = sig["w"]
        if what == "execution":
            await self.finish("TIMED_OUT", None, TIMEOUT, "The execution timed out.")
            return
        tid = sig["th"]
        th = await self.thread(tid)
        if th is None or th.n != sig["n"] or th.phase != "wait":
            return  # stale: the thread moved on
        if what == "wait" and th.wait == "sleep":
            th.phase, th.outcome = "resume", ["woke"]
        elif what == "retry" and th.wait == "retry":
            th.phase = "retry"
        elif what in ("timeout", "heartbeat") and th.wait == "token" and th.token:
            tkey = (NS, token_key(th.token))
            raw = await self.attempt.get(tkey)
            if raw is None:
                return
            rec = decode_token(raw)
            if rec.state != "open":
                return  # answered: the answer's signal is on its way
            if what == "heartbeat" and (rec.heartbeat_due or 0) > sig["due"]:
                return  # a heartbeat came after this timer was set
            rec.state = "timed_out"
            self.attempt.put(tkey, encode(rec))
            error = TIMEOUT if what == "timeout" else HEARTBEAT_TIMEOUT
            self.event("TaskTimedOut", {"name": th.state, "error": error})
            self.disarm(tid, "timeout", "heartbeat")
            th.phase, th.outcome = "resume", ["error", error, ""]
        else:
            return
        self.touch(tid)
        self.ready.append(tid)

    async def on_token(self, sig: dict[str, Any]) -> None:
        tid = sig["th"]
        th = await self.thread(tid)
        if th is None or th.phase != "wait" or th.wait != "token" or th.token != sig["tk"]:
            return
        name = th.state
        if sig["ok"]:
            self.event("TaskSucceeded", {"name": name, "output": sig["output"]})
            th.phase, th.outcome = "resume", ["ok", sig["output"]]
        else:
            self.event("TaskFailed", {"name": name, "error": sig["error"], "cause": sig["cause"]})
            th.phase, th.outcome = "resume", ["error", sig["error"], sig["cause"]]
        self.disarm(tid, "timeout", "heartbeat")
        self.touch(tid)
        self.ready.append(tid)

    # -- stepping ---------------------------------------------------------------------------

    def tick(self) -> float:
        """Read the clock (history times, entered times, the step budget)."""
        self.now = self.r.rt.clock.time()
        return self.now

    def now_dt(self) -> _dt.datetime:
        """The clock as a datetime, built once per millisecond."""
        ms = int(self.now * 1000)
        if ms != self._ms:
            self._ms, self._now_dt = ms, _dt_of(self.now)
        return self._now_dt

    def over_budget(self) -> bool:
        return self.tick() > self.deadline

    async def drive(self) -> None:
        while self.ready and self.x.status == RUNNING:
            if self.over_budget():
                self.x.ready = list(dict.fromkeys(self.ready))
                self.attempt.emit(*signal({"k": "run", "x": self.id}))
                self.changed = True
                return
            tid = self.ready.popleft()
            th = await self.thread(tid)
            if th is not None and th.phase in _RUNNABLE:
                await self.advance(tid, th)

    def step_input(self, th: ThreadRecord, st: State, scope: Scope) -> _steps.StepInput:
        now = self.now_dt()
        entered = now if th.entered == self.now else _dt_of(th.entered)
        return _steps.StepInput(
            self.info, st, th.input, scope, entered, th.entered_event, now,
            th.retry_count, tuple(th.attempts), th.token, limits=self.limits,
        )

    def bump_retry(self, th: ThreadRecord, st: State, retrier: int) -> None:
        attempts = list(th.attempts) + [0] * (len(st.retriers) - len(th.attempts))
        attempts[retrier] += 1
        th.attempts = attempts
        th.retry_count += 1
        th.n += 1
        th.token = new_token() if st.uses_task_token else None

    async def advance(self, tid: int, th: ThreadRecord) -> None:
        """Step one thread until it waits, finishes, or the budget runs out."""
        self.touch(tid)
        machine = self.r.machine_at(self.root, self.x.workflow, self.x.version, th.path)
        scope = await self.scope(tid, th)
        states = machine.states
        Transition, Finish = _steps.Transition, _steps.Finish
        while True:
            st = states[th.state]
            phase = th.phase
            if phase in ("enter", "retry"):
                if self.now - self.yielded >= self.limits.time_slice:
                    await asyncio.sleep(0)  # share the event loop: one execution never hogs it
                    self.yielded = self.tick()
                if self.x.next_event >= self.limits.max_history_events:
                    await self.finish("FAILED", None, RUNTIME,
                                      history_limit_cause(self.limits.max_history_events))
                    return
            if phase == "enter":
                if self.over_budget():
                    self.ready.appendleft(tid)
                    return
                th.n += 1
                th.entered = self.now  # over_budget() just read the clock
                th.retry_count, th.attempts = 0, []
                th.entered_event = self.event(st.entered_event, {"name": st.name,
                                                                 "input": th.input})
                th.token = new_token() if st.uses_task_token else None
                step = self.step_input(th, st, scope)
                action = _steps.enter(step)
            elif phase == "retry":
                self.tick()
                self.bump_retry(th, st, th.retrier)
                step = self.step_input(th, st, scope)
                action = _steps.enter(step)
            elif phase == "resume":
                self.tick()
                step = self.step_input(th, st, scope)
                action = _steps.resume(step, await self.outcome(th, st))
            else:
                return
            th.phase, th.outcome, th.wait = "run", None, None
            while True:
                if isinstance(action, Transition):
                    if action.assign:
                        scope.assign(dict(action.assign))
                    self.event(st.exited_event, {"name": st.name, "output": action.output})
                    th.state, th.input, th.phase = action.next, action.output, "enter"
                    break
                if isinstance(action, Finish):
                    if action.assign:
                        scope.assign(dict(action.assign))
                    self.event(st.exited_event, {"name": st.name, "output": action.output})
                    await branches.thread_done(
                        self, tid, th, _steps.BranchOutcome(True, action.output)
                    )
                    return
                if isinstance(action, _steps.Failure):
                    await branches.thread_done(self,
                        tid, th, _steps.BranchOutcome(False, None, action.error, action.cause)
                    )
                    return
                if isinstance(action, _steps.InvokeTask):
                    outcome = await self.invoke(tid, th, st, action)
                    if outcome is None:
                        return  # waits for its task token
                    self.tick()
                    step.now = self.now_dt()
                    action = _steps.resume(step, outcome)
                    continue
                if isinstance(action, _steps.Sleep):
                    due = action.until.timestamp()
                    if due <= self.tick():
                        step.now = self.now_dt()
                        action = _steps.resume(step, _steps.Woke())
                        continue
                    th.phase, th.wait = "wait", "sleep"
                    self.arm(tid, th, "wait", due)
                    return
                if isinstance(action, _steps.RunBranches):
                    await branches.start(self, tid, th, st, action)
                    return
                assert isinstance(action, _steps.Retry)
                if action.delay <= 0:
                    if self.x.next_event >= self.limits.max_history_events:
                        await self.finish("FAILED", None, RUNTIME,
                                          history_limit_cause(self.limits.max_history_events))
                        return
                    if self.tick() - self.yielded >= self.limits.time_slice:
                        await asyncio.sleep(0)
                        self.yielded = self.tick()
                    self.bump_retry(th, st, action.retrier)
                    step = self.step_input(th, st, scope)
                    action = _steps.enter(step)
                    continue
                th.phase, th.wait, th.retrier = "wait", "retry", action.retrier
                self.arm(tid, th, "retry", self.tick() + action.delay)
                return

    async def outcome(self, th: ThreadRecord, st: State) -> _steps.Outcome:
        o = th.outcome or ["woke"]
        kind = o[0]
        if kind == "ok":
            return _steps.TaskResult(o[1])
        if kind == "error":
            return _steps.TaskError(o[1], o[2])
        if kind == "branches":
            return await branches.gather(self, th, st)
        return _steps.Woke()

    # -- the end ----------------------------------------------------------------------------

    async def finish_root(self, result: _steps.BranchOutcome) -> None:
        if not result.ok:
            await self.finish("FAILED", None, result.error, result.cause)
            return
        size = len(encode(result.output))
        if size > PAYLOAD_LIMIT:
            await self.finish(
                "FAILED", None, DATA_LIMIT_EXCEEDED,
                "The state/task returned a result with a size exceeding the maximum number of "
                f"bytes service limit ({size} > {PAYLOAD_LIMIT}).",
            )
            return
        await self.finish("SUCCEEDED", result.output, None, None)

    async def finish(
        self, status: str, output: Any, error: str | None, cause: str | None
    ) -> None:
        x = self.x
        if x.status != RUNNING:
            return
        if status == "SUCCEEDED":
            self.event("ExecutionSucceeded", {"output": output})
        elif status == "TIMED_OUT":
            self.event("ExecutionTimedOut", {"error": error, "cause": cause})
        elif status == "ABORTED":
            self.event("ExecutionAborted", {"error": error, "cause": cause})
        else:
            self.event("ExecutionFailed", {"error": error, "cause": cause})
        x.status, x.output, x.error, x.cause = status, output, error, cause
        x.stop, x.ready = self.tick(), []
        self.changed = True
        self.attempt.put((NS, status_key(RUNNING, self.id)), None)
        self.attempt.put((NS, status_key(status, self.id)), b"1")
        self.attempt.cancel_timers.append((NS, timer_id(self.id, None, "timeout")))
        # Every thread goes; tokens still awaited are closed.
        stored = await self.r.engine.kv_scan(NS, f"th:{self.id}:", 10_000_000)
        tids = {int(k.rsplit(":", 1)[1]) for k, _ in stored} | set(self.threads)
        for tid in sorted(tids - self.deleted):
            th = await self.thread(tid)
            if th is not None:
                await branches.abort(self, tid, th)

    # -- tasks ------------------------------------------------------------------------------

    def failed(self, st: State, error: str | None, cause: str | None) -> _steps.TaskError:
        self.event("TaskFailed", {"name": st.name, "error": error, "cause": cause})
        return _steps.TaskError(error, cause)

    async def invoke(
        self, tid: int, th: ThreadRecord, st: State, action: _steps.InvokeTask
    ) -> _steps.Outcome | None:
        """Run a task; None when it now waits for its task token."""
        self.event("TaskScheduled", {"name": st.name, "resource": action.resource,
                                     "parameters": action.input})
        self.event("TaskStarted", {"name": st.name})
        res = self.r.resource(action.resource)
        if res is None:
            return self.failed(st, TASK_FAILED, f"unknown resource {action.resource!r}")
        try:
            payload = msgspec.json.decode(encode(action.input))
        except (TypeError, msgspec.EncodeError) as e:  # pragma: no cover - inputs are JSON
            return self.failed(st, TASK_FAILED, f"task input is not JSON: {e}")
        timeout = action.timeout_seconds
        if res.wait and th.token:
            record = TokenRecord(self.id, tid, th.n, heartbeat=action.heartbeat_seconds)
            self.attempt.put((NS, token_key(th.token)), encode(record))
        calls = TaskCalls(self.r, self.attempt, self.x.workflow, self.x.correlation or self.id,
                          self.x.tenant)
        try:
            if res.kind == "service":
                call = calls.service(st.name, res, payload, th.retry_count + 1)
                result = await (asyncio.wait_for(call, timeout) if timeout and not res.wait
                                else call)
            elif res.kind == "http":
                result = await calls.http(res, payload, None if res.wait else timeout)
            else:
                result = calls.put_events(st.name, res, payload)
        except TaskFailed as e:
            return self.failed(st, e.error, e.cause)
        except TimeoutError:
            self.event("TaskTimedOut", {"name": st.name, "error": TIMEOUT})
            return _steps.TaskError(TIMEOUT, "")
        except Exception as e:
            return self.failed(st, TASK_FAILED, str(e) or type(e).__name__)
        if res.wait:
            self.event("TaskSubmitted", {"name": st.name, "output": result})
            th.phase, th.wait = "wait", "token"
            now = self.tick()
            if timeout:
                self.arm(tid, th, "timeout", now + timeout)
            if action.heartbeat_seconds:
                self.arm(tid, th, "heartbeat", now + action.heartbeat_seconds)
            return None
        try:
            encoded = encode(result)
        except (TypeError, msgspec.EncodeError) as e:
            return self.failed(st, TASK_FAILED, f"the task returned a value that is not JSON: {e}")
        if len(encoded) > PAYLOAD_LIMIT:
            return self.failed(
                st, DATA_LIMIT_EXCEEDED,
                f"The state/task '{st.name}' returned a result with a size exceeding the maximum "
                f"number of bytes service limit ({len(encoded)} > {PAYLOAD_LIMIT}).",
            )
        result = msgspec.json.decode(encoded)
        self.event("TaskSucceeded", {"name": st.name, "output": result})
        return _steps.TaskResult(result)
