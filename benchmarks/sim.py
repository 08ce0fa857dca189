"""Simulated messages per wall-clock second and peak memory of ``setpiece sim``, at 1,000,
10,000 and 100,000 instances of Spigo's ``netflixoss`` architecture, beside the floor.

The floor is a bare ``heapq`` event loop in the same process, right after the simulation: it
moves the same number of messages (pop an event, push the next one at a random later time)
through a heap holding as many pending events as the simulation's heap held on average (at
its timeline samples). It does nothing else, so no discrete-event simulator in Python can beat it.

    python benchmarks/sim.py [--sizes 1000,10000,100000] [--messages 1000000] [--arch FILE]

Each size runs in its own process, so each peak RSS is that size's alone (the process's peak,
interpreter and imports included). The load is half of what the busiest service can take (the
default ``--rate`` of ``setpiece sim``; ``--load`` changes that share); the simulated duration
is chosen to move about ``--messages`` messages.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

# Spigo's files sit beside the project (../shared/spigo), or where $SETPIECE_SPIGO_DIR says
DEFAULT_ARCH = Path(os.environ.get("SETPIECE_SPIGO_DIR") or ROOT.parent / "shared" / "spigo") \
    / "netflixoss_arch.json"
MESSAGES_PER_REQUEST = 12  # netflixoss: measured, only used to pick the simulated duration


def floor(messages: int, pending: int, seed: int = 0) -> tuple[float, float]:
    """Messages per wall-clock and per CPU second of a bare heapq loop with ``pending`` events
    in its heap."""
    rng = random.Random(seed)
    rnd = rng.random
    seq = itertools.count().__next__
    heap = [(rnd(), seq(), 0, None, 0, 0, 0, 0.0) for _ in range(max(1, pending))]
    heapq.heapify(heap)
    push, pop = heapq.heappush, heapq.heappop
    moved = 0
    started, cpu = time.perf_counter(), time.process_time()
    while moved < messages:
        now = pop(heap)[0]
        moved += 1
        push(heap, (now + rnd(), seq(), 0, None, 0, 0, 0, 0.0))
    return messages / (time.perf_counter() - started), messages / (time.process_time() - cpu)


def peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def one_size(arch: str, instances: int, messages: int, seed: int,
             load: float = 0.5) -> dict[str, float]:
    """Run the simulation at one size, then the floor; in the calling process. ``load``: the
    rate as a share of what the busiest service can take."""
    from setpiece.sim import SimConfig, Simulation, load_spigo

    base = load_spigo(arch)
    model = load_spigo(arch, scale=instances / base.instances)
    rate = Simulation(model, SimConfig(duration=1.0)).default_rate() * load / 0.5
    duration = messages / (MESSAGES_PER_REQUEST * rate)
    started = time.perf_counter()
    sim = Simulation(model, SimConfig(duration=duration, rate=rate, seed=seed,
                                      sample_interval=duration / 20))
    built = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    sim.run()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    rss = peak_rss()
    pending = round(sum(sim.pending) / len(sim.pending)) if sim.pending else 1
    floor_wall, floor_cpu = floor(sim.messages, pending, seed)
    return {
        "instances": len(sim.i_svc), "messages": sim.messages, "simulated_seconds": duration,
        "build_seconds": built, "wall_seconds": wall, "messages_per_second": sim.messages / wall,
        "messages_per_cpu_second": sim.messages / cpu, "floor_per_second": floor_wall,
        "floor_per_cpu_second": floor_cpu, "pending": pending, "peak_rss_bytes": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--arch", default=str(DEFAULT_ARCH))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--load", type=float, default=0.5,
                        help="the rate, as a share of what the busiest service can take")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: one size
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.arch, args.one, args.messages, args.seed, args.load)))
        return
    if not Path(args.arch).is_file():
        raise SystemExit(f"no architecture file at {args.arch} (pass --arch)")
    print(f"setpiece sim on {Path(args.arch).name}, about {args.messages:,} messages per size, "
          f"load {args.load:g} of the busiest service's capacity")
    print("msg/s and floor/s per wall-clock second; in brackets, per CPU second of this process "
          "(the machine may be shared)")
    print(f"{'instances':>10} {'messages':>10} {'sim s':>8} {'wall s':>7} {'msg/s':>19} "
          f"{'floor/s':>19} {'% floor':>13} {'peak RSS':>9}")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    for size in [int(s) for s in args.sizes.split(",")]:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--messages", str(args.messages),
             "--arch", args.arch, "--seed", str(args.seed), "--load", str(args.load)],
            check=True, capture_output=True, text=True, env=env).stdout
        r = json.loads(out)
        rates = (f"{r['messages_per_second']:>8,.0f} ({r['messages_per_cpu_second']:>8,.0f}) "
                 f"{r['floor_per_second']:>8,.0f} ({r['floor_per_cpu_second']:>8,.0f}) "
                 f"{100 * r['messages_per_second'] / r['floor_per_second']:>5.0f}% "
                 f"({100 * r['messages_per_cpu_second'] / r['floor_per_cpu_second']:>3.0f}%)")
        print(f"{r['instances']:>10,} {r['messages']:>10,} {r['simulated_seconds']:>8.3f} "
              f"{r['wall_seconds']:>7.2f} {rates} {r['peak_rss_bytes'] / 2**20:>7.0f} MiB",
              flush=True)


if __name__ == "__main__":
    main()
