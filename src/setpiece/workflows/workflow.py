"""The durable workflow declaration: a named, versioned ASL definition in a stack.

::

    approve = Workflow("approve", definition)           # validated here
    stack = Stack("shop", services=[...], workflows=[approve])

Task ``Resource`` strings name what setpiece runs (see :func:`parse_resource`):

=============================================  ==============================================
``service:<service>.<handler>``                call a handler of the stack, request/response
``http:<METHOD> <url>``                        an HTTP call with the task input as JSON body
``event:<type>``                               put an event (data: the task input) on the
                                               stack's default bus
``arn:aws:states:::events:putEvents``          the same, Step Functions style (``Entries``)
any of these + ``.waitForTaskToken``           do it, then wait for the task token to come back
=============================================  ==============================================
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from setpiece.errors import ConfigError, DefinitionError
from setpiece.stream import check_name
from setpiece.workflows._limits import DEFAULT_LIMITS, WorkflowLimits

if TYPE_CHECKING:
    from setpiece.stack import Stack
    from setpiece.workflows._definition import State, StateMachine

__all__ = ["Resource", "Workflow", "parse_resource"]

WAIT_SUFFIX = ".waitForTaskToken"
PUT_EVENTS = "arn:aws:states:::events:putEvents"
_HTTP = re.compile(r"(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (https?://\S+)")
_SERVICE = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]*)\.([A-Za-z_][A-Za-z0-9_]*)")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

RESOURCE_HELP = (
    "use service:<service>.<handler>, http:<METHOD> <url>, event:<type> or "
    f"{PUT_EVENTS}, each optionally ending in {WAIT_SUFFIX}"
)


@dataclass(frozen=True, slots=True)
class Resource:
    """A parsed Task ``Resource``.

    ``kind`` is ``service`` (``target`` = ``service.handler``), ``http`` (``method`` and
    ``target`` = URL), ``event`` (``target`` = event type) or ``putEvents``; ``wait`` is set for
    the ``.waitForTaskToken`` callback pattern.
    """

    kind: str
    target: str = ""
    method: str = ""
    wait: bool = False

    @property
    def service(self) -> tuple[str, str]:
        svc, _, handler = self.target.rpartition(".")
        return svc, handler


def parse_resource(text: str) -> Resource | None:
    """Parse a Task ``Resource`` string; None if setpiece cannot run it."""
    wait = text.endswith(WAIT_SUFFIX)
    base = text[: -len(WAIT_SUFFIX)] if wait else text
    if base == PUT_EVENTS:
        return Resource("putEvents", wait=wait)
    scheme, sep, rest = base.partition(":")
    if not sep or not rest:
        return None
    if scheme == "service" and _SERVICE.fullmatch(rest):
        return Resource("service", rest, wait=wait)
    if scheme == "event" and rest.strip() == rest:
        return Resource("event", rest, wait=wait)
    if scheme == "http":
        m = _HTTP.fullmatch(rest)
        if m:
            return Resource("http", m.group(2), m.group(1), wait=wait)
    return None


def _task_states(machine: StateMachine, where: str) -> Iterator[tuple[State, str]]:
    prefix = f"{where}.States" if where else "States"
    for st in machine.states.values():
        here = f"{prefix}.{st.name}"
        if st.type == "Task":
            yield st, here
        for i, branch in enumerate(st.branches):
            yield from _task_states(branch, f"{here}.Branches[{i}]")
        if st.processor is not None:
            key = "ItemProcessor" if "ItemProcessor" in st else "Iterator"
            yield from _task_states(st.processor, f"{here}.{key}")


def _canonical(definition: Mapping[str, Any]) -> bytes:
    return msgspec.json.encode(definition, order="sorted")


class Workflow:
    """A durable workflow: an Amazon States Language definition a stack runs on its engine.

    ``definition`` (a dict or JSON text) is validated at once; a :class:`DefinitionError`
    names the state and the field, also for a Task ``Resource`` setpiece cannot run.
    ``version`` names this revision of the definition (default: a hash of its content). An
    execution keeps the definition it started with, even after the stack is redeployed with a
    new one. ``limits`` (a :class:`~setpiece.workflows.WorkflowLimits`) bounds every execution:
    history events, expression time and sizes, and how long a runner steps it at a time.
    """

    def __init__(
        self,
        name: str,
        definition: Mapping[str, Any] | str | bytes,
        *,
        version: str | None = None,
        limits: WorkflowLimits | None = None,
    ) -> None:
        from setpiece.workflows._definition import load  # the ASL model loads on first use

        check_name("workflow", name)
        if limits is not None and not isinstance(limits, WorkflowLimits):
            raise ConfigError(f"workflow {name!r}: limits must be a WorkflowLimits, "
                              f"not {type(limits).__name__}")
        self.name = name
        self.limits = limits or DEFAULT_LIMITS
        self.machine = load(definition)
        self.definition: Mapping[str, Any] = self.machine.raw
        self.resources: dict[str, Resource] = {}
        for st, where in _task_states(self.machine, ""):
            text = st.get("Resource")
            parsed = parse_resource(text)
            if parsed is None:
                raise DefinitionError(f"{where}.Resource: unknown resource {text!r}; "
                                      + RESOURCE_HELP)
            self.resources[text] = parsed
        self.source = _canonical(self.definition)
        if version is None:
            version = hashlib.sha256(self.source).hexdigest()[:12]
        elif not _VERSION.fullmatch(version):
            raise ConfigError(
                f"workflow {name!r}: version {version!r} must be 1-64 letters, digits, '_', '.' "
                "or '-'"
            )
        self.version = version

    def check(self, stack: Stack) -> None:
        """Check that every ``service:`` resource names a handler of ``stack``."""
        for st, where in _task_states(self.machine, ""):
            res = self.resources[st.get("Resource")]
            if res.kind != "service":
                continue
            svc_name, handler = res.service
            svc = stack.services.get(svc_name)
            if svc is None:
                raise ConfigError(
                    f"workflow {self.name!r}: {where}.Resource: the stack has no service "
                    f"{svc_name!r} (services: {sorted(stack.services)})"
                )
            if not any(h.name == handler for h in svc.handlers):
                raise ConfigError(
                    f"workflow {self.name!r}: {where}.Resource: service {svc_name!r} has no "
                    f"handler {handler!r} (handlers: {sorted(h.name for h in svc.handlers)})"
                )

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, version={self.version!r})"
