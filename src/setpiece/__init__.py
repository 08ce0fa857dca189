"""setpiece: event-driven microservices in Python.

This module is the curated public API. Subpackages with a public face of their own:
``setpiece.patterns`` (event patterns), ``setpiece.workflows`` (state machines),
``setpiece.engine`` (the engine contract, for engine authors), ``setpiece.testing``.
"""

from __future__ import annotations

from setpiece._assembly import Runtime
from setpiece.bus import Bus, HttpTarget, Rule, WorkflowTarget
from setpiece.context import Context, SyncContext
from setpiece.errors import (
    ConfigError,
    DefinitionError,
    DrainTimeout,
    EngineError,
    EventError,
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
    HandlerError,
    HandlerTimeout,
    InvalidToken,
    PatternError,
    SchemaError,
    SetpieceError,
    TaskDoesNotExist,
    TaskFailed,
    TaskTimedOut,
    TaskTokenError,
    WorkflowError,
)
from setpiece.event import Event
from setpiece.gateway import (
    BreakerPolicy,
    CallPolicy,
    HTTPError,
    HttpError,
    Identity,
    JWTAuth,
    RequestContext,
    Response,
    VersionRoutes,
    mint_token,
)
from setpiece.policy import RetryPolicy
from setpiece.runtime import DeadLetter, RuntimeConfig
from setpiece.service import Service
from setpiece.signals import Drop, Retry
from setpiece.stack import Stack
from setpiece.stream import Stream
from setpiece.workflows.workflow import Workflow

__version__ = "0.1.0"

__all__ = [
    "BreakerPolicy",
    "Bus",
    "CallPolicy",
    "ConfigError",
    "Context",
    "DeadLetter",
    "DefinitionError",
    "DrainTimeout",
    "Drop",
    "EngineError",
    "Event",
    "EventError",
    "ExecutionAlreadyExists",
    "ExecutionDoesNotExist",
    "HTTPError",
    "HandlerError",
    "HandlerTimeout",
    "HttpError",
    "HttpTarget",
    "Identity",
    "InvalidToken",
    "JWTAuth",
    "PatternError",
    "RequestContext",
    "Response",
    "Retry",
    "RetryPolicy",
    "Rule",
    "Runtime",
    "RuntimeConfig",
    "SchemaError",
    "Service",
    "SetpieceError",
    "Stack",
    "Stream",
    "SyncContext",
    "TaskDoesNotExist",
    "TaskFailed",
    "TaskTimedOut",
    "TaskTokenError",
    "VersionRoutes",
    "Workflow",
    "WorkflowError",
    "WorkflowTarget",
    "__version__",
    "mint_token",
]
