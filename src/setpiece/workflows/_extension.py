"""Durable workflows as an extension of the runtime (:mod:`setpiece.runtime.extension`).

Attached to every runtime, it contributes:

- the task-token answers of handlers' contexts (``ctx.send_task_success`` ...), committed with
  the delivery, and the HTTP endpoints ``POST /workflows/tasks/{success|failure|heartbeat}``;
- where the stack declares workflows (and the worker runs every service): the consumer of the
  workflows' signal stream, the rule-target kind of :class:`~setpiece.WorkflowTarget`, and the
  firing of workflow timers (Wait states, retries, timeouts) through the runtime's dispatcher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from setpiece._json import DepthError
from setpiece._json import decode as decode_json
from setpiece.bus import Bus, Rule, WorkflowTarget
from setpiece.context import TASK_TOKENS
from setpiece.errors import TaskTokenError
from setpiece.runtime.extension import Action, EndpointCall, HttpEndpoint
from setpiece.workflows import _tokens
from setpiece.workflows._store import NS

if TYPE_CHECKING:
    from setpiece.clock import Clock
    from setpiece.engine.contract import Engine
    from setpiece.runtime.runtime import Runtime
    from setpiece.workflows._runner import WorkflowRunner

__all__ = ["EXTENSION", "TASKS_SCOPE", "DurableWorkflows"]

EXTENSION = "workflows"
#: The OAuth2 scope a token needs to answer tasks over HTTP.
TASKS_SCOPE = "workflows:tasks"


class DurableWorkflows:
    """The extension; ``runner`` runs the stack's executions (None where none run here)."""

    name = EXTENSION

    def __init__(self) -> None:
        self.runner: WorkflowRunner | None = None

    async def attach(self, runtime: Runtime) -> None:
        engine = runtime.engine
        runtime.add_context_service(
            TASK_TOKENS, lambda attempt: _tokens.DeliveryTokens(attempt, engine, runtime.clock)
        )
        for action in ("success", "failure", "heartbeat"):
            runtime.add_endpoint(HttpEndpoint(
                "POST", f"/workflows/tasks/{action}", TASKS_SCOPE,
                _answer(engine, action, runtime.clock),
                summary=f"Send a task {action} for a task token (Step Functions' SendTask"
                        f"{action.capitalize()})",
            ))
        if not runtime.stack.workflows or runtime.config.services:
            return  # workers limited to some services run no executions
        from setpiece.workflows._runner import WorkflowRunner

        runner = self.runner = WorkflowRunner(runtime, runtime.notify_progress)
        runtime.add_consumer(await runner.prepare())
        runtime.add_timer_handler(NS, runner.fire_timers)

        def target(bus: Bus, rule: Rule, index: int, found: Any) -> tuple[str, Action]:
            assert isinstance(found, WorkflowTarget)
            return f"workflow:{found.name}", runner.target_action(rule, found)

        runtime.add_target_kind(WorkflowTarget, target)

    async def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()


def _answer(engine: Engine, action: str, clock: Clock) -> Any:
    """``{"token": ..., "output"|"error"|"cause": ...}``: answer a task waiting for its token."""

    async def handle(call: EndpointCall) -> tuple[int, Any]:
        try:
            body = decode_json(call.body, "body") if call.body else None
        except DepthError as exc:
            return 400, {"error": "bad_request", "detail": str(exc), "field": "body"}
        except msgspec.DecodeError:
            return 400, {"error": "bad_request", "detail": "the body is not JSON", "field": "body"}
        if not isinstance(body, dict) or not isinstance(body.get("token"), str):
            return 400, {"error": "bad_request", "field": "body.token",
                         "detail": "the body must be an object with a string token"}
        token = body["token"]
        try:
            if action == "success":
                await _tokens.send_task_success(engine, token, body.get("output"))
            elif action == "failure":
                await _tokens.send_task_failure(engine, token, body.get("error"),
                                                body.get("cause"))
            else:
                await _tokens.send_task_heartbeat(engine, token, now=clock.time())
        except TaskTokenError as exc:
            return 400, {"error": type(exc).__name__, "detail": str(exc)}
        return 200, {"ok": True}

    return handle

