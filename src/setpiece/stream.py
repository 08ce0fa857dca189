"""Streams: named, partitioned, durable, ordered logs (a Kafka topic, a Kinesis stream)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from setpiece.errors import ConfigError

__all__ = ["Stream"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,119}")  # fullmatch: '$' allows a final \n


def check_name(kind: str, name: str) -> None:
    """Names of streams, buses, services and rules: letters, digits, ``_ . -``; at most 120."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{kind} name {name!r}: use letters, digits, '_', '.' or '-' (start with a letter "
            "or digit, at most 120 characters)"
        )


@dataclass(frozen=True, slots=True)
class Stream:
    """A stream declaration. A record's ``partitionkey`` picks its partition.

    ``retention`` is in seconds (None keeps records until trimmed by hand).
    """

    name: str
    partitions: int = 4
    retention: float | None = None

    def __post_init__(self) -> None:
        check_name("stream", self.name)
        if self.name.startswith("setpiece.") or self.name.startswith("bus."):
            raise ConfigError(f"stream name {self.name!r}: 'setpiece.' and 'bus.' are reserved")
        if not 1 <= self.partitions <= 1024:
            raise ConfigError(f"stream {self.name!r}: partitions must be 1..1024")
        if self.retention is not None and self.retention <= 0:
            raise ConfigError(f"stream {self.name!r}: retention must be positive seconds")
