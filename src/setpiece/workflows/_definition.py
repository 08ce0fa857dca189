"""Parse and validate an Amazon States Language definition into a typed model.

:func:`load` is the only entry point: it accepts a dict or JSON text and returns a
:class:`StateMachine`, or raises :class:`~setpiece.errors.DefinitionError` whose message names the
state and the field (``States.Choose.Choices[0]: Variable must be a JSONPath starting with "$"``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from setpiece.errors import DefinitionError
from setpiece.workflows._model import Catcher, Retrier, State, StateMachine
from setpiece.workflows._validation import Validator

__all__ = ["Catcher", "Retrier", "State", "StateMachine", "load"]


def load(definition: Mapping[str, Any] | str | bytes) -> StateMachine:
    """Parse (if text) and validate a definition."""
    if isinstance(definition, str | bytes):
        try:
            definition = json.loads(definition)
        except ValueError as e:
            raise DefinitionError(f"definition is not valid JSON: {e}") from None
    if not isinstance(definition, Mapping):
        raise DefinitionError("definition must be a JSON object")
    return Validator().machine(definition, "", "JSONPath", top=True)
