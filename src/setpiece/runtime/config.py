"""How a runtime runs: batch sizes, concurrency, group membership, limits. One frozen object."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from setpiece.errors import ConfigError
from setpiece.event import DEFAULT_MAX_EVENT_BYTES

__all__ = ["RuntimeConfig"]


def _member_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """Tuning for one runtime process. The defaults suit a laptop and a production worker alike.

    * ``batch_size`` — records read (and committed) per partition per turn.
    * ``concurrency`` — deliveries of different partition keys in flight per consumer.
    * ``session_timeout`` — a group member silent this long is gone and its partitions move.
    * ``heartbeat_interval`` — how often a member says it is alive and picks up new assignments.
    * ``max_event_bytes`` — the size limit of one encoded event.
    * ``inbox_retention`` — how long processed event ids are remembered for deduplication.
    * ``shutdown_grace`` — how long a stop waits for in-flight batches before handing them back.
    * ``handler_timeout`` — seconds one attempt of a handler may run, unless the handler sets
      its own ``timeout=``; past it the attempt fails with HandlerTimeout (retried, then
      dead-lettered).
    * ``member`` — this process's name in consumer groups (host-pid-random by default).
    * ``services`` — run only these services' handlers (all when empty).
    """

    batch_size: int = 256
    concurrency: int = 16
    session_timeout: float = 10.0
    heartbeat_interval: float = 1.0
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    inbox_retention: float = 7 * 24 * 3600.0
    shutdown_grace: float = 10.0
    handler_timeout: float = 60.0
    member: str = field(default_factory=_member_id)
    services: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("RuntimeConfig.batch_size: must be at least 1")
        if self.concurrency < 1:
            raise ConfigError("RuntimeConfig.concurrency: must be at least 1")
        if self.heartbeat_interval <= 0 or self.session_timeout <= self.heartbeat_interval:
            raise ConfigError(
                "RuntimeConfig: session_timeout must be longer than heartbeat_interval (> 0)"
            )
        if not self.handler_timeout > 0:
            raise ConfigError("RuntimeConfig.handler_timeout: must be positive seconds")
        if self.max_event_bytes < 1024:
            raise ConfigError("RuntimeConfig.max_event_bytes: must be at least 1024")
