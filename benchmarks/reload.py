"""``setpiece dev`` reload: from a file save to the changed handler processing an event.

A one-service stack runs under ``setpiece dev``. Each round saves the module with a new
``VERSION``, then publishes a ping every few milliseconds (straight into the engine) until the
handler reports, in its store, the wall-clock time it first ran with that version. The figure is
that time minus the save time: change detection, stopping the old child, importing the changed
code in the warm spare, starting the runtime, and delivering the event.

Baseline, in the same run: starting the same stack from scratch in a fresh process
(``setpiece run``, spawn to the handler's first event) — what a reload costs when the whole
process starts over.

    python benchmarks/reload.py [--saves 5] [--pause 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
    module.write_text(APP.format(version=0))
    url = f"sqlite:///{work / 'dev.db'}"
    dev = spawn(["dev", "benchapp:stack", "--engine", url], work)
    reloads: list[float] = []
    try:
        asyncio.run(first_seen(url, 0))
        for version in range(1, args.saves + 1):
            time.sleep(args.pause)
            saved = time.time()
            module.write_text(APP.format(version=version))
            reloads.append(asyncio.run(first_seen(url, version)) - saved)
    finally:
        stop(dev)

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:7.0f} ms   (runs: " + ", ".join(
            f"{v * 1000:.0f}" for v in values) + ")"

    print(f"reload: file save -> changed handler ran, setpiece dev, median of {args.saves}")
    print(f"  setpiece dev reload           {ms(reloads)}")
    print(f"  baseline: fresh process start {ms(cold)}")
    ratio = statistics.median(reloads) / statistics.median(cold)
    print(f"  reload / fresh start          {ratio:7.2f}x")


if __name__ == "__main__":
    main()
