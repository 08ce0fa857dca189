"""Event buses (EventBridge): rules route each event to every matching target.

A bus is backed by a durable stream (its archive), and each rule target is a consumer group on
that stream, so every delivery is durable, retried with backoff and dead-lettered when it keeps
failing. Targets are service handlers (declared with ``@service.on``), streams, other buses and
HTTP endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from setpiece.errors import ConfigError, PatternError
from setpiece.policy import RetryPolicy
from setpiece.stream import Stream, check_name
from setpiece.workflows.workflow import Workflow

if TYPE_CHECKING:
    from setpiece.patterns import InputTransformer, Pattern

__all__ = ["Bus", "HttpTarget", "Rule", "Target", "WorkflowTarget"]

DEFAULT_BUS = "default"
WEEK = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """POST each matching event (CloudEvents structured JSON) to ``url``.

    A 2xx answer is success; anything else, or no answer within ``timeout``, is a failed attempt.
    Delivery is at least once: an endpoint must be idempotent on the event ``id``.
    """

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"HttpTarget url {self.url!r}: must start with http:// or https://")


@dataclass(frozen=True, slots=True)
class WorkflowTarget:
    """Start an execution of the stack's workflow ``name`` for each matching event.

    The execution's input is the event as a dict (CloudEvents structured form), or the rule's
    input transformer output when it has one. Its name is the event id, so a redelivered event
    never starts a second execution. A :class:`~setpiece.workflows.Workflow` object may be
    given as a target directly; it stands for ``WorkflowTarget(workflow.name)``.
    """

    name: str


Target = Union[Stream, "Bus", HttpTarget, WorkflowTarget, Workflow]


def compile_pattern(pattern: Mapping[str, Any] | str, where: str) -> Pattern:
    """Compile an event pattern, naming ``where`` it was declared in the error."""
    from setpiece import patterns

    try:
        return patterns.compile(pattern if isinstance(pattern, str) else dict(pattern))
    except PatternError as exc:
        raise PatternError(f"{where}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Rule:
    """An event pattern and the targets that receive each matching event.

    ``transform`` (an :class:`~setpiece.patterns.InputTransformer`) reshapes the event's data for
    the targets. ``retry`` applies to each target's deliveries.
    """

    name: str
    pattern: Mapping[str, Any] | str
    targets: tuple[Target, ...]
    transform: InputTransformer | None = None
    retry: RetryPolicy | None = None
    compiled: Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_name("rule", self.name)
        object.__setattr__(self, "compiled", compile_pattern(self.pattern, f"rule {self.name!r}"))
        if not self.targets:
            raise ConfigError(f"rule {self.name!r}: needs at least one target")
        object.__setattr__(self, "targets", tuple(_as_target(t) for t in self.targets))
        for target in self.targets:
            if not isinstance(target, Stream | Bus | HttpTarget | WorkflowTarget):
                raise ConfigError(
                    f"rule {self.name!r}: target {target!r} is not a Stream, Bus, HttpTarget, "
                    "Workflow or WorkflowTarget"
                )


VALIDATION_MODES = ("enforce", "warn", "off")


class Bus:
    """A named event bus. ``archive_retention`` (seconds) is how long events stay replayable.

    ``validation``: what happens to an event whose data does not fit the schema declared for
    its type (``Stack(schemas=[...])``): ``enforce`` refuses it (SchemaError, nothing stored),
    ``warn`` publishes it and counts and logs it, ``off`` does not check.

    Its backing stream (the archive) is named :func:`bus_stream_name` and has ``partitions``
    partitions; the runtime creates it.
    """

    def __init__(
        self,
        name: str = DEFAULT_BUS,
        *,
        partitions: int = 4,
        archive_retention: float | None = WEEK,
        rules: tuple[Rule, ...] | list[Rule] = (),
        validation: str = "enforce",
    ) -> None:
        check_name("bus", name)
        if not 1 <= partitions <= 1024:
            raise ConfigError(f"bus {name!r}: partitions must be 1..1024")
        if validation not in VALIDATION_MODES:
            raise ConfigError(f"bus {name!r}: validation must be one of "
                              f"{', '.join(VALIDATION_MODES)}, got {validation!r}")
        self.validation = validation
        self.name = name
        self.partitions = partitions
        self.archive_retention = archive_retention
        self.rules: list[Rule] = []
        for rule in rules:
            self.add_rule(rule)

    def add_rule(self, rule: Rule) -> Rule:
        if any(r.name == rule.name for r in self.rules):
            raise ConfigError(f"bus {self.name!r}: a rule named {rule.name!r} exists already")
        self.rules.append(rule)
        return rule

    def rule(
        self,
        name: str,
        pattern: Mapping[str, Any] | str,
        *targets: Target,
        transform: InputTransformer | None = None,
        retry: RetryPolicy | None = None,
    ) -> Rule:
        """Declare a rule on this bus and return it."""
        return self.add_rule(Rule(name, pattern, tuple(targets), transform, retry))

    def __repr__(self) -> str:
        return f"Bus({self.name!r}, rules={[r.name for r in self.rules]})"


def _as_target(target: Any) -> Any:
    """A Workflow object given as a target stands for its WorkflowTarget."""
    if isinstance(target, Workflow):
        return WorkflowTarget(target.name)
    return target


def bus_stream_name(bus: str) -> str:
    return f"bus.{bus}"
