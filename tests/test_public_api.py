"""The public API is curated: exactly these names, each documented."""

from __future__ import annotations

import setpiece

EXPECTED = {
    "Bus", "ConfigError", "Context", "DeadLetter", "DefinitionError", "DrainTimeout", "Drop",
    "EngineError", "Event", "EventError", "HandlerError", "HandlerTimeout", "HttpTarget",
    "PatternError", "Retry",
    "RetryPolicy", "Rule", "Runtime", "RuntimeConfig", "Service", "SetpieceError", "Stack",
    "Stream", "SyncContext", "TaskFailed", "WorkflowError", "__version__",
    # the HTTP gateway
    "BreakerPolicy", "CallPolicy", "HTTPError", "Identity", "JWTAuth", "RequestContext",
    "Response", "VersionRoutes", "mint_token",
    # durable workflows
    "Workflow", "WorkflowTarget", "ExecutionAlreadyExists", "ExecutionDoesNotExist",
    "TaskTokenError", "InvalidToken", "TaskDoesNotExist", "TaskTimedOut",
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
