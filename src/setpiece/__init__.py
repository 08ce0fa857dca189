"""setpiece: event-driven microservices in Python.

This module is the curated public API; everything else is internal unless a subpackage
(``setpiece.patterns``, ``setpiece.workflows``, ``setpiece.testing``) documents it.
"""

from __future__ import annotations

from setpiece.errors import (
    ConfigError,
    DefinitionError,
    DrainTimeout,
    EngineError,
    EventError,
    HandlerError,
    PatternError,
    SetpieceError,
    TaskFailed,
    WorkflowError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DefinitionError",
    "DrainTimeout",
    "EngineError",
    "EventError",
    "HandlerError",
    "PatternError",
    "SetpieceError",
    "TaskFailed",
    "WorkflowError",
    "__version__",
]
