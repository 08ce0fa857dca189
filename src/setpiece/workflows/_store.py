"""How durable executions are kept on the engine: records, keys, signals, and reading them back.

Everything lives in one key-value namespace, :data:`NS`, with these keys::

    x:<execution id>              the execution: status, input/output, counters, ready threads
    th:<execution id>:<thread>    a running (sub-)machine: the root is thread 0; each Parallel
                                  branch and Map iteration is a thread of its own
    h:<execution id>:<event id>   a chunk of history events, those one step appended
    d:<workflow>@<version>        the definition an execution started with (never changes)
    s:<STATUS>:<execution id>     the index that lists executions by status
    t:<task token>                a task token: which thread waits for it, and whether it still does

An execution id is ``<workflow>:<name>``. Work on an execution is driven by *signals* on the
stream :data:`SIGNALS` (keyed by execution id, so one execution's signals stay in order): start,
run (more work after a step budget ran out), a fired timer, a task token's answer, a stop.
Durable timers (Wait states, retry intervals, task timeouts and heartbeats, the execution's
``TimeoutSeconds``) live in the timer namespace :data:`NS`; firing one appends its signal in the
same unit of work, by compare-and-set.
"""

from __future__ import annotations

import datetime as _dt
import re
import time
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from setpiece.engine.contract import Engine, KVRead, KVWrite, StreamSpec, Timer, UnitOfWork
from setpiece.errors import ConflictError, ExecutionAlreadyExists, ExecutionDoesNotExist
from setpiece.event import Event, encode_event

if TYPE_CHECKING:
    from setpiece.workflows._interpreter import HistoryEvent
    from setpiece.workflows.workflow import Workflow

__all__ = [
    "NS",
    "SIGNALS",
    "STATUSES",
    "ExecutionDescription",
    "describe_execution",
    "execution_history",
    "list_executions",
    "start_unit",
]

NS = "setpiece.workflows"  # key-value namespace and timer namespace
SIGNALS = "setpiece.workflows"  # the stream of signals
SIGNAL_PARTITIONS = 8
SIGNAL_SPEC = StreamSpec(SIGNALS, SIGNAL_PARTITIONS, None)
RUNNING = "RUNNING"
STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")

encode = msgspec.json.Encoder().encode


# ------------------------------------------------------------------------------------ records


class ExecRecord(msgspec.Struct, omit_defaults=True):
    id: str
    workflow: str
    version: str
    name: str
    start: float
    status: str = RUNNING
    input: Any = None
    output: Any = None
    error: str | None = None
    cause: str | None = None
    stop: float | None = None
    correlation: str | None = None  # carried by the events the execution emits
    tenant: str | None = None  # of the event that started it: its tasks use this tenant's store
    next_event: int = 1  # the id the next history event gets
    next_thread: int = 1  # thread 0 is the root
    ready: list[int] = []  # threads to step when the pending "run" signal comes


class Branches(msgspec.Struct, omit_defaults=True):
    """A thread's running Parallel or Map state: children ``first .. first + total - 1``."""

    kind: str
    first: int
    total: int
    started: int
    max_concurrency: int = 0
    done: int = 0
    failed: int = 0
    tolerated_count: int | None = None
    tolerated_pct: float | None = None


class ThreadRecord(msgspec.Struct, omit_defaults=True):
    """One running (sub-)machine: where it is, and what it waits for.

    ``phase``: ``enter`` (enter ``state`` next), ``retry`` (enter it again after a retry
    interval), ``resume`` (resume it with ``outcome``), ``wait`` (for ``wait``: ``sleep``,
    ``retry``, ``token`` or ``branches``), ``queued`` (a Map iteration held back by
    MaxConcurrency), ``done`` (finished; ``ok``/``output``/``error``/``cause`` for the parent).
    ``n`` counts state entries: timers carry it, so a stale timer is recognised and ignored.
    """

    path: list[tuple[str, int]]  # (state, branch index or -1 for a Map) from the root machine
    state: str
    input: Any = None
    vars: dict[str, Any] = {}
    parent: int | None = None
    index: int | None = None
    phase: str = "enter"
    n: int = 0
    entered: float = 0.0
    entered_event: int = 0
    retry_count: int = 0
    attempts: list[int] = []
    token: str | None = None
    wait: str | None = None
    retrier: int = 0
    outcome: Any = None  # ["ok", result] | ["error", error, cause] | ["woke"] | ["branches"]
    branches: Branches | None = None
    ok: bool = True
    output: Any = None
    error: str | None = None
    cause: str | None = None


class TokenRecord(msgspec.Struct, omit_defaults=True):
    execution: str
    thread: int
    n: int
    state: str = "open"  # open | answered | timed_out | closed
    heartbeat: float | None = None  # HeartbeatSeconds
    heartbeat_due: float | None = None


_exec = msgspec.json.Decoder(ExecRecord).decode
_thread = msgspec.json.Decoder(ThreadRecord).decode
_token = msgspec.json.Decoder(TokenRecord).decode
decode_exec, decode_thread, decode_token = _exec, _thread, _token
_history = msgspec.json.Decoder(list[tuple[str, float, dict[str, Any]]]).decode


def exec_key(execution: str) -> str:
    return f"x:{execution}"


def thread_key(execution: str, thread: int) -> str:
    return f"th:{execution}:{thread:09d}"


def history_key(execution: str, first: int) -> str:
    return f"h:{execution}:{first:09d}"


def definition_key(workflow: str, version: str) -> str:
    return f"d:{workflow}@{version}"


def status_key(status: str, execution: str) -> str:
    return f"s:{status}:{execution}"


def token_key(token: str) -> str:
    return f"t:{token}"


def timer_id(execution: str, thread: int | None, what: str) -> str:
    return f"{execution}/{what}" if thread is None else f"{execution}/{thread}/{what}"


def signal(data: Mapping[str, Any]) -> tuple[str, str, bytes]:
    """The stream record of a signal (``data["x"]`` is the execution id)."""
    event = Event(type="setpiece.workflow", source="setpiece", data=data,
                  partitionkey=data["x"])
    return (SIGNALS, data["x"], encode_event(event))


# ----------------------------------------------------------------------------------- starting


def execution_id(workflow: str, name: str) -> str:
    return f"{workflow}:{name}"


def check_execution_name(name: str) -> None:
    from setpiece.errors import ConfigError

    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"execution name {name!r}: use 1-80 letters, digits, '_', '.' or '-' (starting with a "
            "letter or digit)"
        )


@dataclass(frozen=True, slots=True)
class StartPlan:
    """Everything that starts an execution, for a unit of work or a handler's attempt."""

    id: str
    writes: list[KVWrite]
    appends: list[tuple[str, str | None, bytes]]
    timers: list[Timer]


def start_unit(
    workflow: Workflow,
    name: str,
    input: Any,
    *,
    now: float | None = None,
    correlation: str | None = None,
    tenant: str | None = None,
    with_definition: bool = True,
) -> StartPlan:
    """The records that start an execution of ``workflow`` named ``name`` (for ``tenant``:
    its service tasks then read and write that tenant's stores, as event handlers do)."""
    now = time.time() if now is None else now
    ex_id = execution_id(workflow.name, name)
    record = ExecRecord(
        id=ex_id, workflow=workflow.name, version=workflow.version, name=name, start=now,
        input=input, correlation=correlation, tenant=tenant, next_event=2, ready=[0],
    )
    root = ThreadRecord(path=[], state=workflow.machine.start_at, input=input)
    writes = [
        KVWrite(NS, exec_key(ex_id), encode(record)),
        KVWrite(NS, thread_key(ex_id, 0), encode(root)),
        KVWrite(NS, history_key(ex_id, 1), encode([("ExecutionStarted", now, {"input": input})])),
        KVWrite(NS, status_key(RUNNING, ex_id), b"1"),
    ]
    if with_definition:
        writes.append(
            KVWrite(NS, definition_key(workflow.name, workflow.version), workflow.source)
        )
    timers = []
    if workflow.machine.timeout_seconds:
        timers.append(
            Timer(NS, timer_id(ex_id, None, "timeout"), now + workflow.machine.timeout_seconds,
                  encode({"k": "timer", "x": ex_id, "w": "execution"}))
        )
    return StartPlan(ex_id, writes, [signal({"k": "start", "x": ex_id})], timers)


_ensured: weakref.WeakSet[Engine] = weakref.WeakSet()


async def ensure_signals(engine: Engine) -> None:
    """Create the signal stream (once per engine object)."""
    if engine not in _ensured:
        await engine.create_stream(SIGNAL_SPEC)
        _ensured.add(engine)


def new_name() -> str:
    return str(uuid.uuid4())


async def start_execution(
    engine: Engine,
    workflow: Workflow,
    input: Any = None,
    *,
    name: str | None = None,
    tenant: str | None = None,
    now: float | None = None,
) -> str:
    """Start an execution of ``workflow`` on ``engine``; returns its id (``<workflow>:<name>``).

    Idempotent on ``name``: the same name with the same input returns the existing execution's
    id; with another input it raises :class:`~setpiece.errors.ExecutionAlreadyExists`. The
    execution runs in whichever runtime of the stack runs workflows on that engine. With
    ``tenant``, its service tasks use that tenant's stores.
    """
    if input is None:
        input = {}
    name = new_name() if name is None else name
    check_execution_name(name)
    if tenant is not None:
        from setpiece.event import Event

        Event(type="setpiece.workflow.start", source="setpiece", tenant=tenant)  # EventError
    try:
        input = msgspec.json.decode(encode(input))
    except (TypeError, msgspec.EncodeError) as exc:
        from setpiece.errors import WorkflowError

        raise WorkflowError(f"start_execution: input is not JSON ({exc})") from None
    await ensure_signals(engine)
    ex_id = execution_id(workflow.name, name)
    dkey = definition_key(workflow.name, workflow.version)
    while True:
        found = await engine.kv_get(NS, [exec_key(ex_id), dkey])
        if exec_key(ex_id) in found:
            existing = _exec(found[exec_key(ex_id)][0])
            if existing.input != input:
                raise ExecutionAlreadyExists(
                    f"execution {ex_id!r} exists already, started with another input"
                )
            return ex_id
        plan = start_unit(workflow, name, input, tenant=tenant, now=now,
                          with_definition=dkey not in found)
        unit = UnitOfWork(reads=[KVRead(NS, exec_key(ex_id), 0)], writes=plan.writes,
                          appends=plan.appends, timers=plan.timers)
        try:
            await engine.commit(unit)
        except ConflictError:
            continue  # started concurrently: answer as for an existing one
        return ex_id


# ------------------------------------------------------------------------------------ reading


def _time(t: float | None) -> _dt.datetime | None:
    return None if t is None else _dt.datetime.fromtimestamp(t, _dt.UTC)


@dataclass(frozen=True, slots=True)
class ExecutionDescription:
    """A durable execution as stored (``Runtime.describe_execution``, ``Runtime.executions``).

    ``status`` is RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED. ``waiting`` (filled by
    ``describe_execution`` only) says what a running execution waits for, one line per waiting
    state, e.g. ``"Approve (Task): task token, since 2026-01-02T03:04:05.000Z"``.
    """

    id: str
    workflow: str
    version: str
    name: str
    status: str
    input: Any
    output: Any
    error: str | None
    cause: str | None
    start_date: _dt.datetime
    stop_date: _dt.datetime | None
    waiting: tuple[str, ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


def describe(record: ExecRecord, waiting: tuple[str, ...] = ()) -> ExecutionDescription:
    start = _time(record.start)
    assert start is not None
    return ExecutionDescription(
        id=record.id, workflow=record.workflow, version=record.version, name=record.name,
        status=record.status, input=record.input, output=record.output, error=record.error,
        cause=record.cause, start_date=start, stop_date=_time(record.stop), waiting=waiting,
    )


async def execution_record(engine: Engine, execution: str) -> ExecRecord:
    found = await engine.kv_get(NS, [exec_key(execution)])
    if not found:
        raise ExecutionDoesNotExist(f"no execution {execution!r}")
    return _exec(found[exec_key(execution)][0])


_WAITS = {"sleep": "timer", "retry": "retry interval", "token": "task token",
          "branches": "branches"}


async def describe_execution(engine: Engine, execution: str) -> ExecutionDescription:
    """The execution ``execution`` (an id); raises ExecutionDoesNotExist."""
    from setpiece.workflows._context import format_time

    record = await execution_record(engine, execution)
    waiting: list[str] = []
    if record.status == RUNNING:
        for _, raw in await engine.kv_scan(NS, f"th:{execution}:", 1_000_000):
            th = _thread(raw)
            if th.phase == "wait" and th.wait != "branches":
                since = format_time(_dt.datetime.fromtimestamp(th.entered, _dt.UTC))
                waiting.append(f"{th.state}: {_WAITS.get(th.wait or '', th.wait)}, since {since}")
    return describe(record, tuple(waiting))


async def list_executions(
    engine: Engine,
    workflow: str | None = None,
    status: str | None = None,
    *,
    limit: int = 10_000,
) -> list[ExecutionDescription]:
    """Executions, by id; only those of ``workflow`` and/or in ``status`` when given."""
    if status is not None and status not in STATUSES:
        from setpiece.errors import ConfigError

        raise ConfigError(f"status {status!r}: one of {', '.join(STATUSES)}")
    prefix = "" if workflow is None else f"{workflow}:"
    if status is None:
        rows = await engine.kv_scan(NS, f"x:{prefix}", limit)
        return [describe(_exec(v)) for _, v in rows]
    marker = f"s:{status}:"
    ids = [k[len(marker):] for k, _ in await engine.kv_scan(NS, marker + prefix, limit)]
    found = await engine.kv_get(NS, [exec_key(i) for i in ids])
    return [describe(_exec(found[exec_key(i)][0])) for i in ids if exec_key(i) in found]


async def execution_history(engine: Engine, execution: str) -> list[HistoryEvent]:
    """The execution's history events, oldest first, ids from 1 (AWS event types)."""
    from setpiece.workflows._interpreter import HistoryEvent

    await execution_record(engine, execution)
    out: list[HistoryEvent] = []
    for _, raw in await engine.kv_scan(NS, f"h:{execution}:", 100_000_000):
        for type_, ts, details in _history(raw):
            out.append(HistoryEvent(len(out) + 1, type_, _time(ts) or _dt.datetime.now(_dt.UTC),
                                    details))
    return out


async def stop_execution(
    engine: Engine, execution: str, *, error: str | None = None, cause: str | None = None
) -> None:
    """Ask a running execution to stop (it ends ABORTED); a finished one is left as it is."""
    record = await execution_record(engine, execution)
    if record.status != RUNNING:
        return
    await ensure_signals(engine)
    await engine.commit(
        UnitOfWork(appends=[signal({"k": "stop", "x": execution, "error": error,
                                    "cause": cause})])
    )
