"""Validation of an Amazon States Language definition, field by field, into the typed model of
:mod:`setpiece.workflows._model`.

:class:`Validator` checks every state's fields against its type and query language (JSONPath or
JSONata), compiles paths, checks intrinsic functions and JSONata syntax, retriers, catchers,
Choice rules, transitions and reachability. A failure is a
:class:`~setpiece.errors.DefinitionError` whose message names the state and the field
(``States.Choose.Choices[0]: Variable must be a JSONPath starting with "$"``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from setpiece.errors import DefinitionError
from setpiece.workflows import _intrinsics, _jsonata
from setpiece.workflows._choice import COMPARATORS
from setpiece.workflows._context import parse_time
from setpiece.workflows._model import (
    STATE_TYPES,
    Catcher,
    QueryLanguage,
    Retrier,
    State,
    StateMachine,
)
from setpiece.workflows._paths import JsonPath, PathSyntaxError, compile_path

__all__ = ["Validator"]

_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_COMMON = {"Type", "Comment", "QueryLanguage"}
_FLOW = {"Next", "End"}
_JSONPATH_IO = {"InputPath", "OutputPath"}
_FIELDS: dict[str, dict[str, set[str]]] = {
    # type -> {"both": ..., "JSONPath": ..., "JSONata": ...}
    "Pass": {
        "both": _FLOW | {"Assign"},
        "JSONPath": _JSONPATH_IO | {"Parameters", "Result", "ResultPath"},
        "JSONata": {"Output"},
    },
    "Task": {
        "both": _FLOW
        | {
            "Resource",
            "Retry",
            "Catch",
            "TimeoutSeconds",
            "HeartbeatSeconds",
            "Assign",
            "Credentials",
        },
        "JSONPath": _JSONPATH_IO
        | {
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "TimeoutSecondsPath",
            "HeartbeatSecondsPath",
        },
        "JSONata": {"Arguments", "Output"},
    },
    "Choice": {
        "both": {"Choices", "Default", "Assign"},
        "JSONPath": _JSONPATH_IO,
        "JSONata": {"Output"},
    },
    "Wait": {
        "both": _FLOW | {"Seconds", "Timestamp", "Assign"},
        "JSONPath": _JSONPATH_IO | {"SecondsPath", "TimestampPath"},
        "JSONata": {"Output"},
    },
    "Succeed": {"both": set(), "JSONPath": _JSONPATH_IO, "JSONata": {"Output"}},
    "Fail": {
        "both": {"Error", "Cause"},
        "JSONPath": {"ErrorPath", "CausePath"},
        "JSONata": set(),
    },
    "Parallel": {
        "both": _FLOW | {"Branches", "Retry", "Catch", "Assign"},
        "JSONPath": _JSONPATH_IO | {"Parameters", "ResultSelector", "ResultPath"},
        "JSONata": {"Arguments", "Output"},
    },
    "Map": {
        "both": _FLOW
        | {
            "ItemProcessor",
            "Iterator",
            "ItemSelector",
            "ItemReader",
            "ItemBatcher",
            "ResultWriter",
            "MaxConcurrency",
            "ToleratedFailureCount",
            "ToleratedFailurePercentage",
            "Label",
            "Retry",
            "Catch",
            "Assign",
        },
        "JSONPath": _JSONPATH_IO
        | {
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "ItemsPath",
            "MaxConcurrencyPath",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentagePath",
        },
        "JSONata": {"Items", "Output"},
    },
}
_RETRIER_FIELDS = {
    "ErrorEquals",
    "IntervalSeconds",
    "MaxAttempts",
    "BackoffRate",
    "MaxDelaySeconds",
    "JitterStrategy",
    "Comment",
}
_CATCHER_FIELDS = {"ErrorEquals", "Next", "ResultPath", "Output", "Assign", "Comment"}
_TOP_FIELDS = {"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class Validator:
    """Checks a definition and builds its model; :meth:`machine` is the entry point."""

    def fail(self, where: str, message: str) -> DefinitionError:
        return DefinitionError(f"{where}: {message}" if where else message)

    # -- machines -------------------------------------------------------------------------
    def machine(
        self, d: Mapping[str, Any], where: str, inherited: QueryLanguage, *, top: bool = False
    ) -> StateMachine:
        here = where or "definition"
        allowed = (
            _TOP_FIELDS
            if top
            else {"StartAt", "States", "Comment", "ProcessorConfig", "QueryLanguage"}
        )
        for key in d:
            if key not in allowed:
                raise self.fail(here, f"unknown field {key!r}")
        language: QueryLanguage = inherited
        if "QueryLanguage" in d:
            ql = d["QueryLanguage"]
            if ql not in ("JSONPath", "JSONata"):
                raise self.fail(here, 'QueryLanguage must be "JSONPath" or "JSONata"')
            if not top and inherited == "JSONata" and ql == "JSONPath":
                raise self.fail(here, "QueryLanguage cannot go back to JSONPath inside JSONata")
            language = ql
        if "Comment" in d and not isinstance(d["Comment"], str):
            raise self.fail(here, "Comment must be a string")
        if top and "Version" in d and not isinstance(d["Version"], str):
            raise self.fail(here, "Version must be a string")
        timeout = d.get("TimeoutSeconds")
        if top and timeout is not None and not (_is_int(timeout) and timeout > 0):
            raise self.fail(here, "TimeoutSeconds must be a positive integer")
        states = d.get("States")
        if not isinstance(states, Mapping) or not states:
            raise self.fail(here, "States must be a non-empty object")
        start = d.get("StartAt")
        if not isinstance(start, str):
            raise self.fail(here, "StartAt is required and must be a string")
        if start not in states:
            raise self.fail(here, f"StartAt refers to an unknown state {start!r}")
        prefix = f"{where}.States" if where else "States"
        built: dict[str, State] = {}
        for name, sd in states.items():
            built[name] = self.state(name, sd, f"{prefix}.{name}", language)
        for st in built.values():
            self.check_targets(st, built, f"{prefix}.{st.name}")
        reachable = self.reachable(start, built)
        for name in built:
            if name not in reachable:
                raise self.fail(f"{prefix}.{name}", "state is not reachable from StartAt")
        if "ProcessorConfig" in d:
            self.processor_config(d["ProcessorConfig"], here)
        return StateMachine(
            start,
            built,
            language,
            d,
            timeout if _is_int(timeout) else None,
            d.get("Comment"),
        )

    def processor_config(self, pc: Any, where: str) -> None:
        if not isinstance(pc, Mapping):
            raise self.fail(where, "ProcessorConfig must be an object")
        mode = pc.get("Mode", "INLINE")
        if mode not in ("INLINE", "DISTRIBUTED"):
            raise self.fail(where, 'ProcessorConfig.Mode must be "INLINE" or "DISTRIBUTED"')
        et = pc.get("ExecutionType")
        if et is not None and et not in ("STANDARD", "EXPRESS"):
            raise self.fail(where, 'ProcessorConfig.ExecutionType must be "STANDARD" or "EXPRESS"')

    def reachable(self, start: str, states: Mapping[str, State]) -> set[str]:
        seen = {start}
        todo = [start]
        while todo:
            st = states[todo.pop()]
            for target in self.targets(st):
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return seen

    def targets(self, st: State) -> list[str]:
        out = [st.next] if st.next else []
        if st.type == "Choice":
            out += [rule["Next"] for rule in st.raw["Choices"]]
            if isinstance(st.raw.get("Default"), str):
                out.append(st.raw["Default"])
        out += [c.next for c in st.catchers]
        return out

    def check_targets(self, st: State, states: Mapping[str, State], where: str) -> None:
        if st.next is not None and st.next not in states:
            raise self.fail(where, f"Next refers to an unknown state {st.next!r}")
        if st.type == "Choice":
            for i, rule in enumerate(st.raw["Choices"]):
                if rule["Next"] not in states:
                    raise self.fail(
                        f"{where}.Choices[{i}]", f"Next refers to an unknown state {rule['Next']!r}"
                    )
            default = st.raw.get("Default")
            if default is not None and default not in states:
                raise self.fail(where, f"Default refers to an unknown state {default!r}")
        for i, c in enumerate(st.catchers):
            if c.next not in states:
                raise self.fail(
                    f"{where}.Catch[{i}]", f"Next refers to an unknown state {c.next!r}"
                )

    # -- states ---------------------------------------------------------------------------
    def state(self, name: Any, sd: Any, where: str, inherited: QueryLanguage) -> State:
        if not isinstance(name, str) or not name or len(name) > 80:
            raise self.fail(where, "state names must be 1 to 80 characters")
        if not isinstance(sd, Mapping):
            raise self.fail(where, "a state must be an object")
        typ = sd.get("Type")
        if typ not in STATE_TYPES:
            raise self.fail(where, f"Type must be one of {', '.join(STATE_TYPES)}, not {typ!r}")
        language: QueryLanguage = inherited
        if "QueryLanguage" in sd:
            if sd["QueryLanguage"] not in ("JSONPath", "JSONata"):
                raise self.fail(where, 'QueryLanguage must be "JSONPath" or "JSONata"')
            language = sd["QueryLanguage"]
        spec = _FIELDS[typ]
        other: QueryLanguage = "JSONata" if language == "JSONPath" else "JSONPath"
        for key in sd:
            if key in _COMMON or key in spec["both"] or key in spec[language] or key in _FLOW:
                continue
            if key in spec[other]:
                raise self.fail(
                    where, f"field {key!r} is not supported in {language} states (use {other})"
                )
            raise self.fail(where, f"field {key!r} is not valid in a {typ} state")
        if "Comment" in sd and not isinstance(sd["Comment"], str):
            raise self.fail(where, "Comment must be a string")

        # flow
        nxt = sd.get("Next")
        end = sd.get("End", False)
        if typ in ("Choice", "Succeed", "Fail"):
            if "Next" in sd or "End" in sd:
                raise self.fail(where, f"a {typ} state cannot have Next or End")
        else:
            if nxt is not None and not isinstance(nxt, str):
                raise self.fail(where, "Next must be a state name")
            if "End" in sd and not isinstance(end, bool):
                raise self.fail(where, "End must be a boolean")
            if nxt is not None and end:
                raise self.fail(where, "a state cannot have both Next and End")
            if nxt is None and not end:
                raise self.fail(where, 'a non-terminal state needs "Next" or "End": true')

        kwargs: dict[str, Any] = {}
        if language == "JSONPath":
            for key in ("InputPath", "OutputPath"):
                if key in sd:
                    kwargs["has_" + _snake(key)] = True
                    kwargs[_snake(key)] = self.path(sd[key], where, key, nullable=True)
            if "ResultPath" in sd:
                kwargs["has_result_path"] = True
                kwargs["result_path"] = self.path(
                    sd["ResultPath"], where, "ResultPath", nullable=True, reference=True
                )
            for key in ("Parameters", "ResultSelector", "ItemSelector"):
                if key in sd:
                    self.template(
                        sd[key], where, key, require_object=key != "Parameters" or typ != "Pass"
                    )
        else:
            for key in (
                "Arguments",
                "Output",
                "Items",
                "Seconds",
                "Timestamp",
                "TimeoutSeconds",
                "HeartbeatSeconds",
                "MaxConcurrency",
                "ToleratedFailureCount",
                "ToleratedFailurePercentage",
                "Error",
                "Cause",
                "ItemSelector",
            ):
                if key in sd:
                    self.jsonata(sd[key], where, key)
        if "Assign" in sd:
            self.assign(sd["Assign"], where, "Assign", language)

        if "Retry" in sd:
            kwargs["retriers"] = self.retriers(sd["Retry"], where)
        if "Catch" in sd:
            kwargs["catchers"] = self.catchers(sd["Catch"], where, language)

        check = getattr(self, "state_" + typ.lower())
        extra = check(sd, where, language)
        if extra:
            kwargs.update(extra)
        kwargs["entered_event"] = typ + "StateEntered"
        kwargs["exited_event"] = typ + "StateExited"
        kwargs["passthrough"] = (
            typ == "Pass"
            and language == "JSONPath"
            and not any(
                k in sd
                for k in ("InputPath", "OutputPath", "Parameters", "Result", "ResultPath", "Assign")
            )
        )
        kwargs["uses_task_token"] = typ == "Task" and str(sd.get("Resource")).endswith(
            ".waitForTaskToken"
        )
        return State(name, typ, language, sd, nxt, bool(end), **kwargs)

    # -- fields ---------------------------------------------------------------------------
    def path(
        self,
        value: Any,
        where: str,
        key: str,
        *,
        nullable: bool = False,
        reference: bool = False,
        variables: bool = True,
    ) -> JsonPath | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value.startswith("$"):
            raise self.fail(where, f'{key} must be a JSONPath starting with "$"')
        try:
            p = compile_path(value)
        except PathSyntaxError as e:
            raise self.fail(where, f"{key} is not a valid JSONPath: {e}") from None
        if reference:
            if not p.is_reference:
                raise self.fail(where, f"{key} must be a reference path (names and indexes only)")
            if p.root != "$":
                raise self.fail(
                    where, f'{key} must start with "$." (not a context or variable path)'
                )
        if not variables and p.variable is not None:
            raise self.fail(where, f"{key} cannot refer to a variable")
        return p

    def dollar_value(self, value: Any, where: str, key: str) -> None:
        if not isinstance(value, str):
            raise self.fail(
                where, f"the value of {key!r} must be a string (a path or an intrinsic function)"
            )
        if _intrinsics.is_intrinsic(value):
            try:
                _intrinsics.parse(value)
            except ValueError as e:
                raise self.fail(where, f"{key}: {e}") from None
            return
        self.path(value, where, key)

    def template(self, value: Any, where: str, key: str, *, require_object: bool = True) -> None:
        if require_object and not isinstance(value, Mapping):
            raise self.fail(where, f"{key} must be an object")
        self._template(value, where, key)

    def _template(self, value: Any, where: str, key: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                if k.endswith(".$"):
                    self.dollar_value(v, where, f"{key}.{k}")
                else:
                    self._template(v, where, f"{key}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self._template(v, where, f"{key}[{i}]")

    def jsonata(self, value: Any, where: str, key: str) -> None:
        if isinstance(value, str):
            if value.startswith("{%") or value.endswith("%}"):
                if not _jsonata.is_expression(value):
                    raise self.fail(
                        where, f'{key}: a JSONata expression must be written "{{% ... %}}"'
                    )
                expr = _jsonata.strip(value)
                if not expr:
                    raise self.fail(where, f"{key}: the JSONata expression is empty")
                err = _jsonata.syntax_error(expr)
                if err:
                    raise self.fail(where, f"{key}: invalid JSONata expression {expr!r}: {err}")
        elif isinstance(value, Mapping):
            for k, v in value.items():
                self.jsonata(v, where, f"{key}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.jsonata(v, where, f"{key}[{i}]")

    def assign(self, value: Any, where: str, key: str, language: QueryLanguage) -> None:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"{key} must be an object")
        for k, v in value.items():
            name = k[:-2] if language == "JSONPath" and k.endswith(".$") else k
            if not _VARIABLE_NAME.fullmatch(name) or name == "states":
                raise self.fail(where, f"{key}: {name!r} is not a valid variable name")
            if language == "JSONPath":
                if k.endswith(".$"):
                    self.dollar_value(v, where, f"{key}.{k}")
                else:
                    self._template(v, where, f"{key}.{k}")
            else:
                self.jsonata(v, where, f"{key}.{k}")

    def positive_int(
        self, sd: Mapping[str, Any], key: str, where: str, *, zero: bool = False
    ) -> None:
        if key in sd:
            v = sd[key]
            if _jsonata.is_expression(v):
                return
            if not _is_int(v) or v < (0 if zero else 1):
                raise self.fail(
                    where, f"{key} must be {'a non-negative' if zero else 'a positive'} integer"
                )

    def exclusive(
        self, sd: Mapping[str, Any], keys: tuple[str, ...], where: str, *, required: bool = False
    ) -> None:
        present = [k for k in keys if k in sd]
        if len(present) > 1:
            raise self.fail(where, f"only one of {', '.join(keys)} may be given")
        if required and not present:
            raise self.fail(where, f"one of {', '.join(keys)} is required")

    def retriers(self, value: Any, where: str) -> tuple[Retrier, ...]:
        if not isinstance(value, list):
            raise self.fail(where, "Retry must be an array")
        out = []
        for i, r in enumerate(value):
            w = f"{where}.Retry[{i}]"
            if not isinstance(r, Mapping):
                raise self.fail(w, "a retrier must be an object")
            for k in r:
                if k not in _RETRIER_FIELDS:
                    raise self.fail(w, f"unknown field {k!r}")
            errors = self.error_equals(r, w, last=i == len(value) - 1)
            interval = r.get("IntervalSeconds", 1)
            if not _is_int(interval) or interval < 1:
                raise self.fail(w, "IntervalSeconds must be a positive integer")
            attempts = r.get("MaxAttempts", 3)
            if not _is_int(attempts) or attempts < 0:
                raise self.fail(w, "MaxAttempts must be a non-negative integer")
            backoff = r.get("BackoffRate", 2.0)
            if not _is_number(backoff) or backoff < 1.0:
                raise self.fail(w, "BackoffRate must be a number >= 1.0")
            max_delay = r.get("MaxDelaySeconds")
            if max_delay is not None and (not _is_int(max_delay) or max_delay < 1):
                raise self.fail(w, "MaxDelaySeconds must be a positive integer")
            jitter = r.get("JitterStrategy", "NONE")
            if jitter not in ("FULL", "NONE"):
                raise self.fail(w, 'JitterStrategy must be "FULL" or "NONE"')
            out.append(
                Retrier(
                    errors,
                    float(interval),
                    attempts,
                    float(backoff),
                    None if max_delay is None else float(max_delay),
                    jitter,
                )
            )
        return tuple(out)

    def error_equals(self, r: Mapping[str, Any], where: str, *, last: bool) -> tuple[str, ...]:
        errors = r.get("ErrorEquals")
        if (
            not isinstance(errors, list)
            or not errors
            or not all(isinstance(e, str) for e in errors)
        ):
            raise self.fail(where, "ErrorEquals must be a non-empty array of error names")
        if "States.ALL" in errors:
            if len(errors) != 1:
                raise self.fail(where, 'ErrorEquals: "States.ALL" must appear alone')
            if not last:
                raise self.fail(
                    where, 'ErrorEquals: "States.ALL" must be in the last retrier or catcher'
                )
        return tuple(errors)

    def catchers(self, value: Any, where: str, language: QueryLanguage) -> tuple[Catcher, ...]:
        if not isinstance(value, list):
            raise self.fail(where, "Catch must be an array")
        out = []
        for i, c in enumerate(value):
            w = f"{where}.Catch[{i}]"
            if not isinstance(c, Mapping):
                raise self.fail(w, "a catcher must be an object")
            for k in c:
                if k not in _CATCHER_FIELDS:
                    raise self.fail(w, f"unknown field {k!r}")
            errors = self.error_equals(c, w, last=i == len(value) - 1)
            nxt = c.get("Next")
            if not isinstance(nxt, str):
                raise self.fail(w, "Next is required and must be a state name")
            if language == "JSONPath":
                if "Output" in c:
                    raise self.fail(w, "Output is only supported in JSONata states")
                rp = (
                    self.path(c["ResultPath"], w, "ResultPath", nullable=True, reference=True)
                    if "ResultPath" in c
                    else None
                )
            else:
                if "ResultPath" in c:
                    raise self.fail(w, "ResultPath is not supported in JSONata states (use Output)")
                rp = None
                if "Output" in c:
                    self.jsonata(c["Output"], w, "Output")
            if "Assign" in c:
                self.assign(c["Assign"], w, "Assign", language)
            out.append(
                Catcher(
                    errors,
                    nxt,
                    "ResultPath" in c,
                    rp,
                    c.get("Output"),
                    "Output" in c,
                    c.get("Assign"),
                )
            )
        return tuple(out)

    # -- per type -------------------------------------------------------------------------
    def state_pass(self, sd: Mapping[str, Any], where: str, language: QueryLanguage) -> None:
        return None

    def state_succeed(self, sd: Mapping[str, Any], where: str, language: QueryLanguage) -> None:
        return None

    def state_fail(self, sd: Mapping[str, Any], where: str, language: QueryLanguage) -> None:
        self.exclusive(sd, ("Error", "ErrorPath"), where)
        self.exclusive(sd, ("Cause", "CausePath"), where)
        for key in ("Error", "Cause"):
            if key in sd and not isinstance(sd[key], str):
                raise self.fail(where, f"{key} must be a string")
        for key in ("ErrorPath", "CausePath"):
            if key in sd:
                self.dollar_value(sd[key], where, key)

    def state_wait(self, sd: Mapping[str, Any], where: str, language: QueryLanguage) -> None:
        self.exclusive(
            sd, ("Seconds", "Timestamp", "SecondsPath", "TimestampPath"), where, required=True
        )
        if "Seconds" in sd:
            self.positive_int(sd, "Seconds", where, zero=True)
        if "Timestamp" in sd and not _jsonata.is_expression(sd["Timestamp"]):
            ts = sd["Timestamp"]
            if not isinstance(ts, str) or parse_time(ts) is None:
                raise self.fail(
                    where, "Timestamp must be an ISO-8601 timestamp such as 2016-03-14T01:59:00Z"
                )
        for key in ("SecondsPath", "TimestampPath"):
            if key in sd:
                self.path(sd[key], where, key)

    def state_task(self, sd: Mapping[str, Any], where: str, language: QueryLanguage) -> None:
        res = sd.get("Resource")
        if not isinstance(res, str) or not res:
            raise self.fail(where, "Resource is required and must be a string")
        self.exclusive(sd, ("TimeoutSeconds", "TimeoutSecondsPath"), where)
        self.exclusive(sd, ("HeartbeatSeconds", "HeartbeatSecondsPath"), where)
        self.positive_int(sd, "TimeoutSeconds", where)
        self.positive_int(sd, "HeartbeatSeconds", where)
        for key in ("TimeoutSecondsPath", "HeartbeatSecondsPath"):
            if key in sd:
                self.path(sd[key], where, key)
        t, h = sd.get("TimeoutSeconds"), sd.get("HeartbeatSeconds")
        if isinstance(t, int) and isinstance(h, int) and h >= t:
            raise self.fail(where, "HeartbeatSeconds must be smaller than TimeoutSeconds")
        if language == "JSONata" and "Arguments" in sd:
            a = sd["Arguments"]
            if not (isinstance(a, Mapping) or _jsonata.is_expression(a)):
                raise self.fail(where, "Arguments must be an object or a JSONata expression")

    def state_parallel(
        self, sd: Mapping[str, Any], where: str, language: QueryLanguage
    ) -> dict[str, Any]:
        branches = sd.get("Branches")
        if not isinstance(branches, list) or not branches:
            raise self.fail(where, "Branches must be a non-empty array of state machines")
        built = []
        for i, b in enumerate(branches):
            if not isinstance(b, Mapping):
                raise self.fail(f"{where}.Branches[{i}]", "a branch must be an object")
            built.append(self.machine(b, f"{where}.Branches[{i}]", language))
        return {"branches": tuple(built)}

    def state_map(
        self, sd: Mapping[str, Any], where: str, language: QueryLanguage
    ) -> dict[str, Any]:
        self.exclusive(sd, ("ItemProcessor", "Iterator"), where, required=True)
        self.exclusive(sd, ("ItemSelector", "Parameters"), where)
        self.exclusive(sd, ("MaxConcurrency", "MaxConcurrencyPath"), where)
        self.exclusive(sd, ("ToleratedFailureCount", "ToleratedFailureCountPath"), where)
        self.exclusive(sd, ("ToleratedFailurePercentage", "ToleratedFailurePercentagePath"), where)
        self.positive_int(sd, "MaxConcurrency", where, zero=True)
        self.positive_int(sd, "ToleratedFailureCount", where, zero=True)
        if "ToleratedFailurePercentage" in sd and not _jsonata.is_expression(
            sd["ToleratedFailurePercentage"]
        ):
            p = sd["ToleratedFailurePercentage"]
            if not _is_number(p) or not 0 <= p <= 100:
                raise self.fail(
                    where, "ToleratedFailurePercentage must be a number between 0 and 100"
                )
        for key in (
            "ItemsPath",
            "MaxConcurrencyPath",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentagePath",
        ):
            if key in sd:
                self.path(sd[key], where, key)
        if "ItemBatcher" in sd and not isinstance(sd["ItemBatcher"], Mapping):
            raise self.fail(where, "ItemBatcher must be an object")
        if "ItemReader" in sd and not isinstance(sd["ItemReader"], Mapping):
            raise self.fail(where, "ItemReader must be an object")
        if "Label" in sd and not isinstance(sd["Label"], str):
            raise self.fail(where, "Label must be a string")
        key = "ItemProcessor" if "ItemProcessor" in sd else "Iterator"
        proc = sd[key]
        if not isinstance(proc, Mapping):
            raise self.fail(where, f"{key} must be an object")
        return {"processor": self.machine(proc, f"{where}.{key}", language)}

    def state_choice(self, sd: Mapping[str, Any], where: str, language: QueryLanguage) -> None:
        choices = sd.get("Choices")
        if not isinstance(choices, list) or not choices:
            raise self.fail(where, "Choices must be a non-empty array")
        if "Default" in sd and not isinstance(sd["Default"], str):
            raise self.fail(where, "Default must be a state name")
        for i, rule in enumerate(choices):
            w = f"{where}.Choices[{i}]"
            if not isinstance(rule, Mapping):
                raise self.fail(w, "a choice rule must be an object")
            if not isinstance(rule.get("Next"), str):
                raise self.fail(w, "Next is required and must be a state name")
            if "Assign" in rule:
                self.assign(rule["Assign"], w, "Assign", language)
            if language == "JSONata":
                for k in rule:
                    if k not in ("Condition", "Next", "Assign", "Output", "Comment"):
                        raise self.fail(
                            w, f"field {k!r} is not valid in a JSONata choice rule (use Condition)"
                        )
                if "Condition" not in rule:
                    raise self.fail(w, "Condition is required in JSONata choice rules")
                cond = rule["Condition"]
                if not (isinstance(cond, bool) or _jsonata.is_expression(cond)):
                    raise self.fail(w, "Condition must be a boolean or a JSONata expression")
                self.jsonata(cond, w, "Condition")
                if "Output" in rule:
                    self.jsonata(rule["Output"], w, "Output")
            else:
                if "Output" in rule or "Condition" in rule:
                    raise self.fail(w, "Condition and Output are only supported in JSONata states")
                self.rule(rule, w, top=True)

    def rule(self, rule: Any, where: str, *, top: bool = False) -> None:
        if not isinstance(rule, Mapping):
            raise self.fail(where, "a choice rule must be an object")
        extra = {"Next", "Assign", "Comment"} if top else {"Comment"}
        if not top and "Next" in rule:
            raise self.fail(where, "nested choice rules cannot have Next")
        ops = [k for k in rule if k in ("And", "Or", "Not")]
        comparators = [k for k in rule if k in COMPARATORS]
        unknown = [
            k
            for k in rule
            if k not in extra and k not in COMPARATORS and k not in ("And", "Or", "Not", "Variable")
        ]
        if unknown:
            raise self.fail(where, f"unknown field {unknown[0]!r} in a choice rule")
        if ops:
            if len(ops) > 1 or comparators or "Variable" in rule:
                raise self.fail(
                    where, "a choice rule has exactly one of And, Or, Not or a comparison"
                )
            op = ops[0]
            if op == "Not":
                self.rule(rule["Not"], f"{where}.Not")
            else:
                sub = rule[op]
                if not isinstance(sub, list) or not sub:
                    raise self.fail(where, f"{op} must be a non-empty array of choice rules")
                for j, r in enumerate(sub):
                    self.rule(r, f"{where}.{op}[{j}]")
            return
        var = rule.get("Variable")
        if not isinstance(var, str) or not var.startswith("$"):
            raise self.fail(where, 'Variable must be a JSONPath starting with "$"')
        try:
            compile_path(var)
        except PathSyntaxError as e:
            raise self.fail(where, f"Variable is not a valid JSONPath: {e}") from None
        if len(comparators) != 1:
            raise self.fail(where, "a choice rule needs exactly one comparison operator")
        name = comparators[0]
        kind, _op, is_path = COMPARATORS[name]
        value = rule[name]
        if is_path:
            if not isinstance(value, str) or not value.startswith("$"):
                raise self.fail(where, f'{name} must be a JSONPath starting with "$"')
            try:
                compile_path(value)
            except PathSyntaxError as e:
                raise self.fail(where, f"{name} is not a valid JSONPath: {e}") from None
        elif kind in ("test", "boolean"):
            if not isinstance(value, bool):
                raise self.fail(where, f"{name} must be true or false")
        elif kind == "number":
            if not _is_number(value):
                raise self.fail(where, f"{name} must be a number")
        elif kind == "string":
            if not isinstance(value, str):
                raise self.fail(where, f"{name} must be a string")
        elif kind == "timestamp" and (not isinstance(value, str) or parse_time(value) is None):
            raise self.fail(
                where, f"{name} must be an ISO-8601 timestamp such as 2016-03-14T01:59:00Z"
            )


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()
