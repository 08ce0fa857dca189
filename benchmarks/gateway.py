"""What the gateway costs: one handler served through it, beside the same handler served directly.

Rows, each a uvicorn server in its own process, loaded from this process over loopback:

* ``direct``   — the handler in a bare Starlette app (no auth, no routing, no store);
* ``gateway``  — the handler as a service route behind the gateway, in-process: JWT check (HS256),
  scope check, version choice from discovery, breaker, request context with a tenant store,
  unit of work (empty, so no commit), JSON answer;
* ``proxied``  — through a gateway that runs no instance itself, to an instance in another
  process (two HTTP hops; the instance re-checks the token), for a picture of remote routing.

    python benchmarks/gateway.py [--seconds 5] [--connections 16]

The load generator is ``wrk`` when installed (``apt-get install wrk``), else an httpx client with
bounded concurrency and a bounded request count. Prints requests/s and p50/p99 latency per row,
at ``--connections`` concurrent connections and at 1 (the bare per-request latency), and the
gateway's added p50 latency and share of direct throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "src"))

SECRET = "benchmark-secret-of-thirty-two-bytes"


async def hello(name: str) -> dict[str, str]:
    """The handler measured: as small as a handler gets, so the overhead shows."""
    return {"hello": name}


def direct_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse(await hello(request.path_params["name"]))

    return Starlette(routes=[Route("/hello/{name}", endpoint)])


def stack(runs_hello: bool = True) -> Any:
    from setpiece import JWTAuth, Service, Stack

    svc = Service("greeter")
    svc.get("/hello/{name}", scopes=["hello:read"])(hello)
    services = [svc] if runs_hello else [svc, Service("edge")]
    return Stack("bench", services=services, auth=JWTAuth(secret=SECRET, audience="bench"))


def serve(kind: str, port: int, db: str) -> None:
    """Child process: one server, until killed."""
    import logging

    import uvicorn

    from setpiece import RuntimeConfig
    from setpiece.gateway import bind

    logging.disable(logging.WARNING)
    sock, url = bind("127.0.0.1", port)
    if kind == "direct":
        app = direct_app()
    elif kind in ("gateway", "instance"):
        app = stack().asgi(engine=f"sqlite:///{db}", address=url)
    else:  # "edge": a gateway that runs no greeter itself
        app = stack(runs_hello=False).asgi(engine=f"sqlite:///{db}",
                                           config=RuntimeConfig(services=("edge",)))
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(kind: str, db: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port),
                             "--db", db], stdout=subprocess.DEVNULL)
    return proc, port


def _wait_ready(port: int, headers: dict[str, str], timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/hello/ready", headers=headers, timeout=2)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server on port {port} did not become ready")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def load_wrk(url: str, headers: dict[str, str], seconds: float, connections: int
             ) -> dict[str, float]:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        raise SystemExit(f"{url}: {non2xx.group(1)} error responses\n{out}")
    return {"rps": rps, "p50": p50, "p99": p99}


def load_httpx(url: str, headers: dict[str, str], seconds: float, connections: int
               ) -> dict[str, float]:
    import httpx

    requests = max(200, int(seconds * 400))

    async def main() -> dict[str, float]:
        latencies: list[float] = []
        sem = asyncio.Semaphore(connections)
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(headers=headers, limits=limits) as client:
            async def one() -> None:
                async with sem:
                    t0 = time.perf_counter()
                    r = await client.get(url)
                    latencies.append((time.perf_counter() - t0) * 1000)
                    if r.status_code != 200:
                        raise SystemExit(f"{url}: HTTP {r.status_code}")

            start = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(requests)))
            elapsed = time.perf_counter() - start
        latencies.sort()
        return {"rps": requests / elapsed, "p50": latencies[len(latencies) // 2],
                "p99": latencies[int(len(latencies) * 0.99)]}

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.db)
        return

    from setpiece import mint_token

    token = mint_token(SECRET, subject="bench", scopes=["hello:read"], tenant="t1",
                       audience="bench", expires_in=3600)
    auth = {"Authorization": f"Bearer {token}"}
    load = load_wrk if shutil.which("wrk") else load_httpx
    tool = "wrk" if load is load_wrk else "httpx"
    print(f"load generator: {tool}; {args.seconds:g} s per run; handler: GET /hello/{{name}}")
    results: dict[tuple[str, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for row in ("direct", "gateway", "proxied"):
            db = os.path.join(tmp, f"{row}.db")
            procs: list[subprocess.Popen[bytes]] = []
            try:
                if row == "proxied":
                    instance, iport = _start("instance", db)
                    procs.append(instance)
                    _wait_ready(iport, auth)
                proc, port = _start("edge" if row == "proxied" else row, db)
                procs.append(proc)
                headers = {} if row == "direct" else auth
                _wait_ready(port, headers)
                url = f"http://127.0.0.1:{port}/hello/world"
                load(url, headers, 1.0, args.connections)  # warm-up
                for conns in (args.connections, 1):
                    results[(row, conns)] = load(url, headers, args.seconds, conns)
            finally:
                for p in procs:
                    p.terminate()
                    p.wait(10)
    print(f"{'row':<9}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for (row, conns), r in results.items():
        print(f"{row:<9}{conns:>6}{r['rps']:>10.0f}{r['p50']:>9.3f}{r['p99']:>9.3f}")
    for conns in (1, args.connections):
        d, g = results[("direct", conns)], results[("gateway", conns)]
        print(f"gateway vs direct at {conns:>2} connection(s): adds {g['p50'] - d['p50']:.3f} ms "
              f"at p50, keeps {100 * g['rps'] / d['rps']:.0f}% of the throughput")


if __name__ == "__main__":
    main()
