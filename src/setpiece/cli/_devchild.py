"""The child process of ``setpiece dev``: a warm spare that becomes the running stack.

The supervisor starts it ahead of time. It imports setpiece, the engine, rich, and the modules
the previous child had imported from outside the watched folders (third-party packages), then
waits for one JSON line on stdin saying what to run. Only then does it import the user's code
(fresh: this is a new process) — while the previous child is still stopping — and it starts the
stack when a second line ("start") says the previous child has gone. A change therefore costs
the user's own imports and the runtime's start, not the interpreter's and the libraries'.

It stops on SIGTERM (sent by the supervisor) or when its stdin closes (the supervisor is gone).
SIGINT is ignored: Ctrl+C reaches the whole process group, and the supervisor decides.

HTTP: the listening socket is the supervisor's, inherited (its fd is in the order). A child that
serves the gateway accepts on it; when it stops, it first stops accepting, then finishes the
requests it took, then stops the stack. Connections that arrive meanwhile wait in the socket's
backlog for the next child: a reload refuses none.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# Warm imports: everything a child needs before it knows the user's code.
import rich.console
import rich.text

import setpiece
import setpiece.engine.sqlite
import setpiece.runtime.runtime
from setpiece.cli._common import describe, load_stack
from setpiece.cli.feed import Feed
from setpiece.errors import ConfigError
from setpiece.runtime.config import RuntimeConfig

with contextlib.suppress(ImportError):  # the [http] extra: the gateway of stacks with routes
    import uvicorn  # noqa: F401

PRELOAD_ENV = "SETPIECE_DEV_PRELOAD"
_SETPIECE_DIR = Path(setpiece.__file__).resolve().parent
_KEEP = (rich.console, rich.text, setpiece, setpiece.engine.sqlite, setpiece.runtime.runtime)
# Event-loop turns a stopping gateway gives the connections it accepted last to read their
# requests, after it stopped accepting and before idle connections are closed.
_SETTLE_TURNS = 20
# The longest a stopping gateway waits for a connection it accepted to send its first request.
_FRESH_WAIT = 0.5


def _preload() -> None:
    """Import the third-party modules the previous child used (listed in a file)."""
    listing = os.environ.get(PRELOAD_ENV)
    if not listing:
        return
    try:
        names = json.loads(Path(listing).read_text())
    except (OSError, ValueError):
        return
    for name in names:
        if name in sys.modules:
            continue
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _write_preload(roots: list[str]) -> None:
    """List the imported modules that live outside the watched folders, for the next spare."""
    listing = os.environ.get(PRELOAD_ENV)
    if not listing:
        return
    resolved = [Path(r).resolve() for r in roots]
    names = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not file or name == "__main__" or name.startswith("setpiece"):
            continue
        path = Path(file).resolve()
        installed = "site-packages" in path.parts or ".venv" in path.parts
        if not installed and any(path.is_relative_to(root) for root in resolved):
            continue  # the user's own code: always imported fresh
        names.append(name)
    with contextlib.suppress(OSError):
        Path(listing).write_text(json.dumps(sorted(names)))


def _wait_for_order() -> str:
    """Wait for the order line, importing the preload list again whenever it changes (the
    running child writes it once started, usually after this spare was born)."""
    listing = os.environ.get(PRELOAD_ENV)
    seen: float | None = None
    while True:
        if listing:
            with contextlib.suppress(OSError):
                mtime = os.stat(listing).st_mtime
                if mtime != seen:
                    seen = mtime
                    _preload()
        ready, _, _ = select.select([sys.stdin], [], [], 0.1)
        if ready:
            return sys.stdin.readline()


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    line = _wait_for_order()
    if not line.strip():
        return 0
    order: dict[str, Any] = json.loads(line)
    feed = Feed(sys.stdout, json_lines=bool(order.get("json")))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("setpiece.service").setLevel(logging.INFO)
    try:
        stack = load_stack(order["target"], app_dir=order.get("app_dir"))
    except Exception as exc:
        _failed(feed, order, exc)
        return 1
    if not sys.stdin.readline().strip():  # "start": the previous child has stopped
        return 0
    config = RuntimeConfig(
        member=f"dev-{stack.name}",
        shutdown_grace=float(order.get("grace", 2.0)),
        heartbeat_interval=0.5,
        session_timeout=5.0,
    )

    def ready(rt: setpiece.Runtime) -> None:
        feed.attach(rt)
        changed = order.get("changed") or []
        took = (time.time() - float(order["t0"])) * 1000
        what = f"{len(rt.consumers)} consumer(s) on {rt.engine.url}"
        if changed:
            names = ", ".join(changed[:3]) + (f" +{len(changed) - 3}" if len(changed) > 3 else "")
            feed.note(f"↻ reloaded {stack.name} in {took:.0f} ms ({names} changed); {what}",
                      style="bold green")
        else:
            feed.note(f"● running {stack.name}: {what}; watching for changes", style="bold green")
        _write_preload(order.get("roots") or [])

    # the gateway serves the routes, and the live map (/_setpiece/) of a stack that observes
    routes = any(service.routes for service in stack.services.values()) or \
        stack.observe is not None
    sock = None
    if routes and order.get("http_fd") is not None:
        sock = socket.socket(fileno=int(order["http_fd"]))
    elif routes and order.get("http_error"):
        feed.note(f"✗ HTTP gateway not started: {order['http_error']}", style="bold red")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(sys.stdin.fileno(), lambda: _on_stdin(stop))
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with stack.start(order.get("engine"), store=order.get("store"),
                               config=config) as rt:
            ready(rt)
            if sock is not None:
                await _serve_http(rt, sock, str(order.get("http_url")), stop, feed)
            else:
                await stop.wait()
        # leaving the block stopped the stack: batches in flight finished within the grace,
        # or were handed back (a retry waiting on its backoff is handed back at once)

    try:
        asyncio.run(run())
    except Exception as exc:
        _failed(feed, order, exc)
        return 1
    return 0


async def _serve_http(
    rt: setpiece.Runtime, sock: socket.socket, url: str, stop: asyncio.Event, feed: Feed
) -> None:
    """The gateway in the same process as the stack, on the supervisor's socket, until ``stop``.

    Stopping: stop accepting (new connections wait in the backlog for the next child), let the
    connections accepted last read their requests, then finish every request taken.
    """
    try:
        try:
            import uvicorn
        except ImportError:
            raise ConfigError("serving HTTP needs uvicorn: pip install 'setpiece[http]'") from None
        config = uvicorn.Config(rt.asgi(), lifespan="on", log_level="warning", access_log=False)
        server = uvicorn.Server(config)
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
                raise ConfigError("uvicorn stopped during startup")
            await asyncio.sleep(0.01)
    except (Exception, SystemExit) as exc:  # the stack keeps running without HTTP; say why
        what = "the app's startup failed" if isinstance(exc, SystemExit) else describe(exc)
        feed.note(f"✗ HTTP gateway not started: {what}", style="bold red")
        await stop.wait()
        return
    feed.note(f"● HTTP gateway on {url}", style="bold green")
    await stop.wait()
    # Stop accepting, but let the connections accepted last be set up and read their requests:
    # closing the listeners at once would drop (and reset) the ones still being set up.
    loop = asyncio.get_running_loop()
    for listener in server.servers:
        for listening in listener.sockets:
            loop.remove_reader(listening.fileno())
    for _ in range(_SETTLE_TURNS):
        await asyncio.sleep(0)
    # A client that connected but has not sent its request yet would see its connection closed
    # as idle: give it a moment (uvicorn's protocols have no cycle before the first request).
    for _ in range(int(_FRESH_WAIT / 0.005)):
        if not any(getattr(c, "cycle", True) is None for c in server.server_state.connections):
            break
        await asyncio.sleep(0.005)
    if task.done():  # uvicorn stopped on its own (it logged why)
        return
    # uvicorn's loop only ticks now (it would notice should_exit within 0.1 s): end it, and shut
    # down at once — finish the requests taken, close the idle connections, the app's lifespan
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    rt.asgi().end_streams()  # the live map's event stream would keep the shutdown waiting
    await server.shutdown(sockets=[sock])


def _on_stdin(stop: asyncio.Event) -> None:
    if not os.read(sys.stdin.fileno(), 1024):  # EOF: the supervisor is gone
        asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
        stop.set()


def _failed(feed: Feed, order: dict[str, Any], exc: BaseException) -> None:
    if order.get("debug"):
        traceback.print_exception(exc)
    elif isinstance(exc, SyntaxError):
        sys.stderr.write("".join(traceback.format_exception_only(exc)))
    elif not _is_user_mistake(exc):
        _print_user_frames(exc)
    feed.note(f"✗ {describe(exc)}", style="bold red")
    feed.note("  waiting for a change to try again", style="dim")
    sys.stdout.flush()


def _print_user_frames(exc: BaseException) -> None:
    """The traceback without the frames of importlib and setpiece (--debug shows them all)."""
    frames = [
        frame for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<frozen")
        and not Path(frame.filename).resolve().is_relative_to(_SETPIECE_DIR)
    ]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    sys.stderr.write("".join(lines + traceback.format_exception_only(exc)))


def _is_user_mistake(exc: BaseException) -> bool:
    from setpiece.cli._common import CliError
    from setpiece.errors import SetpieceError

    return isinstance(exc, CliError | SetpieceError)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # everything is committed and closed: skip the interpreter's teardown
