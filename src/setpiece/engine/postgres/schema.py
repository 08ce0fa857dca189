"""The production engine's PostgreSQL tables, in one schema per engine (``?schema=`` in the URL).

Offsets live here, not in the broker, so that they commit in the same transaction as the state,
inbox and outbox they belong to. ``sp_partitions.last_pseq`` numbers each partition's outbox
rows densely in commit order; the relay publishes row ``n`` as JetStream sequence ``n`` (offset
``n - 1``), so every committed record's offset is known when the transaction commits.
"""

from __future__ import annotations

SCHEMA_VERSION = 2

# Event sequences (event sourcing), added in version 2.
EVENTS = (
    "CREATE TABLE sp_events ("
    ' ns text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL, version bigint NOT NULL,'
    " value bytea NOT NULL, PRIMARY KEY (ns, id, version))",
)

# What turns a schema of the version in the key into the next version.
MIGRATIONS: dict[str, tuple[str, ...]] = {"1": EVENTS}

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
    *EVENTS,
)

# A unit of work in one statement (one round trip, one implicit transaction): see
# ``PgStore._apply``. Replaced on every open (under the schema lock), so an existing schema
# gets the current body; the tables above are unchanged by it. Conflicts raise SQLSTATE SPC01,
# a partition that does not exist SPC02.
COMMIT_FUNCTION = """
CREATE OR REPLACE FUNCTION sp_commit_v2(
    p_id uuid, p_now double precision, p_locks bigint[],
    r_ns text[], r_key text[], r_ver bigint[],
    o_grp text[], o_stream text[], o_part integer[], o_from bigint[],
    i_consumer text[], i_event text[],
    f_ns text[], f_id text[], f_due double precision[],
    s_ns text[], s_key text[], s_value bytea[],
    d_ns text[], d_key text[],
    c_ns text[], c_id text[],
    t_ns text[], t_id text[], t_due double precision[], t_payload bytea[],
    u_grp text[], u_stream text[], u_part integer[], u_off bigint[],
    a_stream text[], a_part integer[], a_key text[], a_value bytea[],
    x_ns text[], x_id text[], x_want bigint[],
    e_ns text[], e_id text[], e_ver bigint[], e_value bytea[]
) RETURNS bytea LANGUAGE plpgsql AS $body$
DECLARE
    v_bad record;
    v_count bigint;
    v_group record;
    v_last bigint;
    g_stream text[] := '{}';
    g_part integer[] := '{}';
    g_first bigint[] := '{}';
    v_positions bytea := '[]';
BEGIN
    -- Advisory locks on every key checked or written, in the caller's (sorted) order.
    IF cardinality(p_locks) > 0 THEN
        PERFORM count(pg_advisory_xact_lock(x)) FROM unnest(p_locks) AS x;
    END IF;
    IF cardinality(r_ns) > 0 THEN
        SELECT r.ns, r.key INTO v_bad
        FROM unnest(r_ns, r_key, r_ver) AS r(ns, key, ver)
        LEFT JOIN sp_kv AS kv ON kv.ns = r.ns AND kv.key = r.key
        WHERE coalesce(kv.version, 0) <> r.ver LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'SPC01',
                MESSAGE = format('store %L: key %L changed concurrently', v_bad.ns, v_bad.key);
        END IF;
    END IF;
    IF cardinality(o_grp) > 0 THEN
        SELECT o.grp, o.stream, o.part, o.want, coalesce(x.off, 0) AS cur INTO v_bad
        FROM unnest(o_grp, o_stream, o_part, o_from) AS o(grp, stream, part, want)
        LEFT JOIN sp_offsets AS x ON x.grp = o.grp AND x.stream = o.stream AND x.part = o.part
        WHERE coalesce(x.off, 0) <> o.want LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'SPC01',
                MESSAGE = format('group %L on %L[%s]: committed offset is %s, expected %s',
                                 v_bad.grp, v_bad.stream, v_bad.part, v_bad.cur, v_bad.want);
        END IF;
    END IF;
    IF cardinality(i_consumer) > 0 THEN
        INSERT INTO sp_inbox(consumer, event_id, ts)
        SELECT c, e, p_now FROM unnest(i_consumer, i_event) AS t(c, e)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS v_count = ROW_COUNT;
        IF v_count <> cardinality(i_consumer) THEN
            RAISE EXCEPTION USING ERRCODE = 'SPC01',
                MESSAGE = 'inbox: an event was already processed by this consumer';
        END IF;
    END IF;
    IF cardinality(f_ns) > 0 THEN
        DELETE FROM sp_timers WHERE (ns, id, due) IN
            (SELECT * FROM unnest(f_ns, f_id, f_due));
        GET DIAGNOSTICS v_count = ROW_COUNT;
        IF v_count <> cardinality(f_ns) THEN
            RAISE EXCEPTION USING ERRCODE = 'SPC01', MESSAGE = format(
                'timer %s: already fired or moved',
                (SELECT string_agg(n || '/' || i, ', ') FROM unnest(f_ns, f_id) AS t(n, i)));
        END IF;
    END IF;
    IF cardinality(x_ns) > 0 THEN
        SELECT x.ns, x.id, x.want, coalesce(m.v, 0) AS cur INTO v_bad
        FROM unnest(x_ns, x_id, x_want) AS x(ns, id, want)
        LEFT JOIN LATERAL (SELECT max(e.version) AS v FROM sp_events AS e
                           WHERE e.ns = x.ns AND e.id = x.id) AS m ON true
        WHERE coalesce(m.v, 0) <> x.want LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'SPC01',
                MESSAGE = format('events %L/%L: version is %s, expected %s',
                                 v_bad.ns, v_bad.id, v_bad.cur, v_bad.want);
        END IF;
        INSERT INTO sp_events(ns, id, version, value)
        SELECT * FROM unnest(e_ns, e_id, e_ver, e_value);
    END IF;
    IF cardinality(s_ns) > 0 THEN
        INSERT INTO sp_kv(ns, key, value, version)
        SELECT t.ns, t.key, t.value, v.v
        FROM unnest(s_ns, s_key, s_value) AS t(ns, key, value),
             (SELECT nextval('sp_version') AS v) AS v
        ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, version = excluded.version;
    END IF;
    IF cardinality(d_ns) > 0 THEN
        DELETE FROM sp_kv WHERE (ns, key) IN (SELECT * FROM unnest(d_ns, d_key));
    END IF;
    IF cardinality(c_ns) > 0 THEN
        DELETE FROM sp_timers WHERE (ns, id) IN (SELECT * FROM unnest(c_ns, c_id));
    END IF;
    IF cardinality(t_ns) > 0 THEN
        INSERT INTO sp_timers(ns, id, due, payload)
        SELECT * FROM unnest(t_ns, t_id, t_due, t_payload)
        ON CONFLICT (ns, id) DO UPDATE SET due = excluded.due, payload = excluded.payload;
    END IF;
    IF cardinality(u_grp) > 0 THEN
        INSERT INTO sp_offsets(grp, stream, part, off)
        SELECT * FROM unnest(u_grp, u_stream, u_part, u_off)
        ON CONFLICT (grp, stream, part) DO UPDATE SET off = excluded.off;
    END IF;
    IF cardinality(a_stream) > 0 THEN
        -- The partitions' counters, locked in one order (no deadlocks), last in the
        -- transaction (held only until it ends): outbox order is commit order.
        FOR v_group IN
            SELECT s, p, count(*) AS n FROM unnest(a_stream, a_part) AS t(s, p)
            GROUP BY s, p ORDER BY s COLLATE "C", p
        LOOP
            UPDATE sp_partitions SET last_pseq = last_pseq + v_group.n
            WHERE stream = v_group.s AND part = v_group.p
            RETURNING last_pseq INTO v_last;
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'SPC02', MESSAGE = format(
                    'stream %L has no partition %s', v_group.s, v_group.p);
            END IF;
            g_stream := g_stream || v_group.s;
            g_part := g_part || v_group.p;
            g_first := g_first || (v_last - v_group.n + 1);
        END LOOP;
        WITH a AS (
            SELECT t.s, t.p, t.k, t.v, t.ord,
                   g.first + row_number() OVER (PARTITION BY t.s, t.p ORDER BY t.ord) - 1 AS q
            FROM unnest(a_stream, a_part, a_key, a_value) WITH ORDINALITY AS t(s, p, k, v, ord)
            JOIN unnest(g_stream, g_part, g_first) AS g(s, p, first)
              ON g.s = t.s AND g.p = t.p
        ), ins AS (
            INSERT INTO sp_outbox(stream, part, pseq, key, value, msg_id, created)
            SELECT s, p, q, k, v, p_id::text || '.' || q, p_now FROM a
        )
        SELECT convert_to(json_agg(json_build_array(s, p, q - 1) ORDER BY ord)::text, 'UTF8')
        INTO v_positions FROM a;
    END IF;
    INSERT INTO sp_commits(id, ts, positions) VALUES (p_id, p_now, v_positions);
    RETURN v_positions;
END
$body$
"""
