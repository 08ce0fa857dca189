"""The production engine's tests use the session servers of ``tests/conftest.py``
(``nats``, ``postgres``) and :func:`fresh_urls` (re-exported here for existing imports)."""

from __future__ import annotations

from tests.conftest import fresh_urls

__all__ = ["fresh_urls"]
