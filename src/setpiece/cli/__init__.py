"""The ``setpiece`` command line: dev, run, publish, tail, replay, dlq, inspect, new.

Its dependencies are the ``cli`` extra (typer, rich, watchfiles). Without them, :func:`main`
says what to install instead of failing with a traceback. See ``docs/cli.md``.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """The ``setpiece`` console script."""
    missing = []
    for name in ("typer", "rich"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        sys.stderr.write(
            f"setpiece: the command line needs {' and '.join(missing)}: "
            "pip install 'setpiece[cli]'\n"
        )
        raise SystemExit(1)
    from setpiece.cli.app import cli

    raise SystemExit(cli(argv))
