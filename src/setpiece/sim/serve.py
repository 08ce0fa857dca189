"""``setpiece sim --serve``: the run animating in a browser, over a WebSocket.

One small Starlette app (served by uvicorn) with a page (``/``), its script, the vendored
cytoscape.js of the live map (read from ``setpiece/observe/static`` by path: the simulator does
not import the observability part) and one WebSocket (``/ws``).

The run is played once, in a thread, as soon as the server starts; each frame is kept, so every
page that connects (or reloads) is shown the whole run from its start, paced on its own:

1. ``{"type": "graph", ...}`` — the architecture (:func:`~setpiece.sim.output.graph`: regions,
   zones, nodes, edges), the simulated ``duration``, the tick ``interval`` and the ``speed``;
2. ``{"type": "tick", "t": ...}`` at every timeline sample (``duration / 100`` simulated seconds
   apart): per service the instances alive (per zone) and stopped, requests in flight (the queue
   depth), requests, errors and throughput since the last tick; per edge calls, errors and
   throughput; per zone the instances alive; the chaos, push and autoscaling events since the
   last tick; the outside requests and errors so far;
3. ``{"type": "summary", "summary": ...}`` — the ``--json`` summary of the same run, and its log.

A tick at simulated time ``t`` is sent ``t / speed`` wall seconds after the page connected
(``speed``: simulated seconds per wall second). The page changes it by sending
``{"speed": X}``, or ``{"speed": null}`` for as fast as it can take them; ``/ws?speed=X`` (or
``?speed=max``) sets it from the start. Figures are deterministic: serving a run changes none
of its results.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import math
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

from setpiece.errors import ConfigError
from setpiece.sim.engine import Simulation
from setpiece.sim.output import graph, summary

__all__ = ["LiveRun", "parse_speed", "serve", "sim_app"]

log = logging.getLogger("setpiece.sim")
VENDOR = "vendor/cytoscape-3.35.0/cytoscape.min.js"
_NEEDS = ("setpiece sim --serve needs starlette, uvicorn and websockets: "
          "pip install 'setpiece[sim]'")
DEFAULT_PLAY_SECONDS = 30.0  # without --speed, a run plays in about this many wall seconds


def parse_speed(value: Any, where: str = "speed") -> float | None:
    """A speed from a page or the command line: simulated seconds per wall second (> 0), or
    None (``null``, ``"max"``) for as fast as possible."""
    if value is None or value == "max":
        return None
    try:
        speed = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a positive number or 'max', got {value!r}") from None
    if not speed > 0 or math.isinf(speed):
        raise ConfigError(f"{where}: expected a positive number or 'max', got {value!r}")
    return speed


def _asset(*path: str) -> bytes:
    # by path: ``setpiece.sim`` must not import ``setpiece.observe`` (import-linter)
    return resources.files("setpiece").joinpath(*path).read_bytes()


class _Ticks:
    """Turns the simulation's state at each timeline sample into a tick frame (it only reads:
    the run's results are the same with or without it)."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.interval = sim.config.sample_interval or sim.config.duration / 100
        self.launched = [0] * len(sim.svc_names)
        self.seen = 0  # instances counted in ``launched``
        self.logged = 0
        self.last_t = 0.0
        keys: dict[tuple[str, str, str], int] = {}
        self.edge_of: list[int] = []
        for src, dst, kind, *_ in sim.edges:
            key = ("client" if src < 0 else sim.svc_names[src], sim.svc_names[dst], kind)
            self.edge_of.append(keys.setdefault(key, len(keys)))
        self.edge_keys = list(keys)
        self.calls = [0] * len(keys)
        self.errors = [0] * len(keys)
        self.requests = [0] * len(sim.svc_names)
        self.errors_s = [0] * len(sim.svc_names)

    def tick(self, now: float) -> dict[str, Any]:
        sim = self.sim
        for inst in range(self.seen, len(sim.i_svc)):
            self.launched[sim.i_svc[inst]] += 1
        self.seen = len(sim.i_svc)
        span = now - self.last_t or self.interval
        self.last_t = now
        services: dict[str, Any] = {}
        for s, name in enumerate(sim.svc_names):
            requests = sim.s_req[s] - self.requests[s]
            services[name] = {
                "instances": sim.alive_count[s],
                "stopped": self.launched[s] - sim.alive_count[s],
                "zones": {zone: n for zone, n in zip(sim.zones, sim.alive_zone[s], strict=True)
                          if n},
                "in_flight": sim.s_held[s],
                "requests": requests,
                "errors": sim.s_err[s] - self.errors_s[s],
                "throughput": round(requests / span, 3),
            }
        self.requests, self.errors_s = list(sim.s_req), list(sim.s_err)
        calls = [0] * len(self.edge_keys)
        errors = [0] * len(self.edge_keys)
        for e, k in enumerate(self.edge_of):
            calls[k] += sim.e_calls[e]
            errors[k] += sim.e_errors[e]
        edges = []
        for k, (src, dst, kind) in enumerate(self.edge_keys):
            delta = calls[k] - self.calls[k]
            edges.append({"source": src, "target": dst, "kind": kind, "calls": delta,
                          "errors": errors[k] - self.errors[k],
                          "throughput": round(delta / span, 3)})
        self.calls, self.errors = calls, errors
        zones = {zone: sum(sim.alive_zone[s][z] for s in range(len(sim.svc_names)))
                 for z, zone in enumerate(sim.zones)}
        events = sim.log[self.logged:]
        self.logged = len(sim.log)
        return {"type": "tick", "t": round(now, 6), "services": services, "edges": edges,
                "zones": zones, "dead_zones": sorted(sim.zones[z] for z in sim.dead_zones),
                "events": events, "requests": sim.roots[0], "errors": sim.roots[1]}


    @staticmethod
    def moved(tick: dict[str, Any]) -> bool:
        """Whether anything happened in ``tick``."""
        return bool(tick["events"]) or any(
            s["requests"] or s["errors"] for s in tick["services"].values()) or any(
            e["calls"] or e["errors"] for e in tick["edges"])


class LiveRun:
    """One run, played in a thread; its frames (JSON text) are kept for every page.

    ``finish(wall_seconds)`` gives the summary once the run is over (default:
    :func:`~setpiece.sim.output.summary`); ``speed`` is the pace of a page that asks for none.
    """

    def __init__(self, sim: Simulation, speed: float | None = None,
                 finish: Callable[[float], dict[str, Any]] | None = None) -> None:
        self.sim = sim
        self.speed = speed
        self.finish = finish or (lambda wall: summary(sim, wall))
        self.frames: list[tuple[float, str]] = []  # (simulated time, frame)
        self.done = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the run in a thread of its own; frames reach the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._thread = threading.Thread(target=self._play, name="setpiece-sim", daemon=True)
        self._thread.start()

    def _play(self) -> None:
        started = time.perf_counter()
        sim = self.sim
        try:
            ticks = _Ticks(sim)
            self._emit(0.0, {"type": "graph", "graph": graph(sim),
                             "duration": sim.config.duration, "interval": ticks.interval,
                             "speed": self.speed})
            sim.run(lambda now: self._emit(now, ticks.tick(now)))
            if ticks.last_t < sim.config.duration:  # the samples stopped short of the end
                short = sim.config.duration - ticks.last_t < ticks.interval * 1e-6
                last = ticks.tick(sim.config.duration)
                if not short or ticks.moved(last):  # not for a rounding error's worth of run
                    self._emit(sim.config.duration, last)
            result = self.finish(time.perf_counter() - started)
            self._emit(sim.config.duration, {"type": "summary", "summary": result,
                                             "log": list(sim.log)})
        except Exception as exc:  # shown on the page (and logged); the server keeps running
            log.exception("setpiece sim --serve: the run failed")
            self._emit(sim.config.duration, {"type": "error", "error": f"the run failed: {exc}"})
        finally:
            self._call(self._end)

    def _emit(self, t: float, frame: dict[str, Any]) -> None:
        text = json.dumps(frame, sort_keys=True)
        self._call(lambda: self._append(t, text))

    def _call(self, fn: Callable[[], None]) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed (Ctrl-C during the run)
            self._loop.call_soon_threadsafe(fn)

    def _append(self, t: float, text: str) -> None:
        self.frames.append((t, text))
        self._wake()

    def _end(self) -> None:
        self.done = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def frame(self, index: int) -> tuple[float, str] | None:
        """Frame ``index``, once the run has made it; None after the last."""
        while index >= len(self.frames):
            if self.done:
                return None
            await self._changed.wait()
        return self.frames[index]

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


class _Pace:
    """How fast one page is shown the run: ``speed`` simulated seconds per wall second (None:
    the fastest) from ``anchor_t`` (simulated) at ``anchor_wall`` (the loop's clock)."""

    __slots__ = ("anchor_t", "anchor_wall", "sent_t", "speed")

    def __init__(self, speed: float | None, now: float) -> None:
        self.speed = speed
        self.anchor_wall = now
        self.anchor_t = 0.0
        self.sent_t = 0.0  # simulated time of the last frame sent


async def _play_to(websocket: Any, live: LiveRun) -> None:
    from starlette.websockets import WebSocketDisconnect

    await websocket.accept()
    loop = asyncio.get_running_loop()
    pace = _Pace(live.speed, loop.time())
    wake = asyncio.Event()
    try:
        if "speed" in websocket.query_params:
            pace.speed = parse_speed(websocket.query_params["speed"], "?speed")
    except ConfigError as exc:
        await websocket.send_text(json.dumps({"type": "error", "error": str(exc)}))
        await websocket.close(1008)
        return

    async def listen() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await websocket.receive_text()
                try:
                    asked = json.loads(message)
                    if not isinstance(asked, dict) or "speed" not in asked:
                        raise ConfigError('expected {"speed": X} (X > 0, or null for the '
                                          'fastest)')
                    speed = parse_speed(asked["speed"])
                except (ValueError, ConfigError) as exc:
                    await websocket.send_text(json.dumps({"type": "error", "error": str(exc)}))
                    continue
                # the new pace counts from now and from the last frame sent
                pace.speed, pace.anchor_wall, pace.anchor_t = speed, loop.time(), pace.sent_t
                wake.set()

    listener = asyncio.create_task(listen())
    index = 0
    try:
        while True:
            waiting = asyncio.ensure_future(live.frame(index))
            await asyncio.wait([waiting, listener], return_when=asyncio.FIRST_COMPLETED)
            if not waiting.done():  # the page left
                waiting.cancel()
                return
            found = waiting.result()
            if found is None:
                break
            t, text = found
            while pace.speed is not None and not listener.done():
                delay = pace.anchor_wall + (t - pace.anchor_t) / pace.speed - loop.time()
                if delay <= 0:
                    break
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), delay)
            if listener.done():
                return
            await websocket.send_text(text)
            pace.sent_t = t
            index += 1
        await listener  # the run is over: the page stays connected until it leaves
    except (WebSocketDisconnect, RuntimeError):
        return  # the page left while a frame was on its way
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listener


def sim_app(live: LiveRun) -> Any:
    """The Starlette app that serves ``live``: ``/``, ``/sim.js``, cytoscape and ``/ws``.
    The run starts with the app (its lifespan)."""
    try:
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route, WebSocketRoute
    except ImportError:
        raise ConfigError(_NEEDS) from None

    files = {
        "/": (("sim", "static", "sim.html"), "text/html; charset=utf-8"),
        "/sim.js": (("sim", "static", "sim.js"), "text/javascript; charset=utf-8"),
        f"/{VENDOR}": (("observe", "static", *VENDOR.split("/")),
                       "text/javascript; charset=utf-8"),
    }
    routes: list[Any] = []
    for path, (where, kind) in files.items():
        body = _asset(*where)

        async def page(request: Any, body: bytes = body, kind: str = kind) -> Response:
            return Response(body, media_type=kind, headers={"cache-control": "no-cache"})

        routes.append(Route(path, page))

    async def ws(websocket: Any) -> None:
        await _play_to(websocket, live)

    routes.append(WebSocketRoute("/ws", ws))

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        live.start()
        yield

    return Starlette(routes=routes, lifespan=lifespan)


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--port {port}: cannot listen on {host}:{port} "
                          f"({exc.strerror})") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def serve(live: LiveRun, *, host: str = "127.0.0.1", port: int = 0,
          announce: Callable[[str], None] = print) -> None:
    """Serve ``live`` at ``http://host:port/`` (``port`` 0: a free one) until Ctrl-C;
    ``announce`` is told the page's URL once the socket listens."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError(_NEEDS) from None
    if not any(map(_importable, ("websockets", "wsproto"))):
        raise ConfigError(_NEEDS)  # uvicorn would answer no WebSocket
    app = sim_app(live)
    sock = _listen(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}/"
    server = uvicorn.Server(uvicorn.Config(
        app, log_level="warning", ws="auto", lifespan="on",
        timeout_graceful_shutdown=2))

    async def main() -> None:
        announce(url)
        await server.serve(sockets=[sock])

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a served run ends: uvicorn closed the pages and stopped
    finally:
        sock.close()
