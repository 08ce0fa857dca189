"""The workflow half of the runtime handle: start, list, describe, stop, answer task tokens.

:class:`~setpiece.Runtime` inherits these methods. Each is a thin call of a function that takes
an engine (:mod:`setpiece.workflows._store`, :mod:`setpiece.workflows._tokens`), which the HTTP
gateway and the CLI can call without a running stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from setpiece.errors import ConfigError, DrainTimeout
from setpiece.policy import RetryPolicy
from setpiece.workflows import _store, _tokens
from setpiece.workflows._extension import EXTENSION

if TYPE_CHECKING:
    from setpiece.clock import Clock
    from setpiece.engine.contract import Engine
    from setpiece.stack import Stack
    from setpiece.workflows._interpreter import HistoryEvent
    from setpiece.workflows._runner import WorkflowRunner
    from setpiece.workflows.workflow import Workflow

__all__ = ["WorkflowMethods"]

# How often wait_execution looks at an execution: 2 ms doubling to 0.1 s (only the delays: it
# looks until its timeout); a commit where the steps run wakes it sooner.
_EXECUTION_POLL = RetryPolicy(initial_delay=0.002, max_delay=0.1, jitter=0)


class WorkflowMethods:
    """Durable workflow executions on a runtime (mixed into :class:`~setpiece.Runtime`)."""

    engine: Engine
    clock: Clock
    stack: Stack

    # the runtime's, which these methods are mixed into
    has_extension: Callable[[str], bool]
    extension: Callable[[str], Any]

    @property
    def _workflows(self) -> WorkflowRunner | None:
        """The runner of this runtime's durable workflows (None where none run here)."""
        if not self.has_extension(EXTENSION):
            return None
        runner: WorkflowRunner | None = self.extension(EXTENSION).runner
        return runner

    def _workflow(self, workflow: str | Workflow) -> Workflow:
        name = workflow if isinstance(workflow, str) else workflow.name
        found = self.stack.workflows.get(name)
        if found is None:
            raise ConfigError(
                f"the stack has no workflow {name!r} (workflows: {sorted(self.stack.workflows)})"
            )
        return found

    async def start_execution(
        self,
        workflow: str | Workflow,
        input: Any = None,
        *,
        name: str | None = None,
        tenant: str | None = None,
    ) -> str:
        """Start an execution of one of the stack's workflows; returns its id,
        ``"<workflow>:<name>"``.

        ``input`` is any JSON value (None means ``{}``). ``name`` defaults to a UUID; starting
        again with the same name and input returns the same id (with another input:
        ExecutionAlreadyExists). With ``tenant``, its service tasks use that tenant's stores
        (an execution started by a rule gets the event's tenant).
        """
        return await _store.start_execution(
            self.engine, self._workflow(workflow), input, name=name, tenant=tenant,
            now=self.clock.time(),
        )

    async def describe_execution(self, execution_id: str) -> _store.ExecutionDescription:
        """The execution's status, input, output or error, times, and what it waits for.
        Raises ExecutionDoesNotExist."""
        return await _store.describe_execution(self.engine, execution_id)

    async def executions(
        self, workflow: str | None = None, status: str | None = None
    ) -> list[_store.ExecutionDescription]:
        """Executions by id, optionally of one workflow and/or in one status (``RUNNING``,
        ``SUCCEEDED``, ``FAILED``, ``TIMED_OUT``, ``ABORTED``)."""
        return await _store.list_executions(self.engine, workflow, status)

    async def execution_history(self, execution_id: str) -> list[HistoryEvent]:
        """The execution's history (``HistoryEvent(id, type, timestamp, details)``, AWS event
        types), oldest first."""
        return await _store.execution_history(self.engine, execution_id)

    async def stop_execution(
        self, execution_id: str, *, error: str | None = None, cause: str | None = None
    ) -> None:
        """Stop a running execution: it ends ABORTED and its task tokens stop working."""
        await _store.stop_execution(self.engine, execution_id, error=error, cause=cause)

    async def wait_execution(
        self, execution_id: str, timeout: float = 60.0
    ) -> _store.ExecutionDescription:
        """Wait until the execution is no longer RUNNING and return it.

        Raises DrainTimeout after ``timeout`` seconds (the execution keeps running).
        """
        deadline = time.monotonic() + timeout
        polls = 0
        while True:
            runner = self._workflows
            changed = runner.changed if runner is not None else None
            record = await _store.execution_record(self.engine, execution_id)
            if record.status != _store.RUNNING:
                return _store.describe(record)
            if time.monotonic() >= deadline:
                found = await _store.describe_execution(self.engine, execution_id)
                raise DrainTimeout(
                    f"execution {execution_id!r} still RUNNING after {timeout}s "
                    f"(waiting: {'; '.join(found.waiting) or 'to be stepped'})"
                )
            polls += 1
            pause = _EXECUTION_POLL.delay(polls)
            if changed is not None:  # steps run here: wake when some commit
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(pause, deadline - time.monotonic()))
            else:
                await asyncio.sleep(pause)

    async def send_task_success(self, token: str, output: Any = None) -> None:
        """Complete the task waiting for ``token`` with ``output`` (a JSON value).

        Raises InvalidToken, TaskDoesNotExist or TaskTimedOut (see :mod:`setpiece.errors`).
        """
        await _tokens.send_task_success(self.engine, token, output)

    async def send_task_failure(
        self, token: str, error: str | None = None, cause: str | None = None
    ) -> None:
        """Fail the task waiting for ``token``; its Retry and Catch apply."""
        await _tokens.send_task_failure(self.engine, token, error, cause)

    async def send_task_heartbeat(self, token: str) -> None:
        """Restart the ``HeartbeatSeconds`` clock of the task waiting for ``token``."""
        await _tokens.send_task_heartbeat(self.engine, token, now=self.clock.time())
