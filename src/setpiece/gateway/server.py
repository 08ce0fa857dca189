"""Serving a stack's gateway with uvicorn: ``serve`` (blocking, for ``setpiece gateway``) and
``serving`` (in the running event loop, for tests and benchmarks).

The socket is bound before the app starts, so the runtime registers the address it really
listens on (port 0 picks a free port).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from setpiece.errors import ConfigError

if TYPE_CHECKING:
    from setpiece.runtime.config import RuntimeConfig
    from setpiece.stack import Stack

__all__ = ["bind", "serve", "serving"]


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ConfigError("serving HTTP needs uvicorn: pip install 'setpiece[http]'") from None
    return uvicorn


def bind(host: str = "127.0.0.1", port: int = 0) -> tuple[socket.socket, str]:
    """A listening socket and the URL it is reachable at (a wildcard host: this host's name)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY only on sockets that say they are TCP;
    # without it, Nagle and delayed ACKs add ~40 ms to every response
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc})") from None
    sock.set_inheritable(True)
    actual = sock.getsockname()[1]
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return sock, f"http://{shown}:{actual}"


def serve(
    stack: Stack,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    engine: str | None = None,
    store: str | None = None,
    config: RuntimeConfig | None = None,
    advertise: str | None = None,
    log_level: str = "info",
) -> None:
    """Run the stack with its gateway on ``host:port`` until interrupted (``setpiece gateway``).

    ``advertise`` is the URL other gateways reach this one at (default: from host and port).
    """
    uvicorn = _uvicorn()
    sock, url = bind(host, port)
    app = stack.asgi(engine=engine, store=store, config=config, address=advertise or url)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level=log_level))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def serving(
    app: Any, sock: socket.socket | None = None, *, log_level: str = "warning",
    startup_timeout: float = 10.0,
) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn in this event loop; yields its URL; stops on exit."""
    uvicorn = _uvicorn()
    if sock is None:
        sock, url = bind()
    else:
        host, port = sock.getsockname()[:2]
        url = f"http://{host}:{port}"
    config = uvicorn.Config(app, lifespan="on", log_level=log_level, access_log=False)
    server = uvicorn.Server(config)
    # signals belong to the program that runs this loop (and nested servers would restore
    # each other's handlers in the wrong order)
    server.capture_signals = contextlib.nullcontext
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(startup_timeout):
            while not server.started:
                if task.done():
                    task.result()
                    raise ConfigError("uvicorn stopped during startup")
                await asyncio.sleep(0.01)
        yield url
    finally:
        end_streams = getattr(app, "end_streams", None)
        if end_streams is not None:  # server-sent events would keep the shutdown waiting
            end_streams()
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 10)
        finally:
            sock.close()
