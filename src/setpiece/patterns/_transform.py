"""``InputTransformer``: EventBridge's InputPathsMap + InputTemplate, and InputPath selection."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Final

import msgspec

from setpiece.errors import PatternError
from setpiece.patterns._json import decode_event
from setpiece.patterns._numbers import NumText

__all__ = ["MAX_VARIABLES", "InputTransformer"]

MAX_VARIABLES: Final = 100
MAX_TEMPLATE_LENGTH: Final = 8192

RULE_ARN: Final = "aws.events.rule-arn"
RULE_NAME: Final = "aws.events.rule-name"
INGESTION_TIME: Final = "aws.events.event.ingestion-time"
EVENT: Final = "aws.events.event"
EVENT_JSON: Final = "aws.events.event.json"
_RESERVED: Final = frozenset({RULE_ARN, RULE_NAME, INGESTION_TIME, EVENT, EVENT_JSON})
_WHOLE_EVENT: Final = frozenset({EVENT, EVENT_JSON})

_PLACEHOLDER: Final = re.compile(r"<([A-Za-z0-9_.\-]+)>")
_STEP: Final = re.compile(r"\.([A-Za-z0-9_\-/:@$]+)|\[(\d+)\]|\['([^'\]]*)'\]|\[\"([^\"\]]*)\"\]")
_MISSING: Final = object()

# How a value is written where its placeholder stands.
_RAW, _QUOTED, _TEXT = "raw", "quoted", "text"


def _encode_hook(value: object) -> Any:
    if isinstance(value, NumText):
        return msgspec.Raw(value.text.encode())
    raise TypeError(f"{type(value).__name__} is not JSON")


def _json(value: object) -> str:
    try:
        return msgspec.json.encode(value, enc_hook=_encode_hook).decode()
    except (TypeError, msgspec.EncodeError) as exc:
        raise PatternError(f"event: a selected value cannot be written as JSON: {exc}") from None


def _compile_path(path: object, where: str) -> tuple[str | int, ...]:
    if not isinstance(path, str) or not path.startswith("$"):
        raise PatternError(f"{where}: a JSON path must be a string starting with '$', got {path!r}")
    steps: list[str | int] = []
    pos = 1
    while pos < len(path):
        found = _STEP.match(path, pos)
        if found is None:
            raise PatternError(
                f"{where}: unsupported JSON path {path!r} at position {pos} (use $.a.b, "
                "$.a[0] or $['a.b'])"
            )
        name, index, single, double = found.groups()
        if index is not None:
            steps.append(int(index))
        else:
            steps.append(name if name is not None else single if single is not None else double)
        pos = found.end()
    return tuple(steps)


def _select(event: Any, steps: tuple[str | int, ...]) -> Any:
    value = event
    for step in steps:
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                return _MISSING
            value = value[step]
        else:
            if not isinstance(value, dict) or step not in value:
                return _MISSING
            value = value[step]
    return value


def _contexts(template: str) -> list[tuple[int, int, str, str]]:
    """``(start, end, name, context)`` of each placeholder in ``template``."""
    stripped = template.lstrip()
    is_json = stripped.startswith(("{", "["))
    found = []
    in_string = False
    pos = 0
    for match in _PLACEHOLDER.finditer(template):
        if is_json:
            i = pos
            while i < match.start():
                char = template[i]
                if char == "\\" and in_string:
                    i += 2
                    continue
                if char == '"':
                    in_string = not in_string
                i += 1
            pos = match.end()
            context = _QUOTED if in_string else _RAW
        else:
            context = _TEXT
        found.append((match.start(), match.end(), match.group(1), context))
    return found


class InputTransformer:
    """Rewrites an event for a target, like EventBridge's input transformer.

    ``paths`` maps variable names to JSON paths into the event (``$.detail.state``,
    ``$.resources[0]``, ``$['odd.key']``); ``template`` uses them as ``<name>``. In a JSON
    template a placeholder inside a string is replaced by the value's text (escaped for JSON),
    and outside one by the value as JSON (strings get their quotes). In a plain-text template,
    strings are inserted as they are and other values as JSON. A path that selects nothing
    gives ``null`` (or an empty string inside a string).

    Reserved placeholders: ``<aws.events.event>`` (the event without its ``detail``) and
    ``<aws.events.event.json>`` (the whole event) -- both only where a JSON value goes --
    ``<aws.events.rule-name>``, ``<aws.events.rule-arn>`` and
    ``<aws.events.event.ingestion-time>``, given to :meth:`apply`.
    """

    __slots__ = ("_parts", "_selection", "paths", "template")

    def __init__(self, paths: dict[str, str], template: str) -> None:
        if not isinstance(paths, dict):
            raise PatternError("paths: must be an object mapping names to JSON paths")
        if len(paths) > MAX_VARIABLES:
            raise PatternError(f"paths: at most {MAX_VARIABLES} variables, got {len(paths)}")
        if not isinstance(template, str) or not template:
            raise PatternError("template: must be a non-empty string")
        if len(template) > MAX_TEMPLATE_LENGTH:
            raise PatternError(f"template: longer than {MAX_TEMPLATE_LENGTH} characters")
        compiled: dict[str, tuple[str | int, ...]] = {}
        for name, path in paths.items():
            where = f"paths.{name}"
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
                raise PatternError(
                    f"{where}: a variable name uses only letters, digits, '_', '-' and '.'"
                )
            if name in _RESERVED or name.lower().startswith("aws."):
                raise PatternError(f"{where}: {name!r} is reserved")
            compiled[name] = _compile_path(path, where)
        self.paths = dict(paths)
        self.template = template
        self._selection: tuple[str | int, ...] | None = None
        self._parts: list[tuple[str, str, str, tuple[str | int, ...] | None]] = []
        pos = 0
        dummy = []
        for start, end, name, context in _contexts(template):
            if name not in compiled and name not in _RESERVED:
                raise PatternError(
                    f"template: unknown placeholder <{name}> (not in paths, not reserved)"
                )
            if name in _WHOLE_EVENT and context == _QUOTED:
                raise PatternError(
                    f"template: <{name}> can only stand where a JSON value goes, not in a string"
                )
            literal = template[pos:start]
            self._parts.append((literal, name, context, compiled.get(name)))
            dummy.append(literal + ("null" if context == _RAW else "x"))
            pos = end
        self._parts.append((template[pos:], "", "", None))
        dummy.append(template[pos:])
        if template.lstrip().startswith(("{", "[")):
            try:
                msgspec.json.decode("".join(dummy))
            except msgspec.DecodeError as exc:
                raise PatternError(f"template: not valid JSON: {exc}") from None

    @classmethod
    def path(cls, path: str) -> InputTransformer:
        """An InputPath: ``apply`` returns the JSON of the part of the event at ``path``."""
        transformer = cls({}, "<aws.events.event.json>")
        transformer._selection = _compile_path(path, "path")
        transformer.paths = {"": path}
        return transformer

    def __repr__(self) -> str:
        return f"InputTransformer({self.paths!r}, {self.template!r})"

    def apply(
        self,
        event: Any,
        *,
        rule_name: str = "",
        rule_arn: str = "",
        ingestion_time: dt.datetime | None = None,
    ) -> str:
        """The text to send to the target for ``event`` (a dict, or JSON text)."""
        if isinstance(event, str | bytes | bytearray | memoryview):
            event = decode_event(event if isinstance(event, str) else bytes(event))
        if not isinstance(event, dict):
            raise PatternError(f"event: must be a JSON object, not {type(event).__name__}")
        if self._selection is not None:
            value = _select(event, self._selection)
            return "null" if value is _MISSING else _json(value)
        out: list[str] = []
        for literal, name, context, steps in self._parts:
            out.append(literal)
            if not name:
                continue
            if steps is not None:
                value = _select(event, steps)
            elif name == EVENT_JSON:
                value = event
            elif name == EVENT:
                value = {k: v for k, v in event.items() if k != "detail"}
            elif name == RULE_NAME:
                value = rule_name
            elif name == RULE_ARN:
                value = rule_arn
            else:
                moment = ingestion_time or dt.datetime.now(dt.UTC)
                value = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
            out.append(_render(value, context))
        return "".join(out)


def _render(value: object, context: str) -> str:
    if value is _MISSING:
        return "null" if context != _QUOTED else ""
    if context == _RAW:
        return _json(value)
    text = value if isinstance(value, str) else _json(value)
    if context == _QUOTED:
        return _json(text)[1:-1]
    return text
