"""Helpers for the workflow tests."""

from __future__ import annotations

from typing import Any

from setpiece.workflows import Execution, execute


def machine(*states: tuple[str, dict[str, Any]], **top: Any) -> dict[str, Any]:
    """A definition from (name, state) pairs; the first is StartAt. Missing Next/End are
    filled in as a straight chain."""
    names = [n for n, _ in states]
    out: dict[str, Any] = {}
    for i, (name, st) in enumerate(states):
        st = dict(st)
        if st["Type"] not in ("Choice", "Succeed", "Fail") and "Next" not in st and "End" not in st:
            if i + 1 < len(states):
                st["Next"] = names[i + 1]
            else:
                st["End"] = True
        out[name] = st
    return {"StartAt": names[0], "States": out, **top}


def run_machine(definition: dict[str, Any], data: Any = None, **kw: Any) -> Execution:
    return execute(definition, {} if data is None else data, **kw)


def output(definition: dict[str, Any], data: Any = None, **kw: Any) -> Any:
    ex = run_machine(definition, data, **kw)
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    return ex.output


def one(state: dict[str, Any], data: Any = None, **kw: Any) -> Any:
    """Output of a single-state machine."""
    return output(machine(("S", state)), data, **kw)
