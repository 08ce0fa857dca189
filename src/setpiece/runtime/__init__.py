"""The runtime: consumers, delivery with retries and dead letters, schedules, publishing."""

from setpiece.runtime.config import RuntimeConfig
from setpiece.runtime.runtime import DeadLetter, Runtime, StoreReader

__all__ = ["DeadLetter", "Runtime", "RuntimeConfig", "StoreReader"]
