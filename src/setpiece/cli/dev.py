"""``setpiece dev``: run the whole stack, restart it on every code change, show what flows.

Design: the stack runs in a child process; a change replaces the child. Nothing is lost across a
restart because nothing lives in the child: every event is in the engine's log and every
consumer's position is its committed offset. The old child stops like a worker on SIGTERM
(batches in flight finish within the grace period, or are handed back uncommitted and simply
delivered again by the new child; effects stay exactly once through the inbox). The new child
uses the same group member name, so it owns every partition at once.

Why a process and not an in-process reload: a fresh interpreter is the only reload that is always
right (module-level state, changed imports of imports, class identity, C extensions). The usual
cost of that correctness — interpreter start plus importing setpiece and the user's libraries,
a few hundred milliseconds — is paid ahead of time: a *warm spare* child is always waiting with
those imports done, and the changed code is imported only once the spare is told to run, while
the old child stops. A reload is then: stop the old child (importing the user's modules
meanwhile), start the runtime.

The HTTP gateway's listening socket outlives the children: the supervisor binds it once and every
child inherits it. A child listens on it once it serves the gateway (a stack without routes never
does), and from then on the socket stays open in the supervisor: while one child stops and the
next starts, new connections wait in its backlog, and none is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import setpiece
from setpiece.cli._common import CliError
from setpiece.errors import ConfigError

__all__ = ["Supervisor", "run_dev"]

_SETPIECE_DIR = Path(setpiece.__file__).resolve().parent


class _Child:
    def __init__(self, env: dict[str, str], fds: tuple[int, ...] = ()) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "setpiece.cli._devchild"],
            stdin=subprocess.PIPE,
            env=env,
            pass_fds=fds,  # the HTTP listening socket, when there is one
            start_new_session=True,  # Ctrl+C reaches the supervisor only; it stops the children
        )

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    def send(self, line: bytes) -> bool:
        try:
            self.stdin.write(line + b"\n")
            self.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace + 5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            self.stdin.close()


def http_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8000`` for IPv6) as a host and a port number."""
    host, sep, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise CliError(f"--http {address!r}: not HOST:PORT (write e.g. 127.0.0.1:8000)")
    return host or "127.0.0.1", int(port)


class Supervisor:
    """Keeps one running child and one warm spare; swaps them on change.

    ``http``: the gateway's ``HOST:PORT``, bound here once and handed to every child.
    """

    def __init__(self, order: dict[str, Any], grace: float, http: str | None = None) -> None:
        self._order = dict(order)
        self._grace = grace
        self._socket: socket.socket | None = None
        self._fds: tuple[int, ...] = ()
        if http:
            self._bind(http)
        fd, self._preload = tempfile.mkstemp(prefix="setpiece-dev-", suffix=".json")
        os.close(fd)
        Path(self._preload).write_text("[]")
        self._env = {**os.environ, "SETPIECE_DEV_PRELOAD": self._preload}
        self._current: _Child | None = None
        self._spare: _Child | None = None

    def _bind(self, address: str) -> None:
        from setpiece.gateway.server import bind

        host, port = http_address(address)
        try:
            self._socket, url = bind(host, port)
        except ConfigError as exc:  # the children say so, if the stack serves HTTP
            self._order["http_error"] = str(exc)
            return
        self._fds = (self._socket.fileno(),)
        self._order.update(http_fd=self._socket.fileno(), http_url=url)

    def _child(self) -> _Child:
        return _Child(self._env, self._fds)

    def _take_spare(self) -> _Child:
        spare = self._spare or self._child()
        self._spare = None
        return spare

    def start(self, changed: list[str] | None = None, t0: float | None = None) -> None:
        """Replace the running child (if any) with the spare, running the current code.

        The spare imports the changed code while the old child stops; it starts consuming once
        the old child has exited (they use the same group member name).
        """
        child = self._take_spare()
        order = {**self._order, "t0": t0 or time.time(), "changed": changed or []}
        line = json.dumps(order).encode()
        if not child.send(line):  # the spare died (killed?): a fresh one
            child.stop(0)
            child = self._child()
            child.send(line)
        if self._current is not None:
            self._current.stop(self._grace)
        child.send(b"start")
        self._current = child
        self._spare = self._child()

    def reload(self, paths: list[str], t0: float) -> None:
        if any(Path(p).resolve().is_relative_to(_SETPIECE_DIR) for p in paths) and self._spare:
            self._spare.stop(0)  # setpiece itself changed: the spare imported the old one
            self._spare = None
        cwd = Path.cwd()
        names = []
        for p in paths:
            path = Path(p)
            with contextlib.suppress(ValueError):
                path = path.resolve().relative_to(cwd)
            names.append(str(path))
        self.start(sorted(names), t0)

    def close(self) -> None:
        for child in (self._spare, self._current):
            if child is not None:
                child.stop(self._grace)
        self._spare = self._current = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        with contextlib.suppress(OSError):
            os.unlink(self._preload)


def _changes(roots: list[str], stop: threading.Event) -> Iterator[list[str]]:
    import watchfiles

    for changes in watchfiles.watch(
        *roots,
        watch_filter=watchfiles.PythonFilter(),
        step=10,
        debounce=400,
        stop_event=stop,
        raise_interrupt=False,
        rust_timeout=500,
    ):
        yield sorted({path for _, path in changes})


def run_dev(
    target: str,
    *,
    engine: str | None,
    store: str | None,
    watch: list[str],
    app_dir: str | None,
    grace: float,
    json_lines: bool,
    debug: bool,
    http: str | None = None,
) -> int:
    """Run ``setpiece dev`` until Ctrl+C or SIGTERM; returns the exit code."""
    roots = [str(Path(w).resolve()) for w in watch] or [os.getcwd()]
    order = {
        "target": target, "engine": engine, "store": store, "app_dir": app_dir,
        "grace": grace, "json": json_lines, "debug": debug, "roots": roots,
    }
    stop = threading.Event()

    def on_term(signum: int, frame: object) -> None:
        stop.set()

    supervisor = Supervisor(order, grace, http)
    previous = {sig: signal.signal(sig, on_term) for sig in (signal.SIGTERM, signal.SIGINT)}
    started, reloads = time.monotonic(), 0
    try:
        supervisor.start()
        for paths in _changes(roots, stop):
            if stop.is_set():
                break
            supervisor.reload(paths, time.time())
            reloads += 1
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        supervisor.close()
    _goodbye(target, time.monotonic() - started, reloads, json_lines)
    return 0


def _goodbye(target: str, seconds: float, reloads: int, json_lines: bool) -> None:
    """One line saying what ran, once every child has stopped (stderr when stdout is JSON)."""
    minutes, secs = divmod(int(seconds), 60)
    took = f"{minutes} min {secs} s" if minutes else f"{seconds:.1f} s"
    line = f"■ stopped setpiece dev {target}: ran {took}, {reloads} reload(s)\n"
    stream = sys.stderr if json_lines else sys.stdout
    stream.write(line)
    stream.flush()
