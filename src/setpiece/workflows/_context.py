"""The context object (``$$`` / ``$states.context``), workflow variable scopes, the clock.

Everything here is plain data so that a durable runner can persist and rebuild it.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ExecutionInfo", "Scope", "format_time", "parse_time"]


def format_time(t: _dt.datetime) -> str:
    """ISO-8601 with milliseconds and ``Z``, as Step Functions prints timestamps."""
    t = t.astimezone(_dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def parse_time(text: str) -> _dt.datetime | None:
    """Parse an RFC 3339 timestamp (``T`` separator and an offset required), else None.

    Fractions of any length are accepted (nanoseconds are truncated to microseconds).
    """
    import re

    m = re.fullmatch(
        r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})",
        text,
    )
    if not m:
        return None
    y, mo, d, h, mi, s, frac, off = m.groups()
    try:
        micro = int((frac or "0")[:6].ljust(6, "0"))
        if off in ("Z", "z"):
            tz = _dt.UTC
        else:
            sign = 1 if off[0] == "+" else -1
            oh, om = int(off[1:3]), int(off[4:6])
            if oh > 23 or om > 59:
                return None
            tz = _dt.timezone(sign * _dt.timedelta(hours=oh, minutes=om))
        return _dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=tz)
    except ValueError:
        return None


@dataclass(slots=True)
class Scope:
    """Workflow variables. A Map iteration or Parallel branch gets a child scope: it reads
    its parents' variables, and what it assigns stays inside it."""

    values: dict[str, Any] = field(default_factory=dict)
    parent: Scope | None = None

    def lookup(self, name: str) -> tuple[bool, Any]:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.values:
                return True, scope.values[name]
            scope = scope.parent
        return False, None

    def child(self) -> Scope:
        return Scope({}, self)

    def assign(self, values: dict[str, Any]) -> None:
        self.values.update(values)

    def visible(self) -> dict[str, Any]:
        """Every visible variable, inner scopes shadowing outer ones."""
        chain: list[Scope] = []
        scope: Scope | None = self
        while scope is not None:
            chain.append(scope)
            scope = scope.parent
        out: dict[str, Any] = {}
        for s in reversed(chain):
            out.update(s.values)
        return out

    def __iter__(self) -> Iterator[str]:
        return iter(self.visible())


@dataclass(frozen=True, slots=True)
class ExecutionInfo:
    """The execution part of the context object."""

    execution_arn: str
    name: str
    input: Any
    start_time: str
    state_machine_arn: str
    state_machine_name: str
    role_arn: str = "arn:aws:iam::123456789012:role/setpiece-workflows"

    def context(
        self,
        *,
        state: str,
        entered: str,
        retry_count: int,
        map_item: tuple[int, Any] | None = None,
        task_token: str | None = None,
    ) -> dict[str, Any]:
        ctx: dict[str, Any] = {
            "Execution": {
                "Id": self.execution_arn,
                "Input": self.input,
                "Name": self.name,
                "RoleArn": self.role_arn,
                "StartTime": self.start_time,
                "RedriveCount": 0,
            },
            "State": {"EnteredTime": entered, "Name": state, "RetryCount": retry_count},
            "StateMachine": {"Id": self.state_machine_arn, "Name": self.state_machine_name},
        }
        if task_token is not None:
            ctx["Task"] = {"Token": task_token}
        if map_item is not None:
            ctx["Map"] = {"Item": {"Index": map_item[0], "Value": map_item[1]}}
        return ctx
