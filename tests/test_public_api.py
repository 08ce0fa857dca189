"""The public API is curated: exactly these names, each documented; every exception in one tree."""

from __future__ import annotations

import importlib

import pytest

import setpiece
from setpiece.errors import SetpieceError
from setpiece.signals import ControlSignal

EXPECTED = {
    "Bus", "ConfigError", "Context", "DeadLetter", "DefinitionError", "DrainTimeout", "Drop",
    "EngineError", "Event", "EventError", "HandlerError", "HandlerTimeout", "HttpTarget",
    "Observability", "PatternError", "Retry", "SchemaError",
    "RetryPolicy", "Rule", "Runtime", "RuntimeConfig", "SLO", "Service", "SetpieceError", "Stack",
    "Stream", "SyncContext", "TaskFailed", "WorkflowError", "__version__",
    # the HTTP gateway
    "BreakerPolicy", "CallPolicy", "HTTPError", "HttpError", "Identity", "JWTAuth",
    "RequestContext", "Response", "VersionRoutes", "mint_token",
    # durable workflows
    "Workflow", "WorkflowTarget", "ExecutionAlreadyExists", "ExecutionDoesNotExist",
    "TaskTokenError", "InvalidToken", "TaskDoesNotExist", "TaskTimedOut",
    # versions of event consumers
    "Rollout", "AbortPolicy",
}


def test_exported_names_are_exactly_the_intended_ones() -> None:
    assert set(setpiece.__all__) == EXPECTED
    for name in setpiece.__all__:
        assert hasattr(setpiece, name), name


def test_every_public_name_has_a_docstring() -> None:
    for name in setpiece.__all__:
        if name.startswith("__"):
            continue
        assert getattr(setpiece, name).__doc__, f"{name} has no docstring"


# Each subpackage with a public face: exactly these names. A change here is an API change.
SUBPACKAGES = {
    "setpiece.errors": {
        "AuthError", "ConfigError", "ConflictError", "DefinitionError", "DeployError",
        "DrainTimeout",
        "EngineError", "EventError", "ExecutionAlreadyExists", "ExecutionDoesNotExist",
        "HTTPError", "HandlerError", "HandlerTimeout", "HttpError", "InputDecodeError",
        "InvalidToken", "PatternError", "RefusedError", "SchemaError", "SetpieceError",
        "TaskDoesNotExist", "TaskFailed", "TaskTimedOut", "TaskTokenError", "ViewError",
        "WorkflowError",
    },
    "setpiece.views": {
        "Aggregate", "Hopping", "Join", "Session", "Sliding", "StreamJoin", "Table", "TableJoin",
        "Tumbling", "ViewError",
    },
    "setpiece.schemas": {"Schema", "is_compatible"},
    "setpiece.signals": {"ControlSignal", "Drop", "Retry"},
    "setpiece.patterns": {"InputTransformer", "Pattern", "PatternError", "RuleSet", "compile"},
    "setpiece.workflows": {
        "DefinitionError", "Execution", "ExecutionAlreadyExists", "ExecutionDescription",
        "ExecutionDoesNotExist", "HistoryEvent", "InvalidToken", "StateMachine", "TaskCallable",
        "TaskDoesNotExist", "TaskFailed", "TaskTimedOut", "TaskTokenError", "Workflow",
        "WorkflowLimits",
        "WorkflowError", "describe_execution", "execute", "execution_history", "list_executions",
        "send_task_failure", "send_task_heartbeat", "send_task_success", "start_execution",
        "stop_execution", "validate",
    },
    "setpiece.engine": {
        "Assignment", "Engine", "EventAppend", "GroupLog", "KVRead", "KVWrite", "Log",
        "OffsetCommit", "Record",
        "Store", "StreamSpec", "Timer", "UnitOfWork", "open_engine", "partition_for",
    },
    "setpiece.deploy": {
        "NAMESPACE", "Change", "ChangeSet", "Deployment", "GroupSpec", "History", "Resources",
        "Step", "additions", "check", "deploy", "describe", "diff", "digest", "run_steps",
        "steps_for",
    },
    "setpiece.engine.conformance": {
        "EngineConformance", "EngineSuite", "EngineTestCase", "EventStoreConformance",
        "GroupLogConformance",
        "LogConformance", "PeerConformance", "StoreConformance", "engine_test", "peer_test",
    },
    "setpiece.gateway": {
        "AuthError", "Breaker", "BreakerPolicy", "CallPolicy", "CallResult", "EVENTS_SCOPE",
        "Gateway", "HTTPError", "HttpError", "Identity", "Instance", "JWTAuth", "RequestContext",
        "Response", "VERSION_HEADER", "VersionRoutes", "bind", "mint_token", "serve", "serving",
    },
    "setpiece.runtime": {
        "DeadLetter", "EndpointCall", "Extension", "HttpEndpoint", "Instrumentation",
        "RawBody", "RequestObservation", "Runtime", "RuntimeConfig", "Scope", "StoreReader",
        "StreamBody",
    },
    "setpiece.observe": {
        "EXTENSION", "OBSERVE_SCOPE", "Observe", "ObserveMethods", "serve_metrics",
    },
    "setpiece.sourcing": {"CONFLICT_RETRY", "Aggregate", "Snapshots", "Upcaster"},
    "setpiece.cli": {"main"},
    "setpiece.testing": {
        "Call", "EngineUrls", "FakeHttp", "Servers", "StackStarter", "VirtualClock",
    },
}


@pytest.mark.parametrize("name", sorted(SUBPACKAGES))
def test_subpackage_exports_are_exactly_the_intended_ones(name: str) -> None:
    module = importlib.import_module(name)
    assert set(module.__all__) == SUBPACKAGES[name]
    for export in module.__all__:
        assert hasattr(module, export), f"{name}.{export}"


@pytest.mark.parametrize("name", ["setpiece", *sorted(SUBPACKAGES)])
def test_every_public_exception_is_a_setpiece_error(name: str) -> None:
    """One tree: ``except SetpieceError`` catches whatever setpiece raises on purpose
    (the control signals ``Retry`` and ``Drop`` are not errors, and live apart)."""
    module = importlib.import_module(name)
    for export in module.__all__:
        value = getattr(module, export)
        if isinstance(value, type) and issubclass(value, BaseException):
            if issubclass(value, ControlSignal):
                continue
            assert issubclass(value, SetpieceError), f"{name}.{export} is not a SetpieceError"


def test_exceptions_are_defined_in_setpiece_errors_and_kept_at_their_old_paths() -> None:
    from setpiece.errors import AuthError, HttpError, InputDecodeError
    from setpiece.gateway.auth import AuthError as auth_path
    from setpiece.gateway.responses import HTTPError as responses_path
    from setpiece.service import InputDecodeError as service_path

    assert setpiece.HTTPError is setpiece.HttpError is HttpError is responses_path
    assert auth_path is AuthError and service_path is InputDecodeError
    for cls in (AuthError, HttpError, InputDecodeError):
        assert cls.__module__ == "setpiece.errors", cls
    assert issubclass(InputDecodeError, ValueError)
    assert HttpError(404, "no note").payload() == {"error": "not_found", "detail": "no note"}
