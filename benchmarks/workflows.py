"""Benchmark: state transitions per second of ``setpiece.workflows.execute``, beside the npm
interpreter ``aws-local-stepfunctions`` running the same definitions in the same run, and of
durable executions of the same definitions on the embedded engine (a SQLite file).

    python benchmarks/workflows.py [--seconds 2]

Two workloads: a chain of 100 Pass states, and a Map over 1,000 items (one Pass state per
item). A "transition" is a state entered (the Map counts once, plus one per iteration).
Both interpreters compile/validate the definition once and then run it repeatedly.
The second workload is the same chain with InputPath, Parameters and ResultPath on every
state, so that it measures the general data-flow path and not only plain transitions.
The peer is installed with npm into ``benchmarks/node`` (``npm ci`` on first use); without
npm/node the peer column is skipped with a note.

The durable column starts executions of a ``Workflow`` on a stack running on a fresh SQLite file
(``synchronous=normal``, as by default) and waits for them: every step is persisted (execution
and thread records, history, the signal consumer's offset) before it counts. Executions are
started in rounds (100 chains, or 2 Maps, at a time) until the time budget is spent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from setpiece import Stack, Workflow
from setpiece.workflows import execute, validate

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")


def pass_chain(n: int, *, data_flow: bool = False) -> dict[str, Any]:
    """``n`` Pass states in a row; with ``data_flow`` each one also shapes its data
    (InputPath, Parameters with a path and a constant, ResultPath)."""
    states: dict[str, Any] = {}
    for i in range(n):
        st: dict[str, Any] = {"Type": "Pass"}
        if data_flow:
            st.update(
                {"InputPath": "$", "Parameters": {"v.$": "$.v", "step": i}, "ResultPath": "$.last"}
            )
        if i + 1 < n:
            st["Next"] = f"S{i + 1}"
        else:
            st["End"] = True
        states[f"S{i}"] = st
    return {"StartAt": "S0", "States": states}


def map_over(n: int) -> tuple[dict[str, Any], Any]:
    definition = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
                "End": True,
            }
        },
    }
    return definition, {"items": list(range(n))}


def cases(seconds: float) -> list[dict[str, Any]]:
    m, m_input = map_over(1000)
    return [
        {
            "name": "Pass chain (100 states)",
            "definition": pass_chain(100),
            "input": {"v": 1},
            "transitions": 100,
            "seconds": seconds,
        },
        {
            "name": "Pass chain + data flow",
            "definition": pass_chain(100, data_flow=True),
            "input": {"v": 1},
            "transitions": 100,
            "seconds": seconds,
        },
        {
            "name": "Map over 1,000 items",
            "definition": m,
            "input": m_input,
            "transitions": 1001,
            "seconds": seconds,
        },
    ]


def bench_setpiece(case: dict[str, Any]) -> float:
    sm = validate(case["definition"])
    for _ in range(3):
        execute(sm, case["input"])
    runs = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < case["seconds"]:
        ex = execute(sm, case["input"])
        assert ex.status == "SUCCEEDED"
        runs += 1
        elapsed = time.perf_counter() - start
    return runs * case["transitions"] / elapsed


def bench_durable(case: dict[str, Any]) -> float:
    """Durable executions on the embedded engine: transitions per second, start to finish."""
    return asyncio.run(_durable(case))


async def _durable(case: dict[str, Any]) -> float:
    round_size = 100 if case["transitions"] <= 100 else 2

    async def one_round(rt: Any, n: int) -> None:
        ids = await asyncio.gather(
            *(rt.start_execution("bench", case["input"]) for _ in range(n))
        )
        for ex_id in ids:
            done = await rt.wait_execution(ex_id, timeout=120)
            assert done.status == "SUCCEEDED", done

    with tempfile.TemporaryDirectory() as folder:
        stack = Stack("bench", workflows=[Workflow("bench", case["definition"])])
        async with stack.start(engine=f"sqlite:///{folder}/bench.db") as rt:
            await one_round(rt, round_size)  # warm up: caches, the consumer's first batches
            runs = 0
            start = time.perf_counter()
            elapsed = 0.0
            while elapsed < case["seconds"]:
                await one_round(rt, round_size)
                runs += round_size
                elapsed = time.perf_counter() - start
    return runs * case["transitions"] / elapsed


def bench_peer(all_cases: list[dict[str, Any]]) -> tuple[dict[str, float], str | None]:
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        return (
            {},
            "npm/node not found: install Node.js >= 20 to compare with aws-local-stepfunctions",
        )
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "aws-local-stepfunctions")):
        cmd = (
            [npm, "ci"]
            if os.path.exists(os.path.join(NODE_DIR, "package-lock.json"))
            else [npm, "install"]
        )
        done = subprocess.run(
            [*cmd, "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True
        )
        if done.returncode != 0:
            return {}, f"npm install failed in {NODE_DIR}:\n{done.stderr[-2000:]}"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(all_cases, f)
        path = f.name
    try:
        done = subprocess.run(
            [node, "bench.mjs", path], cwd=NODE_DIR, capture_output=True, text=True
        )
    finally:
        os.unlink(path)
    if done.returncode != 0:
        return {}, f"the node benchmark failed:\n{done.stderr[-2000:]}"
    out = {}
    for line in done.stdout.splitlines():
        row = json.loads(line)
        out[row["name"]] = float(row["transitions_per_second"])
    pkg = os.path.join(NODE_DIR, "node_modules", "aws-local-stepfunctions", "package.json")
    with open(pkg) as f:
        version = json.load(f)["version"]
    node_version = subprocess.run(
        [node, "--version"], capture_output=True, text=True
    ).stdout.strip()
    return out, f"peer: aws-local-stepfunctions {version} on node {node_version}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--seconds", type=float, default=2.0, help="time budget per case and interpreter"
    )
    args = ap.parse_args()
    all_cases = cases(args.seconds)
    ours = {c["name"]: bench_setpiece(c) for c in all_cases}
    durable = {c["name"]: bench_durable(c) for c in all_cases}
    peer, note = bench_peer(all_cases)
    print(f"setpiece.workflows.execute and durable executions (SQLite file) on Python "
          f"{sys.version.split()[0]}; {note or ''}")
    head = ("workload", "execute (t/s)", "durable (t/s)", "aws-local-stepfunctions", "ratio")
    print(f"{head[0]:<26} {head[1]:>14} {head[2]:>14} {head[3]:>24} {head[4]:>7}")
    for c in all_cases:
        name = c["name"]
        p = peer.get(name)
        ratio = f"{ours[name] / p:6.2f}x" if p else "    n/a"
        ptxt = f"{p:>24,.0f}" if p else f"{'n/a':>24}"
        print(f"{name:<26} {ours[name]:>14,.0f} {durable[name]:>14,.0f} {ptxt} {ratio}")
    print("t/s: state transitions per second; ratio: execute / aws-local-stepfunctions. Durable "
          "executions persist every step before it counts.")


if __name__ == "__main__":
    main()
