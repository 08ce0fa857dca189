"""Records built from rows, faster than ``Record(...)``: shared by the engines' read paths."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from setpiece.engine.contract import Record

__all__ = ["records"]


def _records_builder() -> Callable[[str, int, list[Any]], list[Record]]:
    """Build Records from (off, key, value, ts) rows, about twice as fast as ``Record(...)``.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``; for a
    slotted class the slot descriptors do the same directly. Used only while Record is exactly
    the plain frozen, slotted dataclass this expects; otherwise its constructor is used.
    """
    names = ("stream", "partition", "offset", "key", "value", "timestamp")
    plain = (
        tuple(f.name for f in dataclasses.fields(Record)) == names
        and getattr(Record, "__slots__", None) == names
        and not hasattr(Record, "__post_init__")
        and all(type(vars(Record).get(n)).__name__ == "member_descriptor" for n in names)
    )

    def by_constructor(stream: str, partition: int, rows: list[Any]) -> list[Record]:
        return [Record(stream, partition, off, key, value, ts) for off, key, value, ts in rows]

    if not plain:
        return by_constructor
    descriptors = vars(Record)
    set_stream, set_partition, set_offset, set_key, set_value, set_timestamp = (
        descriptors[n].__set__ for n in names
    )
    new = object.__new__

    def by_slots(stream: str, partition: int, rows: list[Any]) -> list[Record]:
        out: list[Record] = []
        append = out.append
        for off, key, value, ts in rows:
            record = new(Record)
            set_stream(record, stream)
            set_partition(record, partition)
            set_offset(record, off)
            set_key(record, key)
            set_value(record, value)
            set_timestamp(record, ts)
            append(record)
        return out

    return by_slots


records = _records_builder()
"""``records(stream, partition, rows)``: Records from (offset, key, value, timestamp) rows."""
