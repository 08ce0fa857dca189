"""Every exception setpiece raises, in one tree.

::

    SetpieceError
    ├── EventError          (ValueError)  an event envelope is malformed or too large; names the field
    │   └── SchemaError                   an event's data does not fit its type's schema; names type, JSON path, rule
    ├── PatternError        (ValueError)  an event pattern or input transformer is invalid; names the path
    ├── ConfigError         (ValueError)  a stack is declared wrongly: unknown target, duplicate name, ...
    ├── EngineError                       the engine cannot be used: unreachable, not a setpiece database
    │   ├── ConflictError                 a transaction lost an optimistic-concurrency race (retried inside)
    │   └── RefusedError                  the engine cannot store what a unit of work holds (U+0000 in text)
    ├── HandlerError                      a handler raised or returned something that is not an event
    │   └── HandlerTimeout  (TimeoutError) an attempt ran past the handler's timeout
    ├── InputDecodeError    (ValueError)  an event's data does not fit the handler's annotation (not retried)
    ├── HttpError                         raised in a route handler: answer with a 4xx/5xx status (alias HTTPError)
    ├── AuthError                         the gateway refuses a request: 401, 403 or 503, with WWW-Authenticate
    ├── DrainTimeout        (TimeoutError) ``Runtime.drain`` ran out of time with work still pending
    ├── ViewError           (ValueError)  a view cannot take an event (key, time, late, fold): dead-lettered
    └── WorkflowError
        ├── DefinitionError (ValueError)  a state machine definition is invalid; names the state and field
        ├── TaskFailed                    a task failed with an ASL error name and cause
        ├── ExecutionDoesNotExist (LookupError)  no durable execution has that id
        ├── ExecutionAlreadyExists        an execution of that name exists with a different input
        └── TaskTokenError                a task token cannot be answered:
            ├── InvalidToken (ValueError)        not a token setpiece issued
            ├── TaskDoesNotExist (LookupError)   well formed, but no task ever had it
            └── TaskTimedOut                     the task stopped waiting: answered, timed out, or ended

Control signals are not errors and live apart, in :mod:`setpiece.signals`: a handler raises
``Retry`` to ask for a later attempt and ``Drop`` to acknowledge an event without handling it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "AuthError",
    "ConfigError",
    "ConflictError",
    "DefinitionError",
    "DeployError",
    "DrainTimeout",
    "EngineError",
    "EventError",
    "ExecutionAlreadyExists",
    "ExecutionDoesNotExist",
    "HTTPError",
    "HandlerError",
    "HandlerTimeout",
    "HttpError",
    "InputDecodeError",
    "InvalidToken",
    "PatternError",
    "RefusedError",
    "SchemaError",
    "SetpieceError",
    "TaskDoesNotExist",
    "TaskFailed",
    "TaskTimedOut",
    "TaskTokenError",
    "ViewError",
    "WorkflowError",
]


class SetpieceError(Exception):
    """The root of every exception setpiece raises on purpose."""


class EventError(SetpieceError, ValueError):
    """An event envelope is malformed or too large. The message names the field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SchemaError(EventError):
    """An event's data does not fit the schema declared for its type, or a schema may not follow
    the one before it. Names the event type, the JSON path and the rule that failed; when it
    comes from a publish, nothing was stored."""

    def __init__(self, message: str, *, event_type: str, path: str, rule: str) -> None:
        super().__init__(message, field=path)
        self.event_type = event_type
        self.path = path
        self.rule = rule


class PatternError(SetpieceError, ValueError):
    """An event pattern (or input transformer) is invalid. The message names the JSON path."""


class ConfigError(SetpieceError, ValueError):
    """A stack, service, bus or rule is declared wrongly."""


class ViewError(SetpieceError, ValueError):
    """A view cannot take an event (its key function raised or returned no string, the event
    has no usable time, it came after its window closed, a fold raised): the event is
    dead-lettered with this reason."""


class EngineError(SetpieceError):
    """The engine cannot be used: unreachable, wrong URL, or not a setpiece database."""


class ConflictError(EngineError):
    """A transaction read a key that another transaction changed before it committed."""


class RefusedError(EngineError):
    """The engine cannot store a value a unit of work holds (PostgreSQL: U+0000 in text, a key
    over an index's size limit). Committing the same unit again fails again: the runtime
    dead-letters the record that made it, with this reason, and goes on."""


class DeployError(EngineError):
    """``setpiece apply`` or ``rollback`` failed at a step and was undone: the message names the
    step, the engine's refusal, and any step that could not be undone."""


class HandlerError(SetpieceError):
    """A handler failed: it raised, or returned something that is not an event."""


class HandlerTimeout(HandlerError, TimeoutError):
    """A handler's attempt ran past its ``timeout=`` (or ``RuntimeConfig.handler_timeout``).

    It counts as a failure: retried by the handler's policy, then dead-lettered with this error.
    """


class InputDecodeError(SetpieceError, ValueError):
    """An event's data does not fit the type the handler's annotation asks for.

    Retrying will not make the data fit: the delivery goes to the dead letters at once.
    """


# The ``error`` field of the gateway's JSON error bodies, by HTTP status.
_HTTP_REASONS = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "validation", 429: "too_many_requests",
    500: "internal", 502: "bad_gateway", 503: "unavailable", 504: "timeout",
}


def _http_reason(status: int) -> str:
    return _HTTP_REASONS.get(status, "error" if status >= 400 else "ok")


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def checked_headers(headers: Mapping[str, str] | None, where: str) -> dict[str, str]:
    """Headers an HTTP response can carry (RFC 9110 §5): refused when made, not when sent."""
    out = dict(headers or {})
    for name, value in out.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"{where}: header name {name!r} is not an HTTP token")
        if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
            raise ValueError(
                f"{where}: the value of header {name!r} must be a string of Latin-1 text "
                "without control characters (no CR or LF)"
            )
    return out


class HttpError(SetpieceError):
    """Raise in a route handler to answer with ``status`` (a 4xx or 5xx) and a message.

    ``HTTPError`` is the same class under its earlier name.
    """

    def __init__(
        self, status: int, detail: str, *, headers: Mapping[str, str] | None = None,
        field: str | None = None,
    ) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"HttpError: status must be 4xx or 5xx, got {status}")
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail
        self.headers = checked_headers(headers, "HttpError")
        self.field = field

    def payload(self) -> dict[str, Any]:
        """The JSON body of the answer: ``{"error": ..., "detail": ...[, "field": ...]}``."""
        out: dict[str, Any] = {"error": _http_reason(self.status), "detail": self.detail}
        if self.field is not None:
            out["field"] = self.field
        return out


HTTPError = HttpError  # the earlier name, kept working


class AuthError(SetpieceError):
    """A request is refused: 401 (no valid token), 403 (missing scope) or 503 (keys unavailable).

    ``error`` is the RFC 6750 error code (None when no credentials were sent at all, and for a
    503, which is no challenge); ``description`` is fixed text chosen by the gateway.
    """

    def __init__(
        self,
        status: int,
        description: str,
        *,
        error: str | None = "invalid_token",
        scope: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.error = error
        self.scope = scope
        self.retry_after = retry_after

    def www_authenticate(self, realm: str) -> str:
        """The challenge, with every value reduced to what RFC 6750 §3 allows in it."""
        parts = [f'realm="{_header_safe(realm)}"']
        if self.error is not None:
            parts.append(f'error="{_header_safe(self.error)}"')
            parts.append(f'error_description="{_header_safe(self.description)}"')
        if self.scope:
            parts.append(f'scope="{_header_safe(self.scope)}"')
        return "Bearer " + ", ".join(parts)

    def headers(self, realm: str) -> dict[str, str]:
        """The response headers: the challenge (401, 403) or ``Retry-After`` (503)."""
        if self.status == 503:
            return {"retry-after": str(max(1, round(self.retry_after or 1)))}
        return {"www-authenticate": self.www_authenticate(realm)}


_HEADER_UNSAFE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')
_MAX_DESCRIPTION = 200


def _header_safe(text: str) -> str:
    """Printable ASCII without '"' and '\\' (RFC 6750 §3), so any header line can carry it."""
    return _HEADER_UNSAFE.sub("?", text[:_MAX_DESCRIPTION])


class DrainTimeout(SetpieceError, TimeoutError):
    """``Runtime.drain`` ran out of time while work was still pending."""


class WorkflowError(SetpieceError):
    """Base of the workflow errors."""


class DefinitionError(WorkflowError, ValueError):
    """A state machine definition is invalid. The message names the state and the field."""


class TaskFailed(WorkflowError):
    """A task failed with an ASL error name (``States.TaskFailed`` or a custom one) and a cause."""

    def __init__(self, error: str, cause: str | None = None) -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause


class ExecutionDoesNotExist(WorkflowError, LookupError):
    """No durable workflow execution has that id."""


class ExecutionAlreadyExists(WorkflowError):
    """An execution of that name exists already, started with a different input."""


class TaskTokenError(WorkflowError):
    """A task token cannot be answered (AWS: InvalidToken, TaskDoesNotExist, TaskTimedOut)."""


class InvalidToken(TaskTokenError, ValueError):
    """The text is not a task token setpiece issued."""


class TaskDoesNotExist(TaskTokenError, LookupError):
    """The token is well formed, but no task of this engine ever waited for it."""


class TaskTimedOut(TaskTokenError):
    """The task no longer waits for its token: answered already, timed out, or its execution
    ended (succeeded, failed, aborted, or its Map/Parallel sibling failed)."""
