"""``setpiece run --metrics-port``: the worker's metrics over plain HTTP for Prometheus.

A worker serves no gateway; this tiny server answers ``GET /metrics`` (Prometheus text, the
consumer lag read at that moment) and nothing else (404), one request per connection. Bind it
to a private interface: it has no authentication (the gateway's ``/metrics`` has).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from setpiece.observe._extension import EXTENSION, PROMETHEUS_TEXT

__all__ = ["serve_metrics"]

log = logging.getLogger("setpiece.observe")
_MAX_HEAD = 16 * 1024


async def serve_metrics(runtime: Any, host: str, port: int) -> asyncio.Server:
    """Serve ``runtime``'s metrics at ``http://host:port/metrics``; close the returned server
    to stop."""
    observe = runtime.extension(EXTENSION)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            line = head[: min(len(head), _MAX_HEAD)].split(b"\r\n", 1)[0].split()
            if len(line) >= 2 and line[0] in (b"GET", b"HEAD") and \
                    line[1].split(b"?")[0] == b"/metrics":
                body = (await observe.metrics_text()).encode()
                status, kind = b"200 OK", PROMETHEUS_TEXT.encode()
            else:
                body, status, kind = b"not found\n", b"404 Not Found", b"text/plain"
            writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-type: " + kind
                         + b"\r\ncontent-length: " + str(len(body)).encode()
                         + b"\r\nconnection: close\r\n\r\n"
                         + (body if line[:1] != [b"HEAD"] else b""))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            pass
        except Exception:
            log.exception("metrics: the request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(answer, host, port)
