"""Scale-out: the two-hop flow handled by 1, 2 and 4 worker processes, on one nats-server and
on a 3-node JetStream cluster (streams with 3 replicas), PostgreSQL holding the state.

Flow (as benchmarks/throughput.py): publish -> rule -> handler A (reads and writes its store,
emits) -> rule -> handler B (writes its store), on a bus of 8 partitions. Each worker is a
``setpiece run`` process; the harness appends a backlog of input events and polls the groups'
committed offsets until both hops have handled all of them.

    python benchmarks/scale.py [--events 20000] [--workers 1,2,4] [--targets single,cluster]

Prints, per target and worker count: events/s end to end, the ratio to one worker, the highest
lag seen while the backlog drained, the peak RSS of the workers, and how many cores the machine
kept busy meanwhile (the workers', nats-server's and PostgreSQL's share). From one worker's
figure it estimates the most any number of workers could reach on this machine: its cores over
the cores one worker's rate keeps busy (workers, servers and harness on one machine; larger
batches under more workers lower the cost per event a little, so the bound is approximate).

Then a rebalance: with two workers draining a backlog, a third joins and one later leaves; the
longest time any partition that had work left made no progress is printed beside the session
timeout (what a stop-the-world rebalance that waits for a dead member would cost).

The baseline, measured in the same run: the same flow with one worker, the first row. On a
machine with two cores, four workers share two cores with the servers and the harness.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "src")
sys.path[:0] = [SRC, HERE]

from setpiece import Bus, Event, Stack  # noqa: E402 - after sys.path
from setpiece.engine import Engine, open_engine  # noqa: E402
from setpiece.event import encode_event  # noqa: E402

PARTITIONS = 8
GROUPS = ("first.price", "second.record")
BUS_STREAM = "bus.default"


def build_stack() -> Stack:
    """benchmarks/throughput.py's two services, on a bus of PARTITIONS partitions."""
    from throughput import build_stack as two_hops

    services = list(two_hops().services.values())
    return Stack("scale", services=services, buses=[Bus("default", partitions=PARTITIONS)])


def payloads(n: int) -> list[tuple[str | None, bytes]]:
    return [
        (f"cu-{i % 500}", encode_event(Event(
            type="order_placed", source="bench", partitionkey=f"cu-{i % 500}",
            data={"order": f"o-{i}", "customer": f"cu-{i % 500}", "amount": 10})))
        for i in range(n)
    ]


class Workers:
    """``setpiece run scale:build_stack`` processes on one engine."""

    def __init__(self, url: str, store: str) -> None:
        self.url, self.store = url, store
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, n: int = 1) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, HERE])}
        for _ in range(n):
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "setpiece.cli", "run", "scale:build_stack",
                 "--engine", self.url, "--store", self.store, "--batch-size", "256",
                 "--heartbeat", "0.2", "--session-timeout", "2", "--quiet",
                 "--log-level", "warning"],
                env=env, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))

    def stop_one(self) -> None:
        proc = self.procs.pop()
        proc.terminate()
        proc.wait(timeout=60)

    def peak_rss(self) -> int:
        """The highest resident set of the running workers, in bytes (VmHWM)."""
        peak = 0
        for proc in self.procs:
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
            except OSError:
                continue
        return peak

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()


async def _committed(engine: Engine) -> dict[str, list[int]]:
    committed = {}
    for group in GROUPS:
        found = await engine.committed(group, BUS_STREAM)
        committed[group] = [found.get(p, 0) for p in range(PARTITIONS)]
    return committed


async def _positions(engine: Engine) -> tuple[list[int], dict[str, list[int]]]:
    return await engine.end_offsets(BUS_STREAM), await _committed(engine)


async def _members(engine: Engine) -> int:
    """How many members the first hop's group has (0 when the engine cannot tell)."""
    members = getattr(engine, "members", None)
    if members is None:
        return 0
    return len(await members(GROUPS[0], BUS_STREAM))


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (every core, every process) so far."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_of_servers() -> dict[str, float]:
    """CPU seconds used so far by every nats-server and postgres process on the machine."""
    used = {"nats-server": 0.0, "postgres": 0.0}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/comm") as comm:
                    name = comm.read().strip()
            except OSError:
                continue
            if name in used:
                used[name] += _cpu_of(int(entry.name))
    return used


@dataclass
class Run:
    rate: float  # events/s end to end
    lag: int  # the highest lag seen
    rss: int  # the workers' peak RSS
    busy: float  # cores the machine kept busy on average while the backlog drained
    workers_busy: float  # of which the workers
    servers_busy: dict[str, float]  # and the servers


async def one_run(url: str, store: str, n: int, workers: int) -> Run:
    """One backlog of ``n`` events through ``workers`` workers, measured."""
    from setpiece._assembly import new_runtime

    engine = await open_engine(url, store=store)
    await new_runtime(build_stack(), engine).provision()
    pool = Workers(url, store)
    pool.start(workers)
    try:
        await asyncio.sleep(2 + workers)  # every worker starts and takes its partitions
        data = payloads(n)
        started = time.perf_counter()
        machine, mine = _machine_busy(), sum(_cpu_of(p.pid) for p in pool.procs)
        theirs = _cpu_of_servers()
        for i in range(0, n, 1000):
            await engine.append(BUS_STREAM, data[i : i + 1000])
        highest, polls = 0, 0
        while True:  # the harness polls; the workers do not
            # Light polling, so the harness takes little of the CPU the workers share: the
            # groups' committed offsets (one query each) every 50 ms; the log's ends (a
            # STREAM.INFO per partition) every half second, for the lag.
            if polls % 10 == 0:
                ends, committed = await _positions(engine)
                highest = max(highest, sum(
                    e - c for group in committed.values()
                    for e, c in zip(ends, group, strict=True)))
            else:
                committed = await _committed(engine)
            polls += 1
            if all(sum(group) == 2 * n for group in committed.values()):
                break  # both hops read every input and every emitted event
            await asyncio.sleep(0.05)
        took = time.perf_counter() - started
        busy = (_machine_busy() - machine) / took
        workers_busy = (sum(_cpu_of(p.pid) for p in pool.procs) - mine) / took
        servers_busy = {name: (used - theirs.get(name, 0.0)) / took
                        for name, used in _cpu_of_servers().items()}
        return Run(n / took, highest, pool.peak_rss(), busy, workers_busy, servers_busy)
    finally:
        pool.stop()
        await engine.close()


async def rebalance(url: str, store: str, n: int, session_timeout: float = 2.0) -> float:
    """The longest stall of any partition with work left while a worker joins and one leaves."""
    from setpiece._assembly import new_runtime

    engine = await open_engine(url, store=store)
    await new_runtime(build_stack(), engine).provision()
    pool = Workers(url, store)
    pool.start(2)
    try:
        await asyncio.sleep(4)
        data = payloads(n)
        for i in range(0, n, 1000):
            await engine.append(BUS_STREAM, data[i : i + 1000])
        last_move: dict[tuple[str, int], float] = {}
        seen: dict[tuple[str, int], int] = {}
        longest = 0.0
        started = time.monotonic()
        joined = left = False
        while True:
            now = time.monotonic()
            if not joined and now - started > 1.0:
                pool.start(1)  # a third worker joins
                joined = True
            if joined and not left and now - started > 5.0:
                pool.stop_one()  # and one leaves (a clean stop: it hands its partitions back)
                left = True
            ends, committed = await _positions(engine)
            for group, offsets in committed.items():
                for p, offset in enumerate(offsets):
                    key = (group, p)
                    if seen.get(key) != offset or offset >= ends[p]:
                        seen[key] = offset
                        last_move[key] = now
                    else:
                        longest = max(longest, now - last_move.setdefault(key, now))
            behind = sum(e - c for group in committed.values() for e, c in zip(ends, group,
                                                                            strict=True))
            if left and behind == 0 and sum(ends) == 2 * n:
                return longest
            await asyncio.sleep(0.02)
    finally:
        pool.stop()
        await engine.close()


@contextmanager
def servers(kind: str) -> Iterator[tuple[str, str]]:
    from setpiece.engine.servers import nats_cluster, nats_server, postgres_server

    with ExitStack() as stack:
        nats = stack.enter_context(nats_cluster(nodes=3) if kind == "cluster" else nats_server())
        pg = stack.enter_context(postgres_server())
        yield nats.url, pg.url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--targets", default="single,cluster")
    parser.add_argument("--no-rebalance", action="store_true")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    cores = os.cpu_count() or 1
    print(f"two-hop flow, {args.events} events, bus of {PARTITIONS} partitions, "
          f"{cores} cores")
    for kind in args.targets.split(","):
        with servers(kind) as (nats_url, pg_url):
            base: Run | None = None
            for workers in counts:
                name = f"s{uuid.uuid4().hex[:10]}"
                joiner = "&" if "?" in nats_url else "?"
                run = asyncio.run(one_run(
                    f"{nats_url}{joiner}prefix={name}", f"{pg_url}?schema={name}",
                    args.events, workers))
                base = base or run
                print(f"{kind:8} workers={workers}  {run.rate:9,.0f} events/s  "
                      f"x{run.rate / base.rate:4.2f} of 1 worker  highest lag {run.lag:7,}  "
                      f"worker peak RSS {run.rss / 2**20:5.0f} MiB  CPU busy {run.busy:4.2f} "
                      f"of {cores} (workers {run.workers_busy:4.2f}, "
                      + ", ".join(f"{k} {v:4.2f}" for k, v in run.servers_busy.items())
                      + ")", flush=True)
            if base is not None and base.busy > 0:
                # What the machine can give: its cores over what one worker's rate kept busy
                # (the worker, the servers and the harness), if every part scaled linearly.
                print(f"{kind:8} bound on this machine: {cores} cores / {base.busy:.2f} busy at "
                      f"1 worker = about x{cores / base.busy:.2f} of 1 worker (an estimate: "
                      f"the cost per event falls a little as batches grow)", flush=True)
            if not args.no_rebalance:
                name = f"r{uuid.uuid4().hex[:10]}"
                joiner = "&" if "?" in nats_url else "?"
                gap = asyncio.run(rebalance(f"{nats_url}{joiner}prefix={name}",
                                            f"{pg_url}?schema={name}", args.events))
                print(f"{kind:8} rebalance (2 -> 3 -> 2 workers): longest stall of a partition "
                      f"with work left {gap:.2f} s (session timeout 2 s)", flush=True)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
