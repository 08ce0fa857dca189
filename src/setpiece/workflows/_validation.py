"""Validation of an Amazon States Language definition, field by field, into the typed model of
:mod:`setpiece.workflows._model`.

:class:`Validator` checks every state's fields against its type and query language (JSONPath or
JSONata), compiles paths, checks intrinsic functions and JSONata syntax, retriers, catchers,
Choice rules, transitions and reachability (the checks of one field's value are in
:mod:`setpiece.workflows._fields`). A failure is a
:class:`~setpiece.errors.DefinitionError` whose message names the state and the field
(``States.Choose.Choices[0]: Variable must be a JSONPath starting with "$"``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from setpiece.workflows import _jsonata
from setpiece.workflows._choice import COMPARATORS
from setpiece.workflows._context import parse_time
from setpiece.workflows._fields import (
    CATCHER_FIELDS,
    COMMON,
    FIELDS,
    FLOW,
    RETRIER_FIELDS,
    TOP_FIELDS,
    check_assign,
    check_dollar_value,
    check_exclusive,
    check_jsonata,
    check_path,
    check_positive_int,
    check_template,
    fail,
    is_int,
    is_number,
)
from setpiece.workflows._model import (
    STATE_TYPES,
    Catcher,
    QueryLanguage,
    Retrier,
    State,
    StateMachine,
)
from setpiece.workflows._paths import PathSyntaxError, compile_path

__all__ = ["Validator"]


class Validator:
    """Checks a definition and builds its model; :meth:`machine` is the entry point."""

    # -- machines -------------------------------------------------------------------------
    def machine(
        self, d: Mapping[str, Any], where: str, inherited: QueryLanguage, *, top: bool = False
    ) -> StateMachine:
        here = where or "definition"
        allowed = (
            TOP_FIELDS
            if top
            else {"StartAt", "States", "Comment", "ProcessorConfig", "QueryLanguage"}
        )
        for key in d:
            if key not in allowed:
                raise fail(here, f"unknown field {key!r}")
        language: QueryLanguage = inherited
        if "QueryLanguage" in d:
            ql = d["QueryLanguage"]
            if ql not in ("JSONPath", "JSONata"):
                raise fail(here, 'QueryLanguage must be "JSONPath" or "JSONata"')
            if not top and inherited == "JSONata" and ql == "JSONPath":
                raise fail(here, "QueryLanguage cannot go back to JSONPath inside JSONata")
            language = ql
        if "Comment" in d and not isinstance(d["Comment"], str):
            raise fail(here, "Comment must be a string")
        if top and "Version" in d and not isinstance(d["Version"], str):
            raise fail(here, "Version must be a string")
        timeout = d.get("TimeoutSeconds")
        if top and timeout is not None and not (is_int(timeout) and timeout > 0):
            raise fail(here, "TimeoutSeconds must be a positive integer")
        states = d.get("States")
        if not isinstance(states, Mapping) or not states:
            raise fail(here, "States must be a non-empty object")
        start = d.get("StartAt")
        if not isinstance(start, str):
            raise fail(here, "StartAt is required and must be a string")
        if start not in states:
            raise fail(here, f"StartAt refers to an unknown state {start!r}")
        prefix = f"{where}.States" if where else "States"
        built: dict[str, State] = {}
        for name, sd in states.items():
            built[name] = self.state(name, sd, f"{prefix}.{name}", language)
        for st in built.values():
            self.check_targets(st, built, f"{prefix}.{st.name}")
        reachable = self.reachable(start, built)
        for name in built:
            if name not in reachable:
                raise fail(f"{prefix}.{name}", "state is not reachable from StartAt")
        if "ProcessorConfig" in d:
            self.processor_config(d["ProcessorConfig"], here)
        return StateMachine(
            start,
            built,
            language,
            d,
            timeout if is_int(timeout) else None,
            d.get("Comment"),
        )

    def processor_config(self, pc: Any, where: str) -> None:
        if not isinstance(pc, Mapping):
            raise fail(where, "ProcessorConfig must be an object")
        mode = pc.get("Mode", "INLINE")
        if mode not in ("INLINE", "DISTRIBUTED"):
            raise fail(where, 'ProcessorConfig.Mode must be "INLINE" or "DISTRIBUTED"')
        et = pc.get("ExecutionType")
        if et is not None and et not in ("STANDARD", "EXPRESS"):
            raise fail(where, 'ProcessorConfig.ExecutionType must be "STANDARD" or "EXPRESS"')

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
            raise fail(where, f"Next refers to an unknown state {st.next!r}")
        if st.type == "Choice":
            for i, rule in enumerate(st.raw["Choices"]):
                if rule["Next"] not in states:
                    raise fail(
                        f"{where}.Choices[{i}]", f"Next refers to an unknown state {rule['Next']!r}"
                    )
            default = st.raw.get("Default")
            if default is not None and default not in states:
                raise fail(where, f"Default refers to an unknown state {default!r}")
        for i, c in enumerate(st.catchers):
            if c.next not in states:
                raise fail(
                    f"{where}.Catch[{i}]", f"Next refers to an unknown state {c.next!r}"
                )

    # -- states ---------------------------------------------------------------------------
    def state(self, name: Any, sd: Any, where: str, inherited: QueryLanguage) -> State:
        if not isinstance(name, str) or not name or len(name) > 80:
            raise fail(where, "state names must be 1 to 80 characters")
        if not isinstance(sd, Mapping):
            raise fail(where, "a state must be an object")
        typ = sd.get("Type")
        if typ not in STATE_TYPES:
            raise fail(where, f"Type must be one of {', '.join(STATE_TYPES)}, not {typ!r}")
        language: QueryLanguage = inherited
        if "QueryLanguage" in sd:
            if sd["QueryLanguage"] not in ("JSONPath", "JSONata"):
                raise fail(where, 'QueryLanguage must be "JSONPath" or "JSONata"')
            language = sd["QueryLanguage"]
        spec = FIELDS[typ]
        other: QueryLanguage = "JSONata" if language == "JSONPath" else "JSONPath"
        for key in sd:
            if key in COMMON or key in spec["both"] or key in spec[language] or key in FLOW:
                continue
            if key in spec[other]:
                raise fail(
                    where, f"field {key!r} is not supported in {language} states (use {other})"
                )
            raise fail(where, f"field {key!r} is not valid in a {typ} state")
        if "Comment" in sd and not isinstance(sd["Comment"], str):
            raise fail(where, "Comment must be a string")

        # flow
        nxt = sd.get("Next")
        end = sd.get("End", False)
        if typ in ("Choice", "Succeed", "Fail"):
            if "Next" in sd or "End" in sd:
                raise fail(where, f"a {typ} state cannot have Next or End")
        else:
            if nxt is not None and not isinstance(nxt, str):
                raise fail(where, "Next must be a state name")
            if "End" in sd and not isinstance(end, bool):
                raise fail(where, "End must be a boolean")
            if nxt is not None and end:
                raise fail(where, "a state cannot have both Next and End")
            if nxt is None and not end:
                raise fail(where, 'a non-terminal state needs "Next" or "End": true')

        kwargs: dict[str, Any] = {}
        if language == "JSONPath":
            for key in ("InputPath", "OutputPath"):
                if key in sd:
                    kwargs["has_" + _snake(key)] = True
                    kwargs[_snake(key)] = check_path(sd[key], where, key, nullable=True)
            if "ResultPath" in sd:
                kwargs["has_result_path"] = True
                kwargs["result_path"] = check_path(
                    sd["ResultPath"], where, "ResultPath", nullable=True, reference=True
                )
            for key in ("Parameters", "ResultSelector", "ItemSelector"):
                if key in sd:
                    check_template(
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
                    check_jsonata(sd[key], where, key)
        if "Assign" in sd:
            check_assign(sd["Assign"], where, "Assign", language)

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

    def retriers(self, value: Any, where: str) -> tuple[Retrier, ...]:
        if not isinstance(value, list):
            raise fail(where, "Retry must be an array")
        out = []
        for i, r in enumerate(value):
            w = f"{where}.Retry[{i}]"
            if not isinstance(r, Mapping):
                raise fail(w, "a retrier must be an object")
            for k in r:
                if k not in RETRIER_FIELDS:
                    raise fail(w, f"unknown field {k!r}")
            errors = self.error_equals(r, w, last=i == len(value) - 1)
            interval = r.get("IntervalSeconds", 1)
            if not is_int(interval) or interval < 1:
                raise fail(w, "IntervalSeconds must be a positive integer")
            attempts = r.get("MaxAttempts", 3)
            if not is_int(attempts) or attempts < 0:
                raise fail(w, "MaxAttempts must be a non-negative integer")
            backoff = r.get("BackoffRate", 2.0)
            if not is_number(backoff) or backoff < 1.0:
                raise fail(w, "BackoffRate must be a number >= 1.0")
            max_delay = r.get("MaxDelaySeconds")
            if max_delay is not None and (not is_int(max_delay) or max_delay < 1):
                raise fail(w, "MaxDelaySeconds must be a positive integer")
            jitter = r.get("JitterStrategy", "NONE")
            if jitter not in ("FULL", "NONE"):
                raise fail(w, 'JitterStrategy must be "FULL" or "NONE"')
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
            raise fail(where, "ErrorEquals must be a non-empty array of error names")
        if "States.ALL" in errors:
            if len(errors) != 1:
                raise fail(where, 'ErrorEquals: "States.ALL" must appear alone')
            if not last:
                raise fail(
                    where, 'ErrorEquals: "States.ALL" must be in the last retrier or catcher'
                )
        return tuple(errors)

    def catchers(self, value: Any, where: str, language: QueryLanguage) -> tuple[Catcher, ...]:
        if not isinstance(value, list):
            raise fail(where, "Catch must be an array")
        out = []
        for i, c in enumerate(value):
            w = f"{where}.Catch[{i}]"
            if not isinstance(c, Mapping):
                raise fail(w, "a catcher must be an object")
            for k in c:
                if k not in CATCHER_FIELDS:
                    raise fail(w, f"unknown field {k!r}")
            errors = self.error_equals(c, w, last=i == len(value) - 1)
            nxt = c.get("Next")
            if not isinstance(nxt, str):
                raise fail(w, "Next is required and must be a state name")
            if language == "JSONPath":
                if "Output" in c:
                    raise fail(w, "Output is only supported in JSONata states")
                rp = (
                    check_path(c["ResultPath"], w, "ResultPath", nullable=True, reference=True)
                    if "ResultPath" in c
                    else None
                )
            else:
                if "ResultPath" in c:
                    raise fail(w, "ResultPath is not supported in JSONata states (use Output)")
                rp = None
                if "Output" in c:
                    check_jsonata(c["Output"], w, "Output")
            if "Assign" in c:
                check_assign(c["Assign"], w, "Assign", language)
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
        check_exclusive(sd, ("Error", "ErrorPath"), where)
        check_exclusive(sd, ("Cause", "CausePath"), where)
        for key in ("Error", "Cause"):
            if key in sd and not isinstance(sd[key], str):
                raise fail(where, f"{key} must be a string")
        for key in ("ErrorPath", "CausePath"):
            if key in sd:
                check_dollar_value(sd[key], where, key)

    def state_wait(self, sd: Mapping[str, Any], where: str, language: QueryLanguage) -> None:
        check_exclusive(
            sd, ("Seconds", "Timestamp", "SecondsPath", "TimestampPath"), where, required=True
        )
        if "Seconds" in sd:
            check_positive_int(sd, "Seconds", where, zero=True)
        if "Timestamp" in sd and not _jsonata.is_expression(sd["Timestamp"]):
            ts = sd["Timestamp"]
            if not isinstance(ts, str) or parse_time(ts) is None:
                raise fail(
                    where, "Timestamp must be an ISO-8601 timestamp such as 2016-03-14T01:59:00Z"
                )
        for key in ("SecondsPath", "TimestampPath"):
            if key in sd:
                check_path(sd[key], where, key)

    def state_task(self, sd: Mapping[str, Any], where: str, language: QueryLanguage) -> None:
        res = sd.get("Resource")
        if not isinstance(res, str) or not res:
            raise fail(where, "Resource is required and must be a string")
        check_exclusive(sd, ("TimeoutSeconds", "TimeoutSecondsPath"), where)
        check_exclusive(sd, ("HeartbeatSeconds", "HeartbeatSecondsPath"), where)
        check_positive_int(sd, "TimeoutSeconds", where)
        check_positive_int(sd, "HeartbeatSeconds", where)
        for key in ("TimeoutSecondsPath", "HeartbeatSecondsPath"):
            if key in sd:
                check_path(sd[key], where, key)
        t, h = sd.get("TimeoutSeconds"), sd.get("HeartbeatSeconds")
        if isinstance(t, int) and isinstance(h, int) and h >= t:
            raise fail(where, "HeartbeatSeconds must be smaller than TimeoutSeconds")
        if language == "JSONata" and "Arguments" in sd:
            a = sd["Arguments"]
            if not (isinstance(a, Mapping) or _jsonata.is_expression(a)):
                raise fail(where, "Arguments must be an object or a JSONata expression")

    def state_parallel(
        self, sd: Mapping[str, Any], where: str, language: QueryLanguage
    ) -> dict[str, Any]:
        branches = sd.get("Branches")
        if not isinstance(branches, list) or not branches:
            raise fail(where, "Branches must be a non-empty array of state machines")
        built = []
        for i, b in enumerate(branches):
            if not isinstance(b, Mapping):
                raise fail(f"{where}.Branches[{i}]", "a branch must be an object")
            built.append(self.machine(b, f"{where}.Branches[{i}]", language))
        return {"branches": tuple(built)}

    def state_map(
        self, sd: Mapping[str, Any], where: str, language: QueryLanguage
    ) -> dict[str, Any]:
        check_exclusive(sd, ("ItemProcessor", "Iterator"), where, required=True)
        check_exclusive(sd, ("ItemSelector", "Parameters"), where)
        check_exclusive(sd, ("MaxConcurrency", "MaxConcurrencyPath"), where)
        check_exclusive(sd, ("ToleratedFailureCount", "ToleratedFailureCountPath"), where)
        check_exclusive(sd, ("ToleratedFailurePercentage", "ToleratedFailurePercentagePath"), where)
        check_positive_int(sd, "MaxConcurrency", where, zero=True)
        check_positive_int(sd, "ToleratedFailureCount", where, zero=True)
        if "ToleratedFailurePercentage" in sd and not _jsonata.is_expression(
            sd["ToleratedFailurePercentage"]
        ):
            p = sd["ToleratedFailurePercentage"]
            if not is_number(p) or not 0 <= p <= 100:
                raise fail(
                    where, "ToleratedFailurePercentage must be a number between 0 and 100"
                )
        for key in (
            "ItemsPath",
            "MaxConcurrencyPath",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentagePath",
        ):
            if key in sd:
                check_path(sd[key], where, key)
        if "ItemBatcher" in sd and not isinstance(sd["ItemBatcher"], Mapping):
            raise fail(where, "ItemBatcher must be an object")
        if "ItemReader" in sd and not isinstance(sd["ItemReader"], Mapping):
            raise fail(where, "ItemReader must be an object")
        if "Label" in sd and not isinstance(sd["Label"], str):
            raise fail(where, "Label must be a string")
        key = "ItemProcessor" if "ItemProcessor" in sd else "Iterator"
        proc = sd[key]
        if not isinstance(proc, Mapping):
            raise fail(where, f"{key} must be an object")
        return {"processor": self.machine(proc, f"{where}.{key}", language)}

    def state_choice(self, sd: Mapping[str, Any], where: str, language: QueryLanguage) -> None:
        choices = sd.get("Choices")
        if not isinstance(choices, list) or not choices:
            raise fail(where, "Choices must be a non-empty array")
        if "Default" in sd and not isinstance(sd["Default"], str):
            raise fail(where, "Default must be a state name")
        for i, rule in enumerate(choices):
            w = f"{where}.Choices[{i}]"
            if not isinstance(rule, Mapping):
                raise fail(w, "a choice rule must be an object")
            if not isinstance(rule.get("Next"), str):
                raise fail(w, "Next is required and must be a state name")
            if "Assign" in rule:
                check_assign(rule["Assign"], w, "Assign", language)
            if language == "JSONata":
                for k in rule:
                    if k not in ("Condition", "Next", "Assign", "Output", "Comment"):
                        raise fail(
                            w, f"field {k!r} is not valid in a JSONata choice rule (use Condition)"
                        )
                if "Condition" not in rule:
                    raise fail(w, "Condition is required in JSONata choice rules")
                cond = rule["Condition"]
                if not (isinstance(cond, bool) or _jsonata.is_expression(cond)):
                    raise fail(w, "Condition must be a boolean or a JSONata expression")
                check_jsonata(cond, w, "Condition")
                if "Output" in rule:
                    check_jsonata(rule["Output"], w, "Output")
            else:
                if "Output" in rule or "Condition" in rule:
                    raise fail(w, "Condition and Output are only supported in JSONata states")
                self.rule(rule, w, top=True)

    def rule(self, rule: Any, where: str, *, top: bool = False) -> None:
        if not isinstance(rule, Mapping):
            raise fail(where, "a choice rule must be an object")
        extra = {"Next", "Assign", "Comment"} if top else {"Comment"}
        if not top and "Next" in rule:
            raise fail(where, "nested choice rules cannot have Next")
        ops = [k for k in rule if k in ("And", "Or", "Not")]
        comparators = [k for k in rule if k in COMPARATORS]
        unknown = [
            k
            for k in rule
            if k not in extra and k not in COMPARATORS and k not in ("And", "Or", "Not", "Variable")
        ]
        if unknown:
            raise fail(where, f"unknown field {unknown[0]!r} in a choice rule")
        if ops:
            if len(ops) > 1 or comparators or "Variable" in rule:
                raise fail(
                    where, "a choice rule has exactly one of And, Or, Not or a comparison"
                )
            op = ops[0]
            if op == "Not":
                self.rule(rule["Not"], f"{where}.Not")
            else:
                sub = rule[op]
                if not isinstance(sub, list) or not sub:
                    raise fail(where, f"{op} must be a non-empty array of choice rules")
                for j, r in enumerate(sub):
                    self.rule(r, f"{where}.{op}[{j}]")
            return
        var = rule.get("Variable")
        if not isinstance(var, str) or not var.startswith("$"):
            raise fail(where, 'Variable must be a JSONPath starting with "$"')
        try:
            compile_path(var)
        except PathSyntaxError as e:
            raise fail(where, f"Variable is not a valid JSONPath: {e}") from None
        if len(comparators) != 1:
            raise fail(where, "a choice rule needs exactly one comparison operator")
        name = comparators[0]
        kind, _op, is_path = COMPARATORS[name]
        value = rule[name]
        if is_path:
            if not isinstance(value, str) or not value.startswith("$"):
                raise fail(where, f'{name} must be a JSONPath starting with "$"')
            try:
                compile_path(value)
            except PathSyntaxError as e:
                raise fail(where, f"{name} is not a valid JSONPath: {e}") from None
        elif kind in ("test", "boolean"):
            if not isinstance(value, bool):
                raise fail(where, f"{name} must be true or false")
        elif kind == "number":
            if not is_number(value):
                raise fail(where, f"{name} must be a number")
        elif kind == "string":
            if not isinstance(value, str):
                raise fail(where, f"{name} must be a string")
        elif kind == "timestamp" and (not isinstance(value, str) or parse_time(value) is None):
            raise fail(
                where, f"{name} must be an ISO-8601 timestamp such as 2016-03-14T01:59:00Z"
            )


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()
