/* es--0.1.0.sql: the event store's schema, types and functions */

\echo Use "CREATE EXTENSION es" to load this file. \quit

-- Every object lives in schema es (created by CREATE EXTENSION, schema = es).

-- ---------------------------------------------------------------------------
-- Storage
-- ---------------------------------------------------------------------------

-- Positions come from a sequence with CACHE 1, so nextval() is monotonic in
-- time across backends; the gap-safe reads depend on that.
CREATE SEQUENCE es.events_global_position_seq AS bigint CACHE 1 NO CYCLE;

CREATE TABLE es.events (
    global_position bigint      NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    schema_version  int         NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL,
    xid             xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_pkey PRIMARY KEY (stream_id, stream_version)
);
-- The append functions validate every value (non-empty ids and types,
-- versions from 1, JSON objects) before inserting, and nothing else can
-- insert: CHECK constraints would only re-check, at a cost on every append.

-- Idempotency: an event id appears at most once in a stream.  Every unique
-- index includes stream_id, so the table can be distributed by stream_id.
CREATE UNIQUE INDEX events_stream_event_id_key ON es.events (stream_id, event_id);

-- Global reads: positions are unique by construction (one sequence), so a
-- plain btree suffices.
CREATE INDEX events_global_position_idx ON es.events (global_position);

-- Category reads: the category is the part of the stream id before the first
-- '-'.  The read functions use exactly this expression.
CREATE INDEX events_category_position_idx
    ON es.events (split_part(stream_id, '-', 1), global_position);

COMMENT ON TABLE es.events IS
    'The append-only event log. Written only by es.append*, never updated or deleted.';
COMMENT ON COLUMN es.events.global_position IS
    'Position in the global log: unique, increasing with stream_version inside a stream.';
COMMENT ON COLUMN es.events.stream_version IS
    'The event''s version in its stream: 1 for the first event, contiguous.';
COMMENT ON COLUMN es.events.xid IS
    'The appending transaction, used by gap-safe reads when es is not preloaded.';
COMMENT ON SEQUENCE es.events_global_position_seq IS
    'Allocates es.events.global_position; taken only by the append functions.';

-- pg_dump keeps the events and the position counter.
SELECT pg_catalog.pg_extension_config_dump('es.events', '');
SELECT pg_catalog.pg_extension_config_dump('es.events_global_position_seq', '');

-- ---------------------------------------------------------------------------
-- Types
-- ---------------------------------------------------------------------------

CREATE TYPE es.event AS (
    global_position bigint,
    stream_id       text,
    stream_version  bigint,
    event_id        uuid,
    event_type      text,
    schema_version  int,
    data            jsonb,
    metadata        jsonb,
    recorded_at     timestamptz
);
COMMENT ON TYPE es.event IS 'An event as returned by the read functions (upcast to its newest schema).';

CREATE TYPE es.new_event AS (
    event_type     text,
    data           jsonb,
    metadata       jsonb,
    event_id       uuid,
    schema_version int
);
COMMENT ON TYPE es.new_event IS 'An event to append; build it with es.new_event(...).';

CREATE FUNCTION es.new_event(
    event_type text,
    data jsonb,
    metadata jsonb DEFAULT NULL,
    event_id uuid DEFAULT NULL,
    schema_version int DEFAULT 1)
RETURNS es.new_event
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ROW(event_type, data, metadata, event_id, schema_version)::es.new_event;
COMMENT ON FUNCTION es.new_event(text, jsonb, jsonb, uuid, int) IS
    'Builds an es.new_event; NULL metadata becomes {}, a NULL event_id a fresh UUID and a NULL schema_version 1 when appended.';

-- ---------------------------------------------------------------------------
-- Append-only guard
-- ---------------------------------------------------------------------------

CREATE FUNCTION es.events_guard() RETURNS trigger
AS 'MODULE_PATHNAME', 'es_events_guard' LANGUAGE C;
COMMENT ON FUNCTION es.events_guard() IS
    'Trigger function that rejects UPDATE, DELETE and TRUNCATE on es.events.';

CREATE TRIGGER events_no_update_delete
    BEFORE UPDATE OR DELETE ON es.events
    FOR EACH ROW EXECUTE FUNCTION es.events_guard();
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON es.events
    FOR EACH STATEMENT EXECUTE FUNCTION es.events_guard();
-- Fire even under session_replication_role = replica.
ALTER TABLE es.events ENABLE ALWAYS TRIGGER events_no_update_delete;
ALTER TABLE es.events ENABLE ALWAYS TRIGGER events_no_truncate;

-- And nobody switches them off: DISABLE TRIGGER, a demotion from ALWAYS,
-- DROP TRIGGER, other triggers, column or constraint changes on es.events,
-- and CREATE OR REPLACE of es functions are refused (the extension's scripts
-- excepted).  A superuser can still disable this event trigger itself: that
-- deliberate act is the one way around it, short of DROP EXTENSION.
CREATE FUNCTION es.ddl_guard() RETURNS event_trigger
AS 'MODULE_PATHNAME', 'es_ddl_guard' LANGUAGE C;
COMMENT ON FUNCTION es.ddl_guard() IS
    'Event trigger function that keeps the append-only triggers of es.events in place.';
CREATE EVENT TRIGGER es_ddl_guard ON ddl_command_start
    WHEN TAG IN ('ALTER TABLE', 'ALTER TRIGGER', 'CREATE TRIGGER', 'DROP TRIGGER', 'CREATE FUNCTION')
    EXECUTE FUNCTION es.ddl_guard();
ALTER EVENT TRIGGER es_ddl_guard ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER es_ddl_guard IS
    'Refuses DDL that would disable or drop the append-only triggers of es.events.';

-- ---------------------------------------------------------------------------
-- Append
--
-- The append functions insert into es.events directly (heap and index
-- inserts in C, no SQL), so they need no privilege on the table: EXECUTE on
-- them is the right to append, and they are not SECURITY DEFINER.
-- ---------------------------------------------------------------------------

CREATE FUNCTION es.append(
    stream_id text,
    events es.new_event[],
    expected_version bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'es_append'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es.append(text, es.new_event[], bigint) IS
    'Appends events atomically to a stream if its version matches expected_version (NULL any, 0 none, -1 some, N exactly N); returns the new version.';

CREATE FUNCTION es.append_json(
    stream_id text,
    events jsonb,
    expected_version bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'es_append_json'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es.append_json(text, jsonb, bigint) IS
    'es.append for a JSON array of {"type","data","metadata","id","schema_version"} objects.';

CREATE FUNCTION es.append_event(
    stream_id text,
    event_type text,
    data jsonb,
    metadata jsonb DEFAULT NULL,
    expected_version bigint DEFAULT NULL,
    event_id uuid DEFAULT NULL,
    schema_version int DEFAULT 1)
RETURNS bigint
AS 'MODULE_PATHNAME', 'es_append_event'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es.append_event(text, text, jsonb, jsonb, bigint, uuid, int) IS
    'Appends one event; the same rules as es.append.';

-- ---------------------------------------------------------------------------
-- Read
-- ---------------------------------------------------------------------------

CREATE FUNCTION es.read_stream(
    stream_id text,
    from_version bigint DEFAULT 1,
    max_count bigint DEFAULT NULL,
    backwards boolean DEFAULT false,
    as_of timestamptz DEFAULT NULL)
RETURNS SETOF es.event
AS 'MODULE_PATHNAME', 'es_read_stream'
LANGUAGE C STABLE;
COMMENT ON FUNCTION es.read_stream(text, bigint, bigint, boolean, timestamptz) IS
    'Events of a stream with version >= from_version, oldest first (newest first when backwards), at most max_count, recorded at or before as_of.';

CREATE FUNCTION es.read_all(
    from_position bigint DEFAULT 0,
    max_count bigint DEFAULT 1000,
    event_types text[] DEFAULT NULL)
RETURNS SETOF es.event
AS 'MODULE_PATHNAME', 'es_read_all'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es.read_all(bigint, bigint, text[]) IS
    'Gap-safe global read: events after from_position in position order; never returns a position while a smaller one may still commit.';

CREATE FUNCTION es.read_category(
    category text,
    from_position bigint DEFAULT 0,
    max_count bigint DEFAULT 1000,
    consumer_group_member int DEFAULT NULL,
    consumer_group_size int DEFAULT NULL)
RETURNS SETOF es.event
AS 'MODULE_PATHNAME', 'es_read_category'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es.read_category(text, bigint, bigint, int, int) IS
    'Gap-safe read of one category (stream id prefix before the first -), optionally the share of one consumer group member.';

CREATE FUNCTION es.stream_version(stream_id text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'es_stream_version'
LANGUAGE C STABLE;
COMMENT ON FUNCTION es.stream_version(text) IS
    'The stream''s current version: the number of its events, 0 when it has none.';

CREATE FUNCTION es.last_event(stream_id text, event_type text DEFAULT NULL)
RETURNS es.event
AS 'MODULE_PATHNAME', 'es_last_event'
LANGUAGE C STABLE;
COMMENT ON FUNCTION es.last_event(text, text) IS
    'The stream''s last event (of event_type, when given), or NULL.';

CREATE FUNCTION es.category(stream_id text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN split_part(stream_id, '-', 1);
COMMENT ON FUNCTION es.category(text) IS
    'The category of a stream id: the part before the first -.';

-- ---------------------------------------------------------------------------
-- Upcasters: evolve stored payloads to the newest schema on every read
-- ---------------------------------------------------------------------------

CREATE TABLE es.upcaster_steps (
    event_type          text        NOT NULL,
    from_schema_version int         NOT NULL,
    upcaster            regprocedure,
    to_event_type       text,
    rename_fields       jsonb,
    add_fields          jsonb,
    remove_fields       text[],
    registered_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT upcaster_steps_pkey PRIMARY KEY (event_type, from_schema_version)
);
COMMENT ON TABLE es.upcaster_steps IS
    'Registered upcaster steps; change it only with es.register_upcaster and es.unregister_upcaster.';
SELECT pg_catalog.pg_extension_config_dump('es.upcaster_steps', '');

CREATE FUNCTION es.registry_changed() RETURNS trigger
AS 'MODULE_PATHNAME', 'es_registry_changed' LANGUAGE C;
COMMENT ON FUNCTION es.registry_changed() IS
    'Trigger function: tells every session that a table it caches (upcasters, stream lifecycle) changed.';
CREATE TRIGGER upcaster_steps_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON es.upcaster_steps
    FOR EACH STATEMENT EXECUTE FUNCTION es.registry_changed();

-- A function in use as an upcaster cannot be dropped (the registry holds
-- its OID, not a dependency): unregister the step first.
CREATE FUNCTION es.upcaster_drop_guard() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    step record;
BEGIN
    IF to_regclass('es.upcaster_steps') IS NULL THEN
        RETURN;     -- DROP EXTENSION es
    END IF;
    SELECT s.event_type, s.from_schema_version, d.object_identity INTO step
      FROM pg_event_trigger_dropped_objects() d
      JOIN es.upcaster_steps s ON s.upcaster::oid = d.objid
     WHERE d.classid = 'pg_proc'::regclass
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'cannot drop function %: it is the upcaster of "%" version %',
            step.object_identity, step.event_type, step.from_schema_version
            USING ERRCODE = '2BP01',
                  HINT = 'Unregister the step first with es.unregister_upcaster().';
    END IF;
END
$$;
COMMENT ON FUNCTION es.upcaster_drop_guard() IS
    'Event trigger function: refuses to drop a function that is a registered upcaster.';
CREATE EVENT TRIGGER es_upcaster_drop_guard ON sql_drop
    EXECUTE FUNCTION es.upcaster_drop_guard();
COMMENT ON EVENT TRIGGER es_upcaster_drop_guard IS
    'Refuses to drop a function that is a registered upcaster.';

CREATE FUNCTION es.register_upcaster(
    event_type text,
    from_schema_version int,
    upcaster regprocedure DEFAULT NULL,
    to_event_type text DEFAULT NULL,
    rename_fields jsonb DEFAULT NULL,
    add_fields jsonb DEFAULT NULL,
    remove_fields text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_type  text := register_upcaster.event_type;
    p_from  int := register_upcaster.from_schema_version;
    p_to    text := register_upcaster.to_event_type;
    f       record;
    k       text;
    v       jsonb;
BEGIN
    IF p_type IS NULL OR p_from IS NULL THEN
        RAISE EXCEPTION 'event_type and from_schema_version must not be null'
            USING ERRCODE = '22004';
    END IF;
    IF p_type = '' THEN
        RAISE EXCEPTION 'event_type must not be empty' USING ERRCODE = '22023';
    END IF;
    IF p_from < 1 THEN
        RAISE EXCEPTION 'from_schema_version must be at least 1, not %', p_from
            USING ERRCODE = '22023';
    END IF;

    IF upcaster IS NOT NULL THEN
        SELECT p.pronargs, p.proargtypes[0] AS argtype, p.prorettype, p.proretset, p.prokind
          INTO f FROM pg_proc p WHERE p.oid = upcaster;
        IF f.prokind <> 'f' OR f.pronargs <> 1 OR f.argtype <> 'jsonb'::regtype
           OR f.prorettype <> 'jsonb'::regtype OR f.proretset THEN
            RAISE EXCEPTION 'upcaster % must be a function (data jsonb) RETURNS jsonb', upcaster
                USING ERRCODE = '42P13',
                      HINT = 'It takes the event''s data and returns it in the next schema version.';
        END IF;
    END IF;

    IF p_to IS NOT NULL THEN
        IF p_to = '' THEN
            RAISE EXCEPTION 'to_event_type must not be empty' USING ERRCODE = '22023';
        END IF;
        IF p_to = p_type THEN
            RAISE EXCEPTION 'to_event_type must differ from event_type "%"', p_type
                USING ERRCODE = '22023', HINT = 'Leave it NULL to keep the type.';
        END IF;
        -- a rename must not lead back to the type it starts from
        IF EXISTS (
            WITH RECURSIVE reach(t) AS (
                SELECT p_to
                UNION
                SELECT s.to_event_type FROM es.upcaster_steps s JOIN reach r ON s.event_type = r.t
                 WHERE s.to_event_type IS NOT NULL)
            SELECT 1 FROM reach WHERE t = p_type)
        THEN
            RAISE EXCEPTION 'renaming "%" to "%" would make a cycle of type renames', p_type, p_to
                USING ERRCODE = '42P17';
        END IF;
    END IF;

    IF rename_fields IS NOT NULL THEN
        IF jsonb_typeof(rename_fields) <> 'object' OR rename_fields = '{}' THEN
            RAISE EXCEPTION 'rename_fields must be a non-empty JSON object of "old": "new" names'
                USING ERRCODE = '22023';
        END IF;
        FOR k, v IN SELECT * FROM jsonb_each(rename_fields) LOOP
            IF jsonb_typeof(v) <> 'string' OR v #>> '{}' = '' THEN
                RAISE EXCEPTION 'rename_fields: the new name of "%" must be a non-empty string', k
                    USING ERRCODE = '22023';
            END IF;
            IF add_fields ? (v #>> '{}') OR (v #>> '{}') = ANY (remove_fields) THEN
                RAISE EXCEPTION 'rename_fields renames "%" to "%", which the same step also adds or removes',
                    k, v #>> '{}' USING ERRCODE = '22023';
            END IF;
        END LOOP;
    END IF;
    IF add_fields IS NOT NULL AND (jsonb_typeof(add_fields) <> 'object' OR add_fields = '{}') THEN
        RAISE EXCEPTION 'add_fields must be a non-empty JSON object of defaults'
            USING ERRCODE = '22023';
    END IF;
    IF remove_fields IS NOT NULL AND (cardinality(remove_fields) = 0
                                      OR array_position(remove_fields, NULL) IS NOT NULL) THEN
        RAISE EXCEPTION 'remove_fields must be a non-empty array of names'
            USING ERRCODE = '22023';
    END IF;

    IF EXISTS (SELECT 1 FROM es.upcaster_steps s
                WHERE s.event_type = p_type AND s.from_schema_version = p_from) THEN
        RAISE EXCEPTION 'an upcaster for "%" version % is already registered', p_type, p_from
            USING ERRCODE = '42710',
                  HINT = 'Unregister it first with es.unregister_upcaster().';
    END IF;

    INSERT INTO es.upcaster_steps (event_type, from_schema_version, upcaster, to_event_type,
                                   rename_fields, add_fields, remove_fields)
    VALUES (p_type, p_from, upcaster, p_to, rename_fields, add_fields, remove_fields);
END
$$;
COMMENT ON FUNCTION es.register_upcaster(text, int, regprocedure, text, jsonb, jsonb, text[]) IS
    'Registers the step that evolves event_type from schema version v to v+1: a function, a type rename, and declarative edits (rename, add, remove keys) applied after the function.';

CREATE FUNCTION es.unregister_upcaster(event_type text, from_schema_version int)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM es.upcaster_steps s
     WHERE s.event_type = unregister_upcaster.event_type
       AND s.from_schema_version = unregister_upcaster.from_schema_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no upcaster is registered for "%" version %',
            unregister_upcaster.event_type, unregister_upcaster.from_schema_version
            USING ERRCODE = '42704';
    END IF;
END
$$;
COMMENT ON FUNCTION es.unregister_upcaster(text, int) IS
    'Removes the upcaster step of event_type from schema version from_schema_version.';

CREATE VIEW es.upcasters AS
SELECT s.event_type,
       s.from_schema_version,
       s.from_schema_version + 1 AS to_schema_version,
       coalesce(s.to_event_type, s.event_type) AS to_event_type,
       CASE
           WHEN s.upcaster IS NOT NULL
                AND (s.rename_fields IS NOT NULL OR s.add_fields IS NOT NULL
                     OR s.remove_fields IS NOT NULL) THEN 'function+declarative'
           WHEN s.upcaster IS NOT NULL THEN 'function'
           WHEN s.rename_fields IS NOT NULL OR s.add_fields IS NOT NULL
                OR s.remove_fields IS NOT NULL THEN 'declarative'
           WHEN s.to_event_type IS NOT NULL THEN 'type rename'
           ELSE 'version bump'
       END AS kind,
       s.upcaster,
       s.rename_fields,
       s.add_fields,
       s.remove_fields,
       s.registered_at
  FROM es.upcaster_steps s;
COMMENT ON VIEW es.upcasters IS
    'Registered upcaster steps: from (event_type, from_schema_version) to (to_event_type, to_schema_version).';

-- ---------------------------------------------------------------------------
-- Stream lifecycle: soft delete, tombstone, retention, scavenge
-- ---------------------------------------------------------------------------

CREATE TABLE es.stream_metadata (
    stream_id       text        NOT NULL,
    deleted_before  bigint      NOT NULL DEFAULT 0,
    tombstoned_at   timestamptz,
    max_count       bigint,
    max_age         interval,
    truncate_before bigint,
    scavenged_to    bigint      NOT NULL DEFAULT 0,
    deleted_at      timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT stream_metadata_pkey PRIMARY KEY (stream_id)
);
COMMENT ON TABLE es.stream_metadata IS
    'Lifecycle state of the streams that have one: soft delete point, tombstone, retention, scavenge progress.';
COMMENT ON COLUMN es.stream_metadata.deleted_before IS
    'Versions up to this one are soft deleted: hidden from every read.';
COMMENT ON COLUMN es.stream_metadata.scavenged_to IS
    'The highest version es.scavenge removed: numbering continues after it.';
SELECT pg_catalog.pg_extension_config_dump('es.stream_metadata', '');
CREATE TRIGGER stream_metadata_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON es.stream_metadata
    FOR EACH STATEMENT EXECUTE FUNCTION es.registry_changed();

CREATE FUNCTION es.event_hidden(m es.stream_metadata, stream_version bigint, recorded_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN m.tombstoned_at IS NOT NULL
    OR event_hidden.stream_version <= m.deleted_before
    OR event_hidden.stream_version < coalesce(m.truncate_before, 0)
    OR coalesce(event_hidden.recorded_at < now() - m.max_age, false)
    OR coalesce(event_hidden.stream_version <= (SELECT max(x.stream_version) FROM es.events x
                                                 WHERE x.stream_id = m.stream_id) - m.max_count, false);
COMMENT ON FUNCTION es.event_hidden(es.stream_metadata, bigint, timestamptz) IS
    'True when a stream''s lifecycle row hides its event of that version and time.';

CREATE FUNCTION es.lock_stream(stream_id text) RETURNS void
AS 'MODULE_PATHNAME', 'es_lock_stream' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es.lock_stream(text) IS
    'Takes a stream''s append lock until the end of the transaction (appends, deletes and tombstones of the stream wait for it).';

-- The lifecycle state and ES001 check shared by delete_stream and tombstone_stream
CREATE FUNCTION es.check_stream_for_delete(p_stream text, p_expected bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v bigint;
    deleted bigint;
    tomb timestamptz;
BEGIN
    IF p_stream IS NULL THEN
        RAISE EXCEPTION 'stream_id must not be null' USING ERRCODE = '22004';
    END IF;
    IF p_stream = '' THEN
        RAISE EXCEPTION 'stream_id must not be empty' USING ERRCODE = '22023';
    END IF;
    IF p_expected < -1 THEN
        RAISE EXCEPTION 'expected_version must be NULL, -1, 0 or a positive version, not %', p_expected
            USING ERRCODE = '22023';
    END IF;
    PERFORM es.lock_stream(p_stream);
    -- under the lock, a new statement sees the stream's latest state
    SELECT m.deleted_before, m.tombstoned_at INTO deleted, tomb
      FROM es.stream_metadata m WHERE m.stream_id = p_stream;
    IF tomb IS NOT NULL THEN
        RAISE EXCEPTION 'stream "%" is deleted', p_stream USING ERRCODE = 'ES003',
            DETAIL = 'The stream was hard deleted (tombstoned): it cannot be read or appended to again.';
    END IF;
    v := es.stream_version(p_stream);
    IF p_expected IS NOT NULL AND NOT (p_expected = v
           OR (p_expected = -1 AND v > coalesce(deleted, 0))
           OR (p_expected = 0 AND v <= coalesce(deleted, 0))) THEN
        RAISE EXCEPTION 'wrong expected version for stream "%"', p_stream USING ERRCODE = 'ES001',
            DETAIL = format('Expected %s, actual version %s.',
                            CASE p_expected WHEN 0 THEN 'no stream' WHEN -1 THEN 'an existing stream'
                                            ELSE 'version ' || p_expected END, v),
            HINT = 'Read the stream again and retry with its current version.';
    END IF;
    RETURN v;
END
$$;
COMMENT ON FUNCTION es.check_stream_for_delete(text, bigint) IS
    'Internal: locks a stream and checks it for es.delete_stream and es.tombstone_stream.';

CREATE FUNCTION es.delete_stream(stream_id text, expected_version bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v bigint := es.check_stream_for_delete(delete_stream.stream_id, expected_version);
BEGIN
    IF v = 0 THEN
        RETURN 0;   -- nothing to delete
    END IF;
    INSERT INTO es.stream_metadata AS m (stream_id, deleted_before, deleted_at)
    VALUES (delete_stream.stream_id, v, now())
    ON CONFLICT ON CONSTRAINT stream_metadata_pkey
    DO UPDATE SET deleted_before = EXCLUDED.deleted_before, deleted_at = now(), updated_at = now();
    DELETE FROM es.snapshots s WHERE s.stream_id = delete_stream.stream_id AND s.version <= v;
    RETURN v;
END
$$;
COMMENT ON FUNCTION es.delete_stream(text, bigint) IS
    'Soft delete: hides the stream''s events up to its current version from every read; a later append (expected version 0 allowed) recreates it, numbering continuing. Returns the deleted version.';

CREATE FUNCTION es.tombstone_stream(stream_id text, expected_version bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v bigint := es.check_stream_for_delete(tombstone_stream.stream_id, expected_version);
BEGIN
    INSERT INTO es.stream_metadata AS m (stream_id, deleted_before, tombstoned_at, deleted_at)
    VALUES (tombstone_stream.stream_id, v, now(), now())
    ON CONFLICT ON CONSTRAINT stream_metadata_pkey
    DO UPDATE SET deleted_before = EXCLUDED.deleted_before, tombstoned_at = now(),
                  deleted_at = now(), updated_at = now();
    DELETE FROM es.snapshots s WHERE s.stream_id = tombstone_stream.stream_id;
    RETURN v;
END
$$;
COMMENT ON FUNCTION es.tombstone_stream(text, bigint) IS
    'Hard delete: the stream can never be appended to or read again (ES003); es.scavenge removes its events. Returns its last version.';

CREATE FUNCTION es.set_stream_metadata(
    stream_id text,
    max_count bigint DEFAULT NULL,
    max_age interval DEFAULT NULL,
    truncate_before bigint DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF set_stream_metadata.stream_id IS NULL OR set_stream_metadata.stream_id = '' THEN
        RAISE EXCEPTION 'stream_id must not be null or empty' USING ERRCODE = '22023';
    END IF;
    IF max_count < 1 THEN
        RAISE EXCEPTION 'max_count must be at least 1, not %', max_count USING ERRCODE = '22023';
    END IF;
    IF max_age <= interval '0' OR max_age > interval '1000 years' THEN
        RAISE EXCEPTION 'max_age must be positive and at most 1000 years, not %', max_age
            USING ERRCODE = '22023';
    END IF;
    IF truncate_before < 1 THEN
        RAISE EXCEPTION 'truncate_before must be at least 1, not %', truncate_before
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO es.stream_metadata AS m (stream_id, max_count, max_age, truncate_before)
    VALUES (set_stream_metadata.stream_id, max_count, max_age, truncate_before)
    ON CONFLICT ON CONSTRAINT stream_metadata_pkey
    DO UPDATE SET max_count = EXCLUDED.max_count, max_age = EXCLUDED.max_age,
                  truncate_before = EXCLUDED.truncate_before, updated_at = now();
END
$$;
COMMENT ON FUNCTION es.set_stream_metadata(text, bigint, interval, bigint) IS
    'Retention of a stream, applied by every read at once: keep the last max_count events, events younger than max_age, versions from truncate_before (NULL: no limit).';

CREATE FUNCTION es.scavenge(max_events bigint DEFAULT 10000)
RETURNS TABLE (stream_id text, events_removed bigint, up_to_version bigint)
AS 'MODULE_PATHNAME', 'es_scavenge'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es.scavenge(bigint) IS
    'Physically removes up to max_events events hidden by deletes, tombstones and retention; one row per stream touched. Call it until it returns no row.';

CREATE VIEW es.streams AS
SELECT coalesce(e.stream_id, m.stream_id) AS stream_id,
       split_part(coalesce(e.stream_id, m.stream_id), '-', 1) AS category,
       greatest(e.version, m.deleted_before, m.scavenged_to, 0) AS version,
       coalesce(e.stored_events, 0) AS stored_events,
       e.created_at,
       e.updated_at,
       CASE WHEN m.tombstoned_at IS NOT NULL THEN 'tombstoned'
            WHEN greatest(e.version, 0) <= coalesce(m.deleted_before, 0)
                 AND m.deleted_before > 0 THEN 'deleted'
            ELSE 'active' END AS state,
       m.deleted_before,
       m.max_count,
       m.max_age,
       m.truncate_before,
       m.scavenged_to
  FROM (SELECT x.stream_id, max(x.stream_version) AS version, count(*) AS stored_events,
               min(x.recorded_at) AS created_at, max(x.recorded_at) AS updated_at
          FROM es.events x GROUP BY x.stream_id) e
  FULL JOIN es.stream_metadata m ON m.stream_id = e.stream_id;
COMMENT ON VIEW es.streams IS
    'One row per stream: version, category, stored events, first and last append time, state (active, deleted, tombstoned) and retention. Scans the whole log: for psql, not for hot paths.';

CREATE VIEW es.categories AS
SELECT split_part(x.stream_id, '-', 1) AS category,
       count(DISTINCT x.stream_id) AS streams,
       count(*) AS events,
       min(x.global_position) AS first_position,
       max(x.global_position) AS last_position,
       min(x.recorded_at) AS first_recorded_at,
       max(x.recorded_at) AS last_recorded_at
  FROM es.events x GROUP BY 1;
COMMENT ON VIEW es.categories IS
    'Per category: streams, stored events, first and last position and time. Scans the whole log.';

CREATE VIEW es.event_types AS
SELECT x.event_type,
       x.schema_version,
       count(*) AS events,
       min(x.global_position) AS first_position,
       max(x.global_position) AS last_position,
       min(x.recorded_at) AS first_recorded_at,
       max(x.recorded_at) AS last_recorded_at
  FROM es.events x GROUP BY 1, 2;
COMMENT ON VIEW es.event_types IS
    'Per stored event type and schema version: events, first and last position and time. Scans the whole log.';

-- ---------------------------------------------------------------------------
-- Snapshots and folding
-- ---------------------------------------------------------------------------

CREATE TABLE es.snapshots (
    stream_id     text        NOT NULL,
    snapshot_type text        NOT NULL,
    version       bigint      NOT NULL,
    state         jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT snapshots_pkey PRIMARY KEY (stream_id, snapshot_type, version)
);
COMMENT ON TABLE es.snapshots IS
    'The latest snapshot of each stream and snapshot type; written by es.save_snapshot.';
SELECT pg_catalog.pg_extension_config_dump('es.snapshots', '');

CREATE TABLE es.snapshot_intervals (
    snapshot_type text NOT NULL PRIMARY KEY,
    every         int  NOT NULL CHECK (every > 0)
);
COMMENT ON TABLE es.snapshot_intervals IS
    'Automatic snapshots: es.fold saves one when it folded at least "every" events.';
SELECT pg_catalog.pg_extension_config_dump('es.snapshot_intervals', '');

CREATE FUNCTION es.save_snapshot(
    stream_id text,
    version bigint,
    state jsonb,
    snapshot_type text DEFAULT 'default')
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_stream  text := save_snapshot.stream_id;
    p_version bigint := save_snapshot.version;
    p_type    text := save_snapshot.snapshot_type;
    current   bigint;
BEGIN
    IF p_stream IS NULL OR p_version IS NULL OR state IS NULL OR p_type IS NULL THEN
        RAISE EXCEPTION 'stream_id, version, state and snapshot_type must not be null'
            USING ERRCODE = '22004';
    END IF;
    IF p_stream = '' OR p_type = '' THEN
        RAISE EXCEPTION 'stream_id and snapshot_type must not be empty' USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM es.stream_metadata m
                WHERE m.stream_id = p_stream AND m.tombstoned_at IS NOT NULL) THEN
        RAISE EXCEPTION 'stream "%" is deleted', p_stream USING ERRCODE = 'ES003';
    END IF;
    current := es.stream_version(p_stream);
    IF p_version <= coalesce((SELECT m.deleted_before FROM es.stream_metadata m
                               WHERE m.stream_id = p_stream), 0) AND p_version >= 1 THEN
        RAISE EXCEPTION 'version % of stream "%" is deleted', p_version, p_stream
            USING ERRCODE = '22023', HINT = 'Snapshot a version after the delete.';
    END IF;
    IF p_version < 1 OR p_version > current THEN
        RAISE EXCEPTION 'stream "%" has no version %', p_stream, p_version
            USING ERRCODE = '22023',
                  DETAIL = format('Its version is %s.', current),
                  HINT = 'A snapshot is the state after an event the stream has.';
    END IF;
    INSERT INTO es.snapshots AS s (stream_id, snapshot_type, version, state)
    VALUES (p_stream, p_type, p_version, state)
    ON CONFLICT ON CONSTRAINT snapshots_pkey
    DO UPDATE SET state = EXCLUDED.state, created_at = now();
    -- only the latest snapshot of a type is ever used
    DELETE FROM es.snapshots s
     WHERE s.stream_id = p_stream AND s.snapshot_type = p_type AND s.version < p_version;
END
$$;
COMMENT ON FUNCTION es.save_snapshot(text, bigint, jsonb, text) IS
    'Saves the state of a stream after its event "version", for es.fold and es.load_snapshot.';

CREATE FUNCTION es.load_snapshot(stream_id text, snapshot_type text DEFAULT 'default')
RETURNS TABLE (version bigint, state jsonb)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.version, s.state FROM es.snapshots s
     WHERE s.stream_id = load_snapshot.stream_id
       AND s.snapshot_type = load_snapshot.snapshot_type
       AND s.version <= es.stream_version(load_snapshot.stream_id)
       -- a soft delete ends the state that snapshots before it describe
       AND s.version > coalesce((SELECT m.deleted_before FROM es.stream_metadata m
                                  WHERE m.stream_id = load_snapshot.stream_id), 0)
     ORDER BY s.version DESC LIMIT 1
$$;
COMMENT ON FUNCTION es.load_snapshot(text, text) IS
    'The latest snapshot of a stream and snapshot type: its version and state; no row when there is none.';

CREATE FUNCTION es.set_snapshot_interval(snapshot_type text, every int)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF snapshot_type IS NULL OR snapshot_type = '' THEN
        RAISE EXCEPTION 'snapshot_type must not be null or empty' USING ERRCODE = '22023';
    END IF;
    IF every IS NULL OR every = 0 THEN
        DELETE FROM es.snapshot_intervals i WHERE i.snapshot_type = set_snapshot_interval.snapshot_type;
    ELSIF every < 0 THEN
        RAISE EXCEPTION 'every must be positive (or 0 or NULL to stop), not %', every
            USING ERRCODE = '22023';
    ELSE
        INSERT INTO es.snapshot_intervals AS i VALUES (snapshot_type, every)
        ON CONFLICT ON CONSTRAINT snapshot_intervals_pkey DO UPDATE SET every = EXCLUDED.every;
    END IF;
END
$$;
COMMENT ON FUNCTION es.set_snapshot_interval(text, int) IS
    'Makes es.fold save a snapshot of this type when it folded at least "every" events (0 or NULL: never).';

CREATE FUNCTION es.fold(
    stream_id text,
    reducer regprocedure,
    initial jsonb DEFAULT '{}',
    snapshot_type text DEFAULT 'default')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'es_fold'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es.fold(text, regprocedure, jsonb, text) IS
    'Folds a stream''s upcast events with reducer(state jsonb, e es.event) RETURNS jsonb, from its latest snapshot of snapshot_type (from initial at version 0 when there is none or snapshot_type is NULL).';

-- ---------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC; see the README for role recipes.
-- ---------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA es FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA es FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA es FROM PUBLIC;
-- pure helpers that read queries may inline
GRANT EXECUTE ON FUNCTION es.event_hidden(es.stream_metadata, bigint, timestamptz) TO PUBLIC;
