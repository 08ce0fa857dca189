"""``setpiece dev`` reload: from a file save to the changed handler processing an event.

A one-service stack runs under ``setpiece dev``. Each round saves the module with a new
``VERSION``, then publishes a ping every few milliseconds (straight into the engine) until the
handler reports, in its store, the wall-clock time it first ran with that version. The figure is
that time minus the save time: change detection, stopping the old child, importing the changed
code in the warm spare, starting the runtime, and delivering the event.

A second round does the same with a busier stack, as in the example: an HTTP route, so the
gateway is served (on a socket the supervisor keeps across reloads), and a handler that always
fails, so retries are always waiting on their backoff. A reload hands those back to the next child
instead of waiting them out, so the figure should not differ much from the first.

Baseline, in the same run: starting the same stack from scratch in a fresh process
(``setpiece run``, spawn to the handler's first event) — what a reload costs when the whole
process starts over.

    python benchmarks/reload.py [--saves 5] [--pause 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import msgspec  # noqa: E402

from setpiece import Event  # noqa: E402
from setpiece.engine import open_engine  # noqa: E402
from setpiece.event import encode_event  # noqa: E402

APP = '''
import time

from setpiece import Context, Event, Service, Stack

VERSION = {version}
svc = Service("svc")


@svc.on({{"type": ["ping"]}})
async def handle(event: Event, ctx: Context) -> None:
    key = f"seen:{{VERSION}}"
    if await ctx.store.get(key) is None:
        await ctx.store.put(key, time.time())


stack = Stack("bench", services=[svc])
'''

# The busier stack: a route (the gateway is served) and retries always waiting on a backoff.
BUSY = APP + '''
from setpiece import RetryPolicy


@svc.get("/version", public=True)
async def version() -> dict[str, int]:
    return {{"version": VERSION}}


@svc.on({{"type": ["flaky"]}}, retry=RetryPolicy(max_attempts=1000, initial_delay=1.0,
                                               max_delay=1.0, jitter=0))
async def flaky(event: Event, ctx: Context) -> None:
    raise RuntimeError("the partner is down")
'''


async def publish_flaky(url: str, count: int) -> None:
    engine = await open_engine(url)
    try:
        await engine.append("bus.default", [
            (str(i), encode_event(Event(type="flaky", source="bench"))) for i in range(count)
        ])
    finally:
        await engine.close()


async def first_seen(url: str, version: int, timeout: float = 30.0) -> float:
    """Ping until the handler of ``version`` has run; return the time it first ran."""
    engine = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if engine is None:
                try:
                    engine = await open_engine(url)
                    await engine.end_offsets("bus.default")
                except Exception:  # the stack has not created its streams yet
                    if engine is not None:
                        await engine.close()
                    engine = None
                    await asyncio.sleep(0.005)
                    continue
            ping = Event(type="ping", source="bench")
            await engine.append("bus.default", [(None, encode_event(ping))])
            found = await engine.kv_get("svc:svc", [f"seen:{version}"])
            if found:
                return float(msgspec.json.decode(found[f"seen:{version}"][0]))
            await asyncio.sleep(0.005)
        raise TimeoutError(f"version {version} never ran")
    finally:
        if engine is not None:
            await engine.close()


def spawn(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([sys.executable, "-m", "setpiece.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def dev_reloads(work: Path, name: str, source: str, saves: int, pause: float,
                flaky: int = 0) -> list[float]:
    """Save times to the changed handler's first event under ``setpiece dev``; ``flaky``
    events keep retries waiting on their backoff, and the gateway is served if there are
    routes."""
    module = work / "benchapp.py"
    module.write_text(source.format(version=0))
    url = f"sqlite:///{work / f'{name}.db'}"
    with socket.socket() as probe:  # a free port for the gateway
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dev = spawn(["dev", "benchapp:stack", "--engine", url, "--http", f"127.0.0.1:{port}"], work)
    reloads: list[float] = []
    try:
        asyncio.run(first_seen(url, 0))
        if flaky:
            asyncio.run(publish_flaky(url, flaky))
        for version in range(1, saves + 1):
            time.sleep(pause)
            saved = time.time()
            module.write_text(source.format(version=version))
            reloads.append(asyncio.run(first_seen(url, version)) - saved)
    finally:
        stop(dev)
    return reloads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=5)
    parser.add_argument("--pause", type=float, default=1.0,
                        help="seconds between saves (the spare warms up meanwhile)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="setpiece-reload-"))
    module = work / "benchapp.py"

    # Baseline: a fresh process, from spawn to the handler's first event.
    cold: list[float] = []
    for i in range(args.saves):
        version = 1000 + i
        module.write_text(APP.format(version=version))
        url = f"sqlite:///{work / f'cold{i}.db'}"
        started = time.time()
        proc = spawn(["run", "benchapp:stack", "--engine", url], work)
        try:
            cold.append(asyncio.run(first_seen(url, version)) - started)
        finally:
            stop(proc)

    # setpiece dev: from the save to the changed handler's first event.
    reloads = dev_reloads(work, "dev", APP, args.saves, args.pause)
    busy = dev_reloads(work, "busy", BUSY, args.saves, args.pause, flaky=4)

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:7.0f} ms   (runs: " + ", ".join(
            f"{v * 1000:.0f}" for v in values) + ")"

    print(f"reload: file save -> changed handler ran, setpiece dev, median of {args.saves}")
    print(f"  setpiece dev reload           {ms(reloads)}")
    print(f"  ... retries in flight + HTTP  {ms(busy)}")
    print(f"  baseline: fresh process start {ms(cold)}")
    ratio = statistics.median(reloads) / statistics.median(cold)
    print(f"  reload / fresh start          {ratio:7.2f}x")


if __name__ == "__main__":
    main()
