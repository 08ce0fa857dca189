"""Task tokens: answering a task that waits (``.waitForTaskToken``), from anywhere.

A token is ``sp1.`` and 32 random URL-safe characters; its record (key ``t:<token>``) says which
thread of which execution waits for it and whether it still does. Answering flips the record
from ``open`` to ``answered`` by compare-and-set and appends the answer as a signal to the
execution, in one unit of work: two answers never both win, and an answer given from inside a
handler (``ctx.send_task_success``) commits with that handler's delivery or not at all.

The functions taking an :class:`~setpiece.engine.Engine` are what the HTTP gateway and the CLI
call; a :class:`~setpiece.Runtime` has the same as methods.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import msgspec

from setpiece.clock import Clock
from setpiece.engine.contract import Engine, KVRead, KVWrite, Timer, UnitOfWork
from setpiece.errors import (
    ConflictError,
    InvalidToken,
    TaskDoesNotExist,
    TaskTimedOut,
    WorkflowError,
)
from setpiece.runtime.unit import Attempt
from setpiece.workflows._store import (
    NS,
    RUNNING,
    decode_exec,
    decode_token,
    encode,
    exec_key,
    signal,
    timer_id,
    token_key,
)

__all__ = [
    "DeliveryTokens",
    "new_token",
    "send_task_failure",
    "send_task_heartbeat",
    "send_task_success",
]

_TOKEN = re.compile(r"sp1\.[A-Za-z0-9_-]{32}")
_OUTPUT_LIMIT = 256 * 1024


def new_token() -> str:
    return "sp1." + secrets.token_urlsafe(24)


def _check(token: Any) -> str:
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        shown = token if isinstance(token, str) and len(token) < 80 else type(token).__name__
        raise InvalidToken(f"task token {shown!r}: not a token setpiece issued")
    return token


def _json(value: Any, what: str) -> Any:
    try:
        raw = encode(value)
    except (TypeError, msgspec.EncodeError) as exc:
        raise WorkflowError(f"{what}: not JSON ({exc})") from None
    if len(raw) > _OUTPUT_LIMIT:
        raise WorkflowError(f"{what}: {len(raw)} bytes, over the limit of {_OUTPUT_LIMIT}")
    return msgspec.json.decode(raw)


def timer_payload(execution: str, thread: int, n: int, what: str, due: float) -> bytes:
    return encode({"k": "timer", "x": execution, "th": thread, "n": n, "w": what, "due": due})


class _Plan:
    """What one answer writes: the token record, and a signal or a timer."""

    def __init__(self) -> None:
        self.token_value = b""
        self.appends: list[tuple[str, str | None, bytes]] = []
        self.timers: list[Timer] = []


def _plan(token: str, raw_token: bytes | None, raw_exec: bytes | None,
          answer: dict[str, Any] | None, now: float | None = None) -> _Plan:
    """Decide an answer (``None``: a heartbeat) given the token's and execution's records."""
    if raw_token is None:
        raise TaskDoesNotExist(f"task token {token!r}: no task waits for it (or ever did)")
    rec = decode_token(raw_token)
    if rec.state != "open":
        raise TaskTimedOut(f"task token {token!r}: the task no longer waits ({rec.state})")
    if raw_exec is None or decode_exec(raw_exec).status != RUNNING:
        raise TaskTimedOut(f"task token {token!r}: execution {rec.execution!r} has ended")
    plan = _Plan()
    if answer is None:
        if rec.heartbeat is not None:
            due = (time.time() if now is None else now) + rec.heartbeat
            rec.heartbeat_due = due
            plan.timers.append(Timer(NS, timer_id(rec.execution, rec.thread, "heartbeat"), due,
                                     timer_payload(rec.execution, rec.thread, rec.n,
                                                   "heartbeat", due)))
    else:
        rec.state = "answered"
        plan.appends.append(signal({"k": "token", "x": rec.execution, "th": rec.thread,
                                    "tk": token, **answer}))
    plan.token_value = encode(rec)
    return plan


def _success(output: Any) -> dict[str, Any]:
    return {"ok": True, "output": _json(output, "send_task_success: output")}


def _failure(error: str | None, cause: str | None) -> dict[str, Any]:
    if error is not None and not isinstance(error, str):
        raise WorkflowError("send_task_failure: error must be a string")
    if cause is not None and not isinstance(cause, str):
        raise WorkflowError("send_task_failure: cause must be a string")
    return {"ok": False, "error": error, "cause": cause}


async def _answer(
    engine: Engine, token: str, answer: dict[str, Any] | None, now: float | None = None
) -> None:
    tkey = token_key(_check(token))
    while True:
        found = await engine.kv_get(NS, [tkey])
        raw_token, version = found.get(tkey, (None, 0))
        raw_exec = None
        if raw_token is not None:
            ex = exec_key(decode_token(raw_token).execution)
            raw_exec = (await engine.kv_get(NS, [ex])).get(ex, (None, 0))[0]
        plan = _plan(token, raw_token, raw_exec, answer, now)
        unit = UnitOfWork(reads=[KVRead(NS, tkey, version)],
                          writes=[KVWrite(NS, tkey, plan.token_value)],
                          appends=plan.appends, timers=plan.timers)
        try:
            await engine.commit(unit)
            return
        except ConflictError:
            continue  # the token changed meanwhile (answered, timed out): decide again


async def send_task_success(engine: Engine, token: str, output: Any = None) -> None:
    """Complete the task waiting for ``token`` with ``output`` (any JSON value).

    Raises InvalidToken (not a setpiece token), TaskDoesNotExist (unknown), TaskTimedOut (the
    task stopped waiting: answered already, timed out, or its execution ended), or
    WorkflowError (output not JSON, or over 256 KiB).
    """
    await _answer(engine, token, _success(output))


async def send_task_failure(
    engine: Engine, token: str, error: str | None = None, cause: str | None = None
) -> None:
    """Fail the task waiting for ``token`` with an ASL ``error`` name and a ``cause`` (text);
    its state's Retry and Catch apply. Raises as :func:`send_task_success`."""
    await _answer(engine, token, _failure(error, cause))


async def send_task_heartbeat(engine: Engine, token: str, *, now: float | None = None) -> None:
    """Report progress on the task waiting for ``token``: its ``HeartbeatSeconds`` starts
    again (from ``now``, epoch seconds; the system's time by default). Raises as
    :func:`send_task_success`."""
    await _answer(engine, token, None, now)


class DeliveryTokens:
    """Token answers inside one delivery (a handler's ``ctx``): they commit with it.

    The token record is read through the delivery (its version is checked at commit); the
    execution's record is not, so that an execution's progress elsewhere never makes the
    delivery conflict. An answer to an execution that ended meanwhile is ignored by it.
    """

    __slots__ = ("_attempt", "_clock", "_engine")

    def __init__(self, attempt: Attempt, engine: Engine, clock: Clock) -> None:
        self._attempt = attempt
        self._engine = engine
        self._clock = clock

    async def _answer(self, token: str, answer: dict[str, Any] | None) -> None:
        tkey = (NS, token_key(_check(token)))
        raw_token = await self._attempt.get(tkey)
        raw_exec = None
        if raw_token is not None:
            ex = exec_key(decode_token(raw_token).execution)
            raw_exec = (await self._engine.kv_get(NS, [ex])).get(ex, (None, 0))[0]
        plan = _plan(token, raw_token, raw_exec, answer, self._clock.time())
        self._attempt.put(tkey, plan.token_value)
        for stream, key, value in plan.appends:
            self._attempt.emit(stream, key, value)
        self._attempt.timers.extend(plan.timers)

    async def success(self, token: str, output: Any) -> None:
        await self._answer(token, _success(output))

    async def failure(self, token: str, error: str | None, cause: str | None) -> None:
        await self._answer(token, _failure(error, cause))

    async def heartbeat(self, token: str) -> None:
        await self._answer(token, None)
