"""The live feed of ``setpiece dev`` (and ``setpiece run --feed``): one line per delivery attempt.

::

    12:03:04.120  ok    loyalty.award     product_registered  app      1.4 ms  → points_awarded
    12:03:04.131  retry audit.note 1/3    points_awarded      loyalty  0.2 ms  ValueError: boom
    12:03:04.650  dead  audit.note 3/3    points_awarded      loyalty  0.2 ms  ValueError: boom

Columns keep their width whatever the names: a longer handler or type is cut with "…", and a
longer source keeps its end (``…/registration-api``).

It observes without changing the runtime: after ``Runtime.start``, each consumer's ``action``
(the callable that runs one delivery attempt) is wrapped by one that times the attempt and
reports its outcome. ``ok`` is reported when the attempt succeeded; its effects commit with the
consumer's batch right after. ``retry`` and ``dead`` follow the consumer's retry policy, exactly
as :func:`setpiece.runtime.consumer.deliver` decides.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

import msgspec

from setpiece.event import Event
from setpiece.service import InputDecodeError
from setpiece.signals import Drop

if TYPE_CHECKING:
    from setpiece.runtime.consumer import Consumer
    from setpiece.runtime.runtime import Runtime
    from setpiece.runtime.unit import Attempt

__all__ = ["Feed", "FeedLine"]

_STYLES = {"ok": "green", "retry": "yellow", "dead": "bold red", "drop": "cyan"}
Action = Callable[[Event, "Attempt", int], Awaitable[None]]


class _Typed(msgspec.Struct):
    type: str = "?"


_decode_typed = msgspec.json.Decoder(_Typed).decode


class FeedLine(msgspec.Struct, frozen=True):
    """One observed delivery attempt (the ``--json`` form of a feed line)."""

    time: float
    outcome: str  # ok | retry | dead | drop
    handler: str
    attempt: int
    max_attempts: int
    type: str
    source: str
    id: str
    ms: float
    emitted: list[str] = []
    error: str | None = None


class Feed:
    """Renders feed lines to a console (rich when it is a terminal), or JSON lines."""

    def __init__(self, out: TextIO, *, json_lines: bool = False, color: bool | None = None) -> None:
        self._json = json_lines
        self._out = out
        self._console: Any = None
        if not json_lines:
            from rich.console import Console

            self._console = Console(
                file=out, highlight=False, soft_wrap=True,
                force_terminal=color, no_color=color is False,
            )
        self.dead_ids: set[str] = set()

    # -- wiring -------------------------------------------------------------------------------

    def attach(self, runtime: Runtime) -> None:
        """Observe every consumer of a started runtime. Call right after ``start``."""
        for consumer in runtime.consumers:
            consumer.action = self._wrap(consumer)
        _quiet_duplicates(self)

    def _wrap(self, consumer: Consumer) -> Action:
        inner: Action = consumer.action
        label, limit = consumer.label, consumer.retry.max_attempts

        async def observed(event: Event, attempt: Attempt, number: int) -> None:
            started = time.perf_counter()
            try:
                await inner(event, attempt, number)
            except Drop as exc:
                self._report("drop", label, event, number, limit, started, error=str(exc))
                raise
            except InputDecodeError as exc:
                self.dead_ids.add(event.id)
                self._report("dead", label, event, number, limit, started, error=_error(exc))
                raise
            except Exception as exc:
                outcome = "dead" if number >= limit else "retry"
                if outcome == "dead":
                    self.dead_ids.add(event.id)
                self._report(outcome, label, event, number, limit, started, error=_error(exc))
                raise
            self._report("ok", label, event, number, limit, started, emitted=attempt.appends)

        return observed

    # -- rendering ----------------------------------------------------------------------------

    def _report(
        self,
        outcome: str,
        label: str,
        event: Event,
        number: int,
        limit: int,
        started: float,
        *,
        error: str | None = None,
        emitted: list[tuple[str, str | None, bytes]] | None = None,
    ) -> None:
        ms = (time.perf_counter() - started) * 1000
        types = [_emitted_name(stream, value) for stream, _, value in emitted or ()]
        self.emit(FeedLine(time.time(), outcome, label, number, limit, event.type,
                           event.source, event.id, round(ms, 3), types, error))

    def emit(self, line: FeedLine) -> None:
        if self._json:
            self._out.write(msgspec.json.encode(line).decode() + "\n")
            self._out.flush()
            return
        from rich.text import Text

        text = Text()
        stamp = datetime.fromtimestamp(line.time).strftime("%H:%M:%S.%f")[:-3]
        text.append(f"{stamp}  ", style="dim")
        text.append(f"{line.outcome:<6}", style=_STYLES.get(line.outcome, ""))
        handler = line.handler
        if line.outcome in ("retry", "dead") or line.attempt > 1:
            handler += f" {line.attempt}/{line.max_attempts}"
        text.append(_fit(handler, 28) + " ", style="bold")
        text.append(_fit(line.type, 24) + " ", style="magenta")
        text.append(_fit(line.source, 20, keep_end=True) + " ", style="dim")
        text.append(f"{_ms(line.ms):>9}")
        if line.emitted:
            shown = ", ".join(line.emitted[:3])
            more = f" +{len(line.emitted) - 3}" if len(line.emitted) > 3 else ""
            text.append(f"  → {shown}{more}", style="blue")
        if line.error:
            text.append(f"  {line.error}", style=_STYLES.get(line.outcome, "red"))
        self._console.print(text)

    def note(self, message: str, style: str = "dim") -> None:
        """A status line (started, reloaded, stopping)."""
        if self._json:
            return
        self._console.print(message, style=style)


def _fit(text: str, width: int, *, keep_end: bool = False) -> str:
    """``text`` in exactly ``width`` columns: padded, or cut with an ellipsis (a source keeps its
    end, the most specific part: ``…/registration-api``)."""
    if len(text) <= width:
        return text.ljust(width)
    return "…" + text[-(width - 1):] if keep_end else text[: width - 1] + "…"


def _error(exc: BaseException) -> str:
    text = str(exc)
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _ms(ms: float) -> str:
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def _emitted_name(stream: str, value: bytes) -> str:
    try:
        kind = _decode_typed(value).type
    except msgspec.DecodeError:
        kind = "?"
    return kind if stream.startswith("bus.") else f"{kind}@{stream}"


class _Duplicates(logging.Filter):
    """Drop the runtime's retry and dead-letter log lines the feed already shows."""

    def __init__(self, feed: Feed) -> None:
        super().__init__()
        self._feed = feed

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if record.levelno == logging.INFO and "failed (%s: %s); retrying" in message:
            return False
        if "dead-lettered after" in message and isinstance(record.args, tuple):
            return not (len(record.args) > 1 and record.args[1] in self._feed.dead_ids)
        return True


def _quiet_duplicates(feed: Feed) -> None:
    logger = logging.getLogger("setpiece.runtime")
    for existing in logger.filters:
        if isinstance(existing, _Duplicates):
            logger.removeFilter(existing)
    logger.addFilter(_Duplicates(feed))
