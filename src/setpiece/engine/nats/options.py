"""The NATS engine URL and its options (``nats://a:4222,b:4222?prefix=shop&replicas=3``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from setpiece.errors import ConfigError

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "NatsOptions", "nats_options", "seed_urls"]

_PREFIX = re.compile(r"[A-Za-z0-9_]{1,32}")

DEFAULT_CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class NatsOptions:
    """The NATS engine URL's options (``nats://host:4222?prefix=shop&connect_timeout=3``)."""

    server: str
    prefix: str = "sp"
    replicas: int = 1
    timeout: float = 30.0  # how long a call keeps retrying while a server is unreachable
    # how long the first connection may take (default: 5 s, or ``timeout`` if shorter)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    creds: str | None = None  # a NATS credentials file (JWT + NKey seed)
    tls_ca: str | None = None  # a CA bundle to verify the servers' certificates with


def nats_options(url: str) -> NatsOptions:
    """Parse and check a NATS engine URL's options; ConfigError names the one that is wrong."""
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    known = {"prefix", "replicas", "timeout", "connect_timeout", "creds", "tls_ca"}
    unknown = set(options) - known
    if unknown:
        raise ConfigError(f"engine URL {url!r}: unknown options {sorted(unknown)} "
                          f"(known: {', '.join(sorted(known))})")
    for name in ("creds", "tls_ca"):
        if name in options and not os.path.isfile(options[name]):
            raise ConfigError(f"engine URL {url!r}: {name}: no such file {options[name]!r}")
    prefix = options.get("prefix", "sp")
    if not _PREFIX.fullmatch(prefix):
        raise ConfigError(f"engine URL {url!r}: prefix must match {_PREFIX.pattern}")
    numbers: dict[str, float] = {}
    for name, default in (("replicas", 1.0), ("timeout", 30.0),
                          ("connect_timeout", DEFAULT_CONNECT_TIMEOUT)):
        try:
            numbers[name] = float(options.get(name, default))
        except ValueError:
            raise ConfigError(
                f"engine URL {url!r}: {name} must be a number, not {options[name]!r}"
            ) from None
        if not numbers[name] > 0:
            raise ConfigError(f"engine URL {url!r}: {name} must be positive")
    if not numbers["replicas"].is_integer():
        raise ConfigError(f"engine URL {url!r}: replicas must be a whole number")
    if "connect_timeout" not in options:  # a shorter call timeout bounds the connection too
        numbers["connect_timeout"] = min(DEFAULT_CONNECT_TIMEOUT, numbers["timeout"])
    return NatsOptions(urlunsplit(parts._replace(query="")), prefix, int(numbers["replicas"]),
                       numbers["timeout"], numbers["connect_timeout"],
                       options.get("creds"), options.get("tls_ca"))


def seed_urls(server: str) -> list[str]:
    """The servers a URL names: ``nats://a:4222,b:4223`` is two seeds of one cluster."""
    parts = urlsplit(server)
    hosts = [h.strip() for h in parts.netloc.split(",")]
    if any(not h for h in hosts):
        raise ConfigError(f"engine URL {server!r}: an empty server in the seed list")
    return [urlunsplit(parts._replace(netloc=host)) for host in hosts]
