"""The fields of Amazon States Language, and the checks of one field's value.

Which fields each state type allows in each query language (JSONPath or JSONata), and the checks
that :class:`~setpiece.workflows._validation.Validator` applies to one value: JSONPath paths,
``.$`` values and payload templates, intrinsic functions, JSONata expressions, ``Assign``
blocks, integers, mutually exclusive fields. Each raises
:class:`~setpiece.errors.DefinitionError` naming the state (``where``) and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from setpiece.errors import DefinitionError
from setpiece.workflows import _intrinsics, _jsonata
from setpiece.workflows._model import QueryLanguage
from setpiece.workflows._paths import JsonPath, PathSyntaxError, compile_path

__all__ = [
    "CATCHER_FIELDS",
    "COMMON",
    "FIELDS",
    "FLOW",
    "RETRIER_FIELDS",
    "TOP_FIELDS",
    "check_assign",
    "check_dollar_value",
    "check_exclusive",
    "check_jsonata",
    "check_path",
    "check_positive_int",
    "check_template",
    "fail",
    "is_int",
    "is_number",
]

_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Fields every state allows, and the transition fields.
COMMON = {"Type", "Comment", "QueryLanguage"}
FLOW = {"Next", "End"}
_JSONPATH_IO = {"InputPath", "OutputPath"}
# The fields of each state type: in both query languages, and in only one of them.
FIELDS: dict[str, dict[str, set[str]]] = {
    # type -> {"both": ..., "JSONPath": ..., "JSONata": ...}
    "Pass": {
        "both": FLOW | {"Assign"},
        "JSONPath": _JSONPATH_IO | {"Parameters", "Result", "ResultPath"},
        "JSONata": {"Output"},
    },
    "Task": {
        "both": FLOW
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
        "both": FLOW | {"Seconds", "Timestamp", "Assign"},
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
        "both": FLOW | {"Branches", "Retry", "Catch", "Assign"},
        "JSONPath": _JSONPATH_IO | {"Parameters", "ResultSelector", "ResultPath"},
        "JSONata": {"Arguments", "Output"},
    },
    "Map": {
        "both": FLOW
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
RETRIER_FIELDS = {
    "ErrorEquals",
    "IntervalSeconds",
    "MaxAttempts",
    "BackoffRate",
    "MaxDelaySeconds",
    "JitterStrategy",
    "Comment",
}
CATCHER_FIELDS = {"ErrorEquals", "Next", "ResultPath", "Output", "Assign", "Comment"}
TOP_FIELDS = {"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"}


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def fail(where: str, message: str) -> DefinitionError:
    """The error for ``message`` about the state or field at ``where``."""
    return DefinitionError(f"{where}: {message}" if where else message)


def check_path(
    value: Any,
    where: str,
    key: str,
    *,
    nullable: bool = False,
    reference: bool = False,
    variables: bool = True,
) -> JsonPath | None:
    """A JSONPath (a reference path only, with ``reference``), compiled."""
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value.startswith("$"):
        raise fail(where, f'{key} must be a JSONPath starting with "$"')
    try:
        p = compile_path(value)
    except PathSyntaxError as e:
        raise fail(where, f"{key} is not a valid JSONPath: {e}") from None
    if reference:
        if not p.is_reference:
            raise fail(where, f"{key} must be a reference path (names and indexes only)")
        if p.root != "$":
            raise fail(where, f'{key} must start with "$." (not a context or variable path)')
    if not variables and p.variable is not None:
        raise fail(where, f"{key} cannot refer to a variable")
    return p


def check_dollar_value(value: Any, where: str, key: str) -> None:
    """The value of a ``.$`` field: a path or an intrinsic function."""
    if not isinstance(value, str):
        raise fail(
            where, f"the value of {key!r} must be a string (a path or an intrinsic function)"
        )
    if _intrinsics.is_intrinsic(value):
        try:
            _intrinsics.parse(value)
        except ValueError as e:
            raise fail(where, f"{key}: {e}") from None
        return
    check_path(value, where, key)


def check_template(value: Any, where: str, key: str, *, require_object: bool = True) -> None:
    """A JSONPath payload template: every ``.$`` value inside it."""
    if require_object and not isinstance(value, Mapping):
        raise fail(where, f"{key} must be an object")
    _check_template(value, where, key)


def _check_template(value: Any, where: str, key: str) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k.endswith(".$"):
                check_dollar_value(v, where, f"{key}.{k}")
            else:
                _check_template(v, where, f"{key}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_template(v, where, f"{key}[{i}]")


def check_jsonata(value: Any, where: str, key: str) -> None:
    """Every ``{% ... %}`` expression inside ``value`` parses."""
    if isinstance(value, str):
        if value.startswith("{%") or value.endswith("%}"):
            if not _jsonata.is_expression(value):
                raise fail(where, f'{key}: a JSONata expression must be written "{{% ... %}}"')
            expr = _jsonata.strip(value)
            if not expr:
                raise fail(where, f"{key}: the JSONata expression is empty")
            err = _jsonata.syntax_error(expr)
            if err:
                raise fail(where, f"{key}: invalid JSONata expression {expr!r}: {err}")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            check_jsonata(v, where, f"{key}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_jsonata(v, where, f"{key}[{i}]")


def check_assign(value: Any, where: str, key: str, language: QueryLanguage) -> None:
    """An ``Assign`` block: valid variable names, and values in the state's query language."""
    if not isinstance(value, Mapping):
        raise fail(where, f"{key} must be an object")
    for k, v in value.items():
        name = k[:-2] if language == "JSONPath" and k.endswith(".$") else k
        if not _VARIABLE_NAME.fullmatch(name) or name == "states":
            raise fail(where, f"{key}: {name!r} is not a valid variable name")
        if language == "JSONPath":
            if k.endswith(".$"):
                check_dollar_value(v, where, f"{key}.{k}")
            else:
                _check_template(v, where, f"{key}.{k}")
        else:
            check_jsonata(v, where, f"{key}.{k}")


def check_positive_int(
    sd: Mapping[str, Any], key: str, where: str, *, zero: bool = False
) -> None:
    """``sd[key]``, if given, is a positive (or with ``zero``, non-negative) integer."""
    if key in sd:
        v = sd[key]
        if _jsonata.is_expression(v):
            return
        if not is_int(v) or v < (0 if zero else 1):
            raise fail(
                where, f"{key} must be {'a non-negative' if zero else 'a positive'} integer"
            )


def check_exclusive(
    sd: Mapping[str, Any], keys: tuple[str, ...], where: str, *, required: bool = False
) -> None:
    """At most one of ``keys`` is in ``sd`` (with ``required``: exactly one)."""
    present = [k for k in keys if k in sd]
    if len(present) > 1:
        raise fail(where, f"only one of {', '.join(keys)} may be given")
    if required and not present:
        raise fail(where, f"one of {', '.join(keys)} is required")
