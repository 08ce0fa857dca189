"""The production engine's PostgreSQL tables, in one schema per engine (``?schema=`` in the URL).

Offsets live here, not in the broker, so that they commit in the same transaction as the state,
inbox and outbox they belong to. ``sp_partitions.last_pseq`` numbers each partition's outbox
rows densely in commit order; the relay publishes row ``n`` as JetStream sequence ``n`` (offset
``n - 1``), so every committed record's offset is known when the transaction commits.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

# Statements run once, in order, under an advisory lock, when the schema is new.
SCHEMA = (
    "CREATE TABLE sp_meta (key text PRIMARY KEY, value text NOT NULL)",
    "CREATE TABLE sp_streams ("
    ' name text COLLATE "C" PRIMARY KEY, partitions integer NOT NULL,'
    " retention double precision)",
    "CREATE TABLE sp_partitions ("
    ' stream text COLLATE "C" NOT NULL, part integer NOT NULL,'
    " last_pseq bigint NOT NULL DEFAULT 0, PRIMARY KEY (stream, part))",
    "CREATE TABLE sp_outbox ("
    ' stream text COLLATE "C" NOT NULL, part integer NOT NULL, pseq bigint NOT NULL,'
    " key text, value bytea NOT NULL, msg_id text NOT NULL,"
    " created double precision NOT NULL, PRIMARY KEY (stream, part, pseq))",
    "CREATE INDEX sp_outbox_created ON sp_outbox (created)",
    "CREATE TABLE sp_commits ("
    " id uuid PRIMARY KEY, ts double precision NOT NULL, positions bytea NOT NULL)",
    "CREATE INDEX sp_commits_ts ON sp_commits (ts)",
    "CREATE TABLE sp_offsets ("
    ' grp text COLLATE "C" NOT NULL, stream text COLLATE "C" NOT NULL,'
    " part integer NOT NULL, off bigint NOT NULL, PRIMARY KEY (grp, stream, part))",
    "CREATE TABLE sp_members ("
    ' grp text COLLATE "C" NOT NULL, stream text COLLATE "C" NOT NULL,'
    ' member text COLLATE "C" NOT NULL, seen double precision NOT NULL,'
    " PRIMARY KEY (grp, stream, member))",
    "CREATE TABLE sp_kv ("
    ' ns text COLLATE "C" NOT NULL, key text COLLATE "C" NOT NULL,'
    " value bytea NOT NULL, version bigint NOT NULL, PRIMARY KEY (ns, key))",
    "CREATE SEQUENCE sp_version",
    "CREATE TABLE sp_inbox ("
    ' consumer text COLLATE "C" NOT NULL, event_id text COLLATE "C" NOT NULL,'
    " ts double precision NOT NULL, PRIMARY KEY (consumer, event_id))",
    "CREATE INDEX sp_inbox_ts ON sp_inbox (ts)",
    "CREATE TABLE sp_timers ("
    ' ns text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL,'
    " due double precision NOT NULL, payload bytea NOT NULL, PRIMARY KEY (ns, id))",
    "CREATE INDEX sp_timers_due ON sp_timers (due)",
)
