"""Reading the simulator's JSON input files: architectures, chaos specs and cost models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from setpiece.errors import ConfigError

__all__ = ["read_json"]


def read_json(path: Path, where: str, missing: str = "no such file") -> Any:
    """The JSON document in ``path``; ConfigError ``"<where>: <missing>"`` when there is no
    such file, ``"<where>: not valid JSON (...)"`` when it does not parse."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}: {missing}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc})") from None
