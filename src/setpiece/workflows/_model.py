"""The typed model of an Amazon States Language definition: a :class:`StateMachine` of
:class:`State` objects with their :class:`Retrier` and :class:`Catcher` lists, as
:func:`setpiece.workflows._definition.load` builds them (validated by
:mod:`setpiece.workflows._validation`). Plain frozen data: the interpreter and the durable
driver read it, nothing changes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from setpiece.workflows._paths import JsonPath

__all__ = ["STATE_TYPES", "Catcher", "QueryLanguage", "Retrier", "State", "StateMachine"]

QueryLanguage = Literal["JSONPath", "JSONata"]
STATE_TYPES = ("Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map")


@dataclass(frozen=True, slots=True)
class Retrier:
    error_equals: tuple[str, ...]
    interval_seconds: float = 1.0
    max_attempts: int = 3
    backoff_rate: float = 2.0
    max_delay_seconds: float | None = None
    jitter: str = "NONE"


@dataclass(frozen=True, slots=True)
class Catcher:
    error_equals: tuple[str, ...]
    next: str
    has_result_path: bool = False
    result_path: JsonPath | None = None
    output: Any = None
    has_output: bool = False
    assign: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class State:
    """One state. ``raw`` keeps the definition's fields for the type-specific parts."""

    name: str
    type: str
    language: QueryLanguage
    raw: Mapping[str, Any]
    next: str | None
    end: bool
    retriers: tuple[Retrier, ...] = ()
    catchers: tuple[Catcher, ...] = ()
    input_path: JsonPath | None = None
    has_input_path: bool = False
    output_path: JsonPath | None = None
    has_output_path: bool = False
    result_path: JsonPath | None = None
    has_result_path: bool = False
    branches: tuple[StateMachine, ...] = ()
    processor: StateMachine | None = None
    #: precomputed for the driver's hot loop
    entered_event: str = ""
    exited_event: str = ""
    passthrough: bool = False  # a JSONPath Pass state that only forwards its input
    uses_task_token: bool = False

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.raw


@dataclass(frozen=True, slots=True)
class StateMachine:
    """A validated state machine (the top level, a Parallel branch or a Map processor)."""

    start_at: str
    states: Mapping[str, State]
    language: QueryLanguage
    raw: Mapping[str, Any]
    timeout_seconds: int | None = None
    comment: str | None = field(default=None)
