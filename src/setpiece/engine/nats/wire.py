"""What the NATS engine puts on the wire and reads back: JetStream names, record headers,
timestamps, publish acks and wake-ups.

Names: characters other than ``A-Z a-z 0-9`` in a stream name are written ``_XX`` (hex of each
UTF-8 byte), which keeps JetStream names and subject tokens valid and the mapping one to one.
A record's key travels in ``Sp-Key`` (plain, printable ASCII) or ``Sp-Key64`` (base64 of its
UTF-8). A wake-up is ``"<partition> <end> <stream>"``.
"""

from __future__ import annotations

import base64
import calendar
import functools
import re
import time
from dataclasses import dataclass

import msgspec

from setpiece.engine.nats.client import Reply

__all__ = [
    "Ack",
    "encode_name",
    "header_block",
    "key_headers",
    "parse_timestamp",
    "parse_wake",
    "wake_payload",
]

_NAME_OK = re.compile(r"[A-Za-z0-9]")
_decode_json = msgspec.json.Decoder().decode


def encode_name(name: str) -> str:
    """A stream name as a JetStream name part and subject token (one to one)."""
    return "".join(
        c if _NAME_OK.fullmatch(c) else "".join(f"_{b:02X}" for b in c.encode()) for c in name
    )


@functools.lru_cache(maxsize=4096)
def _epoch_seconds(stamp: str) -> int:
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))


def parse_timestamp(value: str) -> float:
    """``2026-11-22T04:14:51.228189137Z`` (JetStream's RFC 3339, UTC) as epoch seconds."""
    value = value.rstrip("Z")
    base, _, frac = value.partition(".")
    seconds = float(_epoch_seconds(base))
    if frac:
        seconds += int(frac) / 10 ** len(frac)
    return seconds


def header_block(raw: bytes) -> dict[str, str]:
    """The headers of a NATS header block (``NATS/1.0\r\nName: value\r\n...``)."""
    out: dict[str, str] = {}
    for line in raw.decode("latin-1").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            out.setdefault(name.strip(), value.strip())
    return out


def key_headers(key: str | None) -> dict[str, str]:
    """The header that carries a record's key (none for a record without one)."""
    if key is None:
        return {}
    if key.isascii() and key.isprintable() and key == key.strip() and key:
        return {"Sp-Key": key}
    return {"Sp-Key64": base64.b64encode(key.encode()).decode()}


@dataclass(frozen=True, slots=True)
class Ack:
    """JetStream's answer to a publish: a sequence, or an error code."""

    seq: int = 0
    error: int = 0
    description: str = ""

    @classmethod
    def parse(cls, msg: Reply) -> Ack:
        if msg.status == "503":  # no responders: the stream is not (yet) there
            return cls(error=503, description="no responders")
        try:
            body = _decode_json(msg.data)
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return cls(error=-1, description=repr(msg.data[:200]))
        if "error" in body:
            err = body["error"]
            return cls(error=int(err.get("err_code", -1)), description=str(err))
        return cls(seq=int(body["seq"]))


def wake_payload(stream: str, partition: int, end: int) -> bytes:
    """A wake-up telling every engine that ``stream[partition]`` holds records up to ``end``."""
    return f"{partition} {end} ".encode() + stream.encode()


def parse_wake(data: bytes) -> tuple[str, int, int] | None:
    """(stream, partition, end offset) of a wake-up, None if it names no partition."""
    try:
        part, end, stream = data.split(b" ", 2)
        return stream.decode(), int(part), int(end)
    except ValueError:
        return None
