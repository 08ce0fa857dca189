"""The embedded engine's tables. ``PRAGMA application_id`` marks a file as setpiece's."""

from __future__ import annotations

APPLICATION_ID = 0x53505043  # "SPPC"
SCHEMA_VERSION = 2

# Event sequences (event sourcing), added in version 2.
_EVENTS = (
    "CREATE TABLE sp_events ("
    " ns TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, value BLOB NOT NULL,"
    " PRIMARY KEY (ns, id, version)) WITHOUT ROWID",
)

# What turns a file of the version in the key into the next version.
MIGRATIONS: dict[int, tuple[str, ...]] = {1: _EVENTS}

SCHEMA = (
    "CREATE TABLE sp_streams ("
    " id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " partitions INTEGER NOT NULL, retention REAL)",
    "CREATE TABLE sp_partitions ("
    " sid INTEGER NOT NULL, part INTEGER NOT NULL,"
    " start_off INTEGER NOT NULL, end_off INTEGER NOT NULL,"
    " PRIMARY KEY (sid, part)) WITHOUT ROWID",
    "CREATE TABLE sp_records ("
    " sid INTEGER NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,"
    " key TEXT, ts REAL NOT NULL, value BLOB NOT NULL,"
    " PRIMARY KEY (sid, part, off)) WITHOUT ROWID",
    "CREATE TABLE sp_offsets ("
    " grp TEXT NOT NULL, sid INTEGER NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,"
    " PRIMARY KEY (grp, sid, part)) WITHOUT ROWID",
    "CREATE TABLE sp_members ("
    " grp TEXT NOT NULL, sid INTEGER NOT NULL, member TEXT NOT NULL, seen REAL NOT NULL,"
    " PRIMARY KEY (grp, sid, member)) WITHOUT ROWID",
    "CREATE TABLE sp_kv ("
    " ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, version INTEGER NOT NULL,"
    " PRIMARY KEY (ns, key))",
    "CREATE TABLE sp_seq (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO sp_seq(id, value) VALUES (0, 0)",
    "CREATE TABLE sp_inbox ("
    " consumer TEXT NOT NULL, event_id TEXT NOT NULL, ts REAL NOT NULL,"
    " PRIMARY KEY (consumer, event_id)) WITHOUT ROWID",
    "CREATE INDEX sp_inbox_ts ON sp_inbox(ts)",
    "CREATE TABLE sp_timers ("
    " ns TEXT NOT NULL, id TEXT NOT NULL, due REAL NOT NULL, payload BLOB NOT NULL,"
    " PRIMARY KEY (ns, id))",
    "CREATE INDEX sp_timers_due ON sp_timers(due)",
    *_EVENTS,
)
