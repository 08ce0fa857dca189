"""A notes instance in its own process (for the kill test): serve(stack) on a shared SQLite file."""

from __future__ import annotations

import sys

from setpiece import RuntimeConfig, Stack
from setpiece.gateway import serve
from tests.gateway.conftest import auth, notes_service

if __name__ == "__main__":
    db, version = sys.argv[1], sys.argv[2]
    stack = Stack("app", services=[notes_service(version)], auth=auth())
    serve(stack, "127.0.0.1", 0, engine=f"sqlite:///{db}", log_level="warning",
          config=RuntimeConfig(heartbeat_interval=0.1, session_timeout=0.6))
