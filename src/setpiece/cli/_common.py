"""What every command shares: loading ``MODULE:STACK``, opening engines, errors and exit codes.

Exit codes (documented in ``docs/cli.md``):

====  =====================================================================================
0     success (a worker stopped by SIGTERM / SIGINT also exits 0)
1     anything else: a bug, an error raised while importing the user's module
2     a usage or input mistake: bad ``MODULE:STACK``, module or attribute not found, not a
      Stack, bad JSON, a malformed event, an invalid pattern, an unknown bus, stream or rule
3     the engine cannot be used: unreachable, not a setpiece database, no such file
====  =====================================================================================

This module imports neither typer nor rich: the dev child process uses it and starts fast.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from setpiece.errors import (
    ConfigError,
    DefinitionError,
    EngineError,
    EventError,
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
    PatternError,
    SetpieceError,
    TaskTokenError,
)

if TYPE_CHECKING:
    from setpiece.engine.contract import Engine
    from setpiece.stack import Stack

__all__ = [
    "ENGINE_ERROR",
    "OTHER_ERROR",
    "USAGE_ERROR",
    "CliError",
    "check_target",
    "engine_url",
    "exit_code",
    "load_stack",
    "open_existing",
]

OTHER_ERROR = 1
USAGE_ERROR = 2
ENGINE_ERROR = 3


class CliError(Exception):
    """A mistake the user can fix: printed as one line, exits with ``code``."""

    def __init__(self, message: str, code: int = USAGE_ERROR) -> None:
        super().__init__(message)
        self.code = code


def exit_code(exc: BaseException) -> int:
    """The exit code for an exception that reached the top of a command."""
    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, EngineError):
        return ENGINE_ERROR
    if isinstance(exc, EventError | PatternError | ConfigError | DefinitionError
                  | ExecutionAlreadyExists | ExecutionDoesNotExist | TaskTokenError):
        return USAGE_ERROR  # a mistake in what the user typed or named
    return OTHER_ERROR


def describe(exc: BaseException) -> str:
    """One line saying what went wrong."""
    if isinstance(exc, CliError | SetpieceError):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _split(target: str) -> tuple[str, str | None]:
    module, sep, attr = target.partition(":")
    if not module or (sep and not attr) or not all(
        part.isidentifier() for part in module.split(".")
    ) or (attr and not all(part.isidentifier() for part in attr.split("."))):
        raise CliError(
            f"{target!r} is not MODULE:STACK (write e.g. 'shop.app:stack', or a module "
            "with a variable named 'stack')"
        )
    return module, attr or None


def load_stack(target: str, *, app_dir: str | None = None) -> Stack:
    """Import ``MODULE:STACK`` and return the Stack it names.

    The current directory (or ``app_dir``) goes first on ``sys.path``. ``STACK`` may be a Stack
    or a function that returns one; without ``:STACK``, the module's ``stack`` variable is used.
    """
    from setpiece.stack import Stack

    module_name, attr = _split(target)
    path = str(Path(app_dir or os.getcwd()).resolve())
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            raise CliError(
                f"module {module_name!r} not found (looked in {path} and on PYTHONPATH)"
            ) from None
        raise
    name = attr or "stack"
    obj: Any = module
    for part in name.split("."):
        if not hasattr(obj, part):
            found = sorted(k for k, v in vars(module).items() if isinstance(v, Stack))
            hint = f"; Stacks in it: {', '.join(found)}" if found else ""
            raise CliError(f"module {module_name!r} has no attribute {name!r}{hint}")
        obj = getattr(obj, part)
    if not isinstance(obj, Stack) and callable(obj) and not isinstance(obj, type):
        obj = obj()
    if not isinstance(obj, Stack):
        raise CliError(
            f"{module_name}:{name} is a {type(obj).__name__}, not a setpiece.Stack "
            "(or a function returning one)"
        )
    return obj


def check_target(target: str, *, app_dir: str | None = None) -> None:
    """Check that ``MODULE:STACK`` is well formed and its module exists, without running it."""
    import importlib.util

    module_name, _ = _split(target)
    path = str(Path(app_dir or os.getcwd()).resolve())
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        found = importlib.util.find_spec(module_name)
    except ModuleNotFoundError:
        found = None
    if found is None:
        raise CliError(f"module {module_name!r} not found (looked in {path} and on PYTHONPATH)")


def engine_url(stack_name: str | None, engine: str | None) -> str:
    """The engine URL: the option, else ``SETPIECE_ENGINE``, else the stack's default file."""
    url = engine or os.environ.get("SETPIECE_ENGINE")
    if url:
        return url
    if stack_name is None:
        raise CliError("name an engine: --engine URL (or set SETPIECE_ENGINE)")
    return f"sqlite:///.setpiece/{stack_name}.db"


def store_url(store: str | None) -> str | None:
    return store or os.environ.get("SETPIECE_STORE") or None


def sqlite_path(url: str) -> Path | None:
    """The file a ``sqlite:///`` URL names (None for other engines and memory)."""
    if not url.startswith("sqlite:///") or url in ("sqlite:///:memory:",):
        return None
    return Path(url[len("sqlite:///") :].partition("?")[0])


async def open_existing(url: str, store: str | None) -> Engine:
    """Open an engine that must exist already (inspecting commands never create a database)."""
    from setpiece.engine import open_engine

    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise CliError(
            f"engine {url}: no such file {str(path)!r} (has the stack run yet? pass --engine)",
            ENGINE_ERROR,
        )
    if url == "memory":
        raise CliError("engine 'memory' holds nothing between commands; use a sqlite:/// file")
    return await open_engine(url, store=store)
