"""A fake for HTTP calls: what ``HttpTarget`` s and workflows' ``http:`` tasks send, recorded,
and answered as the test says, through an ``httpx.MockTransport`` (no socket is opened)."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from setpiece.errors import ConfigError
from setpiece.event import Event

try:
    import httpx
except ImportError:  # pragma: no cover - depends on the installed extras
    raise ImportError("setpiece.testing's fake HTTP needs httpx: pip install 'setpiece[http]'"
                      ) from None

__all__ = ["Call", "FakeHttp"]


@dataclass(frozen=True, slots=True)
class Call:
    """One request the runtime made: ``method``, ``url`` (with its query), ``headers`` (lower-case
    names), ``body``."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return jsonlib.loads(self.body)

    def event(self) -> Event:
        """The body as a CloudEvent (what an ``HttpTarget`` posts)."""
        return Event.from_json(self.body)


#: ``respond(call)`` answers a call: an ``httpx.Response``.
Responder = Callable[[Call], "httpx.Response"]


@dataclass(slots=True)
class _Answer:
    method: str | None
    url: str
    respond: Responder
    times: int | None  # None: every time

    def takes(self, call: Call) -> bool:
        if self.method is not None and self.method != call.method:
            return False
        if self.times == 0:
            return False
        base = call.url.split("?", 1)[0]
        if self.url.endswith("*"):
            return base.startswith(self.url[:-1])
        return base == self.url


@dataclass
class FakeHttp:
    """Records every HTTP call made through it and answers as told.

    ``answer(url, ...)`` says how to answer calls to ``url`` (exact, without the query; or a
    prefix ending in ``*``): a status and a JSON or text body, or a ``respond(call)`` function;
    ``times=`` limits how many calls an answer takes (``answer(url, status=503, times=2)`` then
    ``answer(url)``: two failures, then success). Answers are tried in the order given. A call
    no answer takes gets a 404 whose body says so. ``calls`` lists the calls, oldest first.
    """

    calls: list[Call] = field(default_factory=list)
    _answers: list[_Answer] = field(default_factory=list)

    def answer(
        self,
        url: str,
        *,
        method: str | None = None,
        status: int = 200,
        json: Any = None,
        text: str | None = None,
        headers: dict[str, str] | None = None,
        respond: Responder | None = None,
        times: int | None = None,
    ) -> None:
        """Answer calls to ``url`` (and ``method``, any when None); see the class docstring."""
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"FakeHttp.answer url {url!r}: must start with http:// or https://")
        if times is not None and times < 1:
            raise ConfigError("FakeHttp.answer times: must be at least 1 (or None: always)")
        if respond is not None and (json is not None or text is not None):
            raise ConfigError("FakeHttp.answer: give respond= or a body (json=/text=), not both")
        if json is not None and text is not None:
            raise ConfigError("FakeHttp.answer: give json= or text=, not both")
        if respond is None:
            def respond(call: Call) -> httpx.Response:
                if text is not None:
                    return httpx.Response(status, text=text, headers=headers)
                return httpx.Response(status, json=json if json is not None else {},
                                      headers=headers)
        self._answers.append(_Answer(method.upper() if method else None, url, respond, times))

    def calls_to(self, url: str, *, method: str | None = None) -> list[Call]:
        """The calls to ``url`` (without the query; a prefix ending in ``*``), oldest first."""
        probe = _Answer(method.upper() if method else None, url, _unused, None)
        return [call for call in self.calls if probe.takes(call)]

    def _handle(self, request: httpx.Request) -> httpx.Response:
        call = Call(request.method, str(request.url),
                    {k.lower(): v for k, v in request.headers.items()}, request.content)
        self.calls.append(call)
        for answer in self._answers:
            if answer.takes(call):
                if answer.times is not None:
                    answer.times -= 1
                return answer.respond(call)
        return httpx.Response(404, text=f"setpiece.testing.FakeHttp: no answer for "
                                        f"{call.method} {call.url} (say one with http.answer)")

    @property
    def transport(self) -> httpx.MockTransport:
        """An ``httpx`` transport that answers through this fake."""
        return httpx.MockTransport(self._handle)

    def client(self) -> httpx.AsyncClient:
        """A new ``httpx.AsyncClient`` whose calls go to this fake (``rt.use_http_client``)."""
        return httpx.AsyncClient(transport=self.transport)


def _unused(call: Call) -> httpx.Response:  # pragma: no cover - calls_to never answers
    raise AssertionError("not an answer")
